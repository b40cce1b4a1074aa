//! A signing client for the rollup and its games: every transaction the services send goes
//! through [`ChainClient::transact`], which fills gas and nonce, retries temporary RPC
//! failures with exponential backoff and waits for the configured confirmations.
//!
//! Gas: the node's estimate plus a margin ([`with_gas_margin`]). An estimate is exact for
//! the state it ran on; a transaction mined after another one changed that state (the
//! defence withdrawing its credit between two game moves turns a later write of that
//! credit from a 2,900-gas update into a 20,000-gas one) would run out of gas without it.
//! Unused gas is not paid for.
//!
//! Fees: EIP-1559 fees from the node's estimate, capped by [`ClientConfig::fee_ceiling`]. A
//! transaction not mined after [`ClientConfig::bump_after`] is sent again with the same
//! nonce and higher fees ([`Fees::bumped`]), as often as needed, and whichever of them is
//! mined is the one waited for: a game move priced out by a rising base fee still lands
//! before its clock runs out.
//!
//! Nonces: one nonce source per key, shared by every clone of a client. A transaction takes
//! `max(the node's pending count, the next nonce this client handed out)` under one lock,
//! and the nonce counts as used only once the node accepted the transaction (a send
//! refused at gas estimation burns nothing). The batch poster signs transactions it sends
//! later; it reserves its nonce through [`ChainClient::with_next_nonce`], under the same
//! lock, so posting and game moves never race for a nonce. A transaction `transact` gave
//! up on (`NotConfirmed`, still in the pool) would hold every later nonce up: the next
//! `transact` takes its nonce instead, with fees that outbid it, and replaces it.

use super::batch_data::BatchData;
use super::bindings::{DisputeGame, InferenceRollup, ModelRegistry, OneStepVerifier};
use super::{ChainError, ErrorKind, Result, to_b256};
use crate::claim::Claim;
use alloy::network::{Ethereum, EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolInterface};
use alloy::transports::{RpcError, TransportError};
use inference::merkle::MerkleProof;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default first retry delay.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(10);
/// Default number of attempts of one RPC operation.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 8;
/// Default confirmations a transaction needs.
pub const DEFAULT_CONFIRMATIONS: u64 = 1;
/// Default receipt polling interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default longest wait for a transaction to be confirmed.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);
/// Default largest block range of one `eth_getLogs` (public RPC providers refuse wide ones).
pub const DEFAULT_LOG_RANGE: u64 = 2_000;
/// Default wait of a transaction in the mempool before it is replaced with higher fees.
pub const DEFAULT_BUMP_AFTER: Duration = Duration::from_secs(30);

/// A transaction's EIP-1559 fees, in wei per gas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fees {
    /// `maxFeePerGas`.
    pub max_fee: u128,
    /// `maxPriorityFeePerGas` (never above `max_fee`).
    pub tip: u128,
}

impl Fees {
    /// These fees within `ceiling` (the tip never above the max fee).
    pub fn capped(self, ceiling: Option<u128>) -> Self {
        let max_fee = ceiling.map_or(self.max_fee, |c| self.max_fee.min(c));
        Self {
            max_fee,
            tip: self.tip.min(max_fee),
        }
    }

    /// The fees of a replacement of a pending transaction with these fees: both at least 1/8
    /// higher (nodes replace a pending transaction only for at least 1/10 more) and at least
    /// `estimate`, within `ceiling`; `None` when the ceiling leaves no such fees.
    pub fn bumped(self, estimate: Fees, ceiling: Option<u128>) -> Option<Self> {
        let raise = |fee: u128| fee.saturating_add(fee.div_ceil(8));
        let (min_fee, min_tip) = (raise(self.max_fee), raise(self.tip));
        let next = Self {
            max_fee: min_fee.max(estimate.max_fee),
            tip: min_tip.max(estimate.tip),
        }
        .capped(ceiling);
        (next.max_fee >= min_fee && next.tip >= min_tip).then_some(next)
    }
}

/// How the client retries and confirms.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// First retry delay (doubled on each retry).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts of one operation before its temporary error is returned.
    pub retry_attempts: u32,
    /// Confirmations a transaction needs (1: mined).
    pub confirmations: u64,
    /// How often receipts and heads are polled.
    pub poll_interval: Duration,
    /// Longest wait for a transaction's confirmations.
    pub confirm_timeout: Duration,
    /// Largest block range of one `eth_getLogs`: longer scans are split (at least 1).
    pub log_range: u64,
    /// How long a transaction may wait unmined before it is sent again with higher fees.
    pub bump_after: Duration,
    /// The highest `maxFeePerGas` (wei) a transaction may offer (`None`: no ceiling).
    pub fee_ceiling: Option<u128>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            confirmations: DEFAULT_CONFIRMATIONS,
            poll_interval: DEFAULT_POLL_INTERVAL,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            log_range: DEFAULT_LOG_RANGE,
            bump_after: DEFAULT_BUMP_AFTER,
            fee_ceiling: None,
        }
    }
}

/// The rollup's contract addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The model registry.
    pub registry: Address,
    /// The dispute games.
    pub games: Address,
    /// The rollup.
    pub rollup: Address,
}

/// A signing client for one account on one rollup deployment. Cheap to clone; clones share
/// the send lock.
#[derive(Clone, Debug)]
pub struct ChainClient {
    provider: DynProvider,
    account: Address,
    addresses: Addresses,
    config: ClientConfig,
    /// The next nonce this client handed out, if any (shared by clones).
    nonce: Arc<tokio::sync::Mutex<Option<u64>>>,
    /// The nonce and fees of the last transaction [`ChainClient::transact`] gave up waiting
    /// for, still unmined when last seen: the next transaction replaces it rather than
    /// queueing behind it (shared by clones).
    stuck: Arc<std::sync::Mutex<Option<(u64, Fees)>>>,
}

/// Renders revert data with every contract's custom errors.
pub fn decode_revert(data: &[u8]) -> String {
    if let Ok(e) = DisputeGame::DisputeGameErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    if let Ok(e) = InferenceRollup::InferenceRollupErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    if let Ok(e) = ModelRegistry::ModelRegistryErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    if let Ok(e) = OneStepVerifier::OneStepVerifierErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    format!("0x{}", hex::encode(data))
}

/// Classifies a transport error: unreachable nodes and nonce races are temporary, reverts
/// and other node errors critical.
pub fn classify(op: &'static str, e: &TransportError) -> ChainError {
    match e {
        RpcError::ErrorResp(payload) => {
            if let Some(data) = payload.as_revert_data() {
                return ChainError::Reverted {
                    op,
                    reason: decode_revert(&data),
                };
            }
            let msg = payload.message.to_lowercase();
            if msg.contains("revert") {
                return ChainError::Reverted {
                    op,
                    reason: payload.message.to_string(),
                };
            }
            // A send refused for its fees is temporary too: the next attempt prices it from
            // a new estimate (or the base fee falls below the fee ceiling).
            let temporary = [
                "nonce too low",
                "already known",
                "already imported",
                "replacement",
                "timeout",
                "busy",
            ]
            .iter()
            .any(|s| msg.contains(s))
                || refused_for_fees(&msg);
            ChainError::Rpc {
                op,
                message: payload.to_string(),
                kind: if temporary {
                    ErrorKind::Temporary
                } else {
                    ErrorKind::Critical
                },
            }
        }
        RpcError::Transport(_) | RpcError::NullResp => ChainError::Rpc {
            op,
            message: e.to_string(),
            kind: ErrorKind::Temporary,
        },
        other => ChainError::Rpc {
            op,
            message: other.to_string(),
            kind: ErrorKind::Critical,
        },
    }
}

/// Whether a node's error message (lower case) says a transaction was refused for its fees:
/// "max fee per gas less than block base fee", "transaction underpriced", "replacement
/// transaction underpriced" (geth, reth, anvil), "fee cap too low".
pub fn refused_for_fees(message: &str) -> bool {
    message.contains("underpriced")
        || message.contains("less than block base fee")
        || message.contains("fee cap too low")
}

/// Classifies a contract call error.
pub fn classify_contract(op: &'static str, e: &alloy::contract::Error) -> ChainError {
    match e {
        alloy::contract::Error::TransportError(t) => classify(op, t),
        other => match other.as_revert_data() {
            Some(data) => ChainError::Reverted {
                op,
                reason: decode_revert(&data),
            },
            None => ChainError::Decode {
                op,
                message: other.to_string(),
            },
        },
    }
}

impl ChainClient {
    /// Connects to `rpc_url` signing with `signer`, for the rollup at `rollup` (the games and
    /// registry addresses are read from it).
    pub async fn connect(
        rpc_url: &str,
        signer: PrivateKeySigner,
        rollup: Address,
        config: ClientConfig,
    ) -> Result<Self> {
        let url = rpc_url.parse().map_err(|e| ChainError::Rpc {
            op: "connect",
            message: format!("bad RPC URL {rpc_url:?}: {e}"),
            kind: ErrorKind::Critical,
        })?;
        let account = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let mut client = Self {
            provider,
            account,
            addresses: Addresses {
                registry: Address::ZERO,
                games: Address::ZERO,
                rollup,
            },
            config,
            nonce: Arc::new(tokio::sync::Mutex::new(None)),
            stuck: Arc::default(),
        };
        let r = InferenceRollup::new(rollup, client.provider.clone());
        let games = client
            .view("rollup.games", || async { r.games().call().await })
            .await?;
        let registry = client
            .view("rollup.registry", || async { r.registry().call().await })
            .await?;
        client.addresses.games = games;
        client.addresses.registry = registry;
        Ok(client)
    }

    /// The same client signing with another key (shares nothing but the node).
    pub async fn with_signer(&self, rpc_url: &str, signer: PrivateKeySigner) -> Result<Self> {
        Self::connect(rpc_url, signer, self.addresses.rollup, self.config.clone()).await
    }

    /// A contract view call through [`ChainClient::retry`], its errors classified as `op`
    /// (a revert decoded by [`classify_contract`]).
    async fn view<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, alloy::contract::Error>>,
    {
        self.retry(op, || async {
            call().await.map_err(|e| classify_contract(op, &e))
        })
        .await
    }

    /// The signing account.
    pub fn account(&self) -> Address {
        self.account
    }

    /// The contract addresses.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The provider (signing).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The rollup binding.
    pub fn rollup(&self) -> InferenceRollup::InferenceRollupInstance<DynProvider> {
        InferenceRollup::new(self.addresses.rollup, self.provider.clone())
    }

    /// The games binding.
    pub fn games(&self) -> DisputeGame::DisputeGameInstance<DynProvider> {
        DisputeGame::new(self.addresses.games, self.provider.clone())
    }

    /// The registry binding.
    pub fn registry(&self) -> ModelRegistry::ModelRegistryInstance<DynProvider> {
        ModelRegistry::new(self.addresses.registry, self.provider.clone())
    }

    /// Runs `f` until it succeeds, fails critically or has used its attempts, sleeping with
    /// exponential backoff between attempts.
    pub async fn retry<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.config.retry_initial;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_temporary() && attempt < self.config.retry_attempts => {
                    tracing::warn!(target: "chain", op, attempt, error = %e, "temporary error, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The head block number.
    pub async fn head(&self) -> Result<u64> {
        self.retry("head", || async {
            self.provider
                .get_block_number()
                .await
                .map_err(|e| classify("head", &e))
        })
        .await
    }

    /// The logs matching `filter`'s addresses and topics in blocks `[from, to]` (`to`: the
    /// head when `None`), in chain order, fetched at most [`ClientConfig::log_range`]
    /// blocks per `eth_getLogs` (each retried on its own).
    pub async fn logs(
        &self,
        op: &'static str,
        filter: &Filter,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<Log>> {
        self.scan(op, filter, from, to, false).await
    }

    /// The first log matching `filter`'s addresses and topics from block `from` to the head,
    /// scanning [`ClientConfig::log_range`] blocks at a time and stopping at the first range
    /// that has one.
    pub async fn first_log(
        &self,
        op: &'static str,
        filter: &Filter,
        from: u64,
    ) -> Result<Option<Log>> {
        Ok(self
            .scan(op, filter, from, None, true)
            .await?
            .into_iter()
            .next())
    }

    async fn scan(
        &self,
        op: &'static str,
        filter: &Filter,
        from: u64,
        to: Option<u64>,
        first: bool,
    ) -> Result<Vec<Log>> {
        let to = match to {
            Some(to) => to,
            None => self.head().await?,
        };
        let range = self.config.log_range.max(1);
        let mut out = Vec::new();
        let mut lo = from;
        while lo <= to {
            let hi = to.min(lo.saturating_add(range - 1));
            let chunk = filter.clone().from_block(lo).to_block(hi);
            let logs = self
                .retry(op, || async {
                    self.provider
                        .get_logs(&chunk)
                        .await
                        .map_err(|e| classify(op, &e))
                })
                .await?;
            out.extend(logs);
            if (first && !out.is_empty()) || hi == u64::MAX {
                break;
            }
            lo = hi + 1;
        }
        Ok(out)
    }

    /// The timestamp of block `number`.
    pub async fn block_timestamp(&self, number: u64) -> Result<u64> {
        self.retry("block", || async {
            let block = self
                .provider
                .get_block_by_number(number.into())
                .await
                .map_err(|e| classify("block", &e))?;
            block.map(|b| b.header.timestamp).ok_or(ChainError::Rpc {
                op: "block",
                message: format!("block {number} not found"),
                kind: ErrorKind::Temporary,
            })
        })
        .await
    }

    /// The balance of `account`.
    pub async fn balance(&self, account: Address) -> Result<U256> {
        self.retry("balance", || async {
            self.provider
                .get_balance(account)
                .await
                .map_err(|e| classify("balance", &e))
        })
        .await
    }

    /// The node's fee estimate for the next block, uncapped.
    pub async fn fee_estimate(&self) -> Result<Fees> {
        self.retry("fees", || async {
            let f = self
                .provider
                .estimate_eip1559_fees()
                .await
                .map_err(|e| classify("fees", &e))?;
            Ok(Fees {
                max_fee: f.max_fee_per_gas,
                tip: f.max_priority_fee_per_gas,
            })
        })
        .await
    }

    /// Sends `call` to `to` with `value` wei and waits for its confirmations, raising its
    /// fees while it waits unmined (see the module documentation). A call that would revert
    /// fails before anything is sent, with the decoded custom error.
    pub async fn transact<C: SolCall>(
        &self,
        op: &'static str,
        to: Address,
        call: &C,
        value: U256,
    ) -> Result<TransactionReceipt> {
        let tx = TransactionRequest::default()
            .with_from(self.account)
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()))
            .with_value(value);
        // The nonce is taken under the key's lock, from the node's pending count at every
        // attempt (and never below a nonce the poster reserved). The provider's own nonce
        // filler caches and would burn a nonce on a send whose gas estimate reverts,
        // leaving every later transaction stuck behind the gap.
        let (hash, nonce, tx, fees) = self
            .retry(op, || async {
                // Priced at every attempt: a send refused for its fees (a base fee above the
                // ceiling) is tried again at the new estimate.
                let estimate = self.fee_estimate().await?;
                // Estimated right before the send, so against the latest state.
                let gas = self
                    .provider
                    .estimate_gas(tx.clone())
                    .await
                    .map_err(|e| classify(op, &e))?;
                let tx = tx.clone().with_gas_limit(with_gas_margin(gas));
                let send = |nonce: u64, fees: Fees| {
                    let tx = tx.clone();
                    async move {
                        let pending = self
                            .provider
                            .send_transaction(with_fees(tx.clone(), fees).with_nonce(nonce))
                            .await
                            .map_err(|e| classify(op, &e))?;
                        Ok((*pending.tx_hash(), nonce, tx, fees))
                    }
                };
                match self.stuck_to_replace(estimate).await? {
                    Some((nonce, fees)) => {
                        let sent = self.with_nonce(nonce, |n| send(n, fees)).await?;
                        tracing::warn!(target: "chain", op, nonce, tx = %sent.0, "replaces a transaction given up on earlier");
                        let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
                        if stuck.is_some_and(|(n, _)| n == nonce) {
                            *stuck = None;
                        }
                        Ok(sent)
                    }
                    None => {
                        let fees = estimate.capped(self.config.fee_ceiling);
                        self.with_next_nonce(|n| send(n, fees)).await
                    }
                }
            })
            .await?;
        let receipt = self.wait_bumping(op, &tx, nonce, fees, hash).await?;
        // The mined transaction may be a fee-bumped replacement of `hash`.
        let mined = receipt.transaction_hash;
        if !receipt.status() {
            return Err(ChainError::TxFailed { op, tx: mined });
        }
        tracing::debug!(target: "chain", op, tx = %mined, gas = receipt.gas_used, "confirmed");
        Ok(receipt)
    }

    /// Runs `send` with this key's next nonce, holding the key's nonce lock: the nonce is
    /// `max(pending count, next nonce handed out)`, and it counts as used only if `send`
    /// succeeds. Every transaction from this key goes through here, so two tasks never get
    /// the same nonce.
    pub async fn with_next_nonce<T, F, Fut>(&self, send: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut next = self.nonce.lock().await;
        let pending = self
            .retry("nonce", || async {
                self.provider
                    .get_transaction_count(self.account)
                    .pending()
                    .await
                    .map_err(|e| classify("nonce", &e))
            })
            .await?;
        let nonce = next.map_or(pending, |n| n.max(pending));
        let out = send(nonce).await?;
        *next = Some(nonce + 1);
        Ok(out)
    }

    /// Runs `send` with `nonce` (one in use already: a replacement), holding the key's
    /// nonce lock; later nonces handed out stay above it.
    async fn with_nonce<T, F, Fut>(&self, nonce: u64, send: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut next = self.nonce.lock().await;
        let out = send(nonce).await?;
        *next = Some(next.map_or(nonce + 1, |n| n.max(nonce + 1)));
        Ok(out)
    }

    /// The nonce of a transaction [`ChainClient::transact`] gave up waiting for, if it is
    /// still unmined, with fees that may replace it (at least 1/8 above its own and at
    /// least `estimate`, within the ceiling). `None` if there is none, it was mined, or the
    /// ceiling leaves no room to outbid it (then the new transaction queues behind it).
    async fn stuck_to_replace(&self, estimate: Fees) -> Result<Option<(u64, Fees)>> {
        let Some((nonce, fees)) = *self.stuck.lock().unwrap_or_else(|e| e.into_inner()) else {
            return Ok(None);
        };
        let mined = self
            .retry("nonce", || async {
                self.provider
                    .get_transaction_count(self.account)
                    .latest()
                    .await
                    .map_err(|e| classify("nonce", &e))
            })
            .await?;
        if mined > nonce {
            let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
            if stuck.is_some_and(|(n, _)| n == nonce) {
                *stuck = None;
            }
            return Ok(None);
        }
        let bumped = fees.bumped(estimate, self.config.fee_ceiling);
        if bumped.is_none() {
            tracing::warn!(target: "chain", nonce, "an unmined transaction blocks this key and the fee ceiling leaves no room to replace it");
        }
        Ok(bumped.map(|f| (nonce, f)))
    }

    /// Notes that `nonce` is taken (by a transaction signed earlier and stored, not
    /// necessarily sent yet): later transactions get higher nonces.
    pub async fn note_nonce_taken(&self, nonce: u64) {
        let mut next = self.nonce.lock().await;
        *next = Some(next.map_or(nonce + 1, |n| n.max(nonce + 1)));
    }

    /// Forgets the nonces handed out: the next one is the node's pending count again
    /// (after a transaction signed with a reserved nonce was abandoned).
    pub async fn reset_nonce(&self) {
        *self.nonce.lock().await = None;
    }

    /// Waits until one of the transactions with `nonce` this call sent (`first`, then its
    /// replacements) is mined with the configured confirmations, sending `tx` again with
    /// bumped fees each time [`ClientConfig::bump_after`] passes with none of them mined.
    async fn wait_bumping(
        &self,
        op: &'static str,
        tx: &TransactionRequest,
        nonce: u64,
        mut fees: Fees,
        first: B256,
    ) -> Result<TransactionReceipt> {
        let start = Instant::now();
        let mut sent_at = Instant::now();
        let mut hashes = vec![first];
        loop {
            let mut mined = false;
            for &hash in hashes.iter().rev() {
                let receipt = self
                    .retry(op, || async {
                        self.provider
                            .get_transaction_receipt(hash)
                            .await
                            .map_err(|e| classify(op, &e))
                    })
                    .await?;
                if let Some(r) = receipt {
                    if self
                        .is_confirmed(r.block_number.unwrap_or(u64::MAX))
                        .await?
                    {
                        return Ok(r);
                    }
                    mined = true;
                    break;
                }
            }
            if !mined && sent_at.elapsed() >= self.config.bump_after {
                sent_at = Instant::now();
                let estimate = self.fee_estimate().await?;
                match fees.bumped(estimate, self.config.fee_ceiling) {
                    None => {
                        tracing::warn!(target: "chain", op, nonce, max_fee = fees.max_fee, "transaction not mined and the fee ceiling allows no replacement");
                    }
                    Some(next) => {
                        let again = with_fees(tx.clone(), next).with_nonce(nonce);
                        match self.provider.send_transaction(again).await {
                            Ok(pending) => {
                                tracing::warn!(target: "chain", op, nonce, tx = %pending.tx_hash(), max_fee = next.max_fee, tip = next.tip, waited = ?start.elapsed(), "transaction not mined; replaced with higher fees");
                                fees = next;
                                hashes.push(*pending.tx_hash());
                            }
                            // E.g. "nonce too low": one of them was just mined.
                            Err(e) => {
                                tracing::warn!(target: "chain", op, nonce, error = %e, "replacing a transaction with higher fees failed");
                            }
                        }
                    }
                }
            }
            if start.elapsed() > self.config.confirm_timeout {
                // Still unmined (or mined, not yet deep enough: then the next transaction
                // finds it mined and leaves it alone).
                *self.stuck.lock().unwrap_or_else(|e| e.into_inner()) = Some((nonce, fees));
                return Err(ChainError::NotConfirmed {
                    op,
                    tx: *hashes.last().unwrap_or(&first),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Whether a transaction mined in `block` is as deep as the configured confirmations.
    pub async fn is_confirmed(&self, block: u64) -> Result<bool> {
        let head = self.head().await?;
        Ok(head.saturating_add(1).saturating_sub(block) >= self.config.confirmations)
    }

    // ------------------------------------------------------------ sequencer

    /// Registers this account as a sequencer with `stake` wei.
    pub async fn register_sequencer(&self, stake: U256) -> Result<TransactionReceipt> {
        self.transact(
            "registerSequencer",
            self.addresses.rollup,
            &InferenceRollup::registerSequencerCall {},
            stake,
        )
        .await
    }

    /// Adds `amount` wei to this sequencer's stake.
    pub async fn add_stake(&self, amount: U256) -> Result<TransactionReceipt> {
        self.transact(
            "addStake",
            self.addresses.rollup,
            &InferenceRollup::addStakeCall {},
            amount,
        )
        .await
    }

    /// Asks `amount` wei of this sequencer's stake back (`requestWithdrawal`): from now on it
    /// no longer counts towards the stake that posting needs.
    pub async fn request_withdrawal(&self, amount: u128) -> Result<TransactionReceipt> {
        self.transact(
            "requestWithdrawal",
            self.addresses.rollup,
            &InferenceRollup::requestWithdrawalCall { amount_: amount },
            U256::ZERO,
        )
        .await
    }

    /// `account`'s stake free of pending withdrawals (`freeStake`).
    pub async fn free_stake(&self, account: Address) -> Result<U256> {
        self.view("rollup.freeStake", || async {
            self.rollup().freeStake(account).call().await
        })
        .await
    }

    /// The least free stake `postBatch` accepts (`minStake`, fixed at deployment).
    pub async fn min_stake(&self) -> Result<u128> {
        self.view("rollup.minStake", || async {
            self.rollup().minStake().call().await
        })
        .await
    }

    /// Posts a batch: its claims root and count, with `data` as calldata. Returns the batch
    /// id and the receipt.
    pub async fn post_batch(&self, data: &BatchData) -> Result<(u64, TransactionReceipt)> {
        let claims = data.claims()?;
        let commitment = crate::claim::commit_batch(&claims);
        self.post_batch_raw(
            to_b256(commitment.root),
            claims.len() as u32,
            Bytes::from(data.encode()?),
        )
        .await
    }

    /// Posts a batch with exactly these arguments (tests post bad data with it).
    pub async fn post_batch_raw(
        &self,
        root: B256,
        count: u32,
        data: Bytes,
    ) -> Result<(u64, TransactionReceipt)> {
        let call = InferenceRollup::postBatchCall {
            claimsRoot_: root,
            count_: count,
            data_: data,
        };
        let receipt = self
            .transact("postBatch", self.addresses.rollup, &call, U256::ZERO)
            .await?;
        let id = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<InferenceRollup::BatchPosted>().ok())
            .map(|l| l.inner.data.batchId)
            .ok_or_else(|| ChainError::Decode {
                op: "postBatch",
                message: "no BatchPosted event in the receipt".into(),
            })?;
        Ok((u256_to_u64(id, "batchId")?, receipt))
    }

    // ------------------------------------------------------------ challenger

    /// Disputes claim `index` of batch `batch` with the challenger bond; returns the game id.
    pub async fn challenge(
        &self,
        batch: u64,
        index: u64,
        claim: &Claim,
        proof: &MerkleProof,
    ) -> Result<(U256, TransactionReceipt)> {
        let bond = self
            .view("games.challengerBond", || async {
                self.games().challengerBond().call().await
            })
            .await?;
        let call = InferenceRollup::challengeCall {
            batchId_: U256::from(batch),
            index_: U256::from(index),
            claim_: rollup_claim(claim),
            proof_: proof.siblings.iter().map(|s| to_b256(*s)).collect(),
        };
        let receipt = self
            .transact("challenge", self.addresses.rollup, &call, U256::from(bond))
            .await?;
        let id = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<InferenceRollup::ClaimChallenged>().ok())
            .map(|l| l.inner.data.gameId)
            .ok_or_else(|| ChainError::Decode {
                op: "challenge",
                message: "no ClaimChallenged event in the receipt".into(),
            })?;
        Ok((id, receipt))
    }

    /// How claim `index` of batch `batch` stands: 0 pending, 1 final, 2 invalidated.
    pub async fn claim_state(&self, batch: u64, index: u64) -> Result<u8> {
        self.view("rollup.claimState", || async {
            self.rollup()
                .claimState(U256::from(batch), U256::from(index))
                .call()
                .await
        })
        .await
    }

    /// Payouts credited to `account` by the games and not withdrawn.
    pub async fn games_credit(&self, account: Address) -> Result<U256> {
        self.view("games.credit", || async {
            self.games().credit(account).call().await
        })
        .await
    }

    /// Withdraws this account's game payouts, if any; returns the amount.
    pub async fn withdraw_game_credit(&self) -> Result<U256> {
        let credit = self.games_credit(self.account).await?;
        if credit.is_zero() {
            return Ok(credit);
        }
        self.transact(
            "games.withdraw",
            self.addresses.games,
            &DisputeGame::withdrawCall {},
            U256::ZERO,
        )
        .await?;
        Ok(credit)
    }

    /// The game `id` as the contract shows it.
    pub async fn game(&self, id: U256) -> Result<DisputeGame::GameView> {
        self.view("games.game", || async {
            self.games().game(id).call().await
        })
        .await
    }

    /// The transaction `hash`'s calldata, if it exists.
    pub async fn tx_input(&self, hash: B256) -> Result<Bytes> {
        use alloy::consensus::Transaction as _;
        let tx = self
            .retry("getTransaction", || async {
                self.provider
                    .get_transaction_by_hash(hash)
                    .await
                    .map_err(|e| classify("getTransaction", &e))
            })
            .await?
            .ok_or(ChainError::Rpc {
                op: "getTransaction",
                message: format!("transaction {hash} not found"),
                kind: ErrorKind::Temporary,
            })?;
        Ok(tx.input().clone())
    }
}

/// A claim in the rollup binding's type.
pub fn rollup_claim(c: &Claim) -> InferenceRollup::Claim {
    InferenceRollup::Claim {
        requestId: to_b256(c.request_id),
        modelId: to_b256(c.model_id),
        inputHash: to_b256(c.input_hash),
        outputHash: to_b256(c.output_hash),
    }
}

/// A `uint256` that must fit 64 bits.
pub fn u256_to_u64(v: U256, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| ChainError::Decode {
        op: what,
        message: format!("{v} does not fit 64 bits"),
    })
}

/// Keeps the `Ethereum` network type named for readers of the provider type.
pub type Network = Ethereum;

/// The gas limit given to a transaction whose gas the node estimated at `estimate`: a
/// fifth more, and at least [`MIN_GAS_MARGIN`] more, for state that changes between the
/// estimate and the block (see the module documentation).
pub fn with_gas_margin(estimate: u64) -> u64 {
    estimate.saturating_add((estimate / 5).max(MIN_GAS_MARGIN))
}

/// The least gas [`with_gas_margin`] adds: two storage slots written from zero that were
/// non-zero at the estimate (17,100 gas more each).
pub const MIN_GAS_MARGIN: u64 = 40_000;

/// `tx` with `fees` as its EIP-1559 fees.
fn with_fees(tx: TransactionRequest, fees: Fees) -> TransactionRequest {
    tx.with_max_fee_per_gas(fees.max_fee)
        .with_max_priority_fee_per_gas(fees.tip)
}

#[cfg(test)]
mod tests {
    use super::Fees;

    #[test]
    fn bumped_fees_rise_by_an_eighth_or_to_the_estimate_within_the_ceiling() {
        let old = Fees {
            max_fee: 800,
            tip: 80,
        };
        let low = Fees { max_fee: 1, tip: 1 };
        let bump = |estimate, ceiling| old.bumped(estimate, ceiling);
        assert_eq!(
            bump(low, None),
            Some(Fees {
                max_fee: 900,
                tip: 90
            })
        );
        // A rounding up, so that even 1 wei rises.
        assert_eq!(
            Fees { max_fee: 1, tip: 0 }.bumped(low, None),
            Some(Fees { max_fee: 2, tip: 1 })
        );
        let high = Fees {
            max_fee: 5_000,
            tip: 100,
        };
        assert_eq!(
            bump(high, None),
            Some(Fees {
                max_fee: 5_000,
                tip: 100
            })
        );
        assert_eq!(
            bump(high, Some(2_000)),
            Some(Fees {
                max_fee: 2_000,
                tip: 100
            })
        );
        // The ceiling leaves less than an eighth more: no replacement.
        assert_eq!(bump(high, Some(850)), None);
        assert_eq!(
            Fees {
                max_fee: 10_000,
                tip: 500
            }
            .capped(Some(300)),
            Fees {
                max_fee: 300,
                tip: 300
            }
        );
    }
}
