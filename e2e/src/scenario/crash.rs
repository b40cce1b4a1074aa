//! `crash`: the real `sequencer` binary is killed with `kill -9` in the middle of batching
//! (after its first batch is posted, before the last), on-chain requests arrive while it is
//! down, and it is restarted on the same database: every request it accepted and every
//! on-chain request must end up posted exactly once, with the CPU engine's output, and final.

use super::Options;
use super::honest::family_dir;
use crate::devnet::{self, Devnet, DevnetOptions, TEXTS};
use crate::procs::wait_until;
use crate::report::{Case, Check, ScenarioReport, Winner};
use crate::{Error, Result};
use inference::merkle::H256;
use std::time::Instant;

/// Requests accepted before the crash.
pub const DEFAULT_BEFORE: usize = 16;
/// Claims in a full batch.
pub const DEFAULT_BATCH_SIZE: usize = 4;
/// On-chain requests asked while the sequencer is down.
pub const DEFAULT_WHILE_DOWN: usize = 2;
/// Requests sent after the restart.
pub const DEFAULT_AFTER: usize = 2;

/// Runs the scenario (blocking: it owns its runtime and processes).
pub fn run(o: &Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    let mut d = Devnet::start(DevnetOptions {
        family_dir: family_dir(&o.model_dir),
        fraud: false,
        batch_max_size: DEFAULT_BATCH_SIZE,
        batch_max_age_ms: 200,
        ..DevnetOptions::default()
    })?;
    d.start_sequencer(None)?;
    d.start_challenger()?;
    let mut report = ScenarioReport::for_harness("crash", &d.harness);

    super::progress(format!(
        "{DEFAULT_BEFORE} requests accepted, then kill -9 mid-batching"
    ));
    // One full batch is posted first; the rest are sent after it and the kill follows the
    // last acknowledgement at once, before that request can be executed, let alone posted:
    // so the kill falls between the first batch and the last, whatever the machine's speed.
    let mut accepted: Vec<(String, H256, u64)> = Vec::new();
    for i in 0..DEFAULT_BEFORE {
        if i == DEFAULT_BATCH_SIZE {
            wait_until("the first batch", devnet::WAIT_LIMIT, || {
                d.refresh_batches().map(|b| !b.is_empty())
            })
            .map_err(Error::Setup)?;
        }
        let r = d.http_infer(TEXTS[i % TEXTS.len()], false)?;
        accepted.push((
            format!("http request {} (before)", r.id),
            r.request_id,
            r.id,
        ));
    }
    d.kill_sequencer();
    d.refresh_batches()?;
    let posted_at_kill = accepted
        .iter()
        .filter(|(_, id, _)| !d.posted(*id).is_empty())
        .count();
    super::progress(format!(
        "killed with {posted_at_kill} of {DEFAULT_BEFORE} posted; consumer asks while it is down"
    ));
    let mut onchain = Vec::new();
    for i in 0..DEFAULT_WHILE_DOWN {
        let r = d.ask_onchain(TEXTS[(i + 3) % TEXTS.len()])?;
        onchain.push((format!("consumer request {i} (while down)"), r.request_id));
    }
    d.start_sequencer(None)?;
    for i in 0..DEFAULT_AFTER {
        let r = d.http_infer(TEXTS[(i + 7) % TEXTS.len()], true)?;
        accepted.push((format!("http request {} (after)", r.id), r.request_id, r.id));
    }
    let ids: Vec<H256> = accepted
        .iter()
        .map(|(_, id, _)| *id)
        .chain(onchain.iter().map(|(_, id)| *id))
        .collect();
    d.wait_posted(&ids)?;
    d.wait_out_window()?;
    let labelled = accepted
        .iter()
        .map(|(l, id, _)| (l.clone(), *id))
        .chain(onchain.iter().cloned());
    for (label, id) in labelled {
        let posted = d.posted(id);
        let mut checks = vec![Check::eq("posted_once", 1, posted.len())];
        if let Some(c) = posted.first() {
            let cpu = d.cpu_output(&c.entry)?;
            checks.push(Check::holds(
                "claim_equals_cpu_engine",
                c.entry.output.to_le_bytes() == cpu,
                format!("batch {} index {}", c.batch_id, c.index),
            ));
            checks.push(Check::eq(
                "claim_final",
                1,
                d.claim_state(c.batch_id, c.index)?,
            ));
        }
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
            total_gas: 0,
            one_step_gas: None,
            transactions: 0,
            seconds: started.elapsed().as_secs_f64(),
            passed: checks.iter().all(|c| c.passed),
            checks,
        });
    }
    let mut numbers: Vec<u64> = accepted.iter().map(|(_, _, n)| *n).collect();
    numbers.sort_unstable();
    numbers.dedup();
    report.checks.push(Check::holds(
        "killed_mid_batching",
        posted_at_kill > 0 && posted_at_kill < DEFAULT_BEFORE,
        format!("{posted_at_kill} of {DEFAULT_BEFORE} accepted requests posted at the kill"),
    ));
    report.checks.push(Check::eq(
        "request_numbers_not_reused",
        accepted.len(),
        numbers.len(),
    ));
    report.checks.push(devnet::no_doubles(&d));
    report.checks.push(Check::eq(
        "claims_posted_in_all",
        ids.len(),
        d.batches().iter().map(|b| b.count as usize).sum::<usize>(),
    ));
    report.checks.push(Check::holds(
        "challenger_disputed_nothing",
        d.challenger
            .as_ref()
            .is_some_and(|p| !p.saw(|l| l.contains("game opened"))),
        "no game opened",
    ));
    report.notes.push(format!(
        "one case per request; {} batches; logs: {}",
        d.batches().len(),
        d.work_dir().display()
    ));
    let report = report.finish(started);
    if !report.passed {
        // Leave the logs and databases for a reader.
        d.keep_work_dir();
    }
    Ok(report)
}
