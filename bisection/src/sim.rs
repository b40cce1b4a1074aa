//! Playing a whole game between two players against the referee.

use crate::config::Side;
use crate::game::{Game, GameError, Move, Outcome};
use crate::player::Player;
use serde::{Deserialize, Serialize};

/// One accepted move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Played {
    /// Who moved.
    pub side: Side,
    /// When.
    pub at: u64,
    /// The move.
    pub mv: Move,
}

/// The record of a finished game.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// The accepted moves, in order.
    pub moves: Vec<Played>,
    /// Moves the referee refused, with the reason (a player that errs loses time, not the game).
    pub refused: Vec<(Side, String)>,
    /// The outcome.
    pub outcome: Outcome,
    /// Trace-bisection and tensor-bisection rounds played.
    pub rounds: (u32, u32),
    /// When the game ended.
    pub ended_at: u64,
}

/// Plays `game` to its end. Each player answers `think_seconds` after its turn starts; a
/// player that does not move (or only makes refused moves) is timed out by the other side.
pub fn play(
    game: &mut Game,
    defender: &mut dyn Player,
    challenger: &mut dyn Player,
    think_seconds: u64,
) -> Transcript {
    let mut moves = Vec::new();
    let mut refused = Vec::new();
    let mut now = game.turn_started();
    let outcome = loop {
        if let Some(o) = game.outcome() {
            break o;
        }
        let side = game.turn().expect("an unresolved game has a side to move");
        let player: &mut dyn Player = match side {
            Side::Defender => defender,
            Side::Challenger => challenger,
        };
        now = game.turn_started() + think_seconds;
        let accepted = match player.next_move(game) {
            Some(mv) => match game.apply(side, mv.clone(), now) {
                Ok(()) => {
                    moves.push(Played { side, at: now, mv });
                    true
                }
                Err(e) => {
                    refused.push((side, e.to_string()));
                    false
                }
            },
            None => false,
        };
        if !accepted {
            // The side to move is stuck: its opponent waits out its clock and claims.
            now = game.turn_started() + game.clock_left(side, game.turn_started()) + 1;
            match game.claim_timeout(side.other(), now) {
                Ok(o) => break o,
                Err(GameError::NotTimedOut { .. }) => unreachable!("the clock has run out"),
                Err(e) => unreachable!("claiming a timeout failed: {e}"),
            }
        }
    };
    Transcript {
        moves,
        refused,
        outcome,
        rounds: game.rounds(),
        ended_at: now,
    }
}
