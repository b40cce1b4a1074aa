//! The sequencer's automatic defence against a real anvil with the real contracts and the
//! real MiniLM program: an honest claim disputed by a lying challenger is defended to
//! victory, the claim stays valid and the defender withdraws its bond plus the prize.
//!
//! Skipped (with a message) without `models/minilm`, a failure when `REQUIRE_MODELS=1`.

mod common;

use alloy::primitives::U256;
use bisection::{Belief, DissectionDegree, Fault, GameConfig, Side, TracePlayer};
use inference::import::bert;
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tokenize::TextTokenizer;
use inference::trace::run;
use sequencer::chain::defence::defend_game;
use sequencer::chain::deploy::register_model;
use sequencer::chain::driver::DriverConfig;
use sequencer::chain::{
    BatchData, BatchEntry, ChainClient, ClientConfig, DeployConfig, GameDriver,
};
use sequencer::claim::{commit_batch, request_word};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ETHER: u128 = 1_000_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_sequencer_defends_its_claim_to_victory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = root.join("models/minilm/seq16");
    if !dir.join(MANIFEST_FILE).is_file() {
        assert_ne!(
            std::env::var("REQUIRE_MODELS").as_deref(),
            Ok("1"),
            "models/minilm is missing: run `make models`"
        );
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return;
    }
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let model = Arc::new(
        Model::from_bytes(
            &read(PROGRAM_FILE),
            &read(WEIGHTS_FILE),
            &read(MANIFEST_FILE),
        )
        .unwrap(),
    );
    let tok = TextTokenizer::from_json(&read("tokenizer.json"), 16).unwrap();
    let x = bert::input(
        &tok.encode("An honest answer, wrongly disputed.").unwrap(),
        16,
    )
    .unwrap();

    let config = DeployConfig {
        game: GameConfig {
            degree: DissectionDegree::new(8).unwrap(),
            tensor_levels: 3,
            clock_seconds: 3600,
            challenger_bond: ETHER,
            defender_bond: 2 * ETHER,
            burn_bps: 5_000,
        },
        ..DeployConfig::default()
    };
    let net = common::devnet(&config).await;
    let (anvil, d) = (&net.anvil, &net.deployment);
    let key = |i: usize| net.keys[i].clone();
    register_model(
        net.deployer.clone(),
        d.registry,
        &model,
        "file:///models/minilm/seq16",
    )
    .await
    .unwrap();
    let cc = ClientConfig {
        poll_interval: Duration::from_millis(20),
        ..ClientConfig::default()
    };
    let seq = ChainClient::connect(&anvil.endpoint(), key(1), d.rollup, cc.clone())
        .await
        .unwrap();
    seq.register_sequencer(U256::from(20 * ETHER))
        .await
        .unwrap();
    let chal = ChainClient::connect(&anvil.endpoint(), key(2), d.rollup, cc)
        .await
        .unwrap();

    let entry = BatchEntry {
        request_id: request_word(1),
        model_id: model.id(),
        input: x.clone(),
        output: run(model.program(), model.weights(), &x).unwrap(),
    };
    let data = BatchData {
        entries: vec![entry],
    };
    let (batch_id, _) = seq.post_batch(&data).await.unwrap();
    let claims = data.claims().unwrap();
    let (game_id, _) = chal
        .challenge(batch_id, 0, &claims[0], &commit_batch(&claims).proofs[0])
        .await
        .unwrap();

    let driver_config = DriverConfig {
        poll_interval: Duration::from_millis(50),
        ..DriverConfig::default()
    };
    let defence = tokio::spawn(defend_game(
        seq.clone(),
        game_id,
        model.clone(),
        driver_config.clone(),
    ));
    // The challenger wrongly believes op 120 gave something else, and plays on that.
    let fault = Fault {
        op: 120,
        leaf: 3,
        propagate: true,
    };
    let lie = Belief::with_fault(model.program(), model.weights(), &x, fault).unwrap();
    let mut attacker = GameDriver::new(
        chal.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Challenger, lie),
        driver_config,
    )
    .await
    .unwrap();
    let lost = attacker.run().await.unwrap();
    let won = defence.await.unwrap().unwrap();
    assert_eq!(won.winner, Side::Defender);
    assert_eq!(lost.winner, Side::Defender);
    assert_eq!(won.reason, 2, "OneStepMatch");
    assert_eq!(
        won.withdrawn,
        U256::from(2 * ETHER + ETHER / 2),
        "bond back plus half the challenger's"
    );
    assert_eq!(
        seq.claim_state(batch_id, 0).await.unwrap(),
        0,
        "still pending, not invalidated"
    );
    eprintln!("game {game_id}: {} moves", won.moves);
}
