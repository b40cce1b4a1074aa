//! The sequencer's [`BatchPoster`] over the chain: signs `postBatch` transactions with an
//! explicit nonce (so the posting state machine can store them before sending), sends the
//! raw bytes, and reports their inclusion. The nonce is reserved from the client's nonce
//! source ([`ChainClient::with_next_nonce`]), the one game moves use too.
//!
//! Fees are EIP-1559 fees from the node's estimate, capped by the client's fee ceiling
//! ([`super::ClientConfig::fee_ceiling`]). A transaction left pending is replaced by
//! [`BatchPoster::bump`] with [`Fees::bumped`] fees.
//!
//! Gas: the node's `eth_estimateGas` runs the whole `postBatch` several times over (a search
//! for the least gas that succeeds), each run hashing every input and output. So it is asked
//! only until a batch transaction of this poster succeeds; from then on the gas limit is
//! [`post_batch_gas_bound`], computed from the transaction's bytes, as long as the posting
//! account's free stake is at least the rollup's minimum (checked with one `freeStake` view
//! call per batch: the other reason `postBatch` reverts, bad data, would be this program's
//! bug). A batch transaction that reverts anyway sends the poster back to estimating, so a
//! revert is not repeated: the estimate fails instead, with the contract's error.

use super::batch_data::{BatchData, BatchEntry};
use super::bindings::InferenceRollup;
use super::client::{ChainClient, Fees, classify, refused_for_fees, with_gas_margin};
use super::{ChainError, ErrorKind, Result, to_b256};
use crate::batching::{BatchPayload, BatchPoster, SendOutcome, TxStatus};
use crate::db::tables::SignedTx;
use alloy::consensus::{TxEnvelope, TypedTransaction};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::network::{
    Ethereum, EthereumWallet, NetworkTransactionBuilder, NetworkWallet, TransactionBuilder,
};
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use inference::import::bert;
use inference::merkle::H256;
use inference::tensor::Tensor;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Posts the sequencer's batches to the rollup.
#[derive(Clone, Debug)]
pub struct ChainPoster {
    client: ChainClient,
    wallet: EthereumWallet,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    state: Arc<PosterState>,
}

/// What the poster learns as it goes (shared by its clones): where a batch transaction's
/// gas limit comes from, and the chain's fixed facts.
#[derive(Debug, Default)]
struct PosterState {
    /// A batch transaction of this poster succeeded, and none reverted since: the bound
    /// serves. False at start and after a revert: the node estimates.
    bound_trusted: AtomicBool,
    /// The rollup's `minStake` (fixed at deployment), once read.
    min_stake: OnceLock<u128>,
    /// The chain id, once read.
    chain_id: OnceLock<u64>,
}

/// Execution gas of `postBatch` besides its claims: the batch's storage slots written from
/// zero, the batch counter, the stake checks (cold reads), the event and the call's
/// overhead (a one-claim batch of the smallest tensors executes 61,000 on anvil).
pub const POST_BATCH_EXEC_BASE: u64 = 120_000;
/// Execution gas per claim besides its tensors' leaves: its two tensor types read and
/// checked, its claim leaf and its place in the claims tree (about 1,700 measured: 300
/// claims of one-leaf tensors).
pub const POST_BATCH_EXEC_PER_CLAIM: u64 = 3_000;
/// Execution gas per 32-byte leaf of an input or output: hashed out of calldata, with its
/// share of the tensor tree's inner nodes (about 217 measured: outputs of 2,048 leaves).
pub const POST_BATCH_EXEC_PER_LEAF: u64 = 330;
/// The most gas one transaction may ask for from Osaka on (EIP-7825); a larger bound goes
/// to the node's estimate instead.
pub const MAX_TX_GAS: u64 = 1 << 24;

/// An upper bound on the gas of a `postBatch` transaction whose call bytes are
/// `call_input`, carrying `data`, that does not revert: 21,000, the calldata's exact cost (4
/// gas per zero byte, 16 per other byte; at least the EIP-7623 floor of 10 and 40 where that
/// applies), and the execution bounded by [`POST_BATCH_EXEC_BASE`], [`POST_BATCH_EXEC_PER_CLAIM`]
/// for each claim and [`POST_BATCH_EXEC_PER_LEAF`] for each 32-byte leaf of each input and
/// output (at least one leaf each). The execution constants are 1.5-2 times what the
/// contract measures; `tests/chain_poster.rs` checks the bound against what batches of
/// several shapes use on anvil, and that it stays within twice of it. The calldata usually
/// decides: from Prague the floor binds for most real batches, and the bound is exact.
pub fn post_batch_gas_bound(call_input: &[u8], data: &BatchData) -> u64 {
    let zeros = call_input.iter().filter(|&&b| b == 0).count() as u64;
    let others = call_input.len() as u64 - zeros;
    let calldata = 4 * zeros + 16 * others;
    let floor = 10 * (zeros + 4 * others);
    let leaves: u64 = data
        .entries
        .iter()
        .map(|e| {
            let leaves = |t: &Tensor| (t.ty().byte_len() as u64).div_ceil(32).max(1);
            leaves(&e.input) + leaves(&e.output)
        })
        .sum();
    let execution = POST_BATCH_EXEC_BASE
        + POST_BATCH_EXEC_PER_CLAIM * data.entries.len() as u64
        + POST_BATCH_EXEC_PER_LEAF * leaves;
    21_000 + (calldata + execution).max(floor)
}

/// The value in `cell`, read with `read` the first time (a fixed fact of the chain).
async fn read_once<T: Copy>(
    cell: &OnceLock<T>,
    read: impl Future<Output = Result<T>>,
) -> Result<T> {
    if let Some(&v) = cell.get() {
        return Ok(v);
    }
    let v = read.await?;
    Ok(*cell.get_or_init(|| v))
}

impl ChainPoster {
    /// A poster sending from `signer`, the key `client` signs with.
    pub fn new(client: ChainClient, signer: PrivateKeySigner) -> Result<Self> {
        if signer.address() != client.account() {
            return Err(ChainError::Local(format!(
                "the poster's key is {}, the client's {}",
                signer.address(),
                client.account()
            )));
        }
        Ok(Self {
            client,
            wallet: EthereumWallet::from(signer),
            metrics: None,
            state: Arc::default(),
        })
    }

    /// Counts the gas of included batch transactions in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The batch data of `payload`: every claim with its program input and output.
    pub fn batch_data(payload: &BatchPayload) -> Result<BatchData> {
        if payload.claims.len() != payload.requests.len() {
            return Err(ChainError::Local(format!(
                "{} claims for {} requests",
                payload.claims.len(),
                payload.requests.len()
            )));
        }
        let entries = payload
            .claims
            .iter()
            .zip(&payload.requests)
            .map(|(claim, r)| {
                let input = bert::input(&r.input.tokens, r.input.seq_len as usize)
                    .map_err(|e| ChainError::Local(format!("request {}: input: {e}", r.id)))?;
                let out = r
                    .output
                    .as_ref()
                    .ok_or_else(|| ChainError::Local(format!("request {} has no output", r.id)))?;
                let shape: Vec<usize> = out.shape.iter().map(|&d| d as usize).collect();
                let output = Tensor::from_le_bytes(out.dtype, shape, &out.data)
                    .map_err(|e| ChainError::Local(format!("request {}: output: {e}", r.id)))?;
                Ok(BatchEntry {
                    request_id: claim.request_id,
                    model_id: claim.model_id,
                    input,
                    output,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let data = BatchData { entries };
        if data.claims()? != payload.claims {
            return Err(ChainError::Inconsistent(
                "the stored inputs and outputs do not give the batch's claims".into(),
            ));
        }
        Ok(data)
    }

    async fn sign_payload(&self, payload: &BatchPayload) -> Result<SignedTx> {
        let data = Self::batch_data(payload)?;
        let commitment = crate::claim::commit_batch(&payload.claims);
        let call = InferenceRollup::postBatchCall {
            claimsRoot_: to_b256(commitment.root),
            count_: payload.claims.len() as u32,
            data_: Bytes::from(data.encode()?),
        };
        let p = self.client.provider();
        let from = self.client.account();
        let chain_id = read_once(&self.state.chain_id, async {
            p.get_chain_id().await.map_err(|e| classify("chainId", &e))
        })
        .await?;
        let input = Bytes::from(call.abi_encode());
        let bound = self.usable_bound(&input, &data).await?;
        let rollup = self.client.addresses().rollup;
        let fees = self
            .client
            .fee_estimate()
            .await?
            .capped(self.client.config().fee_ceiling);
        self.client
            .with_next_nonce(|nonce| async move {
                let mut tx = TransactionRequest::default()
                    .with_from(from)
                    .with_to(rollup)
                    .with_input(input)
                    .with_value(U256::ZERO)
                    .with_nonce(nonce)
                    .with_chain_id(chain_id);
                let gas = if let Some(bound) = bound {
                    bound
                } else {
                    let estimate = p
                        .estimate_gas(tx.clone())
                        .await
                        .map_err(|e| classify("estimateGas postBatch", &e))?;
                    with_gas_margin(estimate)
                };
                tracing::debug!(target: "sequencer::posting", batch = payload.batch.id, gas, from_bound = bound.is_some(), "batch transaction gas limit");
                tx = tx
                    .with_gas_limit(gas)
                    .with_max_fee_per_gas(fees.max_fee)
                    .with_max_priority_fee_per_gas(fees.tip);
                let envelope = tx.build(&self.wallet).await.map_err(|e| ChainError::Rpc {
                    op: "sign postBatch",
                    message: e.to_string(),
                    kind: ErrorKind::Critical,
                })?;
                Ok(SignedTx {
                    hash: H256(envelope.tx_hash().0),
                    raw: envelope.encoded_2718(),
                    nonce,
                })
            })
            .await
    }

    /// [`post_batch_gas_bound`] of a batch transaction with call bytes `input` carrying
    /// `data`, if it may serve as its gas limit: a batch transaction of this poster
    /// succeeded and none reverted since, the bound is within [`MAX_TX_GAS`], and the
    /// account's free stake is at least the rollup's minimum. `None`: ask the node.
    async fn usable_bound(&self, input: &[u8], data: &BatchData) -> Result<Option<u64>> {
        if !self.state.bound_trusted.load(Ordering::Acquire) {
            return Ok(None);
        }
        let bound = post_batch_gas_bound(input, data);
        if bound > MAX_TX_GAS {
            return Ok(None);
        }
        let min_stake = read_once(&self.state.min_stake, self.client.min_stake()).await?;
        let free = self.client.free_stake(self.client.account()).await?;
        Ok((free >= U256::from(min_stake)).then_some(bound))
    }

    async fn bump_tx(&self, tx: &SignedTx) -> Result<Option<SignedTx>> {
        let stored = |what: String| {
            ChainError::Local(format!("stored batch transaction {}: {what}", tx.hash))
        };
        let envelope =
            TxEnvelope::decode_2718(&mut tx.raw.as_slice()).map_err(|e| stored(e.to_string()))?;
        let TxEnvelope::Eip1559(signed) = envelope else {
            return Err(stored("not an EIP-1559 transaction".into()));
        };
        let mut t = signed.strip_signature();
        let old = Fees {
            max_fee: t.max_fee_per_gas,
            tip: t.max_priority_fee_per_gas,
        };
        let estimate = self.client.fee_estimate().await?;
        let Some(fees) = old.bumped(estimate, self.client.config().fee_ceiling) else {
            return Ok(None);
        };
        t.max_fee_per_gas = fees.max_fee;
        t.max_priority_fee_per_gas = fees.tip;
        let envelope = NetworkWallet::<Ethereum>::sign_transaction_from(
            &self.wallet,
            self.client.account(),
            TypedTransaction::Eip1559(t),
        )
        .await
        .map_err(|e| ChainError::Rpc {
            op: "sign postBatch replacement",
            message: e.to_string(),
            kind: ErrorKind::Critical,
        })?;
        tracing::info!(target: "sequencer::posting", tx = %tx.hash, replacement = %envelope.tx_hash(), max_fee = fees.max_fee, tip = fees.tip, "batch transaction re-signed with higher fees");
        Ok(Some(SignedTx {
            hash: H256(envelope.tx_hash().0),
            raw: envelope.encoded_2718(),
            nonce: tx.nonce,
        }))
    }
}

impl BatchPoster for ChainPoster {
    type Error = ChainError;

    async fn sign(&self, payload: &BatchPayload) -> Result<SignedTx> {
        self.sign_payload(payload).await
    }

    async fn send(&self, tx: &SignedTx) -> Result<SendOutcome> {
        match self.client.provider().send_raw_transaction(&tx.raw).await {
            Ok(_) => Ok(SendOutcome::Accepted),
            Err(e) => {
                let msg = e.to_string().to_lowercase();
                // Already known (geth; anvil: "already imported") or already included: the
                // same bytes were sent before.
                if msg.contains("already known")
                    || msg.contains("already imported")
                    || msg.contains("nonce too low")
                {
                    return Ok(SendOutcome::Accepted);
                }
                if refused_for_fees(&msg) {
                    tracing::info!(target: "sequencer::posting", tx = %tx.hash, reason = %e, "batch transaction refused for its fees");
                    return Ok(SendOutcome::Underpriced);
                }
                Err(classify("send postBatch", &e))
            }
        }
    }

    async fn bump(&self, tx: &SignedTx) -> Result<Option<SignedTx>> {
        self.bump_tx(tx).await
    }

    async fn status(&self, tx_hash: H256) -> Result<TxStatus> {
        let p = self.client.provider();
        let hash = B256::from(tx_hash.0);
        if let Some(r) = p
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| classify("receipt", &e))?
        {
            let block = r.block_number.unwrap_or_default();
            // Counted as included only `confirmations` deep: a reorg within that depth puts
            // it back to pending (or drops it, and it is sent again).
            if !self.client.is_confirmed(block).await? {
                return Ok(TxStatus::Confirming { block });
            }
            if let Some(m) = &self.metrics {
                m.gas_spent(crate::metrics::GasPurpose::Post, r.gas_used);
            }
            self.state
                .bound_trusted
                .store(r.status(), Ordering::Release);
            return Ok(TxStatus::Included {
                block,
                success: r.status(),
            });
        }
        let pending = p
            .get_transaction_by_hash(hash)
            .await
            .map_err(|e| classify("getTransaction", &e))?;
        Ok(if pending.is_some() {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        })
    }
}
