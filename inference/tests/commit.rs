//! Merkle proofs and commitments: round trips, tampering, and golden hashes.
//!
//! The golden values were computed independently of this crate, by a pure-Python
//! Keccak-256 and the byte layouts of `commit.rs`'s module docs; a change here is a
//! change of the on-chain format.

use inference::commit::{
    ActivationRoots, ActivationTable, activations_root, execution_state, incremental_roots,
    leaf_count, model_id, prove_slot, prove_tensor_leaf, prove_tensor_range, prove_weight,
    tensor_data_root, tensor_data_tree, tensor_hash, tensor_hash_from_root, tensor_leaf,
    try_tensor_hash, weights_root,
};
use inference::merkle::{
    H256, MerkleProof, MerkleTree, RangeProof, chunk_leaves, chunked_root, hash_pair, keccak256,
    leaf_hash, merkle_root, zero_hash,
};
use inference::{DType, Error, Tensor, TensorType};
use proptest::prelude::*;

fn leaves(n: usize, salt: u8) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut leaf = [salt; 32];
            leaf[..8].copy_from_slice(&(i as u64).to_be_bytes());
            leaf
        })
        .collect()
}

fn h(s: &str) -> H256 {
    s.parse().unwrap()
}

fn flip(h: H256) -> H256 {
    let mut b = h.0;
    b[31] ^= 1;
    H256(b)
}

#[test]
fn zero_hashes_anchor_the_keccak_variant() {
    let mut zero = [0u8; 32];
    assert_eq!(zero_hash(0), keccak256(&zero));
    assert_eq!(
        zero_hash(0),
        h("0x290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563")
    );
    assert_eq!(
        zero_hash(1),
        h("0x633dc4d7da7256660a892f8f1604a44b5432649cc8ec5cb3ced4c4e6ac94dd1d")
    );
    for d in 1..=64 {
        assert_eq!(
            zero_hash(d),
            hash_pair(&zero_hash(d - 1), &zero_hash(d - 1))
        );
    }
    zero[0] = 1;
    assert_ne!(keccak256(&zero), zero_hash(0));
}

#[test]
fn golden_tensor_hashes() {
    let i8s = Tensor::from_i8([2, 32], (0..64).collect()).unwrap();
    assert_eq!(
        tensor_hash(&i8s),
        h("0xc89220aa3c4a41151c0497f75b24739f78d109de3f51cd73818fc3918f46c4f8")
    );
    let i32s = Tensor::from_i32(
        [3, 3],
        vec![
            -1,
            0,
            1,
            i32::MAX,
            i32::MIN,
            123_456_789,
            -987_654_321,
            42,
            7,
        ],
    )
    .unwrap();
    assert_eq!(
        tensor_hash(&i32s),
        h("0xaffbec16f16f75ea34deb4e0197064c27239472be5cfea0e81767e8591507b7c")
    );
    let empty = Tensor::from_i16([0], vec![]).unwrap();
    assert_eq!(
        tensor_hash(&empty),
        h("0x02c2c3a208d5bcbea43f3a16771eac72a4f0890c3179f498989c260fe6f14a77")
    );
    let i16s = Tensor::from_i16([17], (-300..300).step_by(37).collect()).unwrap();
    assert_eq!(
        tensor_hash(&i16s),
        h("0x0735d07f28dce99dabfdcccf7f14d987515057eff376dd40547b39a5cbc8a4ab")
    );
    let scalar = Tensor::from_i8(Vec::<usize>::new(), vec![5]).unwrap();
    assert_eq!(
        tensor_hash(&scalar),
        h("0x02bb81d85f009be95b53f55e28d9a1c337ee7ddda76d5b40be98b695121bc608")
    );

    let (a, b) = (tensor_hash(&i8s), tensor_hash(&empty));
    let weights = weights_root(&[a, b, a]);
    assert_eq!(
        weights,
        h("0x0c85b994cff9a9f9a8618223da19b0731c5f2edf94251c608dc19a4e0abd0a46")
    );
    let activations = activations_root(&[a], 5).unwrap();
    assert_eq!(
        activations,
        h("0x9563a157272f8671944208ebf6970eff732c5ac122148aaeebeac4b7127c0970")
    );
    assert_eq!(
        execution_state(weights, activations),
        h("0xe8944f9492246658d0be420cd1ca1347dce35b54d301f72aae751e57bcfa3a2f")
    );
    assert_eq!(
        model_id(keccak256(b"program"), weights),
        h("0xa1827f5d2a15dfbaa6f349ef19a3558bd74daec51ebde97eac1c4b30e86e6a17")
    );
}

#[test]
fn tensor_hash_layout() {
    let t = Tensor::from_i16([2, 3], vec![1, -2, 3, -4, 5, -6]).unwrap();
    let root = tensor_data_root(&t);
    let mut bytes = vec![2u8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
    bytes.extend_from_slice(root.as_bytes());
    assert_eq!(tensor_hash(&t), keccak256(&bytes));
    assert_eq!(root, merkle_root(&chunk_leaves(&t.to_le_bytes())));
    // Same bytes, other dtype or shape: other hash.
    let as_i8 = Tensor::from_le_bytes(DType::I8, [12], &t.to_le_bytes()).unwrap();
    assert_eq!(tensor_data_root(&as_i8), root);
    assert_ne!(tensor_hash(&as_i8), tensor_hash(&t));
    assert_ne!(
        tensor_hash(&t.clone().reshaped(vec![3, 2]).unwrap()),
        tensor_hash(&t)
    );
}

#[test]
fn uncommittable_shapes_are_errors() {
    let root = zero_hash(0);
    let deep = TensorType::new(DType::I8, vec![1; 256]);
    assert!(matches!(
        tensor_hash_from_root(&deep, root),
        Err(Error::Param(_))
    ));
    let rank255 = TensorType::new(DType::I8, vec![1; 255]);
    assert!(tensor_hash_from_root(&rank255, root).is_ok());
    let wide = TensorType::new(DType::I8, vec![0, u32::MAX as usize + 1]);
    assert!(matches!(
        tensor_hash_from_root(&wide, root),
        Err(Error::Param(_))
    ));
    let t = Tensor::from_i8(vec![0, u32::MAX as usize + 1], vec![]).unwrap();
    assert!(try_tensor_hash(&t).is_err());
}

#[test]
fn empty_tensor() {
    let t = Tensor::from_i16([0], vec![]).unwrap();
    assert_eq!(leaf_count(&t.ty()), 1);
    assert_eq!(tensor_leaf(&t, 0).unwrap(), [0; 32]);
    assert!(tensor_leaf(&t, 1).is_err());
    assert_eq!(tensor_data_root(&t), zero_hash(0));
    let tree = tensor_data_tree(&t);
    assert_eq!(
        (tree.depth(), tree.width(), tree.root()),
        (0, 1, zero_hash(0))
    );
    let (leaf, proof) = prove_tensor_leaf(&t, 0).unwrap();
    assert!(proof.siblings.is_empty());
    proof.verify(zero_hash(0), &leaf).unwrap();
    assert_eq!(chunk_leaves(&[]), vec![[0; 32]]);
    assert_eq!(chunked_root(&[]), zero_hash(0));
}

#[test]
fn leaf_counts() {
    for (dtype, n, leaves) in [
        (DType::I8, 32, 1),
        (DType::I8, 33, 2),
        (DType::I16, 16, 1),
        (DType::I16, 17, 2),
        (DType::I32, 8, 1),
        (DType::I32, 9, 2),
        (DType::I32, 0, 1),
        (DType::I8, 1000, 32),
    ] {
        assert_eq!(
            leaf_count(&TensorType::new(dtype, [n])),
            leaves,
            "{dtype} x {n}"
        );
    }
}

#[test]
fn every_leaf_of_trees_up_to_33_proves() {
    for n in 1..=33 {
        let l = leaves(n, 7);
        let tree = MerkleTree::new(l.clone());
        assert_eq!(tree.root(), merkle_root(&l), "n = {n}");
        assert_eq!(tree.leaf_count(), n);
        assert_eq!(tree.width(), n.next_power_of_two());
        assert_eq!(1 << tree.depth(), tree.width());
        let root = tree.root();
        for i in 0..tree.width() {
            let leaf = l.get(i).copied().unwrap_or([0; 32]);
            let proof = tree.prove(i).unwrap();
            assert_eq!(proof.siblings.len() as u32, tree.depth());
            proof.verify(root, &leaf).unwrap();
            assert_eq!(proof.compute_root(&leaf), root);

            let mut bad_leaf = leaf;
            bad_leaf[5] ^= 0x80;
            assert!(matches!(
                proof.verify(root, &bad_leaf),
                Err(Error::Proof(_))
            ));
            for k in 0..proof.siblings.len() {
                let mut bad = proof.clone();
                bad.siblings[k] = flip(bad.siblings[k]);
                assert!(
                    bad.verify(root, &leaf).is_err(),
                    "n = {n}, i = {i}, sibling {k}"
                );
            }
            if tree.depth() > 0 {
                // Another index: the same leaf (if distinct) is not there.
                let other = MerkleProof {
                    index: proof.index ^ 1,
                    ..proof.clone()
                };
                let other_leaf = l.get(i ^ 1).copied().unwrap_or([0; 32]);
                if other_leaf != leaf {
                    assert!(other.verify(root, &leaf).is_err());
                }
            }
            // Index bits beyond the depth are rejected, not ignored.
            let high = MerkleProof {
                index: proof.index | 1 << tree.depth(),
                ..proof.clone()
            };
            assert!(high.verify(root, &leaf).is_err());
            assert!(proof.verify(flip(root), &leaf).is_err());
        }
        assert!(tree.prove(tree.width()).is_err());
    }
}

#[test]
fn single_leaf_tree() {
    let l = leaves(1, 3);
    let tree = MerkleTree::new(l.clone());
    assert_eq!(tree.root(), leaf_hash(&l[0]));
    assert_eq!(tree.root(), keccak256(&l[0]));
    let range = tree.prove_range(0, 1).unwrap();
    assert!(range.siblings.is_empty());
    range.verify(tree.root(), &l).unwrap();
}

#[test]
fn internal_nodes_prove_against_the_root() {
    let tree = MerkleTree::new(leaves(13, 1));
    let root = tree.root();
    for level in 0..=tree.depth() {
        for index in 0..tree.width() >> level {
            let node = tree.node(level, index).unwrap();
            let proof = tree.prove_node(level, index).unwrap();
            proof.verify_node(root, node).unwrap();
            proof
                .verify_node_at(root, tree.depth(), level, node)
                .unwrap();
            assert!(proof.verify_node(root, flip(node)).is_err());
            if level > 0 {
                assert!(
                    proof
                        .verify_node_at(root, tree.depth(), level - 1, node)
                        .is_err()
                );
            }
        }
        // A node is the hash of its children.
        if level > 0 && level < tree.depth() {
            let node = tree.node(level, 1).unwrap();
            let (l, r) = (
                tree.node(level - 1, 2).unwrap(),
                tree.node(level - 1, 3).unwrap(),
            );
            assert_eq!(node, hash_pair(&l, &r));
        }
    }
}

#[test]
fn tensor_leaf_and_range_proofs() {
    let t = Tensor::from_i32([5, 7], (0..35).map(|i| i * 1_000_003 - 17).collect()).unwrap();
    let root = tensor_data_root(&t);
    let n = leaf_count(&t.ty());
    assert_eq!(n, 5);
    for i in 0..n {
        let (leaf, proof) = prove_tensor_leaf(&t, i).unwrap();
        assert_eq!(leaf, tensor_leaf(&t, i).unwrap());
        proof.verify(root, &leaf).unwrap();
    }
    // The last leaf holds 3 elements and 20 zero bytes of padding.
    assert_eq!(tensor_leaf(&t, 4).unwrap()[12..], [0; 20]);
    let (range, proof) = prove_tensor_range(&t, 1, 5).unwrap();
    assert_eq!(range.len(), 4);
    proof.verify(root, &range).unwrap();
    assert!(prove_tensor_range(&t, 2, 2).is_err());
    assert!(prove_tensor_range(&t, 0, 6).is_err());
    assert!(prove_tensor_leaf(&t, 5).is_err());
}

#[test]
fn range_proofs_reject_malformed_input() {
    let l = leaves(11, 9);
    let tree = MerkleTree::new(l.clone());
    let root = tree.root();
    let proof = tree.prove_range(3, 9).unwrap();
    proof.verify(root, &l[3..9]).unwrap();
    // Wrong leaf count, shifted range, wrong depth, extra or missing siblings.
    assert!(proof.verify(root, &l[3..8]).is_err());
    assert!(
        RangeProof {
            start: 4,
            end: 10,
            ..proof.clone()
        }
        .verify(root, &l[4..10])
        .is_err()
    );
    assert!(
        RangeProof {
            depth: 5,
            ..proof.clone()
        }
        .verify(root, &l[3..9])
        .is_err()
    );
    let mut extra = proof.clone();
    extra.siblings.push(zero_hash(0));
    assert!(matches!(extra.verify(root, &l[3..9]), Err(Error::Proof(_))));
    let mut short = proof.clone();
    short.siblings.pop();
    assert!(matches!(short.verify(root, &l[3..9]), Err(Error::Proof(_))));
    assert!(
        RangeProof {
            start: 3,
            end: 3,
            ..proof.clone()
        }
        .verify(root, &[])
        .is_err()
    );
    assert!(
        RangeProof {
            depth: 65,
            ..proof.clone()
        }
        .verify(root, &l[3..9])
        .is_err()
    );
    assert!(tree.prove_range(5, 5).is_err());
    assert!(tree.prove_range(0, 17).is_err());
    tree.prove_range(0, 16)
        .unwrap()
        .verify(root, &{
            let mut padded = l.clone();
            padded.resize(16, [0; 32]);
            padded
        })
        .unwrap();
}

#[test]
fn proofs_travel_as_json() {
    let tree = MerkleTree::new(leaves(6, 2));
    let proof = tree.prove(4).unwrap();
    let json = serde_json::to_string(&proof).unwrap();
    assert!(
        json.starts_with("{\"index\":4,\"siblings\":[\"0x"),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<MerkleProof>(&json).unwrap(), proof);
    let range = tree.prove_range(1, 4).unwrap();
    let json = serde_json::to_string(&range).unwrap();
    assert_eq!(serde_json::from_str::<RangeProof>(&json).unwrap(), range);
    assert!(serde_json::from_str::<H256>("\"0x1234\"").is_err());
}

#[test]
fn incremental_activation_roots_equal_from_scratch() {
    let hashes: Vec<H256> = (0..300u32).map(|i| keccak256(&i.to_be_bytes())).collect();
    for slot_count in [1, 2, 3, 255, 256, 257, 300, 301, 512, 1000] {
        let set = slot_count.min(hashes.len());
        let roots = incremental_roots(&hashes[..set], slot_count).unwrap();
        assert_eq!(roots.len(), set);
        for (i, root) in roots.iter().enumerate() {
            assert_eq!(*root, activations_root(&hashes[..=i], slot_count).unwrap());
        }
        // From scratch: the Merkle root over the explicit table.
        let mut table: Vec<[u8; 32]> = hashes[..set].iter().map(|h| h.0).collect();
        table.resize(slot_count, [0; 32]);
        assert_eq!(roots[set - 1], merkle_root(&table));
        assert_eq!(
            activations_root(&[], slot_count).unwrap(),
            zero_hash(slot_count.next_power_of_two().trailing_zeros())
        );
    }
    assert!(activations_root(&hashes[..3], 2).is_err());
    assert!(incremental_roots(&hashes[..3], 2).is_err());

    // The trace's view: a table exactly as large as the slots.
    let roots = ActivationRoots::new(&hashes);
    assert_eq!(roots.len(), hashes.len());
    assert_eq!(
        roots.roots(),
        incremental_roots(&hashes, hashes.len()).unwrap()
    );
    assert_eq!(
        roots.root(0),
        Some(activations_root(&hashes[..1], 300).unwrap())
    );
    assert_eq!(roots.root(300), None);
    assert_eq!(
        ActivationRoots::with_slot_count(&hashes[..5], 9)
            .unwrap()
            .roots(),
        incremental_roots(&hashes[..5], 9).unwrap()
    );
    assert!(ActivationRoots::new(&[]).is_empty());
}

#[test]
fn activation_roots_of_a_long_program_are_fast() {
    // 5000 ops: O(n log n) hashes, well under a second even in a debug build.
    let hashes: Vec<H256> = (0..5001u32).map(|i| keccak256(&i.to_be_bytes())).collect();
    let started = std::time::Instant::now();
    let roots = ActivationRoots::new(&hashes);
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        roots.root(5000),
        Some(activations_root(&hashes, 5001).unwrap())
    );
    assert_eq!(
        roots.root(2500),
        Some(activations_root(&hashes[..2501], 5001).unwrap())
    );
}

#[test]
fn activation_table_updates_and_slot_proofs() {
    let hashes: Vec<H256> = (0..9u8).map(|i| keccak256(&[i])).collect();
    let mut table = ActivationTable::new(12).unwrap();
    assert_eq!(table.depth(), 4);
    assert_eq!(table.root(), activations_root(&[], 12).unwrap());
    for (j, hash) in hashes.iter().enumerate() {
        table.set(j, *hash).unwrap();
    }
    let root = activations_root(&hashes, 12).unwrap();
    assert_eq!(table.root(), root);
    assert_eq!(table, ActivationTable::from_slots(&hashes, 12).unwrap());
    for slot in 0..12 {
        let proof = prove_slot(&hashes, 12, slot).unwrap();
        assert_eq!(proof, table.prove(slot).unwrap());
        let value = hashes.get(slot).copied().unwrap_or(H256::ZERO);
        assert_eq!(table.get(slot).unwrap(), value);
        proof.verify(root, &value.0).unwrap();
        assert!(proof.verify(root, &flip(value).0).is_err());
    }
    assert!(prove_slot(&hashes, 12, 12).is_err());
    assert!(table.set(12, hashes[0]).is_err());
    // Clearing a slot gives back the earlier root.
    table.set(8, H256::ZERO).unwrap();
    assert_eq!(table.root(), activations_root(&hashes[..8], 12).unwrap());
    // The state binds both roots.
    let w = weights_root(&hashes[..2]);
    assert_ne!(execution_state(w, root), execution_state(root, w));
}

#[test]
fn weight_proofs() {
    let hashes: Vec<H256> = (0..5u8).map(|i| keccak256(&[i, i])).collect();
    let root = weights_root(&hashes);
    for (i, hash) in hashes.iter().enumerate() {
        prove_weight(&hashes, i)
            .unwrap()
            .verify(root, &hash.0)
            .unwrap();
    }
    assert!(prove_weight(&hashes, 5).is_err());
    assert_eq!(weights_root(&[]), zero_hash(0));
    assert_eq!(weights_root(&hashes[..1]), keccak256(hashes[0].as_bytes()));
}

#[test]
fn large_tensor_root_matches_tree() {
    // Crosses the parallel split (2^11 leaves) on both the fast path and the tree.
    let t = Tensor::from_i8([70_001], (0..70_001).map(|i| (i % 253) as i8).collect()).unwrap();
    let leaves = chunk_leaves(&t.to_le_bytes());
    assert_eq!(tensor_data_root(&t), tensor_data_tree(&t).root());
    assert_eq!(tensor_data_root(&t), merkle_root(&leaves));
    assert_eq!(chunked_root(&t.to_le_bytes()), merkle_root(&leaves));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_ranges_verify(n in 1usize..200, a in 0usize..256, b in 0usize..256, salt: u8) {
        let l = leaves(n, salt);
        let tree = MerkleTree::new(l.clone());
        let width = tree.width();
        let (start, end) = { let (x, y) = (a % width, b % width); (x.min(y), x.max(y) + 1) };
        let mut padded = l.clone();
        padded.resize(width, [0; 32]);
        let range = &padded[start..end];
        let proof = tree.prove_range(start, end).unwrap();
        prop_assert_eq!(proof.compute_root(range).unwrap(), tree.root());
        proof.verify(tree.root(), range).unwrap();
        // Tamper one leaf, or one sibling: the root changes.
        let mut bad = range.to_vec();
        let k = a % bad.len();
        bad[k][31] ^= 1;
        prop_assert!(proof.verify(tree.root(), &bad).is_err());
        if !proof.siblings.is_empty() {
            let mut bad = proof.clone();
            let k = b % bad.siblings.len();
            bad.siblings[k] = flip(bad.siblings[k]);
            prop_assert!(bad.verify(tree.root(), range).is_err());
        }
        // JSON round trip.
        let json = serde_json::to_string(&proof).unwrap();
        prop_assert_eq!(serde_json::from_str::<RangeProof>(&json).unwrap(), proof);
    }

    #[test]
    fn fast_root_equals_tree_root(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let leaves = chunk_leaves(&bytes);
        let tree = MerkleTree::new(leaves.clone());
        prop_assert_eq!(merkle_root(&leaves), tree.root());
        prop_assert_eq!(chunked_root(&bytes), tree.root());
        let t = Tensor::from_le_bytes(DType::I8, [bytes.len()], &bytes).unwrap();
        prop_assert_eq!(tensor_data_root(&t), tree.root());
    }

    #[test]
    fn h256_round_trips(bytes: [u8; 32]) {
        let h = H256(bytes);
        prop_assert_eq!(h.to_string().parse::<H256>().unwrap(), h);
        let json = serde_json::to_string(&h).unwrap();
        prop_assert_eq!(serde_json::from_str::<H256>(&json).unwrap(), h);
    }
}
