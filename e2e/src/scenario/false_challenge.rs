//! `false-challenge`: a challenger disputes honest claims. For each position (one per op
//! kind by default, or the one `--fault-op`/`--fault-leaf` names) the sequencer posts the
//! true output; a challenger opens a game against it and plays a faulty trace that departs
//! from the truth at that op and leaf, so the game runs down to it and ends at the
//! one-step, which the contract decides for the sequencer. The sequencer side is the
//! sequencer's own automatic defence (`sequencer::chain::defence::defend_game`). Checked on
//! chain after each game: the sequencer won by the one-step, the claim is not invalidated,
//! the defender bond came back to the sequencer with the challenger's bond less the burn;
//! after every game, once the window has passed, every claim is final.

use super::{
    Placed, Position, bisection_checks, both, case, challenger_lie, defender_bond, driver_config,
    payout, positions, progress, sentence,
};
use crate::harness::Harness;
use crate::report::{Case, Check, ScenarioReport};
use crate::{Error, Result};
use alloy::primitives::U256;
use bisection::{Side, TracePlayer};
use sequencer::chain::defence::defend_game;
use sequencer::chain::{DriverConfig, GameDriver};
use std::sync::Arc;
use std::time::Instant;

/// Runs the scenario.
pub async fn run(opts: &super::Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    progress("false-challenge: starting anvil, deploying, registering the model");
    let h = Harness::start(&opts.harness(1)?).await?;
    let positions = positions(&h.model, opts)?;
    let mut report = ScenarioReport::for_harness("false-challenge", &h);
    report.notes.push(
        "sequencer: sequencer::chain::defence::defend_game (its automatic defence, the true trace); \
         challenger: sequencer::chain::GameDriver with a TracePlayer over a faulty trace (the bot never disputes an honest claim)"
            .into(),
    );
    let mut batches = Vec::new();
    for (i, pos) in positions.into_iter().enumerate() {
        progress(format!(
            "false-challenge: case {}: challenger lies at op {} ({}) leaf {}",
            i + 1,
            pos.op,
            pos.kind,
            pos.leaf
        ));
        let (c, batch) = false_case(&h, i, pos).await?;
        progress(format!(
            "false-challenge: case {}: {:?} by {} in {} moves, {} gas, {:.1} s{}",
            i + 1,
            c.winner,
            c.reason,
            c.moves,
            c.total_gas,
            c.seconds,
            if c.passed { "" } else { " FAILED" }
        ));
        report.cases.push(c);
        batches.push(batch);
    }
    // Finality: past the window, every claim that won its games is final.
    h.advance_time(h.config.challenge_window + 1).await?;
    let mut states = Vec::new();
    for b in &batches {
        states.push(h.claim_state(*b, 0).await?);
    }
    report.checks.push(Check::holds(
        "claims_final_after_window",
        states.iter().all(|&s| s == 1),
        format!("claim states after the window (1 = final): {states:?}"),
    ));
    Ok(report.finish(started))
}

/// One honest claim disputed by challenger account 0 lying at `pos`; returns the case and
/// the batch id.
pub async fn false_case(h: &Harness, i: usize, pos: Position) -> Result<(Case, u64)> {
    let started = Instant::now();
    let model = &h.model;
    let input = h.input(sentence(i))?;
    let output = inference::trace::run(model.program(), model.weights(), &input)
        .map_err(|e| Error::Setup(format!("executing the model: {e}")))?;
    let lie = challenger_lie(model, &input, pos)?;
    let posted = h.post_one(2000 + i as u64, input, output).await?;
    let challenger = &h.challengers[0];
    let stake_before = h.stake().await?;
    let burnt_before = h.total_burnt().await?;
    let chal_credit_before = h.credit(challenger.account()).await?;
    let (game_id, _) = challenger
        .challenge(
            posted.batch_id,
            0,
            &posted.claims[0],
            &posted.commitment.proofs[0],
        )
        .await?;
    let stake_after_open = h.stake().await?;
    let bond = defender_bond(h, stake_before);
    let config = DriverConfig {
        from_block: posted.block,
        ..driver_config()
    };
    let mut attacker = GameDriver::new(
        challenger.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Challenger, lie),
        config.clone(),
    )
    .await?;
    let defence = defend_game(h.sequencer.clone(), game_id, model.clone(), config);
    let (won, lost) = both(defence, attacker.run()).await?;
    let record = h.game_record(game_id, posted.block).await?;
    let r = record
        .resolved
        .clone()
        .ok_or_else(|| Error::Game(format!("game {game_id} is not resolved")))?;

    let mut checks = vec![
        Check::eq("winner", Side::Defender, won.winner),
        Check::eq("challenger_sees_winner", Side::Defender, lost.winner),
    ];
    checks.extend(bisection_checks(
        h,
        &record,
        pos,
        pos.leaf,
        "one_step_match",
    ));
    checks.push(Check::eq(
        "claim_not_invalidated",
        0u8,
        h.claim_state(posted.batch_id, 0).await?,
    ));
    checks.extend(
        money_checks_sequencer_won(
            h,
            &r,
            SequencerWon {
                bond,
                stake_before,
                stake_after_open,
                burnt_before,
                chal_credit_before,
                sequencer_withdrew: won.withdrawn,
                challenger_withdrew: lost.withdrawn,
                challenger: challenger.account(),
            },
        )
        .await?,
    );
    let placed: Placed = Some((pos, pos.leaf));
    let c = case(
        format!(
            "challenger lies at op {} ({}) leaf {}",
            pos.op, pos.kind, pos.leaf
        ),
        placed,
        &record,
        checks,
        started,
    )?;
    Ok((c, posted.batch_id))
}

/// Balances around a game the sequencer won, read before it, and what each side withdrew.
#[derive(Clone, Copy, Debug)]
pub struct SequencerWon {
    /// The defender bond the game took.
    pub bond: U256,
    /// The sequencer's stake before the challenge.
    pub stake_before: U256,
    /// Its stake right after the challenge.
    pub stake_after_open: U256,
    /// `totalBurnt` before the game.
    pub burnt_before: U256,
    /// The challenger's game credit before the game.
    pub chal_credit_before: U256,
    /// What the sequencer's driver withdrew.
    pub sequencer_withdrew: U256,
    /// What the challenger's driver withdrew.
    pub challenger_withdrew: U256,
    /// The challenger.
    pub challenger: alloy::primitives::Address,
}

/// The checks of a game the sequencer won: its bond left the stake into the game and came
/// back as credit with the challenger's bond less the burn, withdrawn; the challenger got
/// nothing.
pub async fn money_checks_sequencer_won(
    h: &Harness,
    r: &crate::harness::Resolution,
    m: SequencerWon,
) -> Result<Vec<Check>> {
    let cb = U256::from(h.game_config().challenger_bond);
    let (prize, burnt) = payout(m.bond, cb, h.game_config().burn_bps);
    Ok(vec![
        Check::eq("bond_locked", m.bond, m.stake_before - m.stake_after_open),
        Check::eq("defender_payout", prize, r.defender_payout),
        Check::eq("challenger_payout", U256::ZERO, r.challenger_payout),
        Check::eq("burnt", burnt, r.burnt),
        Check::eq(
            "total_burnt_delta",
            burnt,
            h.total_burnt().await? - m.burnt_before,
        ),
        Check::eq("sequencer_withdrew", prize, m.sequencer_withdrew),
        Check::eq(
            "sequencer_credit_left",
            U256::ZERO,
            h.credit(h.sequencer.account()).await?,
        ),
        Check::eq(
            "challenger_credit",
            m.chal_credit_before,
            h.credit(m.challenger).await?,
        ),
        Check::eq("challenger_withdrew", U256::ZERO, m.challenger_withdrew),
    ])
}
