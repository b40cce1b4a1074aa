//! A transaction that reverts (refused at gas estimation) must not leave a nonce gap: the
//! client's next transaction from the same key confirms. A game driver retries refused
//! moves (a timeout claimed too early), so this is what keeps it from hanging.

mod common;

use alloy::primitives::U256;
use sequencer::chain::{ChainClient, ClientConfig, DeployConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_call_leaves_no_nonce_gap() {
    let net = common::devnet(&DeployConfig::default()).await;
    let config = ClientConfig {
        confirm_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    };
    let client = ChainClient::connect(
        &net.anvil.endpoint(),
        net.keys[1].clone(),
        net.deployment.rollup,
        config,
    )
    .await
    .unwrap();
    // Not a sequencer yet: adding stake reverts, twice.
    for _ in 0..2 {
        assert!(client.add_stake(U256::from(1)).await.is_err());
    }
    // The next transactions confirm.
    let stake = U256::from(DeployConfig::default().min_stake);
    client.register_sequencer(stake).await.unwrap();
    client.add_stake(U256::from(1)).await.unwrap();
}
