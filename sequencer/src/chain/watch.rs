//! The sequencer's defence watcher: follows the rollup for `ClaimChallenged` events against
//! this sequencer's claims and defends every such game to its end, many at once.
//!
//! - A game is this sequencer's when its defender (the rollup makes it the disputed batch's
//!   sequencer) is the client's account.
//! - Each game is recorded in the database ([`crate::db::tables::Games`]: id, batch, index,
//!   status, bond) before it is played, and played in its own task
//!   ([`super::defence::defend_entry`]) with the trace whose output was posted: the true
//!   one, or with [`WatchContext::lie`] set, the lie's ([`crate::dev`]), so the defence
//!   stays consistent with what was posted.
//! - When it ends, the result is recorded (won or lost, the disputed request invalidated
//!   when lost), the metrics updated and the winnings withdrawn (by the driver; amounts
//!   logged).
//! - The follower's cursor is saved after each range of blocks (table `ChainCursors`, name
//!   [`CURSOR`]); on restart the games recorded open are resumed (the driver replays them
//!   from the chain), and a game is never defended twice by one process.
//! - Temporary RPC errors are retried with backoff; a critical error stops that one game,
//!   with an error log (it stays open in the database and is resumed on the next start),
//!   never the watcher.

use super::client::{ChainClient, classify_contract};
use super::defence::{defend_entry, disputed_claim, disputed_entry};
use super::driver::DriverConfig;
use super::follower::{ChainEvent, EventFollower, LogPosition};
use super::{ChainError, GameEnd, Result};
use crate::claim::Claim;
use crate::db::tables::{ChainCursor, GameRecord, GameStatus};
use crate::db::{SequencerDb, blocking, now_ms};
use crate::dev::Lie;
use crate::execution::ModelRegistry;
use crate::metrics::{GasPurpose, Metrics};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use bisection::Side;
use inference::merkle::H256;
use inference::model::Model;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// The watcher's name in the chain cursor table.
pub const CURSOR: &str = "defence";
/// Default interval between polls once caught up.
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);
/// Longest wait between retries after a failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the watcher needs.
#[derive(Clone, Debug)]
pub struct WatchContext {
    /// Signs the defence's moves with the sequencer's key (the key that posts batches).
    pub client: ChainClient,
    /// The sequencer's database (games, cursor, requests).
    pub db: SequencerDb,
    /// The models served: a disputed claim's model is looked up here by id.
    pub models: Arc<ModelRegistry>,
    /// The metrics updated (games open, won, lost, bonds at risk, stake, gas, withdrawals).
    pub metrics: Arc<Metrics>,
    /// The development lie the sequencer serves with, if any: claims whose output is the
    /// lie's are defended with the lying trace.
    pub lie: Option<Lie>,
    /// The first block to follow from when the database has no cursor yet (the deployment's
    /// block, or any earlier one); batches are looked up from it too.
    pub from_block: u64,
    /// Blocks to stay behind the head.
    pub confirmations: u64,
    /// Interval between polls once caught up.
    pub poll: Duration,
    /// How games are played.
    pub driver: DriverConfig,
}

impl WatchContext {
    /// A context with the defaults: no lie, from block 0, no confirmations, polling every
    /// [`DEFAULT_POLL`], the driver's defaults.
    pub fn new(
        client: ChainClient,
        db: SequencerDb,
        models: Arc<ModelRegistry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            db,
            models,
            metrics,
            lie: None,
            from_block: 0,
            confirmations: 0,
            poll: DEFAULT_POLL,
            driver: DriverConfig::default(),
        }
    }

    /// The served model of id `id`.
    fn model(&self, id: &H256) -> Option<Arc<Model>> {
        self.models
            .families()
            .iter()
            .flat_map(|f| &f.buckets)
            .find(|b| b.model.id() == *id)
            .map(|b| b.model.clone())
    }
}

/// How one game's task ended.
#[derive(Debug)]
enum Outcome {
    /// The game is over.
    Ended(GameEnd),
    /// A critical error stopped the defence.
    Failed,
    /// The watcher is shutting down.
    Stopped,
}

/// Resolves once shutdown is asked for (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn db_error(e: crate::db::DbError) -> ChainError {
    ChainError::Local(format!("database: {e}"))
}

/// Runs the watcher until `shutdown` turns true (or its sender is dropped). Game tasks
/// still running then are stopped; their games stay open in the database and are resumed
/// by the next run.
pub async fn run(ctx: WatchContext, mut shutdown: watch::Receiver<bool>) {
    let mut w = Watcher {
        ctx: Arc::new(ctx),
        follower: None,
        next_block: 0,
        started: HashSet::new(),
        bonds: HashMap::new(),
        games: JoinSet::new(),
        shutdown: shutdown.clone(),
    };
    let mut backoff = w.ctx.client.config().retry_initial;
    // Start: the cursor, then the games left open.
    loop {
        match w.start().await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(target: "chain::watch", error = %e, "starting the defence watcher failed; retrying");
                if w.wait(backoff, &mut shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    backoff = w.ctx.client.config().retry_initial;
    loop {
        match w.poll().await {
            Ok(caught_up) => {
                backoff = w.ctx.client.config().retry_initial;
                // Games that ended while catching up (`wait` handles them otherwise).
                while let Some(done) = w.games.try_join_next() {
                    w.finish(done).await;
                }
                if caught_up && w.wait(w.ctx.poll, &mut shutdown).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(target: "chain::watch", error = %e, "polling the chain failed; retrying");
                // Events of the failed range are read again from the saved cursor.
                w.follower = None;
                if w.wait(backoff, &mut shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!(target: "chain::watch", games = w.games.len(), "defence watcher stopping");
    while let Some(done) = w.games.join_next().await {
        w.finish(done).await;
    }
}

struct Watcher {
    ctx: Arc<WatchContext>,
    /// The follower, from the saved cursor (`None`: to be made again from it).
    follower: Option<EventFollower>,
    /// The first block not processed yet (the saved cursor plus one).
    next_block: u64,
    /// Games defended by this process (never started twice).
    started: HashSet<u64>,
    /// The defender bond of each game being played (wei).
    bonds: HashMap<u64, f64>,
    games: JoinSet<(u64, Outcome)>,
    shutdown: watch::Receiver<bool>,
}

impl Watcher {
    /// Reads the cursor and resumes the games recorded open.
    async fn start(&mut self) -> Result<()> {
        let db = self.ctx.db.clone();
        let (cursor, open) = blocking(move || Ok((db.chain_cursor(CURSOR)?, db.open_games()?)))
            .await
            .map_err(db_error)?;
        self.next_block = cursor.map_or(self.ctx.from_block, |c| c.block + 1);
        tracing::info!(target: "chain::watch", from_block = self.next_block, open_games = open.len(), "defence watcher started");
        for (key, record) in open {
            if !self.started.contains(&key) {
                tracing::info!(target: "chain::watch", game = key, batch = record.batch, index = record.index, "resuming the defence of an open game");
                self.spawn(key, record);
            }
        }
        Ok(())
    }

    /// Waits `d`, handling the games that end meanwhile; true when shutdown was asked.
    async fn wait(&mut self, d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                _ = stopped(shutdown) => return true,
                Some(done) = self.games.join_next(), if !self.games.is_empty() => {
                    self.finish(done).await
                }
            }
        }
    }

    /// Reads the next range of blocks and handles its challenges; saves the cursor after
    /// them. Returns whether the watcher is caught up.
    async fn poll(&mut self) -> Result<bool> {
        let follower = self.follower.get_or_insert_with(|| {
            EventFollower::new(
                self.ctx.client.clone(),
                self.next_block,
                self.ctx.confirmations,
            )
        });
        let (events, head) = follower.poll().await?;
        let next = follower.next_block();
        let caught_up = events.is_empty() && next > head.saturating_sub(self.ctx.confirmations);
        // The claims of the games opened in this range (in the same transaction as their
        // `ClaimChallenged`, so in the same range).
        let mut claims: HashMap<U256, Claim> = HashMap::new();
        for event in events {
            match event {
                ChainEvent::GameOpened { game_id, claim, .. } => {
                    claims.insert(game_id, claim);
                }
                ChainEvent::ClaimChallenged {
                    pos,
                    batch_id,
                    index,
                    game_id,
                    challenger,
                } => {
                    let request_id = claims.get(&game_id).map(|c| c.request_id);
                    self.challenged(pos, batch_id, index, game_id, challenger, request_id)
                        .await?;
                }
                _ => {}
            }
        }
        if next > self.next_block {
            let block = next - 1;
            let hash = self
                .ctx
                .client
                .provider()
                .get_block_by_number(block.into())
                .await
                .ok()
                .flatten()
                .map(|b| H256(b.header.hash.0))
                .unwrap_or_default();
            let db = self.ctx.db.clone();
            blocking(move || {
                db.set_chain_cursor(
                    CURSOR,
                    ChainCursor {
                        block,
                        block_hash: hash,
                    },
                )
            })
            .await
            .map_err(db_error)?;
            self.next_block = next;
        }
        self.update_stake().await;
        Ok(caught_up)
    }

    /// Handles a challenge: records and defends it if it is against this sequencer.
    async fn challenged(
        &mut self,
        pos: LogPosition,
        batch_id: u64,
        index: u64,
        game_id: U256,
        challenger: Address,
        request_id: Option<H256>,
    ) -> Result<()> {
        let Ok(key) = u64::try_from(game_id) else {
            tracing::warn!(target: "chain::watch", game = %game_id, "a game id beyond 64 bits: not followed");
            return Ok(());
        };
        if self.started.contains(&key) {
            return Ok(());
        }
        let view = self.ctx.client.game(game_id).await?;
        if view.defender != self.ctx.client.account() {
            tracing::debug!(target: "chain::watch", game = key, defender = %view.defender, "a game against another sequencer");
            return Ok(());
        }
        let record = GameRecord {
            game_id: H256(game_id.to_be_bytes()),
            batch: batch_id,
            index,
            request: None,
            challenger: challenger.to_vec(),
            status: GameStatus::Open,
            bond_wei: view.defenderBond,
            opened_block: pos.block,
            opened_at_ms: now_ms(),
        };
        let db = self.ctx.db.clone();
        let to_store = record.clone();
        let new = blocking(move || db.record_game(key, &to_store, request_id.unwrap_or_default()))
            .await
            .map_err(db_error)?;
        if !new {
            // Recorded by an earlier run: resumed at start if still open.
            tracing::debug!(target: "chain::watch", game = key, "game already recorded");
            return Ok(());
        }
        tracing::info!(target: "chain::watch", game = key, batch = batch_id, index, %challenger, bond_wei = %view.defenderBond, "claim challenged: defending");
        self.spawn(key, record);
        Ok(())
    }

    /// Starts the defence of game `key` in its own task.
    fn spawn(&mut self, key: u64, record: GameRecord) {
        self.started.insert(key);
        let bond = record.bond_wei as f64;
        self.bonds.insert(key, bond);
        let m = &self.ctx.metrics;
        m.defences.inc();
        m.games_open.inc();
        m.bonds_at_risk_wei.inc_by(bond);
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!(
            "game",
            game_id = key,
            batch = record.batch,
            index = record.index
        );
        self.games
            .spawn(async move { (key, defend(ctx, key, shutdown).await) }.instrument(span));
    }

    /// Records how a game's task ended.
    async fn finish(&mut self, done: std::result::Result<(u64, Outcome), tokio::task::JoinError>) {
        let (key, outcome) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: "chain::watch", error = %e, "a defence task panicked or was cancelled");
                return;
            }
        };
        let end = match outcome {
            Outcome::Ended(end) => end,
            // The game stays open: the error was logged by the task; the next start resumes it.
            Outcome::Failed | Outcome::Stopped => return,
        };
        let won = end.winner == Side::Defender;
        // The database first, then the metrics: a result seen in the metrics is recorded.
        let db = self.ctx.db.clone();
        let status = if won {
            GameStatus::Won
        } else {
            GameStatus::Lost
        };
        if let Err(e) = blocking(move || db.finish_game(key, status)).await {
            tracing::error!(target: "chain::watch", game = key, error = %e, "recording the game's end failed (it is replayed on the next start)");
        }
        let m = &self.ctx.metrics;
        m.games_open.dec();
        m.bonds_at_risk_wei
            .dec_by(self.bonds.remove(&key).unwrap_or_default());
        m.gas_spent(GasPurpose::Game, end.gas_used);
        let withdrawn = f64::from(end.withdrawn);
        if withdrawn > 0.0 {
            m.game_withdrawn_wei.inc_by(withdrawn);
        }
        // Last: a result counted means the rest is updated.
        m.game_ended(won);
        tracing::info!(target: "chain::watch", game = key, won, reason = end.reason, moves = end.moves, withdrawn_wei = %end.withdrawn, gas = end.gas_used, "game over");
    }

    /// Reads this sequencer's stake into the metrics (a failure only skips an update).
    async fn update_stake(&self) {
        let c = &self.ctx.client;
        match c.rollup().sequencers(c.account()).call().await {
            Ok(s) => {
                self.ctx.metrics.stake_wei.set(s.stake as f64);
            }
            Err(e) => {
                let e = classify_contract("rollup.sequencers", &e);
                tracing::debug!(target: "chain::watch", error = %e, "reading the stake failed");
            }
        }
    }
}

/// Defends game `key` to its end: temporary errors are retried with backoff (the driver
/// re-syncs from the chain each time), a critical one ends the task with an error log.
async fn defend(ctx: Arc<WatchContext>, key: u64, mut shutdown: watch::Receiver<bool>) -> Outcome {
    let game_id = U256::from(key);
    let mut backoff = ctx.client.config().retry_initial;
    loop {
        let attempt = async {
            let claim = disputed_claim(&ctx.client, game_id, ctx.from_block).await?;
            let entry = disputed_entry(&ctx.client, &claim).await?;
            let model = ctx.model(&entry.model_id).ok_or_else(|| {
                ChainError::Local(format!(
                    "the disputed claim's model {} is not served here",
                    entry.model_id
                ))
            })?;
            defend_entry(
                ctx.client.clone(),
                game_id,
                claim,
                entry,
                model,
                ctx.lie,
                ctx.driver.clone(),
            )
            .await
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = stopped(&mut shutdown) => return Outcome::Stopped,
        };
        match result {
            Ok(end) => return Outcome::Ended(end),
            Err(e) if e.is_temporary() => {
                tracing::warn!(target: "chain::watch", error = %e, retry_in = ?backoff, "temporary error in the defence; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => return Outcome::Stopped,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::error!(target: "chain::watch", error = %e, "the defence stopped on a critical error; the game stays open");
                return Outcome::Failed;
            }
        }
    }
}
