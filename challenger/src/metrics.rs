//! Prometheus metrics of the challenger (`challenger_*`, base units, no rates).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Every metric the challenger exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Claims re-executed.
    pub claims_checked: Counter,
    /// Claims skipped by the sampling policy.
    pub claims_skipped: Counter,
    /// Re-executed claims whose output was wrong.
    pub mismatches: Counter,
    /// Claims of models this challenger cannot load.
    pub unknown_models: Counter,
    /// Batches whose data could not be read or did not match their commitment.
    pub bad_batches: Counter,
    /// Games opened by this challenger.
    pub games_opened: Counter,
    /// Games won.
    pub games_won: Counter,
    /// Games lost.
    pub games_lost: Counter,
    /// Games open now.
    pub games_open: Gauge,
    /// Wei posted as challenger bonds.
    pub bonds_posted_wei: Counter<f64, AtomicU64>,
    /// Wei withdrawn as winnings.
    pub winnings_wei: Counter<f64, AtomicU64>,
    /// Blocks between the chain head and the follower's cursor.
    pub lag_blocks: Gauge,
    /// The follower's next block.
    pub cursor_block: Gauge,
}

impl Metrics {
    /// Registers every metric under the `challenger` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("challenger");
        r.register(
            "claims_checked",
            "Claims re-executed",
            self.claims_checked.clone(),
        );
        r.register(
            "claims_skipped",
            "Claims skipped by the sampling policy",
            self.claims_skipped.clone(),
        );
        r.register(
            "mismatches",
            "Re-executed claims with a wrong output",
            self.mismatches.clone(),
        );
        r.register(
            "unknown_models",
            "Claims of models that could not be loaded",
            self.unknown_models.clone(),
        );
        r.register(
            "bad_batches",
            "Batches whose data could not be read or checked",
            self.bad_batches.clone(),
        );
        r.register("games_opened", "Games opened", self.games_opened.clone());
        r.register("games_won", "Games won", self.games_won.clone());
        r.register("games_lost", "Games lost", self.games_lost.clone());
        r.register("games_open", "Games open now", self.games_open.clone());
        r.register(
            "bonds_posted_wei",
            "Wei posted as challenger bonds",
            self.bonds_posted_wei.clone(),
        );
        r.register(
            "winnings_wei",
            "Wei withdrawn as winnings",
            self.winnings_wei.clone(),
        );
        r.register(
            "lag_blocks",
            "Blocks behind the chain head",
            self.lag_blocks.clone(),
        );
        r.register(
            "cursor_block",
            "Next block the follower reads",
            self.cursor_block.clone(),
        );
    }
}
