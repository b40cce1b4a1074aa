//! Following the rollup: the events of the registry, the rollup and the games from a start
//! block, in chain order, catching up in bounded ranges and then following the head (minus
//! a confirmation depth, so a shallow reorg is not followed).
//!
//! The follower is a cursor: [`EventFollower::poll`] returns the events of the next range
//! and advances; the caller persists [`EventFollower::next_block`] once it has handled them,
//! so a restart resumes where it stopped.

use super::batch_data::BatchData;
use super::bindings::{DisputeGame, InferenceRollup, ModelRegistry};
use super::client::{ChainClient, u256_to_u64};
use super::{ChainError, Result, to_h256};
use crate::claim::Claim;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::{SolCall, SolEvent};
use bisection::Side;
use inference::merkle::H256;

/// Where a log sits in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// Block number.
    pub block: u64,
    /// Index of the log in its block.
    pub log_index: u64,
    /// The transaction that emitted it.
    pub tx: B256,
}

/// A decoded event of the rollup, its games or its registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainEvent {
    /// A model was registered.
    ModelRegistered {
        /// Where.
        pos: LogPosition,
        /// Its id.
        model_id: H256,
        /// Where its files can be fetched.
        uri: String,
    },
    /// A batch was posted; its data is in transaction `pos.tx`.
    BatchPosted {
        /// Where.
        pos: LogPosition,
        /// The batch id.
        batch_id: u64,
        /// The sequencer that posted it.
        sequencer: Address,
        /// Its claims root.
        claims_root: H256,
        /// Its claim count.
        count: u32,
    },
    /// An on-chain inference request.
    InferenceRequested {
        /// Where.
        pos: LogPosition,
        /// The request id.
        request_id: H256,
        /// Who asked.
        requester: Address,
        /// The model.
        model_id: H256,
        /// The input's tensor hash.
        input_hash: H256,
        /// The fee, in wei.
        fee: U256,
        /// The input type encoding.
        input_type: Bytes,
        /// The input data.
        input_data: Bytes,
    },
    /// A claim was disputed.
    ClaimChallenged {
        /// Where.
        pos: LogPosition,
        /// The batch.
        batch_id: u64,
        /// The claim's index.
        index: u64,
        /// The game.
        game_id: U256,
        /// Who disputes it.
        challenger: Address,
    },
    /// A claim lost a game.
    ClaimInvalidated {
        /// Where.
        pos: LogPosition,
        /// The batch.
        batch_id: u64,
        /// The claim's index.
        index: u64,
    },
    /// A game opened.
    GameOpened {
        /// Where.
        pos: LogPosition,
        /// The game.
        game_id: U256,
        /// The sequencer defending.
        defender: Address,
        /// The challenger.
        challenger: Address,
        /// The disputed claim.
        claim: Claim,
    },
    /// A move was made in a game.
    GameMoved {
        /// Where.
        pos: LogPosition,
        /// The game.
        game_id: U256,
    },
    /// A game ended.
    GameResolved {
        /// Where.
        pos: LogPosition,
        /// The game.
        game_id: U256,
        /// Who won.
        winner: Side,
        /// The reason code (`IDisputeGame.Reason`).
        reason: u8,
        /// Wei credited to the defender.
        defender_payout: U256,
        /// Wei credited to the challenger.
        challenger_payout: U256,
    },
}

impl ChainEvent {
    /// Where the event sits.
    pub fn position(&self) -> LogPosition {
        match self {
            Self::ModelRegistered { pos, .. }
            | Self::BatchPosted { pos, .. }
            | Self::InferenceRequested { pos, .. }
            | Self::ClaimChallenged { pos, .. }
            | Self::ClaimInvalidated { pos, .. }
            | Self::GameOpened { pos, .. }
            | Self::GameMoved { pos, .. }
            | Self::GameResolved { pos, .. } => *pos,
        }
    }
}

/// Reads a claim out of the games binding's type.
pub fn game_claim(c: &DisputeGame::Claim) -> Claim {
    Claim {
        request_id: to_h256(c.requestId),
        model_id: to_h256(c.modelId),
        input_hash: to_h256(c.inputHash),
        output_hash: to_h256(c.outputHash),
    }
}

/// Decodes one log of the followed contracts; `Ok(None)` for events nobody acts on.
pub fn decode_log(log: &Log) -> Result<Option<ChainEvent>> {
    let pos = LogPosition {
        block: log.block_number.unwrap_or_default(),
        log_index: log.log_index.unwrap_or_default(),
        tx: log.transaction_hash.unwrap_or_default(),
    };
    let Some(&topic0) = log.topics().first() else {
        return Ok(None);
    };
    let bad = |e: alloy::sol_types::Error| ChainError::Decode {
        op: "log",
        message: e.to_string(),
    };
    let inner = &log.inner;
    Ok(Some(match topic0 {
        t if t == ModelRegistry::ModelRegistered::SIGNATURE_HASH => {
            let e = ModelRegistry::ModelRegistered::decode_log(inner).map_err(bad)?;
            ChainEvent::ModelRegistered {
                pos,
                model_id: to_h256(e.modelId),
                uri: e.data.uri.clone(),
            }
        }
        t if t == InferenceRollup::BatchPosted::SIGNATURE_HASH => {
            let e = InferenceRollup::BatchPosted::decode_log(inner).map_err(bad)?;
            ChainEvent::BatchPosted {
                pos,
                batch_id: u256_to_u64(e.batchId, "batchId")?,
                sequencer: e.sequencer,
                claims_root: to_h256(e.claimsRoot),
                count: e.count,
            }
        }
        t if t == InferenceRollup::InferenceRequested::SIGNATURE_HASH => {
            let e = InferenceRollup::InferenceRequested::decode_log(inner).map_err(bad)?;
            ChainEvent::InferenceRequested {
                pos,
                request_id: to_h256(e.requestId),
                requester: e.requester,
                model_id: to_h256(e.modelId),
                input_hash: to_h256(e.inputHash),
                fee: e.fee,
                input_type: e.data.inputType.clone(),
                input_data: e.data.inputData.clone(),
            }
        }
        t if t == InferenceRollup::ClaimChallenged::SIGNATURE_HASH => {
            let e = InferenceRollup::ClaimChallenged::decode_log(inner).map_err(bad)?;
            ChainEvent::ClaimChallenged {
                pos,
                batch_id: u256_to_u64(e.batchId, "batchId")?,
                index: u256_to_u64(e.index, "index")?,
                game_id: e.gameId,
                challenger: e.challenger,
            }
        }
        t if t == InferenceRollup::ClaimInvalidated::SIGNATURE_HASH => {
            let e = InferenceRollup::ClaimInvalidated::decode_log(inner).map_err(bad)?;
            ChainEvent::ClaimInvalidated {
                pos,
                batch_id: u256_to_u64(e.batchId, "batchId")?,
                index: u256_to_u64(e.index, "index")?,
            }
        }
        t if t == DisputeGame::GameOpened::SIGNATURE_HASH => {
            let e = DisputeGame::GameOpened::decode_log(inner).map_err(bad)?;
            ChainEvent::GameOpened {
                pos,
                game_id: e.gameId,
                defender: e.defender,
                challenger: e.challenger,
                claim: game_claim(&e.data.claim),
            }
        }
        t if t == DisputeGame::GameResolved::SIGNATURE_HASH => {
            let e = DisputeGame::GameResolved::decode_log(inner).map_err(bad)?;
            ChainEvent::GameResolved {
                pos,
                game_id: e.gameId,
                winner: if e.winner == 0 {
                    Side::Defender
                } else {
                    Side::Challenger
                },
                reason: e.reason,
                defender_payout: e.defenderPayout,
                challenger_payout: e.challengerPayout,
            }
        }
        t if is_move_event(t) => ChainEvent::GameMoved {
            pos,
            game_id: log
                .topics()
                .get(1)
                .map(|g| U256::from_be_bytes(g.0))
                .unwrap_or_default(),
        },
        _ => return Ok(None),
    }))
}

/// Whether `topic0` is one of the games' move events.
pub fn is_move_event(topic0: B256) -> bool {
    [
        DisputeGame::FinalRevealed::SIGNATURE_HASH,
        DisputeGame::Dissected::SIGNATURE_HASH,
        DisputeGame::Picked::SIGNATURE_HASH,
        DisputeGame::StepRevealed::SIGNATURE_HASH,
        DisputeGame::NodesRevealed::SIGNATURE_HASH,
        DisputeGame::NodePicked::SIGNATURE_HASH,
        DisputeGame::LeafRevealed::SIGNATURE_HASH,
    ]
    .contains(&topic0)
}

/// A cursor over the events of one deployment.
#[derive(Clone, Debug)]
pub struct EventFollower {
    client: ChainClient,
    next_block: u64,
    confirmations: u64,
    max_range: u64,
}

impl EventFollower {
    /// Follows from `start_block`, staying `confirmations` blocks behind the head (0: follow
    /// the head itself), fetching the client's `log_range` blocks per poll.
    pub fn new(client: ChainClient, start_block: u64, confirmations: u64) -> Self {
        Self {
            max_range: client.config().log_range.max(1),
            client,
            next_block: start_block,
            confirmations,
        }
    }

    /// Sets the largest block range of one poll.
    pub fn with_max_range(mut self, blocks: u64) -> Self {
        self.max_range = blocks.max(1);
        self
    }

    /// The first block not yet returned.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// The events of the next range of blocks, in chain order, and the head seen. Empty
    /// when caught up. Undecodable logs of the followed contracts are skipped with a
    /// warning: a bad log must not stop the follower.
    pub async fn poll(&mut self) -> Result<(Vec<ChainEvent>, u64)> {
        let head = self.client.head().await?;
        let Some(last) = head.checked_sub(self.confirmations) else {
            return Ok((Vec::new(), head));
        };
        if self.next_block > last {
            return Ok((Vec::new(), head));
        }
        let to = last.min(self.next_block.saturating_add(self.max_range - 1));
        let a = self.client.addresses();
        let filter = Filter::new().address(vec![a.registry, a.rollup, a.games]);
        let logs = self
            .client
            .logs("getLogs", &filter, self.next_block, Some(to))
            .await?;
        let mut events = Vec::with_capacity(logs.len());
        for log in &logs {
            match decode_log(log) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "chain::follower", error = %e, "skipping an undecodable log")
                }
            }
        }
        self.next_block = to + 1;
        Ok((events, head))
    }
}

/// The data of the batch posted by transaction `tx` (a direct `postBatch` call).
pub async fn fetch_batch_data(client: &ChainClient, tx: B256) -> Result<BatchData> {
    let input = client.tx_input(tx).await?;
    let call =
        InferenceRollup::postBatchCall::abi_decode(&input).map_err(|e| ChainError::Decode {
            op: "postBatch calldata",
            message: format!("transaction {tx} is not a direct postBatch call: {e}"),
        })?;
    Ok(BatchData::decode(&call.data_)?)
}
