//! The sequencer's tables and the records stored in them.

use crate::claim::Claim;
use crate::storage::{Schema, Table};
use inference::DType;
use inference::merkle::{H256, MerkleProof};
use serde::{Deserialize, Serialize};

/// The schema version this build writes; a database of another version is refused.
///
/// Version 2: requests carry their claim id (`request_id`) and origin (`on_chain`); the
/// `RequestIds` index. Version 3: hashes are stored as their 32 bytes instead of 66
/// characters of hex; a version 2 database reads as it is (each hash decodes from either
/// form) and becomes version 3 when opened. Version 4: a request's status and batch, once it
/// is batched, live in [`RequestStates`] and a batch's signed transaction in [`BatchTxs`],
/// so that batching, posting and fee bumps no longer rewrite whole request records and the
/// transaction (about 23 KB written a request in all, half of it by the batching side, on
/// `bench_serve` with posting); an older database reads as it is (a request without a state
/// entry keeps its record's status, a batch record with its transaction inline keeps it).
pub const SCHEMA_VERSION: u64 = 4;

/// The oldest schema version this build reads.
pub const READABLE_FROM: u64 = 2;

/// Byte vectors as serde bytes rather than a sequence of `u8`: postcard writes both the same
/// way (the length, then the bytes), so stored records read unchanged, but a record is
/// encoded and decoded with one copy instead of a call per byte (an output is 1.5 KB, a
/// batch's signed transaction over 100 KB, and both are decoded and re-encoded as their
/// records move through their states).
mod bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// Declares a table type.
macro_rules! table {
    ($(#[$doc:meta])* $name:ident: $key:ty => $value:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        impl Table for $name {
            const NAME: &'static str = stringify!($name);
            type Key = $key;
            type Value = $value;
        }
    };
}

table!(
    /// Every accepted request, by request number.
    Requests: u64 => RequestRecord
);
table!(
    /// The part of a stored request that changes after it is executed: its status and batch,
    /// written by batching, posting and games in place of the whole record (its input and
    /// output: about 2 KB for MiniLM). A request without an entry has its record's status
    /// and batch.
    RequestStates: u64 => RequestState
);
table!(
    /// Request numbers by claim id (an on-chain request id, or an HTTP request's
    /// `keccak256(abi.encode(sequencer, localId))`).
    RequestIds: H256 => u64
);
table!(
    /// Accepted requests not executed yet (the execution queue, rebuilt after a restart).
    ExecutionQueue: u64 => ()
);
table!(
    /// Executed requests not in a batch yet, with the time they were executed (ms).
    BatchQueue: u64 => u64
);
table!(
    /// Each executed request's claim and, once batched, its place in the batch.
    Claims: u64 => ClaimRecord
);
table!(
    /// Batches by number.
    Batches: u64 => BatchRecord
);
table!(
    /// The signed transaction of each batch that has one (signed or sent), written once a
    /// signing; the batch record keeps its hash and nonce only. Removed once the batch is
    /// posted, or back to ready after a revert.
    BatchTxs: u64 => SignedTx
);
table!(
    /// Batches the chain has not confirmed yet.
    UnpostedBatches: u64 => ()
);
table!(
    /// The earlier transactions of an unposted batch that a fee bump replaced (same nonce,
    /// lower fees), oldest first: any of them may still be mined instead of the current one.
    ReplacedTxs: u64 => Vec<H256>
);
table!(
    /// Dispute games against this sequencer's claims, by game number.
    Games: u64 => GameRecord
);
table!(
    /// How far each chain follower has read (by follower name).
    ChainCursors: String => ChainCursor
);
table!(
    /// Database metadata (schema version).
    Meta: String => u64
);

/// The sequencer's schema.
#[derive(Clone, Copy, Debug)]
pub struct SequencerTables;

impl Schema for SequencerTables {
    const TABLES: &'static [&'static str] = &[
        Requests::NAME,
        RequestStates::NAME,
        RequestIds::NAME,
        ExecutionQueue::NAME,
        BatchQueue::NAME,
        Claims::NAME,
        Batches::NAME,
        BatchTxs::NAME,
        UnpostedBatches::NAME,
        ReplacedTxs::NAME,
        Games::NAME,
        ChainCursors::NAME,
        Meta::NAME,
    ];
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Accepted (committed); executed or not, not in a batch yet.
    Pending,
    /// In a batch that is not posted yet.
    Batched,
    /// Its batch is on chain; the challenge window runs.
    Posted,
    /// Past the challenge window, or every game won: it never changes again.
    Final,
    /// A game against its claim is open.
    Disputed,
    /// Its claim lost a game.
    Invalidated,
    /// It could not be executed (the error says why); it is never batched.
    Failed,
}

impl RequestStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Batched => "batched",
            Self::Posted => "posted",
            Self::Final => "final",
            Self::Disputed => "disputed",
            Self::Invalidated => "invalidated",
            Self::Failed => "failed",
        }
    }
}

/// A request's status and batch once it is batched ([`RequestStates`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    /// Where it stands.
    pub status: RequestStatus,
    /// Its batch.
    pub batch: Option<u64>,
}

/// The input of a request as it was run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The text, if the request gave text.
    pub text: Option<String>,
    /// The token ids (from the tokenizer, or as given).
    pub tokens: Vec<u32>,
    /// The program's sequence length (bucket).
    pub seq_len: u32,
    /// The tensor hash of the program input.
    pub hash: H256,
}

/// A tensor as stored: dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRecord {
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<u32>,
    /// Row-major elements, each little-endian.
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    /// The tensor hash.
    pub hash: H256,
}

/// One accepted request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request number (local to this sequencer).
    pub id: u64,
    /// The claim id: the on-chain request id, or for an HTTP request
    /// [`crate::claim::http_request_id`] of this sequencer's address and `id`.
    pub request_id: H256,
    /// Whether it came from the rollup's `requestInference` rather than HTTP.
    pub on_chain: bool,
    /// Where it stands. In the `Requests` table, where it stood when executed: later moves
    /// (batched, posted, disputed, ...) are in [`RequestStates`], which every
    /// `SequencerDb` reader applies.
    pub status: RequestStatus,
    /// The model family's name.
    pub model: String,
    /// The model id of the bucket that runs it.
    pub model_id: H256,
    /// The input.
    pub input: InputRecord,
    /// The output, once executed.
    pub output: Option<TensorRecord>,
    /// Why execution failed, if it did.
    pub error: Option<String>,
    /// Its batch, once batched (in the `Requests` table: see `status`).
    pub batch: Option<u64>,
    /// Accepted at (ms since the Unix epoch).
    pub accepted_at_ms: u64,
    /// Executed at (ms since the Unix epoch).
    pub executed_at_ms: Option<u64>,
}

/// A claim's place in its batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The batch number.
    pub batch: u64,
    /// The claim's leaf index.
    pub index: u64,
    /// The proof against the batch's claims root.
    pub proof: MerkleProof,
}

/// A claim and, once batched, its inclusion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The claim.
    pub claim: Claim,
    /// Its place in a batch.
    pub inclusion: Option<Inclusion>,
}

/// A transaction signed for posting a batch, kept so a restart re-sends the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction hash.
    pub hash: H256,
    /// The signed, encoded transaction.
    #[serde(with = "bytes")]
    pub raw: Vec<u8>,
    /// The sender's nonce it uses.
    pub nonce: u64,
}

/// Where a batch stands on its way to the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    /// Built and committed; nothing signed yet.
    Ready,
    /// A transaction is signed and stored, maybe not sent.
    Signed(SignedTx),
    /// The transaction was handed to the chain at least once.
    Sent {
        /// The transaction.
        tx: SignedTx,
        /// When it was last sent (ms since the Unix epoch).
        sent_at_ms: u64,
    },
    /// Included on chain.
    Posted {
        /// The transaction hash.
        tx_hash: H256,
        /// The block that includes it.
        block: u64,
    },
}

impl BatchStatus {
    /// The lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Signed(_) => "signed",
            Self::Sent { .. } => "sent",
            Self::Posted { .. } => "posted",
        }
    }

    /// The transaction hash, once signed.
    pub fn tx_hash(&self) -> Option<H256> {
        match self {
            Self::Ready => None,
            Self::Signed(tx) | Self::Sent { tx, .. } => Some(tx.hash),
            Self::Posted { tx_hash, .. } => Some(*tx_hash),
        }
    }
}

/// A batch of claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch number.
    pub id: u64,
    /// Its requests, in leaf order.
    pub requests: Vec<u64>,
    /// The Merkle root over the claims' leaves.
    pub claims_root: H256,
    /// Where it stands.
    pub status: BatchStatus,
    /// Built at (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Signing attempts so far (a reverted transaction makes another).
    pub attempts: u32,
}

/// Where a dispute game stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GameStatus {
    /// Being played.
    Open,
    /// Won by this sequencer.
    Won,
    /// Lost by this sequencer.
    Lost,
}

/// A dispute game against one of this sequencer's claims (recorded by
/// [`crate::chain::watch`] before it plays the game).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameRecord {
    /// The game's on-chain id (32 bytes, big-endian).
    pub game_id: H256,
    /// The disputed claim's batch (its on-chain id).
    pub batch: u64,
    /// The disputed claim's index in the batch.
    pub index: u64,
    /// The disputed request, when it is one of this database's.
    pub request: Option<u64>,
    /// The challenger's address (20 bytes).
    pub challenger: Vec<u8>,
    /// Where it stands.
    pub status: GameStatus,
    /// The defender bond locked from the stake (wei).
    pub bond_wei: u128,
    /// The block the game opened in.
    pub opened_block: u64,
    /// Recorded at (ms since the Unix epoch).
    pub opened_at_ms: u64,
}

/// How far a chain follower has read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCursor {
    /// The last block fully processed.
    pub block: u64,
    /// Its hash, to notice reorgs.
    pub block_hash: H256,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Compress, Decompress};

    /// [`TensorRecord`] as written before its bytes were serde bytes.
    #[derive(Serialize, Deserialize)]
    struct TensorRecordSeq {
        dtype: DType,
        shape: Vec<u32>,
        data: Vec<u8>,
        hash: H256,
    }

    #[test]
    fn byte_fields_are_stored_as_before_and_read_back() {
        let data: Vec<u8> = (0..1536u32).map(|i| (i * 7 % 251) as u8).collect();
        let record = TensorRecord {
            dtype: DType::I32,
            shape: vec![1, 384],
            data: data.clone(),
            hash: H256([5; 32]),
        };
        let before = TensorRecordSeq {
            dtype: DType::I32,
            shape: vec![1, 384],
            data,
            hash: H256([5; 32]),
        };
        let bytes = record.compress().unwrap();
        assert_eq!(bytes, before.compress().unwrap());
        assert_eq!(TensorRecord::decompress(&bytes).unwrap(), record);
        // JSON (a sequence of numbers) reads back too.
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<TensorRecord>(&json).unwrap(), record);
        let tx = SignedTx {
            hash: H256([1; 32]),
            raw: vec![0xab; 100_000],
            nonce: 7,
        };
        assert_eq!(SignedTx::decompress(&tx.compress().unwrap()).unwrap(), tx);
    }

    /// [`TensorRecord`] as schema version 2 wrote it: the hash as its hex string.
    #[derive(Serialize)]
    struct TensorRecordHexHash {
        dtype: DType,
        shape: Vec<u32>,
        #[serde(with = "bytes")]
        data: Vec<u8>,
        hash: String,
    }

    #[test]
    fn hashes_are_stored_as_32_bytes_and_hex_ones_still_read() {
        let hash = H256(std::array::from_fn(|i| (i * 37 + 1) as u8));
        let record = TensorRecord {
            dtype: DType::I8,
            shape: vec![2],
            data: vec![1, 2],
            hash,
        };
        let bytes = record.compress().unwrap();
        let old = TensorRecordHexHash {
            dtype: DType::I8,
            shape: vec![2],
            data: vec![1, 2],
            hash: hash.to_string(),
        }
        .compress()
        .unwrap();
        // A length byte and 32 bytes instead of a length byte and 66 characters.
        assert_eq!(old.len() - bytes.len(), 34);
        assert!(bytes.ends_with(&hash.0));
        assert_eq!(TensorRecord::decompress(&bytes).unwrap(), record);
        assert_eq!(TensorRecord::decompress(&old).unwrap(), record, "v2 bytes");
        // Neither 32 bytes nor hex: a clear error, not a wrong hash.
        let mut bad = old.clone();
        let at = bad.len() - 66;
        bad[at + 5] = b'z';
        assert!(TensorRecord::decompress(&bad).is_err());
        // JSON keeps the hex string.
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["hash"], hash.to_string());
        assert_eq!(
            serde_json::from_value::<TensorRecord>(json).unwrap(),
            record
        );
    }
}
