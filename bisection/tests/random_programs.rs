//! Property test: on random small programs, with a lie at a random op and leaf and random
//! game parameters, the honest side wins within the bound, as defender and as challenger.

use bisection::{
    Belief, Claim, DissectionDegree, Fault, Game, GameConfig, Side, TracePlayer, play,
};
use inference::commit::{leaf_count, tensor_hash};
use inference::demo::SplitMix64;
use inference::merkle::{H256, depth_for};
use inference::model::Model;
use inference::ops::Op;
use inference::program::ProgramBuilder;
use inference::tensor::{DType, Tensor, TensorType};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Random cases over the shared SplitMix64: a function of the seed alone.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as i8).collect()
    }
    fn i32s(&mut self, n: usize, lo: i64, hi: i64) -> Vec<i32> {
        (0..n)
            .map(|_| (lo + self.below((hi - lo + 1) as u64) as i64) as i32)
            .collect()
    }
}

/// A random chain of ops over an `i8 [r, c]` input, with random weights.
fn random_model(rng: &mut Rng) -> (Model, Tensor) {
    let (r, c) = (1 + rng.below(4) as usize, 1 + rng.below(40) as usize);
    let mut b = ProgramBuilder::new(TensorType::new(DType::I8, vec![r, c]));
    let mut x = b.input();
    let mut shape = vec![r, c];
    for i in 0..1 + rng.below(10) {
        let (rows, cols) = (shape[0], shape[1]);
        x = match rng.below(7) {
            0 => {
                let n = 1 + rng.below(40) as usize;
                let w = b.weight(
                    format!("w{i}"),
                    Tensor::from_i8(vec![n, cols], rng.i8s(n * cols)).unwrap(),
                );
                let bias = b.weight(
                    format!("b{i}"),
                    Tensor::from_i32(vec![n], rng.i32s(n, -5000, 5000)).unwrap(),
                );
                let m = b.weight(
                    format!("m{i}"),
                    Tensor::from_i32(vec![n], rng.i32s(n, 1 << 30, i32::MAX as i64)).unwrap(),
                );
                let s = b.weight(
                    format!("s{i}"),
                    Tensor::from_i32(vec![n], rng.i32s(n, 36, 44)).unwrap(),
                );
                shape = vec![rows, n];
                b.push(
                    Op::FullyConnected {
                        x_zero_point: 1,
                        y_zero_point: -3,
                    },
                    &[x, w, bias, m, s],
                    DType::I8,
                )
                .unwrap()
            }
            1 => {
                let t = b.weight(
                    format!("t{i}"),
                    Tensor::from_i8(vec![256], rng.i8s(256)).unwrap(),
                );
                b.push(Op::Lut, &[x, t], DType::I8).unwrap()
            }
            2 => {
                let op = Op::Add {
                    a_zero_point: 0,
                    a_multiplier: 3,
                    b_zero_point: 1,
                    b_multiplier: 5,
                    shift: 3,
                    y_zero_point: 0,
                };
                b.push(op, &[x, x], DType::I8).unwrap()
            }
            3 => {
                let t = b.weight(
                    format!("e{i}"),
                    Tensor::from_i32(vec![64], rng.i32s(64, 0, 1 << 20)).unwrap(),
                );
                b.push(
                    Op::Softmax {
                        causal: rng.below(2) == 0,
                        frac_bits: 8,
                        y_zero_point: -128,
                    },
                    &[x, t],
                    DType::I8,
                )
                .unwrap()
            }
            4 => {
                let g = b.weight(
                    format!("g{i}"),
                    Tensor::from_i32(vec![cols], rng.i32s(cols, 1000, 40_000)).unwrap(),
                );
                let be = b.weight(
                    format!("be{i}"),
                    Tensor::from_i32(vec![cols], rng.i32s(cols, -3000, 3000)).unwrap(),
                );
                b.push(
                    Op::LayerNorm {
                        epsilon: 1,
                        shift: 10,
                        y_zero_point: 0,
                    },
                    &[x, g, be],
                    DType::I8,
                )
                .unwrap()
            }
            5 => {
                shape = vec![cols, rows];
                b.push(Op::Transpose { perm: vec![1, 0] }, &[x], DType::I8)
                    .unwrap()
            }
            _ => {
                let op = Op::Mul {
                    a_zero_point: 0,
                    b_zero_point: 2,
                    multiplier: 1 << 28,
                    shift: 33,
                    y_zero_point: 0,
                };
                b.push(op, &[x, x], DType::I8).unwrap()
            }
        };
    }
    let (program, weights) = b.finish(x).unwrap();
    let model = Model::new("random", program, weights, BTreeMap::new()).unwrap();
    let input = Tensor::from_i8(vec![r, c], rng.i8s(r * c)).unwrap();
    (model, input)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_honest_side_wins(seed in any::<u64>()) {
        let mut rng = Rng(SplitMix64(seed));
        let (model, input) = random_model(&mut rng);
        let program = Arc::new(model.program().clone());
        let n = program.ops.len();
        let op = 1 + rng.below(n as u64) as usize;
        let ty = &program.ops[op - 1].output;
        prop_assume!(ty.numel() > 0);
        let leaves_with_data = ((ty.numel() - 1) * ty.dtype.size()) / 32 + 1;
        let fault = Fault { op, leaf: rng.below(leaves_with_data as u64) as usize, propagate: rng.below(2) == 0 };
        let config = GameConfig {
            degree: DissectionDegree::new(2 + rng.below(8) as u32).unwrap(),
            tensor_levels: 1 + rng.below(4) as u32,
            clock_seconds: 1000,
            ..GameConfig::default()
        };
        let bound = config.bound_for(&program);
        let truth = Belief::honest(model.program(), model.weights(), &input).unwrap();
        let lie = Belief::with_fault(model.program(), model.weights(), &input, fault).unwrap();
        let claim = |output_hash| Claim { request_id: H256::ZERO, model_id: model.id(), input_hash: tensor_hash(&input), output_hash };
        let open = |output_hash| Game::open(config.clone(), program.clone(), model.weights().root(), claim(output_hash), 0).unwrap();

        // A lying sequencer against an honest challenger.
        let mut game = open(lie.output_hash());
        let t = play(&mut game, &mut TracePlayer::new(Side::Defender, lie.clone()), &mut TracePlayer::new(Side::Challenger, truth.clone()), 7);
        prop_assert_eq!(t.outcome.winner, Side::Challenger, "{:?} {:?}", fault, t.refused);
        prop_assert!(t.moves.len() as u32 <= bound.moves);
        prop_assert!(t.refused.is_empty());

        // An honest sequencer against a challenger that believes the lie.
        let mut game = open(truth.output_hash());
        let t = play(&mut game, &mut TracePlayer::new(Side::Defender, truth), &mut TracePlayer::new(Side::Challenger, lie), 7);
        prop_assert_eq!(t.outcome.winner, Side::Defender, "{:?}", fault);
        prop_assert!(t.moves.len() as u32 <= bound.moves);
    }
}

#[test]
fn the_documented_bound_table_holds() {
    // The table in the crate docs: the demo model, 47 ops, deepest output tree of depth 4.
    let model = inference::demo::model().unwrap();
    let p = model.program();
    let depth = p
        .ops
        .iter()
        .map(|o| depth_for(leaf_count(&o.output)))
        .max()
        .unwrap();
    assert_eq!((p.ops.len(), depth), (47, 4));
    for (k, trace, tensor, moves) in [(2, 6, 2, 20), (8, 2, 2, 12), (64, 1, 2, 10)] {
        let c = GameConfig {
            degree: DissectionDegree::new(k).unwrap(),
            tensor_levels: 3,
            ..GameConfig::default()
        };
        let b = c.bound(47, depth);
        assert_eq!(
            (b.trace_rounds, b.tensor_rounds, b.moves),
            (trace, tensor, moves),
            "degree {k}"
        );
    }
}
