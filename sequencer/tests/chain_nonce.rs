//! The chain client against anvil. A transaction that reverts (refused at gas estimation)
//! must not leave a nonce gap: the client's next transaction from the same key confirms (a
//! game driver retries refused moves, a timeout claimed too early, so this is what keeps it
//! from hanging). Log scans split into `log_range`-block requests (RPC providers cap the
//! range of `eth_getLogs`) find exactly what one wide request finds. Transactions carry a
//! gas margin over the estimate, and fees that follow the base fee.

mod common;

use alloy::consensus::Transaction as _;
use alloy::primitives::{B256, U256, keccak256};
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

/// A transaction priced out by a rising base fee (anvil drops it from its pool) is sent again
/// with the same nonce and fees raised from the node's new estimate, and `transact` returns
/// the receipt of the one mined: a game move still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_priced_out_by_the_base_fee_is_replaced_with_higher_fees() {
    let net = common::devnet(&DeployConfig::default()).await;
    let (client, stake) = registered(
        &net,
        ClientConfig {
            bump_after: Duration::from_millis(300),
            confirm_timeout: Duration::from_secs(30),
            ..ClientConfig::default()
        },
    )
    .await;
    let p = client.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);
    rpc("evm_setAutomine", serde_json::json!([false])).await;
    let task = {
        let c = client.clone();
        tokio::spawn(async move { c.add_stake(U256::from(1)).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first = pooled_tx(&p).await;
    let hex = |v: &serde_json::Value| {
        u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let first_fee = hex(&first["maxFeePerGas"]);
    let first_hash: B256 = first["hash"].as_str().unwrap().parse().unwrap();

    // The base fee jumps to four times its max fee; the next block drops it.
    rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("0x{:x}", first_fee * 4)]),
    )
    .await;
    rpc("evm_mine", serde_json::json!([])).await;
    let receipt = loop {
        if task.is_finished() {
            break task.await.unwrap().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stake top-up was never mined"
        );
        rpc("evm_mine", serde_json::json!([])).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(receipt.status());
    assert_ne!(receipt.transaction_hash, first_hash);
    // Mined at a base fee the first one's max fee could not pay.
    assert!(receipt.effective_gas_price > first_fee);
    assert!(
        p.get_transaction_receipt(first_hash)
            .await
            .unwrap()
            .is_none()
    );
    let standing = sequencer::node::standing(&client, client.account())
        .await
        .unwrap();
    assert_eq!(standing.stake, stake + U256::from(1));
}

/// The gas of a transaction may rise between its estimate and its block (another
/// transaction zeroed a slot it writes): `transact` gives it a margin, so it is still mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_gas_rose_after_the_estimate_still_succeeds() {
    let net = common::devnet(&DeployConfig::default()).await;
    let (client, stake) = registered(
        &net,
        ClientConfig {
            confirm_timeout: Duration::from_secs(30),
            ..ClientConfig::default()
        },
    )
    .await;
    let p = client.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);

    // The slot that holds the sequencer's stake (the first word of `sequencers[account]`).
    let rollup = net.deployment.rollup;
    let mut slot = None;
    for index in 0u64..64 {
        let mut key = [0u8; 64];
        key[12..32].copy_from_slice(client.account().as_slice());
        key[32..].copy_from_slice(&U256::from(index).to_be_bytes::<32>());
        let at = U256::from_be_bytes(keccak256(key).0);
        if p.get_storage_at(rollup, at).await.unwrap() == stake {
            slot = Some(at);
            break;
        }
    }
    let slot = slot.expect("the stake's storage slot");

    rpc("evm_setAutomine", serde_json::json!([false])).await;
    let task = {
        let c = client.clone();
        tokio::spawn(async move { c.add_stake(U256::from(1)).await })
    };
    let pooled = pooled_tx(&p).await;
    // Estimated with the stake word non-zero (a 2,900-gas update); zeroed before the block,
    // its write costs 20,000.
    let estimate = p
        .estimate_gas(
            alloy::rpc::types::TransactionRequest::default()
                .from(client.account())
                .to(rollup)
                .value(U256::from(1))
                .input(
                    alloy::hex::decode(pooled["input"].as_str().unwrap())
                        .unwrap()
                        .into(),
                ),
        )
        .await
        .unwrap();
    rpc(
        "anvil_setStorageAt",
        serde_json::json!([rollup, slot, B256::ZERO]),
    )
    .await;
    rpc("evm_mine", serde_json::json!([])).await;
    let receipt = task.await.unwrap().unwrap();
    assert!(receipt.status());
    assert!(
        receipt.gas_used > estimate + 10_000,
        "the write from zero cost more than estimated: {} vs {estimate}",
        receipt.gas_used
    );
    assert_eq!(p.get_storage_at(rollup, slot).await.unwrap(), U256::from(1));
}

/// The first transaction in anvil's pool, once there is one.
async fn pooled_tx(p: &alloy::providers::DynProvider) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let content = common::anvil_rpc(p, "txpool_content", serde_json::json!([])).await;
        let pending = content["pending"].as_object().cloned().unwrap_or_default();
        if let Some(tx) = pending
            .values()
            .filter_map(|by_nonce| by_nonce.as_object())
            .flat_map(|m| m.values())
            .next()
        {
            return tx.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no transaction reached the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A transaction that the node refuses for its fees (the base fee is above the operator's
/// fee ceiling) is a temporary error, tried again at each attempt's new estimate: once the
/// base fee falls under the ceiling, it is sent and mined, and never above the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_refused_for_its_fees_is_retried_until_the_base_fee_falls() {
    let net = common::devnet(&DeployConfig::default()).await;
    let endpoint = net.anvil.endpoint();
    let connect = |config: ClientConfig| {
        ChainClient::connect(
            &endpoint,
            net.keys[1].clone(),
            net.deployment.rollup,
            config,
        )
    };
    let plain = connect(ClientConfig::default()).await.unwrap();
    let stake = U256::from(DeployConfig::default().min_stake);
    plain.register_sequencer(stake).await.unwrap();
    let p = plain.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);

    let ceiling: u128 = 2_000_000_000;
    rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("0x{:x}", ceiling * 10)]),
    )
    .await;
    rpc("evm_mine", serde_json::json!([])).await;
    let capped = |attempts| ClientConfig {
        fee_ceiling: Some(ceiling),
        retry_attempts: attempts,
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(50),
        poll_interval: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    // One attempt: refused for its fees, and temporary.
    let once = connect(capped(1)).await.unwrap();
    let refused = once.add_stake(U256::from(1)).await.unwrap_err();
    assert!(refused.is_temporary(), "{refused}");
    assert!(refused.to_string().contains("base fee"), "{refused}");

    let patient = connect(capped(u32::MAX)).await.unwrap();
    let task = tokio::spawn(async move { patient.add_stake(U256::from(1)).await });
    rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("0x{:x}", ceiling / 4)]),
    )
    .await;
    rpc("evm_mine", serde_json::json!([])).await;
    let receipt = task.await.unwrap().unwrap();
    assert!(receipt.status());
    assert!(receipt.effective_gas_price <= ceiling);
    let standing = sequencer::node::standing(&plain, plain.account())
        .await
        .unwrap();
    assert_eq!(standing.stake, stake + U256::from(1));
}

/// Key 1's client (`config`, polling every 50 ms), registered as a
/// sequencer with the minimum stake, and that stake.
async fn registered(net: &common::Devnet, config: ClientConfig) -> (ChainClient, U256) {
    let client = ChainClient::connect(
        &net.anvil.endpoint(),
        net.keys[1].clone(),
        net.deployment.rollup,
        ClientConfig {
            poll_interval: Duration::from_millis(50),
            ..config
        },
    )
    .await
    .unwrap();
    let stake = U256::from(DeployConfig::default().min_stake);
    client.register_sequencer(stake).await.unwrap();
    (client, stake)
}

/// A transaction `transact` gave up waiting for (`NotConfirmed`) does not hold the key up:
/// the next transaction takes its nonce with higher fees and replaces it, instead of
/// queueing behind it (where both would be mined once it was, or neither ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_transaction_replaces_one_given_up_on() {
    let net = common::devnet(&DeployConfig::default()).await;
    let (client, stake) = registered(
        &net,
        ClientConfig {
            confirm_timeout: Duration::from_millis(300),
            bump_after: Duration::from_secs(60),
            ..ClientConfig::default()
        },
    )
    .await;
    let p = client.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);
    rpc("evm_setAutomine", serde_json::json!([false])).await;
    let given_up = client.add_stake(U256::from(1)).await.unwrap_err();
    let sequencer::chain::ChainError::NotConfirmed { tx: first, .. } = given_up else {
        panic!("expected NotConfirmed, got {given_up}");
    };
    let nonce = p
        .get_transaction_by_hash(first)
        .await
        .unwrap()
        .expect("the first transaction is in the pool")
        .nonce();

    let task = {
        let c = client.clone();
        tokio::spawn(async move { c.add_stake(U256::from(2)).await })
    };
    // The replacement takes the pool's place of the first one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pooled = pooled_tx(&p).await;
        if pooled["hash"].as_str().unwrap().parse::<B256>().unwrap() != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first transaction was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rpc("evm_mine", serde_json::json!([])).await;
    let receipt = task.await.unwrap().unwrap();
    assert!(receipt.status());
    let mined = p
        .get_transaction_by_hash(receipt.transaction_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mined.nonce(), nonce);
    assert!(p.get_transaction_receipt(first).await.unwrap().is_none());
    let standing = sequencer::node::standing(&client, client.account())
        .await
        .unwrap();
    assert_eq!(standing.stake, stake + U256::from(2));
}
