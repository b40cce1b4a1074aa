//! `honest`: many requests over HTTP and from the consumer contract, served and posted by
//! the real `sequencer` binary, re-executed by the real `challenger` binary (which must find
//! nothing to dispute), final after the window; the consumer is called back for its own
//! requests and reads the HTTP ones by claim and proof, and every output it holds equals the
//! CPU engine's.

use super::Options;
use crate::Result;
use crate::devnet::{self, Devnet, DevnetOptions, honest_phase};
use crate::report::{Case, Check, ScenarioReport, Winner};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Requests sent over HTTP.
pub const DEFAULT_HTTP_REQUESTS: usize = 8;
/// Requests sent from the consumer contract.
pub const DEFAULT_CHAIN_REQUESTS: usize = 4;

/// The family directory of a model directory (`models/minilm/seq16` -> `models/minilm`).
pub fn family_dir(model_dir: &Path) -> PathBuf {
    if model_dir.join("family.json").is_file() {
        return model_dir.to_path_buf();
    }
    model_dir
        .parent()
        .map_or_else(|| model_dir.to_path_buf(), Path::to_path_buf)
}

/// Runs the scenario (blocking: it owns its runtime and processes).
pub fn run(o: &Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    let mut d = Devnet::start(DevnetOptions {
        family_dir: family_dir(&o.model_dir),
        fraud: false,
        ..DevnetOptions::default()
    })?;
    super::progress("devnet up; starting the sequencer and the challenger");
    d.start_sequencer(None)?;
    d.start_challenger()?;
    super::progress(format!(
        "{DEFAULT_HTTP_REQUESTS} HTTP and {DEFAULT_CHAIN_REQUESTS} consumer requests"
    ));
    let honest = honest_phase(&mut d, DEFAULT_HTTP_REQUESTS, DEFAULT_CHAIN_REQUESTS)?;
    let mut report = ScenarioReport::for_harness("honest", &d.harness);
    for (label, _, checks, gas) in honest.requests {
        report.cases.push(Case {
            label,
            fault_op: None,
            op_kind: None,
            fault_leaf: None,
            game_id: None,
            winner: Winner::Sequencer,
            reason: "final".into(),
            moves: 0,
            rounds: 0,
            total_gas: gas,
            one_step_gas: None,
            transactions: 1,
            seconds: started.elapsed().as_secs_f64(),
            passed: checks.iter().all(|c| c.passed),
            checks,
        });
    }
    let n = DEFAULT_HTTP_REQUESTS + DEFAULT_CHAIN_REQUESTS;
    report.checks.push(devnet::no_doubles(&d));
    report.checks.push(devnet::challenger_checked(&d, n));
    report.checks.push(Check::holds(
        "challenger_disputed_nothing",
        d.challenger
            .as_ref()
            .is_some_and(|p| !p.saw(|l| l.contains("game opened"))),
        "no game opened",
    ));
    report.checks.push(Check::eq(
        "every_output_read_by_the_consumer",
        n,
        honest.settled_by_callback + honest.read_by_claim,
    ));
    report.notes.push(format!(
        "one case per request: `winner: sequencer` means its claim stood and became final; \
         total_gas is the consumer's settle (callback) or readFinalOutput. Gas averages: ask {}, \
         settle+callback {}, readFinalOutput {}, postBatch {}",
        honest.gas.consumer_ask,
        honest.gas.settle_with_callback,
        honest.gas.read_final_output,
        honest.gas.post_batch
    ));
    report
        .notes
        .push(format!("logs: {}", d.work_dir().display()));
    let report = report.finish(started);
    if !report.passed {
        // Leave the logs and databases for a reader.
        d.keep_work_dir();
    }
    Ok(report)
}
