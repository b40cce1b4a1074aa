//! Game parameters and the bounds they imply.

use serde::{Deserialize, Serialize};

/// One of the two parties of a game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The sequencer, defending its claim.
    Defender,
    /// The party disputing the claim.
    Challenger,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Self::Defender => Self::Challenger,
            Self::Challenger => Self::Defender,
        }
    }

    /// Index into per-side arrays (defender 0, challenger 1).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Into how many parts one trace-bisection move splits the disputed interval: the
/// defender reveals `degree - 1` intermediate states per move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DissectionDegree(u32);

impl DissectionDegree {
    /// A degree of at least 2.
    pub fn new(degree: u32) -> Option<Self> {
        (degree >= 2).then_some(Self(degree))
    }

    /// The degree.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The rules of a game, fixed when it opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameConfig {
    /// Trace dissection degree.
    pub degree: DissectionDegree,
    /// Levels of the output tensor's Merkle tree revealed per tensor-bisection move
    /// (`2^levels` nodes), at least 1.
    pub tensor_levels: u32,
    /// Each side's chess clock, in seconds.
    pub clock_seconds: u64,
    /// The challenger's bond.
    pub challenger_bond: u128,
    /// The part of the sequencer's stake put at risk by the game.
    pub defender_bond: u128,
    /// Share of the loser's bond burnt instead of paid to the winner, in basis points.
    pub burn_bps: u32,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            degree: DissectionDegree(8),
            tensor_levels: 3,
            clock_seconds: 3 * 24 * 3600,
            challenger_bond: 1_000_000_000_000_000_000,
            defender_bond: 1_000_000_000_000_000_000,
            burn_bps: 5_000,
        }
    }
}

/// Worst-case length of a game, by phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameBound {
    /// Trace-bisection rounds (a dissection and a pick each).
    pub trace_rounds: u32,
    /// Tensor-bisection rounds (a node reveal and a pick each).
    pub tensor_rounds: u32,
    /// All moves: the final-state reveal, both bisections, the step reveal, the leaf reveal
    /// and the one-step.
    pub moves: u32,
}

impl GameConfig {
    /// The worst-case rounds of a trace of `ops` ops whose widest output tree has depth
    /// `tensor_depth` (`log2` of its padded leaf count).
    pub fn bound(&self, ops: u64, tensor_depth: u32) -> GameBound {
        let k = self.degree.get() as u64;
        let (mut len, mut trace_rounds) = (ops.max(1), 0u32);
        while len > 1 {
            // The largest part of a split of `len` into `min(k, len)` parts.
            len = len.div_ceil(k.min(len));
            trace_rounds += 1;
        }
        let tensor_rounds = tensor_depth.div_ceil(self.tensor_levels.max(1));
        GameBound {
            trace_rounds,
            tensor_rounds,
            moves: 2 * trace_rounds + 2 * tensor_rounds + 4,
        }
    }
}

impl GameConfig {
    /// The worst-case length of a game over `program`: its op count and the depth of its
    /// deepest output tree.
    pub fn bound_for(&self, program: &inference::program::Program) -> GameBound {
        let depth = program
            .ops
            .iter()
            .map(|o| inference::merkle::depth_for(inference::commit::leaf_count(&o.output)))
            .max()
            .unwrap_or(0);
        self.bound(program.ops.len() as u64, depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let c = |k| GameConfig {
            degree: DissectionDegree::new(k).unwrap(),
            tensor_levels: 3,
            ..Default::default()
        };
        assert_eq!(c(2).bound(1, 0).trace_rounds, 0);
        assert_eq!(c(2).bound(2, 0).trace_rounds, 1);
        assert_eq!(c(2).bound(1024, 0).trace_rounds, 10);
        assert_eq!(c(2).bound(1025, 0).trace_rounds, 11);
        assert_eq!(c(8).bound(512, 0).trace_rounds, 3);
        assert_eq!(c(64).bound(4096, 0).trace_rounds, 2);
        assert_eq!(c(8).bound(1, 13).tensor_rounds, 5);
        assert_eq!(c(8).bound(1, 13).moves, 14);
        assert!(DissectionDegree::new(1).is_none());
    }
}
