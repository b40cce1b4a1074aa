//! The devnet: a real anvil with the contracts and the MiniLM program (the [`Harness`]), the
//! example consumer contract, and the real `sequencer` and `challenger` binaries as processes
//! ([`crate::procs`]). [`Devnet`] holds the pieces and the operations scenarios compose
//! (requests over HTTP and from the consumer, following posted batches, waiting out the
//! challenge window, settling, reading outputs through the consumer, a lying restart);
//! [`run`] is `e2e devnet`: honest traffic, then one fraud that the challenger must win, with
//! a readable summary.
//!
//! Every claim is checked against the CPU engine re-executing its input here, and every
//! output the consumer reads is compared with the engine's bytes.

use crate::harness::{
    ETHER, GameRecord, Harness, HarnessOptions, default_anvil, reason_name, workspace_root,
};
use crate::procs::{Proc, locate_binary, log_field, wait_until};
use crate::report::Check;
use crate::{Error, Result};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::sol_types::SolEvent;
use base64::Engine as _;
use bisection::Side;
use contracts::bindings::InferenceConsumer;
use inference::merkle::H256;
use inference::program::encode_type;
use inference::tensor::Tensor;
use sequencer::chain::BatchEntry;
use sequencer::chain::bindings::InferenceRollup;
use sequencer::chain::follower::fetch_batch_data;
use sequencer::chain::{to_b256, to_h256};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Short sentences (all within MiniLM's 16-token bucket, the registered model).
pub const TEXTS: &[&str] = &[
    "a cat sits on the mat",
    "the rollup settles inference claims",
    "fraud proofs keep sequencers honest",
    "rain is expected tomorrow morning",
    "she plays the violin every evening",
    "the market closed higher today",
    "bisection finds the first wrong op",
    "a dog chased the ball in the park",
    "coffee tastes better in the morning",
    "the train to paris leaves at noon",
    "integer kernels match the solidity ones",
    "the challenger re-executes every claim",
];

/// How long any single wait of the devnet may take.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// What the devnet runs.
#[derive(Clone, Debug)]
pub struct DevnetOptions {
    /// The MiniLM family directory the sequencer serves (its `seq16` bucket is registered).
    pub family_dir: PathBuf,
    /// Requests sent over HTTP in the honest phase.
    pub http_requests: usize,
    /// Requests sent from the consumer contract in the honest phase.
    pub chain_requests: usize,
    /// Whether to run the fraud phase.
    pub fraud: bool,
    /// The op (1-based) at which the lying sequencer departs from the truth (`None`: the
    /// middle op of the program).
    pub lie_op: Option<u32>,
    /// The 32-byte leaf of that op's output it changes.
    pub lie_leaf: u32,
    /// Claims per batch.
    pub batch_max_size: usize,
    /// Age at which a partial batch closes, in milliseconds.
    pub batch_max_age_ms: u64,
    /// Fee of an on-chain request, in wei.
    pub fee: u128,
    /// Challenge window, in seconds (waited out with `evm_increaseTime`).
    pub challenge_window: u64,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            family_dir: workspace_root().join("models/minilm"),
            http_requests: 4,
            chain_requests: 2,
            fraud: true,
            lie_op: None,
            lie_leaf: 0,
            batch_max_size: 4,
            batch_max_age_ms: 300,
            fee: ETHER / 100,
            challenge_window: 3600,
        }
    }
}

/// Whether the family directory holds the prepared model (`make models`).
pub fn model_present(opts: &DevnetOptions) -> bool {
    crate::harness::model_present(&opts.family_dir.join("seq16"))
}

/// A request answered over HTTP.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The sequencer's request number.
    pub id: u64,
    /// The claim's request id word.
    pub request_id: H256,
    /// The output bytes it returned, if it waited for them.
    pub output: Option<Vec<u8>>,
}

/// A request asked by the consumer contract.
#[derive(Clone, Debug)]
pub struct ChainRequest {
    /// The rollup's request id.
    pub request_id: H256,
    /// Gas of the consumer's `ask` transaction.
    pub gas: u64,
}

/// One claim found in a posted batch.
#[derive(Clone, Debug)]
pub struct PostedClaim {
    /// The batch.
    pub batch_id: u64,
    /// The claim's index in it.
    pub index: u64,
    /// The entry (claim, input, output) from the batch's calldata.
    pub entry: BatchEntry,
    /// The claim.
    pub claim: sequencer::claim::Claim,
    /// Its inclusion proof (siblings bottom-up).
    pub proof: Vec<H256>,
}

/// A posted batch as the chain shows it.
#[derive(Clone, Debug)]
pub struct BatchInfo {
    /// The batch id.
    pub batch_id: u64,
    /// Claims in it.
    pub count: u32,
    /// Gas of its `postBatch`.
    pub gas: u64,
    /// Its block.
    pub block: u64,
}

/// The running devnet. Dropping it kills the processes, then anvil.
pub struct Devnet {
    /// The `sequencer run` process, when running.
    pub sequencer: Option<Proc>,
    /// The `challenger run` process, when running.
    pub challenger: Option<Proc>,
    /// The sequencer's HTTP base URL (`http://127.0.0.1:PORT`), once started.
    pub sequencer_url: String,
    /// The challenger's metrics address.
    pub challenger_metrics: String,
    /// anvil, contracts, model, accounts.
    pub harness: Harness,
    /// The example consumer contract.
    pub consumer: Address,
    /// The options.
    pub opts: DevnetOptions,
    sequencer_bin: PathBuf,
    challenger_bin: PathBuf,
    work: tempfile::TempDir,
    batches: BTreeMap<u64, (BatchInfo, Vec<PostedClaim>)>,
    /// Drops last: the harness's clients need it until then.
    rt: tokio::runtime::Runtime,
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

fn chain(op: &'static str) -> impl Fn(alloy::contract::Error) -> Error {
    move |e| Error::Chain(sequencer::chain::client::classify_contract(op, &e))
}

fn pending(op: &'static str) -> impl Fn(alloy::providers::PendingTransactionError) -> Error {
    move |e| setup(format!("{op}: {e}"))
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT_LIMIT))
        .build()
        .into()
}

fn parse_h256(v: &serde_json::Value, what: &str) -> Result<H256> {
    let s = v.as_str().ok_or_else(|| setup(format!("{what} missing")))?;
    let b: B256 = s.parse().map_err(|e| setup(format!("{what} {s:?}: {e}")))?;
    Ok(to_h256(b))
}

impl Devnet {
    /// Starts anvil, deploys and registers MiniLM's 16-token bucket (`file://` URI), stakes the
    /// sequencer account and deploys the consumer contract. No process runs yet.
    pub fn start(opts: DevnetOptions) -> Result<Self> {
        let sequencer_bin = locate_binary("sequencer").map_err(setup)?;
        let challenger_bin = locate_binary("challenger").map_err(setup)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(setup)?;
        let harness = rt.block_on(Harness::start(&HarnessOptions {
            model_dir: opts.family_dir.join("seq16"),
            anvil: default_anvil(),
            challenge_window: opts.challenge_window,
            challengers: 1,
            ..HarnessOptions::default()
        }))?;
        let model_id = to_b256(harness.model.id());
        let consumer = rt.block_on(async {
            let c = InferenceConsumer::deploy(
                harness.deployer.clone(),
                harness.deployment.rollup,
                model_id,
            )
            .await
            .map_err(chain("deploy consumer"))?;
            Ok::<_, Error>(*c.address())
        })?;
        let work = tempfile::Builder::new()
            .prefix("fpml-devnet-")
            .tempdir()
            .map_err(setup)?;
        Ok(Self {
            sequencer: None,
            challenger: None,
            sequencer_url: String::new(),
            challenger_metrics: String::new(),
            harness,
            consumer,
            opts,
            sequencer_bin,
            challenger_bin,
            work,
            batches: BTreeMap::new(),
            rt,
        })
    }

    /// The scratch directory (databases, logs).
    pub fn work_dir(&self) -> PathBuf {
        self.work.path().to_path_buf()
    }

    /// Keeps the scratch directory after the devnet stops (for `--keep-running`).
    pub fn keep_work_dir(&mut self) -> PathBuf {
        let dir = self.work.path().to_path_buf();
        self.work.disable_cleanup(true);
        dir
    }

    /// Runs `f` on the devnet's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The program's op count (for choosing a lie).
    pub fn n_ops(&self) -> u32 {
        self.harness.model.program().ops.len() as u32
    }

    /// The op the lying sequencer departs at.
    pub fn lie_op(&self) -> u32 {
        self.opts.lie_op.unwrap_or(self.n_ops() / 2).max(1)
    }

    /// Starts `sequencer run` against the chain (same database across restarts); with `lie`,
    /// `--dev.lie-op OP --dev.lie-leaf LEAF`. Waits until it listens and is ready.
    pub fn start_sequencer(&mut self, lie: Option<(u32, u32)>) -> Result<()> {
        let key = hex_key(&self.harness.keys()[1]);
        let mut args: Vec<String> = [
            "run",
            "--http.addr",
            "127.0.0.1:0",
            "--log.filter",
            "info",
            "--exec.threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--db.path".into());
        args.push(self.work.path().join("sequencer-db").display().to_string());
        args.push("--model.dir".into());
        args.push(self.opts.family_dir.display().to_string());
        args.push("--batch.max-size".into());
        args.push(self.opts.batch_max_size.to_string());
        args.push("--batch.max-age".into());
        args.push(format!("{}ms", self.opts.batch_max_age_ms));
        args.push("--chain.rpc-url".into());
        args.push(self.harness.url.clone());
        args.push("--chain.rollup".into());
        args.push(self.harness.deployment.rollup.to_string());
        args.push("--chain.key".into());
        args.push(key);
        args.push("--chain.poll-interval".into());
        args.push("100ms".into());
        if let Some((op, leaf)) = lie {
            args.push("--dev.lie-op".into());
            args.push(op.to_string());
            args.push("--dev.lie-leaf".into());
            args.push(leaf.to_string());
        }
        let log = self.work.path().join("sequencer.log");
        let name = if lie.is_some() {
            "sequencer (lying)"
        } else {
            "sequencer"
        };
        let mut p = Proc::spawn(name, &self.sequencer_bin, &args, &log).map_err(setup)?;
        // A restarted process appends to the same log: only a line printed after this start
        // counts, so look for the newest `listening` line.
        let line = p
            .wait_line("its listen address", WAIT_LIMIT, |l| {
                l.contains("listening") && l.contains("addr=")
            })
            .map_err(setup)?;
        let addr = log_field(&line, "addr")
            .ok_or_else(|| setup(format!("no addr in {line:?}")))?
            .to_string();
        let url = format!("http://{addr}");
        let agent = http_agent();
        wait_until("the sequencer's /readyz", WAIT_LIMIT, || {
            p.check_alive("readiness").map_err(|e| e.to_string())?;
            Ok::<_, String>(
                agent
                    .get(format!("{url}/readyz"))
                    .call()
                    .is_ok_and(|r| r.status().as_u16() == 200),
            )
        })
        .map_err(setup)?;
        self.sequencer_url = url;
        self.sequencer = Some(p);
        Ok(())
    }

    /// `kill -9` of the sequencer (no shutdown, no flush).
    pub fn kill_sequencer(&mut self) {
        if let Some(mut p) = self.sequencer.take() {
            p.kill9();
        }
    }

    /// Starts `challenger run` from block 0, models from their registered `file://` URI, and
    /// waits until it follows the rollup.
    pub fn start_challenger(&mut self) -> Result<()> {
        let port = free_port()?;
        self.challenger_metrics = format!("127.0.0.1:{port}");
        let args: Vec<String> = vec![
            "run".into(),
            "--rpc-url".into(),
            self.harness.url.clone(),
            "--rollup".into(),
            self.harness.deployment.rollup.to_string(),
            "--key".into(),
            hex_key(&self.harness.keys()[2]),
            "--chain.start-block".into(),
            "0".into(),
            "--chain.poll-ms".into(),
            "100".into(),
            "--db.path".into(),
            self.work.path().join("challenger-db").display().to_string(),
            "--metrics.addr".into(),
            self.challenger_metrics.clone(),
        ];
        let log = self.work.path().join("challenger.log");
        let mut p = Proc::spawn("challenger", &self.challenger_bin, &args, &log).map_err(setup)?;
        p.wait_line("following the rollup", WAIT_LIMIT, |l| {
            l.contains("following")
        })
        .map_err(setup)?;
        self.challenger = Some(p);
        Ok(())
    }

    /// POSTs `text` to `/v1/inference`; with `wait`, until its output is there.
    pub fn http_infer(&self, text: &str, wait: bool) -> Result<HttpRequest> {
        let body = serde_json::json!({ "model": "minilm", "text": text, "wait": wait });
        let resp = http_agent()
            .post(format!("{}/v1/inference", self.sequencer_url))
            .content_type("application/json")
            .send(body.to_string());
        let (status, text_body) = match resp {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => return Err(setup(format!("POST /v1/inference: {e}"))),
        };
        if status != 200 && status != 202 {
            return Err(setup(format!(
                "POST /v1/inference answered {status}: {text_body}"
            )));
        }
        let v: serde_json::Value = serde_json::from_str(&text_body)
            .map_err(|e| setup(format!("response {text_body:?}: {e}")))?;
        let output = match v["output"]["data"].as_str() {
            Some(b64) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| setup(format!("output data: {e}")))?,
            ),
            None => None,
        };
        Ok(HttpRequest {
            id: v["id"]
                .as_u64()
                .ok_or_else(|| setup(format!("no id in {text_body}")))?,
            request_id: parse_h256(&v["requestId"], "requestId")?,
            output,
        })
    }

    /// The model input of `text` (the registered 16-token bucket).
    pub fn input(&self, text: &str) -> Result<Tensor> {
        self.harness.input(text)
    }

    /// The consumer asks the rollup for an inference on `text`, paying the fee.
    pub fn ask_onchain(&self, text: &str) -> Result<ChainRequest> {
        let input = self.input(text)?;
        let ty = encode_type(&input.ty()).map_err(setup)?;
        let data = input.to_le_bytes();
        let consumer = InferenceConsumer::new(self.consumer, self.harness.deployer.clone());
        let receipt = self.rt.block_on(async {
            consumer
                .ask(Bytes::from(ty), Bytes::from(data))
                .value(U256::from(self.opts.fee))
                .send()
                .await
                .map_err(chain("consumer.ask"))?
                .get_receipt()
                .await
                .map_err(pending("consumer.ask"))
        })?;
        let asked = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<InferenceConsumer::InferenceAsked>().ok())
            .ok_or_else(|| setup("consumer.ask: no InferenceAsked event"))?;
        Ok(ChainRequest {
            request_id: to_h256(asked.inner.data.requestId),
            gas: receipt.gas_used,
        })
    }

    /// Reads every batch posted since the last call (calldata decoded, commitment checked,
    /// proofs built) and returns all batches known.
    pub fn refresh_batches(&mut self) -> Result<&BTreeMap<u64, (BatchInfo, Vec<PostedClaim>)>> {
        let next = self.batches.keys().next_back().map_or(1, |b| b + 1);
        let client = self.harness.sequencer.clone();
        let rollup = self.harness.deployment.rollup;
        let found = self.rt.block_on(async {
            let filter = Filter::new()
                .address(rollup)
                .event_signature(InferenceRollup::BatchPosted::SIGNATURE_HASH)
                .from_block(0);
            let logs = client
                .provider()
                .get_logs(&filter)
                .await
                .map_err(|e| setup(format!("getLogs BatchPosted: {e}")))?;
            let mut out = Vec::new();
            for log in logs {
                let ev = InferenceRollup::BatchPosted::decode_log(&log.inner)
                    .map_err(|e| setup(format!("BatchPosted: {e}")))?;
                let batch_id: u64 = ev.batchId.to();
                if batch_id < next {
                    continue;
                }
                let tx = log
                    .transaction_hash
                    .ok_or_else(|| setup("BatchPosted without a transaction"))?;
                let data = fetch_batch_data(&client, tx).await?;
                let (claims, commitment) =
                    data.check_commitment(to_h256(ev.claimsRoot), ev.count)?;
                let receipt: TransactionReceipt = client
                    .provider()
                    .get_transaction_receipt(tx)
                    .await
                    .map_err(|e| setup(format!("receipt {tx}: {e}")))?
                    .ok_or_else(|| setup(format!("no receipt for {tx}")))?;
                let info = BatchInfo {
                    batch_id,
                    count: ev.count,
                    gas: receipt.gas_used,
                    block: log.block_number.unwrap_or_default(),
                };
                let posted = data
                    .entries
                    .into_iter()
                    .zip(claims)
                    .zip(commitment.proofs)
                    .enumerate()
                    .map(|(i, ((entry, claim), proof))| PostedClaim {
                        batch_id,
                        index: i as u64,
                        entry,
                        claim,
                        proof: proof.siblings,
                    })
                    .collect::<Vec<_>>();
                out.push((info, posted));
            }
            Ok::<_, Error>(out)
        })?;
        for (info, posted) in found {
            self.batches.insert(info.batch_id, (info, posted));
        }
        Ok(&self.batches)
    }

    /// Every posted claim of request `request_id` (more than one would be a double post).
    pub fn posted(&self, request_id: H256) -> Vec<PostedClaim> {
        self.batches
            .values()
            .flat_map(|(_, cs)| cs.iter())
            .filter(|c| c.claim.request_id == request_id)
            .cloned()
            .collect()
    }

    /// Batches known so far.
    pub fn batches(&self) -> Vec<BatchInfo> {
        self.batches.values().map(|(b, _)| b.clone()).collect()
    }

    /// Waits until every one of `ids` is in a posted batch.
    pub fn wait_posted(&mut self, ids: &[H256]) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            self.refresh_batches()?;
            let missing = ids.iter().filter(|id| self.posted(**id).is_empty()).count();
            if missing == 0 {
                return Ok(());
            }
            if let Some(p) = self.sequencer.as_mut() {
                p.check_alive("its batches").map_err(setup)?;
            }
            if start.elapsed() > WAIT_LIMIT {
                return Err(setup(format!(
                    "{missing} of {} requests not posted after {WAIT_LIMIT:?}",
                    ids.len()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(300));
        }
    }

    /// The CPU engine's output bytes for `entry`'s input.
    pub fn cpu_output(&self, entry: &BatchEntry) -> Result<Vec<u8>> {
        let model = &self.harness.model;
        let out = inference::trace::run(model.program(), model.weights(), &entry.input)
            .map_err(|e| setup(format!("CPU engine: {e}")))?;
        Ok(out.to_le_bytes())
    }

    /// Moves chain time past the challenge window and mines.
    pub fn wait_out_window(&self) -> Result<()> {
        self.rt
            .block_on(self.harness.advance_time(self.opts.challenge_window + 1))
    }

    /// How claim `index` of `batch` stands: 0 pending, 1 final, 2 invalidated.
    pub fn claim_state(&self, batch: u64, index: u64) -> Result<u8> {
        self.rt.block_on(self.harness.claim_state(batch, index))
    }

    /// Settles an on-chain request with its final claim (anyone may); the rollup calls the
    /// consumer back. Returns the gas of `settle` (callback included) and whether the callback
    /// succeeded.
    pub fn settle(&self, c: &PostedClaim) -> Result<(u64, bool)> {
        let r = InferenceRollup::new(
            self.harness.deployment.rollup,
            self.harness.deployer.clone(),
        );
        let out_ty = encode_type(&c.entry.output.ty()).map_err(setup)?;
        let receipt = self.rt.block_on(async {
            r.settle(
                U256::from(c.batch_id),
                U256::from(c.index),
                rollup_claim(&c.claim),
                c.proof.iter().map(|h| to_b256(*h)).collect(),
                Bytes::from(out_ty),
                Bytes::from(c.entry.output.to_le_bytes()),
            )
            .send()
            .await
            .map_err(chain("rollup.settle"))?
            .get_receipt()
            .await
            .map_err(pending("rollup.settle"))
        })?;
        let ok = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<InferenceRollup::CallbackResult>().ok())
            .is_some_and(|e| e.inner.data.success);
        Ok((receipt.gas_used, ok))
    }

    /// The consumer reads the output of a final claim by claim and proof (a transaction, so
    /// it records the digest). Returns its gas.
    pub fn read_final(&self, c: &PostedClaim) -> Result<u64> {
        let consumer = InferenceConsumer::new(self.consumer, self.harness.deployer.clone());
        let out_ty = encode_type(&c.entry.output.ty()).map_err(setup)?;
        let receipt = self.rt.block_on(async {
            consumer
                .readFinalOutput(
                    U256::from(c.batch_id),
                    U256::from(c.index),
                    consumer_claim(&c.claim),
                    c.proof.iter().map(|h| to_b256(*h)).collect(),
                    Bytes::from(out_ty),
                    Bytes::from(c.entry.output.to_le_bytes()),
                )
                .send()
                .await
                .map_err(chain("consumer.readFinalOutput"))?
                .get_receipt()
                .await
                .map_err(pending("consumer.readFinalOutput"))
        })?;
        Ok(receipt.gas_used)
    }

    /// What the consumer recorded for its request `id`: (settled, output digest).
    pub fn consumer_result(&self, id: H256) -> Result<(bool, B256)> {
        let consumer = InferenceConsumer::new(self.consumer, self.harness.deployer.clone());
        self.rt.block_on(async {
            let r = consumer
                .results(to_b256(id))
                .call()
                .await
                .map_err(chain("consumer.results"))?;
            Ok((r.settled, r.outputDigest))
        })
    }

    /// The digest the consumer recorded when reading request `id`'s output by claim.
    pub fn consumer_read_digest(&self, id: H256) -> Result<B256> {
        let consumer = InferenceConsumer::new(self.consumer, self.harness.deployer.clone());
        self.rt.block_on(async {
            consumer
                .readDigests(to_b256(id))
                .call()
                .await
                .map_err(chain("consumer.readDigests"))
        })
    }

    /// The game opened against claim `index` of `batch`, if any, with the block it opened in.
    pub fn game_of(&self, batch: u64, index: u64) -> Result<Option<(U256, u64)>> {
        let client = &self.harness.sequencer;
        let filter = Filter::new()
            .address(self.harness.deployment.rollup)
            .event_signature(InferenceRollup::ClaimChallenged::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(batch)))
            .topic2(B256::from(U256::from(index)))
            .from_block(0);
        let logs = self
            .rt
            .block_on(client.provider().get_logs(&filter))
            .map_err(|e| setup(format!("getLogs ClaimChallenged: {e}")))?;
        Ok(logs.first().and_then(|l| {
            InferenceRollup::ClaimChallenged::decode_log(&l.inner)
                .ok()
                .map(|e| (e.gameId, l.block_number.unwrap_or_default()))
        }))
    }

    /// Waits until game `game_id` resolves. If the side to move stays silent for a whole
    /// `stall` while the other is up, moves time past the clock once so that the
    /// waiting side can claim the timeout (said in the returned flag).
    pub fn wait_game(&self, game_id: U256, from_block: u64) -> Result<(GameRecord, bool)> {
        let start = Instant::now();
        let stall = Duration::from_secs(30);
        let mut last = (None, u32::MAX);
        let mut last_change = Instant::now();
        let mut advanced = false;
        loop {
            let record = self
                .rt
                .block_on(self.harness.game_record(game_id, from_block))?;
            if record.resolved.is_some() {
                return Ok((record, advanced));
            }
            let turn = self.rt.block_on(self.harness.game_turn(game_id))?;
            if turn != last {
                last = turn;
                last_change = Instant::now();
            } else if !advanced && last_change.elapsed() > stall {
                let clock = self.harness.game_config().clock_seconds;
                self.rt.block_on(self.harness.advance_time(clock + 1))?;
                advanced = true;
            }
            if start.elapsed() > WAIT_LIMIT * 2 {
                return Err(Error::Game(format!(
                    "game {game_id} unresolved after {:?} (turn {:?}, {} moves)",
                    start.elapsed(),
                    last.0,
                    last.1
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `0x`-prefixed hex of a private key, as the binaries take it.
fn hex_key(k: &alloy::signers::local::PrivateKeySigner) -> String {
    format!("0x{}", alloy::hex::encode(k.to_bytes()))
}

/// A free loopback port (bound, read, released).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup)?;
    Ok(l.local_addr().map_err(setup)?.port())
}

fn rollup_claim(c: &sequencer::claim::Claim) -> InferenceRollup::Claim {
    InferenceRollup::Claim {
        requestId: to_b256(c.request_id),
        modelId: to_b256(c.model_id),
        inputHash: to_b256(c.input_hash),
        outputHash: to_b256(c.output_hash),
    }
}

fn consumer_claim(c: &sequencer::claim::Claim) -> InferenceConsumer::Claim {
    InferenceConsumer::Claim {
        requestId: to_b256(c.request_id),
        modelId: to_b256(c.model_id),
        inputHash: to_b256(c.input_hash),
        outputHash: to_b256(c.output_hash),
    }
}

/// Gas figures of the honest phase (receipts' `gasUsed`, averaged).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GasSummary {
    /// The consumer's `ask` (requestInference included).
    pub consumer_ask: u64,
    /// `settle` with the consumer's callback.
    pub settle_with_callback: u64,
    /// The consumer's `readFinalOutput` (claim, proof, output checked).
    pub read_final_output: u64,
    /// `postBatch`, per batch.
    pub post_batch: u64,
}

/// The fraud phase.
#[derive(Clone, Debug, Serialize)]
pub struct FraudSummary {
    /// Op and leaf the lying sequencer departs at.
    pub lie_op: u32,
    /// The leaf.
    pub lie_leaf: u32,
    /// The lying claim: batch and index.
    pub batch: u64,
    /// Its index.
    pub index: u64,
    /// The game.
    pub game_id: u64,
    /// Who won.
    pub winner: String,
    /// Why.
    pub reason: String,
    /// Moves on chain (the one-step included).
    pub moves: u32,
    /// Bisection rounds.
    pub rounds: u32,
    /// Gas of every transaction of the game.
    pub total_gas: u64,
    /// Gas of the one-step.
    pub one_step_gas: Option<u64>,
    /// The bonds (wei).
    pub challenger_bond: String,
    /// The defender's bond (wei).
    pub defender_bond: String,
    /// Paid to the challenger (wei).
    pub challenger_payout: String,
    /// Paid to the defender (wei).
    pub defender_payout: String,
    /// Burnt (wei).
    pub burnt: String,
    /// The claim's state after the game (`invalidated` expected).
    pub claim_state: String,
    /// Whether chain time had to be moved for a timeout.
    pub time_advanced: bool,
    /// Seconds from the lying request to the game's resolution.
    pub seconds: f64,
}

/// What `e2e devnet` prints.
#[derive(Clone, Debug, Serialize)]
pub struct DevnetSummary {
    /// Whether every check held.
    pub passed: bool,
    /// anvil's RPC URL.
    pub rpc_url: String,
    /// The sequencer's HTTP URL.
    pub sequencer_url: String,
    /// The challenger's metrics address.
    pub challenger_metrics: String,
    /// Contract addresses.
    pub rollup: String,
    /// The dispute games.
    pub games: String,
    /// The consumer.
    pub consumer: String,
    /// The registered model id.
    pub model_id: String,
    /// Requests over HTTP.
    pub http_requests: usize,
    /// Requests from the consumer contract.
    pub chain_requests: usize,
    /// Batches posted.
    pub batches: usize,
    /// Claims final and matching the CPU engine.
    pub claims_final: usize,
    /// On-chain requests settled, with the consumer called back with the engine's bytes.
    pub settled_by_callback: usize,
    /// HTTP requests whose output the consumer read by claim and proof.
    pub read_by_claim: usize,
    /// Gas.
    pub gas: GasSummary,
    /// The fraud phase, if run.
    pub fraud: Option<FraudSummary>,
    /// Every check.
    pub checks: Vec<Check>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Logs and databases.
    pub work_dir: String,
}

impl DevnetSummary {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<34} {v}\n"));
        s.push_str(&format!(
            "devnet: {} in {:.1} s\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.seconds
        ));
        row(&mut s, "anvil", self.rpc_url.clone());
        row(&mut s, "sequencer", self.sequencer_url.clone());
        row(
            &mut s,
            "challenger metrics",
            format!("http://{}/metrics", self.challenger_metrics),
        );
        row(
            &mut s,
            "rollup / games",
            format!("{} / {}", self.rollup, self.games),
        );
        row(&mut s, "consumer", self.consumer.clone());
        row(&mut s, "model (MiniLM seq16)", self.model_id.clone());
        row(
            &mut s,
            "requests http / contract",
            format!("{} / {}", self.http_requests, self.chain_requests),
        );
        row(&mut s, "batches posted", self.batches.to_string());
        row(
            &mut s,
            "claims final = CPU engine",
            self.claims_final.to_string(),
        );
        row(
            &mut s,
            "settled, consumer called back",
            self.settled_by_callback.to_string(),
        );
        row(
            &mut s,
            "read by the consumer (claim+proof)",
            self.read_by_claim.to_string(),
        );
        row(
            &mut s,
            "gas: consumer ask",
            self.gas.consumer_ask.to_string(),
        );
        row(
            &mut s,
            "gas: settle + callback",
            self.gas.settle_with_callback.to_string(),
        );
        row(
            &mut s,
            "gas: readFinalOutput",
            self.gas.read_final_output.to_string(),
        );
        row(
            &mut s,
            "gas: postBatch (per batch)",
            self.gas.post_batch.to_string(),
        );
        if let Some(f) = &self.fraud {
            row(
                &mut s,
                "fraud: lie at op / leaf",
                format!("{} / {}", f.lie_op, f.lie_leaf),
            );
            row(
                &mut s,
                "fraud: claim (batch, index)",
                format!("({}, {}) -> {}", f.batch, f.index, f.claim_state),
            );
            row(
                &mut s,
                "fraud: game",
                format!("{} won by the {} ({})", f.game_id, f.winner, f.reason),
            );
            row(
                &mut s,
                "fraud: moves / rounds",
                format!("{} / {}", f.moves, f.rounds),
            );
            row(
                &mut s,
                "fraud: game gas (one-step)",
                format!(
                    "{} ({})",
                    f.total_gas,
                    f.one_step_gas.map_or("-".into(), |g| g.to_string())
                ),
            );
            row(
                &mut s,
                "fraud: bonds challenger / defender",
                format!("{} / {} wei", f.challenger_bond, f.defender_bond),
            );
            row(
                &mut s,
                "fraud: payout challenger / defender",
                format!("{} / {} wei", f.challenger_payout, f.defender_payout),
            );
            row(&mut s, "fraud: burnt", format!("{} wei", f.burnt));
            row(
                &mut s,
                "fraud: seconds to resolution",
                format!("{:.1}", f.seconds),
            );
        }
        let ok = self.checks.iter().filter(|c| c.passed).count();
        row(
            &mut s,
            "checks passed",
            format!("{ok} of {}", self.checks.len()),
        );
        for c in self.checks.iter().filter(|c| !c.passed) {
            s.push_str(&format!("  FAILED {}: {}\n", c.name, c.detail));
        }
        row(&mut s, "logs and databases", self.work_dir.clone());
        s
    }
}

/// The honest phase's results.
#[derive(Clone, Debug, Default)]
pub struct HonestOutcome {
    /// Per request: label, request id, checks, gas of its settle or read.
    pub requests: Vec<(String, H256, Vec<Check>, u64)>,
    /// Gas averages.
    pub gas: GasSummary,
    /// Claims final and equal to the engine.
    pub claims_final: usize,
    /// On-chain requests settled with the engine's bytes called back.
    pub settled_by_callback: usize,
    /// HTTP outputs read by the consumer with the engine's bytes.
    pub read_by_claim: usize,
}

fn avg(v: &[u64]) -> u64 {
    if v.is_empty() {
        0
    } else {
        v.iter().sum::<u64>() / v.len() as u64
    }
}

/// Sends `http` requests over HTTP and `onchain` from the consumer, waits for all to be
/// posted, checks each claim against the CPU engine, waits out the window, settles the
/// consumer's requests (callback) and has the consumer read the HTTP ones by claim; every
/// output the consumer holds is compared with the engine's bytes.
pub fn honest_phase(d: &mut Devnet, http: usize, onchain: usize) -> Result<HonestOutcome> {
    let mut out = HonestOutcome::default();
    let mut http_reqs = Vec::new();
    let mut chain_reqs = Vec::new();
    let mut ask_gas = Vec::new();
    for i in 0..http.max(onchain) {
        if i < onchain {
            let r = d.ask_onchain(TEXTS[(i + 5) % TEXTS.len()])?;
            ask_gas.push(r.gas);
            chain_reqs.push(r);
        }
        if i < http {
            http_reqs.push(d.http_infer(TEXTS[i % TEXTS.len()], true)?);
        }
    }
    let ids: Vec<H256> = http_reqs
        .iter()
        .map(|r| r.request_id)
        .chain(chain_reqs.iter().map(|r| r.request_id))
        .collect();
    d.wait_posted(&ids)?;
    d.wait_out_window()?;
    let (mut settle_gas, mut read_gas) = (Vec::new(), Vec::new());
    let labelled = http_reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("http request {}", r.id), r.request_id, Some(i)))
        .chain(
            chain_reqs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("consumer request {i}"), r.request_id, None)),
        )
        .collect::<Vec<_>>();
    for (label, id, http_index) in labelled {
        let posted = d.posted(id);
        let mut checks = vec![Check::eq("posted_once", 1, posted.len())];
        let Some(c) = posted.first() else {
            out.requests.push((label, id, checks, 0));
            continue;
        };
        let cpu = d.cpu_output(&c.entry)?;
        let claimed = c.entry.output.to_le_bytes();
        checks.push(Check::holds(
            "claim_equals_cpu_engine",
            claimed == cpu,
            format!("{} output bytes", cpu.len()),
        ));
        let state = d.claim_state(c.batch_id, c.index)?;
        checks.push(Check::eq("claim_final", 1, state));
        if claimed == cpu && state == 1 {
            out.claims_final += 1;
        }
        let digest = keccak256(&cpu);
        let gas;
        if let Some(i) = http_index {
            if let Some(bytes) = &http_reqs[i].output {
                checks.push(Check::holds(
                    "http_output_equals_cpu_engine",
                    *bytes == cpu,
                    format!("{} bytes", bytes.len()),
                ));
            }
            gas = d.read_final(c)?;
            read_gas.push(gas);
            let read = d.consumer_read_digest(id)?;
            checks.push(Check::eq("consumer_read_equals_cpu_engine", digest, read));
            if read == digest {
                out.read_by_claim += 1;
            }
        } else {
            let (g, ok) = d.settle(c)?;
            gas = g;
            settle_gas.push(g);
            checks.push(Check::holds("callback_succeeded", ok, "CallbackResult"));
            let (settled, got) = d.consumer_result(id)?;
            checks.push(Check::holds(
                "consumer_called_back_with_cpu_output",
                settled && got == digest,
                format!("settled {settled}, digest {got} vs engine {digest}"),
            ));
            if settled && got == digest {
                out.settled_by_callback += 1;
            }
        }
        out.requests.push((label, id, checks, gas));
    }
    out.gas = GasSummary {
        consumer_ask: avg(&ask_gas),
        settle_with_callback: avg(&settle_gas),
        read_final_output: avg(&read_gas),
        post_batch: avg(&d.batches().iter().map(|b| b.gas).collect::<Vec<_>>()),
    };
    Ok(out)
}

/// Restarts the sequencer lying at `op`/`leaf`, sends one request and waits until the
/// challenger's game against its claim resolves.
pub fn fraud_phase(d: &mut Devnet, op: u32, leaf: u32) -> Result<(FraudSummary, Vec<Check>)> {
    let started = Instant::now();
    d.kill_sequencer();
    d.start_sequencer(Some((op, leaf)))?;
    let req = d.http_infer("the liar posts a wrong embedding", true)?;
    d.wait_posted(&[req.request_id])?;
    let c = d
        .posted(req.request_id)
        .into_iter()
        .next()
        .ok_or_else(|| setup("the lying claim vanished"))?;
    let cpu = d.cpu_output(&c.entry)?;
    let mut checks = vec![Check::holds(
        "lying_claim_differs_from_cpu_engine",
        c.entry.output.to_le_bytes() != cpu,
        format!("claim ({}, {})", c.batch_id, c.index),
    )];
    let mut game = None;
    wait_until("the challenger to open a game", WAIT_LIMIT, || {
        if let Some(p) = d.challenger.as_ref()
            && p.saw(|l| l.contains("error") && l.contains("fatal"))
        {
            return Err(p.tail(10));
        }
        game = d.game_of(c.batch_id, c.index).map_err(|e| e.to_string())?;
        Ok(game.is_some())
    })
    .map_err(Error::Game)?;
    let (game_id, opened_block) = game.ok_or_else(|| Error::Game("no game".into()))?;
    let (record, advanced) = d.wait_game(game_id, opened_block)?;
    let res = record
        .resolved
        .clone()
        .ok_or_else(|| Error::Game("unresolved".into()))?;
    // The rollup learns the result in the same transaction.
    let state = d.claim_state(c.batch_id, c.index)?;
    checks.push(Check::eq("challenger_won", Side::Challenger, res.winner));
    checks.push(Check::eq("claim_invalidated", 2, state));
    checks.push(Check::holds(
        "challenger_paid",
        res.challenger_payout > U256::ZERO,
        format!("{} wei", res.challenger_payout),
    ));
    let g = d.harness.game_config();
    let summary = FraudSummary {
        lie_op: op,
        lie_leaf: leaf,
        batch: c.batch_id,
        index: c.index,
        game_id: game_id.to(),
        winner: match res.winner {
            Side::Challenger => "challenger".into(),
            Side::Defender => "sequencer".into(),
        },
        reason: reason_name(res.reason).into(),
        moves: record.moves,
        rounds: record.rounds,
        total_gas: record.total_gas,
        one_step_gas: record.one_step_gas,
        challenger_bond: g.challenger_bond.to_string(),
        defender_bond: g.defender_bond.to_string(),
        challenger_payout: res.challenger_payout.to_string(),
        defender_payout: res.defender_payout.to_string(),
        burnt: res.burnt.to_string(),
        claim_state: match state {
            0 => "pending",
            1 => "final",
            _ => "invalidated",
        }
        .into(),
        time_advanced: advanced,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((summary, checks))
}

/// `e2e devnet`: starts everything, runs the honest phase and (if asked) the fraud phase,
/// and returns the devnet (still running) with its summary.
pub fn run(opts: DevnetOptions) -> Result<(Devnet, DevnetSummary)> {
    let started = Instant::now();
    let (http, onchain, fraud) = (opts.http_requests, opts.chain_requests, opts.fraud);
    let mut d = Devnet::start(opts)?;
    d.start_sequencer(None)?;
    d.start_challenger()?;
    let honest = honest_phase(&mut d, http, onchain)?;
    let mut checks: Vec<Check> = honest
        .requests
        .iter()
        .flat_map(|(label, _, cs, _)| {
            cs.iter().map(move |c| Check {
                name: format!("{label}: {}", c.name),
                ..c.clone()
            })
        })
        .collect();
    checks.push(challenger_checked(&d, http + onchain));
    checks.push(Check::holds(
        "challenger_disputed_nothing_honest",
        d.challenger
            .as_ref()
            .is_some_and(|p| !p.saw(|l| l.contains("game opened"))),
        "no game opened in the honest phase",
    ));
    let fraud_summary = if fraud {
        let (op, leaf) = (d.lie_op(), d.opts.lie_leaf);
        let (f, cs) = fraud_phase(&mut d, op, leaf)?;
        checks.extend(cs);
        Some(f)
    } else {
        None
    };
    let passed = checks.iter().all(|c| c.passed);
    if !passed {
        // Leave the logs and databases for a reader.
        d.keep_work_dir();
    }
    let summary = DevnetSummary {
        passed,
        rpc_url: d.harness.url.clone(),
        sequencer_url: d.sequencer_url.clone(),
        challenger_metrics: d.challenger_metrics.clone(),
        rollup: d.harness.deployment.rollup.to_string(),
        games: d.harness.deployment.games.to_string(),
        consumer: d.consumer.to_string(),
        model_id: format!("{}", d.harness.model.id()),
        http_requests: http,
        chain_requests: onchain,
        batches: d.batches().len(),
        claims_final: honest.claims_final,
        settled_by_callback: honest.settled_by_callback,
        read_by_claim: honest.read_by_claim,
        gas: honest.gas,
        fraud: fraud_summary,
        checks,
        seconds: started.elapsed().as_secs_f64(),
        work_dir: d.work_dir().display().to_string(),
    };
    Ok((d, summary))
}

/// Checks over the claims of all posted batches: no request id posted twice.
pub fn no_doubles(d: &Devnet) -> Check {
    let mut seen: BTreeMap<H256, usize> = BTreeMap::new();
    for (_, cs) in d.batches.values() {
        for c in cs {
            *seen.entry(c.claim.request_id).or_default() += 1;
        }
    }
    let doubled = seen.values().filter(|n| **n > 1).count();
    Check::eq("no_request_posted_twice", 0, doubled)
}

/// Waits (up to [`WAIT_LIMIT`]) until the challenger process has re-executed `n` claims and
/// found them correct; the check fails on a timeout or on any claim found wrong.
pub fn challenger_checked(d: &Devnet, n: usize) -> Check {
    let Some(p) = d.challenger.as_ref() else {
        return Check::holds("challenger_checked_every_claim", false, "no challenger");
    };
    let count = |verdict: &str| {
        let tail = p.tail(usize::MAX);
        tail.lines()
            .filter(|l| l.contains("checked") && log_field(l, "verdict") == Some(verdict))
            .count()
    };
    let waited = wait_until("the challenger's checks", WAIT_LIMIT, || {
        Ok::<_, String>(count("correct") >= n)
    });
    let (correct, wrong) = (count("correct"), count("wrong"));
    Check::holds(
        "challenger_checked_every_claim",
        waited.is_ok() && correct >= n && wrong == 0,
        format!("{correct} correct, {wrong} wrong of {n} claims"),
    )
}
