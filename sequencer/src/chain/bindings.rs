//! Typed bindings over the committed contract artifacts (`contracts/artifacts/*.json`): ABI
//! and creation bytecode, so the chain layer can deploy and call the contracts without Node
//! or Foundry. Each contract gets its own module; the structs it uses (`Claim`,
//! `StepReveal`, `IOneStepVerifier::Opening`) live inside it.

#![allow(missing_docs, clippy::too_many_arguments)]

/// `ModelRegistry`.
pub mod registry {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ModelRegistry,
        "../contracts/artifacts/ModelRegistry.json"
    );
}

/// `OneStepVerifier`.
pub mod verifier {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        OneStepVerifier,
        "../contracts/artifacts/OneStepVerifier.json"
    );
}

/// `DisputeGame`.
pub mod games {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        DisputeGame,
        "../contracts/artifacts/DisputeGame.json"
    );
}

/// `InferenceRollup`.
pub mod rollup {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        InferenceRollup,
        "../contracts/artifacts/InferenceRollup.json"
    );
}

pub use games::{DisputeGame, IOneStepVerifier};
pub use registry::ModelRegistry;
pub use rollup::InferenceRollup;
pub use verifier::OneStepVerifier;
