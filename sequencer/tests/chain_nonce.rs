//! The chain client against anvil. A transaction that reverts (refused at gas estimation)
//! must not leave a nonce gap: the client's next transaction from the same key confirms (a
//! game driver retries refused moves, a timeout claimed too early, so this is what keeps it
//! from hanging). Log scans split into `log_range`-block requests (RPC providers cap the
//! range of `eth_getLogs`) find exactly what one wide request finds.

mod common;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_log_scans_find_what_one_wide_request_finds() {
    let net = common::devnet(&DeployConfig::default()).await;
    let url = net.anvil.endpoint();
    let connect = |log_range: u64| {
        ChainClient::connect(
            &url,
            net.keys[1].clone(),
            net.deployment.rollup,
            ClientConfig {
                log_range,
                ..ClientConfig::default()
            },
        )
    };
    // Rollup events in several blocks (anvil mines one block per transaction).
    let client = connect(ClientConfig::default().log_range).await.unwrap();
    let stake = U256::from(DeployConfig::default().min_stake);
    client.register_sequencer(stake).await.unwrap();
    for _ in 0..4 {
        client.add_stake(U256::from(1)).await.unwrap();
    }
    let filter = Filter::new().address(net.deployment.rollup);
    let all = client
        .provider()
        .get_logs(&filter.clone().from_block(0))
        .await
        .unwrap();
    assert!(all.len() >= 5, "{} rollup logs", all.len());
    let head = client.head().await.unwrap();
    let from = all[2].block_number.unwrap();
    let later: Vec<_> = all
        .iter()
        .filter(|l| l.block_number.unwrap() >= from)
        .cloned()
        .collect();
    for range in [1, 2, 3, 7] {
        let c = connect(range).await.unwrap();
        assert_eq!(
            c.logs("logs", &filter, 0, None).await.unwrap(),
            all,
            "range {range}"
        );
        assert_eq!(
            c.logs("logs", &filter, from, Some(head)).await.unwrap(),
            later,
            "range {range}"
        );
        assert_eq!(
            c.first_log("first", &filter, 0).await.unwrap().as_ref(),
            all.first(),
            "range {range}"
        );
        assert_eq!(
            c.first_log(
                "first",
                &filter.clone().event_signature(B256::repeat_byte(7)),
                0
            )
            .await
            .unwrap(),
            None,
            "range {range}"
        );
    }
}
