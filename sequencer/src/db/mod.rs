//! The sequencer's database: its tables ([`tables`]) and the transactions that move
//! requests and batches through their states, each one atomic.

mod games;
pub mod tables;

use crate::claim::{Claim, commit_batch};
use crate::storage::{Database, Result as StorageResult, StorageError, TableStats, Tx};
use signet_libmdbx::tx::{RoSync, Rw, TransactionKind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tables::*;

/// A database error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database was written by another schema version.
    #[error("database schema version {found}, this build reads {expected}")]
    SchemaVersion {
        /// The version found.
        found: u64,
        /// The version of this build.
        expected: u64,
    },
    /// A blocking database task did not finish (it panicked or was cancelled).
    #[error("database task: {0}")]
    Task(String),
    /// A record another record points at is missing (a bug or a damaged database).
    #[error("{what} {id} is missing")]
    Missing {
        /// What kind of record.
        what: &'static str,
        /// Its key.
        id: u64,
    },
}

/// The result type of this module.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Runs a database closure on tokio's blocking pool (MDBX calls block on I/O).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DbError::Task(e.to_string())))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A request to accept: everything but its number, status and times.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// The model family's name.
    pub model: String,
    /// The bucket's model id.
    pub model_id: inference::merkle::H256,
    /// The input.
    pub input: InputRecord,
}

/// The result of executing one request.
#[derive(Clone, Debug)]
pub struct Execution {
    /// The request number.
    pub id: u64,
    /// The output, or why it failed.
    pub output: Result<TensorRecord, String>,
    /// The request itself, when it ran before it was stored (a client waiting for its
    /// output, under a number from [`SequencerDb::reserve_id`]): it is stored with its
    /// output in the same transaction, unless it was stored meanwhile
    /// ([`SequencerDb::accept_reserved`]). `None` for a request accepted before it ran.
    pub request: Option<NewRequest>,
}

/// The batch queue at a glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchQueueState {
    /// Executed requests waiting for a batch.
    pub len: usize,
    /// When the oldest of them was executed (ms), if any.
    pub oldest_ms: Option<u64>,
}

/// Everything known about one request.
#[derive(Clone, Debug)]
pub struct RequestView {
    /// The request.
    pub request: RequestRecord,
    /// Its claim, once executed.
    pub claim: Option<ClaimRecord>,
    /// Its batch, once batched.
    pub batch: Option<BatchRecord>,
}

/// The sequencer's database.
#[derive(Clone, Debug)]
pub struct SequencerDb {
    db: Database,
    sequencer: [u8; 20],
    /// The next request number to hand out (shared by clones): numbers are taken when a
    /// request is accepted or reserved, so a request that runs before it is stored keeps
    /// the number its client will be told.
    next_id: Arc<AtomicU64>,
}

/// An on-chain request to accept, with its on-chain id.
#[derive(Clone, Debug)]
pub struct ChainRequest {
    /// The request id the rollup assigned (the claim's request id).
    pub request_id: inference::merkle::H256,
    /// The request.
    pub request: NewRequest,
}

impl SequencerDb {
    /// Opens (creating if needed) the database at `path`, checking its schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::open::<SequencerTables>(path)?;
        if let Some(found) = db.check_schema_version::<Meta>(SCHEMA_VERSION, READABLE_FROM)? {
            let expected = SCHEMA_VERSION;
            return Err(DbError::SchemaVersion { found, expected });
        }
        let next_id = db
            .view(|tx| tx.last::<Requests>())?
            .map_or(0, |(id, _)| id + 1);
        Ok(Self {
            db,
            sequencer: [0; 20],
            next_id: Arc::new(AtomicU64::new(next_id)),
        })
    }

    /// Takes `n` request numbers, above every stored one (inside a write transaction, so
    /// another handle's writes are seen).
    fn take_ids(&self, tx: &Tx<Rw>, n: u64) -> Result<u64> {
        let stored = tx.last::<Requests>()?.map_or(0, |(id, _)| id + 1);
        self.next_id.fetch_max(stored, Ordering::SeqCst);
        Ok(self.next_id.fetch_add(n, Ordering::SeqCst))
    }

    /// Reserves a request number for a request that runs before it is stored (a client
    /// waiting for its output): [`SequencerDb::record_executions`] stores it with its
    /// output, under this number, in one transaction, so it costs one commit instead of
    /// two. Until then it exists nowhere: after a crash it is gone, and so is its number,
    /// which no client was told.
    pub fn reserve_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Accepts a request under a number from [`SequencerDb::reserve_id`] whose output is
    /// not stored yet (its client stopped waiting): it is queued for execution like any
    /// accepted request, and survives a crash from now on. Returns `false`, changing
    /// nothing, when the request is already stored (its output came first).
    pub fn accept_reserved(&self, id: u64, request: NewRequest) -> Result<bool> {
        let now = now_ms();
        self.db.update(|tx| {
            if tx.get::<Requests>(&id)?.is_some() {
                return Ok(false);
            }
            let request_id = crate::claim::http_request_id(self.sequencer, id);
            put_new(tx, id, request_id, false, request, now)?;
            Ok(true)
        })
    }

    /// The same database with HTTP requests accepted from now on identified under
    /// `sequencer`'s address ([`crate::claim::http_request_id`]); zero by default.
    pub fn with_sequencer(mut self, sequencer: [u8; 20]) -> Self {
        self.sequencer = sequencer;
        self
    }

    /// The address HTTP request ids are derived from.
    pub fn sequencer(&self) -> [u8; 20] {
        self.sequencer
    }

    /// The typed database underneath.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Accepts requests in one transaction: once this returns they survive a crash.
    /// Returns their numbers, in order.
    pub fn accept(&self, requests: Vec<NewRequest>) -> Result<Vec<u64>> {
        let now = now_ms();
        self.db.update(|tx| {
            let first = self.take_ids(tx, requests.len() as u64)?;
            let mut ids = Vec::with_capacity(requests.len());
            for (next, r) in (first..).zip(requests) {
                let request_id = crate::claim::http_request_id(self.sequencer, next);
                put_new(tx, next, request_id, false, r, now)?;
                ids.push(next);
            }
            Ok(ids)
        })
    }

    /// Accepts on-chain requests and moves follower `cursor_name`'s cursor to `cursor`, in
    /// one transaction: after a crash either both happened or neither, so a restart that
    /// resumes after the cursor neither loses nor repeats a request. A request whose id is
    /// already stored is skipped. Returns the numbers of the requests stored, with their
    /// on-chain ids.
    pub fn accept_on_chain(
        &self,
        requests: Vec<ChainRequest>,
        cursor_name: &str,
        cursor: ChainCursor,
    ) -> Result<Vec<(u64, inference::merkle::H256)>> {
        let now = now_ms();
        let name = cursor_name.to_string();
        self.db.update(|tx| {
            let mut stored = Vec::with_capacity(requests.len());
            for r in requests {
                if tx.get::<RequestIds>(&r.request_id)?.is_some() {
                    continue;
                }
                let next = self.take_ids(tx, 1)?;
                put_new(tx, next, r.request_id, true, r.request, now)?;
                stored.push((next, r.request_id));
            }
            tx.put::<ChainCursors>(&name, &cursor)?;
            Ok(stored)
        })
    }

    /// Where follower `name` stopped, if it ever ran.
    pub fn chain_cursor(&self, name: &str) -> Result<Option<ChainCursor>> {
        let name = name.to_string();
        Ok(self.db.view(|tx| tx.get::<ChainCursors>(&name))?)
    }

    /// Moves follower `name`'s cursor.
    pub fn set_chain_cursor(&self, name: &str, cursor: ChainCursor) -> Result<()> {
        let name = name.to_string();
        Ok(self
            .db
            .update(|tx| tx.put::<ChainCursors>(&name, &cursor))?)
    }

    /// The request number of claim id `request_id`, if stored.
    pub fn request_number(&self, request_id: inference::merkle::H256) -> Result<Option<u64>> {
        Ok(self.db.view(|tx| tx.get::<RequestIds>(&request_id))?)
    }

    /// Accepted requests not executed yet, oldest first (after a restart).
    pub fn unexecuted(&self) -> Result<Vec<RequestRecord>> {
        self.db.view(|tx| {
            let queued = tx.walk::<ExecutionQueue>(None, usize::MAX)?;
            queued.into_iter().map(|(id, ())| request(tx, id)).collect()
        })
    }

    /// Stores execution results in one transaction: outputs and claims, and moves each
    /// request from the execution queue to the batch queue (or marks it failed). A request
    /// that ran before it was stored ([`Execution::request`]) is stored here with its
    /// output. Results for requests no longer queued are ignored, so storing twice is
    /// harmless. Returns, for each result, the request as stored (what [`Self::request`]
    /// reads right after the commit), or `None` for an ignored one.
    pub fn record_executions(&self, results: &[Execution]) -> Result<Vec<Option<RequestView>>> {
        let now = now_ms();
        self.db.update(|tx| {
            let mut views = Vec::with_capacity(results.len());
            for r in results {
                let mut record = if tx.delete::<ExecutionQueue>(&r.id)? {
                    request(tx, r.id)?
                } else {
                    let Some(new) = &r.request else {
                        views.push(None);
                        continue;
                    };
                    if tx.get::<Requests>(&r.id)?.is_some() {
                        views.push(None);
                        continue;
                    }
                    let request_id = crate::claim::http_request_id(self.sequencer, r.id);
                    tx.put::<RequestIds>(&request_id, &r.id)?;
                    new_record(r.id, request_id, false, new.clone(), now)
                };
                record.executed_at_ms = Some(now);
                let claim = match &r.output {
                    Ok(output) => {
                        let claim = ClaimRecord {
                            claim: Claim {
                                request_id: record.request_id,
                                model_id: record.model_id,
                                input_hash: record.input.hash,
                                output_hash: output.hash,
                            },
                            inclusion: None,
                        };
                        record.output = Some(output.clone());
                        tx.put::<Claims>(&r.id, &claim)?;
                        tx.put::<BatchQueue>(&r.id, &now)?;
                        Some(claim)
                    }
                    Err(e) => {
                        record.status = RequestStatus::Failed;
                        record.error = Some(e.clone());
                        None
                    }
                };
                tx.put::<Requests>(&r.id, &record)?;
                views.push(Some(RequestView {
                    request: record,
                    claim,
                    batch: None,
                }));
            }
            Ok(views)
        })
    }

    /// The batch queue's length and age.
    pub fn batch_queue(&self) -> Result<BatchQueueState> {
        self.db.view(|tx| {
            Ok(BatchQueueState {
                len: tx.entries::<BatchQueue>()?,
                // Requests are executed roughly in order; the first is the oldest within the
                // granularity that matters for batching by age.
                oldest_ms: tx.first::<BatchQueue>()?.map(|(_, t)| t),
            })
        })
    }

    /// The execution queue's length.
    pub fn execution_queue_len(&self) -> Result<usize> {
        Ok(self.db.view(|tx| tx.entries::<ExecutionQueue>())?)
    }

    /// Builds a batch of up to `max_size` queued claims in one transaction: the batch
    /// record, each claim's inclusion proof and each request's status move together.
    /// Returns `None` when the queue is empty.
    pub fn make_batch(&self, max_size: usize) -> Result<Option<BatchRecord>> {
        let now = now_ms();
        self.db.update(|tx| {
            let queued = tx.walk::<BatchQueue>(None, max_size.max(1))?;
            if queued.is_empty() {
                return Ok(None);
            }
            let id = tx.last::<Batches>()?.map_or(0, |(id, _)| id + 1);
            let ids: Vec<u64> = queued.iter().map(|(id, _)| *id).collect();
            let mut claims = Vec::with_capacity(ids.len());
            for &rid in &ids {
                let record = tx.get::<Claims>(&rid)?.ok_or(DbError::Missing {
                    what: "claim",
                    id: rid,
                })?;
                claims.push(record.claim);
            }
            let commitment = commit_batch(&claims);
            for (index, ((&rid, claim), proof)) in
                ids.iter().zip(claims).zip(commitment.proofs).enumerate()
            {
                tx.put::<Claims>(
                    &rid,
                    &ClaimRecord {
                        claim,
                        inclusion: Some(Inclusion {
                            batch: id,
                            index: index as u64,
                            proof,
                        }),
                    },
                )?;
                set_state(tx, rid, RequestStatus::Batched, Some(id))?;
                tx.delete::<BatchQueue>(&rid)?;
            }
            let batch = BatchRecord {
                id,
                requests: ids,
                claims_root: commitment.root,
                status: BatchStatus::Ready,
                created_at_ms: now,
                attempts: 0,
            };
            put_batch(tx, batch.clone())?;
            tx.put::<UnpostedBatches>(&id, &())?;
            Ok(Some(batch))
        })
    }

    /// Batches not confirmed on chain yet, oldest first.
    pub fn unposted_batches(&self) -> Result<Vec<BatchRecord>> {
        self.db.view(|tx| {
            tx.walk::<UnpostedBatches>(None, usize::MAX)?
                .into_iter()
                .map(|(id, ())| batch(tx, id))
                .collect()
        })
    }

    /// One batch.
    pub fn batch(&self, id: u64) -> Result<Option<BatchRecord>> {
        self.db.view(|tx| batch_opt(tx, id))
    }

    /// Stores a batch's new status (and attempt count). Once it is posted, its requests
    /// become posted and it leaves the unposted set, in the same transaction.
    pub fn set_batch_status(&self, id: u64, status: BatchStatus, attempts: u32) -> Result<()> {
        self.db.update(|tx| {
            let mut record = batch(tx, id)?;
            if matches!(status, BatchStatus::Posted { .. }) {
                for &rid in &record.requests {
                    let state = state(tx, rid)?;
                    if state.status == RequestStatus::Batched {
                        set_state(tx, rid, RequestStatus::Posted, state.batch)?;
                    }
                }
                tx.delete::<UnpostedBatches>(&id)?;
            }
            // Posted, or back to ready after a revert (the nonce is spent): no replaced
            // transaction can be mined any more.
            if matches!(status, BatchStatus::Posted { .. } | BatchStatus::Ready) {
                tx.delete::<ReplacedTxs>(&id)?;
            }
            record.status = status;
            record.attempts = attempts;
            put_batch(tx, record)
        })
    }

    /// Replaces batch `id`'s signed transaction with `replacement` (same nonce, higher fees):
    /// the batch becomes `signed` with it, and the hash it had joins [`ReplacedTxs`], in one
    /// transaction. The batch must have a transaction (signed or sent).
    pub fn replace_batch_tx(&self, id: u64, replacement: SignedTx) -> Result<()> {
        self.db.update(|tx| {
            let mut record = batch(tx, id)?;
            let old = match &record.status {
                BatchStatus::Signed(t) | BatchStatus::Sent { tx: t, .. } => t.hash,
                _ => {
                    return Err(DbError::Missing {
                        what: "batch transaction",
                        id,
                    });
                }
            };
            let mut replaced = tx.get::<ReplacedTxs>(&id)?.unwrap_or_default();
            replaced.push(old);
            tx.put::<ReplacedTxs>(&id, &replaced)?;
            record.status = BatchStatus::Signed(replacement);
            put_batch(tx, record)
        })
    }

    /// The transactions of batch `id` that fee bumps replaced, oldest first.
    pub fn replaced_txs(&self, id: u64) -> Result<Vec<inference::merkle::H256>> {
        Ok(self
            .db
            .view(|tx| tx.get::<ReplacedTxs>(&id))?
            .unwrap_or_default())
    }

    /// Everything about one request.
    pub fn request(&self, id: u64) -> Result<Option<RequestView>> {
        self.db.view(|tx| {
            let Some(request) = request_opt(tx, id)? else {
                return Ok(None);
            };
            let claim = tx.get::<Claims>(&id)?;
            let batch = match request.batch {
                Some(b) => Some(batch(tx, b)?),
                None => None,
            };
            Ok(Some(RequestView {
                request,
                claim,
                batch,
            }))
        })
    }

    /// Requests `ids` and their claims, in the order given, read from one snapshot (what
    /// the poster needs for a batch). A request or claim that is missing is an error.
    pub fn claimed_requests(&self, ids: &[u64]) -> Result<(Vec<Claim>, Vec<RequestRecord>)> {
        self.db.view(|tx| {
            let mut claims = Vec::with_capacity(ids.len());
            let mut requests = Vec::with_capacity(ids.len());
            for &id in ids {
                requests.push(request(tx, id)?);
                let claim = tx
                    .get::<Claims>(&id)?
                    .ok_or(DbError::Missing { what: "claim", id })?;
                claims.push(claim.claim);
            }
            Ok((claims, requests))
        })
    }

    /// Up to `limit` requests from number `from` on.
    pub fn requests(&self, from: u64, limit: usize) -> Result<Vec<RequestRecord>> {
        self.db.view(|tx| {
            tx.walk::<Requests>(Some(&from), limit)?
                .into_iter()
                .map(|(id, r)| with_state(tx, id, r))
                .collect()
        })
    }

    /// Per-table statistics.
    pub fn stats(&self) -> Result<Vec<TableStats>> {
        use crate::storage::Schema;
        Ok(self.db.stats(SequencerTables::TABLES)?)
    }

    /// A read-only snapshot, for inspection.
    pub fn tx(&self) -> StorageResult<Tx<RoSync>> {
        self.db.tx()
    }

    /// A read-write transaction, for tools and tests.
    pub fn tx_mut(&self) -> StorageResult<Tx<Rw>> {
        self.db.tx_mut()
    }
}

/// Stores a new pending request and queues it for execution.
fn put_new(
    tx: &Tx<Rw>,
    id: u64,
    request_id: inference::merkle::H256,
    on_chain: bool,
    r: NewRequest,
    now: u64,
) -> Result<()> {
    tx.put::<Requests>(&id, &new_record(id, request_id, on_chain, r, now))?;
    tx.put::<RequestIds>(&request_id, &id)?;
    tx.put::<ExecutionQueue>(&id, &())?;
    Ok(())
}

/// A new pending request's record.
fn new_record(
    id: u64,
    request_id: inference::merkle::H256,
    on_chain: bool,
    r: NewRequest,
    now: u64,
) -> RequestRecord {
    RequestRecord {
        id,
        request_id,
        on_chain,
        status: RequestStatus::Pending,
        model: r.model,
        model_id: r.model_id,
        input: r.input,
        output: None,
        error: None,
        batch: None,
        accepted_at_ms: now,
        executed_at_ms: None,
    }
}

/// Request `id` as it stands now: its record with its [`RequestStates`] entry, if any.
fn request_opt<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<Option<RequestRecord>> {
    match tx.get::<Requests>(&id)? {
        Some(r) => with_state(tx, id, r).map(Some),
        None => Ok(None),
    }
}

fn request<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<RequestRecord> {
    request_opt(tx, id)?.ok_or(DbError::Missing {
        what: "request",
        id,
    })
}

/// `record` (request `id`'s) with its state entry's status and batch, if it has one.
fn with_state<K: TransactionKind>(
    tx: &Tx<K>,
    id: u64,
    mut record: RequestRecord,
) -> Result<RequestRecord> {
    if let Some(s) = tx.get::<RequestStates>(&id)? {
        record.status = s.status;
        record.batch = s.batch;
    }
    Ok(record)
}

/// Request `id`'s status and batch (`None`: no such request), without reading its whole
/// record where a state entry holds them.
fn state_opt<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<Option<RequestState>> {
    if let Some(s) = tx.get::<RequestStates>(&id)? {
        return Ok(Some(s));
    }
    Ok(tx.get::<Requests>(&id)?.map(|r| RequestState {
        status: r.status,
        batch: r.batch,
    }))
}

fn state<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<RequestState> {
    state_opt(tx, id)?.ok_or(DbError::Missing {
        what: "request",
        id,
    })
}

/// Sets request `id`'s status and batch (its record stays as executed).
fn set_state(tx: &Tx<Rw>, id: u64, status: RequestStatus, batch: Option<u64>) -> Result<()> {
    tx.put::<RequestStates>(&id, &RequestState { status, batch })?;
    Ok(())
}

fn batch<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<BatchRecord> {
    batch_opt(tx, id)?.ok_or(DbError::Missing { what: "batch", id })
}

/// Batch `id`, its signed transaction read back from [`BatchTxs`] (a batch record of an
/// older database may hold it inline).
fn batch_opt<K: TransactionKind>(tx: &Tx<K>, id: u64) -> Result<Option<BatchRecord>> {
    let Some(mut record) = tx.get::<Batches>(&id)? else {
        return Ok(None);
    };
    if let BatchStatus::Signed(t) | BatchStatus::Sent { tx: t, .. } = &mut record.status
        && t.raw.is_empty()
    {
        let stored = tx.get::<BatchTxs>(&id)?.ok_or(DbError::Missing {
            what: "batch transaction",
            id,
        })?;
        if stored.hash != t.hash {
            return Err(DbError::Missing {
                what: "batch transaction (of the hash recorded)",
                id,
            });
        }
        *t = stored;
    }
    Ok(Some(record))
}

/// Stores `record`: its signed transaction, if it has one, goes to [`BatchTxs`] (written
/// only when it is not there already: a status change from signed to sent, or a re-send,
/// writes a few bytes instead of the transaction), the record without it to [`Batches`].
fn put_batch(tx: &Tx<Rw>, mut record: BatchRecord) -> Result<()> {
    let id = record.id;
    match &mut record.status {
        BatchStatus::Signed(t) | BatchStatus::Sent { tx: t, .. } => {
            // The transaction is in `BatchTxs` already when the stored record names the same
            // hash without holding it inline.
            let stored_there = matches!(
                tx.get::<Batches>(&id)?.map(|b| b.status),
                Some(BatchStatus::Signed(old) | BatchStatus::Sent { tx: old, .. })
                    if old.hash == t.hash && old.raw.is_empty()
            );
            if !stored_there {
                tx.put::<BatchTxs>(&id, t)?;
            }
            t.raw = Vec::new();
        }
        BatchStatus::Ready | BatchStatus::Posted { .. } => {
            tx.delete::<BatchTxs>(&id)?;
        }
    }
    tx.put::<Batches>(&id, &record)?;
    Ok(())
}

/// A summary of the database for `sequencer db stats`: each table's entries and size,
/// requests by status and batches by status.
pub fn inspect(db: &SequencerDb) -> Result<serde_json::Value> {
    use std::collections::BTreeMap;
    let tables = db.stats()?;
    let (requests, batches) = db.db.view(|tx| {
        let mut requests: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut cursor = tx.cursor::<Requests>()?;
        let mut next = cursor.first()?;
        while let Some((id, r)) = next {
            let status = with_state(tx, id, r)?.status;
            *requests.entry(status.as_str()).or_default() += 1;
            next = cursor.next()?;
        }
        let mut batches: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut cursor = tx.cursor::<Batches>()?;
        let mut next = cursor.first()?;
        while let Some((_, b)) = next {
            *batches.entry(b.status.as_str()).or_default() += 1;
            next = cursor.next()?;
        }
        Ok::<_, DbError>((requests, batches))
    })?;
    Ok(serde_json::json!({
        "path": db.db.path(),
        "schema_version": SCHEMA_VERSION,
        "tables": tables,
        "requests_by_status": requests,
        "batches_by_status": batches,
    }))
}
