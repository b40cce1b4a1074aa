//! Deploying the contracts from the committed artifacts and registering models: what the
//! devnet, the tests and an operator's first run do.

use super::bindings::{DisputeGame, InferenceRollup, ModelRegistry, OneStepVerifier};
use super::client::{Addresses, classify, classify_contract};
use super::{ChainError, Result, to_b256, to_h256};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use bisection::GameConfig;
use inference::merkle::H256;
use inference::model::Model;
use inference::program::encode_type;

/// The rollup's parameters fixed at deployment.
#[derive(Clone, Debug)]
pub struct DeployConfig {
    /// The rules of every game (degree, tensor levels, clocks, bonds, burn).
    pub game: GameConfig,
    /// Smallest stake a sequencer needs, in wei.
    pub min_stake: u128,
    /// Delay of stake withdrawals, in seconds (at least the challenge window).
    pub withdrawal_delay: u64,
    /// Challenge window of a batch, in seconds.
    pub challenge_window: u64,
    /// Gas of a requester's callback.
    pub callback_gas_limit: u64,
    /// After how long an unsettled request can be refunded, in seconds.
    pub request_timeout: u64,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            game: GameConfig::default(),
            min_stake: 10_000_000_000_000_000_000,
            withdrawal_delay: 2 * 24 * 3600,
            challenge_window: 24 * 3600,
            callback_gas_limit: 200_000,
            request_timeout: 7 * 24 * 3600,
        }
    }
}

/// Where the contracts of one deployment live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The model registry.
    pub registry: Address,
    /// The one-step verifier.
    pub verifier: Address,
    /// The dispute games.
    pub games: Address,
    /// The rollup.
    pub rollup: Address,
}

impl Deployment {
    /// The addresses the client needs.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            registry: self.registry,
            games: self.games,
            rollup: self.rollup,
        }
    }
}

/// Deploys registry, verifier, games and rollup from `from`, `provider`'s signing account. The
/// games contract needs the rollup's address before the rollup exists: it is predicted from
/// the deployer's nonce, and the rollup's constructor checks the prediction.
pub async fn deploy<P: Provider + Clone>(
    provider: P,
    from: Address,
    config: &DeployConfig,
) -> Result<Deployment> {
    let registry = ModelRegistry::deploy(provider.clone())
        .await
        .map_err(|e| classify_contract("deploy registry", &e))?;
    let verifier = OneStepVerifier::deploy(provider.clone())
        .await
        .map_err(|e| classify_contract("deploy verifier", &e))?;
    let nonce = provider
        .get_transaction_count(from)
        .await
        .map_err(|e| classify("nonce", &e))?;
    let predicted = from.create(nonce + 1);
    let g = &config.game;
    let game_config = DisputeGame::GameConfig {
        degree: g.degree.get(),
        tensorLevels: g.tensor_levels,
        clockSeconds: g.clock_seconds,
        challengerBond: g.challenger_bond,
        defenderBond: g.defender_bond,
        burnBps: g.burn_bps,
    };
    let games = DisputeGame::deploy(
        provider.clone(),
        predicted,
        *registry.address(),
        *verifier.address(),
        game_config,
    )
    .await
    .map_err(|e| classify_contract("deploy games", &e))?;
    let rollup = InferenceRollup::deploy(
        provider.clone(),
        *registry.address(),
        *games.address(),
        config.min_stake,
        config.withdrawal_delay,
        config.challenge_window,
        config.callback_gas_limit,
        config.request_timeout,
    )
    .await
    .map_err(|e| classify_contract("deploy rollup", &e))?;
    if *rollup.address() != predicted {
        return Err(ChainError::Inconsistent(format!(
            "the rollup landed at {}, the games expect {predicted}",
            rollup.address()
        )));
    }
    Ok(Deployment {
        registry: *registry.address(),
        verifier: *verifier.address(),
        games: *games.address(),
        rollup: predicted,
    })
}

/// Registers `model` in the registry at `registry` with metadata `uri` (where its files can
/// be fetched, e.g. `file:///models/minilm/seq16`). Registering an already registered model
/// is not an error. Returns the model id, checked against the one the contract computes.
pub async fn register_model<P: Provider + Clone>(
    provider: P,
    registry: Address,
    model: &Model,
    uri: &str,
) -> Result<H256> {
    let program = model.program();
    let reg = ModelRegistry::new(registry, provider);
    let id = model.id();
    let known = reg
        .isRegistered(to_b256(id))
        .call()
        .await
        .map_err(|e| classify_contract("registry.isRegistered", &e))?;
    if known {
        return Ok(id);
    }
    let ops_root = program
        .ops_tree()
        .map_err(|e| ChainError::Local(e.to_string()))?
        .root();
    let input_type = encode_type(&program.input).map_err(|e| ChainError::Local(e.to_string()))?;
    let call = reg.register(
        program.version,
        program.ops.len() as u32,
        program.weights.len() as u32,
        program.output,
        Bytes::from(input_type),
        to_b256(ops_root),
        to_b256(model.weights().root()),
        uri.to_string(),
    );
    let receipt = call
        .send()
        .await
        .map_err(|e| classify_contract("registry.register", &e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::Rpc {
            op: "registry.register",
            message: e.to_string(),
            kind: super::ErrorKind::Temporary,
        })?;
    let got = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<ModelRegistry::ModelRegistered>().ok())
        .map(|l| to_h256(l.inner.data.modelId))
        .ok_or_else(|| ChainError::Decode {
            op: "registry.register",
            message: "no ModelRegistered event".into(),
        })?;
    if got != id {
        return Err(ChainError::Inconsistent(format!(
            "the registry computed model id {got}, the model's is {id}"
        )));
    }
    Ok(id)
}

/// Wei as a `U256`.
pub fn wei(v: u128) -> U256 {
    U256::from(v)
}
