//! The batch data: what `postBatch(claimsRoot, count, data)` carries in its `data` argument
//! so that anyone can re-execute every claim of the batch (data availability).
//!
//! Format version 1, exactly as `docs/contracts.md` ("Claims and batches") and the
//! contract's `LibBatch` read it:
//!
//! ```text
//! data  = entry_0 || ... || entry_{count-1}
//! entry = requestId (32) || modelId (32) || inLen u32 || input || outLen u32 || output
//! input, output = type || little-endian data      (inLen, outLen: their byte lengths, big-endian)
//! type  = dtype u8 || rank u8 || dim u32...         (the op spec's type encoding)
//! ```
//!
//! Entry `i` is claim `i` of the batch: `(requestId, modelId, tensorHash(input),
//! tensorHash(output))`. The contract refuses data that does not reproduce the posted root
//! and count; readers check again ([`BatchData::check_commitment`]), since the data of a
//! batch posted through another contract, or by a future contract version, is not checked
//! by this build's assumptions.

use crate::claim::{BatchCommitment, Claim, commit_batch};
use inference::commit::try_tensor_hash;
use inference::merkle::H256;
use inference::program::{dtype_of_code, encode_type};
use inference::tensor::{Tensor, TensorType};

/// The batch data format version this build writes and reads.
pub const BATCH_DATA_VERSION: u8 = 1;

/// The largest tensor a batch entry may declare, in elements (guards allocations when
/// decoding untrusted calldata).
pub const MAX_ENTRY_ELEMENTS: usize = 1 << 26;

/// Why batch data could not be read. Every variant is bad data posted on chain: reported,
/// never retried.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchDataError {
    /// Entry `entry` runs past the end of the data.
    #[error("batch data truncated in entry {entry}")]
    Truncated {
        /// The entry (from 0).
        entry: usize,
    },
    /// An entry's tensor is malformed.
    #[error("entry {entry}: {what}: {reason}")]
    Tensor {
        /// The entry.
        entry: usize,
        /// `input` or `output`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The data gives a different claim count than posted.
    #[error("the data holds {got} claims, the batch was posted with {expected}")]
    CountMismatch {
        /// The posted count.
        expected: u32,
        /// Entries in the data.
        got: usize,
    },
    /// The data gives a different claims root than posted.
    #[error("the data gives claims root {got}, the batch was posted with {expected}")]
    RootMismatch {
        /// The posted root.
        expected: H256,
        /// The root of the claims derived from the data.
        got: H256,
    },
}

/// One claim with its input and output tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The request id word.
    pub request_id: H256,
    /// The model id.
    pub model_id: H256,
    /// The program input.
    pub input: Tensor,
    /// The claimed output.
    pub output: Tensor,
}

impl BatchEntry {
    /// The claim this entry commits to.
    pub fn claim(&self) -> Result<Claim, BatchDataError> {
        let hash = |t: &Tensor, what| {
            try_tensor_hash(t).map_err(|e| BatchDataError::Tensor {
                entry: 0,
                what,
                reason: e.to_string(),
            })
        };
        Ok(Claim {
            request_id: self.request_id,
            model_id: self.model_id,
            input_hash: hash(&self.input, "input")?,
            output_hash: hash(&self.output, "output")?,
        })
    }
}

/// The decoded data of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchData {
    /// The entries, in claim order.
    pub entries: Vec<BatchEntry>,
}

/// Reads the op spec's type encoding.
pub fn decode_type(bytes: &[u8]) -> Result<TensorType, String> {
    let (&code, rest) = bytes.split_first().ok_or("empty type")?;
    let (&rank, dims) = rest.split_first().ok_or("type without a rank")?;
    if dims.len() != 4 * rank as usize {
        return Err(format!("rank {rank} with {} dimension bytes", dims.len()));
    }
    let dtype = dtype_of_code(code).map_err(|e| e.to_string())?;
    let shape: Vec<usize> = dims
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ENTRY_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} is above {MAX_ENTRY_ELEMENTS} elements"))?;
    let _ = numel;
    Ok(TensorType::new(dtype, shape))
}

fn tensor_of(entry: usize, what: &'static str, bytes: &[u8]) -> Result<Tensor, BatchDataError> {
    let err = |reason: String| BatchDataError::Tensor {
        entry,
        what,
        reason,
    };
    let rank = *bytes
        .get(1)
        .ok_or_else(|| err("type shorter than 2 bytes".into()))? as usize;
    let (ty, data) = bytes
        .split_at_checked(2 + 4 * rank)
        .ok_or_else(|| err(format!("type of rank {rank} is truncated")))?;
    let ty = decode_type(ty).map_err(err)?;
    let expected = ty.numel() * ty.dtype.size();
    if data.len() != expected {
        return Err(err(format!(
            "{} data bytes for {ty} ({expected} expected)",
            data.len()
        )));
    }
    Tensor::from_le_bytes(ty.dtype, ty.shape.clone(), data).map_err(|e| err(e.to_string()))
}

impl BatchData {
    /// Encodes the entries as `postBatch`'s `data`.
    pub fn encode(&self) -> Result<Vec<u8>, BatchDataError> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            out.extend_from_slice(&e.request_id.0);
            out.extend_from_slice(&e.model_id.0);
            for (what, t) in [("input", &e.input), ("output", &e.output)] {
                let err = |reason: String| BatchDataError::Tensor {
                    entry: i,
                    what,
                    reason,
                };
                let mut bytes = encode_type(&t.ty()).map_err(|e| err(e.to_string()))?;
                bytes.extend_from_slice(&t.to_le_bytes());
                let len = u32::try_from(bytes.len())
                    .map_err(|_| err(format!("{} bytes do not fit u32", bytes.len())))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        Ok(out)
    }

    /// Decodes `postBatch`'s `data`; never panics on untrusted bytes.
    pub fn decode(data: &[u8]) -> Result<Self, BatchDataError> {
        let mut entries = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let i = entries.len();
            let truncated = || BatchDataError::Truncated { entry: i };
            let (head, tail) = rest.split_at_checked(64).ok_or_else(truncated)?;
            rest = tail;
            let mut tensors = Vec::with_capacity(2);
            for what in ["input", "output"] {
                let (len, tail) = rest.split_at_checked(4).ok_or_else(truncated)?;
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let (bytes, tail) = tail.split_at_checked(len).ok_or_else(truncated)?;
                rest = tail;
                tensors.push(tensor_of(i, what, bytes)?);
            }
            let output = tensors.pop().ok_or_else(truncated)?;
            let input = tensors.pop().ok_or_else(truncated)?;
            entries.push(BatchEntry {
                request_id: H256::from_slice(&head[..32]).map_err(|_| truncated())?,
                model_id: H256::from_slice(&head[32..]).map_err(|_| truncated())?,
                input,
                output,
            });
        }
        Ok(Self { entries })
    }

    /// The claims the entries commit to, in order.
    pub fn claims(&self) -> Result<Vec<Claim>, BatchDataError> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.claim().map_err(|err| match err {
                    BatchDataError::Tensor { what, reason, .. } => BatchDataError::Tensor {
                        entry: i,
                        what,
                        reason,
                    },
                    other => other,
                })
            })
            .collect()
    }

    /// The claims and their commitment, checked against what the batch was posted with.
    pub fn check_commitment(
        &self,
        root: H256,
        count: u32,
    ) -> Result<(Vec<Claim>, BatchCommitment), BatchDataError> {
        if self.entries.len() != count as usize {
            return Err(BatchDataError::CountMismatch {
                expected: count,
                got: self.entries.len(),
            });
        }
        let claims = self.claims()?;
        let commitment = commit_batch(&claims);
        if commitment.root != root {
            return Err(BatchDataError::RootMismatch {
                expected: root,
                got: commitment.root,
            });
        }
        Ok((claims, commitment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> BatchEntry {
        BatchEntry {
            request_id: H256([i; 32]),
            model_id: H256([7; 32]),
            input: Tensor::from_i32(vec![2, 3], vec![1, 2, 3, 4, 5, i as i32]).unwrap(),
            output: Tensor::from_i8(vec![4], vec![-1, 0, 1, i as i8]).unwrap(),
        }
    }

    #[test]
    fn round_trip_and_commitment() {
        let data = BatchData {
            entries: (0..3).map(entry).collect(),
        };
        let bytes = data.encode().unwrap();
        let back = BatchData::decode(&bytes).unwrap();
        assert_eq!(back, data);
        let claims = data.claims().unwrap();
        let root = commit_batch(&claims).root;
        assert!(back.check_commitment(root, 3).is_ok());
        assert!(matches!(
            back.check_commitment(root, 2),
            Err(BatchDataError::CountMismatch { .. })
        ));
        assert!(matches!(
            back.check_commitment(H256([1; 32]), 3),
            Err(BatchDataError::RootMismatch { .. })
        ));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(BatchData::decode(&[]).unwrap().entries.len(), 0);
        assert!(matches!(
            BatchData::decode(&[0xff; 100]),
            Err(BatchDataError::Truncated { entry: 0 })
        ));
        let good = BatchData {
            entries: vec![entry(1)],
        }
        .encode()
        .unwrap();
        for cut in [1, 10, 40] {
            assert!(matches!(
                BatchData::decode(&good[..good.len() - cut]),
                Err(BatchDataError::Truncated { .. } | BatchDataError::Tensor { .. })
            ));
        }
        // A bad dtype code in the input type.
        let mut bad = good.clone();
        bad[68] = 9;
        assert!(matches!(
            BatchData::decode(&bad),
            Err(BatchDataError::Tensor {
                entry: 0,
                what: "input",
                ..
            })
        ));
        assert!(decode_type(&[3, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn layout_is_the_contract_s() {
        let e = entry(2);
        let bytes = BatchData {
            entries: vec![e.clone()],
        }
        .encode()
        .unwrap();
        assert_eq!(&bytes[..32], &[2; 32]);
        assert_eq!(&bytes[32..64], &[7; 32]);
        // input: i32 [2, 3] -> type 1 + 1 + 8 bytes, data 24 bytes.
        assert_eq!(&bytes[64..68], &34u32.to_be_bytes());
        assert_eq!(&bytes[68..78], &[3, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
        let out_at = 68 + 34;
        assert_eq!(&bytes[out_at..out_at + 4], &(6u32 + 4).to_be_bytes());
        assert_eq!(bytes.len(), out_at + 4 + 10);
    }
}
