//! The sequencer's chain poster against a real anvil with the real contracts: a batch is
//! signed with an explicit nonce, sent (twice: the second send is a no-op), included, and
//! its calldata decodes back to the same claims, inputs and outputs.

mod common;

use alloy::primitives::U256;
use inference::DType;
use inference::commit::tensor_hash;
use inference::import::bert;
use inference::merkle::H256;
use inference::tensor::Tensor;
use sequencer::batching::{BatchPayload, BatchPoster, SendOutcome, TxStatus};
use sequencer::chain::follower::fetch_batch_data;
use sequencer::chain::{
    ChainClient, ChainEvent, ChainPoster, ClientConfig, DeployConfig, EventFollower,
};
use sequencer::claim::{Claim, commit_batch, request_word};
use sequencer::db::tables::{
    BatchRecord, BatchStatus, InputRecord, RequestRecord, RequestStatus, TensorRecord,
};

fn request(id: u64) -> (Claim, RequestRecord) {
    let tokens = vec![101, 2000 + id as u32, 102];
    let input = bert::input(&tokens, 16).unwrap();
    let output = Tensor::from_i8(vec![4], vec![1, -2, 3, id as i8]).unwrap();
    let model_id = H256([9; 32]);
    let claim = Claim {
        request_id: request_word(id),
        model_id,
        input_hash: tensor_hash(&input),
        output_hash: tensor_hash(&output),
    };
    let record = RequestRecord {
        id,
        request_id: claim.request_id,
        on_chain: false,
        status: RequestStatus::Batched,
        model: "minilm".into(),
        model_id,
        input: InputRecord {
            text: None,
            tokens,
            seq_len: 16,
            hash: claim.input_hash,
        },
        output: Some(TensorRecord {
            dtype: DType::I8,
            shape: vec![4],
            data: output.to_le_bytes(),
            hash: claim.output_hash,
        }),
        error: None,
        batch: Some(1),
        accepted_at_ms: 0,
        executed_at_ms: Some(0),
    };
    (claim, record)
}

/// A `ready` batch `id` of `claims`, with their requests (numbered as in `requests`).
fn ready_payload(id: u64, claims: Vec<Claim>, requests: Vec<RequestRecord>) -> BatchPayload {
    BatchPayload {
        batch: BatchRecord {
            id,
            requests: requests.iter().map(|r| r.id).collect(),
            claims_root: commit_batch(&claims).root,
            status: BatchStatus::Ready,
            created_at_ms: 0,
            attempts: 0,
        },
        claims,
        requests,
    }
}

/// Key 1 of `net`, registered as a sequencer, through a client with `config`.
async fn sequencer_client(net: &common::Devnet, config: ClientConfig) -> ChainClient {
    let client = ChainClient::connect(
        &net.anvil.endpoint(),
        net.keys[1].clone(),
        net.deployment.rollup,
        config,
    )
    .await
    .unwrap();
    client
        .register_sequencer(U256::from(DeployConfig::default().min_stake))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poster_signs_sends_and_the_data_decodes_back() {
    let net = common::devnet(&DeployConfig::default()).await;
    let key = |i: usize| net.keys[i].clone();
    let client = sequencer_client(&net, ClientConfig::default()).await;
    let (claims, requests): (Vec<Claim>, Vec<RequestRecord>) = (1..=3).map(request).unzip();
    let payload = ready_payload(1, claims.clone(), requests);
    let poster = ChainPoster::new(client.clone(), key(1)).unwrap();
    let tx = poster.sign(&payload).await.unwrap();
    assert_eq!(poster.status(tx.hash).await.unwrap(), TxStatus::Unknown);
    for _ in 0..2 {
        assert_eq!(poster.send(&tx).await.unwrap(), SendOutcome::Accepted);
    }
    let TxStatus::Included { success, .. } = mined(&poster, tx.hash).await else {
        panic!("not included")
    };
    assert!(success);
    let (events, _) = EventFollower::new(client.clone(), 0, 0)
        .poll()
        .await
        .unwrap();
    let posted = events
        .iter()
        .find_map(|e| match e {
            ChainEvent::BatchPosted { pos, count, .. } => Some((pos.tx, *count)),
            _ => None,
        })
        .unwrap();
    assert_eq!(posted.0.0, tx.hash.0);
    assert_eq!(posted.1, 3);
    let data = fetch_batch_data(&client, posted.0).await.unwrap();
    assert_eq!(data.claims().unwrap(), claims);
}

/// The poster and the game moves share one nonce source per key: a transaction sent between
/// a batch's signing and its sending takes the next nonce instead of the batch's (which
/// would leave the stored batch transaction unminable), and so does one sent by a restarted
/// process told of the stored batch's nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_between_signing_and_sending_takes_the_next_nonce() {
    use alloy::consensus::Transaction as _;
    use alloy::providers::Provider;
    let net = common::devnet(&DeployConfig::default()).await;
    let (anvil, deployment) = (&net.anvil, &net.deployment);
    let key = net.keys[1].clone();
    let endpoint = anvil.endpoint();
    let connect = || {
        ChainClient::connect(
            &endpoint,
            key.clone(),
            deployment.rollup,
            ClientConfig::default(),
        )
    };
    let client = connect().await.unwrap();
    client
        .register_sequencer(U256::from(DeployConfig::default().min_stake))
        .await
        .unwrap();
    let payload = |first: u64| {
        let (claims, requests): (Vec<Claim>, Vec<RequestRecord>) =
            (first..first + 2).map(request).unzip();
        ready_payload(first, claims, requests)
    };
    let nonce_of = |client: &ChainClient, hash: alloy::primitives::B256| {
        let p = client.provider().clone();
        async move {
            p.get_transaction_by_hash(hash)
                .await
                .unwrap()
                .unwrap()
                .nonce()
        }
    };

    // Same process: sign, a stake top-up in between (it waits for its receipt, which needs
    // the batch's nonce mined first), then send.
    for (i, restarted) in [(1u64, false), (10, true)] {
        let client = if restarted {
            // A new process: a fresh client told of the stored transaction's nonce.
            connect().await.unwrap()
        } else {
            client.clone()
        };
        let poster = ChainPoster::new(client.clone(), key.clone()).unwrap();
        let tx = poster.sign(&payload(i)).await.unwrap();
        let client = if restarted {
            let fresh = connect().await.unwrap();
            fresh.note_nonce_taken(tx.nonce).await;
            fresh
        } else {
            client
        };
        let top_up = {
            let c = client.clone();
            tokio::spawn(async move { c.add_stake(U256::from(1)).await })
        };
        // Let the top-up reach the node first (queued behind the batch's nonce, or, with a
        // wrong nonce, mined at once).
        let p = client.provider().clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let pool: serde_json::Value = p.raw_request("txpool_status".into(), ()).await.unwrap();
            let queued = u64::from_str_radix(
                pool["queued"]
                    .as_str()
                    .unwrap_or("0x0")
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap_or(0);
            if queued > 0 || top_up.is_finished() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the top-up was not sent"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        poster.send(&tx).await.unwrap();
        let receipt = top_up.await.unwrap().unwrap();
        let TxStatus::Included { success, .. } = poster.status(tx.hash).await.unwrap() else {
            panic!("the batch transaction is not included (restarted: {restarted})")
        };
        assert!(success);
        assert_eq!(
            nonce_of(&client, receipt.transaction_hash).await,
            tx.nonce + 1,
            "restarted: {restarted}"
        );
    }
}

/// The status of `hash` once it left the mempool: anvil's automine mines a transaction soon
/// after accepting it, not before answering.
async fn mined(poster: &ChainPoster, hash: H256) -> TxStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match poster.status(hash).await.unwrap() {
            TxStatus::Pending | TxStatus::Unknown => {}
            s => return s,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{hash} was never mined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Stores two executed requests and a batch of them, as the sequencer does; returns its id.
fn executed_batch(db: &sequencer::db::SequencerDb) -> u64 {
    use sequencer::db::{Execution, NewRequest};
    let new = |k: u32| {
        let tokens = vec![101, 2000 + k, 102];
        let hash = tensor_hash(&bert::input(&tokens, 16).unwrap());
        NewRequest {
            model: "minilm".into(),
            model_id: H256([9; 32]),
            input: InputRecord {
                text: None,
                tokens,
                seq_len: 16,
                hash,
            },
        }
    };
    let ids = db.accept(vec![new(1), new(2)]).unwrap();
    let executions: Vec<Execution> = ids
        .iter()
        .map(|&id| {
            let output = Tensor::from_i8(vec![4], vec![1, -2, 3, id as i8]).unwrap();
            Execution {
                id,
                request: None,
                output: Ok(TensorRecord {
                    dtype: DType::I8,
                    shape: vec![4],
                    data: output.to_le_bytes(),
                    hash: tensor_hash(&output),
                }),
            }
        })
        .collect();
    db.record_executions(&executions).unwrap();
    db.make_batch(8).unwrap().unwrap().id
}

/// A batch counts as posted only `confirmations` blocks deep: a reorg that drops its block
/// before then (anvil's `evm_revert`) leaves it unposted, and it is sent again and posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_by_a_reorg_before_its_confirmations_is_sent_again() {
    use alloy::providers::Provider;
    use sequencer::batching::{PostSettings, Step, step};
    use sequencer::db::SequencerDb;
    use std::time::Duration;

    let net = common::devnet(&DeployConfig::default()).await;
    // Registered with one confirmation (anvil mines a block per transaction); the poster
    // wants two.
    sequencer_client(&net, ClientConfig::default()).await;
    let client = ChainClient::connect(
        &net.anvil.endpoint(),
        net.keys[1].clone(),
        net.deployment.rollup,
        ClientConfig {
            confirmations: 2,
            poll_interval: Duration::from_millis(50),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let id = executed_batch(&db);
    let p = client.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);
    let poster = ChainPoster::new(client.clone(), net.keys[1].clone()).unwrap();
    let settings = PostSettings {
        poll: Duration::from_millis(10),
        resend_after: Duration::ZERO,
        ..PostSettings::default()
    };
    let advance = || async {
        let batch = db.batch(id).unwrap().unwrap();
        step(&db, &poster, &batch, &settings).await.unwrap()
    };

    let snapshot = rpc("evm_snapshot", serde_json::json!([])).await;
    let Step::Moved(BatchStatus::Signed(tx)) = advance().await else {
        panic!("not signed")
    };
    advance().await;
    // Mined, one block deep of two.
    let TxStatus::Confirming { block } = mined(&poster, tx.hash).await else {
        panic!("not confirming")
    };
    assert_eq!(advance().await, Step::Waiting);

    // The block is reorganized away.
    rpc("evm_revert", serde_json::json!([snapshot])).await;
    assert!(p.get_block_number().await.unwrap() < block);
    assert_eq!(poster.status(tx.hash).await.unwrap(), TxStatus::Unknown);
    // Sent again (the same transaction), mined, and posted once two blocks deep.
    assert_eq!(
        advance().await,
        Step::Moved(BatchStatus::Signed(tx.clone()))
    );
    advance().await;
    assert!(matches!(
        mined(&poster, tx.hash).await,
        TxStatus::Confirming { .. }
    ));
    assert_eq!(advance().await, Step::Waiting);
    rpc("evm_mine", serde_json::json!([])).await;
    let Step::Moved(BatchStatus::Posted { tx_hash, .. }) = advance().await else {
        panic!("not posted")
    };
    assert_eq!(tx_hash, tx.hash);
    assert!(db.unposted_batches().unwrap().is_empty());
}

/// Fee bumps through the posting state machine (real database, real poster, real anvil with
/// mining by hand): a batch transaction left pending past `bump_after` is replaced with the
/// same nonce and fees 1/8 higher; when the base fee then jumps above what the replacement
/// offers, anvil drops it, the re-send is refused for its fees, and a third transaction priced
/// from the new base fee is the one the chain mines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underpriced_batch_transaction_is_replaced_with_higher_fees_and_mined() {
    use alloy::consensus::{Transaction as _, TxEnvelope};
    use alloy::eips::eip2718::Decodable2718;
    use sequencer::batching::{PostSettings, Step, step};
    use sequencer::db::SequencerDb;
    use sequencer::db::tables::SignedTx;
    use std::time::Duration;

    let net = common::devnet(&DeployConfig::default()).await;
    let client = sequencer_client(&net, ClientConfig::default()).await;

    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let id = executed_batch(&db);

    let p = client.provider().clone();
    let rpc = |method, params| common::anvil_rpc(&p, method, params);
    let fees = |tx: &SignedTx| {
        let t = TxEnvelope::decode_2718(&mut tx.raw.as_slice()).unwrap();
        (t.max_fee_per_gas(), t.max_priority_fee_per_gas().unwrap())
    };
    let poster = ChainPoster::new(client.clone(), net.keys[1].clone()).unwrap();
    let settings = PostSettings {
        poll: Duration::from_millis(10),
        bump_after: Duration::ZERO,
        resend_after: Duration::ZERO,
    };
    let advance = || async {
        let batch = db.batch(id).unwrap().unwrap();
        step(&db, &poster, &batch, &settings).await.unwrap()
    };
    let signed = |s: Step| match s {
        Step::Moved(BatchStatus::Signed(tx)) => tx,
        s => panic!("not signed: {s:?}"),
    };
    let sent = |s: Step| assert!(matches!(s, Step::Moved(BatchStatus::Sent { .. })), "{s:?}");
    rpc("evm_setAutomine", serde_json::json!([false])).await;

    // Signed and sent; no block is mined, so it stays pending past `bump_after`: replaced.
    let first = signed(advance().await);
    sent(advance().await);
    assert_eq!(poster.status(first.hash).await.unwrap(), TxStatus::Pending);
    let second = signed(advance().await);
    let ((fee1, tip1), (fee2, tip2)) = (fees(&first), fees(&second));
    assert_eq!(second.nonce, first.nonce);
    assert!(
        fee2 >= fee1 + fee1 / 8 && tip2 >= tip1 + tip1 / 8,
        "{fee2} {tip2}"
    );
    assert_eq!(db.replaced_txs(id).unwrap(), [first.hash]);
    sent(advance().await);

    // The base fee jumps above the replacement's max fee: anvil drops it when it mines the
    // next block, the re-send is refused for its fees, and a third one is signed.
    rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("0x{:x}", fee2 * 4)]),
    )
    .await;
    rpc("evm_mine", serde_json::json!([])).await;
    assert_eq!(poster.status(second.hash).await.unwrap(), TxStatus::Unknown);
    assert_eq!(signed(advance().await), second);
    let third = signed(advance().await);
    let (fee3, _) = fees(&third);
    assert_eq!(third.nonce, first.nonce);
    assert!(fee3 > fee2 * 3, "{fee3} vs {fee2}");
    assert_eq!(db.replaced_txs(id).unwrap(), [first.hash, second.hash]);
    sent(advance().await);
    rpc("evm_mine", serde_json::json!([])).await;

    let TxStatus::Included { block, success } = poster.status(third.hash).await.unwrap() else {
        panic!("the third transaction is not mined")
    };
    assert!(success);
    assert_eq!(
        advance().await,
        Step::Moved(BatchStatus::Posted {
            tx_hash: third.hash,
            block
        })
    );
    for old in [&first, &second] {
        assert_eq!(poster.status(old.hash).await.unwrap(), TxStatus::Unknown);
    }
    assert!(db.replaced_txs(id).unwrap().is_empty());
    assert!(db.unposted_batches().unwrap().is_empty());
}

/// A batch of `n` claims from request `first` on: request `i` has a `seq_len`-token input
/// (`seq_lens` taken in turn) and an output of `out_numel` elements of `dtype`: pseudo-random
/// non-zero bytes for `i8` and `i16` (the costliest calldata), small values for `i32` (three
/// zero bytes of four: the calldata floor of EIP-7623 binds less, execution counts more);
/// all zero with `zero_out` (the calldata's cheapest bytes, so that execution decides).
fn shaped_payload(
    batch: u64,
    first: u64,
    n: u64,
    seq_lens: &[usize],
    (dtype, out_numel, zero_out): (DType, usize, bool),
) -> BatchPayload {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ first;
    let mut byte = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 56) as u8 | 1
    };
    let (claims, requests): (Vec<Claim>, Vec<RequestRecord>) = (first..first + n)
        .map(|id| {
            let seq_len = seq_lens[(id - first) as usize % seq_lens.len()];
            let tokens: Vec<u32> = (0..seq_len as u32)
                .map(|t| 1000 + t * 7 + id as u32)
                .collect();
            let input = bert::input(&tokens, seq_len).unwrap();
            let data: Vec<u8> = (0..out_numel * dtype.size())
                .map(|i| match dtype {
                    _ if zero_out => 0,
                    DType::I32 if i % 4 != 0 => 0,
                    _ => byte(),
                })
                .collect();
            let output = Tensor::from_le_bytes(dtype, vec![out_numel], &data).unwrap();
            let (_, mut record) = request(id);
            let claim = Claim {
                request_id: request_word(id),
                model_id: record.model_id,
                input_hash: tensor_hash(&input),
                output_hash: tensor_hash(&output),
            };
            record.input = InputRecord {
                text: None,
                tokens,
                seq_len: seq_len as u32,
                hash: claim.input_hash,
            };
            record.output = Some(TensorRecord {
                dtype,
                shape: vec![out_numel as u32],
                data,
                hash: claim.output_hash,
            });
            record.batch = Some(batch);
            (claim, record)
        })
        .unzip();
    ready_payload(batch, claims, requests)
}

/// The gas limit and call bytes of a signed batch transaction.
fn gas_and_input(tx: &sequencer::db::tables::SignedTx) -> (u64, Vec<u8>) {
    use alloy::consensus::{Transaction as _, TxEnvelope};
    use alloy::eips::eip2718::Decodable2718;
    let envelope = TxEnvelope::decode_2718(&mut tx.raw.as_slice()).unwrap();
    (envelope.gas_limit(), envelope.input().to_vec())
}

/// Once a batch transaction succeeded, the poster stops asking the node to estimate gas (a
/// search that runs the whole `postBatch` several times) and signs with
/// `post_batch_gas_bound`, which must cover what each batch really uses and stay within
/// twice of it, for every shape of batch: one claim, many, long inputs, wide outputs, mixed
/// buckets. A revert (here: the operator asked its stake back between signing and sending)
/// sends it back to estimating, so the next batch fails at the estimate, with the
/// contract's error, instead of reverting again; and while the free stake is short, the
/// bound is not used at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_success_batches_are_signed_with_a_gas_bound_that_covers_them() {
    use alloy::providers::Provider;
    use sequencer::chain::post_batch_gas_bound;

    let net = common::devnet(&DeployConfig::default()).await;
    let client = sequencer_client(&net, ClientConfig::default()).await;
    let poster = ChainPoster::new(client.clone(), net.keys[1].clone()).unwrap();
    let bound_of = |payload: &BatchPayload, input: &[u8]| {
        post_batch_gas_bound(input, &ChainPoster::batch_data(payload).unwrap())
    };
    let post = |tx: sequencer::db::tables::SignedTx| {
        let (poster, provider) = (poster.clone(), client.provider().clone());
        async move {
            assert_eq!(poster.send(&tx).await.unwrap(), SendOutcome::Accepted);
            let status = mined(&poster, tx.hash).await;
            let receipt = provider
                .get_transaction_receipt(alloy::primitives::B256::from(tx.hash.0))
                .await
                .unwrap()
                .unwrap();
            (status, receipt.gas_used)
        }
    };

    // The first batch: the node's estimate (with its margin), not the bound.
    let first = shaped_payload(1, 1, 3, &[16], (DType::I8, 4, false));
    let tx = poster.sign(&first).await.unwrap();
    let (limit, input) = gas_and_input(&tx);
    assert_ne!(
        limit,
        bound_of(&first, &input),
        "the first batch must be estimated"
    );
    let (status, _) = post(tx).await;
    assert!(matches!(status, TxStatus::Included { success: true, .. }));

    type Output = (DType, usize, bool);
    let shapes: [(u64, &[usize], Output); 7] = [
        (1, &[16], (DType::I8, 1, false)),
        (300, &[1], (DType::I8, 1, false)),
        (64, &[128], (DType::I32, 384, false)),
        (64, &[16, 32, 64, 128], (DType::I16, 384, false)),
        (200, &[16], (DType::I8, 384, false)),
        (3, &[128], (DType::I32, 4096, false)),
        (4, &[128], (DType::I32, 16384, true)),
    ];
    let mut next = 100;
    for (b, (n, seq_lens, out)) in shapes.into_iter().enumerate() {
        let payload = shaped_payload(2 + b as u64, next, n, seq_lens, out);
        let (dtype, out_numel, _) = out;
        next += n;
        let tx = poster.sign(&payload).await.unwrap();
        let (limit, input) = gas_and_input(&tx);
        let bound = bound_of(&payload, &input);
        assert_eq!(limit, bound, "{n} claims: signed with the bound");
        let (status, used) = post(tx).await;
        let zeros = input.iter().filter(|&&b| b == 0).count() as u64;
        let calldata = 4 * zeros + 16 * (input.len() as u64 - zeros);
        let floor = 21_000 + 10 * (zeros + 4 * (input.len() as u64 - zeros));
        let execution = match used > floor {
            true => format!("execution {}", used - 21_000 - calldata),
            false => "the EIP-7623 floor binds".into(),
        };
        eprintln!(
            "{n} claims, {seq_lens:?} tokens, {out_numel} x {dtype:?} out: used {used}, bound {bound} ({:.2}x); {} call bytes, {execution}",
            bound as f64 / used as f64,
            input.len(),
        );
        assert!(
            matches!(status, TxStatus::Included { success: true, .. }),
            "{n} claims: {status:?} (used {used} of {bound})"
        );
        assert!(
            used <= bound && bound <= 2 * used,
            "{n} claims: used {used}, bound {bound}"
        );
    }

    // Signed with the bound while the stake sufficed; its stake is slashed before it is
    // mined (a game resolved against it: simulated by writing the stake's storage word,
    // found as the word of `sequencers[account]` that holds the registered stake).
    let min_stake = DeployConfig::default().min_stake;
    let provider = client.provider().clone();
    let rollup = client.addresses().rollup;
    let mut stake_slot = None;
    for p in 0u64..64 {
        let mut key = [0u8; 64];
        key[12..32].copy_from_slice(client.account().as_slice());
        key[56..64].copy_from_slice(&p.to_be_bytes());
        let slot = alloy::primitives::keccak256(key);
        let word = provider.get_storage_at(rollup, slot.into()).await.unwrap();
        if word == alloy::primitives::U256::from(min_stake) {
            stake_slot = Some(slot);
            break;
        }
    }
    let stake_slot = stake_slot.expect("the stake's storage word");
    let set_stake = |stake: u128| {
        let provider = provider.clone();
        async move {
            provider
                .raw_request::<_, bool>(
                    "anvil_setStorageAt".into(),
                    (
                        rollup,
                        stake_slot,
                        alloy::primitives::B256::from(alloy::primitives::U256::from(stake)),
                    ),
                )
                .await
                .unwrap();
        }
    };
    let payload = shaped_payload(10, next, 2, &[16], (DType::I8, 4, false));
    let tx = poster.sign(&payload).await.unwrap();
    let (limit, input) = gas_and_input(&tx);
    assert_eq!(limit, bound_of(&payload, &input));
    set_stake(0).await;
    let (status, _) = post(tx).await;
    assert!(matches!(status, TxStatus::Included { success: false, .. }));
    // Back to estimating: the estimate fails with the contract's error, nothing is sent.
    let sent = || async {
        client
            .provider()
            .get_transaction_count(client.account())
            .await
            .unwrap()
    };
    let nonce = sent().await;
    let err = poster.sign(&payload).await.unwrap_err().to_string();
    assert!(err.contains("InsufficientStake"), "{err}");
    assert_eq!(sent().await, nonce);

    // The stake back: estimated (and posted) again, then the bound serves again...
    set_stake(min_stake).await;
    let tx = poster.sign(&payload).await.unwrap();
    let (limit, input) = gas_and_input(&tx);
    assert_ne!(limit, bound_of(&payload, &input));
    assert!(matches!(
        post(tx).await.0,
        TxStatus::Included { success: true, .. }
    ));
    let payload = shaped_payload(11, next + 2, 2, &[16], (DType::I8, 4, false));
    // ...until the operator asks its stake back: then the estimate refuses the batch
    // before anything is signed or sent.
    client.request_withdrawal(min_stake).await.unwrap();
    let nonce = sent().await;
    let err = poster.sign(&payload).await.unwrap_err().to_string();
    assert!(err.contains("InsufficientStake"), "{err}");
    assert_eq!(sent().await, nonce);
}
