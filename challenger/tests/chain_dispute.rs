//! Against a real anvil with the real contracts and the real MiniLM program: a sequencer
//! that posts a wrong output and defends it with a lying player loses to the challenger,
//! the claim is invalidated and the bonds end where the rules say.

mod common;

use alloy::primitives::U256;
use bisection::{Belief, Fault, Side, TracePlayer};
use challenger::{ChallengerConfig, ClaimOutcome, Metrics, ModelStore};
use common::*;
use sequencer::chain::driver::DriverConfig;
use sequencer::chain::{BatchData, BatchEntry, GameDriver};
use sequencer::claim::request_word;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_sequencer_loses_to_the_challenger() {
    let Some((model, tok)) = minilm() else { return };
    let net = Devnet::start(&model).await;
    let program = model.program();
    let x = input(&tok, "A lying sequencer posts a wrong embedding.");

    // The sequencer's lie: the output op's first element flipped, a consistent trace.
    let fault = Fault {
        op: program.output as usize,
        leaf: 0,
        propagate: true,
    };
    let lie = Belief::with_fault(program, model.weights(), &x, fault).unwrap();
    let honest = Belief::honest(program, model.weights(), &x).unwrap();
    assert_ne!(lie.output_hash(), honest.output_hash());
    let entry = BatchEntry {
        request_id: request_word(1),
        model_id: model.id(),
        input: x.clone(),
        output: lie.trace().output().clone(),
    };
    let (batch_id, _) = net
        .sequencer
        .post_batch(&BatchData {
            entries: vec![entry],
        })
        .await
        .unwrap();
    let rollup = net.sequencer.rollup();
    let stake_before = rollup
        .sequencers(net.sequencer.account())
        .call()
        .await
        .unwrap()
        .stake;

    // The challenger knows no model locally: it loads MiniLM from the registered file:// URI.
    let metrics = Arc::new(Metrics::default());
    let config = ChallengerConfig {
        poll_interval: Duration::from_millis(50),
        driver: DriverConfig {
            poll_interval: Duration::from_millis(50),
            ..DriverConfig::default()
        },
        ..ChallengerConfig::default()
    };
    let mut bot = challenger::Challenger::new(
        net.challenger.clone(),
        Arc::new(ModelStore::new()),
        config,
        metrics.clone(),
    );
    let report = loop {
        let (reports, _) = bot.poll().await.unwrap();
        if let Some(r) = reports.into_iter().find(|r| r.batch_id == batch_id) {
            break r;
        }
    };
    assert_eq!(report.error, None);
    let ClaimOutcome::Disputed { game_id } = report.claims[0].clone() else {
        panic!("claim 0 was not disputed: {report:?}")
    };

    // The lying sequencer defends through the same game driver.
    let seq = net.sequencer.clone();
    let liar_model = model.clone();
    let defence = tokio::spawn(async move {
        let lie =
            Belief::with_fault(liar_model.program(), liar_model.weights(), &x, fault).unwrap();
        let player = TracePlayer::new(Side::Defender, lie);
        let mut driver = GameDriver::new(
            seq,
            game_id,
            Arc::new(liar_model.program().clone()),
            liar_model.weights().root(),
            player,
            DriverConfig {
                poll_interval: Duration::from_millis(50),
                ..DriverConfig::default()
            },
        )
        .await
        .unwrap();
        driver.run().await.unwrap()
    });

    let ended = bot.finish_games().await;
    assert_eq!(ended.len(), 1);
    let end = ended[0].1.clone().unwrap();
    assert_eq!(end.winner, Side::Challenger);
    assert_eq!(end.reason, 1, "OneStepMismatch");
    let defended = defence.await.unwrap();
    assert_eq!(defended.winner, Side::Challenger);
    assert_eq!(defended.withdrawn, U256::ZERO);

    // Bonds: the challenger gets its bond back plus the defender's bond less the burn.
    let burnt = DEFENDER_BOND / 2;
    assert_eq!(
        end.withdrawn,
        U256::from(CHALLENGER_BOND + DEFENDER_BOND - burnt)
    );
    let stake_after = rollup
        .sequencers(net.sequencer.account())
        .call()
        .await
        .unwrap()
        .stake;
    assert_eq!(stake_before - stake_after, DEFENDER_BOND);
    assert_eq!(
        net.challenger
            .games_credit(net.challenger.account())
            .await
            .unwrap(),
        U256::ZERO
    );
    assert_eq!(
        net.sequencer.claim_state(batch_id, 0).await.unwrap(),
        2,
        "invalidated"
    );
    assert_eq!(metrics.games_won.get(), 1);
    assert_eq!(metrics.mismatches.get(), 1);
    eprintln!(
        "game {game_id}: {} moves, challenger withdrew {} wei",
        end.moves, end.withdrawn
    );
}

/// A challenger that stops right after opening its game resumes it from its database after a
/// restart, without a second dispute, and wins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_challenger_resumes_its_game_without_disputing_twice() {
    let Some((model, tok)) = minilm() else { return };
    let net = Devnet::start(&model).await;
    let program = model.program();
    let x = input(&tok, "Restarts must not cost a second bond.");
    let fault = Fault {
        op: program.output as usize,
        leaf: 1,
        propagate: true,
    };
    let lie = Belief::with_fault(program, model.weights(), &x, fault).unwrap();
    let entry = BatchEntry {
        request_id: request_word(7),
        model_id: model.id(),
        input: x.clone(),
        output: lie.trace().output().clone(),
    };
    let (batch_id, _) = net
        .sequencer
        .post_batch(&BatchData {
            entries: vec![entry],
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || ChallengerConfig {
        poll_interval: Duration::from_millis(50),
        driver: DriverConfig {
            poll_interval: Duration::from_millis(50),
            ..DriverConfig::default()
        },
        ..ChallengerConfig::default()
    };
    let store = Arc::new(ModelStore::new());
    store.load_dir(&minilm_dir()).unwrap();
    let game_id = {
        let db = challenger::db::ChallengerDb::open(dir.path()).unwrap();
        let mut bot = challenger::Challenger::new(
            net.challenger.clone(),
            store.clone(),
            config(),
            Arc::new(Metrics::default()),
        )
        .with_db(db)
        .await
        .unwrap();
        let report = loop {
            let (reports, _) = bot.poll().await.unwrap();
            if let Some(r) = reports.into_iter().find(|r| r.batch_id == batch_id) {
                break r;
            }
        };
        let ClaimOutcome::Disputed { game_id } = report.claims[0].clone() else {
            panic!("not disputed: {report:?}")
        };
        game_id
        // The bot is dropped here: its game task is aborted mid-game.
    };
    let seq = net.sequencer.clone();
    let liar = model.clone();
    let defence = tokio::spawn(async move {
        let lie = Belief::with_fault(liar.program(), liar.weights(), &x, fault).unwrap();
        let mut driver = GameDriver::new(
            seq,
            game_id,
            Arc::new(liar.program().clone()),
            liar.weights().root(),
            TracePlayer::new(Side::Defender, lie),
            DriverConfig {
                poll_interval: Duration::from_millis(50),
                ..DriverConfig::default()
            },
        )
        .await
        .unwrap();
        driver.run().await.unwrap()
    });
    // Restart: the same database, and the follower starts over from block 0 in config.
    let db = challenger::db::ChallengerDb::open(dir.path()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut bot =
        challenger::Challenger::new(net.challenger.clone(), store, config(), metrics.clone())
            .with_db(db)
            .await
            .unwrap();
    assert_eq!(bot.open_games(), 1, "the open game is resumed");
    loop {
        let (_, caught_up) = bot.poll().await.unwrap();
        if caught_up {
            break;
        }
    }
    let ended = bot.finish_games().await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].0, game_id);
    assert_eq!(ended[0].1.clone().unwrap().winner, Side::Challenger);
    assert_eq!(defence.await.unwrap().winner, Side::Challenger);
    assert_eq!(metrics.games_opened.get(), 0, "no second dispute");
    assert_eq!(
        net.challenger.games().gameCount().call().await.unwrap(),
        U256::from(1)
    );
    assert_eq!(net.sequencer.claim_state(batch_id, 0).await.unwrap(), 2);
}

/// A sequencer that never answers loses on time: the challenger claims the timeout once
/// the defender's clock has run out (anvil time moved by RPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sequencer_loses_on_time() {
    use alloy::providers::Provider;
    let Some((model, tok)) = minilm() else { return };
    let net = Devnet::start(&model).await;
    let x = input(&tok, "Nobody defends this one.");
    let mut y = inference::trace::run(model.program(), model.weights(), &x).unwrap();
    match y.data_mut() {
        inference::TensorData::I8(v) => v[0] ^= 1,
        inference::TensorData::I16(v) => v[0] ^= 1,
        inference::TensorData::I32(v) => v[0] ^= 1,
    }
    let (batch_id, _) = net
        .sequencer
        .post_batch(&BatchData {
            entries: vec![BatchEntry {
                request_id: request_word(9),
                model_id: model.id(),
                input: x,
                output: y,
            }],
        })
        .await
        .unwrap();
    let store = Arc::new(ModelStore::new());
    store.load_dir(&minilm_dir()).unwrap();
    let mut bot = challenger::Challenger::new(
        net.challenger.clone(),
        store,
        ChallengerConfig {
            driver: DriverConfig {
                poll_interval: Duration::from_millis(50),
                ..DriverConfig::default()
            },
            ..ChallengerConfig::default()
        },
        Arc::new(Metrics::default()),
    );
    loop {
        let (reports, _) = bot.poll().await.unwrap();
        if reports.iter().any(|r| r.batch_id == batch_id) {
            break;
        }
    }
    // The defender's clock is 3600 s: move the chain past it.
    let p = net.challenger.provider();
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (3601u64,))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    let ended = bot.finish_games().await;
    let end = ended[0].1.clone().unwrap();
    assert_eq!(end.winner, Side::Challenger);
    assert_eq!(end.reason, 5, "Timeout");
    assert_eq!(end.moves, 0);
    assert_eq!(
        end.withdrawn,
        U256::from(CHALLENGER_BOND + DEFENDER_BOND / 2)
    );
    assert_eq!(net.sequencer.claim_state(batch_id, 0).await.unwrap(), 2);
}
