//! The scenarios: one module each, each a `run(&Options) -> Result<ScenarioReport>` over a
//! fresh [`Harness`].
//!
//! - [`fraud`]: the sequencer lies (a consistent faulty trace, one case per op kind by
//!   default); the challenger bot disputes and wins at the one-step;
//! - [`false_challenge`]: a challenger disputes honest claims, lying at chosen positions; the
//!   sequencer's automatic defence wins at the one-step;
//! - [`timeout`]: a side that stops answering loses on its clock (both sides);
//! - [`parallel`]: several challengers dispute one wrong claim at once; the claim is
//!   invalidated within one game's length of the last game opened;
//! - [`honest`] and [`crash`]: the real `sequencer` and `challenger` binaries on the devnet
//!   ([`crate::devnet`]): requests finalize and the consumer contract reads them; a
//!   `kill -9` mid-batching loses and doubles nothing.
//!
//! What is shared lives here: the options, the positions of faults, a player that stops
//! answering, the bot set-up and the payout rules.

pub mod crash;
pub mod false_challenge;
pub mod fraud;
pub mod honest;
pub mod parallel;
pub mod timeout;

use crate::harness::{self, Harness, HarnessOptions, SCENARIO_POLL};
use crate::report::Check;
use crate::{Error, Result};
use alloy::primitives::U256;
use bisection::{Belief, DissectionDegree, Fault, Game, Move, Player, Side};
use challenger::{Challenger, ChallengerConfig, Metrics, ModelStore};
use inference::commit::leaf_count;
use inference::model::Model;
use inference::ops::OpKind;
use inference::tensor::Tensor;
use sequencer::chain::DriverConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Default number of challengers of the `parallel` scenario.
pub const DEFAULT_PARALLEL_CHALLENGERS: usize = 3;
/// Default moves a silent side makes before it stops answering (`timeout`).
pub const DEFAULT_SILENT_AFTER: u32 = 2;

/// Sentences the cases run on (one per case, in turn). Each fills the 16-token bucket (no
/// padded rows, which the attention mask and the pooling ignore: a lie there would not
/// change the output).
pub const SENTENCES: &[&str] = &[
    "A lying sequencer posts a wrong embedding and hopes that nobody will ever check its work again.",
    "The challenger re-executes every claim on a laptop and disputes the ones whose outputs are wrong.",
    "Bisection finds the first op where the two traces differ, then the one leaf that differs.",
    "One element of one op is computed on chain by the kernel, and the side that was wrong loses.",
    "Bonds move to the side that was right, and part of the loser's bond is burnt for good.",
    "Clocks run out for whoever stops answering, so silence loses the game and the bond with it.",
    "Several challengers can dispute the same claim at once, and each plays its own game to the end.",
    "An honest claim survives every false challenge and becomes final once its window has passed.",
];

/// Which side stops answering in the `timeout` scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SilentSide {
    /// The sequencer stops defending a wrong claim.
    Sequencer,
    /// A challenger stops attacking an honest claim.
    Challenger,
    /// One case each.
    Both,
}

/// The options of every scenario (each uses the ones that concern it).
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Print the report as one JSON object, the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// The model directory (MiniLM's 16-token bucket keeps games fast).
    #[arg(long = "model", default_value_os_t = harness::default_model_dir())]
    pub model_dir: PathBuf,
    /// The anvil binary.
    #[arg(long, default_value_os_t = harness::default_anvil())]
    pub anvil: PathBuf,
    /// The op (1-based over the trace's ops) where the lie is placed; one case only.
    #[arg(long = "fault-op")]
    pub fault_op: Option<usize>,
    /// The 32-byte leaf of that op's output the lie changes (default: the middle one).
    #[arg(long = "fault-leaf", requires = "fault_op")]
    pub fault_leaf: Option<usize>,
    /// Restrict the default cases (one per op kind) to these kinds (`fully_connected`, ...).
    #[arg(long = "op-kinds", value_delimiter = ',')]
    pub op_kinds: Vec<String>,
    /// Challengers disputing the one claim (`parallel`).
    #[arg(long, default_value_t = DEFAULT_PARALLEL_CHALLENGERS)]
    pub challengers: usize,
    /// Which side stops answering (`timeout`).
    #[arg(long, value_enum, default_value_t = SilentSide::Both)]
    pub silent: SilentSide,
    /// Moves the silent side makes before it stops (`timeout`).
    #[arg(long = "silent-after", default_value_t = DEFAULT_SILENT_AFTER)]
    pub silent_after: u32,
    /// Trace dissection degree.
    #[arg(long, default_value_t = harness::DEFAULT_DEGREE)]
    pub degree: u32,
    /// Each side's clock, in seconds.
    #[arg(long = "clock-seconds", default_value_t = harness::DEFAULT_CLOCK_SECONDS)]
    pub clock_seconds: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            json: false,
            model_dir: harness::default_model_dir(),
            anvil: harness::default_anvil(),
            fault_op: None,
            fault_leaf: None,
            op_kinds: Vec::new(),
            challengers: DEFAULT_PARALLEL_CHALLENGERS,
            silent: SilentSide::Both,
            silent_after: DEFAULT_SILENT_AFTER,
            degree: harness::DEFAULT_DEGREE,
            clock_seconds: harness::DEFAULT_CLOCK_SECONDS,
        }
    }
}

impl Options {
    /// The devnet these options ask for, with `challengers` accounts.
    pub fn harness(&self, challengers: usize) -> Result<HarnessOptions> {
        let mut h = HarnessOptions {
            model_dir: self.model_dir.clone(),
            anvil: self.anvil.clone(),
            challengers,
            ..HarnessOptions::default()
        };
        h.game.degree = DissectionDegree::new(self.degree)
            .ok_or_else(|| Error::Usage(format!("degree {} (at least 2)", self.degree)))?;
        h.game.clock_seconds = self.clock_seconds;
        Ok(h)
    }
}

/// Human-readable progress on stderr.
pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[e2e] {}", msg.as_ref());
}

/// Where a lie is placed: op `op` (1-based), leaf `leaf` of its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The op, 1-based.
    pub op: usize,
    /// The 32-byte leaf of its output.
    pub leaf: usize,
    /// The op's kind.
    pub kind: OpKind,
    /// Whether the op was chosen by the user (then it is never moved).
    pub chosen_op: bool,
    /// Whether the leaf was chosen by the user (then it is never moved).
    pub chosen_leaf: bool,
}

/// The positions the options ask for: the chosen `--fault-op`/`--fault-leaf`, or one per op
/// kind of the program (its last op of that kind, the middle leaf of its output),
/// restricted to `--op-kinds`.
pub fn positions(model: &Model, opts: &Options) -> Result<Vec<Position>> {
    let program = model.program();
    let n = program.ops.len();
    if let Some(op) = opts.fault_op {
        if op == 0 || op > n {
            return Err(Error::Usage(format!(
                "--fault-op {op} is out of range: the trace has ops 1..={n}"
            )));
        }
        let out = &program.ops[op - 1].output;
        let leaves = leaf_count(out);
        let leaf = opts.fault_leaf.unwrap_or(leaves / 2);
        let per_leaf = 32 / out.dtype.size();
        if leaf >= leaves || leaf * per_leaf >= out.numel() {
            return Err(Error::Usage(format!(
                "--fault-leaf {leaf} is out of range: op {op}'s output {out} has leaves 0..{leaves}"
            )));
        }
        return Ok(vec![Position {
            op,
            leaf,
            kind: program.ops[op - 1].op.kind(),
            chosen_op: true,
            chosen_leaf: opts.fault_leaf.is_some(),
        }]);
    }
    for k in &opts.op_kinds {
        if !OpKind::ALL.iter().any(|x| x.name() == k) {
            return Err(Error::Usage(format!("unknown op kind {k:?}")));
        }
    }
    // Kinds in order of first appearance, each at its last op: the closest to the output,
    // where a one-bit lie is least likely to be rounded away before it reaches the output.
    let mut seen: Vec<OpKind> = Vec::new();
    let mut last: Vec<usize> = Vec::new();
    for (i, node) in program.ops.iter().enumerate() {
        let kind = node.op.kind();
        match seen.iter().position(|k| *k == kind) {
            Some(j) => last[j] = i + 1,
            None => {
                seen.push(kind);
                last.push(i + 1);
            }
        }
    }
    let mut out = Vec::new();
    for (kind, op) in seen.iter().zip(&last) {
        if !opts.op_kinds.is_empty() && !opts.op_kinds.iter().any(|k| k == kind.name()) {
            continue;
        }
        out.push(Position {
            op: *op,
            leaf: leaf_count(&program.ops[op - 1].output) / 2,
            kind: *kind,
            chosen_op: false,
            chosen_leaf: false,
        });
    }
    if let Some(missing) = opts
        .op_kinds
        .iter()
        .find(|k| !seen.iter().any(|s| s.name() == k.as_str()))
    {
        return Err(Error::Usage(format!(
            "the model has no op of kind {missing:?}"
        )));
    }
    Ok(out)
}

/// The one position of a scenario that needs one: the chosen `--fault-op`/`--fault-leaf`,
/// or the middle op of the program at its middle leaf (free to move to a later op of its kind
/// if a lie there would not change the output).
pub fn single_position(model: &Model, opts: &Options) -> Result<Position> {
    if opts.fault_op.is_some() {
        return Ok(positions(model, opts)?[0]);
    }
    let program = model.program();
    let op = program.ops.len().div_ceil(2).max(1);
    let node = &program.ops[op - 1];
    Ok(Position {
        op,
        leaf: leaf_count(&node.output) / 2,
        kind: node.op.kind(),
        chosen_op: false,
        chosen_leaf: false,
    })
}

/// Ops of the same kind tried for a lie that must change the output.
const LIE_OPS_TRIED: usize = 8;
/// Leaves of one op tried for such a lie, from the middle one.
const LIE_LEAVES_TRIED: usize = 8;
/// The changes tried at one element of type `dtype`, smallest first (XORed into it): its
/// low bit, then the bit below its sign (a change of half its range, which a shift to a
/// narrower type does not round away).
fn lie_xors(dtype: inference::DType) -> [u32; 2] {
    let high = match dtype {
        inference::DType::I8 => 0x40,
        inference::DType::I16 => 0x4000,
        inference::DType::I32 => 0x4000_0000,
    };
    [1, high]
}

/// A consistent lie at `pos` on `input`: the faulty trace (later ops computed from the
/// changed value) whose output differs from the truth. A change can vanish downstream (a
/// low bit shifted away by the next requantization): that would not be a wrong claim. Then
/// a larger change of the same element is tried (the bit below its sign flipped), then the next leaves of the
/// op, then the later ops of the same kind, then the earlier
/// ones (never a chosen op or leaf: that is an error). Returns the lie and the position it was placed at.
pub fn output_changing_lie<'a>(
    model: &'a Model,
    input: &Tensor,
    pos: Position,
) -> Result<(Belief<'a>, Position)> {
    let program = model.program();
    let truth = Belief::honest(program, model.weights(), input)
        .map_err(|e| Error::Setup(format!("executing the model: {e}")))?;
    let ops: Vec<usize> = if pos.chosen_op {
        vec![pos.op]
    } else {
        let same = |op: &usize| program.ops[op - 1].op.kind() == pos.kind;
        let mut ops: Vec<usize> = (pos.op..=program.ops.len())
            .filter(same)
            .chain((1..pos.op).rev().filter(same))
            .collect();
        // Raw i32 accumulators are shifted right by the next op: their low bit rarely
        // survives. Narrower outputs first (a stable sort keeps the order otherwise).
        ops.sort_by_key(|&op| program.ops[op - 1].output.dtype == inference::DType::I32);
        ops.truncate(LIE_OPS_TRIED);
        ops
    };
    for op in ops {
        let out = &program.ops[op - 1].output;
        let leaves = leaf_count(out);
        let per_leaf = 32 / out.dtype.size();
        let first = if op == pos.op { pos.leaf } else { leaves / 2 };
        let tries = if pos.chosen_leaf {
            1
        } else {
            LIE_LEAVES_TRIED.min(leaves)
        };
        for t in 0..tries {
            let leaf = (first + t) % leaves;
            if leaf * per_leaf >= out.numel() {
                continue;
            }
            let fault = Fault {
                op,
                leaf,
                propagate: true,
            };
            // The low bit first; where later ops round that away, a larger lie at the
            // same element (the bit below its sign) before moving elsewhere.
            for xor in lie_xors(out.dtype) {
                let Ok(lie) = Belief::with_fault_xor(program, model.weights(), input, fault, xor)
                else {
                    // A lie the program cannot run on (say, an index out of range).
                    continue;
                };
                if lie.output_hash() != truth.output_hash() {
                    return Ok((lie, Position { op, leaf, ..pos }));
                }
            }
        }
    }
    Err(Error::Usage(format!(
        "a lie at op {} leaf {} ({}) does not change the model's output on this input: it would not be a wrong claim",
        pos.op, pos.leaf, pos.kind
    )))
}

/// A lie at `pos` for a challenger disputing an honest claim: any faulty trace steers its
/// picks to `pos` (its output need not differ).
pub fn challenger_lie<'a>(model: &'a Model, input: &Tensor, pos: Position) -> Result<Belief<'a>> {
    Belief::with_fault(
        model.program(),
        model.weights(),
        input,
        Fault {
            op: pos.op,
            leaf: pos.leaf,
            propagate: true,
        },
    )
    .map_err(|e| Error::Usage(e.to_string()))
}

/// A player that plays like `inner` for `moves` moves, then stops answering. The handle
/// from [`StopAfter::stopped`] turns true once it has refused a move on its turn.
#[derive(Clone, Debug)]
pub struct StopAfter<P> {
    inner: P,
    left: u32,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl<P: Player> StopAfter<P> {
    /// `inner` for `moves` moves, then silence.
    pub fn new(inner: P, moves: u32) -> Self {
        Self {
            inner,
            left: moves,
            stopped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// True once the player was asked for a move after its last one.
    pub fn stopped(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stopped.clone()
    }
}

impl<P: Player> Player for StopAfter<P> {
    fn side(&self) -> Side {
        self.inner.side()
    }

    fn next_move(&mut self, game: &Game) -> Option<Move> {
        if self.left == 0 {
            self.stopped
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return None;
        }
        let mv = self.inner.next_move(game)?;
        self.left -= 1;
        Some(mv)
    }
}

/// The game driver settings of scenarios: fast polling, winnings withdrawn.
pub fn driver_config() -> DriverConfig {
    DriverConfig {
        poll_interval: SCENARIO_POLL,
        withdraw: true,
        from_block: 0,
    }
}

/// The challenger bot of account `challenger` (an index into the harness's challengers),
/// with the scenario's model loaded.
pub fn bot(h: &Harness, challenger: usize) -> Challenger {
    let store = Arc::new(ModelStore::new());
    store.insert(h.model.as_ref().clone());
    Challenger::new(
        h.challengers[challenger].clone(),
        store,
        ChallengerConfig {
            poll_interval: SCENARIO_POLL,
            driver: driver_config(),
            ..ChallengerConfig::default()
        },
        Arc::new(Metrics::default()),
    )
}

/// What the rules pay when a side whose bond is `winner_bond` beats one whose bond is
/// `loser_bond`: `(prize credited to the winner, burnt)`.
pub fn payout(winner_bond: U256, loser_bond: U256, burn_bps: u32) -> (U256, U256) {
    let burnt = loser_bond * U256::from(burn_bps) / U256::from(10_000u32);
    (winner_bond + loser_bond - burnt, burnt)
}

/// The defender bond a game takes from a stake of `stake`.
pub fn defender_bond(h: &Harness, stake: U256) -> U256 {
    U256::from(h.game_config().defender_bond).min(stake)
}

/// The checks common to every case that reached the one-step: the bisection ended on the
/// lie's op and leaf, the game ended by the one-step, within the game's move bound.
pub fn bisection_checks(
    h: &Harness,
    record: &harness::GameRecord,
    pos: Position,
    leaf: usize,
    expected_reason: &str,
) -> Vec<Check> {
    let bound = h.game_config().bound_for(h.model.program());
    vec![
        Check::eq("step_op", Some(pos.op as u64), record.step_op),
        Check::eq("leaf_index", Some(leaf as u64), record.leaf_index),
        Check::eq(
            "reason",
            expected_reason.to_string(),
            record
                .resolved
                .as_ref()
                .map_or("unresolved".to_string(), |r| {
                    harness::reason_name(r.reason).to_string()
                }),
        ),
        Check::holds(
            "moves_within_bound",
            record.moves <= bound.moves,
            format!("{} moves, bound {}", record.moves, bound.moves),
        ),
        Check::holds(
            "one_step_gas_recorded",
            record.one_step_gas.is_some_and(|g| g > 0),
            format!("{:?}", record.one_step_gas),
        ),
    ]
}

/// The sentence of case `i`.
pub fn sentence(i: usize) -> &'static str {
    SENTENCES[i % SENTENCES.len()]
}

/// Longest a scenario waits for one game (real time; chain time is moved by RPC).
pub const GAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `a` and `b` together until both are done; an error of either ends it at once (so a
/// side whose driver failed does not leave the other waiting forever), and so does
/// [`GAME_DEADLINE`].
pub async fn both<A, B, EA: std::fmt::Display, EB: std::fmt::Display>(
    a: impl std::future::Future<Output = std::result::Result<A, EA>>,
    b: impl std::future::Future<Output = std::result::Result<B, EB>>,
) -> Result<(A, B)> {
    let play = async {
        tokio::pin!(a);
        tokio::pin!(b);
        let (mut ra, mut rb) = (None, None);
        loop {
            tokio::select! {
                r = &mut a, if ra.is_none() => {
                    ra = Some(r.map_err(|e| Error::Game(e.to_string()))?);
                }
                r = &mut b, if rb.is_none() => {
                    rb = Some(r.map_err(|e| Error::Game(e.to_string()))?);
                }
            }
            if let (Some(_), Some(_)) = (&ra, &rb) {
                return Ok((ra.take().expect("set"), rb.take().expect("set")));
            }
        }
    };
    tokio::time::timeout(GAME_DEADLINE, play)
        .await
        .map_err(|_| Error::Game(format!("no end after {GAME_DEADLINE:?}")))?
}

/// [`both`] for a future that cannot fail.
pub async fn infallible<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    Ok(f.await)
}

/// Where a case's lie was placed: the position and the leaf actually used.
pub type Placed = Option<(Position, usize)>;

/// A case from the game as the chain recorded it and the checks made.
pub fn case(
    label: String,
    placed: Placed,
    record: &harness::GameRecord,
    checks: Vec<Check>,
    started: std::time::Instant,
) -> Result<crate::report::Case> {
    let r = record
        .resolved
        .as_ref()
        .ok_or_else(|| Error::Game(format!("game {} is not resolved", record.game_id)))?;
    Ok(crate::report::Case {
        label,
        fault_op: placed.map(|(p, _)| p.op),
        op_kind: placed.map(|(p, _)| p.kind.name().to_string()),
        fault_leaf: placed.map(|(_, l)| l),
        game_id: u64::try_from(record.game_id).ok(),
        winner: r.winner.into(),
        reason: harness::reason_name(r.reason).to_string(),
        moves: record.moves,
        rounds: record.rounds,
        total_gas: record.total_gas,
        one_step_gas: record.one_step_gas,
        transactions: record.transactions,
        seconds: started.elapsed().as_secs_f64(),
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

/// The game end the bot recorded for `game_id`.
pub fn bot_end(
    ended: &[(U256, std::result::Result<sequencer::chain::GameEnd, String>)],
    game_id: U256,
) -> Result<sequencer::chain::GameEnd> {
    match ended.iter().find(|(id, _)| *id == game_id) {
        Some((_, Ok(end))) => Ok(end.clone()),
        Some((_, Err(e))) => Err(Error::Game(format!("the bot's game {game_id} failed: {e}"))),
        None => Err(Error::Game(format!("the bot did not play game {game_id}"))),
    }
}
