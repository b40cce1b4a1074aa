//! `timeout`: a side that stops answering loses on its clock, whichever side it is and
//! whoever is right.
//!
//! - sequencer silent: the sequencer posts a wrong claim (a consistent lie at `--fault-op`,
//!   default the middle op), the challenger bot disputes it, the sequencer defends for
//!   `--silent-after` moves and then stops; the bot claims the timeout once the chain's
//!   clock has passed the sequencer's time.
//! - challenger silent: the sequencer posts an honest claim, a challenger disputes it (lying
//!   at that position), plays `--silent-after` moves and stops; the sequencer's automatic
//!   defence claims the timeout.
//!
//! Chain time is moved by RPC: first to just before the silent side's clock runs out (a
//! timeout claim then is refused, `NotTimedOut`), then past it. Checked after each game: the
//! active side won by timeout, the claim's state and the bonds as the rules say.

use super::{
    Position, SilentSide, StopAfter, bot, bot_end, both, case, challenger_lie, defender_bond,
    driver_config, output_changing_lie, progress, sentence, single_position,
};
use crate::harness::{Harness, SCENARIO_POLL};
use crate::report::{Case, Check, ScenarioReport};
use crate::{Error, Result};
use alloy::primitives::U256;
use bisection::{Side, TracePlayer};
use challenger::{Challenger, ClaimOutcome};
use sequencer::chain::client::classify_contract;
use sequencer::chain::defence::defend_game;
use sequencer::chain::{DriverConfig, GameDriver};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for the silent side to reach its silence (real time).
const SILENCE_DEADLINE: Duration = Duration::from_secs(300);

/// Runs the scenario.
pub async fn run(opts: &super::Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    progress("timeout: starting anvil, deploying, registering the model");
    let h = Harness::start(&opts.harness(1)?).await?;
    let pos = single_position(&h.model, opts)?;
    let mut report = ScenarioReport::for_harness("timeout", &h);
    report.notes.push(format!(
        "the silent side plays {} moves, then stops; chain time is moved by evm_increaseTime",
        opts.silent_after
    ));
    let mut bot = bot(&h, 0);
    let sides: &[SilentSide] = match opts.silent {
        SilentSide::Both => &[SilentSide::Sequencer, SilentSide::Challenger],
        SilentSide::Sequencer => &[SilentSide::Sequencer],
        SilentSide::Challenger => &[SilentSide::Challenger],
    };
    for (i, side) in sides.iter().enumerate() {
        progress(format!("timeout: case {}: {side:?} stops answering", i + 1));
        let c = match side {
            SilentSide::Sequencer => {
                sequencer_silent(&h, &mut bot, i, pos, opts.silent_after).await?
            }
            _ => challenger_silent(&h, i, pos, opts.silent_after).await?,
        };
        progress(format!(
            "timeout: case {}: {:?} by {} after {} moves, {:.1} s{}",
            i + 1,
            c.winner,
            c.reason,
            c.moves,
            c.seconds,
            if c.passed { "" } else { " FAILED" }
        ));
        report.cases.push(c);
    }
    Ok(report.finish(started))
}

/// Waits until the silent side has refused a move on its turn, moves the chain's clock to
/// just before its time runs out (checking that a timeout claim is refused then), then past
/// it.
async fn expire_clock(
    h: &Harness,
    game_id: U256,
    silent: Side,
    stopped: Arc<AtomicBool>,
) -> Result<Vec<Check>> {
    let start = Instant::now();
    loop {
        if stopped.load(Ordering::SeqCst) && h.game_turn(game_id).await?.0 == Some(silent) {
            break;
        }
        if start.elapsed() > SILENCE_DEADLINE {
            return Err(Error::Game(format!(
                "game {game_id}: the {silent:?} never reached its silent turn"
            )));
        }
        tokio::time::sleep(SCENARIO_POLL).await;
    }
    let clock = h.game_config().clock_seconds;
    let margin = 120.min(clock / 2);
    h.advance_time(clock - margin).await?;
    let early = h.sequencer.games().claimTimeout(game_id).call().await;
    let early = match early {
        Ok(_) => "accepted".to_string(),
        Err(e) => classify_contract("claimTimeout", &e).to_string(),
    };
    let (turn, moves) = h.game_turn(game_id).await?;
    h.advance_time(margin + 1).await?;
    Ok(vec![
        Check::holds(
            "no_timeout_before_clock",
            early.contains("NotTimedOut"),
            format!("claimTimeout {margin} s before the clock ran out: {early}"),
        ),
        Check::holds(
            "silent_side_to_move",
            turn == Some(silent),
            format!("turn {turn:?} after {moves} moves"),
        ),
    ])
}

/// The sequencer defends a wrong claim for `after` moves, then stops; the bot wins on time.
pub async fn sequencer_silent(
    h: &Harness,
    bot: &mut Challenger,
    i: usize,
    pos: Position,
    after: u32,
) -> Result<Case> {
    let started = Instant::now();
    let model = &h.model;
    let input = h.input(sentence(i))?;
    let (lie, pos) = output_changing_lie(model, &input, pos)?;
    let leaf = pos.leaf;
    let posted = h
        .post_one(3000 + i as u64, input, lie.trace().output().clone())
        .await?;
    let stake_before = h.stake().await?;
    let burnt_before = h.total_burnt().await?;
    let seq_credit_before = h.credit(h.sequencer.account()).await?;
    let checked = bot
        .check_batch(
            posted.batch_id,
            posted.tx,
            posted.commitment.root,
            1,
            posted.block,
        )
        .await?;
    let Some(ClaimOutcome::Disputed { game_id }) = checked.claims.first().cloned() else {
        return Err(Error::Game(format!(
            "the bot did not dispute the wrong claim: {:?}",
            checked.claims
        )));
    };
    let stake_after_open = h.stake().await?;
    let bond = defender_bond(h, stake_before);
    let player = StopAfter::new(TracePlayer::new(Side::Defender, lie), after);
    let stopped = player.stopped();
    let mut silent = GameDriver::new(
        h.sequencer.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        player,
        DriverConfig {
            from_block: posted.block,
            ..driver_config()
        },
    )
    .await?;
    let (lost, (mut checks, ended)) = both(silent.run(), async {
        let checks = expire_clock(h, game_id, Side::Defender, stopped).await?;
        Ok::<_, Error>((checks, bot.finish_games().await))
    })
    .await?;
    let end = bot_end(&ended, game_id)?;
    let record = h.game_record(game_id, posted.block).await?;
    let cb = U256::from(h.game_config().challenger_bond);
    let (prize, burnt) = super::payout(cb, bond, h.game_config().burn_bps);
    checks.extend([
        Check::eq("winner", Side::Challenger, end.winner),
        Check::eq("loser_sees_winner", Side::Challenger, lost.winner),
        Check::eq(
            "reason",
            "timeout",
            crate::harness::reason_name(record.resolved.as_ref().map_or(0, |r| r.reason)),
        ),
        Check::eq("no_one_step", None, record.one_step_gas),
        Check::eq(
            "claim_invalidated",
            2u8,
            h.claim_state(posted.batch_id, 0).await?,
        ),
    ]);
    checks.extend(
        super::fraud::money_checks_challenger_won(
            h,
            &record,
            super::fraud::Money {
                bond,
                prize,
                burnt,
                stake_before,
                stake_after_open,
                burnt_before,
                seq_credit_before,
            },
            end.withdrawn,
            h.challengers[0].account(),
        )
        .await?,
    );
    case(
        format!("sequencer silent after {after} moves"),
        Some((pos, leaf)),
        &record,
        checks,
        started,
    )
}

/// A challenger disputes an honest claim, plays `after` moves and stops; the sequencer's
/// defence wins on time.
pub async fn challenger_silent(h: &Harness, i: usize, pos: Position, after: u32) -> Result<Case> {
    let started = Instant::now();
    let model = &h.model;
    let input = h.input(sentence(i))?;
    let output = inference::trace::run(model.program(), model.weights(), &input)
        .map_err(|e| Error::Setup(format!("executing the model: {e}")))?;
    let lie = challenger_lie(model, &input, pos)?;
    let posted = h.post_one(3100 + i as u64, input, output).await?;
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
    let player = StopAfter::new(TracePlayer::new(Side::Challenger, lie), after);
    let stopped = player.stopped();
    let mut silent = GameDriver::new(
        challenger.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        player,
        config.clone(),
    )
    .await?;
    let defence = defend_game(h.sequencer.clone(), game_id, model.clone(), config);
    let (won, (lost, mut checks)) = both(
        defence,
        both(
            silent.run(),
            expire_clock(h, game_id, Side::Challenger, stopped),
        ),
    )
    .await?;
    let record = h.game_record(game_id, posted.block).await?;
    let r = record
        .resolved
        .clone()
        .ok_or_else(|| Error::Game(format!("game {game_id} is not resolved")))?;
    checks.extend([
        Check::eq("winner", Side::Defender, won.winner),
        Check::eq("loser_sees_winner", Side::Defender, lost.winner),
        Check::eq("reason", "timeout", crate::harness::reason_name(r.reason)),
        Check::eq("no_one_step", None, record.one_step_gas),
        Check::eq(
            "claim_not_invalidated",
            0u8,
            h.claim_state(posted.batch_id, 0).await?,
        ),
    ]);
    checks.extend(
        super::false_challenge::money_checks_sequencer_won(
            h,
            &r,
            super::false_challenge::SequencerWon {
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
    case(
        format!("challenger silent after {after} moves"),
        Some((pos, pos.leaf)),
        &record,
        checks,
        started,
    )
}
