//! Games played against the referee on the built-in demo model (every op kind) and on
//! random small programs: the honest side wins wherever the lie is, within the bound, and
//! stalling loses.

use bisection::{
    Belief, Claim, DissectionDegree, Fault, Game, GameConfig, Move, Phase, Player, Reason, Side,
    Silent, TracePlayer, play,
};
use inference::commit::tensor_hash;
use inference::merkle::H256;
use inference::model::Model;
use inference::tensor::Tensor;
use std::sync::Arc;

const T0: u64 = 1_000_000;

struct Setup {
    model: Model,
    program: Arc<inference::program::Program>,
    input: Tensor,
}

fn demo() -> Setup {
    let model = inference::demo::model().unwrap();
    let program = Arc::new(model.program().clone());
    Setup {
        model,
        program,
        input: inference::demo::input(&inference::demo::tokens("proofs")).unwrap(),
    }
}

impl Setup {
    fn claim(&self, output_hash: H256) -> Claim {
        Claim {
            request_id: H256([1; 32]),
            model_id: self.model.id(),
            input_hash: tensor_hash(&self.input),
            output_hash,
        }
    }

    fn honest(&self) -> Belief<'_> {
        Belief::honest(self.model.program(), self.model.weights(), &self.input).unwrap()
    }

    fn faulty(&self, fault: Fault) -> Belief<'_> {
        Belief::with_fault(
            self.model.program(),
            self.model.weights(),
            &self.input,
            fault,
        )
        .unwrap()
    }

    fn open(&self, config: &GameConfig, claim: Claim) -> Game {
        Game::open(
            config.clone(),
            self.program.clone(),
            self.model.weights().root(),
            claim,
            T0,
        )
        .unwrap()
    }

    /// Leaves of op `op`'s output that hold elements: first, middle, last.
    fn leaves(&self, op: usize) -> Vec<usize> {
        let ty = &self.program.ops[op - 1].output;
        let last = (ty.numel() - 1) * ty.dtype.size() / 32;
        let mut v = vec![0, last / 2, last];
        v.dedup();
        v
    }
}

fn config(degree: u32, levels: u32) -> GameConfig {
    GameConfig {
        degree: DissectionDegree::new(degree).unwrap(),
        tensor_levels: levels,
        clock_seconds: 3600,
        ..Default::default()
    }
}

fn check_bonds(game: &Game) {
    let p = game.payouts().unwrap();
    let c = game.config();
    assert_eq!(
        p.defender + p.challenger + p.burnt,
        c.defender_bond + c.challenger_bond,
        "bonds are conserved"
    );
}

#[test]
fn a_lying_sequencer_loses_at_every_op_and_leaf() {
    let s = demo();
    let n = s.program.ops.len();
    let mut games = 0;
    for (degree, levels) in [(2, 1), (8, 3), (64, 2)] {
        let cfg = config(degree, levels);
        let bound = cfg.bound_for(&s.program);
        for op in 1..=n {
            for leaf in s.leaves(op) {
                for propagate in [true, false] {
                    let lie = s.faulty(Fault {
                        op,
                        leaf,
                        propagate,
                    });
                    let mut game = s.open(&cfg, s.claim(lie.output_hash()));
                    let mut defender = TracePlayer::new(Side::Defender, lie);
                    let mut challenger = TracePlayer::new(Side::Challenger, s.honest());
                    let t = play(&mut game, &mut defender, &mut challenger, 60);
                    assert_eq!(
                        t.outcome.winner,
                        Side::Challenger,
                        "op {op} leaf {leaf} propagate {propagate}: {t:?}"
                    );
                    assert_eq!(
                        t.outcome.reason,
                        Reason::OneStepMismatch,
                        "op {op} leaf {leaf}"
                    );
                    assert!(t.refused.is_empty(), "{:?}", t.refused);
                    assert!(
                        t.moves.len() as u32 <= bound.moves,
                        "{} moves > bound {}",
                        t.moves.len(),
                        bound.moves
                    );
                    check_bonds(&game);
                    games += 1;
                }
            }
        }
    }
    assert!(games > 200);
}

#[test]
fn a_false_challenge_loses_wherever_it_disputes() {
    let s = demo();
    let n = s.program.ops.len();
    let cfg = config(8, 3);
    let truth = s.honest();
    for op in 1..=n {
        for leaf in s.leaves(op) {
            let mut game = s.open(&cfg, s.claim(truth.output_hash()));
            let mut defender = TracePlayer::new(Side::Defender, s.honest());
            let mut challenger = TracePlayer::new(
                Side::Challenger,
                s.faulty(Fault {
                    op,
                    leaf,
                    propagate: true,
                }),
            );
            let t = play(&mut game, &mut defender, &mut challenger, 60);
            assert_eq!(t.outcome.winner, Side::Defender, "op {op} leaf {leaf}");
            assert_eq!(t.outcome.reason, Reason::OneStepMatch);
            check_bonds(&game);
        }
    }
    // A challenger that agrees with everything and disputes anyway.
    let mut game = s.open(&cfg, s.claim(truth.output_hash()));
    let t = play(
        &mut game,
        &mut TracePlayer::new(Side::Defender, s.honest()),
        &mut TracePlayer::new(Side::Challenger, s.honest()),
        1,
    );
    assert_eq!(t.outcome.winner, Side::Defender);
}

/// Plays `inner` for `moves` moves, then stops answering.
struct Quitter<P> {
    inner: P,
    moves: usize,
}

impl<P: Player> Player for Quitter<P> {
    fn side(&self) -> Side {
        self.inner.side()
    }
    fn next_move(&mut self, game: &Game) -> Option<Move> {
        if self.moves == 0 {
            return None;
        }
        self.moves -= 1;
        self.inner.next_move(game)
    }
}

#[test]
fn stalling_loses_by_the_clock_in_every_phase() {
    let s = demo();
    let cfg = config(8, 3);
    let truth = s.honest();
    for quit_after in 0..8 {
        // An honest defender that stops answering loses to an honest challenger disputing it.
        let lie = s.faulty(Fault {
            op: 20,
            leaf: 0,
            propagate: true,
        });
        let mut game = s.open(&cfg, s.claim(lie.output_hash()));
        let mut defender = Quitter {
            inner: TracePlayer::new(Side::Defender, lie),
            moves: quit_after,
        };
        let t = play(
            &mut game,
            &mut defender,
            &mut TracePlayer::new(Side::Challenger, s.honest()),
            10,
        );
        assert_eq!(
            t.outcome.winner,
            Side::Challenger,
            "quit after {quit_after}"
        );
        let defender_moves = t.moves.iter().filter(|m| m.side == Side::Defender).count();
        if t.outcome.reason == Reason::Timeout {
            assert_eq!(
                defender_moves, quit_after,
                "it stopped after {quit_after} moves"
            );
            assert!(
                t.ended_at > T0 + cfg.clock_seconds,
                "a timeout needs the clock to run out"
            );
        } else {
            // It had made every move a game takes before it would have quit.
            assert!(defender_moves <= quit_after);
        }

        let mut game = s.open(&cfg, s.claim(truth.output_hash()));
        let mut challenger = Quitter {
            inner: TracePlayer::new(
                Side::Challenger,
                s.faulty(Fault {
                    op: 7,
                    leaf: 1,
                    propagate: true,
                }),
            ),
            moves: quit_after,
        };
        let t = play(
            &mut game,
            &mut TracePlayer::new(Side::Defender, s.honest()),
            &mut challenger,
            10,
        );
        assert_eq!(
            t.outcome.winner,
            Side::Defender,
            "challenger quit after {quit_after}"
        );
        check_bonds(&game);
    }
    // A sequencer whose claimed output is not even in its trace cannot make its first move.
    let mut game = s.open(&cfg, s.claim(H256([9; 32])));
    let t = play(
        &mut game,
        &mut TracePlayer::new(Side::Defender, s.honest()),
        &mut Silent(Side::Challenger),
        10,
    );
    assert_eq!(t.outcome.winner, Side::Challenger);
    assert_eq!(
        t.refused.len(),
        1,
        "the bad final reveal is refused: {:?}",
        t.refused
    );
}

#[test]
fn the_referee_refuses_bad_moves_and_changes_nothing() {
    let s = demo();
    let cfg = config(8, 3);
    let truth = s.honest();
    let mut game = s.open(&cfg, s.claim(truth.output_hash()));
    let mut defender = TracePlayer::new(Side::Defender, s.honest());
    let good = defender.next_move(&game).unwrap();
    let before = game.phase().clone();
    // Wrong side, wrong move, time going back, a tampered proof, an expired clock.
    assert!(game.apply(Side::Challenger, good.clone(), T0 + 1).is_err());
    assert!(
        game.apply(Side::Defender, Move::Pick { part: 0 }, T0 + 1)
            .is_err()
    );
    assert!(game.apply(Side::Defender, good.clone(), T0 - 1).is_err());
    let Move::RevealFinal {
        activations_root,
        mut output_siblings,
    } = good.clone()
    else {
        panic!()
    };
    output_siblings[0].0[0] ^= 1;
    assert!(
        game.apply(
            Side::Defender,
            Move::RevealFinal {
                activations_root,
                output_siblings
            },
            T0 + 1
        )
        .is_err()
    );
    assert!(
        game.apply(Side::Defender, good.clone(), T0 + cfg.clock_seconds + 1)
            .is_err()
    );
    assert!(
        game.claim_timeout(Side::Challenger, T0 + cfg.clock_seconds)
            .is_err(),
        "not yet out of time"
    );
    assert_eq!(game.phase(), &before);
    assert_eq!(game.moves(), 0);
    game.apply(Side::Defender, good, T0 + cfg.clock_seconds)
        .unwrap();
    assert!(matches!(game.phase(), Phase::AwaitDissection { .. }));
    assert_eq!(
        game.clock_left(Side::Defender, T0 + 2 * cfg.clock_seconds),
        0
    );
    // A tampered one-step opening is refused, the honest one accepted.
    let lie = s.faulty(Fault {
        op: 8,
        leaf: 2,
        propagate: true,
    });
    let mut game = s.open(&cfg, s.claim(lie.output_hash()));
    let mut d = TracePlayer::new(Side::Defender, lie);
    let mut c = TracePlayer::new(Side::Challenger, s.honest());
    let mut now = T0;
    while !matches!(game.phase(), Phase::AwaitOneStep { .. }) {
        now += 1;
        let side = game.turn().unwrap();
        let mv = if side == Side::Defender {
            d.next_move(&game)
        } else {
            c.next_move(&game)
        }
        .unwrap();
        game.apply(side, mv, now).unwrap();
    }
    let Some(Move::OneStep { element, operands }) = c.next_move(&game) else {
        panic!()
    };
    let mut bad = operands.clone();
    bad[0].ranges[0].leaves[0].0[5] ^= 1;
    assert!(
        game.apply(
            Side::Challenger,
            Move::OneStep {
                element,
                operands: bad
            },
            now + 1
        )
        .is_err()
    );
    let mut missing = operands.clone();
    missing[1].ranges.clear();
    let e = game
        .apply(
            Side::Challenger,
            Move::OneStep {
                element,
                operands: missing.clone(),
            },
            now + 1,
        )
        .unwrap_err();
    assert!(e.to_string().contains("siblings without leaves"), "{e}");
    missing[1].siblings.clear();
    let e = game
        .apply(
            Side::Challenger,
            Move::OneStep {
                element,
                operands: missing,
            },
            now + 1,
        )
        .unwrap_err();
    assert!(e.to_string().contains("not revealed"), "{e}");
    game.apply(
        Side::Challenger,
        Move::OneStep { element, operands },
        now + 1,
    )
    .unwrap();
    assert_eq!(game.outcome().unwrap().winner, Side::Challenger);
}

#[test]
fn moves_are_plain_data() {
    let s = demo();
    let lie = s.faulty(Fault {
        op: 30,
        leaf: 0,
        propagate: false,
    });
    let mut game = s.open(&config(8, 3), s.claim(lie.output_hash()));
    let t = play(
        &mut game,
        &mut TracePlayer::new(Side::Defender, lie),
        &mut TracePlayer::new(Side::Challenger, s.honest()),
        5,
    );
    let json = serde_json::to_string(&t).unwrap();
    let back: bisection::Transcript = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
}
