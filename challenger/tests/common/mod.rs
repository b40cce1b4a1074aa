//! A local devnet for the challenger's tests: a real anvil, the real contracts deployed from
//! the committed artifacts, the real MiniLM model (seq16 bucket) registered with a
//! `file://` URI, a staked sequencer and a challenger account.

#![allow(dead_code)]

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::U256;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use bisection::{DissectionDegree, GameConfig};
use challenger::models::load_model_dir;
use inference::import::bert;
use inference::model::Model;
use inference::tensor::Tensor;
use inference::tokenize::TextTokenizer;
use sequencer::chain::deploy::{deploy, register_model};
use sequencer::chain::{ChainClient, ClientConfig, DeployConfig, Deployment};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const ETHER: u128 = 1_000_000_000_000_000_000;
pub const CHALLENGER_BOND: u128 = ETHER;
pub const DEFENDER_BOND: u128 = 2 * ETHER;
pub const STAKE: u128 = 20 * ETHER;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn minilm_dir() -> PathBuf {
    root().join("models/minilm/seq16")
}

/// The MiniLM seq16 model and its tokenizer, or `None` (with a message) when `make models`
/// has not run; a failure when `REQUIRE_MODELS=1`.
pub fn minilm() -> Option<(Arc<Model>, TextTokenizer)> {
    let dir = minilm_dir();
    if !dir.join("manifest.json").is_file() {
        if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
            panic!("models/minilm is missing: run `make models`");
        }
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return None;
    }
    let model = load_model_dir(&dir).unwrap();
    let tok =
        TextTokenizer::from_json(&std::fs::read(dir.join("tokenizer.json")).unwrap(), 16).unwrap();
    Some((Arc::new(model), tok))
}

pub fn input(tok: &TextTokenizer, text: &str) -> Tensor {
    bert::input(&tok.encode(text).unwrap(), 16).unwrap()
}

pub struct Devnet {
    pub anvil: AnvilInstance,
    pub deployment: Deployment,
    pub sequencer: ChainClient,
    pub challenger: ChainClient,
    pub challenger_key: PrivateKeySigner,
}

/// Fast polling, and log scans split into 3-block requests, so that every lookup of the
/// challenger and of the sequencer's defence crosses many request boundaries.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        poll_interval: Duration::from_millis(20),
        retry_initial: Duration::from_millis(50),
        log_range: 3,
        ..ClientConfig::default()
    }
}

impl Devnet {
    /// Starts anvil, deploys, registers `model`, stakes the sequencer.
    pub async fn start(model: &Model) -> Self {
        let anvil = Anvil::at(root().join("contracts/node_modules/.bin/anvil"))
            .try_spawn()
            .expect("anvil (run `make setup`)");
        let keys = anvil.keys().to_vec();
        let key = |i: usize| PrivateKeySigner::from(keys[i].clone());
        let url = anvil.endpoint();
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(key(0)))
            .connect_http(anvil.endpoint_url());
        let config = DeployConfig {
            game: GameConfig {
                degree: DissectionDegree::new(8).unwrap(),
                tensor_levels: 3,
                clock_seconds: 3600,
                challenger_bond: CHALLENGER_BOND,
                defender_bond: DEFENDER_BOND,
                burn_bps: 5_000,
            },
            min_stake: 10 * ETHER,
            ..DeployConfig::default()
        };
        let deployment = deploy(deployer.clone(), key(0).address(), &config)
            .await
            .unwrap();
        let uri = format!("file://{}", minilm_dir().display());
        register_model(deployer, deployment.registry, model, &uri)
            .await
            .unwrap();
        let sequencer = ChainClient::connect(&url, key(1), deployment.rollup, client_config())
            .await
            .unwrap();
        sequencer
            .register_sequencer(U256::from(STAKE))
            .await
            .unwrap();
        let challenger = ChainClient::connect(&url, key(2), deployment.rollup, client_config())
            .await
            .unwrap();
        Self {
            anvil,
            deployment,
            sequencer,
            challenger,
            challenger_key: key(2),
        }
    }
}
