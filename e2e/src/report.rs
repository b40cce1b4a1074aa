//! What a scenario reports: one [`ScenarioReport`] per run, printed as one JSON object (the
//! last line of stdout with `--json`), with one [`Case`] per game played.

use serde::{Deserialize, Serialize};

/// Who won a game, as the issue names the sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    /// The defender (the batch's sequencer).
    Sequencer,
    /// The party that disputed the claim.
    Challenger,
}

impl From<bisection::Side> for Winner {
    fn from(side: bisection::Side) -> Self {
        match side {
            bisection::Side::Defender => Self::Sequencer,
            bisection::Side::Challenger => Self::Challenger,
        }
    }
}

/// One on-chain check of a scenario or a case: what was expected and what the chain says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked (`claim_invalidated`, `challenger_payout`, ...).
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// Expected and observed values, for a reader.
    pub detail: String,
}

impl Check {
    /// A check that `got == expected`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(name: &str, expected: T, got: T) -> Self {
        Self {
            name: name.to_string(),
            passed: expected == got,
            detail: format!("expected {expected:?}, got {got:?}"),
        }
    }

    /// A check of `cond`, with `detail` saying what was seen.
    pub fn holds(name: &str, cond: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            passed: cond,
            detail: detail.into(),
        }
    }
}

/// One game of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// A short name of the case (`fault at op 12 leaf 5`, `sequencer silent`, ...).
    pub label: String,
    /// The op (1-based over the trace's ops) where the lying side's trace departs from the
    /// truth; `None` where nobody lies (an honest game).
    pub fault_op: Option<usize>,
    /// The op kind of `fault_op` (`fully_connected`, ...); `None` with it.
    pub op_kind: Option<String>,
    /// The 32-byte leaf of `fault_op`'s output that the lie changes; `None` with it.
    pub fault_leaf: Option<usize>,
    /// The game's id on chain (`None` where no game was opened).
    pub game_id: Option<u64>,
    /// Who won the game.
    pub winner: Winner,
    /// Why (`one_step_mismatch`, `one_step_match`, `non_zero_padding`, `zero_padding`,
    /// `timeout`).
    pub reason: String,
    /// Moves played on chain (timeout claims not counted).
    pub moves: u32,
    /// Bisection rounds played: trace dissections plus tensor node reveals.
    pub rounds: u32,
    /// Gas used by every transaction of the game, both sides: the challenge that opened
    /// it, every move, the one-step or timeout claim (receipts' `gasUsed`).
    pub total_gas: u64,
    /// Gas used by the one-step transaction; `None` when the game ended otherwise.
    pub one_step_gas: Option<u64>,
    /// Transactions counted in `total_gas`.
    pub transactions: u32,
    /// Wall-clock seconds from posting the claim to the game's resolution (and checks).
    pub seconds: f64,
    /// Whether every check of this case holds.
    pub passed: bool,
    /// The checks against the chain after the game.
    pub checks: Vec<Check>,
}

/// What one scenario run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The scenario (`fraud`, `false-challenge`, `timeout`, `parallel`, ...).
    pub scenario: String,
    /// True only if every case and every scenario-level check passed.
    pub passed: bool,
    /// The model every case ran on (its id, `0x...`).
    pub model_id: String,
    /// The game rules: dissection degree.
    pub degree: u32,
    /// The game rules: each side's clock in seconds.
    pub clock_seconds: u64,
    /// One entry per game played.
    pub cases: Vec<Case>,
    /// Checks over the whole scenario (finality of a claim disputed by several games, ...).
    pub checks: Vec<Check>,
    /// Wall-clock seconds of the whole run, chain start-up included.
    pub seconds: f64,
    /// How the scenario was played where a reader needs to know (which code played each
    /// side, ...).
    pub notes: Vec<String>,
}

impl ScenarioReport {
    /// An empty report for `scenario`; cases and checks are added, then [`Self::finish`].
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            passed: false,
            model_id: String::new(),
            degree: 0,
            clock_seconds: 0,
            cases: Vec::new(),
            checks: Vec::new(),
            seconds: 0.0,
            notes: Vec::new(),
        }
    }

    /// An empty report for `scenario` on `h`'s model and game rules.
    pub fn for_harness(scenario: &str, h: &crate::harness::Harness) -> Self {
        Self {
            model_id: h.model.id().to_string(),
            degree: h.game_config().degree.get(),
            clock_seconds: h.game_config().clock_seconds,
            ..Self::new(scenario)
        }
    }

    /// Sets `passed` (every case and check holds, and at least one case was played) and the
    /// total time.
    pub fn finish(mut self, started: std::time::Instant) -> Self {
        self.passed = !self.cases.is_empty()
            && self.cases.iter().all(|c| c.passed)
            && self.checks.iter().all(|c| c.passed);
        self.seconds = started.elapsed().as_secs_f64();
        self
    }

    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"scenario\":{:?},\"passed\":false,\"error\":{:?}}}",
                self.scenario,
                e.to_string()
            )
        })
    }

    /// A human-readable summary (stderr).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "scenario {}: {} ({} cases, {:.1} s)\n",
            self.scenario,
            if self.passed { "PASSED" } else { "FAILED" },
            self.cases.len(),
            self.seconds
        );
        for c in &self.cases {
            s.push_str(&format!(
                "  {:<40} winner {:<10} {:<18} moves {:>2} rounds {:>2} gas {:>9} one-step {:>9} {:>6.1} s {}\n",
                c.label,
                format!("{:?}", c.winner).to_lowercase(),
                c.reason,
                c.moves,
                c.rounds,
                c.total_gas,
                c.one_step_gas.map_or("-".to_string(), |g| g.to_string()),
                c.seconds,
                if c.passed { "ok" } else { "FAILED" }
            ));
            for check in c.checks.iter().filter(|k| !k.passed) {
                s.push_str(&format!("    failed {}: {}\n", check.name, check.detail));
            }
        }
        for check in &self.checks {
            s.push_str(&format!(
                "  check {}: {} ({})\n",
                check.name,
                if check.passed { "ok" } else { "FAILED" },
                check.detail
            ));
        }
        s
    }
}
