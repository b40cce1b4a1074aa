//! Typed bindings over the committed artifacts (`artifacts/<Name>.json`): calls, events,
//! errors, `BYTECODE` / `DEPLOYED_BYTECODE`, and with `#[sol(rpc)]` a contract instance for
//! any alloy provider (`OneStepVerifier::new(address, provider)`).
//!
//! Libraries with only internal functions are compiled into their callers and have no
//! binding.
//!
//! Each artifact is bound in its own module (the struct types an ABI names, such as
//! `IOneStepVerifier.Opening`, become a module there), and the contract is re-exported
//! here. Regenerate the artifacts with `make contracts` after changing a `.sol` file.

/// The binding of `artifacts/OneStepVerifier.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod one_step_verifier {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        OneStepVerifier,
        "artifacts/OneStepVerifier.json"
    );
}
pub use one_step_verifier::OneStepVerifier;

/// The binding of `artifacts/IOneStepVerifier.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod i_one_step_verifier {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        IOneStepVerifier,
        "artifacts/IOneStepVerifier.json"
    );
}
pub use i_one_step_verifier::IOneStepVerifier;

/// The binding of `artifacts/ModelRegistry.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod model_registry {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ModelRegistry,
        "artifacts/ModelRegistry.json"
    );
}
pub use model_registry::ModelRegistry;

/// The binding of `artifacts/IModelRegistry.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod i_model_registry {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        IModelRegistry,
        "artifacts/IModelRegistry.json"
    );
}
pub use i_model_registry::IModelRegistry;

/// The binding of `artifacts/InferenceRollup.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod inference_rollup {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        InferenceRollup,
        "artifacts/InferenceRollup.json"
    );
}
pub use inference_rollup::InferenceRollup;

/// The binding of `artifacts/DisputeGame.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod dispute_game {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        DisputeGame,
        "artifacts/DisputeGame.json"
    );
}
pub use dispute_game::DisputeGame;

/// The binding of `artifacts/IDisputeGame.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod i_dispute_game {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        IDisputeGame,
        "artifacts/IDisputeGame.json"
    );
}
pub use i_dispute_game::IDisputeGame;

/// The binding of `artifacts/IInferenceConsumer.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod i_inference_consumer {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        IInferenceConsumer,
        "artifacts/IInferenceConsumer.json"
    );
}
pub use i_inference_consumer::IInferenceConsumer;

/// The binding of `artifacts/IGameResolutionSink.json`.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod i_game_resolution_sink {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        IGameResolutionSink,
        "artifacts/IGameResolutionSink.json"
    );
}
pub use i_game_resolution_sink::IGameResolutionSink;

/// The binding of `artifacts/InferenceConsumer.json` (the example consumer of
/// `src/examples/InferenceConsumer.sol`).
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod inference_consumer {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        InferenceConsumer,
        "artifacts/InferenceConsumer.json"
    );
}
pub use inference_consumer::InferenceConsumer;
