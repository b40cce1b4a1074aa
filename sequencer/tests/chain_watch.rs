//! The sequencer's defence watcher against a real anvil with the real contracts, the real
//! MDBX database and the real MiniLM program:
//!
//! - honest claims disputed by a lying challenger: the watcher finds both games, records
//!   them, defends them at once and wins, withdraws the payouts, and says so in its
//!   database and metrics;
//! - a lying sequencer ([`LyingExecutor`]) whose claim an honest challenger disputes: the
//!   watcher defends with the same lying trace it served, consistently down to the lied op
//!   and leaf, and loses at the one-step (not on time);
//! - a watcher stopped mid-game and started again (with its cursor set back, as after a
//!   crash before the cursor was saved) resumes the game once and wins it;
//! - a game over a claim no trace of this sequencer backs stops alone, with an error; the
//!   watcher defends the other game and runs on.
//!
//! Skipped (with a message) without `models/minilm`, a failure when `REQUIRE_MODELS=1`.

mod common;

use alloy::primitives::U256;
use bisection::{Belief, DissectionDegree, Fault, GameConfig, Phase, Side, TracePlayer};
use inference::import::bert;
use inference::model::Model;
use inference::tensor::{Tensor, TensorData};
use sequencer::chain::deploy::register_model;
use sequencer::chain::driver::{DriverConfig, GameEnd, StepOutcome};
use sequencer::chain::watch::{self, CURSOR, WatchContext};
use sequencer::chain::{
    BatchData, BatchEntry, ChainClient, ClientConfig, DeployConfig, GameDriver,
};
use sequencer::claim::{commit_batch, request_word};
use sequencer::db::SequencerDb;
use sequencer::db::tables::{ChainCursor, GameStatus};
use sequencer::dev::{Lie, LyingExecutor};
use sequencer::execution::{CpuExecutor, Executor, ModelRegistry};
use sequencer::metrics::Metrics;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const ETHER: u128 = 1_000_000_000_000_000_000;
const STAKE: u128 = 20 * ETHER;
const DEFENDER_BOND: u128 = 2 * ETHER;
const CHALLENGER_BOND: u128 = ETHER;
/// What the winning defender withdraws: its bond back plus half the challenger's.
const DEFENDER_PRIZE: u128 = DEFENDER_BOND + CHALLENGER_BOND / 2;
const LIMIT: Duration = Duration::from_secs(120);

/// The served models, loaded once for every test of this binary.
fn models() -> Option<Arc<ModelRegistry>> {
    static MODELS: OnceLock<Option<Arc<ModelRegistry>>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let dir = common::minilm_dir()?;
            Some(Arc::new(ModelRegistry::load(&[dir]).expect("load MiniLM")))
        })
        .clone()
}

/// The shortest bucket, and an input for it.
fn seq16(models: &ModelRegistry, text: &str) -> (Arc<Model>, Tensor) {
    let family = &models.families()[0];
    let bucket = &family.buckets[0];
    assert_eq!(bucket.seq_len, 16);
    let tokens = family.tokenize(text).unwrap();
    (bucket.model.clone(), bert::input(&tokens, 16).unwrap())
}

/// A devnet with MiniLM's seq16 program registered, a staked sequencer (key 1) and a
/// challenger (key 2).
struct Net {
    net: common::Devnet,
    seq: ChainClient,
    chal: ChainClient,
}

async fn net(model: &Model) -> Net {
    let config = DeployConfig {
        game: GameConfig {
            degree: DissectionDegree::new(8).unwrap(),
            tensor_levels: 3,
            clock_seconds: 3600,
            challenger_bond: CHALLENGER_BOND,
            defender_bond: DEFENDER_BOND,
            burn_bps: 5_000,
        },
        ..DeployConfig::default()
    };
    let net = common::devnet(&config).await;
    let d = &net.deployment;
    register_model(
        net.deployer.clone(),
        d.registry,
        model,
        "file:///models/minilm/seq16",
    )
    .await
    .unwrap();
    let seq = connect(&net, 1).await;
    seq.register_sequencer(U256::from(STAKE)).await.unwrap();
    let chal = connect(&net, 2).await;
    Net { net, seq, chal }
}

async fn connect(net: &common::Devnet, key: usize) -> ChainClient {
    let cc = ClientConfig {
        poll_interval: Duration::from_millis(20),
        ..ClientConfig::default()
    };
    ChainClient::connect(
        &net.anvil.endpoint(),
        net.keys[key].clone(),
        net.deployment.rollup,
        cc,
    )
    .await
    .unwrap()
}

fn driver_config() -> DriverConfig {
    DriverConfig {
        poll_interval: Duration::from_millis(50),
        ..DriverConfig::default()
    }
}

/// A running watcher: its task, its shutdown switch and its metrics.
struct Watcher {
    task: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Watcher {
    fn start(
        client: ChainClient,
        db: SequencerDb,
        models: Arc<ModelRegistry>,
        lie: Option<Lie>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let ctx = WatchContext {
            lie,
            poll: Duration::from_millis(50),
            driver: driver_config(),
            ..WatchContext::new(client, db, models, metrics.clone())
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(watch::run(ctx, rx));
        Self {
            task,
            stop,
            metrics,
        }
    }

    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the watcher stops when told")
            .unwrap();
    }
}

/// Polls `cond` until it holds, failing after [`LIMIT`].
async fn until<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays the challenger's side to the end, step by step; returns the end and the last
/// (op, leaf) the game was narrowed to before a one-step.
async fn attack(driver: &mut GameDriver<TracePlayer<'_>>) -> (GameEnd, Option<(u64, u64)>) {
    let start = Instant::now();
    let mut one_step = None;
    loop {
        if let Phase::AwaitOneStep { op, leaf_index, .. } = driver.referee().phase() {
            one_step = Some((*op, *leaf_index));
        }
        match driver.step().await.unwrap() {
            StepOutcome::Resolved(end) => return (end, one_step),
            StepOutcome::Moved(_) | StepOutcome::ClaimedTimeout => {}
            StepOutcome::Waiting | StepOutcome::Stuck => {
                assert!(start.elapsed() < LIMIT, "the game did not end in time");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Posts `entries` as one batch from the sequencer and disputes claims `disputed` from the
/// challenger; returns the batch id and the game ids.
async fn post_and_dispute(
    n: &Net,
    entries: Vec<BatchEntry>,
    disputed: &[usize],
) -> (u64, Vec<U256>) {
    let data = BatchData { entries };
    let (batch_id, _) = n.seq.post_batch(&data).await.unwrap();
    let claims = data.claims().unwrap();
    let proofs = commit_batch(&claims).proofs;
    let mut games = Vec::new();
    for &i in disputed {
        let (game_id, _) = n
            .chal
            .challenge(batch_id, i as u64, &claims[i], &proofs[i])
            .await
            .unwrap();
        games.push(game_id);
    }
    (batch_id, games)
}

fn honest_entry(model: &Model, id: u64, x: &Tensor) -> BatchEntry {
    BatchEntry {
        request_id: request_word(id),
        model_id: model.id(),
        input: x.clone(),
        output: CpuExecutor.run(model, x).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_defends_honest_claims_and_withdraws() {
    let Some(models) = models() else { return };
    let (model, x0) = seq16(&models, "An honest answer, wrongly disputed.");
    let (_, x1) = seq16(&models, "Another honest answer.");
    let n = net(&model).await;
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let w = Watcher::start(n.seq.clone(), db.clone(), models.clone(), None);

    let entries = vec![honest_entry(&model, 1, &x0), honest_entry(&model, 2, &x1)];
    let (batch_id, games) = post_and_dispute(&n, entries, &[0, 1]).await;
    // Two challengers' drivers (one key) attack both claims at once, each believing op
    // 120 gave something else.
    let mut attacks = Vec::new();
    for (&game_id, x) in games.iter().zip([x0.clone(), x1.clone()]) {
        let (chal, model) = (n.chal.clone(), model.clone());
        attacks.push(tokio::spawn(async move {
            let fault = Fault {
                op: 120,
                leaf: 3,
                propagate: true,
            };
            let lie = Belief::with_fault(model.program(), model.weights(), &x, fault).unwrap();
            let mut attacker = GameDriver::new(
                chal,
                game_id,
                Arc::new(model.program().clone()),
                model.weights().root(),
                TracePlayer::new(Side::Challenger, lie),
                driver_config(),
            )
            .await
            .unwrap();
            attack(&mut attacker).await.0
        }));
    }
    let mut ends = Vec::new();
    for a in attacks {
        ends.push(a.await.unwrap());
    }
    for end in &ends {
        assert_eq!(end.winner, Side::Defender);
        assert_eq!(end.reason, 2, "OneStepMatch");
    }

    let m = w.metrics.clone();
    until("both games recorded as won", || {
        let m = m.clone();
        async move { m.games_finished("won") == 2 }
    })
    .await;
    assert_eq!(m.games_finished("lost"), 0);
    assert_eq!(m.games_open.get(), 0);
    assert_eq!(m.bonds_at_risk_wei.get(), 0.0);
    assert_eq!(m.defences.get(), 2);
    assert!(
        m.gas.get_or_create(&game_gas()).get() > 0,
        "game gas counted"
    );
    assert_eq!(
        m.game_withdrawn_wei.get(),
        (2 * DEFENDER_PRIZE) as f64,
        "both payouts withdrawn"
    );
    assert_eq!(
        n.seq.games_credit(n.seq.account()).await.unwrap(),
        U256::ZERO,
        "nothing left to withdraw"
    );
    // Both defender bonds left the stake for the games; the payouts went to the wallet.
    let seq = n.seq.clone();
    until("the stake gauge", || {
        let m = m.clone();
        async move { m.stake_wei.get() == (STAKE - 2 * DEFENDER_BOND) as f64 }
    })
    .await;
    eprintln!(
        "2 games defended at once: {:?} moves, {} gas for the defender's transactions",
        ends.iter().map(|e| e.moves).collect::<Vec<_>>(),
        m.gas.get_or_create(&game_gas()).get()
    );
    let recorded = db.games().unwrap();
    assert_eq!(recorded.len(), 2);
    for ((key, g), (i, game_id)) in recorded.iter().zip(games.iter().enumerate()) {
        assert_eq!(U256::from(*key), *game_id);
        assert_eq!(g.status, GameStatus::Won);
        assert_eq!((g.batch, g.index), (batch_id, i as u64));
        assert_eq!(g.bond_wei, DEFENDER_BOND);
        assert_eq!(g.challenger, n.chal.account().to_vec());
        assert_eq!(
            seq.claim_state(batch_id, i as u64).await.unwrap(),
            0,
            "still pending, not invalidated"
        );
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_sequencer_defends_its_lie_consistently_and_loses_at_the_one_step() {
    let Some(models) = models() else { return };
    let (model, x) = seq16(&models, "A question the sequencer answers wrongly.");
    // A layer norm mid-trace (op 120 of 201); its leaf 192 is not rounded away downstream
    // on this input.
    let lie = Lie { op: 120, leaf: 192 };
    let lying = LyingExecutor::new(Arc::new(CpuExecutor), lie);
    let served = lying.run(&model, &x).unwrap();
    let truth = CpuExecutor.run(&model, &x).unwrap();
    assert_ne!(served, truth, "the lie changes the output");

    let n = net(&model).await;
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let w = Watcher::start(n.seq.clone(), db.clone(), models.clone(), Some(lie));
    let entry = BatchEntry {
        request_id: request_word(7),
        model_id: model.id(),
        input: x.clone(),
        output: served,
    };
    let (batch_id, games) = post_and_dispute(&n, vec![entry], &[0]).await;

    // An honest challenger (the true trace) against the watcher's lying defence.
    let honest = Belief::honest(model.program(), model.weights(), &x).unwrap();
    let mut challenger = GameDriver::new(
        n.chal.clone(),
        games[0],
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Challenger, honest),
        driver_config(),
    )
    .await
    .unwrap();
    let (end, one_step) = attack(&mut challenger).await;
    assert_eq!(end.winner, Side::Challenger);
    assert_eq!(end.reason, 1, "OneStepMismatch, not a timeout");
    assert_eq!(
        one_step,
        Some((lie.op as u64, lie.leaf as u64)),
        "the defence revealed the lying trace down to the lied op and leaf"
    );

    eprintln!(
        "the lying defence lost at the one-step of op {} leaf {} after {} moves",
        lie.op, lie.leaf, end.moves
    );
    let m = w.metrics.clone();
    until("the game recorded as lost", || {
        let m = m.clone();
        async move { m.games_finished("lost") == 1 }
    })
    .await;
    assert_eq!(m.games_finished("won"), 0);
    assert_eq!(m.games_open.get(), 0);
    assert_eq!(m.bonds_at_risk_wei.get(), 0.0);
    assert_eq!(m.game_withdrawn_wei.get(), 0.0);
    let recorded = db.games().unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1.status, GameStatus::Lost);
    assert_eq!(
        n.seq.claim_state(batch_id, 0).await.unwrap(),
        2,
        "the claim is invalidated"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_watcher_resumes_the_game_once() {
    let Some(models) = models() else { return };
    let (model, x) = seq16(&models, "Defended across a restart.");
    let n = net(&model).await;
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let first = Watcher::start(n.seq.clone(), db.clone(), models.clone(), None);
    let (_, games) = post_and_dispute(&n, vec![honest_entry(&model, 1, &x)], &[0]).await;
    let game_id = games[0];

    let fault = Fault {
        op: 60,
        leaf: 0,
        propagate: true,
    };
    let lie = Belief::with_fault(model.program(), model.weights(), &x, fault).unwrap();
    let mut attacker = GameDriver::new(
        n.chal.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Challenger, lie),
        driver_config(),
    )
    .await
    .unwrap();
    // Play until the defender has moved a few times and waits for the challenger.
    let start = Instant::now();
    loop {
        attacker.sync().await.unwrap();
        let r = attacker.referee();
        if r.moves() >= 4 && r.turn() == Some(Side::Challenger) {
            break;
        }
        if r.turn() == Some(Side::Challenger) {
            attacker.step().await.unwrap();
        } else {
            assert!(start.elapsed() < LIMIT, "the defence did not move");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let moves_before = attacker.referee().moves();
    assert_eq!(first.metrics.defences.get(), 1);
    assert_eq!(first.metrics.games_open.get(), 1);
    first.shutdown().await;
    let key = u64::try_from(game_id).unwrap();
    assert_eq!(db.game(key).unwrap().unwrap().status, GameStatus::Open);
    // As if the process died before saving its cursor: the restart reads the challenge
    // again and also finds the game open in its database.
    db.set_chain_cursor(
        CURSOR,
        ChainCursor {
            block: 0,
            block_hash: Default::default(),
        },
    )
    .unwrap();

    // A new client, as a new process would have.
    let seq = connect(&n.net, 1).await;
    let second = Watcher::start(seq, db.clone(), models.clone(), None);
    let (end, _) = attack(&mut attacker).await;
    assert!(
        end.moves > moves_before,
        "the game went on after the restart"
    );
    assert_eq!(end.winner, Side::Defender);
    assert_eq!(end.reason, 2, "OneStepMatch");
    let m = second.metrics.clone();
    until("the resumed game recorded as won", || {
        let m = m.clone();
        async move { m.games_finished("won") == 1 }
    })
    .await;
    assert_eq!(m.defences.get(), 1, "resumed once, not started again");
    assert_eq!(m.games_open.get(), 0);
    assert_eq!(m.game_withdrawn_wei.get(), DEFENDER_PRIZE as f64);
    let recorded = db.games().unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1.status, GameStatus::Won);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_the_sequencer_cannot_back_stops_alone() {
    let Some(models) = models() else { return };
    let (model, x0) = seq16(&models, "A claim posted with a corrupted output.");
    let (_, x1) = seq16(&models, "An honest claim beside it.");
    let n = net(&model).await;
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let w = Watcher::start(n.seq.clone(), db.clone(), models.clone(), None);
    // Claim 0's output is neither the true one nor a configured lie's: no trace backs it,
    // a critical error for that game only.
    let mut bad = honest_entry(&model, 1, &x0);
    match bad.output.data_mut() {
        TensorData::I32(v) => v[0] ^= 1,
        TensorData::I16(v) => v[0] ^= 1,
        TensorData::I8(v) => v[0] ^= 1,
    }
    let entries = vec![bad, honest_entry(&model, 2, &x1)];
    let (_, games) = post_and_dispute(&n, entries, &[0, 1]).await;
    let fault = Fault {
        op: 30,
        leaf: 1,
        propagate: true,
    };
    let lie = Belief::with_fault(model.program(), model.weights(), &x1, fault).unwrap();
    let mut attacker = GameDriver::new(
        n.chal.clone(),
        games[1],
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Challenger, lie),
        driver_config(),
    )
    .await
    .unwrap();
    let (end, _) = attack(&mut attacker).await;
    assert_eq!(end.winner, Side::Defender, "the other game is defended");
    let m = w.metrics.clone();
    until("the good game recorded as won", || {
        let m = m.clone();
        async move { m.games_finished("won") == 1 }
    })
    .await;
    assert_eq!(m.defences.get(), 2, "both games were taken up");
    assert_eq!(
        m.games_open.get(),
        1,
        "the stopped game is still open on chain"
    );
    let key = |g: U256| u64::try_from(g).unwrap();
    assert_eq!(
        db.game(key(games[0])).unwrap().unwrap().status,
        GameStatus::Open,
        "kept open, to be resumed on the next start"
    );
    assert_eq!(
        db.game(key(games[1])).unwrap().unwrap().status,
        GameStatus::Won
    );
    assert_eq!(
        n.seq.game(games[0]).await.unwrap().moves,
        0,
        "no move made for a claim nothing backs"
    );
    assert!(!w.task.is_finished(), "the watcher runs on");
    w.shutdown().await;
}

fn game_gas() -> sequencer::metrics::GasPurposeLabel {
    sequencer::metrics::GasPurposeLabel { purpose: "game" }
}
