//! Helpers for tests that run the real `sequencer` binary.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The MiniLM family directory, if `make models` prepared it. Without it the caller skips,
/// saying so, unless `REQUIRE_MODELS=1`, where that is a failure.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/minilm");
    if dir.join("family.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("REQUIRE_MODELS").as_deref() != Ok("1"),
        "REQUIRE_MODELS=1 but {} is missing: run `make models`",
        dir.display()
    );
    eprintln!("skipping: {} is missing (run `make models`)", dir.display());
    None
}

/// A `sequencer run` child process, killed when dropped.
pub struct Node {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Node {
    /// Starts the binary on a free port with `db` and the model, plus `extra` flags, and
    /// waits until it is ready.
    pub fn start(db: &Path, model: &Path, extra: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sequencer"))
            .arg("run")
            .args(["--http.addr", "127.0.0.1:0"])
            .arg("--db.path")
            .arg(db)
            .arg("--model.dir")
            .arg(model)
            .args(["--log.filter", "info"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the sequencer binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                panic!("the sequencer did not report its address: {e}");
            }
        };
        let node = Node {
            child,
            url: format!("http://{addr}"),
        };
        wait_for(Duration::from_secs(60), "readiness", || {
            get(&node.url, "/readyz").0 == 200
        });
        node
    }

    /// `kill -9`: no chance to flush or shut down.
    pub fn kill9(&mut self) {
        // std's kill is SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `cond` until it holds, failing after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// GET `path`: status and body (status 0 if the connection failed).
pub fn get(url: &str, path: &str) -> (u16, String) {
    read(agent().get(format!("{url}{path}")).call())
}

/// GET `path` as JSON.
pub fn get_json(url: &str, path: &str) -> (u16, Value) {
    let (s, body) = get(url, path);
    (s, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// POST a raw body with a content type: status and body.
pub fn post_raw(url: &str, path: &str, content_type: Option<&str>, body: &str) -> (u16, String) {
    let mut req = agent().post(format!("{url}{path}"));
    if let Some(ct) = content_type {
        req = req.content_type(ct);
    }
    read(req.send(body))
}

/// POST JSON to `/v1/inference`.
pub fn infer(url: &str, body: &Value) -> (u16, Value) {
    let (s, text) = post_raw(
        url,
        "/v1/inference",
        Some("application/json"),
        &body.to_string(),
    );
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A local anvil (from `make setup`) with the contracts deployed from the committed
/// artifacts by key 0; anvil stops when this is dropped.
pub struct Devnet {
    /// The node.
    pub anvil: alloy::node_bindings::AnvilInstance,
    /// Anvil's funded keys.
    pub keys: Vec<alloy::signers::local::PrivateKeySigner>,
    /// A provider signing with key 0 (the deployer).
    pub deployer: alloy::providers::DynProvider,
    /// The deployed contracts.
    pub deployment: sequencer::chain::deploy::Deployment,
}

/// Starts anvil on a free port and deploys the contracts with `config`.
pub async fn devnet(config: &sequencer::chain::DeployConfig) -> Devnet {
    use alloy::providers::{Provider, ProviderBuilder};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let anvil = alloy::node_bindings::Anvil::at(root.join("contracts/node_modules/.bin/anvil"))
        .try_spawn()
        .expect("anvil (run `make setup`)");
    let keys: Vec<alloy::signers::local::PrivateKeySigner> =
        anvil.keys().iter().cloned().map(Into::into).collect();
    let deployer = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
        .connect_http(anvil.endpoint_url())
        .erased();
    let deployment = sequencer::chain::deploy::deploy(deployer.clone(), keys[0].address(), config)
        .await
        .expect("deploy the contracts");
    Devnet {
        anvil,
        keys,
        deployer,
        deployment,
    }
}

/// Calls anvil's JSON-RPC `method` (cheat codes such as `evm_mine`) through `provider`.
#[allow(dead_code)]
pub async fn anvil_rpc(
    provider: &alloy::providers::DynProvider,
    method: &'static str,
    params: Value,
) -> Value {
    use alloy::providers::Provider;
    provider
        .raw_request::<_, Value>(method.into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}
