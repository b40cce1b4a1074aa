//! Everything that talks to the chain, for the sequencer and the challenger alike.
//!
//! - [`bindings`]: typed contract bindings over the committed artifacts;
//! - [`batch_data`]: the `postBatch` data format (claims with their inputs and outputs);
//! - [`deploy`]: deploying and configuring the contracts, registering models;
//! - [`client`]: a signing client with retries, nonce handling and confirmations, for every
//!   transaction the services send (stake, post, challenge, game moves, withdrawals);
//! - [`follower`]: the rollup's and games' events from a start block, catching up then
//!   following, with batch data decoded from the posting transactions;
//! - [`driver`]: plays one game to its end on chain for a [`bisection::Player`]: the
//!   sequencer's automatic defence and the challenger's attack;
//! - [`defence`]: the sequencer's automatic defence of a game against its claim;
//! - [`poster`]: the sequencer's [`crate::batching::BatchPoster`] over the rollup;
//! - [`watch`]: the sequencer's defence watcher: finds the games against its claims and
//!   defends each one, recorded in its database so a restart resumes them.
//!
//! Errors say how to recover, as kona's do ([`ErrorKind`]): a temporary RPC failure is
//! retried with backoff, a critical one (a revert, bad data, a diverged game) stops the work
//! it belongs to. This module never loads libtorch: the challenger builds without it.

pub mod batch_data;
pub mod bindings;
pub mod client;
pub mod defence;
pub mod deploy;
pub mod driver;
pub mod follower;
pub mod poster;
pub mod watch;

use alloy::primitives::B256;
use inference::merkle::H256;
use std::time::Duration;

pub use batch_data::{BatchData, BatchDataError, BatchEntry};
pub use client::{ChainClient, ClientConfig};
pub use deploy::{DeployConfig, Deployment};
pub use driver::{DriverConfig, GameDriver, GameEnd};
pub use follower::{ChainEvent, EventFollower, LogPosition};
pub use poster::{ChainPoster, post_batch_gas_bound};

/// How to recover from an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying: the node was unreachable, slow or briefly inconsistent.
    Temporary,
    /// Retrying cannot help: a revert, bad data, a broken invariant.
    Critical,
}

/// An error of the chain layer.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC transport failed or the node answered with an error that is not a revert.
    #[error("{op}: rpc: {message}")]
    Rpc {
        /// What was being done.
        op: &'static str,
        /// The error.
        message: String,
        /// Whether a retry may help.
        kind: ErrorKind,
    },
    /// A call or transaction reverted (or would revert).
    #[error("{op}: reverted: {reason}")]
    Reverted {
        /// What was being done.
        op: &'static str,
        /// The decoded custom error, or the raw revert data.
        reason: String,
    },
    /// A transaction was mined but failed: its gas estimate passed, so the state changed
    /// between the estimate and the block (another transaction came first, or it ran out
    /// of gas). Temporary: a retry re-estimates against the new state, and a call that
    /// now reverts fails there with [`ChainError::Reverted`] before anything is sent.
    #[error("{op}: transaction {tx} failed on chain")]
    TxFailed {
        /// What was being done.
        op: &'static str,
        /// The transaction.
        tx: B256,
    },
    /// A transaction was not mined in time.
    #[error("{op}: transaction {tx} not confirmed after {waited:?}")]
    NotConfirmed {
        /// What was being done.
        op: &'static str,
        /// The transaction.
        tx: B256,
        /// How long it was waited for.
        waited: Duration,
    },
    /// Data on chain or from the node could not be decoded.
    #[error("{op}: undecodable: {message}")]
    Decode {
        /// What was being decoded.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Batch data that does not decode or does not match its commitment.
    #[error(transparent)]
    BatchData(#[from] BatchDataError),
    /// Something the chain says contradicts what this side knows (a model whose program
    /// does not give its id, a game the local referee refuses to replay).
    #[error("{0}")]
    Inconsistent(String),
    /// A local failure (executing a model, building a proof).
    #[error("{0}")]
    Local(String),
}

impl ChainError {
    /// How to recover from this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Rpc { kind, .. } => *kind,
            Self::NotConfirmed { .. } | Self::TxFailed { .. } => ErrorKind::Temporary,
            _ => ErrorKind::Critical,
        }
    }

    /// Whether a retry may help.
    pub fn is_temporary(&self) -> bool {
        self.kind() == ErrorKind::Temporary
    }
}

/// The result type of the chain layer.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// A 32-byte word as the chain sees it.
pub fn to_b256(h: H256) -> B256 {
    B256::from(h.0)
}

/// A 32-byte word as `inference` sees it.
pub fn to_h256(b: B256) -> H256 {
    H256(b.0)
}
