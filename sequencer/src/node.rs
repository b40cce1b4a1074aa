//! The sequencer on a chain: what `sequencer run` adds when `[chain]` is configured.
//!
//! - at start, [`connect`] and [`check_sequencer`]: the key must be a registered sequencer
//!   whose free stake reaches the rollup's minimum (the error names `sequencer chain stake`);
//! - the batch poster ([`crate::batching::run_poster`] over [`ChainPoster`]);
//! - the request follower ([`run_request_follower`]): `InferenceRequested` events for the
//!   models served here become requests carrying their on-chain id, stored together with
//!   the follower's cursor (so a restart neither loses nor repeats one), executed like HTTP
//!   requests and claimed under that id;
//! - the defence watcher ([`crate::chain::watch`]): games against this sequencer's claims
//!   are defended to their end and the winnings withdrawn; it keeps the stake metric
//!   current ([`run_stake_reader`] does the same for tools that run without it).
//!
//! Every transaction from the key goes through one [`ChainClient`] (cloned), whose nonce
//! source the poster and the game moves share.

use crate::chain::batch_data::decode_type;
use crate::chain::client::classify_contract;
use crate::chain::{ChainClient, ChainError, ChainEvent, ChainPoster, ClientConfig, EventFollower};
use crate::config::ChainConfig;
use crate::db::tables::{ChainCursor, InputRecord};
use crate::db::{ChainRequest, NewRequest, SequencerDb, blocking};
use crate::execution::{Job, ModelRegistry};
use crate::service::RunningSequencer;
use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use inference::Tensor;
use inference::import::bert;
use inference::merkle::H256;
use inference::model::Model;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The name of the request follower's cursor in the `ChainCursors` table.
pub const REQUEST_CURSOR: &str = "requests";

/// The chain side could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is incomplete (no key, a bad key).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The chain could not be reached or answered with an error.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The key is not a registered sequencer.
    #[error(
        "{account} is not a registered sequencer on rollup {rollup}: register it with `sequencer chain stake --amount WEI` (at least {min_stake} wei)"
    )]
    NotRegistered {
        /// The key's address.
        account: Address,
        /// The rollup.
        rollup: Address,
        /// The rollup's minimum stake.
        min_stake: U256,
    },
    /// The key's free stake is below the minimum.
    #[error(
        "sequencer {account} has {free} wei of free stake, the rollup needs {min_stake}: add stake with `sequencer chain stake --amount WEI`"
    )]
    InsufficientStake {
        /// The key's address.
        account: Address,
        /// Stake less any pending withdrawal.
        free: U256,
        /// The rollup's minimum stake.
        min_stake: U256,
    },
}

/// The client settings of `config`.
pub fn client_config(config: &ChainConfig) -> ClientConfig {
    ClientConfig {
        confirmations: config.confirmations.max(1),
        poll_interval: config.poll_interval.min(Duration::from_millis(250)),
        log_range: config.log_range.max(1),
        bump_after: config.bump_after,
        fee_ceiling: config.max_fee_per_gas.map(u128::from),
        ..ClientConfig::default()
    }
}

/// Connects to the chain of `config` with its key; returns the client and the key.
pub async fn connect(config: &ChainConfig) -> Result<(ChainClient, PrivateKeySigner), NodeError> {
    let signer = config.signer()?;
    let client = ChainClient::connect(
        &config.rpc_url,
        signer.clone(),
        config.rollup,
        client_config(config),
    )
    .await?;
    Ok((client, signer))
}

/// A sequencer's standing on the rollup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SequencerStanding {
    /// Whether it registered.
    pub registered: bool,
    /// Wei at stake (a pending withdrawal included).
    pub stake: U256,
    /// Stake less the pending withdrawal.
    pub free_stake: U256,
    /// The rollup's minimum stake to post.
    pub min_stake: U256,
}

/// Reads `account`'s standing.
pub async fn standing(
    client: &ChainClient,
    account: Address,
) -> Result<SequencerStanding, ChainError> {
    let r = client.rollup();
    let s = client
        .retry("rollup.sequencers", || async {
            r.sequencers(account)
                .call()
                .await
                .map_err(|e| classify_contract("rollup.sequencers", &e))
        })
        .await?;
    let free = client
        .retry("rollup.freeStake", || async {
            r.freeStake(account)
                .call()
                .await
                .map_err(|e| classify_contract("rollup.freeStake", &e))
        })
        .await?;
    let min = client
        .retry("rollup.minStake", || async {
            r.minStake()
                .call()
                .await
                .map_err(|e| classify_contract("rollup.minStake", &e))
        })
        .await?;
    Ok(SequencerStanding {
        registered: s.registered,
        stake: U256::from(s.stake),
        free_stake: free,
        min_stake: U256::from(min),
    })
}

/// Checks that the client's key is a registered sequencer with enough free stake to post.
pub async fn check_sequencer(client: &ChainClient) -> Result<SequencerStanding, NodeError> {
    let account = client.account();
    let s = standing(client, account).await?;
    if !s.registered {
        return Err(NodeError::NotRegistered {
            account,
            rollup: client.addresses().rollup,
            min_stake: s.min_stake,
        });
    }
    if s.free_stake < s.min_stake {
        return Err(NodeError::InsufficientStake {
            account,
            free: s.free_stake,
            min_stake: s.min_stake,
        });
    }
    Ok(s)
}

/// Why an on-chain request is not served here.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No served bucket has this model id.
    #[error("model {0} is not served here")]
    UnknownModel(H256),
    /// The input is not one this sequencer can run for the model.
    #[error("{0}")]
    BadInput(String),
}

impl Refusal {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownModel(_) => "unknown_model",
            Self::BadInput(_) => "bad_input",
        }
    }
}

/// The token ids of an encoder's program input (`[2, seq]` i32: ids padded with 0, then
/// a mask of ones over the tokens), if it is exactly what [`bert::input`] builds from them.
pub fn tokens_of(input: &Tensor, seq_len: usize) -> Result<Vec<u32>, String> {
    if input.shape() != [2, seq_len] {
        return Err(format!(
            "input shape {:?}, the bucket takes [2, {seq_len}]",
            input.shape()
        ));
    }
    let v = input.to_i64_vec();
    let (ids, mask) = v.split_at(seq_len);
    let n = mask.iter().take_while(|&&m| m == 1).count();
    if n == 0 {
        return Err("the mask covers no token".into());
    }
    let tokens: Vec<u32> = ids[..n]
        .iter()
        .map(|&t| u32::try_from(t).map_err(|_| format!("token id {t} is negative")))
        .collect::<Result<_, _>>()?;
    let rebuilt = bert::input(&tokens, seq_len).map_err(|e| e.to_string())?;
    if rebuilt.to_i64_vec() != v {
        return Err(
            "not an encoder input: the mask must be ones over a prefix and ids zero after it"
                .into(),
        );
    }
    Ok(tokens)
}

/// Resolves an on-chain request to a served bucket and its program input: the model id
/// names the bucket; the input must have the bucket's input type, be an encoder input
/// ([`tokens_of`]) and hash to the event's input hash.
pub fn resolve_request(
    models: &ModelRegistry,
    model_id: H256,
    input_hash: H256,
    input_type: &[u8],
    input_data: &[u8],
) -> Result<(NewRequest, Arc<Model>, Tensor), Refusal> {
    let (family, bucket) = models
        .families()
        .iter()
        .find_map(|f| f.bucket_by_id(&model_id).map(|b| (f, &f.buckets[b])))
        .ok_or(Refusal::UnknownModel(model_id))?;
    let ty = decode_type(input_type).map_err(Refusal::BadInput)?;
    let expected = &bucket.model.program().input;
    if ty != *expected {
        return Err(Refusal::BadInput(format!(
            "input type {ty}, the bucket of {} tokens takes {expected}",
            bucket.seq_len
        )));
    }
    let tensor = Tensor::from_le_bytes(ty.dtype, ty.shape.clone(), input_data)
        .map_err(|e| Refusal::BadInput(format!("input data: {e}")))?;
    let hash = inference::commit::try_tensor_hash(&tensor)
        .map_err(|e| Refusal::BadInput(format!("input hash: {e}")))?;
    if hash != input_hash {
        return Err(Refusal::BadInput(format!(
            "the input hashes to {hash}, the event says {input_hash}"
        )));
    }
    let tokens = tokens_of(&tensor, bucket.seq_len).map_err(Refusal::BadInput)?;
    let request = NewRequest {
        model: family.name.clone(),
        model_id,
        input: InputRecord {
            text: None,
            tokens,
            seq_len: bucket.seq_len as u32,
            hash,
        },
    };
    Ok((request, bucket.model.clone(), tensor))
}

/// Follows the rollup's `InferenceRequested` events and serves those for the models served
/// here, until `shutdown`. Each polled range's requests and the cursor after it are stored
/// in one transaction; a restart resumes after the stored cursor.
pub async fn run_request_follower(
    client: ChainClient,
    state: Arc<crate::api::AppState>,
    from_block: u64,
    confirmations: u64,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let db: SequencerDb = state.db.clone();
    let start = |db: SequencerDb| async move {
        match blocking(move || db.chain_cursor(REQUEST_CURSOR)).await {
            Ok(Some(c)) => Ok(c.block + 1),
            Ok(None) => Ok(from_block),
            Err(e) => Err(e),
        }
    };
    let depth = confirmations.saturating_sub(1);
    let mut backoff = poll;
    let mut follower = loop {
        match start(db.clone()).await {
            Ok(b) => {
                tracing::info!(target: "sequencer::chain", from_block = b, "following on-chain requests");
                break EventFollower::new(client.clone(), b, depth);
            }
            Err(e) => {
                tracing::error!(target: "sequencer::chain", error = %e, "reading the request cursor failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let before = follower.next_block();
        let mut wait = poll;
        match follower.poll().await {
            Ok((events, _head)) if follower.next_block() > before => {
                let last = follower.next_block() - 1;
                let span = tracing::info_span!(target: "sequencer::chain", "requests", from = before, to = last);
                let stored = handle_range(&state, events, last).instrument(span).await;
                if !stored {
                    // Not stored: read the range again from the stored cursor.
                    match start(db.clone()).await {
                        Ok(b) => follower = EventFollower::new(client.clone(), b, depth),
                        Err(e) => {
                            tracing::error!(target: "sequencer::chain", error = %e, "reading the request cursor failed")
                        }
                    }
                    wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                } else {
                    backoff = poll;
                    // More to catch up on: no pause.
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target: "sequencer::chain", error = %e, "polling the chain failed; retrying");
                wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Stores the served requests of one range with the cursor at `last`, then queues them for
/// execution. Returns false if storing failed (nothing was stored).
async fn handle_range(
    state: &Arc<crate::api::AppState>,
    events: Vec<ChainEvent>,
    last: u64,
) -> bool {
    let mut requests = Vec::new();
    let mut jobs = Vec::new();
    for event in events {
        let ChainEvent::InferenceRequested {
            pos,
            request_id,
            requester,
            model_id,
            input_hash,
            input_type,
            input_data,
            ..
        } = event
        else {
            continue;
        };
        match resolve_request(
            &state.models,
            model_id,
            input_hash,
            &input_type,
            &input_data,
        ) {
            Ok((request, model, tensor)) => {
                requests.push(ChainRequest {
                    request_id,
                    request,
                });
                jobs.push((request_id, model, tensor));
            }
            Err(refusal) => {
                state.metrics.chain_request_skipped(refusal.reason());
                tracing::warn!(target: "sequencer::chain", %request_id, %requester, model = %model_id, block = pos.block, reason = %refusal, "on-chain request not served here");
            }
        }
    }
    let offered = requests.len();
    let db = state.db.clone();
    let cursor = ChainCursor {
        block: last,
        block_hash: H256::default(),
    };
    let stored = match blocking(move || db.accept_on_chain(requests, REQUEST_CURSOR, cursor)).await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target: "sequencer::chain", error = %e, "storing on-chain requests failed; reading the range again");
            return false;
        }
    };
    for _ in stored.len()..offered {
        state.metrics.chain_request_skipped("duplicate");
    }
    for (id, request_id) in stored {
        let Some((_, model, tensor)) = jobs.iter().find(|(r, _, _)| *r == request_id) else {
            continue;
        };
        state.metrics.onchain_requests.inc();
        tracing::info!(target: "sequencer::chain", id, %request_id, model = %model.id(), "on-chain request accepted");
        if state
            .pool
            .submit(Job {
                id,
                model: model.clone(),
                input: tensor.clone(),
                done: None,
                request: None,
            })
            .is_err()
        {
            // Stored: a restart runs it.
            tracing::warn!(target: "sequencer::chain", id, "the worker pool has stopped; the request runs after a restart");
        }
    }
    state.metrics.queue_depth.set(state.pool.depth() as i64);
    true
}

/// Keeps `sequencer_stake_wei` current until `shutdown`.
pub async fn run_stake_reader(
    client: ChainClient,
    metrics: Arc<crate::metrics::Metrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match standing(&client, client.account()).await {
            Ok(s) => {
                metrics.stake_wei.set(f64::from(s.stake));
            }
            Err(e) => {
                tracing::warn!(target: "sequencer::chain", error = %e, "reading the stake failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The chain tasks of a running sequencer.
#[derive(Debug)]
pub struct ChainTasks {
    handles: Vec<JoinHandle<()>>,
}

impl ChainTasks {
    /// Waits for the tasks after the sequencer's shutdown was signalled (at most `limit`).
    pub async fn join(self, limit: Duration) {
        for h in self.handles {
            let abort = h.abort_handle();
            if tokio::time::timeout(limit, h).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Starts the poster, the request follower and the defence watcher
/// ([`crate::chain::watch`], defending with `lie`'s trace when the sequencer lies) of
/// `running` on `client` (signing with `signer`, the client's key).
///
/// Batch transactions signed before a restart and not confirmed keep their nonces: the
/// client's nonce source is told first, so that a game move sent before the poster re-sends
/// them cannot take their nonce.
pub async fn spawn(
    running: &RunningSequencer,
    client: ChainClient,
    signer: PrivateKeySigner,
    config: &ChainConfig,
    lie: Option<crate::dev::Lie>,
) -> Result<ChainTasks, NodeError> {
    let state = running.state().clone();
    let db = state.db.clone();
    let unposted = blocking(move || db.unposted_batches())
        .await
        .map_err(|e| NodeError::Chain(ChainError::Local(format!("reading batches: {e}"))))?;
    let stored_nonce = unposted
        .iter()
        .filter_map(|b| match &b.status {
            crate::db::tables::BatchStatus::Signed(tx)
            | crate::db::tables::BatchStatus::Sent { tx, .. } => Some(tx.nonce),
            _ => None,
        })
        .max();
    if let Some(nonce) = stored_nonce {
        tracing::info!(target: "sequencer::chain", nonce, "batch transactions signed before the restart keep their nonces");
        client.note_nonce_taken(nonce).await;
    }
    let poster = ChainPoster::new(client.clone(), signer)?.with_metrics(state.metrics.clone());
    let mut handles = Vec::new();
    handles.push(tokio::spawn(crate::batching::run_poster(
        state.db.clone(),
        poster,
        state.metrics.clone(),
        running.batch_built(),
        crate::batching::PostSettings {
            poll: config.poll_interval,
            bump_after: config.bump_after,
            ..Default::default()
        },
        running.shutdown_signal(),
    )));
    handles.push(tokio::spawn(run_request_follower(
        client.clone(),
        state.clone(),
        config.from_block,
        config.confirmations,
        config.poll_interval,
        running.shutdown_signal(),
    )));
    let watch = crate::chain::watch::WatchContext {
        lie,
        from_block: config.from_block,
        confirmations: config.confirmations.saturating_sub(1),
        poll: config.poll_interval,
        driver: crate::chain::DriverConfig {
            poll_interval: config.poll_interval,
            ..crate::chain::DriverConfig::default()
        },
        ..crate::chain::watch::WatchContext::new(
            client,
            state.db.clone(),
            state.models.clone(),
            state.metrics.clone(),
        )
    };
    handles.push(tokio::spawn(crate::chain::watch::run(
        watch,
        running.shutdown_signal(),
    )));
    Ok(ChainTasks { handles })
}

impl ChainTasks {
    /// Adds a task to wait for at shutdown.
    pub fn push(&mut self, handle: JoinHandle<()>) {
        self.handles.push(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_inputs_give_back_their_tokens() {
        let x = bert::input(&[101, 7592, 102], 16).unwrap();
        assert_eq!(tokens_of(&x, 16).unwrap(), [101, 7592, 102]);
        assert!(tokens_of(&x, 32).is_err(), "another bucket's shape");
        // A mask with a hole is a valid tensor of the type but no encoder input.
        let mut v = x.to_i64_vec();
        v[16 + 1] = 0;
        let holed = Tensor::from_i32(vec![2, 16], v.iter().map(|&e| e as i32).collect()).unwrap();
        assert!(tokens_of(&holed, 16).is_err());
        let empty = Tensor::from_i32(vec![2, 16], vec![0; 32]).unwrap();
        assert!(tokens_of(&empty, 16).is_err());
    }
}
