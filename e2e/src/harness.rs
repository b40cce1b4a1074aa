//! The shared devnet of every scenario: a real anvil on a free port (killed when the
//! [`Harness`] is dropped), the real contracts deployed from the committed artifacts, the
//! real MiniLM program registered, a staked sequencer and funded challenger accounts, plus
//! what scenarios need around them: chain time travel (`evm_increaseTime`, `evm_mine`),
//! posting claims, and reading a game's gas, rounds and outcome back from its receipts and
//! events.

use crate::{Error, Result};
use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use bisection::{DissectionDegree, GameConfig, Side};
use challenger::models::load_model_dir;
use inference::import::bert;
use inference::model::Model;
use inference::tensor::Tensor;
use inference::tokenize::TextTokenizer;
use sequencer::chain::bindings::DisputeGame;
use sequencer::chain::client::classify;
use sequencer::chain::deploy::{deploy, register_model};
use sequencer::chain::{
    BatchData, BatchEntry, ChainClient, ClientConfig, DeployConfig, Deployment,
};
use sequencer::claim::{BatchCommitment, Claim, commit_batch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;
/// Default challenger bond.
pub const DEFAULT_CHALLENGER_BOND: u128 = ETHER;
/// Default defender bond (taken from the sequencer's stake per game).
pub const DEFAULT_DEFENDER_BOND: u128 = 2 * ETHER;
/// Default share of a loser's bond burnt, in basis points.
pub const DEFAULT_BURN_BPS: u32 = 5_000;
/// Default clock of each side, in seconds (time is moved by RPC, so a realistic hour costs
/// nothing).
pub const DEFAULT_CLOCK_SECONDS: u64 = 3600;
/// Default dissection degree.
pub const DEFAULT_DEGREE: u32 = 8;
/// Default tensor levels per move.
pub const DEFAULT_TENSOR_LEVELS: u32 = 3;
/// Default sequencer stake: enough for many lost games in one run.
pub const DEFAULT_STAKE: u128 = 100 * ETHER;
/// Default challenge window, in seconds.
pub const DEFAULT_CHALLENGE_WINDOW: u64 = 24 * 3600;
/// Default number of challenger accounts.
pub const DEFAULT_CHALLENGERS: usize = 3;
/// Polling interval of drivers and receipts in scenarios (anvil mines at once).
pub const SCENARIO_POLL: Duration = Duration::from_millis(25);

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The default model: MiniLM's 16-token bucket (`make models`).
pub fn default_model_dir() -> PathBuf {
    workspace_root().join("models/minilm/seq16")
}

/// The anvil that `make setup` installs.
pub fn default_anvil() -> PathBuf {
    workspace_root().join("contracts/node_modules/.bin/anvil")
}

/// Whether `dir` holds a prepared model.
pub fn model_present(dir: &Path) -> bool {
    dir.join(inference::model::MANIFEST_FILE).is_file()
}

/// How the devnet is set up.
#[derive(Clone, Debug)]
pub struct HarnessOptions {
    /// A model directory (program, weights, manifest, tokenizer).
    pub model_dir: PathBuf,
    /// The anvil binary.
    pub anvil: PathBuf,
    /// The port anvil listens on (`None`: a free one).
    pub port: Option<u16>,
    /// The rules of every game.
    pub game: GameConfig,
    /// The sequencer's stake.
    pub stake: u128,
    /// The challenge window of a batch, in seconds.
    pub challenge_window: u64,
    /// Funded challenger accounts (anvil keys 2, 3, ...; at most 8).
    pub challengers: usize,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            anvil: default_anvil(),
            port: None,
            game: GameConfig {
                degree: DissectionDegree::new(DEFAULT_DEGREE).expect("degree >= 2"),
                tensor_levels: DEFAULT_TENSOR_LEVELS,
                clock_seconds: DEFAULT_CLOCK_SECONDS,
                challenger_bond: DEFAULT_CHALLENGER_BOND,
                defender_bond: DEFAULT_DEFENDER_BOND,
                burn_bps: DEFAULT_BURN_BPS,
            },
            stake: DEFAULT_STAKE,
            challenge_window: DEFAULT_CHALLENGE_WINDOW,
            challengers: DEFAULT_CHALLENGERS,
        }
    }
}

/// A batch posted by the harness.
#[derive(Clone, Debug)]
pub struct PostedBatch {
    /// The batch id.
    pub batch_id: u64,
    /// The posting transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
    /// The claims, in order.
    pub claims: Vec<Claim>,
    /// Their root and inclusion proofs.
    pub commitment: BatchCommitment,
}

/// A game as its receipts and events show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameRecord {
    /// The game.
    pub game_id: U256,
    /// Block of its `GameOpened`.
    pub opened_block: u64,
    /// Timestamp of that block.
    pub opened_at: u64,
    /// Moves made (events of moves, plus the one-step if it ended the game).
    pub moves: u32,
    /// Trace dissections plus tensor node reveals.
    pub rounds: u32,
    /// Gas of every transaction that emitted an event of this game (the challenge, every
    /// move, the one-step or timeout claim).
    pub total_gas: u64,
    /// Those transactions.
    pub transactions: u32,
    /// Gas of the one-step transaction, if the game ended by one.
    pub one_step_gas: Option<u64>,
    /// The op the trace bisection ended on (`StepRevealed`), if reached.
    pub step_op: Option<u64>,
    /// The output leaf the tensor bisection ended on (`LeafRevealed`), if reached.
    pub leaf_index: Option<u64>,
    /// The resolution, if resolved.
    pub resolved: Option<Resolution>,
}

/// A `GameResolved` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The winner.
    pub winner: Side,
    /// `IDisputeGame.Reason` as a code.
    pub reason: u8,
    /// Credited to the defender.
    pub defender_payout: U256,
    /// Credited to the challenger.
    pub challenger_payout: U256,
    /// Burnt.
    pub burnt: U256,
    /// Block of the resolution.
    pub block: u64,
    /// Its timestamp.
    pub at: u64,
}

/// The name of an `IDisputeGame.Reason` code.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        1 => "one_step_mismatch",
        2 => "one_step_match",
        3 => "non_zero_padding",
        4 => "zero_padding",
        5 => "timeout",
        _ => "none",
    }
}

/// `IDisputeGame.Reason.Timeout`.
pub const REASON_TIMEOUT: u8 = 5;

/// The running devnet. Dropping it kills anvil.
pub struct Harness {
    anvil: AnvilInstance,
    keys: Vec<PrivateKeySigner>,
    /// The node's RPC URL.
    pub url: String,
    /// A provider signing with the deployer's key (anvil key 0).
    pub deployer: DynProvider,
    /// Where the contracts are.
    pub deployment: Deployment,
    /// The rollup's parameters.
    pub config: DeployConfig,
    /// The registered model.
    pub model: Arc<Model>,
    /// Its directory.
    pub model_dir: PathBuf,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its input length in tokens.
    pub seq_len: usize,
    /// The staked sequencer (anvil key 1).
    pub sequencer: ChainClient,
    /// The challenger accounts (anvil keys 2, 3, ...).
    pub challengers: Vec<ChainClient>,
}

/// The client configuration of scenarios: fast polling (anvil mines each transaction at
/// once).
pub fn client_config() -> ClientConfig {
    ClientConfig {
        poll_interval: Duration::from_millis(10),
        retry_initial: Duration::from_millis(50),
        ..ClientConfig::default()
    }
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

impl Harness {
    /// Loads the model, starts anvil, deploys, registers the model with a `file://` URI,
    /// stakes the sequencer and connects the challengers.
    pub async fn start(opts: &HarnessOptions) -> Result<Self> {
        if !model_present(&opts.model_dir) {
            return Err(Error::ModelMissing(opts.model_dir.clone()));
        }
        let model = Arc::new(load_model_dir(&opts.model_dir).map_err(setup)?);
        let seq_len = model
            .program()
            .input
            .shape
            .last()
            .copied()
            .ok_or_else(|| setup("the model's input has no dimensions"))?;
        let tok_json = std::fs::read(opts.model_dir.join("tokenizer.json")).map_err(|e| {
            setup(format!(
                "reading {}: {e}",
                opts.model_dir.join("tokenizer.json").display()
            ))
        })?;
        let tokenizer = TextTokenizer::from_json(&tok_json, seq_len).map_err(setup)?;
        if !opts.anvil.is_file() {
            return Err(Error::Setup(format!(
                "anvil not found at {} (run `make setup`)",
                opts.anvil.display()
            )));
        }
        if opts.challengers == 0 || opts.challengers > 8 {
            return Err(Error::Usage(format!(
                "{} challengers: 1 to 8 accounts are funded",
                opts.challengers
            )));
        }
        let mut anvil = Anvil::at(&opts.anvil);
        if let Some(port) = opts.port {
            anvil = anvil.port(port);
        }
        let anvil = anvil
            .try_spawn()
            .map_err(|e| setup(format!("starting anvil: {e}")))?;
        let keys: Vec<PrivateKeySigner> = anvil.keys().iter().cloned().map(Into::into).collect();
        let url = anvil.endpoint();
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(keys[0].clone()))
            .connect_http(anvil.endpoint_url())
            .erased();
        let config = DeployConfig {
            game: opts.game.clone(),
            min_stake: opts.game.defender_bond.max(1),
            challenge_window: opts.challenge_window,
            withdrawal_delay: opts.challenge_window,
            ..DeployConfig::default()
        };
        let deployment = deploy(deployer.clone(), keys[0].address(), &config).await?;
        let uri = format!("file://{}", opts.model_dir.display());
        register_model(deployer.clone(), deployment.registry, &model, &uri).await?;
        let sequencer =
            ChainClient::connect(&url, keys[1].clone(), deployment.rollup, client_config()).await?;
        sequencer.register_sequencer(U256::from(opts.stake)).await?;
        let mut challengers = Vec::with_capacity(opts.challengers);
        for key in keys.iter().skip(2).take(opts.challengers) {
            challengers.push(
                ChainClient::connect(&url, key.clone(), deployment.rollup, client_config()).await?,
            );
        }
        Ok(Self {
            anvil,
            keys,
            url,
            deployer,
            deployment,
            config,
            model,
            model_dir: opts.model_dir.clone(),
            tokenizer,
            seq_len,
            sequencer,
            challengers,
        })
    }

    /// The anvil port.
    pub fn port(&self) -> u16 {
        self.anvil.port()
    }

    /// Anvil's funded keys (0 deployer, 1 sequencer, 2.. challengers).
    pub fn keys(&self) -> &[PrivateKeySigner] {
        &self.keys
    }

    /// The rules of every game.
    pub fn game_config(&self) -> &GameConfig {
        &self.config.game
    }

    /// The model input of `text`.
    pub fn input(&self, text: &str) -> Result<Tensor> {
        let ids = self
            .tokenizer
            .encode(text)
            .map_err(|e| setup(format!("tokenizing {text:?}: {e}")))?;
        bert::input(&ids, self.seq_len).map_err(|e| setup(format!("input of {text:?}: {e}")))
    }

    /// Moves the chain's clock forward by `seconds` and mines a block at the new time.
    pub async fn advance_time(&self, seconds: u64) -> Result<()> {
        let p = &self.deployer;
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (seconds,))
            .await
            .map_err(|e| classify("evm_increaseTime", &e))?;
        self.mine().await
    }

    /// Mines one block.
    pub async fn mine(&self) -> Result<()> {
        let _: serde_json::Value = self
            .deployer
            .raw_request("evm_mine".into(), ())
            .await
            .map_err(|e| classify("evm_mine", &e))?;
        Ok(())
    }

    /// The head block's timestamp.
    pub async fn now(&self) -> Result<u64> {
        let head = self.sequencer.head().await?;
        Ok(self.sequencer.block_timestamp(head).await?)
    }

    /// Posts a batch of one claim: request `request_id` on the harness's model gave
    /// `output` for `input`.
    pub async fn post_one(
        &self,
        request_id: u64,
        input: Tensor,
        output: Tensor,
    ) -> Result<PostedBatch> {
        self.post(&BatchData {
            entries: vec![BatchEntry {
                request_id: sequencer::claim::request_word(request_id),
                model_id: self.model.id(),
                input,
                output,
            }],
        })
        .await
    }

    /// Posts `data` as a batch from the sequencer.
    pub async fn post(&self, data: &BatchData) -> Result<PostedBatch> {
        let claims = data.claims()?;
        let commitment = commit_batch(&claims);
        let (batch_id, receipt) = self.sequencer.post_batch(data).await?;
        Ok(PostedBatch {
            batch_id,
            tx: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            claims,
            commitment,
        })
    }

    /// The sequencer's stake (what later games can take their bond from).
    pub async fn stake(&self) -> Result<U256> {
        let s = self.sequencer.account();
        let r = self.sequencer.rollup();
        let seq = self
            .sequencer
            .retry("rollup.sequencers", || async {
                r.sequencers(s).call().await.map_err(|e| {
                    sequencer::chain::client::classify_contract("rollup.sequencers", &e)
                })
            })
            .await?;
        Ok(U256::from(seq.stake))
    }

    /// Wei burnt by all games so far.
    pub async fn total_burnt(&self) -> Result<U256> {
        let g = self.sequencer.games();
        Ok(self
            .sequencer
            .retry("games.totalBurnt", || async {
                g.totalBurnt().call().await.map_err(|e| {
                    sequencer::chain::client::classify_contract("games.totalBurnt", &e)
                })
            })
            .await?)
    }

    /// Game payouts credited to `account` and not withdrawn.
    pub async fn credit(&self, account: Address) -> Result<U256> {
        Ok(self.sequencer.games_credit(account).await?)
    }

    /// How claim `index` of batch `batch` stands: 0 pending, 1 final, 2 invalidated.
    pub async fn claim_state(&self, batch: u64, index: u64) -> Result<u8> {
        Ok(self.sequencer.claim_state(batch, index).await?)
    }

    /// Reads game `game_id` back from the chain: its events from `from_block` on and the
    /// receipts of the transactions that emitted them.
    pub async fn game_record(&self, game_id: U256, from_block: u64) -> Result<GameRecord> {
        let c = &self.sequencer;
        let filter = Filter::new()
            .address(self.deployment.games)
            .topic1(B256::from(game_id))
            .from_block(from_block);
        let logs = c
            .retry("getLogs game", || async {
                c.provider()
                    .get_logs(&filter)
                    .await
                    .map_err(|e| classify("getLogs game", &e))
            })
            .await?;
        let mut record = GameRecord {
            game_id,
            opened_block: 0,
            opened_at: 0,
            moves: 0,
            rounds: 0,
            total_gas: 0,
            transactions: 0,
            one_step_gas: None,
            step_op: None,
            leaf_index: None,
            resolved: None,
        };
        let mut txs: Vec<B256> = Vec::new();
        let mut resolving_tx = None;
        for log in &logs {
            let topic0 = log.topics().first().copied().unwrap_or_default();
            let block = log.block_number.unwrap_or_default();
            if let Some(tx) = log.transaction_hash
                && !txs.contains(&tx)
            {
                txs.push(tx);
            }
            if topic0 == DisputeGame::GameOpened::SIGNATURE_HASH {
                record.opened_block = block;
                record.opened_at = c.block_timestamp(block).await?;
            } else if sequencer::chain::follower::is_move_event(topic0) {
                record.moves += 1;
                if topic0 == DisputeGame::Dissected::SIGNATURE_HASH
                    || topic0 == DisputeGame::NodesRevealed::SIGNATURE_HASH
                {
                    record.rounds += 1;
                }
                if topic0 == DisputeGame::StepRevealed::SIGNATURE_HASH {
                    record.step_op = DisputeGame::StepRevealed::decode_log(&log.inner)
                        .ok()
                        .map(|e| e.op);
                }
                if topic0 == DisputeGame::LeafRevealed::SIGNATURE_HASH {
                    record.leaf_index = DisputeGame::LeafRevealed::decode_log(&log.inner)
                        .ok()
                        .map(|e| e.leafIndex);
                }
            } else if topic0 == DisputeGame::GameResolved::SIGNATURE_HASH {
                let e = DisputeGame::GameResolved::decode_log(&log.inner).map_err(|e| {
                    Error::Chain(sequencer::chain::ChainError::Decode {
                        op: "GameResolved",
                        message: e.to_string(),
                    })
                })?;
                resolving_tx = log.transaction_hash;
                record.resolved = Some(Resolution {
                    winner: if e.winner == 0 {
                        Side::Defender
                    } else {
                        Side::Challenger
                    },
                    reason: e.reason,
                    defender_payout: e.defenderPayout,
                    challenger_payout: e.challengerPayout,
                    burnt: e.burnt,
                    block,
                    at: c.block_timestamp(block).await?,
                });
            }
        }
        for tx in &txs {
            let receipt = c
                .retry("getTransactionReceipt", || async {
                    c.provider()
                        .get_transaction_receipt(*tx)
                        .await
                        .map_err(|e| classify("getTransactionReceipt", &e))
                })
                .await?
                .ok_or_else(|| setup(format!("no receipt for {tx}")))?;
            record.total_gas += receipt.gas_used;
            record.transactions += 1;
            if Some(*tx) == resolving_tx
                && record
                    .resolved
                    .as_ref()
                    .is_some_and(|r| r.reason != REASON_TIMEOUT)
            {
                record.one_step_gas = Some(receipt.gas_used);
                record.moves += 1;
            }
        }
        Ok(record)
    }

    /// The side to move in game `game_id` and the moves made, as the contract shows it;
    /// `None` for the side once it is resolved.
    pub async fn game_turn(&self, game_id: U256) -> Result<(Option<Side>, u32)> {
        let g = self.sequencer.game(game_id).await?;
        // Phase {None, AwaitFinal, AwaitDissection, AwaitPick, AwaitStep, AwaitNodes,
        // AwaitNodePick, AwaitLeaf, AwaitOneStep, Resolved}.
        let side = match g.phase {
            1 | 2 | 4 | 5 | 7 => Some(Side::Defender),
            3 | 6 | 8 => Some(Side::Challenger),
            _ => None,
        };
        Ok((side, g.moves))
    }
}
