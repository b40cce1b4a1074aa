//! Differential tests of the Solidity one-step verifier against the Rust reference: for
//! every op, random small operands and parameters (edge values included), openings built
//! with the inference crate's commitments, and `computeElement` in revm must return exactly
//! `inference::ops::reference::element` (or revert where the reference refuses). Negative
//! cases: a withheld needed leaf, a tampered leaf, a changed, missing or extra shared sibling,
//! ranges out of order, a tampered membership proof and an index
//! past the output must revert with the matching custom error.

mod support;

use alloy::primitives::B256;
use contracts::bindings::one_step_verifier::OneStepVerifier::OneStepVerifierErrors as E;
use inference::commit::leaf_count;
use inference::ops::{Op, RopePairing};
use inference::{DType, Tensor};
use support::{Case, Fixture, Grouping, Rng, Verifier};

/// Random cases per op.
const CASES: usize = 1000;

fn dims(rng: &mut Rng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| 1 + rng.below(max)).collect()
}

/// Runs `CASES` cases of `gen` (seeded by `seed`) through the verifier.
fn differential(seed: u64, mut generate: impl FnMut(&mut Rng) -> Option<Case>) {
    let mut rng = Rng::new(seed);
    let mut verifier = Verifier::deploy();
    let (mut done, mut attempts, mut refused) = (0, 0, 0);
    let mut values = std::collections::BTreeSet::new();
    let mut gas_max = 0;
    while done < CASES {
        attempts += 1;
        assert!(
            attempts < 50 * CASES,
            "the generator rarely gives a valid case"
        );
        let Some(case) = generate(&mut rng) else {
            continue;
        };
        let fixture = Fixture::new(&mut rng, &case);
        let numel = case.out.numel();
        let index = match rng.below(4) {
            0 => 0,
            1 => numel - 1,
            _ => rng.below(numel),
        };
        let want = case.reference(index);
        let grouping = [Grouping::Runs, Grouping::Cover, Grouping::Single][rng.below(3)];
        let needed = match &want {
            Ok(_) => case.needed(index),
            // Where the reference refuses (a bad per-channel shift), open everything: the
            // verifier must refuse too.
            Err(_) => case
                .inputs
                .iter()
                .map(|t| (0..leaf_count(&t.ty())).collect())
                .collect(),
        };
        let call = fixture.call(&case, index, &needed, grouping);
        match (&want, verifier.compute(&call)) {
            (Ok(w), Ok((got, gas))) => {
                assert_eq!(got, *w, "{case:?}\nindex {index}, {grouping:?}");
                values.insert(got);
                gas_max = gas_max.max(gas);
            }
            (Err(_), Err(e)) => {
                refused += 1;
                assert!(
                    matches!(Verifier::revert_of(&e), Some(E::WeightValueInvalid(_))),
                    "{case:?}: reverted with {e}"
                );
            }
            (w, got) => panic!("{case:?}\nindex {index}: reference {w:?}, verifier {got:?}"),
        }
        if want.is_ok() && done % 8 == 0 {
            negatives(&mut rng, &mut verifier, &fixture, &case, index, &needed);
        }
        done += 1;
    }
    assert!(refused * 10 < CASES, "{refused} of {CASES} cases refused");
    // A verifier that returned a constant would pass nothing above; make sure of it.
    assert!(values.len() > 1, "every case gave the same value");
    eprintln!(
        "seed {seed}: {done} cases, {refused} refused as the reference does, {} distinct values, at most {gas_max} gas",
        values.len()
    );
}

/// Tampered openings of a valid call must revert with the matching error.
fn negatives(
    rng: &mut Rng,
    verifier: &mut Verifier,
    fixture: &Fixture,
    case: &Case,
    index: usize,
    needed: &[Vec<usize>],
) {
    // A needed leaf withheld.
    let with_leaves: Vec<usize> = (0..needed.len())
        .filter(|&j| !needed[j].is_empty())
        .collect();
    if !with_leaves.is_empty() {
        let j = with_leaves[rng.below(with_leaves.len())];
        let mut fewer = needed.to_vec();
        let at = rng.below(fewer[j].len());
        let leaf = fewer[j].remove(at);
        let call = fixture.call(case, index, &fewer, Grouping::Runs);
        let e = verifier
            .compute(&call)
            .expect_err("a withheld leaf must revert");
        match Verifier::revert_of(&e) {
            Some(E::LeafNotOpened(x)) => {
                assert_eq!(
                    (x.operand.to::<usize>(), x.leaf.to::<usize>()),
                    (j, leaf),
                    "{case:?}"
                )
            }
            other => panic!("{case:?}: withheld leaf {leaf} of operand {j}: {other:?}"),
        }

        // A leaf's byte changed.
        let mut call = fixture.call(case, index, needed, Grouping::Runs);
        let ranges = &mut call.openings[j].ranges;
        let r = rng.below(ranges.len());
        let l = rng.below(ranges[r].leaves.len());
        ranges[r].leaves[l].0[rng.below(32)] ^= 1 << rng.below(8);
        let e = verifier
            .compute(&call)
            .expect_err("a tampered leaf must revert");
        assert!(
            matches!(Verifier::revert_of(&e), Some(E::LeafProofInvalid(_))),
            "{e}"
        );

        // A shared sibling changed, dropped or added.
        let call = fixture.call(case, index, needed, Grouping::Runs);
        if !call.openings[j].siblings.is_empty() {
            let mut changed = call.clone();
            let sibs = &mut changed.openings[j].siblings;
            let k = rng.below(sibs.len());
            sibs[k].0[rng.below(32)] ^= 1 << rng.below(8);
            let mut dropped = call.clone();
            dropped.openings[j].siblings.pop();
            let mut added = call.clone();
            added.openings[j].siblings.push(B256::ZERO);
            for bad in [changed, dropped, added] {
                let e = verifier
                    .compute(&bad)
                    .expect_err("a bad sibling list must revert");
                assert!(
                    matches!(Verifier::revert_of(&e), Some(E::LeafProofInvalid(_))),
                    "{e}"
                );
            }
        }

        // Ranges out of order.
        let mut call = fixture.call(case, index, needed, Grouping::Single);
        if call.openings[j].ranges.len() >= 2 {
            call.openings[j].ranges.swap(0, 1);
            let e = verifier
                .compute(&call)
                .expect_err("ranges out of order must revert");
            assert!(
                matches!(Verifier::revert_of(&e), Some(E::RangeProofInvalid(_))),
                "{e}"
            );
        }
    }

    // A membership proof (or, with no siblings, the data root) changed.
    let mut call = fixture.call(case, index, needed, Grouping::Runs);
    let j = rng.below(call.openings.len());
    let o = &mut call.openings[j];
    if o.membership.is_empty() {
        o.dataRoot.0[0] ^= 1;
    } else {
        let k = rng.below(o.membership.len());
        o.membership[k].0[rng.below(32)] ^= 1;
    }
    let e = verifier
        .compute(&call)
        .expect_err("a bad membership proof must revert");
    assert!(
        matches!(Verifier::revert_of(&e), Some(E::MembershipProofInvalid(_))),
        "{e}"
    );

    // An element past the output.
    let mut call = fixture.call(case, index, needed, Grouping::Runs);
    call.index = case.out.numel() + rng.below(3);
    let e = verifier
        .compute(&call)
        .expect_err("an index past the output must revert");
    assert!(
        matches!(Verifier::revert_of(&e), Some(E::ElementOutOfRange(_))),
        "{e}"
    );
}

fn fully_connected(rng: &mut Rng) -> Option<Case> {
    let k = 1 + rng.sized(4, 100, 40);
    let n = 1 + rng.below(5);
    let rank = rng.below(3);
    let mut shape = dims(rng, rank, 3);
    shape.push(k);
    let x = rng.tensor_with(DType::I8, &shape, |r| r.value(DType::I8));
    let w = rng.tensor(DType::I8, &[n, k]);
    let bias = rng.tensor(DType::I32, &[n]);
    let m = rng.tensor_with(DType::I32, &[n], |r| r.multiplier() as i64);
    // Now and then a shift outside 0..=62: the reference refuses it, so must the verifier.
    let s = rng.tensor_with(DType::I32, &[n], |r| {
        if r.one_in(400) {
            [-1, 63][r.below(2)]
        } else {
            r.shift() as i64
        }
    });
    let dt = rng.dtype();
    let op = Op::FullyConnected {
        x_zero_point: rng.zero_point(DType::I8),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![x, w, bias, m, s], dt)
}

fn batch_matmul(rng: &mut Rng) -> Option<Case> {
    let (bb, group, m, n) = (
        1 + rng.below(3),
        1 + rng.below(3),
        1 + rng.below(4),
        1 + rng.below(5),
    );
    let k = 1 + rng.sized(4, 80, 40);
    let transpose_b = rng.one_in(2);
    let a = rng.tensor(DType::I8, &[bb * group, m, k]);
    let b = rng.tensor(
        DType::I8,
        &if transpose_b { [bb, n, k] } else { [bb, k, n] },
    );
    let dt = rng.dtype();
    let op = Op::BatchMatmul {
        transpose_b,
        a_zero_point: rng.zero_point(DType::I8),
        b_zero_point: rng.zero_point(DType::I8),
        multiplier: rng.multiplier(),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![a, b], dt)
}

fn elementwise_shape(rng: &mut Rng) -> Vec<usize> {
    let rank = rng.below(4);
    let max = if rng.one_in(3) { 40 } else { 6 };
    dims(rng, rank, max)
}

fn add(rng: &mut Rng) -> Option<Case> {
    let shape = elementwise_shape(rng);
    let (da, db, dt) = (rng.dtype(), rng.dtype(), rng.dtype());
    let (a, b) = (rng.tensor(da, &shape), rng.tensor(db, &shape));
    let op = Op::Add {
        a_zero_point: rng.zero_point(da),
        a_multiplier: rng.multiplier(),
        b_zero_point: rng.zero_point(db),
        b_multiplier: rng.multiplier(),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![a, b], dt)
}

fn mul(rng: &mut Rng) -> Option<Case> {
    let shape = elementwise_shape(rng);
    let (da, db, dt) = (rng.dtype(), rng.dtype(), rng.dtype());
    let (a, b) = (rng.tensor(da, &shape), rng.tensor(db, &shape));
    let op = Op::Mul {
        a_zero_point: rng.zero_point(da),
        b_zero_point: rng.zero_point(db),
        multiplier: rng.multiplier(),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![a, b], dt)
}

fn requantize(rng: &mut Rng) -> Option<Case> {
    let shape = elementwise_shape(rng);
    let (dx, dt) = (rng.dtype(), rng.dtype());
    let x = rng.tensor(dx, &shape);
    let op = Op::Requantize {
        x_zero_point: rng.zero_point(dx),
        multiplier: rng.multiplier(),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![x], dt)
}

fn lut(rng: &mut Rng) -> Option<Case> {
    let shape = elementwise_shape(rng);
    let dt = rng.dtype();
    let x = rng.tensor(DType::I8, &shape);
    let table = rng.tensor(dt, &[256]);
    Case::inferred(Op::Lut, vec![x, table], dt)
}

fn softmax(rng: &mut Rng) -> Option<Case> {
    let rank = 1 + rng.below(4);
    let mut shape = dims(rng, rank, 3);
    let n = 1 + rng.sized(3, 50, 10);
    shape[rank - 1] = n;
    let dx = [DType::I8, DType::I16][rng.below(2)];
    let x = rng.tensor_with(dx, &shape, |r| r.value_narrow(dx));
    let t = 1 + rng.sized(4, 300, 20);
    // Zeros and negative entries included (a negative one reads as 0); now and then a
    // table with no positive entry at all, so that rows sum to 0.
    let all_negative = rng.one_in(20);
    let table = rng.tensor_with(DType::I32, &[t], |r| {
        if all_negative || r.one_in(6) {
            [-1, i32::MIN as i64, r.range(i32::MIN as i64, -1)][r.below(3)]
        } else if r.one_in(5) {
            0
        } else {
            r.range(0, i32::MAX as i64)
        }
    });
    let mut inputs = vec![x, table];
    if rng.one_in(2) {
        let l: usize = shape[..rank.saturating_sub(2)].iter().product();
        let divisors: Vec<usize> = (1..=l).filter(|g| l.is_multiple_of(*g)).collect();
        let g = divisors[rng.below(divisors.len())];
        let dm = rng.dtype();
        // Whole rows masked now and then.
        let mut v = Vec::with_capacity(g * n);
        for _ in 0..g {
            let dead = rng.one_in(4);
            for _ in 0..n {
                v.push(if dead || rng.one_in(3) {
                    0
                } else {
                    rng.value(dm)
                });
            }
        }
        inputs.push(support::tensor(dm, &[g, n], &v));
    }
    let dt = rng.dtype();
    let op = Op::Softmax {
        causal: rng.one_in(2),
        frac_bits: rng.frac_bits(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, inputs, dt)
}

/// The operands of [`softmax`], for `softmax_exp`.
fn softmax_exp(rng: &mut Rng) -> Option<Case> {
    let case = softmax(rng)?;
    let op = Op::SoftmaxExp {
        causal: rng.one_in(2),
    };
    Case::inferred(op, case.inputs, DType::I32)
}

fn softmax_norm(rng: &mut Rng) -> Option<Case> {
    let rank = 1 + rng.below(4);
    let mut shape = dims(rng, rank, 3);
    shape[rank - 1] = 1 + rng.sized(3, 80, 12);
    // Negative entries (read as 0), zeros, whole zero rows now and then, and the top.
    let zero_rows = rng.one_in(10);
    let e = rng.tensor_with(DType::I32, &shape, |r| {
        if zero_rows || r.one_in(5) {
            0
        } else if r.one_in(6) {
            [-1, i32::MIN as i64, r.range(i32::MIN as i64, -1)][r.below(3)]
        } else if r.one_in(8) {
            i32::MAX as i64
        } else {
            let bits = r.below(32);
            r.range(0, 1 << bits)
        }
    });
    let dt = rng.dtype();
    let op = Op::SoftmaxNorm {
        frac_bits: rng.frac_bits(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![e], dt)
}

fn norm_input(rng: &mut Rng) -> (Tensor, usize) {
    let rank = 1 + rng.below(3);
    let mut shape = dims(rng, rank, 3);
    let n = 1 + rng.sized(3, 60, 12);
    shape[rank - 1] = n;
    let dx = rng.dtype();
    // Constant rows (sigma = 0 with epsilon = 0) now and then.
    let x = if rng.one_in(6) {
        let c = rng.value(dx);
        rng.tensor_with(dx, &shape, |_| c)
    } else {
        rng.tensor_with(dx, &shape, |r| r.value_narrow(dx))
    };
    (x, n)
}

fn epsilon(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => u64::MAX,
        _ => rng.u64() >> rng.below(64),
    }
}

fn layer_norm(rng: &mut Rng) -> Option<Case> {
    let (x, n) = norm_input(rng);
    let gamma = rng.tensor(DType::I32, &[n]);
    let beta = rng.tensor(DType::I32, &[n]);
    let dt = rng.dtype();
    let op = Op::LayerNorm {
        epsilon: epsilon(rng),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![x, gamma, beta], dt)
}

fn rms_norm(rng: &mut Rng) -> Option<Case> {
    let (x, n) = norm_input(rng);
    let gamma = rng.tensor(DType::I32, &[n]);
    let dt = rng.dtype();
    let op = Op::RmsNorm {
        x_zero_point: if rng.one_in(5) {
            x.get(0) as i32
        } else {
            rng.zero_point(x.dtype())
        },
        epsilon: epsilon(rng),
        shift: rng.shift(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![x, gamma], dt)
}

fn embedding(rng: &mut Rng) -> Option<Case> {
    let (v, d) = (1 + rng.below(20), 1 + rng.below(20));
    let dt = rng.dtype();
    let table = rng.tensor(dt, &[v, d]);
    let rank = rng.below(3);
    let shape = dims(rng, rank, 4);
    // Out-of-range indices (negative, V, extremes) give zero rows.
    let idx = rng.tensor_with(DType::I32, &shape, |r| match r.below(8) {
        0 => r.value(DType::I32),
        1 => v as i64,
        2 => -1,
        _ => r.range(0, v as i64 - 1),
    });
    Case::inferred(Op::Embedding, vec![table, idx], dt)
}

fn rope(rng: &mut Rng) -> Option<Case> {
    let rank = 2 + rng.below(3);
    let mut shape = dims(rng, rank, 3);
    let s = 1 + rng.below(6);
    let d = 2 * (1 + rng.below(12));
    shape[rank - 2] = s;
    shape[rank - 1] = d;
    let dx = [DType::I8, DType::I16][rng.below(2)];
    let x = rng.tensor(dx, &shape);
    let offset = rng.below(5);
    let p = offset + s + rng.below(3);
    let cos = rng.tensor(DType::I32, &[p, d / 2]);
    let sin = rng.tensor(DType::I32, &[p, d / 2]);
    let dt = [DType::I8, DType::I16][rng.below(2)];
    let op = Op::Rope {
        x_zero_point: rng.zero_point(dx),
        y_zero_point: rng.zero_point(dt),
        position_offset: offset as u32,
        frac_bits: rng.frac_bits(),
        pairing: if rng.one_in(2) {
            RopePairing::Half
        } else {
            RopePairing::Interleaved
        },
    };
    Case::inferred(op, vec![x, cos, sin], dt)
}

fn reshape(rng: &mut Rng) -> Option<Case> {
    let shape = elementwise_shape(rng);
    let dt = rng.dtype();
    let x = rng.tensor(dt, &shape);
    let numel = x.numel();
    let divisors: Vec<usize> = (1..=numel).filter(|g| numel.is_multiple_of(*g)).collect();
    let a = divisors[rng.below(divisors.len())];
    let out = inference::TensorType::new(dt, vec![a, numel / a]);
    Some(Case {
        op: Op::Reshape,
        inputs: vec![x],
        out,
    })
}

fn transpose(rng: &mut Rng) -> Option<Case> {
    let rank = rng.below(5);
    let shape = dims(rng, rank, 5);
    let dt = rng.dtype();
    let x = rng.tensor(dt, &shape);
    let mut perm: Vec<usize> = (0..rank).collect();
    for i in (1..rank).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    Case::inferred(Op::Transpose { perm }, vec![x], dt)
}

fn concat(rng: &mut Rng) -> Option<Case> {
    let rank = 1 + rng.below(3);
    let base = dims(rng, rank, 5);
    let axis = rng.below(rank);
    let dt = rng.dtype();
    let inputs = (0..1 + rng.below(4))
        .map(|_| {
            let mut s = base.clone();
            s[axis] = 1 + rng.below(5);
            rng.tensor(dt, &s)
        })
        .collect();
    Case::inferred(Op::Concat { axis }, inputs, dt)
}

fn slice(rng: &mut Rng) -> Option<Case> {
    let rank = 1 + rng.below(3);
    let shape = dims(rng, rank, 8);
    let axis = rng.below(rank);
    let end = 1 + rng.below(shape[axis]);
    let start = rng.below(end);
    let dt = rng.dtype();
    let x = rng.tensor(dt, &shape);
    Case::inferred(Op::Slice { axis, start, end }, vec![x], dt)
}

fn mean_pool(rng: &mut Rng) -> Option<Case> {
    let (b, s, d) = (1 + rng.below(3), 1 + rng.below(30), 1 + rng.below(20));
    let dx = rng.dtype();
    let x = rng.tensor(dx, &[b, d, s]);
    let dm = rng.dtype();
    let dead = rng.one_in(4);
    let mask = rng.tensor_with(dm, &[b, s], |r| {
        if dead || r.one_in(3) { 0 } else { r.value(dm) }
    });
    let dt = rng.dtype();
    let op = Op::MeanPool {
        x_zero_point: rng.zero_point(dx),
        frac_bits: rng.frac_bits(),
        y_zero_point: rng.zero_point(dt),
    };
    Case::inferred(op, vec![x, mask], dt)
}

fn argmax(rng: &mut Rng) -> Option<Case> {
    let rank = 1 + rng.below(3);
    let mut shape = dims(rng, rank, 3);
    shape[rank - 1] = 1 + rng.sized(3, 120, 20);
    let dx = rng.dtype();
    // Narrow values: many ties, the first maximum wins.
    let x = rng.tensor_with(dx, &shape, |r| r.value_narrow(dx));
    Case::inferred(Op::Argmax, vec![x], DType::I32)
}

macro_rules! differential_tests {
    ($($name:ident: $seed:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            differential($seed, super::$name);
        }
    )*};
}

mod matches_reference {
    use super::differential;
    differential_tests! {
        fully_connected: 1,
        batch_matmul: 2,
        add: 3,
        mul: 4,
        requantize: 5,
        lut: 6,
        softmax: 7,
        layer_norm: 8,
        rms_norm: 9,
        embedding: 10,
        rope: 11,
        reshape: 12,
        transpose: 13,
        concat: 14,
        slice: 15,
        mean_pool: 16,
        argmax: 17,
        softmax_exp: 18,
        softmax_norm: 19,
    }
}

/// A softmax element opens only the exp-table leaves its kept columns use (the table is
/// local: no whole-table check), negative entries read as 0, and withholding any of those
/// leaves reverts `LeafNotOpened`; on a table small enough for the kernel's leaf map and
/// on one past it (8,193 leaves: the ranges are searched per read).
#[test]
fn softmax_opens_only_the_table_entries_it_uses() {
    let mut rng = Rng::new(77);
    let mut verifier = Verifier::deploy();
    for t in [4096usize, 8193 * 8] {
        let (rows, n) = (3, 40);
        let x = rng.tensor_with(DType::I16, &[rows, n], |r| r.range(-3000, 3000));
        let table = rng.tensor_with(DType::I32, &[t], |r| {
            if r.one_in(4) {
                r.range(i32::MIN as i64, -1)
            } else {
                r.range(0, 1 << 30)
            }
        });
        let mask = rng.tensor_with(DType::I8, &[1, n], |r| (!r.one_in(4)) as i64);
        let op = Op::Softmax {
            causal: true,
            frac_bits: 15,
            y_zero_point: -7,
        };
        let case =
            Case::inferred(op, vec![x.clone(), table, mask.clone()], DType::I32).expect("valid");
        let fixture = Fixture::new(&mut rng, &case);
        for index in [0, n + 17, rows * n - 1] {
            let row = index / n;
            let r = row % rows;
            let keep: Vec<usize> = (0..n)
                .filter(|&c| mask.get(c) != 0 && c + rows <= r + n)
                .collect();
            let xs = |c: usize| x.get(row * n + c);
            let want_leaves: Vec<usize> = match keep.iter().map(|&c| xs(c)).max() {
                None => Vec::new(),
                Some(max) => {
                    let set: std::collections::BTreeSet<usize> = keep
                        .iter()
                        .map(|&c| ((max - xs(c)) as usize).min(t - 1) / 8)
                        .collect();
                    set.into_iter().collect()
                }
            };
            let needed = case.needed(index);
            assert_eq!(needed[1], want_leaves, "T {t}, index {index}");
            let want = case.reference(index).expect("softmax is total");
            for grouping in [Grouping::Runs, Grouping::Single] {
                let call = fixture.call(&case, index, &needed, grouping);
                let (got, _) = verifier.compute(&call).expect("computeElement");
                assert_eq!(got, want, "T {t}, index {index}, {grouping:?}");
            }
            for (at, &leaf) in needed[1].iter().enumerate() {
                let mut fewer = needed.clone();
                fewer[1].remove(at);
                let call = fixture.call(&case, index, &fewer, Grouping::Runs);
                let e = verifier.compute(&call).expect_err("a withheld table leaf");
                match Verifier::revert_of(&e) {
                    Some(E::LeafNotOpened(x)) => {
                        assert_eq!((x.operand.to::<usize>(), x.leaf.to::<usize>()), (1, leaf))
                    }
                    other => panic!("T {t}, withheld table leaf {leaf}: {other:?}"),
                }
            }
        }
    }
}
