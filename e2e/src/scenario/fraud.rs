//! `fraud`: the sequencer lies. For each position (one per op kind of the model by default,
//! or the one `--fault-op`/`--fault-leaf` names) it posts a batch whose claim's output is that
//! of a consistent faulty trace, and defends it with the same trace; the challenger bot
//! re-executes the batch, disputes the claim and plays the game, which runs down to the
//! lie's op and leaf and ends at the one-step. Checked on chain after each game: the
//! challenger won by the one-step, the claim is invalidated, the defender bond left the
//! sequencer's stake and went to the challenger less the burn, nothing to the sequencer.

use super::{
    Placed, Position, bisection_checks, bot, bot_end, both, case, defender_bond, driver_config,
    infallible, output_changing_lie, payout, positions, progress, sentence,
};
use crate::harness::Harness;
use crate::report::{Case, Check, ScenarioReport};
use crate::{Error, Result};
use alloy::primitives::U256;
use bisection::{Side, TracePlayer};
use challenger::{Challenger, ClaimOutcome};
use sequencer::chain::{DriverConfig, GameDriver};
use std::sync::Arc;
use std::time::Instant;

/// Runs the scenario.
pub async fn run(opts: &super::Options) -> Result<ScenarioReport> {
    let started = Instant::now();
    progress("fraud: starting anvil, deploying, registering the model");
    let h = Harness::start(&opts.harness(1)?).await?;
    let positions = positions(&h.model, opts)?;
    let mut report = ScenarioReport::for_harness("fraud", &h);
    report.notes.push(
        "challenger: challenger::Challenger (the bot) re-executes the batch, opens the game and plays it; \
         sequencer: sequencer::chain::GameDriver with a TracePlayer over the consistent faulty trace it posted"
            .into(),
    );
    let mut bot = bot(&h, 0);
    for (i, pos) in positions.into_iter().enumerate() {
        progress(format!(
            "fraud: case {}: lie at op {} ({}) leaf {}",
            i + 1,
            pos.op,
            pos.kind,
            pos.leaf
        ));
        let c = fraud_case(&h, &mut bot, i, pos).await?;
        progress(format!(
            "fraud: case {}: {:?} by {} in {} moves, {} gas, {:.1} s{}",
            i + 1,
            c.winner,
            c.reason,
            c.moves,
            c.total_gas,
            c.seconds,
            if c.passed { "" } else { " FAILED" }
        ));
        report.cases.push(c);
    }
    Ok(report.finish(started))
}

/// One lying claim at `pos`, disputed by `bot` (challenger account 0), defended by the liar.
pub async fn fraud_case(
    h: &Harness,
    bot: &mut Challenger,
    i: usize,
    pos: Position,
) -> Result<Case> {
    let started = Instant::now();
    let model = &h.model;
    let input = h.input(sentence(i))?;
    let (lie, pos) = output_changing_lie(model, &input, pos)?;
    let leaf = pos.leaf;
    let posted = h
        .post_one(1000 + i as u64, input, lie.trace().output().clone())
        .await?;
    let seq = h.sequencer.account();
    let chal = h.challengers[0].account();
    let stake_before = h.stake().await?;
    let burnt_before = h.total_burnt().await?;
    let seq_credit_before = h.credit(seq).await?;

    let checked = bot
        .check_batch(
            posted.batch_id,
            posted.tx,
            posted.commitment.root,
            1,
            posted.block,
        )
        .await?;
    let game_id = match checked.claims.first() {
        Some(ClaimOutcome::Disputed { game_id }) => *game_id,
        other => {
            return Err(Error::Game(format!(
                "the bot did not dispute the wrong claim of batch {}: {other:?}",
                posted.batch_id
            )));
        }
    };
    let stake_after_open = h.stake().await?;
    let bond = defender_bond(h, stake_before);

    let mut defence = GameDriver::new(
        h.sequencer.clone(),
        game_id,
        Arc::new(model.program().clone()),
        model.weights().root(),
        TracePlayer::new(Side::Defender, lie),
        DriverConfig {
            from_block: posted.block,
            ..driver_config()
        },
    )
    .await?;
    let (defended, ended) = both(defence.run(), infallible(bot.finish_games())).await?;
    let end = bot_end(&ended, game_id)?;
    let record = h.game_record(game_id, posted.block).await?;

    let cb = U256::from(h.game_config().challenger_bond);
    let (prize, burnt) = payout(cb, bond, h.game_config().burn_bps);
    let mut checks = vec![
        Check::eq("winner", Side::Challenger, end.winner),
        Check::eq("defender_sees_winner", Side::Challenger, defended.winner),
    ];
    checks.extend(bisection_checks(h, &record, pos, leaf, "one_step_mismatch"));
    checks.extend(
        money_checks_challenger_won(
            h,
            &record,
            Money {
                bond,
                prize,
                burnt,
                stake_before,
                stake_after_open,
                burnt_before,
                seq_credit_before,
            },
            end.withdrawn,
            chal,
        )
        .await?,
    );
    checks.push(Check::eq(
        "claim_invalidated",
        2u8,
        h.claim_state(posted.batch_id, 0).await?,
    ));
    let placed: Placed = Some((pos, leaf));
    case(
        format!("lie at op {} ({}) leaf {leaf}", pos.op, pos.kind),
        placed,
        &record,
        checks,
        started,
    )
}

/// Balances around one game, read before it.
#[derive(Clone, Copy, Debug)]
pub struct Money {
    /// The defender bond the game took.
    pub bond: U256,
    /// What the rules credit the winner.
    pub prize: U256,
    /// What the rules burn.
    pub burnt: U256,
    /// The sequencer's stake before the challenge.
    pub stake_before: U256,
    /// Its stake right after the challenge.
    pub stake_after_open: U256,
    /// `totalBurnt` before the game.
    pub burnt_before: U256,
    /// The sequencer's game credit before the game.
    pub seq_credit_before: U256,
}

/// The checks of a game the challenger `chal` won and withdrew `withdrawn` from: the bond
/// left the stake (slashed), the challenger was paid bond plus defender bond less the burn,
/// the sequencer nothing.
pub async fn money_checks_challenger_won(
    h: &Harness,
    record: &crate::harness::GameRecord,
    m: Money,
    withdrawn: U256,
    chal: alloy::primitives::Address,
) -> Result<Vec<Check>> {
    let r = record
        .resolved
        .as_ref()
        .ok_or_else(|| Error::Game("unresolved".into()))?;
    Ok(vec![
        Check::eq("stake_slashed", m.bond, m.stake_before - m.stake_after_open),
        Check::eq(
            "stake_unchanged_after",
            m.stake_after_open,
            h.stake().await?,
        ),
        Check::eq("challenger_payout", m.prize, r.challenger_payout),
        Check::eq("defender_payout", U256::ZERO, r.defender_payout),
        Check::eq("burnt", m.burnt, r.burnt),
        Check::eq(
            "total_burnt_delta",
            m.burnt,
            h.total_burnt().await? - m.burnt_before,
        ),
        Check::eq("challenger_withdrew", m.prize, withdrawn),
        Check::eq("challenger_credit_left", U256::ZERO, h.credit(chal).await?),
        Check::eq(
            "sequencer_credit",
            m.seq_credit_before,
            h.credit(h.sequencer.account()).await?,
        ),
    ])
}
