//! Property tests: every kernel against the naive reference of the spec
//! (`inference::ops::reference`), on thousands of random cases with edge values,
//! zero-size and odd shapes; and bad operands give errors, never panics.

use inference::demo::SplitMix64;
use inference::gemm::PackedMatrix;
use inference::ops::{FcEpilogue, Op, RopePairing, reference};
use inference::tensor::{DType, Tensor, TensorType};
use proptest::prelude::*;
use proptest::test_runner::Config;

#[path = "support/gen.rs"]
mod generator;
use generator::{ALL, Gen, make};

impl Gen {
    fn multiplier(&mut self) -> i32 {
        match self.below(4) {
            0 => self.range(1 << 30, i32::MAX as i64) as i32,
            1 => self.range(i32::MIN as i64, i32::MAX as i64) as i32,
            2 => i32::MAX,
            _ => self.range(-1000, 1000) as i32,
        }
    }
}

/// Runs `op` through its kernel and the reference and requires the same tensor.
fn agree(op: &Op, inputs: &[Tensor], out_dtype: DType) -> Result<(), TestCaseError> {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let out = op
        .infer(&types.iter().collect::<Vec<_>>(), out_dtype)
        .map_err(|e| TestCaseError::fail(format!("generated an invalid case: {e}")))?;
    let out = if let Op::Reshape = op {
        TensorType::new(
            out.dtype,
            inputs[0].shape().iter().rev().cloned().collect::<Vec<_>>(),
        )
    } else {
        out
    };
    let fast = op
        .execute(&refs, &out, None)
        .map_err(|e| TestCaseError::fail(format!("kernel: {e}")))?;
    let slow = reference::execute(op, &refs, &out)
        .map_err(|e| TestCaseError::fail(format!("reference: {e}")))?;
    prop_assert_eq!(&fast.ty(), &out);
    if fast != slow {
        let a = fast.to_i64_vec();
        let b = slow.to_i64_vec();
        let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
        return Err(TestCaseError::fail(format!(
            "{op:?}: element {i} differs: kernel {} reference {} (out {out})",
            a[i], b[i]
        )));
    }
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn fully_connected(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (k, n) = (g.dim(70), g.dim(40));
        let mut xshape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(5)).collect();
        xshape.push(k);
        let x = g.tensor(DType::I8, &xshape);
        let w = g.tensor(DType::I8, &[n, k]);
        let bias = g.tensor(DType::I32, &[n]);
        let m = make(DType::I32, &[n], (0..n).map(|_| g.multiplier() as i64).collect());
        let s = make(DType::I32, &[n], (0..n).map(|_| g.shift() as i64).collect());
        let out = g.dtype(ALL);
        let op = Op::FullyConnected { x_zero_point: g.zp(DType::I8), y_zero_point: g.zp(out) };
        agree(&op, &[x, w, bias, m, s], out)?;
    }

    /// Several `fully_connected` ops by one weight matrix as one stacked product: each
    /// output is the reference's for its own op (own input shape, bias, requantization,
    /// zero points and output dtype).
    #[test]
    fn fully_connected_shared(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (k, n) = (g.dim(70), g.dim(40));
        let w = g.tensor(DType::I8, &[n, k]);
        let parts = g.range(1, 4) as usize;
        let mut cases = Vec::new();
        for _ in 0..parts {
            let mut xshape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(9)).collect();
            xshape.push(k);
            cases.push(fc_case(&mut g, &w, &xshape, ALL));
        }
        let refs = with_shared_w(&cases, &w);
        let ops: Vec<(&Op, &[&Tensor], &TensorType)> = cases
            .iter()
            .zip(&refs)
            .map(|((op, _, out), r)| (op, r.as_slice(), out))
            .collect();
        let fast = Op::execute_fc_shared(&ops, None)
            .map_err(|e| TestCaseError::fail(format!("kernel: {e}")))?;
        prop_assert_eq!(fast.len(), parts);
        for (i, ((op, r, out), got)) in ops.iter().zip(&fast).enumerate() {
            let want = reference::execute(op, r, out)
                .map_err(|e| TestCaseError::fail(format!("reference: {e}")))?;
            prop_assert!(got == &want, "part {i} of {parts} differs");
        }
        // With each part's requantization built ahead (as at load), the same bits.
        let packed = PackedMatrix::pack(w.as_i8("w").unwrap(), n, k);
        let epilogues: Vec<FcEpilogue> =
            ops.iter().map(|(op, r, _)| epilogue_of(&packed, op, r)).collect();
        let prepared: Vec<_> = ops
            .iter()
            .zip(&epilogues)
            .map(|(&(op, r, out), e)| (op, r, out, Some(e)))
            .collect();
        let again = Op::execute_fc_prepared(&prepared, Some(&packed))
            .map_err(|e| TestCaseError::fail(format!("prepared: {e}")))?;
        prop_assert!(again == fast, "a prepared epilogue changed the bits");
    }

    /// Two `fully_connected` ops by one weight matrix with `i32` outputs and the `add` of
    /// those outputs, run as one: the reference's `add` of the reference's products.
    #[test]
    fn fully_connected_pair_add(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (k, n) = (g.dim(70), g.dim(40));
        let w = g.tensor(DType::I8, &[n, k]);
        let mut xshape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(9)).collect();
        xshape.push(k);
        let fcs: Vec<_> = (0..2).map(|_| fc_case(&mut g, &w, &xshape, &[DType::I32])).collect();
        let out = g.dtype(ALL);
        let add = Op::Add {
            a_zero_point: g.zp(DType::I32),
            a_multiplier: g.multiplier(),
            b_zero_point: g.zp(DType::I32),
            b_multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        let add_out = add.infer(&[&fcs[0].2, &fcs[1].2], out).unwrap();
        let refs = with_shared_w(&fcs, &w);
        let want_a = reference::execute(&fcs[0].0, &refs[0], &fcs[0].2).unwrap();
        let want_b = reference::execute(&fcs[1].0, &refs[1], &fcs[1].2).unwrap();
        let want = reference::execute(&add, &[&want_a, &want_b], &add_out).unwrap();
        let packed = PackedMatrix::pack(w.as_i8("w").unwrap(), n, k);
        for prepared in [false, true] {
            let epilogues: Vec<Option<FcEpilogue>> = fcs
                .iter()
                .zip(&refs)
                .map(|((op, _, _), r)| prepared.then(|| epilogue_of(&packed, op, r)))
                .collect();
            let got = Op::execute_fc_pair_add(
                &[
                    (&fcs[0].0, &refs[0], &fcs[0].2, epilogues[0].as_ref()),
                    (&fcs[1].0, &refs[1], &fcs[1].2, epilogues[1].as_ref()),
                ],
                (&add, &add_out),
                prepared.then_some(&packed),
            )
            .map_err(|e| TestCaseError::fail(format!("fused: {e}")))?;
            prop_assert!(got == want, "fused pair differs (prepared: {})", prepared);
        }
    }

    #[test]
    fn batch_matmul(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let bb = g.nz_dim(3);
        let ba = bb * g.nz_dim(3);
        let (m, k, n) = (g.dim(9), g.dim(40), g.dim(20));
        let transpose_b = g.chance(50);
        let a = g.tensor(DType::I8, &[ba, m, k]);
        let b = g.tensor(DType::I8, &if transpose_b { [bb, n, k] } else { [bb, k, n] });
        let out = g.dtype(ALL);
        let op = Op::BatchMatmul {
            transpose_b,
            a_zero_point: g.zp(DType::I8),
            b_zero_point: g.zp(DType::I8),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&op, &[a, b], out)?;
    }

    #[test]
    fn add_and_mul(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let shape: Vec<usize> = (0..g.range(0, 3)).map(|_| g.dim(7)).collect();
        let (da, db, out) = (g.dtype(ALL), g.dtype(ALL), g.dtype(ALL));
        let a = g.tensor(da, &shape);
        let b = g.tensor(db, &shape);
        let add = Op::Add {
            a_zero_point: g.zp(da),
            a_multiplier: g.multiplier(),
            b_zero_point: g.zp(db),
            b_multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&add, &[a.clone(), b.clone()], out)?;
        let mul = Op::Mul {
            a_zero_point: g.zp(da),
            b_zero_point: g.zp(db),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&mul, &[a, b], out)?;
    }

    #[test]
    fn requantize_and_lut(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let shape: Vec<usize> = (0..g.range(0, 3)).map(|_| g.dim(9)).collect();
        let (dx, out) = (g.dtype(ALL), g.dtype(ALL));
        let x = g.tensor(dx, &shape);
        let op = Op::Requantize {
            x_zero_point: g.zp(dx),
            multiplier: g.multiplier(),
            shift: g.shift(),
            y_zero_point: g.zp(out),
        };
        agree(&op, &[x], out)?;
        let x8 = g.tensor(DType::I8, &shape);
        let table = g.tensor(out, &[256]);
        agree(&Op::Lut, &[x8, table], out)?;
    }

    #[test]
    fn softmax(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (l, m, n) = (g.nz_dim(4), g.dim(6), g.nz_dim(24));
        let dx = g.dtype(&[DType::I8, DType::I16]);
        let x = g.tensor(dx, &[l, m, n]);
        let t = g.nz_dim(300);
        // Zeros and negative entries (which read as 0) exercise sum == 0; now and then a
        // table with no positive entry at all.
        let all_negative = g.chance(5);
        let table = make(DType::I32, &[t], (0..t).map(|_| if all_negative || g.chance(15) { g.range(i32::MIN as i64, -1) } else if g.chance(10) { 0 } else { g.range(0, i32::MAX as i64) }).collect());
        let out = g.dtype(ALL);
        let op = Op::Softmax { causal: g.chance(50), frac_bits: g.range(0, 30) as u32, y_zero_point: g.zp(out) };
        let mut inputs = vec![x, table];
        if g.chance(60) {
            let divisors: Vec<usize> = (1..=l).filter(|d| l % d == 0).collect();
            let gm = divisors[g.below(divisors.len() as u64) as usize];
            let dm = g.dtype(ALL);
            let mask = make(dm, &[gm, n], (0..gm * n).map(|_| if g.chance(70) { 1 } else { 0 }).collect());
            inputs.push(mask);
        }
        agree(&op, &inputs, out)?;
        // The two halves: each against the reference, and together the same bits.
        let Op::Softmax { causal, frac_bits, y_zero_point } = op else { unreachable!() };
        let exp = Op::SoftmaxExp { causal };
        agree(&exp, &inputs, DType::I32)?;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let e = reference::execute(&exp, &refs, &TensorType::new(DType::I32, vec![l, m, n])).unwrap();
        let norm = Op::SoftmaxNorm { frac_bits, y_zero_point };
        let whole = reference::execute(&op, &refs, &TensorType::new(out, vec![l, m, n])).unwrap();
        let split = reference::execute(&norm, &[&e], &TensorType::new(out, vec![l, m, n])).unwrap();
        prop_assert_eq!(whole, split);
        // softmax_norm on any i32 rows: negative entries read as 0, zero sums.
        let es = make(DType::I32, &[l, m, n], (0..l * m * n).map(|_| if g.chance(15) { g.range(i32::MIN as i64, -1) } else if g.chance(20) { 0 } else { g.range(0, i32::MAX as i64) }).collect());
        agree(&norm, &[es], out)?;
    }

    #[test]
    fn norms(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let rows = g.dim(5);
        let n = g.nz_dim(40);
        let dx = g.dtype(ALL);
        let mut x = g.tensor(dx, &[rows, n]);
        if g.chance(10) {
            // Constant rows: sigma is zero without epsilon.
            x = make(dx, &[rows, n], vec![g.value(dx); rows * n]);
        }
        let gamma = g.tensor(DType::I32, &[n]);
        let beta = g.tensor(DType::I32, &[n]);
        let out = g.dtype(ALL);
        let epsilon = if g.chance(50) { 0 } else { g.below(1 << 40) };
        let op = Op::LayerNorm { epsilon, shift: g.shift(), y_zero_point: g.zp(out) };
        agree(&op, &[x.clone(), gamma.clone(), beta], out)?;
        let op = Op::RmsNorm { x_zero_point: g.zp(dx), epsilon, shift: g.shift(), y_zero_point: g.zp(out) };
        agree(&op, &[x, gamma], out)?;
    }

    #[test]
    fn embedding_and_layout(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let dt = g.dtype(ALL);
        let (v, d) = (g.dim(12), g.dim(6));
        let table = g.tensor(dt, &[v, d]);
        let ishape: Vec<usize> = (0..g.range(0, 2)).map(|_| g.dim(5)).collect();
        let ni: usize = ishape.iter().product();
        // Indices mostly in range, some outside on both sides.
        let idx = make(DType::I32, &ishape, (0..ni).map(|_| g.range(-2, v as i64 + 1)).collect());
        agree(&Op::Embedding, &[table, idx], dt)?;

        let rank = g.range(1, 4) as usize;
        let shape: Vec<usize> = (0..rank).map(|_| g.dim(5)).collect();
        let x = g.tensor(dt, &shape);
        let mut perm: Vec<usize> = (0..rank).collect();
        for i in (1..rank).rev() {
            perm.swap(i, g.below(i as u64 + 1) as usize);
        }
        agree(&Op::Transpose { perm }, std::slice::from_ref(&x), dt)?;
        agree(&Op::Reshape, std::slice::from_ref(&x), dt)?;
        let axis = g.below(rank as u64) as usize;
        let start = g.below(shape[axis] as u64 + 1) as usize;
        let end = start + g.below((shape[axis] - start) as u64 + 1) as usize;
        agree(&Op::Slice { axis, start, end }, std::slice::from_ref(&x), dt)?;
        let parts: Vec<Tensor> = (0..g.range(1, 3))
            .map(|_| {
                let mut s = shape.clone();
                s[axis] = g.dim(4);
                g.tensor(dt, &s)
            })
            .collect();
        agree(&Op::Concat { axis }, &parts, dt)?;
    }

    #[test]
    fn rope(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (h, s, d) = (g.dim(3), g.dim(6), 2 * g.dim(8));
        let p = s + g.dim(4);
        let dx = g.dtype(&[DType::I8, DType::I16]);
        let x = g.tensor(dx, &[h, s, d]);
        let cos = g.tensor(DType::I32, &[p, d / 2]);
        let sin = g.tensor(DType::I32, &[p, d / 2]);
        let out = g.dtype(&[DType::I8, DType::I16]);
        let op = Op::Rope {
            x_zero_point: g.zp(dx),
            y_zero_point: g.zp(out),
            position_offset: g.below((p - s) as u64 + 1) as u32,
            frac_bits: g.range(0, 30) as u32,
            pairing: if g.chance(50) { RopePairing::Half } else { RopePairing::Interleaved },
        };
        agree(&op, &[x, cos, sin], out)?;
    }

    #[test]
    fn mean_pool_and_argmax(seed in any::<u64>()) {
        let mut g = Gen(SplitMix64(seed));
        let (b, s, d) = (g.dim(3), g.dim(8), g.dim(6));
        let dx = g.dtype(ALL);
        let x = g.tensor(dx, &[b, d, s]);
        let dm = g.dtype(ALL);
        let mask = make(dm, &[b, s], (0..b * s).map(|_| if g.chance(60) { g.value(dm) } else { 0 }).collect());
        let out = g.dtype(ALL);
        let op = Op::MeanPool { x_zero_point: g.zp(dx), frac_bits: g.range(0, 30) as u32, y_zero_point: g.zp(out) };
        agree(&op, &[x, mask], out)?;
        let n = g.nz_dim(30);
        let rows = g.dim(5);
        // Few distinct values: ties for the maximum are common.
        let xa = make(dx, &[rows, n], (0..rows * n).map(|_| g.range(-2, 2)).collect());
        agree(&Op::Argmax, &[xa], DType::I32)?;
        let xb = g.tensor(dx, &[rows, n]);
        agree(&Op::Argmax, &[xb], DType::I32)?;
    }
}

/// Random ops on random operands, valid or not: the result is a value or an error,
/// never a panic, and a value always agrees with the reference.
#[test]
fn bad_operands_are_errors_not_panics() {
    let mut g = Gen(SplitMix64(7));
    let ops = [
        Op::FullyConnected {
            x_zero_point: 0,
            y_zero_point: 0,
        },
        Op::FullyConnected {
            x_zero_point: 300,
            y_zero_point: 0,
        },
        Op::BatchMatmul {
            transpose_b: true,
            a_zero_point: 0,
            b_zero_point: 0,
            multiplier: 1,
            shift: 70,
            y_zero_point: 0,
        },
        Op::Add {
            a_zero_point: 0,
            a_multiplier: 1,
            b_zero_point: 0,
            b_multiplier: 1,
            shift: 0,
            y_zero_point: 0,
        },
        Op::Mul {
            a_zero_point: 0,
            b_zero_point: 0,
            multiplier: 1,
            shift: 0,
            y_zero_point: 0,
        },
        Op::Lut,
        Op::Softmax {
            causal: true,
            frac_bits: 31,
            y_zero_point: 0,
        },
        Op::Softmax {
            causal: false,
            frac_bits: 8,
            y_zero_point: 0,
        },
        Op::LayerNorm {
            epsilon: 0,
            shift: 8,
            y_zero_point: 0,
        },
        Op::RmsNorm {
            x_zero_point: 0,
            epsilon: 0,
            shift: 8,
            y_zero_point: 0,
        },
        Op::Embedding,
        Op::Rope {
            x_zero_point: 0,
            y_zero_point: 0,
            position_offset: 3,
            frac_bits: 14,
            pairing: RopePairing::Half,
        },
        Op::Reshape,
        Op::Transpose { perm: vec![1, 1] },
        Op::Transpose { perm: vec![1, 0] },
        Op::Concat { axis: 5 },
        Op::Slice {
            axis: 0,
            start: 2,
            end: 1,
        },
        Op::MeanPool {
            x_zero_point: 0,
            frac_bits: 0,
            y_zero_point: 0,
        },
        Op::Argmax,
        Op::SoftmaxExp { causal: true },
        Op::SoftmaxNorm {
            frac_bits: 31,
            y_zero_point: 0,
        },
        Op::SoftmaxNorm {
            frac_bits: 4,
            y_zero_point: 0,
        },
    ];
    let mut values = 0;
    for _ in 0..4000 {
        let op = &ops[g.below(ops.len() as u64) as usize];
        let inputs: Vec<Tensor> = (0..g.range(0, 5))
            .map(|_| {
                let shape: Vec<usize> = (0..g.range(0, 3)).map(|_| g.dim(4)).collect();
                let dt = g.dtype(ALL);
                g.tensor(dt, &shape)
            })
            .collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let shape: Vec<usize> = (0..g.range(0, 3)).map(|_| g.dim(4)).collect();
        let out = TensorType::new(g.dtype(ALL), shape);
        match op.execute(&refs, &out, None) {
            Ok(y) => {
                values += 1;
                assert_eq!(y, reference::execute(op, &refs, &out).unwrap(), "{op:?}");
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(
        values > 0,
        "no random case was valid: the generator is too strict"
    );
}

#[test]
fn error_messages_name_the_problem() {
    let x = Tensor::from_i8(vec![2, 3], vec![0; 6]).unwrap();
    let w = Tensor::from_i8(vec![4, 5], vec![0; 20]).unwrap();
    let v4 = Tensor::from_i32(vec![4], vec![0; 4]).unwrap();
    let op = Op::FullyConnected {
        x_zero_point: 0,
        y_zero_point: 0,
    };
    let out = TensorType::new(DType::I8, vec![2, 4]);
    let e = op
        .execute(&[&x, &w, &v4, &v4, &v4], &out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("inner size"), "{e}");
    let w = Tensor::from_i8(vec![4, 3], vec![0; 12]).unwrap();
    let bad_shift = Tensor::from_i32(vec![4], vec![0, 1, 63, 0]).unwrap();
    let e = op
        .execute(&[&x, &w, &v4, &v4, &bad_shift], &out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shift[2] = 63"), "{e}");
    let e = op
        .execute(&[&x, &w, &v4], &out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes 5 operands"), "{e}");
    let e = op
        .execute(
            &[&x, &w, &v4, &v4, &v4],
            &TensorType::new(DType::I8, vec![2, 5]),
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("declared"), "{e}");
}

/// A shared product refuses ops of another kind and ops by different weight matrices.
#[test]
fn fully_connected_shared_refuses_mismatched_ops() {
    let (n, k) = (3usize, 4usize);
    let x = Tensor::from_i8(vec![2, k], vec![1; 2 * k]).unwrap();
    let w = Tensor::from_i8(vec![n, k], vec![2; n * k]).unwrap();
    let w2 = w.clone();
    let v = Tensor::from_i32(vec![n], vec![1; n]).unwrap();
    let s = Tensor::from_i32(vec![n], vec![1; n]).unwrap();
    let fc = Op::FullyConnected {
        x_zero_point: 0,
        y_zero_point: 0,
    };
    let out = TensorType::new(DType::I32, vec![2, n]);
    let a = [&x, &w, &v, &v, &s];
    let b = [&x, &w2, &v, &v, &s];
    let err = Op::execute_fc_shared(&[(&fc, &a[..], &out), (&fc, &b[..], &out)], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("same weight tensor"), "{err}");
    let relu = Op::Requantize {
        x_zero_point: 0,
        multiplier: 1,
        shift: 0,
        y_zero_point: 0,
    };
    let one = [&x];
    let err = Op::execute_fc_shared(
        &[
            (&fc, &a[..], &out),
            (&relu, &one[..], &TensorType::new(DType::I8, vec![2, k])),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not requantize"), "{err}");
    let both = Op::execute_fc_shared(&[(&fc, &a[..], &out), (&fc, &a[..], &out)], None).unwrap();
    assert_eq!(both[0], both[1]);
}

#[test]
fn a_prepared_epilogue_refuses_operands_of_the_wrong_length() {
    let packed = PackedMatrix::pack(&[1, 2, 3, 4, 5, 6], 2, 3);
    let two = Tensor::from_i32(vec![2], vec![0, 0]).unwrap();
    let three = Tensor::from_i32(vec![3], vec![0, 0, 0]).unwrap();
    let err = FcEpilogue::new(&packed, &three, &two, &two, 0, 0).unwrap_err();
    assert!(err.to_string().contains("bias must be [2]"), "{err}");
    let bad_shift = Tensor::from_i32(vec![2], vec![3, 63]).unwrap();
    let err = FcEpilogue::new(&packed, &two, &two, &bad_shift, 0, 0).unwrap_err();
    assert!(err.to_string().contains("shift"), "{err}");
    assert!(FcEpilogue::new(&packed, &two, &two, &two, 0, 0).is_ok());
}

#[test]
fn a_fused_pair_refuses_what_it_cannot_fuse() {
    let w = Tensor::from_i8(vec![2, 3], vec![1, 2, 3, 4, 5, 6]).unwrap();
    let x = Tensor::from_i8(vec![1, 3], vec![1, -1, 2]).unwrap();
    let v = |vals: Vec<i32>| Tensor::from_i32(vec![2], vals).unwrap();
    let (bias, m, s) = (v(vec![0, 0]), v(vec![1 << 30, 1 << 30]), v(vec![30, 30]));
    let fc = Op::FullyConnected {
        x_zero_point: 0,
        y_zero_point: 0,
    };
    let inputs = [&x, &w, &bias, &m, &s];
    let add = Op::Add {
        a_zero_point: 0,
        a_multiplier: 1,
        b_zero_point: 0,
        b_multiplier: 1,
        shift: 0,
        y_zero_point: 0,
    };
    let out8 = TensorType::new(DType::I8, vec![1, 2]);
    let out32 = TensorType::new(DType::I32, vec![1, 2]);
    // i8 products: the pair must give i32.
    let err = Op::execute_fc_pair_add(
        &[(&fc, &inputs, &out8, None), (&fc, &inputs, &out8, None)],
        (&add, &out8),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("i32"), "{err}");
    // The last op must be an add.
    let err = Op::execute_fc_pair_add(
        &[(&fc, &inputs, &out32, None), (&fc, &inputs, &out32, None)],
        (&fc, &out8),
        None,
    )
    .unwrap_err();
    assert!(!err.to_string().is_empty());
    // And it works when it can: 2 * (1*1 - 2 + 6, 4 - 5 + 12) = (10, 22).
    let y = Op::execute_fc_pair_add(
        &[(&fc, &inputs, &out32, None), (&fc, &inputs, &out32, None)],
        (&add, &out32),
        None,
    )
    .unwrap();
    assert_eq!(y.as_i32("y").unwrap(), [10, 22]);
}

/// A `fully_connected` by `w` (`[n, k]`) on an `x` of `xshape`, with random bias,
/// requantization, zero points and an output dtype from `outs`: the op, its operands
/// (a copy of `w` second) and its output type.
fn fc_case(
    g: &mut Gen,
    w: &Tensor,
    xshape: &[usize],
    outs: &[DType],
) -> (Op, Vec<Tensor>, TensorType) {
    let n = w.shape()[0];
    let x = g.tensor(DType::I8, xshape);
    let bias = g.tensor(DType::I32, &[n]);
    let m = make(
        DType::I32,
        &[n],
        (0..n).map(|_| g.multiplier() as i64).collect(),
    );
    let s = make(DType::I32, &[n], (0..n).map(|_| g.shift() as i64).collect());
    let out = g.dtype(outs);
    let op = Op::FullyConnected {
        x_zero_point: g.zp(DType::I8),
        y_zero_point: g.zp(out),
    };
    let inputs = vec![x, w.clone(), bias, m, s];
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let out = op.infer(&types.iter().collect::<Vec<_>>(), out).unwrap();
    (op, inputs, out)
}

/// The operands of `cases` with `w` itself as every case's weight matrix (a shared
/// product multiplies one tensor).
fn with_shared_w<'a>(
    cases: &'a [(Op, Vec<Tensor>, TensorType)],
    w: &'a Tensor,
) -> Vec<Vec<&'a Tensor>> {
    cases
        .iter()
        .map(|(_, inputs, _)| {
            let mut r: Vec<&Tensor> = inputs.iter().collect();
            r[1] = w;
            r
        })
        .collect()
}

/// The prepared requantization of `op`, a `fully_connected` by `packed` on operands `r`.
fn epilogue_of(packed: &PackedMatrix, op: &Op, r: &[&Tensor]) -> FcEpilogue {
    let Op::FullyConnected {
        x_zero_point,
        y_zero_point,
    } = *op
    else {
        panic!("not a fully_connected: {op:?}")
    };
    FcEpilogue::new(packed, r[2], r[3], r[4], x_zero_point, y_zero_point).unwrap()
}
