//! `parallel`: several challengers (`--challengers`, default 3), each its own challenger bot
//! with its own account, dispute one wrong claim (a consistent lie at `--fault-op`, default
//! the middle op). Every bot re-executes the batch and opens its game before the lying
//! sequencer makes its first move; the sequencer then defends every game at once with the
//! same lie. The games run side by side: each ends at the one-step for its challenger.
//!
//! Checked on chain: every challenger won and was paid its bond plus a defender bond less
//! the burn; the stake lost one defender bond per game; the games overlapped (all opened in
//! blocks before the first one ended), so the claim was invalidated within one game's length
//! (both clocks, `2 * clockSeconds`) of the last game opened, and every game ended within
//! that bound too: more challengers cannot delay the claim's fate.

use super::{
    Placed, bisection_checks, bot, bot_end, case, defender_bond, driver_config,
    output_changing_lie, payout, progress, single_position,
};
use crate::harness::Harness;
use crate::report::{Check, ScenarioReport};
use crate::{Error, Result};
use alloy::primitives::U256;
use bisection::{Side, TracePlayer};
use challenger::ClaimOutcome;
use sequencer::chain::{DriverConfig, GameDriver};
use std::sync::Arc;
use std::time::Instant;

/// Runs the scenario.
pub async fn run(opts: &super::Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    let n = opts.challengers;
    if n == 0 {
        return Err(Error::Usage("--challengers must be at least 1".into()));
    }
    progress(format!(
        "parallel: starting anvil, deploying, registering the model, {n} challengers"
    ));
    let h = Harness::start(&opts.harness(n)?).await?;
    let pos = single_position(&h.model, opts)?;
    let mut report = ScenarioReport::for_harness("parallel", &h);
    report.notes.push(format!(
        "{n} challenger::Challenger bots, one account each; the sequencer defends every game with \
         sequencer::chain::GameDriver and the consistent lie it posted"
    ));

    let model = &h.model;
    let input = h.input(super::sentence(6))?;
    let posted_at = Instant::now();
    let (lie, pos) = output_changing_lie(model, &input, pos)?;
    let leaf = pos.leaf;
    let posted = h
        .post_one(4000, input, lie.trace().output().clone())
        .await?;
    let stake_before = h.stake().await?;
    let burnt_before = h.total_burnt().await?;
    let seq_credit_before = h.credit(h.sequencer.account()).await?;

    // Every bot checks the batch and opens its game; nothing moves until the defences start.
    let mut bots: Vec<_> = (0..n).map(|i| bot(&h, i)).collect();
    let mut games = Vec::with_capacity(n);
    let mut bonds = Vec::with_capacity(n);
    for (i, b) in bots.iter_mut().enumerate() {
        let stake = h.stake().await?;
        let checked = b
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
                "challenger {i} did not dispute the wrong claim: {:?}",
                checked.claims
            )));
        };
        progress(format!("parallel: challenger {i} opened game {game_id}"));
        games.push(game_id);
        bonds.push(defender_bond(&h, stake));
    }
    let stake_after_open = h.stake().await?;

    let mut defences = Vec::with_capacity(n);
    for game_id in &games {
        defences.push(
            GameDriver::new(
                h.sequencer.clone(),
                *game_id,
                Arc::new(model.program().clone()),
                model.weights().root(),
                TracePlayer::new(Side::Defender, lie.clone()),
                DriverConfig {
                    from_block: posted.block,
                    ..driver_config()
                },
            )
            .await?,
        );
    }
    let play = async {
        let defended = futures::future::try_join_all(defences.iter_mut().map(|d| d.run()));
        let finished = futures::future::join_all(bots.iter_mut().map(|b| async {
            let ended = b.finish_games().await;
            (ended, Instant::now())
        }));
        let (defended, finished) = tokio::join!(defended, finished);
        Ok::<_, Error>((defended?, finished))
    };
    let (defended, finished) = tokio::time::timeout(super::GAME_DEADLINE, play)
        .await
        .map_err(|_| Error::Game("the parallel games did not end in time".into()))??;

    let cb = U256::from(h.game_config().challenger_bond);
    let burn_bps = h.game_config().burn_bps;
    let mut records = Vec::with_capacity(n);
    let mut total_burnt = U256::ZERO;
    for (i, game_id) in games.iter().enumerate() {
        let end = bot_end(&finished[i].0, *game_id)?;
        let record = h.game_record(*game_id, posted.block).await?;
        let r = record
            .resolved
            .clone()
            .ok_or_else(|| Error::Game(format!("game {game_id} is not resolved")))?;
        let (prize, burnt) = payout(cb, bonds[i], burn_bps);
        total_burnt += burnt;
        let chal = h.challengers[i].account();
        let mut checks = vec![
            Check::eq("winner", Side::Challenger, end.winner),
            Check::eq("defender_sees_winner", Side::Challenger, defended[i].winner),
        ];
        checks.extend(bisection_checks(
            &h,
            &record,
            pos,
            leaf,
            "one_step_mismatch",
        ));
        checks.extend([
            Check::eq("challenger_payout", prize, r.challenger_payout),
            Check::eq("defender_payout", U256::ZERO, r.defender_payout),
            Check::eq("burnt", burnt, r.burnt),
            Check::eq("challenger_withdrew", prize, end.withdrawn),
            Check::eq("challenger_credit_left", U256::ZERO, h.credit(chal).await?),
        ]);
        let placed: Placed = Some((pos, leaf));
        let seconds = finished[i].1.duration_since(posted_at).as_secs_f64();
        let mut c = case(
            format!("challenger {i} of {n}, lie at op {} ({})", pos.op, pos.kind),
            placed,
            &record,
            checks,
            started,
        )?;
        c.seconds = seconds;
        records.push(record);
        report.cases.push(c);
    }

    // The claim's fate, over all games.
    let clock = h.game_config().clock_seconds;
    let game_length = 2 * clock;
    let last_opened = records.iter().map(|r| r.opened_at).max().unwrap_or(0);
    let invalidated_at = records
        .iter()
        .filter_map(|r| r.resolved.as_ref())
        .filter(|x| x.winner == Side::Challenger)
        .map(|x| x.at)
        .min()
        .unwrap_or(u64::MAX);
    let last_resolved = records
        .iter()
        .filter_map(|r| r.resolved.as_ref().map(|x| x.at))
        .max()
        .unwrap_or(u64::MAX);
    let last_opened_block = records.iter().map(|r| r.opened_block).max().unwrap_or(0);
    let first_resolved_block = records
        .iter()
        .filter_map(|r| r.resolved.as_ref().map(|x| x.block))
        .min()
        .unwrap_or(0);
    let expected_slash: U256 = bonds.iter().copied().fold(U256::ZERO, |a, b| a + b);
    report.checks.extend([
        Check::eq(
            "claim_invalidated",
            2u8,
            h.claim_state(posted.batch_id, 0).await?,
        ),
        Check::eq(
            "games_opened",
            n,
            games.iter().collect::<std::collections::HashSet<_>>().len(),
        ),
        Check::holds(
            "games_overlap",
            last_opened_block < first_resolved_block,
            format!(
                "last game opened in block {last_opened_block}, first resolved in block {first_resolved_block}"
            ),
        ),
        Check::holds(
            "invalidated_within_one_game",
            invalidated_at.saturating_sub(last_opened) <= game_length,
            format!(
                "invalidated {} s after the last game opened; one game's length is {game_length} s",
                invalidated_at.saturating_sub(last_opened)
            ),
        ),
        Check::holds(
            "all_games_end_within_one_game",
            last_resolved.saturating_sub(last_opened) <= game_length,
            format!(
                "the last game ended {} s after the last one opened",
                last_resolved.saturating_sub(last_opened)
            ),
        ),
        Check::eq(
            "stake_slashed",
            expected_slash,
            stake_before - stake_after_open,
        ),
        Check::eq(
            "stake_slashed_per_game",
            U256::from(n as u64) * U256::from(h.game_config().defender_bond),
            expected_slash,
        ),
        Check::eq("stake_unchanged_after", stake_after_open, h.stake().await?),
        Check::eq(
            "total_burnt_delta",
            total_burnt,
            h.total_burnt().await? - burnt_before,
        ),
        Check::eq(
            "sequencer_credit",
            seq_credit_before,
            h.credit(h.sequencer.account()).await?,
        ),
    ]);
    Ok(report.finish(started))
}
