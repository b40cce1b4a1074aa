//! A fast subset of the scenarios, in-process (the scenario functions, not the binary), each
//! on its own anvil with the real contracts and the real MiniLM program (16-token bucket):
//! fraud at three op kinds, false challenges at two positions, a timeout on each side, and
//! two parallel challengers. `make scenarios` runs the full set through the binary.
//!
//! Skipped (with a message) without `models/minilm`, a failure when `REQUIRE_MODELS=1`.

use e2e::harness::model_present;
use e2e::report::{ScenarioReport, Winner};
use e2e::scenario::{self, Options, SilentSide};

fn options() -> Option<Options> {
    let o = Options::default();
    if !model_present(&o.model_dir) {
        assert_ne!(
            std::env::var("REQUIRE_MODELS").as_deref(),
            Ok("1"),
            "REQUIRE_MODELS=1 but {} is missing: run `make models`",
            o.model_dir.display()
        );
        eprintln!(
            "skipped: {} is not prepared (run `make models`)",
            o.model_dir.display()
        );
        return None;
    }
    Some(o)
}

/// The number of ops of the scenarios' program (its last op is the output).
fn program_ops(o: &Options) -> usize {
    let model = challenger::models::load_model_dir(&o.model_dir).unwrap();
    model.program().ops.len()
}

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// The report passed, and its JSON has the fields the issue asks for.
fn assert_passed(r: &ScenarioReport) {
    eprint!("{}", r.summary());
    assert!(r.passed, "{}", r.summary());
    let json: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    assert_eq!(json["scenario"], r.scenario.as_str());
    assert_eq!(json["passed"], true);
    let cases = json["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        for key in [
            "fault_op",
            "op_kind",
            "fault_leaf",
            "winner",
            "moves",
            "rounds",
            "total_gas",
            "one_step_gas",
            "seconds",
        ] {
            assert!(c.get(key).is_some(), "case without {key}: {c}");
        }
        assert!(c["total_gas"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_sequencer_loses_at_the_one_step_at_every_op_kind_tried() {
    let Some(mut o) = options() else { return };
    o.op_kinds = kinds(&["softmax", "layer_norm", "mean_pool"]);
    let r = scenario::fraud::run(&o).await.unwrap();
    assert_passed(&r);
    assert_eq!(r.cases.len(), 3);
    for c in &r.cases {
        assert_eq!(c.winner, Winner::Challenger, "{}", c.label);
        assert_eq!(c.reason, "one_step_mismatch", "{}", c.label);
        assert!(c.one_step_gas.is_some_and(|g| g > 0));
        assert!(c.rounds > 0 && c.moves > c.rounds);
    }
    let mut got: Vec<_> = r.cases.iter().filter_map(|c| c.op_kind.clone()).collect();
    got.sort();
    o.op_kinds.sort();
    assert_eq!(got, o.op_kinds, "one case per kind asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_fault_is_placed_exactly_and_an_impossible_one_is_refused() {
    let Some(mut o) = options() else { return };
    // The output op (mean pool) at its leaf 3: the game must end exactly there.
    let last = program_ops(&o);
    o.fault_op = Some(last);
    o.fault_leaf = Some(3);
    let r = scenario::fraud::run(&o).await.unwrap();
    assert_passed(&r);
    assert_eq!(r.cases.len(), 1);
    assert_eq!(r.cases[0].fault_op, Some(last));
    assert_eq!(r.cases[0].op_kind.as_deref(), Some("mean_pool"));
    assert_eq!(r.cases[0].fault_leaf, Some(3));
    assert_eq!(r.cases[0].winner, Winner::Challenger);

    o.fault_op = Some(100_000);
    let e = scenario::fraud::run(&o).await.unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    o.fault_op = Some(last);
    o.fault_leaf = Some(1_000);
    let e = scenario::fraud::run(&o).await.unwrap_err();
    assert!(
        e.to_string().contains("--fault-leaf 1000 is out of range"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_challenges_lose_to_the_sequencers_defence() {
    let Some(mut o) = options() else { return };
    o.op_kinds = kinds(&["layer_norm", "batch_matmul"]);
    let r = scenario::false_challenge::run(&o).await.unwrap();
    assert_passed(&r);
    assert_eq!(r.cases.len(), 2);
    for c in &r.cases {
        assert_eq!(c.winner, Winner::Sequencer, "{}", c.label);
        assert_eq!(c.reason, "one_step_match", "{}", c.label);
    }
    assert!(
        r.checks
            .iter()
            .any(|c| c.name == "claims_final_after_window" && c.passed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_side_that_stops_answering_loses_on_time() {
    let Some(mut o) = options() else { return };
    o.silent = SilentSide::Both;
    let r = scenario::timeout::run(&o).await.unwrap();
    assert_passed(&r);
    let winners: Vec<_> = r.cases.iter().map(|c| c.winner).collect();
    assert_eq!(winners, [Winner::Challenger, Winner::Sequencer]);
    for c in &r.cases {
        assert_eq!(c.reason, "timeout", "{}", c.label);
        assert_eq!(c.one_step_gas, None);
        assert!(
            c.checks
                .iter()
                .any(|k| k.name == "no_timeout_before_clock" && k.passed)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_challengers_all_win_within_one_games_length() {
    let Some(mut o) = options() else { return };
    o.challengers = 2;
    let r = scenario::parallel::run(&o).await.unwrap();
    assert_passed(&r);
    assert_eq!(r.cases.len(), 2);
    assert!(r.cases.iter().all(|c| c.winner == Winner::Challenger));
    for name in [
        "claim_invalidated",
        "games_overlap",
        "invalidated_within_one_game",
        "stake_slashed",
    ] {
        assert!(
            r.checks.iter().any(|c| c.name == name && c.passed),
            "{name}"
        );
    }
}
