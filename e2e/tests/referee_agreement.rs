//! The in-memory referee (`bisection::Game`) and the Solidity `DisputeGame` agree move by
//! move (issue 5).
//!
//! On a real anvil with the real contracts (one deployment per dissection degree, 2 and 8),
//! every game is played twice:
//! - on chain, both sides through the game driver, with a local mirror referee fed each
//!   accepted move at its block's timestamp: after every move the contract's game view
//!   (phase, interval, node position, hashes, commitments, clocks, move count) must be the
//!   mirror's phase;
//! - in memory with `bisection::play` between the same players: the transcript must be the
//!   same sequence of moves, the same phases, the same outcome (winner, reason), and the
//!   referee's payouts must be the credits and burn the contract booked.
//!
//! Games: the demo model (47 ops, every op kind) with a lying defender at every op (leaf 0,
//! a consistent lie; the last leaf, a lie about one slot) against an honest challenger, a
//! lying challenger against an honest defender at several ops, one timeout game per side,
//! and in some games every move is first sent corrupted: the chain must revert with the
//! custom error matching the referee's `GameError`, and neither state may change. A few
//! games on the real MiniLM program when `models/minilm` is present (skipped with a
//! message if not, a failure when `REQUIRE_MODELS=1`).

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{U256, keccak256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use bisection::game::dissection_points;
use bisection::{
    Belief, Claim, DissectionDegree, Fault, Game, GameConfig, GameError, Move, Outcome, Phase,
    Player, Reason, Side, TracePlayer, play,
};
use inference::merkle::H256;
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tensor::Tensor;
use sequencer::chain::bindings::DisputeGame;
use sequencer::chain::deploy::{deploy, register_model};
use sequencer::chain::driver::{DriverConfig, StepOutcome};
use sequencer::chain::{
    BatchData, BatchEntry, ChainClient, ChainError, ClientConfig, DeployConfig, GameDriver,
};
use sequencer::claim::{commit_batch, request_word};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ETHER: u128 = 1_000_000_000_000_000_000;
const CLOCK: u64 = 3600;

/// What the test controls in a player between the driver's calls.
#[derive(Default)]
struct Control {
    /// Corrupt the next move (once).
    tamper: bool,
    /// Stop moving once the game has this many moves.
    stop_at: Option<u32>,
    /// The last move handed out.
    last: Option<Move>,
    /// The move it was made from, when corrupted.
    last_good: Option<Move>,
}

/// A player wrapping a [`TracePlayer`] (or none: silent), recording and corrupting moves.
struct Ctl<'a> {
    side: Side,
    inner: Option<TracePlayer<'a>>,
    ctl: Rc<RefCell<Control>>,
}

impl Player for Ctl<'_> {
    fn side(&self) -> Side {
        self.side
    }

    fn next_move(&mut self, game: &Game) -> Option<Move> {
        let mut c = self.ctl.borrow_mut();
        if c.stop_at.is_some_and(|n| game.moves() >= n) {
            return None;
        }
        let mut mv = self.inner.as_mut()?.next_move(game)?;
        if std::mem::take(&mut c.tamper) {
            c.last_good = Some(mv.clone());
            mv = tamper(&mv).0;
        }
        c.last = Some(mv.clone());
        Some(mv)
    }
}

fn flip(h: H256) -> H256 {
    let mut h = h;
    h.0[31] ^= 1;
    h
}

/// A corrupted copy of `mv`, the custom error the chain must revert with and a piece of
/// the referee's refusal.
fn tamper(mv: &Move) -> (Move, &'static str, &'static str) {
    let mut bad = mv.clone();
    let expect = match &mut bad {
        Move::RevealFinal {
            output_siblings, ..
        } => {
            output_siblings[0] = flip(output_siblings[0]);
            ("InvalidOutputProof", "output slot")
        }
        Move::Dissect { states } => {
            states.pop();
            ("WrongStateCount", "interior points")
        }
        Move::Pick { part } => {
            *part = 1000;
            ("BadPart", "part 1000 of")
        }
        Move::RevealStep { data_root, .. } => {
            *data_root = flip(*data_root);
            ("SlotNotSet", "with slot i set")
        }
        Move::RevealNodes { nodes } => {
            nodes[0] = flip(nodes[0]);
            ("NodesMismatch", "do not hash to the disputed node")
        }
        Move::PickNode { child } => {
            *child = 1000;
            ("BadChild", "child 1000 of")
        }
        Move::RevealLeaf { leaf } => {
            *leaf = flip(*leaf);
            ("LeafMismatch", "does not hash to the disputed leaf")
        }
        Move::OneStep { element, .. } => {
            *element = 1000;
            ("BadElement", "element 1000 of a leaf")
        }
    };
    (bad, expect.0, expect.1)
}

fn reason_code(r: Reason) -> u8 {
    match r {
        Reason::OneStepMismatch => 1,
        Reason::OneStepMatch => 2,
        Reason::NonZeroPadding => 3,
        Reason::ZeroPadding => 4,
        Reason::Timeout => 5,
    }
}

fn b(h: H256) -> alloy::primitives::B256 {
    alloy::primitives::B256::from(h.0)
}

fn commitment(hs: &[H256]) -> alloy::primitives::B256 {
    keccak256(hs.iter().flat_map(|h| h.0).collect::<Vec<u8>>())
}

/// The contract's view of a game must be the referee's state.
fn agree(g: &Game, v: &DisputeGame::GameView) -> Result<(), String> {
    let mut diffs = Vec::new();
    let mut eq = |what: &str, ok: bool| {
        if !ok {
            diffs.push(what.to_string());
        }
    };
    let (code, p) = match g.phase() {
        Phase::AwaitFinal => {
            eq("a=s0", v.a == b(g.initial_state()));
            eq("b=output", v.b == b(g.claim().output_hash));
            (1, "AwaitFinal")
        }
        Phase::AwaitDissection { lo, hi, s_lo, s_hi } => {
            eq("lo", v.lo == *lo);
            eq("hi", v.hi == *hi);
            eq("a=s_lo", v.a == b(*s_lo));
            eq("b=s_hi", v.b == b(*s_hi));
            (2, "AwaitDissection")
        }
        Phase::AwaitPick { points, states } => {
            eq("lo", v.lo == points[0]);
            eq("hi", v.hi == *points.last().unwrap());
            eq(
                "points",
                *points == dissection_points(v.lo, v.hi, g.config().degree.get()),
            );
            eq("a=s_lo", v.a == b(states[0]));
            eq("b=s_hi", v.b == b(*states.last().unwrap()));
            eq(
                "commitment",
                v.commitment == commitment(&states[1..states.len() - 1]),
            );
            (3, "AwaitPick")
        }
        Phase::AwaitStep { op, s_prev, s_op } => {
            eq("hi=op", v.hi == *op && v.lo == op - 1);
            eq("a=s_prev", v.a == b(*s_prev));
            eq("b=s_op", v.b == b(*s_op));
            (4, "AwaitStep")
        }
        Phase::AwaitNodes {
            op,
            level,
            index,
            hash,
        } => {
            eq("hi=op", v.hi == *op);
            eq("level", v.level == *level);
            eq("index", v.index == *index);
            eq("a=hash", v.a == b(*hash));
            (5, "AwaitNodes")
        }
        Phase::AwaitNodePick {
            op,
            level,
            first,
            nodes,
        } => {
            eq("hi=op", v.hi == *op);
            eq("level", v.level == *level);
            eq("index=first", v.index == *first);
            eq("commitment", v.commitment == commitment(nodes));
            (6, "AwaitNodePick")
        }
        Phase::AwaitLeaf {
            op,
            leaf_index,
            hash,
        } => {
            eq("hi=op", v.hi == *op);
            eq("level", v.level == 0);
            eq("index", v.index == *leaf_index);
            eq("a=hash", v.a == b(*hash));
            (7, "AwaitLeaf")
        }
        Phase::AwaitOneStep {
            op,
            leaf_index,
            leaf,
        } => {
            eq("hi=op", v.hi == *op);
            eq("index", v.index == *leaf_index);
            eq("a=leaf", v.a == b(*leaf));
            (8, "AwaitOneStep")
        }
        Phase::Resolved(o) => {
            eq("winner", v.winner == o.winner.index() as u8);
            eq("reason", v.reason == reason_code(o.reason));
            (9, "Resolved")
        }
    };
    eq("phase", v.phase == code);
    eq("moves", v.moves == g.moves());
    eq("turnStarted", v.turnStarted == g.turn_started());
    let stored = |s: Side| match g.turn() {
        Some(t) if t == s => g.clock_left(s, g.turn_started()),
        _ => g.clock_left(s, 0),
    };
    eq("defenderLeft", v.defenderLeft == stored(Side::Defender));
    eq(
        "challengerLeft",
        v.challengerLeft == stored(Side::Challenger),
    );
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{p}: chain and referee differ in {diffs:?}\nreferee {:?}\nchain {v:?}",
            g.phase()
        ))
    }
}

/// One deployment (one dissection degree) on the shared anvil.
struct Net {
    config: GameConfig,
    seq: ChainClient,
    chal: ChainClient,
    /// To connect throwaway clients: the RPC URL, the client config, the keys by side.
    url: String,
    cc: ClientConfig,
    keys: [PrivateKeySigner; 2],
    next_request: u64,
}

impl Net {
    async fn start(anvil: &AnvilInstance, degree: u32, models: &[&Model]) -> Self {
        let keys = anvil.keys().to_vec();
        let key = |i: usize| PrivateKeySigner::from(keys[i].clone());
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(key(0)))
            .connect_http(anvil.endpoint_url());
        let config = GameConfig {
            degree: DissectionDegree::new(degree).unwrap(),
            tensor_levels: 3,
            clock_seconds: CLOCK,
            challenger_bond: ETHER,
            defender_bond: 2 * ETHER,
            burn_bps: 5_000,
        };
        let d = deploy(
            deployer.clone(),
            key(0).address(),
            &DeployConfig {
                game: config.clone(),
                ..DeployConfig::default()
            },
        )
        .await
        .unwrap();
        for m in models {
            register_model(deployer.clone(), d.registry, m, "file:///test")
                .await
                .unwrap();
        }
        let cc = ClientConfig {
            poll_interval: Duration::from_millis(2),
            ..ClientConfig::default()
        };
        let url = anvil.endpoint();
        let seq = ChainClient::connect(&url, key(1), d.rollup, cc.clone())
            .await
            .unwrap();
        seq.register_sequencer(U256::from(1000 * ETHER))
            .await
            .unwrap();
        let chal = ChainClient::connect(&url, key(2), d.rollup, cc.clone())
            .await
            .unwrap();
        Self {
            config,
            seq,
            chal,
            url,
            cc,
            keys: [key(1), key(2)],
            next_request: 1,
        }
    }

    /// A new client for `side`'s key, for a transaction that will revert: the clients'
    /// nonce cache counts a nonce for a call whose gas estimate reverted, so a reverted call
    /// through `seq` or `chal` would leave their next transaction waiting on a nonce gap.
    async fn throwaway(&self, side: Side) -> ChainClient {
        ChainClient::connect(
            &self.url,
            self.keys[side.index()].clone(),
            self.seq.addresses().rollup,
            self.cc.clone(),
        )
        .await
        .unwrap()
    }

    async fn now(&self) -> u64 {
        let head = self.seq.head().await.unwrap();
        self.seq.block_timestamp(head).await.unwrap()
    }

    async fn credits(&self) -> (U256, U256, U256) {
        let g = self.seq.games();
        (
            self.seq.games_credit(self.seq.account()).await.unwrap(),
            self.seq.games_credit(self.chal.account()).await.unwrap(),
            g.totalBurnt().call().await.unwrap(),
        )
    }
}

/// A scenario: who lies where, who stops, whether every move is first sent corrupted.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    liar: Side,
    fault: Option<Fault>,
    /// The side that stops moving, and after how many moves of the game.
    stop: Option<(Side, u32)>,
    tamper: bool,
}

/// Results of one game, for the summary.
struct Played {
    moves: u32,
    /// The custom errors of the refused calls.
    refused: Vec<&'static str>,
}

fn belief<'a>(model: &'a Model, x: &Tensor, fault: Option<Fault>) -> Belief<'a> {
    match fault {
        Some(f) => Belief::with_fault(model.program(), model.weights(), x, f).unwrap(),
        None => Belief::honest(model.program(), model.weights(), x).unwrap(),
    }
}

/// Fresh controlled players over clones of the two trace players.
fn players<'a>(
    base: &[TracePlayer<'a>; 2],
    s: &Scenario,
) -> (Ctl<'a>, Ctl<'a>, [Rc<RefCell<Control>>; 2]) {
    let ctl: [Rc<RefCell<Control>>; 2] = [Rc::default(), Rc::default()];
    let mk = |side: Side| {
        let c = &ctl[side.index()];
        if let Some((who, n)) = s.stop
            && who == side
        {
            c.borrow_mut().stop_at = Some(n);
        }
        Ctl {
            side,
            inner: Some(base[side.index()].clone()),
            ctl: c.clone(),
        }
    };
    let (d, c) = (mk(Side::Defender), mk(Side::Challenger));
    (d, c, ctl)
}

async fn play_game(net: &mut Net, model: &Model, x: &Tensor, s: Scenario) -> Played {
    let what = format!("degree {} {s:?}", net.config.degree.get());
    // The claim: the defender's output.
    let lie = |side: Side| if s.liar == side { s.fault } else { None };
    let defender_belief = belief(model, x, lie(Side::Defender));
    let output = defender_belief.trace().output().clone();
    let base = [
        TracePlayer::new(Side::Defender, defender_belief),
        TracePlayer::new(Side::Challenger, belief(model, x, lie(Side::Challenger))),
    ];
    let request_id = request_word(net.next_request);
    net.next_request += 1;
    let data = BatchData {
        entries: vec![BatchEntry {
            request_id,
            model_id: model.id(),
            input: x.clone(),
            output,
        }],
    };
    let (batch_id, _) = net.seq.post_batch(&data).await.unwrap();
    let claims = data.claims().unwrap();
    let (game_id, receipt) = net
        .chal
        .challenge(batch_id, 0, &claims[0], &commit_batch(&claims).proofs[0])
        .await
        .unwrap();
    let opened_at = net
        .seq
        .block_timestamp(receipt.block_number.unwrap())
        .await
        .unwrap();
    let view = net.seq.game(game_id).await.unwrap();
    let config = GameConfig {
        challenger_bond: view.challengerBond,
        defender_bond: view.defenderBond,
        ..net.config.clone()
    };
    let claim = Claim {
        request_id: claims[0].request_id,
        model_id: claims[0].model_id,
        input_hash: claims[0].input_hash,
        output_hash: claims[0].output_hash,
    };
    let program = Arc::new(model.program().clone());
    let wr = model.weights().root();
    let fresh =
        |at: u64| Game::open(config.clone(), program.clone(), wr, claim.clone(), at).unwrap();

    // In memory: the referee alone.
    let (mut d, mut c, _) = players(&base, &s);
    let mut game = fresh(opened_at);
    let transcript = play(&mut game, &mut d, &mut c, 7);
    assert!(
        transcript.refused.is_empty(),
        "{what}: {:?}",
        transcript.refused
    );
    let payouts = game.payouts().unwrap();
    let mut replay = fresh(opened_at);
    let mut phases = vec![replay.phase().clone()];
    for m in &transcript.moves {
        replay.apply(m.side, m.mv.clone(), m.at).unwrap();
        phases.push(replay.phase().clone());
    }
    if replay.outcome().is_none() {
        // Ended by a timeout claim, not a move.
        assert_eq!(transcript.outcome.reason, Reason::Timeout, "{what}");
        phases.push(Phase::Resolved(transcript.outcome));
    }

    // On chain, with a mirror referee.
    let credits_before = net.credits().await;
    let (d, c, ctl) = players(&base, &s);
    let dc = DriverConfig {
        poll_interval: Duration::from_millis(2),
        withdraw: false,
        from_block: receipt.block_number.unwrap(),
    };
    let mut dd = GameDriver::new(net.seq.clone(), game_id, program.clone(), wr, d, dc.clone())
        .await
        .unwrap();
    let mut cd = GameDriver::new(
        net.chal.clone(),
        game_id,
        program.clone(),
        wr,
        c,
        dc.clone(),
    )
    .await
    .unwrap();
    let mut mirror = fresh(opened_at);
    agree(&mirror, &net.seq.game(game_id).await.unwrap()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut moves = Vec::new();
    let mut chain_phases = vec![mirror.phase().clone()];
    let mut refused = Vec::new();
    if s.tamper {
        // A timeout claimed early: refused by both.
        let call = DisputeGame::claimTimeoutCall { gameId_: game_id };
        let err = net
            .throwaway(Side::Challenger)
            .await
            .transact(
                "claimTimeout",
                net.chal.addresses().games,
                &call,
                U256::ZERO,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ChainError::Reverted { reason, .. } if reason.contains("NotTimedOut")),
            "{what}: {err}"
        );
        let now = net.now().await;
        assert!(matches!(
            mirror.clone().claim_timeout(Side::Challenger, now),
            Err(GameError::NotTimedOut { .. })
        ));
        refused.push("NotTimedOut");
    }
    while let Some(turn) = mirror.turn() {
        let drv_ctl = &ctl[turn.index()];
        let stopping = drv_ctl
            .borrow()
            .stop_at
            .is_some_and(|n| mirror.moves() >= n);
        if s.tamper && !stopping {
            // First the move corrupted: the chain reverts, the referee refuses, nothing changes.
            let before = net.seq.game(game_id).await.unwrap();
            // Sent by a throwaway driver (see `Net::throwaway`).
            let (pd, pc, pctl) = players(&base, &s);
            let probe_player = if turn == Side::Defender { pd } else { pc };
            let probe_ctl = &pctl[turn.index()];
            probe_ctl.borrow_mut().tamper = true;
            let mut probe_driver = GameDriver::new(
                net.throwaway(turn).await,
                game_id,
                program.clone(),
                wr,
                probe_player,
                dc.clone(),
            )
            .await
            .unwrap();
            let err = probe_driver.step().await.unwrap_err();
            let bad = probe_ctl.borrow_mut().last.take().unwrap();
            let now = net.now().await;
            let mut probe = mirror.clone();
            let refusal = probe.apply(turn, bad.clone(), now).unwrap_err();
            assert_eq!(
                (probe.phase(), probe.moves(), probe.turn_started()),
                (mirror.phase(), mirror.moves(), mirror.turn_started()),
                "{what}: a refused move changed the referee"
            );
            let good = probe_ctl.borrow_mut().last_good.take().unwrap();
            let (expected_bad, chain_err, referee_err) = tamper(&good);
            assert_eq!(bad, expected_bad, "{what}");
            assert!(
                matches!(&err, ChainError::Reverted { reason, .. } if reason.contains(chain_err)),
                "{what}: chain refused {bad:?} with {err}, expected {chain_err}"
            );
            assert!(
                matches!(&refusal, GameError::Invalid(m) if m.contains(referee_err)),
                "{what}: referee refused {bad:?} with {refusal:?}, expected {referee_err}"
            );
            let after = net.seq.game(game_id).await.unwrap();
            assert_eq!(format!("{before:?}"), format!("{after:?}"), "{what}");
            agree(&mirror, &after).unwrap_or_else(|e| panic!("{what}: after a refusal: {e}"));
            refused.push(chain_err);
        }
        let step = match turn {
            Side::Defender => dd.step().await,
            Side::Challenger => cd.step().await,
        }
        .unwrap_or_else(|e| panic!("{what}: {turn:?} step: {e}"));
        match step {
            StepOutcome::Moved(_) => {
                let mv = drv_ctl.borrow_mut().last.take().unwrap();
                let now = net.now().await;
                mirror.apply(turn, mv.clone(), now).unwrap_or_else(|e| {
                    panic!("{what}: the chain accepted {mv:?}, the referee refuses it: {e}")
                });
                moves.push((turn, mv));
            }
            StepOutcome::Stuck => {
                // The stuck side's clock runs out; its opponent claims the timeout.
                let left = mirror.clock_left(turn, net.now().await);
                let p = net.seq.provider();
                let _: serde_json::Value = p
                    .raw_request("evm_increaseTime".into(), (left + 1,))
                    .await
                    .unwrap();
                let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
                let claimed = match turn {
                    Side::Defender => cd.step().await,
                    Side::Challenger => dd.step().await,
                }
                .unwrap();
                assert_eq!(claimed, StepOutcome::ClaimedTimeout, "{what}");
                let now = net.now().await;
                mirror.claim_timeout(turn.other(), now).unwrap();
            }
            other => panic!("{what}: {turn:?} to move, the driver says {other:?}"),
        }
        let v = net.seq.game(game_id).await.unwrap();
        agree(&mirror, &v).unwrap_or_else(|e| {
            panic!(
                "{what}: after move {} ({:?}): {e}",
                moves.len(),
                moves.last()
            )
        });
        chain_phases.push(mirror.phase().clone());
    }

    // Same moves, same phases, same outcome, same payouts.
    let referee_moves: Vec<(Side, Move)> = transcript
        .moves
        .iter()
        .map(|m| (m.side, m.mv.clone()))
        .collect();
    assert_eq!(moves, referee_moves, "{what}: move sequences differ");
    assert_eq!(chain_phases, phases, "{what}: phase sequences differ");
    let outcome: Outcome = mirror.outcome().unwrap();
    assert_eq!(outcome, transcript.outcome, "{what}");
    let (d1, c1, burnt1) = net.credits().await;
    let (d0, c0, burnt0) = credits_before;
    assert_eq!(
        (d1 - d0, c1 - c0, burnt1 - burnt0),
        (
            U256::from(payouts.defender),
            U256::from(payouts.challenger),
            U256::from(payouts.burnt)
        ),
        "{what}: payouts"
    );
    assert_eq!(mirror.payouts(), Some(payouts), "{what}");
    // The honest side wins.
    let expected_winner = match (s.stop, s.liar) {
        (Some((who, _)), _) => who.other(),
        (None, liar) => liar.other(),
    };
    assert_eq!(outcome.winner, expected_winner, "{what}: {outcome:?}");
    Played {
        moves: mirror.moves(),
        refused,
    }
}

fn tally(games: &mut usize, moves: &mut u32, refused: &mut Vec<&'static str>, p: Played) {
    *games += 1;
    *moves += p.moves;
    refused.extend(p.refused);
}

fn minilm(root: &Path) -> Option<(Model, Tensor)> {
    let dir = root.join("models/minilm/seq16");
    if !dir.join(MANIFEST_FILE).is_file() {
        assert_ne!(
            std::env::var("REQUIRE_MODELS").as_deref(),
            Ok("1"),
            "models/minilm is missing: run `make models`"
        );
        eprintln!("skipped the MiniLM games: models/minilm is not prepared (run `make models`)");
        return None;
    }
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let model = Model::from_bytes(
        &read(PROGRAM_FILE),
        &read(WEIGHTS_FILE),
        &read(MANIFEST_FILE),
    )
    .unwrap();
    let tok = inference::tokenize::TextTokenizer::from_json(&read("tokenizer.json"), 16).unwrap();
    let x = inference::import::bert::input(
        &tok.encode("The referee and the contract agree.").unwrap(),
        16,
    )
    .unwrap();
    Some((model, x))
}

#[tokio::test(flavor = "current_thread")]
async fn referee_and_dispute_game_agree_move_by_move() {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let demo = inference::demo::model().unwrap();
    let x = inference::demo::input(&inference::demo::tokens("agree, move by move")).unwrap();
    let program = demo.program();
    let n = program.ops.len();
    let kinds: std::collections::BTreeSet<String> = program
        .ops
        .iter()
        .map(|o| {
            format!("{:?}", o.op)
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!((n, kinds.len()), (47, 19), "the demo: 47 ops of 19 kinds");
    let big = minilm(root);

    let anvil = Anvil::at(root.join("contracts/node_modules/.bin/anvil"))
        .try_spawn()
        .expect("anvil (run `make setup`)");
    let mut models: Vec<&Model> = vec![&demo];
    if let Some((m, _)) = &big {
        models.push(m);
    }
    let (mut games, mut moves, mut refused) = (0usize, 0u32, Vec::new());
    for degree in [2u32, 8] {
        let mut net = Net::start(&anvil, degree, &models).await;
        // A lying defender at every op: leaf 0 (a consistent lie) and the last leaf (a lie
        // about that slot only); every move first sent corrupted at a few ops.
        for op in 1..=n {
            let ty = &program.ops[op - 1].output;
            let last = (ty.numel() - 1) / (32 / ty.dtype.size());
            for (leaf, propagate) in [(0, true), (last, false)] {
                let tamper = degree == 8 && leaf == 0 && [1, 17, 30, n].contains(&op);
                let s = Scenario {
                    liar: Side::Defender,
                    fault: Some(Fault {
                        op,
                        leaf,
                        propagate,
                    }),
                    stop: None,
                    tamper,
                };
                tally(
                    &mut games,
                    &mut moves,
                    &mut refused,
                    play_game(&mut net, &demo, &x, s).await,
                );
            }
        }
        // A lying challenger at several ops against an honest defender.
        for (op, leaf) in [(1, 0), (9, 1), (20, 0), (31, 2), (n - 1, 0), (n, 0)] {
            let s = Scenario {
                liar: Side::Challenger,
                fault: Some(Fault {
                    op,
                    leaf,
                    propagate: true,
                }),
                stop: None,
                tamper: degree == 8 && op == 20,
            };
            tally(
                &mut games,
                &mut moves,
                &mut refused,
                play_game(&mut net, &demo, &x, s).await,
            );
        }
        // Timeouts: a silent defender, and a challenger that stops mid-game.
        let lie = Fault {
            op: 25,
            leaf: 0,
            propagate: true,
        };
        for (liar, stop) in [
            (Side::Challenger, (Side::Defender, 0)),
            (Side::Defender, (Side::Challenger, 3)),
        ] {
            let s = Scenario {
                liar,
                fault: Some(lie),
                stop: Some(stop),
                tamper: false,
            };
            tally(
                &mut games,
                &mut moves,
                &mut refused,
                play_game(&mut net, &demo, &x, s).await,
            );
        }
        // The real MiniLM program.
        if let Some((m, mx)) = &big {
            let out = m.program().output as usize;
            for (liar, op, leaf) in [(Side::Defender, out, 0), (Side::Challenger, 120, 3)] {
                let s = Scenario {
                    liar,
                    fault: Some(Fault {
                        op,
                        leaf,
                        propagate: true,
                    }),
                    stop: None,
                    tamper: degree == 8 && liar == Side::Defender,
                };
                tally(
                    &mut games,
                    &mut moves,
                    &mut refused,
                    play_game(&mut net, m, mx, s).await,
                );
            }
        }
    }
    // Every kind of move was refused once corrupted, and an early timeout claim.
    let refusal_kinds: std::collections::BTreeSet<&str> = refused.iter().copied().collect();
    assert_eq!(
        refusal_kinds.len(),
        9,
        "refusals exercised: {refusal_kinds:?}"
    );
    eprintln!(
        "{games} games agree move by move ({moves} moves; {} corrupted moves or early \
         timeout claims refused by both: {refusal_kinds:?}) in {:.1?}",
        refused.len(),
        started.elapsed()
    );
}
