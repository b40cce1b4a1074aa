//! The trace executor on the built-in demo model (every op of the spec): serving and
//! tracing agree, every op agrees with the reference on real activations, results do not
//! depend on the thread count, proofs verify, the model container round-trips, and the
//! commitments are pinned by a golden snapshot.

use inference::commit::{self, activations_root, execution_state, tensor_hash};
use inference::demo;
use inference::merkle::H256;
use inference::model::Model;
use inference::ops::reference;
use inference::program::Operand;
use inference::tensor::Tensor;
use inference::trace::{Trace, run};

fn input() -> Tensor {
    // Six tokens of eight: the mask has padding.
    demo::input(&demo::tokens("proofs")).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn serving_and_trace_agree_and_every_op_matches_the_reference() {
    let model = demo::model().unwrap();
    let (program, weights) = (model.program(), model.weights());
    let x = input();
    let served = run(program, weights, &x).unwrap();
    let trace = Trace::execute(program, weights, &x).unwrap();
    assert_eq!(&served, trace.output());
    assert_ops_match_the_reference(program, weights, &trace, None);
}

/// Every op's output in `trace` is the reference's on the trace's own operands (but op
/// `skip`'s, which a hook replaced).
fn assert_ops_match_the_reference(
    program: &inference::program::Program,
    weights: &inference::trace::Weights,
    trace: &Trace,
    skip: Option<usize>,
) {
    for (i, node) in program.ops.iter().enumerate() {
        if skip == Some(i + 1) {
            continue;
        }
        let operands: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|o| match *o {
                Operand::Slot(s) => trace.tensor(s as usize).unwrap(),
                Operand::Weight(w) => &weights.tensors()[w as usize],
            })
            .collect();
        let want = reference::execute(&node.op, &operands, &node.output).unwrap();
        assert_eq!(
            trace.tensor(i + 1).unwrap(),
            &want,
            "op {} ({})",
            i + 1,
            node.op.kind()
        );
    }
}

#[test]
fn demo_activations_are_not_degenerate() {
    // A demo whose activations all saturate or vanish would test nothing.
    let model = demo::model().unwrap();
    let trace = Trace::execute(model.program(), model.weights(), &input()).unwrap();
    for slot in 1..=trace.op_count() {
        let t = trace.tensor(slot).unwrap();
        let v = t.to_i64_vec();
        let distinct = v.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(
            distinct >= 2,
            "slot {slot} ({}) is constant",
            model.program().ops[slot - 1].op.kind()
        );
        let (lo, hi) = (t.dtype().min(), t.dtype().max());
        let saturated = v.iter().filter(|&&x| x == lo || x == hi).count();
        assert!(
            saturated * 2 < v.len().max(2),
            "slot {slot} is {saturated}/{} saturated",
            v.len()
        );
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let model = demo::model().unwrap();
    let x = input();
    let one = in_pool(1, || {
        Trace::execute(model.program(), model.weights(), &x)
            .unwrap()
            .states()
    });
    let four = in_pool(4, || {
        Trace::execute(model.program(), model.weights(), &x)
            .unwrap()
            .states()
    });
    assert_eq!(one, four);
    let a = in_pool(1, || run(model.program(), model.weights(), &x).unwrap());
    let b = in_pool(3, || run(model.program(), model.weights(), &x).unwrap());
    assert_eq!(a, b);
}

#[test]
fn states_and_proofs_verify() {
    let model = demo::model().unwrap();
    let x = input();
    let trace = Trace::execute(model.program(), model.weights(), &x).unwrap();
    let n = trace.op_count();
    let slots = n + 1;
    // s_0 from the model's weights root and the input hash alone, as the contract does.
    let s0 = execution_state(
        model.weights().root(),
        activations_root(&[tensor_hash(&x)], slots).unwrap(),
    );
    assert_eq!(trace.state(0).unwrap(), s0);
    // s_i differs from s_{i-1} exactly by slot i.
    let states = trace.states();
    assert_eq!(states.len(), n + 1);
    assert_eq!(
        states
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        n + 1,
        "states repeat"
    );
    for i in [1, n / 2, n] {
        let root = trace.activations_root(i).unwrap();
        assert_eq!(
            root,
            activations_root(&trace.slot_hashes()[..=i], slots).unwrap()
        );
        for slot in [0, i / 2, i] {
            let proof = trace.prove_slot(i, slot).unwrap();
            proof
                .verify(root, &trace.slot_hash(slot).unwrap().0)
                .unwrap();
            let mut wrong = trace.slot_hash(slot).unwrap().0;
            wrong[0] ^= 1;
            assert!(proof.verify(root, &wrong).is_err());
        }
        assert!(
            trace.prove_slot(i - 1, i).is_err(),
            "slot {i} is not written in state {}",
            i - 1
        );
        // A leaf of the op's output, proved against its data root, binds to its tensor hash.
        let t = trace.tensor(i).unwrap();
        let leaves = commit::leaf_count(&t.ty());
        let leaf = leaves - 1;
        let (bytes, proof) = trace.prove_leaf(i, leaf).unwrap();
        let data_root = commit::tensor_data_root(t);
        proof.verify(data_root, &bytes).unwrap();
        assert_eq!(
            commit::tensor_hash_from_root(&t.ty(), data_root).unwrap(),
            trace.slot_hash(i).unwrap()
        );
        let range = trace.prove_leaves(i, 0, leaves).unwrap();
        let all: Vec<[u8; 32]> = (0..leaves)
            .map(|l| commit::tensor_leaf(t, l).unwrap())
            .collect();
        range.verify(data_root, &all).unwrap();
    }
    let w = model.weights();
    for idx in [0, w.hashes().len() - 1] {
        w.prove(idx)
            .unwrap()
            .verify(w.root(), &w.hashes()[idx].0)
            .unwrap();
    }
    assert!(trace.state(n + 1).is_err());
}

#[test]
fn model_container_round_trips_and_refuses_tampering() {
    let model = demo::model().unwrap();
    let (program, weights, manifest) = model.to_bytes().unwrap();
    let back = Model::from_bytes(&program, &weights, &manifest).unwrap();
    assert_eq!(back.id(), model.id());
    assert_eq!(back.program(), model.program());

    let truncated =
        Model::from_bytes(&program, &weights[..weights.len() - 10], &manifest).unwrap_err();
    assert!(
        truncated.to_string().contains("weights.safetensors"),
        "{truncated}"
    );

    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["model_id"] = serde_json::json!(H256([7; 32]));
    let e = Model::from_bytes(&program, &weights, &serde_json::to_vec(&m).unwrap()).unwrap_err();
    assert!(e.to_string().contains("model_id"), "{e}");

    // A different program (one parameter changed) is a different model.
    let src = String::from_utf8(program.clone()).unwrap().replacen(
        "\"frac_bits\": 8",
        "\"frac_bits\": 7",
        1,
    );
    let e = Model::from_bytes(src.as_bytes(), &weights, &manifest).unwrap_err();
    assert!(e.to_string().contains("program_hash"), "{e}");

    let e = Model::from_bytes(b"{", &weights, &manifest).unwrap_err();
    assert!(e.to_string().contains("program JSON"), "{e}");

    let wrong_input = Tensor::from_i32(vec![1, demo::SEQ], vec![0; demo::SEQ]).unwrap();
    let e = run(model.program(), model.weights(), &wrong_input).unwrap_err();
    assert!(e.to_string().contains("the program takes"), "{e}");
}

/// Golden commitments of the demo model and trace. Any change to an op's semantics, the
/// program encoding, the weights or the hashing changes these: update them only for an
/// intended, documented change of the spec.
#[test]
fn golden_commitments() {
    let model = demo::model().unwrap();
    let trace = Trace::execute(model.program(), model.weights(), &input()).unwrap();
    let got = [
        ("program_hash", model.program_hash()),
        ("weights_root", model.weights().root()),
        ("model_id", model.id()),
        ("s_0", trace.state(0).unwrap()),
        ("s_n", trace.state(trace.op_count()).unwrap()),
        ("output", tensor_hash(trace.output())),
    ];
    let want = GOLDEN;
    for ((name, g), (wname, w)) in got.iter().zip(want) {
        assert_eq!(name, &wname);
        assert_eq!(g.to_string(), w, "{name} changed");
    }
}

const GOLDEN: [(&str, &str); 6] = [
    (
        "program_hash",
        "0x75c422af5537611ee10e9b24264b7c942d73c55eda87edb56981cdc50fe2cdd2",
    ),
    (
        "weights_root",
        "0xa1dc3b05f2ddc23420a32fe161602632af7eb6118aed90e4c30e7a7daecc7134",
    ),
    (
        "model_id",
        "0xd02e8d33be3d81264be174d7fbce4dd36c057f6cdd52e8d9124c2b1a6aa34677",
    ),
    (
        "s_0",
        "0xeb36c0f32ba0414c67c3505951a699202030e22d33616939d1892f480844ea14",
    ),
    (
        "s_n",
        "0x5c3673407d95eab3ea72ab460cc08a0466d84422463520737c0fd00c311f61e9",
    ),
    (
        "output",
        "0x4c5b2ffeec48e32ba1e68ef82b9548ab400a0b142128f4fd3fd509984b7dc739",
    ),
];

/// Two `fully_connected` ops by one weight matrix that do not read each other run as one
/// stacked product; one that reads the other's output does not. Either way every op's
/// output is the reference's, serving and tracing agree, and a hook that changes the first
/// op's output changes only what reads it.
#[test]
fn shared_products_match_the_reference_and_respect_hooks() {
    use inference::ops::Op;
    use inference::program::ProgramBuilder;
    use inference::tensor::{DType, TensorType};
    use inference::trace::Weights;

    let (m, k) = (5usize, 24usize);
    let mut b = ProgramBuilder::new(TensorType::new(DType::I8, vec![m, k]));
    let x = b.input();
    let mut rng = demo::SplitMix64(7);
    let mut bytes = |len: usize| -> Vec<i8> { (0..len).map(|_| rng.next_u64() as i8).collect() };
    let w = b.weight("w", Tensor::from_i8(vec![k, k], bytes(k * k)).unwrap());
    let fc = |b: &mut ProgramBuilder, x: Operand, zp: i32, mult: i32, shift: i32| {
        let bias = b.weight("b", Tensor::from_i32(vec![k], vec![zp * 1000; k]).unwrap());
        let m = b.weight("m", Tensor::from_i32(vec![k], vec![mult; k]).unwrap());
        let s = b.weight("s", Tensor::from_i32(vec![k], vec![shift; k]).unwrap());
        b.push(
            Op::FullyConnected {
                x_zero_point: zp,
                y_zero_point: -zp,
            },
            &[x, w, bias, m, s],
            DType::I8,
        )
        .unwrap()
    };
    let a = fc(&mut b, x, 3, 1 << 30, 38); // op 1
    let c = fc(&mut b, x, -5, 1 << 29, 37); // op 2: shares op 1's product
    let d = fc(&mut b, a, 0, 1 << 30, 36); // op 3: reads op 1, runs alone
    let e = fc(&mut b, c, 1, 1 << 30, 36); // op 4: shares op 3's product
    let sum = b
        .push(
            Op::Add {
                a_zero_point: 0,
                a_multiplier: 1,
                b_zero_point: 0,
                b_multiplier: 1,
                shift: 1,
                y_zero_point: 0,
            },
            &[d, e],
            DType::I8,
        )
        .unwrap();
    let (program, named) = b.finish(sum).unwrap();
    let weights = Weights::new(&program, named.into_iter().map(|(_, t)| t).collect()).unwrap();
    let input = Tensor::from_i8(vec![m, k], bytes(m * k)).unwrap();

    let trace = Trace::execute(&program, &weights, &input).unwrap();
    assert_ops_match_the_reference(&program, &weights, &trace, None);
    assert_eq!(&run(&program, &weights, &input).unwrap(), trace.output());
    let distinct = |s: usize| trace.tensor(s).unwrap().to_i64_vec();
    assert_ne!(
        distinct(1),
        distinct(2),
        "the shared product's two outputs differ"
    );

    // The hook flips op 1's output: op 2 (same product) is unchanged, op 3 (reads op 1)
    // follows the changed value.
    let faulty = Trace::execute_with_hook(&program, &weights, &input, |i, t| {
        if i == 1 {
            *t = Tensor::from_i8(t.shape().to_vec(), vec![7; m * k]).unwrap();
        }
    })
    .unwrap();
    assert_ops_match_the_reference(&program, &weights, &faulty, Some(1));
    assert_eq!(faulty.tensor(2).unwrap(), trace.tensor(2).unwrap());
    assert_ne!(faulty.tensor(3).unwrap(), trace.tensor(3).unwrap());
}
