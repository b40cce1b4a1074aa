//! The devnet end to end with the real `sequencer` and `challenger` binaries as processes:
//! requests over HTTP and from the consumer contract finalize, the consumer's outputs equal
//! the CPU engine's, a lying sequencer's claim is invalidated by the challenger (who is paid),
//! and a `kill -9` mid-batching loses and doubles nothing.
//!
//! Needs `make models` (skipped otherwise, a failure with `REQUIRE_MODELS=1`), anvil from
//! `make setup`, and the two binaries built beside this test's profile:
//! `cargo build --profile test -p sequencer -p challenger` (`cargo test --workspace` builds
//! them) or `E2E_SEQUENCER_BIN` / `E2E_CHALLENGER_BIN` pointing at them.

use e2e::devnet::{DevnetOptions, model_present, run};
use e2e::scenario::{Options, crash};

fn models() -> bool {
    if model_present(&DevnetOptions::default()) {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_MODELS").as_deref() != Ok("1"),
        "REQUIRE_MODELS=1 but models/minilm is missing: run `make models`"
    );
    eprintln!("skipping: models/minilm is missing (run `make models`)");
    false
}

#[test]
fn honest_requests_settle_and_a_lie_loses() {
    if !models() {
        return;
    }
    let (net, summary) = run(DevnetOptions {
        http_requests: 3,
        chain_requests: 2,
        fraud: true,
        ..DevnetOptions::default()
    })
    .expect("the devnet runs");
    eprint!("{}", summary.table());
    for c in &summary.checks {
        assert!(c.passed, "{}: {}", c.name, c.detail);
    }
    assert!(summary.passed);
    assert_eq!(
        summary.claims_final, 5,
        "every claim final and equal to the engine"
    );
    assert_eq!(
        summary.settled_by_callback, 2,
        "the consumer was called back with the engine's output for each of its requests"
    );
    assert_eq!(
        summary.read_by_claim, 3,
        "the consumer read every HTTP output by claim and proof"
    );
    assert!(summary.batches >= 2, "honest and lying batches posted");
    let fraud = summary.fraud.as_ref().expect("the fraud phase ran");
    assert_eq!(fraud.winner, "challenger");
    assert_eq!(fraud.claim_state, "invalidated");
    assert_ne!(fraud.challenger_payout, "0", "the challenger is paid");
    assert!(fraud.moves > 0 && fraud.total_gas > 0);
    assert!(summary.gas.consumer_ask > 0 && summary.gas.settle_with_callback > 0);
    drop(net);
}

#[test]
fn crash_mid_batching_loses_and_doubles_nothing() {
    if !models() {
        return;
    }
    let report = crash::run(&Options::default()).expect("the crash scenario runs");
    eprint!("{}", report.summary());
    for c in report
        .cases
        .iter()
        .flat_map(|c| c.checks.iter())
        .chain(&report.checks)
    {
        assert!(c.passed, "{}: {}", c.name, c.detail);
    }
    assert!(report.passed);
    assert_eq!(
        report.cases.len(),
        crash::DEFAULT_BEFORE + crash::DEFAULT_WHILE_DOWN + crash::DEFAULT_AFTER
    );
}
