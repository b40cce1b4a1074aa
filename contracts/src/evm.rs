//! An in-process EVM (revm, Cancun rules as the Foundry build targets) to deploy the
//! compiled contracts and call them: what the differential tests, the bisection crate's
//! referee-versus-Solidity tests and gas measurements use instead of a node.
//!
//! Every transaction comes from one funded-by-nothing caller at gas price 0 and is
//! committed, so state (deployed code, storage) carries over between calls.

use alloy::primitives::{Address, Bytes, TxKind, U256};
use alloy::sol_types::{SolCall, SolInterface};
use revm::ExecuteCommitEvm;
use revm::context::result::{ExecutionResult, Output};
use revm::context::{Context, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::handler::{MainBuilder, MainContext, MainnetContext, MainnetEvm};
use revm::primitives::hardfork::SpecId;

/// The gas limit of every transaction (EIP-7825's cap).
pub const DEFAULT_GAS_LIMIT: u64 = 1 << 24;

/// What went wrong running a transaction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// revm refused the transaction (invalid transaction or a database error).
    #[error("transaction not executed: {0}")]
    Evm(String),
    /// The transaction reverted; `output` is the revert data.
    #[error("reverted after {gas_used} gas with {output}")]
    Reverted {
        /// The revert data (a custom error's selector and arguments).
        output: Bytes,
        /// Gas used by the transaction, intrinsic gas included.
        gas_used: u64,
    },
    /// The transaction halted (out of gas, invalid opcode, code size limit, ...).
    #[error("halted after {gas_used} gas: {reason}")]
    Halted {
        /// revm's reason.
        reason: String,
        /// Gas used by the transaction.
        gas_used: u64,
    },
    /// A successful call returned data that does not decode as the call's return type.
    #[error("return data does not decode: {0}")]
    Decode(#[from] alloy::sol_types::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The revert decoded as one of the errors of `E` (for example
    /// `IOneStepVerifier::IOneStepVerifierErrors`), if it reverted with one.
    pub fn revert_as<E: SolInterface>(&self) -> Option<E> {
        match self {
            Self::Reverted { output, .. } => E::abi_decode(output).ok(),
            _ => None,
        }
    }
}

/// A successful transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// The returned data.
    pub output: Bytes,
    /// Gas used, intrinsic gas (21,000 plus calldata) included.
    pub gas_used: u64,
}

/// An in-memory chain with one caller.
pub struct LocalEvm {
    evm: MainnetEvm<MainnetContext<CacheDB<EmptyDB>>>,
    caller: Address,
    nonce: u64,
    gas_limit: u64,
}

impl Default for LocalEvm {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LocalEvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEvm")
            .field("caller", &self.caller)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl LocalEvm {
    /// An empty chain under Cancun rules (the contracts' `evm_version`).
    pub fn new() -> Self {
        let evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .modify_cfg_chained(|cfg| cfg.set_spec_and_mainnet_gas_params(SpecId::CANCUN))
            .build_mainnet();
        Self {
            evm,
            caller: Address::repeat_byte(0xca),
            nonce: 0,
            gas_limit: DEFAULT_GAS_LIMIT,
        }
    }

    /// The sender of every transaction.
    pub fn caller(&self) -> Address {
        self.caller
    }

    /// Sets the gas limit of later transactions.
    pub fn set_gas_limit(&mut self, gas_limit: u64) {
        self.gas_limit = gas_limit;
    }

    /// Deploys `init_code` (creation bytecode, constructor arguments appended) and returns
    /// the new contract's address.
    pub fn deploy(&mut self, init_code: Bytes) -> Result<Address> {
        let (output, _) = self.transact(TxKind::Create, init_code)?;
        match output {
            Output::Create(_, Some(address)) => Ok(address),
            other => Err(Error::Evm(format!("a create returned {other:?}"))),
        }
    }

    /// Calls `to` with raw `data`.
    pub fn call_raw(&mut self, to: Address, data: Bytes) -> Result<CallOutcome> {
        let (output, gas_used) = self.transact(TxKind::Call(to), data)?;
        Ok(CallOutcome {
            output: output.into_data(),
            gas_used,
        })
    }

    /// Calls `to` with a typed call; returns the decoded return value and the gas used.
    pub fn call<C: SolCall>(&mut self, to: Address, call: &C) -> Result<(C::Return, u64)> {
        let outcome = self.call_raw(to, call.abi_encode().into())?;
        Ok((C::abi_decode_returns(&outcome.output)?, outcome.gas_used))
    }

    fn transact(&mut self, kind: TxKind, data: Bytes) -> Result<(Output, u64)> {
        let tx = TxEnv::builder()
            .caller(self.caller)
            .kind(kind)
            .data(data)
            .value(U256::ZERO)
            .gas_limit(self.gas_limit)
            .gas_price(0)
            .nonce(self.nonce)
            .build()
            .map_err(|e| Error::Evm(format!("{e:?}")))?;
        let result = self
            .evm
            .transact_commit(tx)
            .map_err(|e| Error::Evm(e.to_string()))?;
        self.nonce += 1;
        let gas_used = result.tx_gas_used();
        match result {
            ExecutionResult::Success { output, .. } => Ok((output, gas_used)),
            ExecutionResult::Revert { output, .. } => Err(Error::Reverted { output, gas_used }),
            ExecutionResult::Halt { reason, .. } => Err(Error::Halted {
                reason: format!("{reason:?}"),
                gas_used,
            }),
        }
    }
}
