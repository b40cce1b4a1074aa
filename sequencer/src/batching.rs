//! Batching and posting.
//!
//! The [`Batcher`] closes a batch when the queue of executed requests reaches
//! `max_size`, or when its oldest entry is older than `max_age`; a batch is built in one
//! transaction ([`SequencerDb::make_batch`]) and stays `ready` in MDBX until a
//! [`BatchPoster`] confirms it.
//!
//! Posting is a state machine stored with the batch, so a restart resumes where it stopped
//! and never posts a batch twice:
//!
//! ```text
//! ready --sign, store--> signed --send, store--> sent --included--> posted
//!   ^                      ^                       |
//!   |                      +-- pending too long: --+
//!   |                          bump fees, store    |
//!   +------------------ reverted ------------------+
//! ```
//!
//! The signed transaction (hash, raw bytes, nonce) is committed *before* it is sent: after a
//! crash a `signed` or `sent` batch re-sends exactly the same transaction (same nonce, same
//! hash), which the chain accepts at most once.
//!
//! A transaction still in the mempool after [`PostSettings::bump_after`] (its fees too low
//! for the chain's current base fee) is replaced: the poster signs the same call with the
//! same nonce and higher fees ([`BatchPoster::bump`]), and the batch stores the replacement
//! together with the hashes it replaced ([`crate::db::tables::ReplacedTxs`]). Only one
//! transaction of a nonce can be mined; if a replaced one wins the race, the batch is posted
//! by that one.

use crate::claim::Claim;
use crate::db::tables::{BatchRecord, BatchStatus, RequestRecord, SignedTx};
use crate::db::{DbError, SequencerDb, blocking, now_ms};
use crate::metrics::Metrics;
use inference::merkle::H256;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What the chain needs to post one batch: its root and, for data availability, every
/// claim with its input and output.
#[derive(Clone, Debug)]
pub struct BatchPayload {
    /// The batch.
    pub batch: BatchRecord,
    /// Its claims, in leaf order.
    pub claims: Vec<Claim>,
    /// Its requests (inputs and outputs), in leaf order.
    pub requests: Vec<RequestRecord>,
}

/// Where a posted transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// The node does not know it (not sent yet, or dropped from the mempool).
    Unknown,
    /// In the mempool.
    Pending,
    /// Mined in `block`, not yet as deep as the confirmations the poster wants.
    Confirming {
        /// The block.
        block: u64,
    },
    /// Included in `block`; `success` is false if it reverted.
    Included {
        /// The block.
        block: u64,
        /// Whether it succeeded.
        success: bool,
    },
}

/// What the node said to a sent transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted (or already known or included).
    Accepted,
    /// Refused for its fees: below the chain's base fee, or too little to replace the
    /// pending transaction of its nonce.
    Underpriced,
}

/// Posts batches to the settlement chain. The chain layer implements it (alloy over the
/// `contracts` bindings); the state machine here calls it.
pub trait BatchPoster: Send + Sync + 'static {
    /// The poster's error; every error is retried with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds and signs the transaction posting `payload` (with the next nonce), without
    /// sending it.
    fn sign(
        &self,
        payload: &BatchPayload,
    ) -> impl Future<Output = Result<SignedTx, Self::Error>> + Send;

    /// Sends a signed transaction. Sending one already known or included must succeed; one
    /// the node refuses for its fees is [`SendOutcome::Underpriced`].
    fn send(&self, tx: &SignedTx) -> impl Future<Output = Result<SendOutcome, Self::Error>> + Send;

    /// Where a transaction stands.
    fn status(&self, tx_hash: H256) -> impl Future<Output = Result<TxStatus, Self::Error>> + Send;

    /// Signs a replacement of `tx`: the same call with the same nonce and fees high enough to
    /// replace it in the mempool and to be mined at the chain's current fees; `None` when the
    /// operator's fee ceiling leaves no room for that. Nothing is sent.
    fn bump(
        &self,
        tx: &SignedTx,
    ) -> impl Future<Output = Result<Option<SignedTx>, Self::Error>> + Send;
}

/// A posting error.
#[derive(Debug, thiserror::Error)]
pub enum PostError<E: std::error::Error + 'static> {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The poster failed.
    #[error("poster: {0}")]
    Poster(#[source] E),
    /// The node refuses the transaction for its fees and the fee ceiling allows no higher.
    #[error(
        "batch transaction {tx} is underpriced and the fee ceiling allows no replacement (raise --chain.max-fee-per-gas, or wait for lower fees)"
    )]
    AtFeeCeiling {
        /// The transaction.
        tx: H256,
    },
}

/// Batching settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Close a batch at this many claims.
    pub max_size: usize,
    /// Close a batch when its oldest claim is this old.
    pub max_age: Duration,
}

/// Closes batches by size or age.
#[derive(Debug)]
pub struct Batcher {
    db: SequencerDb,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
    /// Woken when requests are executed.
    pub executed: Arc<Notify>,
    /// Woken when a batch is built.
    pub built: Arc<Notify>,
}

impl Batcher {
    /// A batcher over `db`.
    pub fn new(db: SequencerDb, settings: BatchSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            settings,
            metrics,
            executed: Arc::new(Notify::new()),
            built: Arc::new(Notify::new()),
        }
    }

    /// Builds every batch that is due now; returns how many.
    pub fn tick(&self) -> Result<usize, DbError> {
        let mut built = 0;
        loop {
            let queue = self.db.batch_queue()?;
            self.metrics.batch_queue_depth.set(queue.len as i64);
            let old = queue.oldest_ms.is_some_and(|t| {
                now_ms().saturating_sub(t) >= self.settings.max_age.as_millis() as u64
            });
            if queue.len == 0 || (queue.len < self.settings.max_size && !old) {
                return Ok(built);
            }
            let Some(batch) = self.db.make_batch(self.settings.max_size)? else {
                return Ok(built);
            };
            tracing::info!(
                target: "sequencer::batching",
                batch = batch.id,
                claims = batch.requests.len(),
                root = %batch.claims_root,
                "batch built"
            );
            self.metrics.batches.inc();
            self.metrics.batch_size.observe(batch.requests.len() as f64);
            built += 1;
        }
    }

    /// Runs until `shutdown` turns true: ticks when woken, and at least every quarter of
    /// `max_age`. Storage errors are logged and retried with backoff.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period =
            (self.settings.max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut backoff = Duration::from_millis(100);
        loop {
            let this = self.clone();
            match blocking(move || this.tick()).await {
                Ok(n) => {
                    backoff = Duration::from_millis(100);
                    if n > 0 {
                        self.built.notify_waiters();
                    }
                }
                Err(e) => {
                    tracing::error!(target: "sequencer::batching", error = %e, "batching failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.executed.notified() => {}
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Loads what the poster needs for `batch`.
pub fn payload(db: &SequencerDb, batch: &BatchRecord) -> Result<BatchPayload, DbError> {
    let (claims, requests) = db.claimed_requests(&batch.requests)?;
    Ok(BatchPayload {
        batch: batch.clone(),
        claims,
        requests,
    })
}

/// Default wait of a sent transaction unknown to the node before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);

/// Default wait of a transaction in the mempool before it is replaced with higher fees (the
/// chain client's, so batches and game moves wait alike).
pub use crate::chain::client::DEFAULT_BUMP_AFTER;

/// How the poster drives batch transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostSettings {
    /// How often an unposted batch is looked at (its transaction's status polled).
    pub poll: Duration,
    /// How long a transaction may wait in the mempool before it is replaced with higher
    /// fees (and between two replacements).
    pub bump_after: Duration,
    /// How long a sent transaction may stay unknown to the node (dropped from its mempool)
    /// before it is sent again.
    pub resend_after: Duration,
}

impl Default for PostSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            bump_after: DEFAULT_BUMP_AFTER,
            resend_after: RESEND_AFTER,
        }
    }
}

/// What one step of the state machine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The batch moved to this status.
    Moved(BatchStatus),
    /// Nothing to do yet (waiting for inclusion).
    Waiting,
}

/// Advances one batch by one step, storing the new status before anything that depends on
/// it happens.
pub async fn step<P: BatchPoster>(
    db: &SequencerDb,
    poster: &P,
    batch: &BatchRecord,
    settings: &PostSettings,
) -> Result<Step, PostError<P::Error>> {
    let id = batch.id;
    match &batch.status {
        BatchStatus::Ready => {
            let db2 = db.clone();
            let b = batch.clone();
            let payload = blocking(move || payload(&db2, &b)).await?;
            let tx = poster.sign(&payload).await.map_err(PostError::Poster)?;
            let status = BatchStatus::Signed(tx);
            let (db2, s, attempts) = (db.clone(), status.clone(), batch.attempts + 1);
            blocking(move || db2.set_batch_status(id, s, attempts)).await?;
            Ok(Step::Moved(status))
        }
        BatchStatus::Signed(tx) => {
            if poster.send(tx).await.map_err(PostError::Poster)? == SendOutcome::Underpriced {
                let Some(replacement) = poster.bump(tx).await.map_err(PostError::Poster)? else {
                    return Err(PostError::AtFeeCeiling { tx: tx.hash });
                };
                tracing::warn!(target: "sequencer::posting", batch = id, tx = %tx.hash, replacement = %replacement.hash, nonce = tx.nonce, "batch transaction refused for its fees; replacing it with higher fees");
                let (db2, r) = (db.clone(), replacement.clone());
                blocking(move || db2.replace_batch_tx(id, r)).await?;
                return Ok(Step::Moved(BatchStatus::Signed(replacement)));
            }
            let status = BatchStatus::Sent {
                tx: tx.clone(),
                sent_at_ms: now_ms(),
            };
            let (db2, s, attempts) = (db.clone(), status.clone(), batch.attempts);
            blocking(move || db2.set_batch_status(id, s, attempts)).await?;
            Ok(Step::Moved(status))
        }
        BatchStatus::Sent { tx, sent_at_ms } => {
            let waited = now_ms().saturating_sub(*sent_at_ms);
            let mut included = poster.status(tx.hash).await.map_err(PostError::Poster)?;
            let mut hash = tx.hash;
            if included == TxStatus::Unknown {
                // The node dropped it: maybe because a transaction it replaced was mined.
                let db2 = db.clone();
                for old in blocking(move || db2.replaced_txs(id)).await? {
                    let s = poster.status(old).await.map_err(PostError::Poster)?;
                    if matches!(s, TxStatus::Included { .. } | TxStatus::Confirming { .. }) {
                        (included, hash) = (s, old);
                        break;
                    }
                }
            }
            let status = match included {
                TxStatus::Confirming { .. } => return Ok(Step::Waiting),
                TxStatus::Pending => {
                    if waited < settings.bump_after.as_millis() as u64 {
                        return Ok(Step::Waiting);
                    }
                    let Some(replacement) = poster.bump(tx).await.map_err(PostError::Poster)?
                    else {
                        // At the fee ceiling: wait another `bump_after` before asking again.
                        tracing::warn!(target: "sequencer::posting", batch = id, tx = %tx.hash, waited_ms = waited, "batch transaction still pending and the fee ceiling allows no replacement");
                        let status = BatchStatus::Sent {
                            tx: tx.clone(),
                            sent_at_ms: now_ms(),
                        };
                        let (db2, s, attempts) = (db.clone(), status.clone(), batch.attempts);
                        blocking(move || db2.set_batch_status(id, s, attempts)).await?;
                        return Ok(Step::Moved(status));
                    };
                    tracing::warn!(target: "sequencer::posting", batch = id, tx = %tx.hash, replacement = %replacement.hash, nonce = tx.nonce, waited_ms = waited, "batch transaction pending too long; replacing it with higher fees");
                    let (db2, r) = (db.clone(), replacement.clone());
                    blocking(move || db2.replace_batch_tx(id, r)).await?;
                    return Ok(Step::Moved(BatchStatus::Signed(replacement)));
                }
                TxStatus::Unknown => {
                    if waited < settings.resend_after.as_millis() as u64 {
                        return Ok(Step::Waiting);
                    }
                    // Dropped: the same signed transaction again (same nonce; replaced with
                    // higher fees if the node refuses it for its fees).
                    BatchStatus::Signed(tx.clone())
                }
                TxStatus::Included {
                    block,
                    success: true,
                } => BatchStatus::Posted {
                    tx_hash: hash,
                    block,
                },
                TxStatus::Included {
                    block,
                    success: false,
                } => {
                    tracing::warn!(target: "sequencer::posting", batch = id, tx = %hash, block, "batch transaction reverted; signing again");
                    BatchStatus::Ready
                }
            };
            let (db2, s, attempts) = (db.clone(), status.clone(), batch.attempts);
            blocking(move || db2.set_batch_status(id, s, attempts)).await?;
            Ok(Step::Moved(status))
        }
        BatchStatus::Posted { .. } => Ok(Step::Waiting),
    }
}

/// Drives every unposted batch, oldest first, until `shutdown`: one batch at a time, so
/// nonces follow batch order. Errors are logged and retried with backoff.
pub async fn run_poster<P: BatchPoster>(
    db: SequencerDb,
    poster: P,
    metrics: Arc<Metrics>,
    built: Arc<Notify>,
    settings: PostSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let db2 = db.clone();
        let pending = match blocking(move || db2.unposted_batches()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "sequencer::posting", error = %e, "reading batches failed");
                Vec::new()
            }
        };
        let mut progressed = false;
        let mut failed = false;
        if let Some(batch) = pending.first() {
            match step(&db, &poster, batch, &settings).await {
                Ok(Step::Moved(status)) => {
                    tracing::info!(target: "sequencer::posting", batch = batch.id, status = status.as_str(), tx = ?status.tx_hash(), "batch status");
                    if matches!(status, BatchStatus::Posted { .. }) {
                        metrics.batches_posted.inc();
                    }
                    // A new transaction for a batch that had one: a fee bump.
                    if matches!(status, BatchStatus::Signed(_))
                        && batch.status.tx_hash().is_some()
                        && batch.status.tx_hash() != status.tx_hash()
                    {
                        metrics.batch_fee_bumps.inc();
                    }
                    progressed = true;
                    backoff = Duration::from_millis(200);
                }
                Ok(Step::Waiting) => {}
                Err(e) => {
                    tracing::warn!(target: "sequencer::posting", batch = batch.id, error = %e, "posting step failed; retrying");
                    failed = true;
                }
            }
        }
        if progressed {
            continue;
        }
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        } else {
            settings.poll
        };
        tokio::select! {
            _ = built.notified(), if pending.is_empty() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tables::{InputRecord, TensorRecord};
    use crate::db::{Execution, NewRequest};
    use std::sync::Mutex;

    /// A chain stand-in that records what it was asked (the real poster is alloy's).
    #[derive(Default)]
    struct ScriptedChain {
        signed: Mutex<Vec<u64>>,
        sent: Mutex<Vec<H256>>,
        included: Mutex<Option<(u64, bool)>>,
        /// When set, `included` applies to this transaction only; the node knows no other.
        mined: Mutex<Option<H256>>,
        bumped: Mutex<Vec<H256>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("rpc down")]
    struct RpcDown;

    impl BatchPoster for Arc<ScriptedChain> {
        type Error = RpcDown;

        async fn sign(&self, payload: &BatchPayload) -> Result<SignedTx, RpcDown> {
            let mut signed = self.signed.lock().unwrap();
            let nonce = signed.len() as u64;
            signed.push(payload.batch.id);
            Ok(SignedTx {
                hash: H256([nonce as u8 + 1; 32]),
                raw: payload.batch.claims_root.0.to_vec(),
                nonce,
            })
        }

        async fn send(&self, tx: &SignedTx) -> Result<SendOutcome, RpcDown> {
            self.sent.lock().unwrap().push(tx.hash);
            Ok(SendOutcome::Accepted)
        }

        async fn status(&self, tx: H256) -> Result<TxStatus, RpcDown> {
            let mined = *self.mined.lock().unwrap();
            Ok(match *self.included.lock().unwrap() {
                Some(_) if mined.is_some_and(|m| m != tx) => TxStatus::Unknown,
                Some((block, success)) => TxStatus::Included { block, success },
                None => TxStatus::Pending,
            })
        }

        async fn bump(&self, tx: &SignedTx) -> Result<Option<SignedTx>, RpcDown> {
            let mut bumped = self.bumped.lock().unwrap();
            bumped.push(tx.hash);
            Ok(Some(SignedTx {
                hash: H256([0xb0 + bumped.len() as u8; 32]),
                raw: tx.raw.clone(),
                nonce: tx.nonce,
            }))
        }
    }

    const SETTINGS: PostSettings = PostSettings {
        poll: Duration::from_millis(10),
        bump_after: DEFAULT_BUMP_AFTER,
        resend_after: RESEND_AFTER,
    };

    fn batch_of_two(db: &SequencerDb) -> BatchRecord {
        let input = InputRecord {
            text: None,
            tokens: vec![1],
            seq_len: 16,
            hash: H256([1; 32]),
        };
        let new = NewRequest {
            model: "m".into(),
            model_id: H256([2; 32]),
            input,
        };
        let ids = db.accept(vec![new.clone(), new]).unwrap();
        let out = TensorRecord {
            dtype: inference::DType::I8,
            shape: vec![1],
            data: vec![0],
            hash: H256([3; 32]),
        };
        let results: Vec<Execution> = ids
            .iter()
            .map(|&id| Execution {
                id,
                request: None,
                output: Ok(out.clone()),
            })
            .collect();
        db.record_executions(&results).unwrap();
        db.make_batch(8).unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_restart_after_signing_resends_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = SequencerDb::open(dir.path()).unwrap();
        let chain = Arc::new(ScriptedChain::default());
        let batch = batch_of_two(&db);

        // Sign, then "crash" before sending: the signed tx is already stored.
        let step1 = step(&db, &chain, &batch, &SETTINGS).await.unwrap();
        let Step::Moved(BatchStatus::Signed(tx)) = step1 else {
            panic!("{step1:?}")
        };
        drop(db);
        let db = SequencerDb::open(dir.path()).unwrap();
        let stored = db.unposted_batches().unwrap().remove(0);
        assert_eq!(stored.status, BatchStatus::Signed(tx.clone()));

        // Resumed: sends exactly that transaction, never signs again.
        assert!(matches!(
            step(&db, &chain, &stored, &SETTINGS).await.unwrap(),
            Step::Moved(BatchStatus::Sent { .. })
        ));
        let sent = db.batch(0).unwrap().unwrap();
        assert_eq!(
            step(&db, &chain, &sent, &SETTINGS).await.unwrap(),
            Step::Waiting
        );
        *chain.included.lock().unwrap() = Some((42, true));
        assert_eq!(
            step(&db, &chain, &sent, &SETTINGS).await.unwrap(),
            Step::Moved(BatchStatus::Posted {
                tx_hash: tx.hash,
                block: 42
            })
        );
        assert_eq!(*chain.signed.lock().unwrap(), [0]);
        assert_eq!(*chain.sent.lock().unwrap(), [tx.hash]);
        assert!(db.unposted_batches().unwrap().is_empty());
        for id in [0, 1] {
            assert_eq!(
                db.request(id).unwrap().unwrap().request.status,
                crate::db::tables::RequestStatus::Posted
            );
        }
    }

    #[tokio::test]
    async fn a_reverted_transaction_is_signed_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = SequencerDb::open(dir.path()).unwrap();
        let chain = Arc::new(ScriptedChain::default());
        batch_of_two(&db);
        *chain.included.lock().unwrap() = Some((7, false));
        for _ in 0..3 {
            let b = db.batch(0).unwrap().unwrap();
            step(&db, &chain, &b, &SETTINGS).await.unwrap();
        }
        let b = db.batch(0).unwrap().unwrap();
        assert_eq!(b.status, BatchStatus::Ready);
        assert_eq!(b.attempts, 1);
        *chain.included.lock().unwrap() = Some((8, true));
        for _ in 0..3 {
            let b = db.batch(0).unwrap().unwrap();
            step(&db, &chain, &b, &SETTINGS).await.unwrap();
        }
        let b = db.batch(0).unwrap().unwrap();
        assert!(matches!(b.status, BatchStatus::Posted { block: 8, .. }));
        assert_eq!(b.attempts, 2);
        assert_eq!(chain.signed.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_transaction_pending_too_long_is_replaced_and_a_replaced_one_may_still_win() {
        let dir = tempfile::tempdir().unwrap();
        let db = SequencerDb::open(dir.path()).unwrap();
        let chain = Arc::new(ScriptedChain::default());
        let now = PostSettings {
            bump_after: Duration::ZERO,
            ..SETTINGS
        };
        batch_of_two(&db);
        let stored = |db: &SequencerDb| db.batch(0).unwrap().unwrap();
        let Step::Moved(BatchStatus::Signed(first)) =
            step(&db, &chain, &stored(&db), &now).await.unwrap()
        else {
            panic!("not signed")
        };
        step(&db, &chain, &stored(&db), &now).await.unwrap();
        // Pending, not yet too long: waits.
        assert_eq!(
            step(&db, &chain, &stored(&db), &SETTINGS).await.unwrap(),
            Step::Waiting
        );
        // Too long: a replacement with the same nonce is stored before anything is sent.
        let Step::Moved(BatchStatus::Signed(second)) =
            step(&db, &chain, &stored(&db), &now).await.unwrap()
        else {
            panic!("not replaced")
        };
        assert_eq!(second.nonce, first.nonce);
        assert_ne!(second.hash, first.hash);
        assert_eq!(*chain.bumped.lock().unwrap(), [first.hash]);
        // A restart keeps both.
        drop(db);
        let db = SequencerDb::open(dir.path()).unwrap();
        assert_eq!(stored(&db).status, BatchStatus::Signed(second.clone()));
        assert_eq!(db.replaced_txs(0).unwrap(), [first.hash]);
        assert!(matches!(
            step(&db, &chain, &stored(&db), &now).await.unwrap(),
            Step::Moved(BatchStatus::Sent { .. })
        ));
        // The first one is mined after all: the node forgets the replacement, and the batch
        // is posted by the first.
        *chain.mined.lock().unwrap() = Some(first.hash);
        *chain.included.lock().unwrap() = Some((9, true));
        assert_eq!(
            step(&db, &chain, &stored(&db), &now).await.unwrap(),
            Step::Moved(BatchStatus::Posted {
                tx_hash: first.hash,
                block: 9
            })
        );
        assert!(db.replaced_txs(0).unwrap().is_empty());
        assert!(db.unposted_batches().unwrap().is_empty());
        assert_eq!(*chain.signed.lock().unwrap(), [0]);
    }
}
