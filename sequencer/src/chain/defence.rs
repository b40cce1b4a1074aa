//! The sequencer's automatic defence: for a game opened against one of its claims, find the
//! claim's input in the batch's calldata, recompute the trace whose output was posted (the
//! true one, or the configured lie's in the [`crate::dev`] lying mode), and play the game
//! to the end as the defender with the [`super::driver`], then withdraw the winnings.
//! [`super::watch`] finds the games and runs one defence per game.

use super::bindings::InferenceRollup;
use super::client::ChainClient;
use super::driver::{DriverConfig, GameDriver};
use super::follower::fetch_batch_data;
use super::{BatchEntry, ChainError, GameEnd, Result};
use crate::dev::Lie;
use alloy::primitives::{B256, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use bisection::{Belief, Side, TracePlayer};
use inference::model::Model;
use std::sync::Arc;

/// Where the claim of a game was posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisputedClaim {
    /// The batch.
    pub batch_id: u64,
    /// The claim's index.
    pub index: u64,
    /// The block the game opened in.
    pub opened_block: u64,
    /// The transaction that posted the batch.
    pub batch_tx: B256,
}

/// Finds the batch, claim and posting transaction of game `game_id`.
pub async fn disputed_claim(
    client: &ChainClient,
    game_id: U256,
    from_block: u64,
) -> Result<DisputedClaim> {
    let rollup = client.addresses().rollup;
    let log = client
        .first_log(
            "getLogs ClaimChallenged",
            &Filter::new()
                .address(rollup)
                .event_signature(InferenceRollup::ClaimChallenged::SIGNATURE_HASH)
                .topic3(B256::from(game_id)),
            from_block,
        )
        .await?
        .ok_or_else(|| {
            ChainError::Inconsistent(format!("game {game_id} was not opened by the rollup"))
        })?;
    let e = InferenceRollup::ClaimChallenged::decode_log(&log.inner).map_err(|e| {
        ChainError::Decode {
            op: "ClaimChallenged",
            message: e.to_string(),
        }
    })?;
    let batch_tx = client
        .first_log(
            "getLogs BatchPosted",
            &Filter::new()
                .address(rollup)
                .event_signature(InferenceRollup::BatchPosted::SIGNATURE_HASH)
                .topic1(B256::from(e.batchId)),
            from_block,
        )
        .await?
        .and_then(|l| l.transaction_hash)
        .ok_or_else(|| ChainError::Inconsistent(format!("batch {} was not posted", e.batchId)))?;
    Ok(DisputedClaim {
        batch_id: super::client::u256_to_u64(e.batchId, "batchId")?,
        index: super::client::u256_to_u64(e.index, "index")?,
        opened_block: log.block_number.unwrap_or_default(),
        batch_tx,
    })
}

/// Defends game `game_id` against one of this client's claims with the true trace of
/// `model` (the claim's model, found by the caller from its id), to the end.
pub async fn defend_game(
    client: ChainClient,
    game_id: U256,
    model: Arc<Model>,
    config: DriverConfig,
) -> Result<GameEnd> {
    let claim = disputed_claim(&client, game_id, config.from_block).await?;
    let entry = disputed_entry(&client, &claim).await?;
    defend_entry(client, game_id, claim, entry, model, None, config).await
}

/// The posted entry (input and output) of a disputed claim, from its batch's calldata.
pub async fn disputed_entry(client: &ChainClient, claim: &DisputedClaim) -> Result<BatchEntry> {
    let data = fetch_batch_data(client, claim.batch_tx).await?;
    data.entries
        .get(claim.index as usize)
        .cloned()
        .ok_or_else(|| {
            ChainError::Inconsistent(format!(
                "batch {} has no claim {}",
                claim.batch_id, claim.index
            ))
        })
}

/// The trace a defence plays: the one whose output is the posted output. With a `lie`
/// configured ([`crate::dev`]) the lying trace is tried first, so a lying sequencer defends
/// exactly what it posted; then the true trace. A posted output neither gives is an error:
/// this side cannot back it with any trace.
pub fn defence_belief<'a>(
    model: &'a Model,
    entry: &BatchEntry,
    lie: Option<Lie>,
) -> Result<(Belief<'a>, bool)> {
    let posted = entry.claim()?.output_hash;
    if let Some(lie) = lie.filter(|l| l.applies_to(model)) {
        let belief = lie.belief(model, &entry.input).map_err(local)?;
        if belief.output_hash() == posted {
            return Ok((belief, true));
        }
    }
    let belief = Belief::honest(model.program(), model.weights(), &entry.input).map_err(local)?;
    if belief.output_hash() != posted {
        return Err(ChainError::Inconsistent(format!(
            "claim {}: the posted output {posted} is not this sequencer's output {}{}",
            entry.request_id,
            belief.output_hash(),
            if lie.is_some() {
                " nor its configured lie's"
            } else {
                ""
            }
        )));
    }
    Ok((belief, false))
}

fn local(e: impl std::fmt::Display) -> ChainError {
    ChainError::Local(e.to_string())
}

/// Defends game `game_id` over the posted `entry` of `claim` with the trace whose output
/// was posted ([`defence_belief`]), to the end; the driver replays whatever the game
/// already holds, so this also resumes a game after a restart.
pub async fn defend_entry(
    client: ChainClient,
    game_id: U256,
    claim: DisputedClaim,
    entry: BatchEntry,
    model: Arc<Model>,
    lie: Option<Lie>,
    mut config: DriverConfig,
) -> Result<GameEnd> {
    if entry.model_id != model.id() {
        return Err(ChainError::Local(format!(
            "game {game_id} disputes model {}, not {}",
            entry.model_id,
            model.id()
        )));
    }
    // The trace is computed here, on the runtime's thread, as the driver's proofs are: one
    // program run per game, at its start.
    let (belief, lying) = defence_belief(&model, &entry, lie)?;
    tracing::info!(target: "chain::defence", game = %game_id, batch = claim.batch_id, index = claim.index, lying, "defending");
    config.from_block = claim.opened_block;
    let mut driver = GameDriver::new(
        client,
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Defender, belief),
        config,
    )
    .await?;
    driver.run().await
}
