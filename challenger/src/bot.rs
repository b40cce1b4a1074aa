//! The bot: follows the rollup, re-executes the claims of every posted batch (or a sample),
//! disputes the wrong ones and plays their games to the end, many at once.

use crate::check::{Verdict, check_entry};
use crate::db::{ChallengerDb, CheckedBatch, GameRecord, GameStatus};
use crate::metrics::Metrics;
use crate::models::ModelStore;
use alloy::primitives::{B256, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use bisection::{Belief, Side, TracePlayer};
use inference::merkle::{H256, keccak256};
use sequencer::chain::bindings::{DisputeGame, InferenceRollup};
use sequencer::chain::follower::fetch_batch_data;
use sequencer::chain::{
    ChainClient, ChainError, ChainEvent, DriverConfig, EventFollower, GameDriver, GameEnd,
};
use sequencer::claim::{BatchCommitment, Claim};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Default claims re-executed at once.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// Default interval between polls of the chain once caught up.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How the bot works.
#[derive(Clone, Debug)]
pub struct ChallengerConfig {
    /// Claims re-executed at once (CPU threads).
    pub concurrency: usize,
    /// Share of claims re-executed, in `[0, 1]`; the choice is a hash of the request id,
    /// so every restart samples the same claims.
    pub sample_rate: f64,
    /// Claims of on-chain requests whose fee is at least this many wei are always checked.
    pub always_check_fee: Option<U256>,
    /// Report wrong claims without disputing them.
    pub dry_run: bool,
    /// The first block to follow from.
    pub start_block: u64,
    /// Blocks to stay behind the head.
    pub confirmations: u64,
    /// Interval between polls once caught up.
    pub poll_interval: Duration,
    /// How games are played.
    pub driver: DriverConfig,
}

impl Default for ChallengerConfig {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            sample_rate: 1.0,
            always_check_fee: None,
            dry_run: false,
            start_block: 0,
            confirmations: 0,
            poll_interval: DEFAULT_POLL_INTERVAL,
            driver: DriverConfig::default(),
        }
    }
}

/// What happened to one claim of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Re-executed.
    Checked(Verdict),
    /// Not sampled.
    Skipped,
    /// Its model is not registered, or could not be loaded or checked.
    UnknownModel(String),
    /// Wrong, and a game was opened against it.
    Disputed {
        /// The game.
        game_id: U256,
    },
    /// Wrong, but disputing failed (window closed, already invalidated, RPC failure).
    DisputeFailed(String),
}

impl ClaimOutcome {
    /// A short label for logs and the database.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Checked(v) => v.label(),
            Self::Skipped => "skipped",
            Self::UnknownModel(_) => "unknown_model",
            Self::Disputed { .. } => "disputed",
            Self::DisputeFailed(_) => "dispute_failed",
        }
    }
}

/// What checking one batch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchReport {
    /// The batch.
    pub batch_id: u64,
    /// Why the batch could not be checked at all (bad data), if so.
    pub error: Option<String>,
    /// One outcome per claim, in order (empty on error).
    pub claims: Vec<ClaimOutcome>,
}

/// The challenger bot.
pub struct Challenger {
    client: ChainClient,
    store: Arc<ModelStore>,
    config: ChallengerConfig,
    metrics: Arc<Metrics>,
    follower: EventFollower,
    uris: HashMap<H256, String>,
    fees: HashMap<H256, U256>,
    disputed: HashSet<(u64, u64)>,
    games: JoinSet<(U256, Result<GameEnd, ChainError>)>,
    ended: Vec<(U256, Result<GameEnd, String>)>,
    cpu: Arc<Semaphore>,
    db: Option<ChallengerDb>,
}

fn storage(e: sequencer::storage::StorageError) -> ChainError {
    ChainError::Local(format!("storage: {e}"))
}

fn game_key(id: U256) -> H256 {
    H256(id.to_be_bytes())
}

/// Whether the claim of `request_id` falls in a sample of `rate`.
pub fn sampled(request_id: &H256, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = keccak256(&request_id.0);
    let x = u64::from_be_bytes(h.0[..8].try_into().unwrap_or([0; 8]));
    (x as f64) < rate.max(0.0) * u64::MAX as f64
}

impl Challenger {
    /// A bot signing with `client`, re-executing the models of `store`.
    pub fn new(
        client: ChainClient,
        store: Arc<ModelStore>,
        config: ChallengerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let follower = EventFollower::new(client.clone(), config.start_block, config.confirmations);
        Self {
            cpu: Arc::new(Semaphore::new(config.concurrency.max(1))),
            client,
            store,
            metrics,
            follower,
            uris: HashMap::new(),
            fees: HashMap::new(),
            disputed: HashSet::new(),
            games: JoinSet::new(),
            ended: Vec::new(),
            config,
            db: None,
        }
    }

    /// Persists progress in `db` and resumes from it: the follower continues from the saved
    /// cursor, claims already disputed are never disputed again, and the games still open
    /// are played on (replayed from the chain).
    pub async fn with_db(mut self, db: ChallengerDb) -> Result<Self, ChainError> {
        if let Some(next) = db.cursor().map_err(storage)? {
            self.follower =
                EventFollower::new(self.client.clone(), next, self.config.confirmations);
        }
        for (id, game) in db.games().map_err(storage)? {
            self.disputed.insert((game.batch_id, game.index));
            if game.status != GameStatus::Open {
                continue;
            }
            let game_id = U256::from_be_bytes(id.0);
            let data = fetch_batch_data(&self.client, B256::from(game.batch_tx.0)).await?;
            let entry = data.entries.get(game.index as usize).ok_or_else(|| {
                ChainError::Inconsistent(format!(
                    "game {game_id}: batch has no claim {}",
                    game.index
                ))
            })?;
            let model = self.model(&entry.model_id).map_err(ChainError::Local)?;
            tracing::info!(target: "challenger", game = %game_id, "resuming game");
            self.metrics.games_open.inc();
            self.spawn_game(game_id, model, entry.input.clone(), game.opened_block);
        }
        self.db = Some(db);
        Ok(self)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The follower's next block (persist it to resume).
    pub fn cursor(&self) -> u64 {
        self.follower.next_block()
    }

    /// Games being played.
    pub fn open_games(&self) -> usize {
        self.games.len()
    }

    /// Polls the chain once and handles what it returns: returns the reports of the
    /// batches seen, and whether the follower is caught up.
    pub async fn poll(&mut self) -> Result<(Vec<BatchReport>, bool), ChainError> {
        let (events, head) = self.follower.poll().await?;
        let caught_up = events.is_empty()
            && self.follower.next_block() > head.saturating_sub(self.config.confirmations);
        let mut reports = Vec::new();
        for event in events {
            if let Some(r) = self.handle(event).await? {
                reports.push(r);
            }
        }
        self.metrics
            .cursor_block
            .set(self.follower.next_block() as i64);
        self.metrics
            .lag_blocks
            .set(head.saturating_sub(self.follower.next_block().saturating_sub(1)) as i64);
        self.reap();
        Ok((reports, caught_up))
    }

    /// Handles one event.
    async fn handle(&mut self, event: ChainEvent) -> Result<Option<BatchReport>, ChainError> {
        match event {
            ChainEvent::ModelRegistered { model_id, uri, .. } => {
                self.uris.insert(model_id, uri);
            }
            ChainEvent::InferenceRequested {
                request_id, fee, ..
            } => {
                self.fees.insert(request_id, fee);
            }
            ChainEvent::ClaimChallenged {
                batch_id,
                index,
                challenger,
                ..
            } if challenger == self.client.account() => {
                self.disputed.insert((batch_id, index));
            }
            ChainEvent::BatchPosted {
                pos,
                batch_id,
                claims_root,
                count,
                ..
            } => {
                return Ok(Some(
                    self.check_batch(batch_id, pos.tx, claims_root, count, pos.block)
                        .await?,
                ));
            }
            _ => {}
        }
        Ok(None)
    }

    /// The model of `id`: loaded, or fetched from its registered URI.
    fn model(&self, id: &H256) -> Result<Arc<inference::model::Model>, String> {
        if let Some(m) = self.store.get(id) {
            return Ok(m);
        }
        match self.uris.get(id) {
            Some(uri) => self.store.load_uri(*id, uri).map_err(|e| e.to_string()),
            None => Err(format!("model {id} is not registered or not loaded")),
        }
    }

    /// Checks batch `batch_id` posted by transaction `tx`, and disputes its wrong claims
    /// unless in dry-run mode.
    pub async fn check_batch(
        &mut self,
        batch_id: u64,
        tx: alloy::primitives::B256,
        root: H256,
        count: u32,
        block: u64,
    ) -> Result<BatchReport, ChainError> {
        if let Some(done) = self
            .db
            .as_ref()
            .map(|db| db.checked_batch(batch_id))
            .transpose()
            .map_err(storage)?
            .flatten()
        {
            tracing::debug!(target: "challenger", batch = batch_id, "already checked");
            return Ok(BatchReport {
                batch_id,
                error: done.error,
                claims: Vec::new(),
            });
        }
        let report = self
            .check_batch_data(batch_id, tx, root, count, block)
            .await?;
        if let Some(db) = &self.db {
            let record = CheckedBatch {
                tx: H256(tx.0),
                outcomes: report
                    .claims
                    .iter()
                    .map(ClaimOutcome::label)
                    .map(str::to_string)
                    .collect(),
                error: report.error.clone(),
            };
            db.put_checked_batch(batch_id, &record).map_err(storage)?;
        }
        Ok(report)
    }

    async fn check_batch_data(
        &mut self,
        batch_id: u64,
        tx: alloy::primitives::B256,
        root: H256,
        count: u32,
        block: u64,
    ) -> Result<BatchReport, ChainError> {
        let data = match fetch_batch_data(&self.client, tx).await {
            Ok(d) => d,
            Err(e) if !e.is_temporary() => return Ok(self.bad_batch(batch_id, e.to_string())),
            Err(e) => return Err(e),
        };
        let (claims, commitment) = match data.check_commitment(root, count) {
            Ok(c) => c,
            Err(e) => return Ok(self.bad_batch(batch_id, e.to_string())),
        };
        let mut outcomes = vec![ClaimOutcome::Skipped; claims.len()];
        let mut jobs = JoinSet::new();
        for (i, entry) in data.entries.iter().enumerate() {
            let always = self
                .config
                .always_check_fee
                .zip(self.fees.get(&entry.request_id))
                .is_some_and(|(min, fee)| *fee >= min);
            if !always && !sampled(&entry.request_id, self.config.sample_rate) {
                self.metrics.claims_skipped.inc();
                continue;
            }
            let model = match self.model(&entry.model_id) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(target: "challenger", batch = batch_id, claim = i, error = %e, "cannot check claim");
                    self.metrics.unknown_models.inc();
                    outcomes[i] = ClaimOutcome::UnknownModel(e);
                    continue;
                }
            };
            let permit = self.cpu.clone();
            let entry = entry.clone();
            jobs.spawn(async move {
                let _permit = permit.acquire_owned().await;
                let verdict = tokio::task::spawn_blocking(move || check_entry(&model, &entry))
                    .await
                    .unwrap_or_else(|e| Verdict::BadInput(format!("re-execution failed: {e}")));
                (i, verdict)
            });
        }
        while let Some(done) = jobs.join_next().await {
            let Ok((i, verdict)) = done else { continue };
            self.metrics.claims_checked.inc();
            tracing::info!(target: "challenger", batch = batch_id, claim = i, verdict = verdict.label(), "checked");
            outcomes[i] = ClaimOutcome::Checked(verdict);
        }
        let wrong: Vec<(usize, H256, H256)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                ClaimOutcome::Checked(Verdict::Wrong { claimed, computed }) => {
                    Some((i, *claimed, *computed))
                }
                _ => None,
            })
            .collect();
        for (i, claimed, computed) in wrong {
            {
                self.metrics.mismatches.inc();
                tracing::warn!(target: "challenger", batch = batch_id, claim = i, %claimed, %computed, "wrong output");
                if self.config.dry_run || self.disputed.contains(&(batch_id, i as u64)) {
                    continue;
                }
                outcomes[i] = match self
                    .dispute(
                        batch_id,
                        i,
                        &claims,
                        &commitment,
                        &data.entries[i],
                        tx,
                        block,
                    )
                    .await
                {
                    Ok(game_id) => ClaimOutcome::Disputed { game_id },
                    Err(e) => {
                        tracing::error!(target: "challenger", batch = batch_id, claim = i, error = %e, "dispute failed");
                        ClaimOutcome::DisputeFailed(e.to_string())
                    }
                };
            }
        }
        Ok(BatchReport {
            batch_id,
            error: None,
            claims: outcomes,
        })
    }

    fn bad_batch(&self, batch_id: u64, error: String) -> BatchReport {
        tracing::warn!(target: "challenger", batch = batch_id, %error, "bad batch data");
        self.metrics.bad_batches.inc();
        BatchReport {
            batch_id,
            error: Some(error),
            claims: Vec::new(),
        }
    }

    /// A game this account already opened against claim `index` of batch `batch_id`, if
    /// any (a restart after the challenge but before it was recorded).
    async fn existing_game(
        &self,
        batch_id: u64,
        index: u64,
    ) -> Result<Option<(U256, u64)>, ChainError> {
        let filter = Filter::new()
            .address(self.client.addresses().rollup)
            .event_signature(InferenceRollup::ClaimChallenged::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(batch_id)))
            .topic2(B256::from(U256::from(index)));
        let logs = self
            .client
            .logs(
                "getLogs ClaimChallenged",
                &filter,
                self.config.start_block,
                None,
            )
            .await?;
        Ok(logs.iter().find_map(|l| {
            let e = InferenceRollup::ClaimChallenged::decode_log(&l.inner).ok()?;
            (e.challenger == self.client.account())
                .then(|| (e.gameId, l.block_number.unwrap_or_default()))
        }))
    }

    /// Opens a game against claim `index` (or finds the one this account opened) and
    /// starts playing it.
    #[allow(clippy::too_many_arguments)]
    async fn dispute(
        &mut self,
        batch_id: u64,
        index: usize,
        claims: &[Claim],
        commitment: &BatchCommitment,
        entry: &sequencer::chain::BatchEntry,
        batch_tx: B256,
        block: u64,
    ) -> Result<U256, ChainError> {
        let model = self.model(&entry.model_id).map_err(ChainError::Local)?;
        let (game_id, opened_block) = match self.existing_game(batch_id, index as u64).await? {
            Some(found) => {
                tracing::info!(target: "challenger", batch = batch_id, claim = index, game = %found.0, "already disputed by this account: playing on");
                found
            }
            None => {
                let proof = commitment
                    .proofs
                    .get(index)
                    .ok_or_else(|| ChainError::Local(format!("no proof for claim {index}")))?;
                let (game_id, receipt) = self
                    .client
                    .challenge(batch_id, index as u64, &claims[index], proof)
                    .await?;
                let bond = receipt
                    .inner
                    .logs()
                    .iter()
                    .find_map(|l| l.log_decode::<DisputeGame::GameOpened>().ok())
                    .map(|l| l.inner.data.challengerBond)
                    .unwrap_or_default();
                self.metrics.games_opened.inc();
                self.metrics.bonds_posted_wei.inc_by(bond as f64);
                tracing::info!(target: "challenger", batch = batch_id, claim = index, game = %game_id, "game opened");
                (game_id, receipt.block_number.unwrap_or(block))
            }
        };
        self.disputed.insert((batch_id, index as u64));
        if let Some(db) = &self.db {
            let record = GameRecord {
                batch_id,
                index: index as u64,
                batch_tx: H256(batch_tx.0),
                opened_block,
                status: GameStatus::Open,
            };
            db.put_game(game_key(game_id), &record).map_err(storage)?;
        }
        self.metrics.games_open.inc();
        self.spawn_game(game_id, model, entry.input.clone(), opened_block);
        Ok(game_id)
    }

    /// Plays game `game_id` as the challenger believing the true trace of `input`.
    fn spawn_game(
        &mut self,
        game_id: U256,
        model: Arc<inference::model::Model>,
        input: inference::Tensor,
        from_block: u64,
    ) {
        let client = self.client.clone();
        let mut config = self.config.driver.clone();
        config.from_block = from_block;
        self.games.spawn(async move {
            let result = async {
                let belief = Belief::honest(model.program(), model.weights(), &input)
                    .map_err(|e| ChainError::Local(e.to_string()))?;
                let player = TracePlayer::new(Side::Challenger, belief);
                let program = Arc::new(model.program().clone());
                let mut driver = GameDriver::new(
                    client,
                    game_id,
                    program,
                    model.weights().root(),
                    player,
                    config,
                )
                .await?;
                driver.run().await
            }
            .await;
            (game_id, result)
        });
    }

    /// Collects the games that ended.
    fn reap(&mut self) {
        while let Some(done) = self.games.try_join_next() {
            self.record(done);
        }
    }

    fn record(
        &mut self,
        done: Result<(U256, Result<GameEnd, ChainError>), tokio::task::JoinError>,
    ) {
        let Ok((game_id, result)) = done else { return };
        self.metrics.games_open.dec();
        let status = match &result {
            Ok(end) if end.winner == Side::Challenger => GameStatus::Won,
            Ok(_) => GameStatus::Lost,
            Err(_) => GameStatus::Failed,
        };
        if let Some(db) = &self.db {
            let updated = db.games().ok().and_then(|games| {
                games
                    .into_iter()
                    .find(|(id, _)| *id == game_key(game_id))
                    .map(|(_, mut g)| {
                        g.status = status;
                        g
                    })
            });
            if let Some(g) = updated
                && let Err(e) = db.put_game(game_key(game_id), &g)
            {
                tracing::error!(target: "challenger", game = %game_id, error = %e, "recording the game's end");
            }
        }
        match &result {
            Ok(end) if end.winner == Side::Challenger => {
                self.metrics.games_won.inc();
                self.metrics.winnings_wei.inc_by(f64::from(end.withdrawn));
            }
            Ok(_) => {
                self.metrics.games_lost.inc();
            }
            Err(e) => {
                tracing::error!(target: "challenger", game = %game_id, error = %e, "game drive failed")
            }
        }
        self.ended
            .push((game_id, result.map_err(|e| e.to_string())));
    }

    /// Waits for every game being played to end; returns every game ended so far.
    pub async fn finish_games(&mut self) -> Vec<(U256, Result<GameEnd, String>)> {
        while let Some(done) = self.games.join_next().await {
            self.record(done);
        }
        self.ended.clone()
    }

    /// Follows the chain until `shutdown` resolves, then stops (games in flight are
    /// abandoned: a restart replays them from the chain).
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ChainError> {
        tokio::pin!(shutdown);
        loop {
            let caught_up = match self.poll().await {
                Ok((_, caught_up)) => caught_up,
                Err(e) if e.is_temporary() => {
                    tracing::warn!(target: "challenger", error = %e, "temporary error");
                    true
                }
                Err(e) => return Err(e),
            };
            if caught_up {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }
}
