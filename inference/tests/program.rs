//! The program format: validation errors, JSON round trip, and the canonical encoding the
//! on-chain verifier recomputes.

use inference::demo;
use inference::merkle::keccak256;
use inference::ops::{Op, OpKind};
use inference::program::{OpNode, Operand, PROGRAM_VERSION, Program, encode_op};
use inference::tensor::{DType, TensorType};

fn tiny() -> Program {
    Program {
        version: PROGRAM_VERSION,
        input: TensorType::new(DType::I8, vec![2, 3]),
        weights: vec![TensorType::new(DType::I8, vec![256])],
        ops: vec![
            OpNode {
                op: Op::Lut,
                inputs: vec![Operand::Slot(0), Operand::Weight(0)],
                output: TensorType::new(DType::I8, vec![2, 3]),
            },
            OpNode {
                op: Op::Transpose { perm: vec![1, 0] },
                inputs: vec![Operand::Slot(1)],
                output: TensorType::new(DType::I8, vec![3, 2]),
            },
        ],
        output: 2,
    }
}

fn err(p: &Program) -> String {
    p.validate().unwrap_err().to_string()
}

#[test]
fn json_round_trip() {
    let p = demo::model().unwrap().program().clone();
    let back = Program::from_json(&p.to_json()).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.hash().unwrap(), p.hash().unwrap());
}

#[test]
fn malformed_programs_are_named_errors() {
    let mut p = tiny();
    p.version = 9;
    assert!(err(&p).contains("version 9"));

    let mut p = tiny();
    p.ops[0].inputs[0] = Operand::Slot(1);
    assert!(err(&p).contains("op 1 reads slot 1"), "{}", err(&p));

    let mut p = tiny();
    p.ops[0].inputs[1] = Operand::Weight(4);
    assert!(err(&p).contains("weight 4"), "{}", err(&p));

    let mut p = tiny();
    p.ops[1].output = TensorType::new(DType::I8, vec![2, 3]);
    assert!(err(&p).contains("op 2 (transpose)"), "{}", err(&p));

    let mut p = tiny();
    p.output = 3;
    assert!(err(&p).contains("slot 3"), "{}", err(&p));

    let mut p = tiny();
    p.input = TensorType::new(DType::I8, vec![usize::MAX, 4]);
    assert!(p.validate().is_err());

    let e = Program::from_json(r#"{"version":1,"input":{"dtype":"i8","shape":[1]},"weights":[],"ops":[{"op":{"kind":"gelu"},"inputs":[],"output":{"dtype":"i8","shape":[1]}}],"output":1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gelu"), "{e}");
}

#[test]
fn op_encoding_is_pinned() {
    // The layout of docs/ops.md, "Program encoding": kind, params, operands, output type.
    let node = OpNode {
        op: Op::FullyConnected {
            x_zero_point: -3,
            y_zero_point: 5,
        },
        inputs: vec![
            Operand::Slot(7),
            Operand::Weight(1),
            Operand::Weight(2),
            Operand::Weight(3),
            Operand::Weight(4),
        ],
        output: TensorType::new(DType::I16, vec![4, 384]),
    };
    let mut want = vec![1u8];
    want.extend_from_slice(&(-3i32).to_be_bytes());
    want.extend_from_slice(&5i32.to_be_bytes());
    want.push(5);
    want.extend_from_slice(&[0, 0, 0, 0, 7]);
    for w in 1u32..=4 {
        want.push(1);
        want.extend_from_slice(&w.to_be_bytes());
    }
    want.extend_from_slice(&[2, 2, 0, 0, 0, 4, 0, 0, 1, 128]);
    assert_eq!(encode_op(&node).unwrap(), want);
    assert_eq!(keccak256(&want), keccak256(&encode_op(&node).unwrap()));
}

#[test]
fn every_kind_has_a_distinct_code_and_the_hash_binds_every_op() {
    let codes: std::collections::BTreeSet<u8> = OpKind::ALL.iter().map(|k| k.code()).collect();
    assert_eq!(codes.len(), OpKind::ALL.len());
    let p = demo::model().unwrap().program().clone();
    let kinds: std::collections::BTreeSet<u8> = p.ops.iter().map(|n| n.op.kind().code()).collect();
    assert_eq!(kinds, codes, "the demo uses every op kind");
    let h = p.hash().unwrap();
    let tree = p.ops_tree().unwrap();
    for i in 1..=p.ops.len() {
        let proof = p.prove_op(i).unwrap();
        proof
            .verify(tree.root(), &keccak256(&p.op_encoding(i).unwrap()).0)
            .unwrap();
        // Changing any op's output type changes the program hash.
        let mut q = p.clone();
        q.ops[i - 1].output.shape.push(1);
        assert_ne!(q.hash().unwrap(), h, "op {i}");
    }
}
