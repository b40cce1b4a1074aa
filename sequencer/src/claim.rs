//! Claims and batch commitments.
//!
//! A claim says "request `requestId` run on model `modelId` with input `inputHash` gave
//! `outputHash`" (the hashes are the op spec's tensor hashes). Its Merkle leaf is fixed, the
//! Solidity side computes exactly the same bytes:
//!
//! ```text
//! leaf = keccak256(abi.encode(requestId, modelId, inputHash, outputHash))
//!      = keccak256(requestId || modelId || inputHash || outputHash)   (4 x 32 bytes)
//! ```
//!
//! A batch is the [`inference::merkle`] tree over its claims' 32-byte leaves (so each leaf is
//! hashed once more, `keccak256(leaf)`, and the count is padded to a power of two with zero
//! leaves), plus one inclusion proof per claim.

use inference::merkle::{H256, MerkleProof, MerkleTree, keccak256};
use serde::{Deserialize, Serialize};

/// One request's result commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The request id as a 32-byte word: the on-chain id of an on-chain request,
    /// [`http_request_id`] for an HTTP request.
    pub request_id: H256,
    /// The model id of the program that ran (one bucket of a family).
    pub model_id: H256,
    /// The tensor hash of the program input.
    pub input_hash: H256,
    /// The tensor hash of the program output.
    pub output_hash: H256,
}

impl Claim {
    /// `abi.encode(requestId, modelId, inputHash, outputHash)`: the four words concatenated.
    pub fn abi_encode(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        for (chunk, word) in out.chunks_exact_mut(32).zip([
            &self.request_id,
            &self.model_id,
            &self.input_hash,
            &self.output_hash,
        ]) {
            chunk.copy_from_slice(word.as_bytes());
        }
        out
    }

    /// The claim's 32-byte Merkle leaf: `keccak256(abi.encode(..))`.
    pub fn leaf(&self) -> [u8; 32] {
        keccak256(&self.abi_encode()).0
    }
}

/// The 32-byte word of a sequencer-assigned request number (`uint256(id)`, big-endian).
pub fn request_word(id: u64) -> H256 {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&id.to_be_bytes());
    H256(word)
}

/// The claim id of a request a sequencer accepted over HTTP:
/// `keccak256(abi.encode(sequencer, uint256(local_id)))`, so that two sequencers' HTTP
/// requests, or an HTTP request and an on-chain one (`keccak256(abi.encode(chainid, rollup,
/// nonce))`), never share an id. `sequencer` is the address the sequencer posts from (zero
/// when it runs without a chain).
pub fn http_request_id(sequencer: [u8; 20], local_id: u64) -> H256 {
    let mut bytes = [0u8; 64];
    bytes[12..32].copy_from_slice(&sequencer);
    bytes[32..].copy_from_slice(&request_word(local_id).0);
    keccak256(&bytes)
}

/// A batch's commitment: its root and every claim's inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCommitment {
    /// The Merkle root over the claims' leaves.
    pub root: H256,
    /// Proof `i` places claim `i`'s leaf under [`BatchCommitment::root`].
    pub proofs: Vec<MerkleProof>,
}

/// Commits to `claims` in order. An empty batch has the root of one zero leaf.
pub fn commit_batch(claims: &[Claim]) -> BatchCommitment {
    let tree = MerkleTree::new(claims.iter().map(Claim::leaf).collect());
    let proofs = (0..claims.len())
        // Every index below the leaf count exists in the tree.
        .filter_map(|i| tree.prove(i).ok())
        .collect();
    BatchCommitment {
        root: tree.root(),
        proofs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(i: u8) -> Claim {
        Claim {
            request_id: request_word(u64::from(i)),
            model_id: H256([i; 32]),
            input_hash: H256([i.wrapping_add(1); 32]),
            output_hash: H256([i.wrapping_add(2); 32]),
        }
    }

    #[test]
    fn leaf_is_keccak_of_the_four_words() {
        let c = claim(7);
        let mut bytes = Vec::new();
        for w in [c.request_id, c.model_id, c.input_hash, c.output_hash] {
            bytes.extend_from_slice(&w.0);
        }
        assert_eq!(c.leaf(), keccak256(&bytes).0);
        assert_eq!(&c.abi_encode()[..], &bytes[..]);
        assert_eq!(request_word(258).0[30..], [1, 2]);
    }

    #[test]
    fn http_ids_are_keccak_of_address_and_local_id() {
        // keccak256(abi.encode(address(0x11..11), uint256(5))) computed independently of
        // this function: 12 zero bytes, the address, then the id as a 32-byte word.
        let mut encoded = vec![0u8; 12];
        encoded.extend_from_slice(&[0x11; 20]);
        encoded.extend_from_slice(&[0u8; 31]);
        encoded.push(5);
        assert_eq!(http_request_id([0x11; 20], 5), keccak256(&encoded));
        assert_ne!(
            http_request_id([0x11; 20], 5),
            http_request_id([0x22; 20], 5)
        );
        assert_ne!(http_request_id([0; 20], 5), request_word(5));
    }

    #[test]
    fn proofs_verify_against_the_root() {
        for n in [1usize, 2, 3, 5, 8, 13] {
            let claims: Vec<Claim> = (0..n as u8).map(claim).collect();
            let batch = commit_batch(&claims);
            assert_eq!(batch.proofs.len(), n);
            for (c, p) in claims.iter().zip(&batch.proofs) {
                p.verify(batch.root, &c.leaf()).unwrap();
            }
            // Padding leaves are zero: the root equals the tree over the padded leaves.
            let mut leaves: Vec<[u8; 32]> = claims.iter().map(Claim::leaf).collect();
            leaves.resize(n.next_power_of_two(), [0; 32]);
            assert_eq!(MerkleTree::new(leaves).root(), batch.root);
        }
    }
}
