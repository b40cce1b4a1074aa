//! The real `sequencer` binary on a real anvil with the real contracts and MiniLM:
//!
//! 1. `sequencer chain deploy`, `register-model` (twice: the second reports every bucket as
//!    already registered) and `stake`, all through the binary;
//! 2. `sequencer run` refuses to start with an unregistered key, naming the command that
//!    fixes it;
//! 3. with `[chain]` flags, HTTP requests and on-chain `requestInference` calls from another
//!    account are executed and posted: each exactly once in the rollup's batches, under its
//!    id (HTTP: `keccak256(abi.encode(sequencer, localId))`; on-chain: the rollup's), with
//!    the output the CPU engine computes from the posted input;
//! 4. `kill -9` while HTTP and on-chain requests are in flight, restart on the same
//!    database: every acknowledged or mined request is posted exactly once (and the one
//!    whose answer the kill cut off, if it was committed before, once too);
//! 5. a lying challenger disputes one of its claims: the binary defends it by itself, wins,
//!    and withdraws its payout;
//! 6. `/metrics` shows the chain metrics.
//!
//! Skipped (with a message) without `models/minilm`, a failure when `REQUIRE_MODELS=1`.

mod common;

use alloy::primitives::{Address, B256, Bytes, U256};
use bisection::{Belief, Fault, Side, TracePlayer};
use common::{Node, get, get_json, infer, minilm_dir, wait_for};
use inference::commit::tensor_hash;
use inference::import::bert::Family;
use inference::merkle::H256;
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::program::encode_type;
use inference::tokenize::TextTokenizer;
use sequencer::chain::bindings::InferenceRollup;
use sequencer::chain::driver::DriverConfig;
use sequencer::chain::follower::fetch_batch_data;
use sequencer::chain::{
    BatchData, ChainClient, ChainEvent, ClientConfig, EventFollower, GameDriver, to_h256,
};
use sequencer::claim::{commit_batch, http_request_id};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ETHER: u128 = 1_000_000_000_000_000_000;

/// Runs `sequencer ARGS` to completion: exit success, stdout, stderr.
fn sequencer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sequencer"))
        .args(args)
        .output()
        .expect("running the sequencer binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sequencer ARGS`, which must succeed, and parses its stdout as JSON.
fn sequencer_json(args: &[&str]) -> Value {
    let (ok, out, err) = sequencer(args);
    assert!(ok, "sequencer {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn key_hex(k: &alloy::signers::local::PrivateKeySigner) -> String {
    format!("0x{}", hex::encode(k.to_bytes()))
}

/// The value of a metric line `name` (with its labels, if any) in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every batch the sequencer `seq` posted so far: batch id -> data.
struct Posted {
    follower: EventFollower,
    client: ChainClient,
    seq: Address,
    batches: BTreeMap<u64, BatchData>,
}

impl Posted {
    async fn poll(&mut self) {
        loop {
            let before = self.follower.next_block();
            let (events, _) = self.follower.poll().await.unwrap();
            for e in events {
                if let ChainEvent::BatchPosted {
                    pos,
                    batch_id,
                    sequencer,
                    ..
                } = e
                    && sequencer == self.seq
                {
                    let data = fetch_batch_data(&self.client, pos.tx).await.unwrap();
                    self.batches.insert(batch_id, data);
                }
            }
            if self.follower.next_block() == before {
                return;
            }
        }
    }

    /// How many times each request id was posted.
    fn counts(&self) -> HashMap<H256, usize> {
        let mut counts = HashMap::new();
        for data in self.batches.values() {
            for e in &data.entries {
                *counts.entry(e.request_id).or_default() += 1;
            }
        }
        counts
    }

    /// Waits until every id of `ids` is posted.
    async fn wait_all(&mut self, ids: &[H256], limit: Duration) {
        let start = Instant::now();
        loop {
            self.poll().await;
            let counts = self.counts();
            let missing: Vec<_> = ids.iter().filter(|id| !counts.contains_key(id)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{} requests not posted after {limit:?}: {missing:?}",
                missing.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends `requestInference` for `tokens` on `model` from `client`; returns the request id.
async fn request_on_chain(client: &ChainClient, model: &Model, tokens: &[u32]) -> H256 {
    let seq_len = model.program().input.shape[1];
    let x = inference::import::bert::input(tokens, seq_len).unwrap();
    let call = InferenceRollup::requestInferenceCall {
        modelId_: B256::from(model.id().0),
        inputType_: Bytes::from(encode_type(&model.program().input).unwrap()),
        inputData_: Bytes::from(x.to_le_bytes()),
    };
    let receipt = client
        .transact(
            "requestInference",
            client.addresses().rollup,
            &call,
            U256::from(1_000u64),
        )
        .await
        .unwrap();
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<InferenceRollup::InferenceRequested>().ok())
        .map(|l| to_h256(l.inner.data.requestId))
        .expect("InferenceRequested in the receipt")
}

fn load(dir: &Path) -> Model {
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    Model::from_bytes(
        &read(PROGRAM_FILE),
        &read(WEIGHTS_FILE),
        &read(MANIFEST_FILE),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_serves_posts_survives_kill_9_and_defends_on_anvil() {
    let Some(family_dir) = minilm_dir() else {
        return;
    };
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let anvil = alloy::node_bindings::Anvil::at(root.join("contracts/node_modules/.bin/anvil"))
        .try_spawn()
        .expect("anvil (run `make setup`)");
    let url = anvil.endpoint();
    let keys: Vec<alloy::signers::local::PrivateKeySigner> =
        anvil.keys().iter().cloned().map(Into::into).collect();
    let (deployer, seq_key, requester_key, challenger_key) = (
        key_hex(&keys[0]),
        key_hex(&keys[1]),
        keys[2].clone(),
        keys[3].clone(),
    );
    let seq_addr = keys[1].address();

    // 1. Deploy, register the model family (twice), stake: through the binary.
    let d = sequencer_json(&[
        "chain",
        "deploy",
        "--chain.rpc-url",
        &url,
        "--chain.key",
        &deployer,
        "--min-stake",
        &(10 * ETHER).to_string(),
        "--clock-seconds",
        "3600",
        "--challenger-bond",
        &ETHER.to_string(),
        "--defender-bond",
        &(2 * ETHER).to_string(),
    ]);
    let rollup = d["rollup"].as_str().unwrap().to_string();
    let dir_arg = family_dir.to_str().unwrap();
    let reg = |what: &str| {
        let r = sequencer_json(&[
            "chain",
            "register-model",
            "--json",
            "--chain.rpc-url",
            &url,
            "--chain.key",
            &deployer,
            "--chain.rollup",
            &rollup,
            "--model.dir",
            dir_arg,
        ]);
        let buckets = r["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 4, "{r}");
        for b in buckets {
            assert_eq!(b["status"], what, "{r}");
        }
    };
    reg("registered");
    reg("already registered");

    // 2. An unregistered key is refused at start, with the command that fixes it.
    let db = tempfile::tempdir().unwrap();
    let key_file = db.path().join("sequencer.key");
    std::fs::write(&key_file, &seq_key).unwrap();
    let db_path = db.path().join("db");
    let chain_flags = |poll: &'static str| -> Vec<String> {
        [
            "--chain.rpc-url",
            &url,
            "--chain.rollup",
            &rollup,
            "--chain.key-file",
            key_file.to_str().unwrap(),
            "--chain.poll-interval",
            poll,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut refused_args = vec![
        "run".to_string(),
        "--db.path".into(),
        db_path.to_str().unwrap().into(),
        "--model.dir".into(),
        dir_arg.into(),
    ];
    refused_args.extend(chain_flags("100ms"));
    let refused: Vec<&str> = refused_args.iter().map(String::as_str).collect();
    let (ok, _, err) = sequencer(&refused);
    assert!(!ok);
    assert!(
        err.contains("not a registered sequencer") && err.contains("sequencer chain stake"),
        "{err}"
    );
    assert!(!err.contains(&seq_key[2..]), "the key is never printed");

    let s = sequencer_json(&[
        "chain",
        "stake",
        "--json",
        "--chain.rpc-url",
        &url,
        "--chain.key",
        &seq_key,
        "--chain.rollup",
        &rollup,
        "--amount",
        &(20 * ETHER).to_string(),
    ]);
    assert_eq!(s["action"], "registered", "{s}");
    assert_eq!(s["stakeWei"], (20 * ETHER).to_string());

    // 3. Run with [chain]: HTTP and on-chain requests are served and posted.
    let mut flags = vec![
        "--batch.max-size".to_string(),
        "4".into(),
        "--batch.max-age".into(),
        "300ms".into(),
        "--exec.threads".into(),
        "2".into(),
    ];
    flags.extend(chain_flags("100ms"));
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut node = Node::start(&db_path, &family_dir, &flag_refs);

    let index = Family::from_json(&std::fs::read(family_dir.join("family.json")).unwrap()).unwrap();
    let seq16 = Arc::new(load(&family_dir.join(&index.buckets[0].dir)));
    let tok = TextTokenizer::from_json(
        &std::fs::read(
            family_dir
                .join(&index.buckets[0].dir)
                .join("tokenizer.json"),
        )
        .unwrap(),
        16,
    )
    .unwrap();
    let cc = ClientConfig {
        poll_interval: Duration::from_millis(20),
        ..ClientConfig::default()
    };
    let rollup_addr: Address = rollup.parse().unwrap();
    let requester = ChainClient::connect(&url, requester_key, rollup_addr, cc.clone())
        .await
        .unwrap();
    let mut posted = Posted {
        follower: EventFollower::new(requester.clone(), 0, 0),
        client: requester.clone(),
        seq: seq_addr,
        batches: BTreeMap::new(),
    };

    // Every request that must be posted: its id -> (HTTP local number, if any).
    let mut expected: BTreeMap<H256, Option<u64>> = BTreeMap::new();
    for i in 0..3 {
        let (status, r) = infer(
            &node.url,
            &json!({"model": "minilm", "text": format!("http request {i} to a chained sequencer"), "wait": false}),
        );
        assert_eq!(status, 202, "{r}");
        let id = r["id"].as_u64().unwrap();
        let rid: H256 = r["requestId"].as_str().unwrap().parse().unwrap();
        assert_eq!(rid, http_request_id(seq_addr.into_array(), id));
        expected.insert(rid, Some(id));
    }
    for i in 0..2u32 {
        let tokens = tok.encode(&format!("on-chain request {i}")).unwrap();
        expected.insert(request_on_chain(&requester, &seq16, &tokens).await, None);
    }
    let ids: Vec<H256> = expected.keys().copied().collect();
    posted.wait_all(&ids, Duration::from_secs(60)).await;
    // An on-chain request is found by its 32-byte id too.
    let onchain_id = expected.iter().find(|(_, v)| v.is_none()).unwrap().0;
    let (status, r) = get_json(&node.url, &format!("/v1/requests/{onchain_id}"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["onChain"], true);
    eprintln!("[{:?}] first requests posted", started.elapsed());

    // 4. kill -9 with HTTP and on-chain requests in flight, then restart.
    let acked: Arc<Mutex<Vec<H256>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The sender returns the text of the request whose answer the kill cut off, if any.
    let sender = {
        let (url, acked, stop) = (node.url.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            for k in 0..12 {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                let text = format!("in flight {k}");
                let (status, r) = infer(
                    &url,
                    &json!({"model": "minilm", "text": text, "wait": false}),
                );
                match status {
                    202 => acked
                        .lock()
                        .unwrap()
                        .push(r["requestId"].as_str().unwrap().parse().unwrap()),
                    0 => return Some(text),
                    other => panic!("unexpected status {other}: {r}"),
                }
            }
            None
        })
    };
    let mut in_flight = Vec::new();
    for i in 0..2u32 {
        let tokens = tok.encode(&format!("on-chain in flight {i}")).unwrap();
        in_flight.push(request_on_chain(&requester, &seq16, &tokens).await);
    }
    wait_for(
        Duration::from_secs(30),
        "some acknowledged requests",
        || acked.lock().unwrap().len() >= 4,
    );
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    let unanswered_text = sender.join().unwrap();
    // Requested while the sequencer is down: picked up after the restart.
    let tokens = tok.encode("on-chain while down").unwrap();
    in_flight.push(request_on_chain(&requester, &seq16, &tokens).await);
    let node = Node::start(&db_path, &family_dir, &flag_refs);
    for id in acked.lock().unwrap().iter().chain(&in_flight) {
        expected.insert(*id, None);
    }
    let ids: Vec<H256> = expected.keys().copied().collect();
    posted.wait_all(&ids, Duration::from_secs(60)).await;
    eprintln!(
        "[{:?}] {} requests posted across the crash",
        started.elapsed(),
        ids.len()
    );

    // Each exactly once, with the CPU engine's output for the posted input.
    let counts = posted.counts();
    for (id, n) in &counts {
        assert_eq!(*n, 1, "request {id} posted {n} times");
    }
    let mut unanswered = 0;
    let mut models: HashMap<H256, Model> = HashMap::new();
    for data in posted.batches.values() {
        for e in &data.entries {
            if !expected.contains_key(&e.request_id) {
                // The request whose answer the kill cut off may have been committed before
                // the kill: then it is served like any other, once (counted above).
                // Anything else posted is a request nobody made.
                let (status, r) = get_json(&node.url, &format!("/v1/requests/{}", e.request_id));
                assert_eq!(status, 200, "unexpected request {}: {r}", e.request_id);
                assert!(
                    unanswered_text.is_some()
                        && r["input"]["text"].as_str() == unanswered_text.as_deref()
                        && r["onChain"] == false,
                    "unexpected request {}: {r}",
                    e.request_id
                );
                unanswered += 1;
            }
            let model = models.entry(e.model_id).or_insert_with(|| {
                let b = index
                    .buckets
                    .iter()
                    .find(|b| b.model_id == e.model_id)
                    .expect("a bucket of the family");
                load(&family_dir.join(&b.dir))
            });
            let out = inference::trace::run(model.program(), model.weights(), &e.input).unwrap();
            assert_eq!(
                tensor_hash(&out),
                tensor_hash(&e.output),
                "request {}",
                e.request_id
            );
        }
    }

    assert!(
        unanswered <= 1,
        "the unanswered request posted under {unanswered} ids"
    );

    // 5. A lying challenger disputes an HTTP claim; the binary defends it to victory.
    let (&batch_id, data, index_in_batch) = posted
        .batches
        .iter()
        .find_map(|(id, data)| {
            data.entries
                .iter()
                .position(|e| e.model_id == seq16.id())
                .map(|i| (id, data, i))
        })
        .expect("a posted seq16 claim");
    let claims = data.claims().unwrap();
    let proof = commit_batch(&claims).proofs[index_in_batch].clone();
    let challenger = ChainClient::connect(&url, challenger_key, rollup_addr, cc)
        .await
        .unwrap();
    let (game_id, _) = challenger
        .challenge(
            batch_id,
            index_in_batch as u64,
            &claims[index_in_batch],
            &proof,
        )
        .await
        .unwrap();
    let x = data.entries[index_in_batch].input.clone();
    let lie = Belief::with_fault(
        seq16.program(),
        seq16.weights(),
        &x,
        Fault {
            op: 120,
            leaf: 3,
            propagate: true,
        },
    )
    .unwrap();
    let mut attacker = GameDriver::new(
        challenger.clone(),
        game_id,
        Arc::new(seq16.program().clone()),
        seq16.weights().root(),
        TracePlayer::new(Side::Challenger, lie),
        DriverConfig {
            poll_interval: Duration::from_millis(50),
            ..DriverConfig::default()
        },
    )
    .await
    .unwrap();
    let end = attacker.run().await.unwrap();
    assert_eq!(end.winner, Side::Defender, "the honest sequencer wins");
    assert_eq!(
        challenger
            .claim_state(batch_id, index_in_batch as u64)
            .await
            .unwrap(),
        0,
        "the claim stays valid (pending its window)"
    );
    // The binary withdraws its payout: bond back plus half the challenger's.
    let start = Instant::now();
    loop {
        let page = get(&node.url, "/metrics").1;
        if metric(&page, "sequencer_games_total{result=\"won\"}") == 1.0
            && challenger.games_credit(seq_addr).await.unwrap().is_zero()
            && metric(&page, "sequencer_game_withdrawn_wei_total") > 0.0
        {
            assert_eq!(
                metric(&page, "sequencer_game_withdrawn_wei_total"),
                (2 * ETHER + ETHER / 2) as f64
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sequencer did not withdraw its winnings:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "[{:?}] game {game_id} won ({} moves)",
        started.elapsed(),
        end.moves
    );

    // 6. The chain metrics of the restarted process.
    let page = get(&node.url, "/metrics").1;
    assert!(
        metric(&page, "sequencer_batches_posted_total") >= 1.0,
        "{page}"
    );
    assert!(
        metric(&page, "sequencer_gas_spent_total{purpose=\"post\"}") > 0.0,
        "{page}"
    );
    assert!(
        metric(&page, "sequencer_gas_spent_total{purpose=\"game\"}") > 0.0,
        "{page}"
    );
    assert!(
        metric(&page, "sequencer_onchain_requests_total") >= 1.0,
        "{page}"
    );
    assert_eq!(metric(&page, "sequencer_games_open"), 0.0, "{page}");
    // The stake metric follows the chain (`sequencer chain status`).
    let status = sequencer_json(&[
        "chain",
        "status",
        "--json",
        "--chain.rpc-url",
        &url,
        "--chain.key",
        &seq_key,
        "--chain.rollup",
        &rollup,
    ]);
    assert_eq!(status["registered"], true, "{status}");
    assert!(
        status["batchesPosted"].as_u64().unwrap() >= posted.batches.len() as u64,
        "{status}"
    );
    assert_eq!(status["gamesWon"], 1, "{status}");
    assert_eq!(status["gamesOpen"], 0, "{status}");
    let stake: f64 = status["stakeWei"].as_str().unwrap().parse().unwrap();
    wait_for(Duration::from_secs(30), "the stake metric", || {
        metric(&get(&node.url, "/metrics").1, "sequencer_stake_wei") == stake
    });
    eprintln!("[{:?}] done", started.elapsed());
}

/// The follower's filter on real MiniLM buckets: an on-chain request is served only for a
/// served model, with that bucket's input type, an input hashing to the event's hash and
/// in the encoder's form; the tokens it runs are the ones asked for.
#[test]
fn on_chain_inputs_map_to_their_bucket_or_are_refused() {
    use sequencer::node::{Refusal, resolve_request};
    let Some(family_dir) = minilm_dir() else {
        return;
    };
    let models =
        sequencer::execution::ModelRegistry::load(std::slice::from_ref(&family_dir)).unwrap();
    let buckets = &models.families()[0].buckets;
    let (m16, m32) = (&buckets[0].model, &buckets[1].model);
    let tokens = [101u32, 7592, 2088, 102];
    let x = inference::import::bert::input(&tokens, 16).unwrap();
    let ty16 = encode_type(&m16.program().input).unwrap();
    let ty32 = encode_type(&m32.program().input).unwrap();
    let data = x.to_le_bytes();

    let (request, model, tensor) =
        resolve_request(&models, m16.id(), tensor_hash(&x), &ty16, &data).unwrap();
    assert_eq!(request.input.tokens, tokens);
    assert_eq!(request.input.seq_len, 16);
    assert_eq!(request.model_id, m16.id());
    assert_eq!(model.id(), m16.id());
    assert_eq!(tensor_hash(&tensor), tensor_hash(&x));

    let refused = |model_id: H256, hash: H256, ty: &[u8], data: &[u8]| {
        resolve_request(&models, model_id, hash, ty, data).unwrap_err()
    };
    assert_eq!(
        refused(H256([7; 32]), tensor_hash(&x), &ty16, &data),
        Refusal::UnknownModel(H256([7; 32]))
    );
    // The seq16 input sent for the seq32 bucket: the type does not match.
    assert_eq!(
        refused(m32.id(), tensor_hash(&x), &ty16, &data).reason(),
        "bad_input"
    );
    // The right type, data of another length.
    assert_eq!(
        refused(m32.id(), tensor_hash(&x), &ty32, &data).reason(),
        "bad_input"
    );
    // An input hash that is not the data's.
    assert_eq!(
        refused(m16.id(), H256([1; 32]), &ty16, &data).reason(),
        "bad_input"
    );
    // A well-typed tensor that is no encoder input (a hole in the mask).
    let mut v: Vec<i32> = x.to_i64_vec().iter().map(|&e| e as i32).collect();
    v[16 + 1] = 0;
    let holed = inference::Tensor::from_i32(vec![2, 16], v).unwrap();
    assert_eq!(
        refused(m16.id(), tensor_hash(&holed), &ty16, &holed.to_le_bytes()).reason(),
        "bad_input"
    );
}
