//! Gas of `computeElement` for the costliest element of every op kind at the shapes of the
//! real models (MiniLM: hidden 384, FFN 1536, 12 heads of 32, sequence 128, vocabulary
//! 30522; SmolLM2-135M: hidden 576, FFN 1536, 9 query / 3 key-value heads of 64, context
//! 512, vocabulary 49152), with the openings a prover would send (each operand's leaves as
//! contiguous runs or as one covering range, whichever costs less). Writes
//! `contracts/gas/onestep.json` and checks that every figure it records was measured
//! against the reference value.
//!
//! Gas is the whole transaction's (21,000 + calldata + execution), Cancun rules.

mod support;

use alloy::sol_types::SolCall;
use inference::ops::{Op, RopePairing};
use inference::{DType, Tensor};
use serde_json::json;
use support::{Case, Fixture, Grouping, Rng, Verifier};

/// The target for one step; the report flags every element above it.
const LIMIT: u64 = 1_000_000;

struct GasCase {
    model: &'static str,
    what: &'static str,
    case: Case,
    index: usize,
}

fn t(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    rng.tensor_with(dtype, shape, |r| r.range(dtype.min(), dtype.max()))
}

fn fc(
    rng: &mut Rng,
    model: &'static str,
    what: &'static str,
    rows: usize,
    k: usize,
    n: usize,
) -> GasCase {
    let x = t(rng, DType::I8, &[rows, k]);
    let w = t(rng, DType::I8, &[n, k]);
    let bias = t(rng, DType::I32, &[n]);
    let m = rng.tensor_with(DType::I32, &[n], |r| r.range(1 << 30, (1 << 31) - 1));
    let s = rng.tensor_with(DType::I32, &[n], |r| r.range(30, 40));
    let op = Op::FullyConnected {
        x_zero_point: -128,
        y_zero_point: 0,
    };
    let case = Case::inferred(op, vec![x, w, bias, m, s], DType::I16).expect("valid");
    GasCase {
        model,
        what,
        index: case.out.numel() - 1,
        case,
    }
}

#[allow(clippy::too_many_arguments)]
fn bmm(
    rng: &mut Rng,
    model: &'static str,
    what: &'static str,
    ba: usize,
    bb: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
) -> GasCase {
    let a = t(rng, DType::I8, &[ba, m, k]);
    let b = t(
        rng,
        DType::I8,
        &if transpose_b { [bb, n, k] } else { [bb, k, n] },
    );
    let op = Op::BatchMatmul {
        transpose_b,
        a_zero_point: -128,
        b_zero_point: 0,
        multiplier: 1 << 30,
        shift: 36,
        y_zero_point: 0,
    };
    let case = Case::inferred(op, vec![a, b], DType::I16).expect("valid");
    GasCase {
        model,
        what,
        index: case.out.numel() - 1,
        case,
    }
}

fn pointwise(
    rng: &mut Rng,
    model: &'static str,
    op: Op,
    shape: &[usize],
    da: DType,
    db: Option<DType>,
    out: DType,
) -> GasCase {
    let mut inputs = vec![t(rng, da, shape)];
    if let Some(db) = db {
        inputs.push(if matches!(op, Op::Lut) {
            t(rng, db, &[256])
        } else {
            t(rng, db, shape)
        });
    }
    let what = op.kind().name();
    let case = Case::inferred(op, inputs, out).expect("valid");
    GasCase {
        model,
        what,
        index: case.out.numel() / 2,
        case,
    }
}

/// A softmax row of random `i16` scores (`dense`: all within `table` of each other, so every
/// column reads its own table entry, the most table leaves a row can need).
fn softmax(
    rng: &mut Rng,
    model: &'static str,
    heads: usize,
    (m, n): (usize, usize),
    table: usize,
    dense: bool,
    split: bool,
) -> GasCase {
    let x = if dense {
        rng.tensor_with(DType::I16, &[1, heads, m, n], |r| {
            r.range(0, table as i64 - 1)
        })
    } else {
        t(rng, DType::I16, &[1, heads, m, n])
    };
    let exp = rng.tensor_with(DType::I32, &[table], |r| r.range(0, 1 << 30));
    let mask = rng.tensor_with(DType::I32, &[1, n], |_| 1);
    let op = Op::Softmax {
        causal: false,
        frac_bits: 14,
        y_zero_point: 0,
    };
    let case = Case::inferred(op, vec![x, exp, mask], DType::I16).expect("valid");
    GasCase {
        model,
        what: match (dense, split) {
            (true, false) => "softmax (dense: every score within the table)",
            (false, false) => "softmax (random i16 scores)",
            (true, true) => "softmax (dense; SmolLM2 runs it split: not used, for contrast)",
            (false, true) => "softmax (random; SmolLM2 runs it split: not used, for contrast)",
        },
        index: case.out.numel() - 1,
        case,
    }
}

/// The two halves of a softmax row of random `i16` scores, as SmolLM2 runs them: the exp
/// entry of the row's last column (its row of `x` and one table entry), then the division
/// of a row of `i32` entries (the largest the exp table gives, so the sum is widest).
fn split_softmax(
    rng: &mut Rng,
    model: &'static str,
    heads: usize,
    (m, n): (usize, usize),
    table: usize,
) -> [GasCase; 2] {
    let x = t(rng, DType::I16, &[1, heads, m, n]);
    let exp = rng.tensor_with(DType::I32, &[table], |r| r.range(0, 1 << 30));
    let mask = rng.tensor_with(DType::I32, &[1, n], |_| 1);
    let op = Op::SoftmaxExp { causal: true };
    let exp_case = Case::inferred(op, vec![x, exp, mask], DType::I32).expect("valid");
    let e = rng.tensor_with(DType::I32, &[1, heads, m, n], |r| r.range(0, 1 << 30));
    let op = Op::SoftmaxNorm {
        frac_bits: 14,
        y_zero_point: 0,
    };
    let norm_case = Case::inferred(op, vec![e], DType::I16).expect("valid");
    [
        GasCase {
            model,
            what: "softmax_exp (random i16 scores)",
            index: exp_case.out.numel() - 1,
            case: exp_case,
        },
        GasCase {
            model,
            what: "softmax_norm (a row of i32 exp entries)",
            index: norm_case.out.numel() - 1,
            case: norm_case,
        },
    ]
}

fn norm(
    rng: &mut Rng,
    model: &'static str,
    rms: bool,
    rows: usize,
    n: usize,
    dx: DType,
) -> GasCase {
    let x = t(rng, dx, &[rows, n]);
    let gamma = rng.tensor_with(DType::I32, &[n], |r| r.range(1 << 15, 1 << 17));
    let (op, inputs) = if rms {
        (
            Op::RmsNorm {
                x_zero_point: 0,
                epsilon: 1 << 20,
                shift: 16,
                y_zero_point: 0,
            },
            vec![x, gamma],
        )
    } else {
        let beta = t(rng, DType::I32, &[n]);
        (
            Op::LayerNorm {
                epsilon: 1 << 20,
                shift: 16,
                y_zero_point: 0,
            },
            vec![x, gamma, beta],
        )
    };
    let what = op.kind().name();
    let case = Case::inferred(op, inputs, DType::I16).expect("valid");
    GasCase {
        model,
        what,
        index: case.out.numel() - 1,
        case,
    }
}

fn cases() -> Vec<GasCase> {
    let mut rng = Rng::new(2026);
    let r = &mut rng;
    let (m, s) = ("MiniLM-L6 (seq 128)", "SmolLM2-135M (ctx 512)");
    let mut v = vec![
        // MiniLM.
        fc(r, m, "fully_connected (FFN down, K 1536)", 128, 1536, 384),
        bmm(
            r,
            m,
            "batch_matmul (Q K^T, K 32)",
            12,
            12,
            128,
            32,
            128,
            true,
        ),
        bmm(
            r,
            m,
            "batch_matmul (P V, K 128 strided)",
            12,
            12,
            128,
            128,
            32,
            false,
        ),
        pointwise(
            r,
            m,
            Op::Add {
                a_zero_point: 0,
                a_multiplier: 1 << 30,
                b_zero_point: 0,
                b_multiplier: 1 << 30,
                shift: 30,
                y_zero_point: 0,
            },
            &[128, 384],
            DType::I16,
            Some(DType::I16),
            DType::I16,
        ),
        pointwise(
            r,
            m,
            Op::Requantize {
                x_zero_point: 0,
                multiplier: 1 << 30,
                shift: 38,
                y_zero_point: 0,
            },
            &[128, 1536],
            DType::I32,
            None,
            DType::I8,
        ),
        pointwise(
            r,
            m,
            Op::Lut,
            &[128, 1536],
            DType::I8,
            Some(DType::I8),
            DType::I8,
        ),
        softmax(r, m, 12, (128, 128), 4096, false, false),
        // Its own generator: the other cases keep their data.
        softmax(&mut Rng::new(1), m, 12, (128, 128), 4096, true, false),
        norm(r, m, false, 128, 384, DType::I16),
    ];
    {
        let word = t(r, DType::I16, &[30522, 384]);
        let ids = r.tensor_with(DType::I32, &[1, 128], |r| r.range(0, 30521));
        let case = Case::inferred(Op::Embedding, vec![word, ids], DType::I16).expect("valid");
        v.push(GasCase {
            model: m,
            what: "embedding (30522 x 384)",
            index: case.out.numel() - 1,
            case,
        });
    }
    {
        let x = t(r, DType::I16, &[1, 384, 128]);
        // MiniLM turns its last hidden state [1, S, D] into [1, D, S] for mean_pool (values
        // do not change the cost of one transposed element: the same data, viewed as [1, S, D]).
        let h = x.clone().reshaped(vec![1, 128, 384]).expect("same size");
        let mask = r.tensor_with(DType::I32, &[1, 128], |_| 1);
        let op = Op::MeanPool {
            x_zero_point: 0,
            frac_bits: 8,
            y_zero_point: 0,
        };
        let case = Case::inferred(op, vec![x, mask], DType::I32).expect("valid");
        v.push(GasCase {
            model: m,
            what: "mean_pool (128 positions)",
            index: 383,
            case,
        });
        let op = Op::Transpose {
            perm: vec![0, 2, 1],
        };
        let case = Case::inferred(op, vec![h], DType::I16).expect("valid");
        v.push(GasCase {
            model: m,
            what: "transpose (hidden state for mean_pool)",
            index: case.out.numel() - 1,
            case,
        });
    }
    {
        let x = t(r, DType::I8, &[1, 128, 12, 32]);
        let case = Case::inferred(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            vec![x],
            DType::I8,
        )
        .expect("valid");
        v.push(GasCase {
            model: m,
            what: "transpose (heads)",
            index: case.out.numel() - 1,
            case,
        });
        let x = t(r, DType::I8, &[128, 384]);
        let out = inference::TensorType::new(DType::I8, vec![1, 128, 12, 32]);
        v.push(GasCase {
            model: m,
            what: "reshape",
            index: 128 * 384 - 1,
            case: Case {
                op: Op::Reshape,
                inputs: vec![x],
                out,
            },
        });
        let x = t(r, DType::I16, &[1, 128, 384]);
        let case = Case::inferred(
            Op::Slice {
                axis: 1,
                start: 0,
                end: 1,
            },
            vec![x],
            DType::I16,
        )
        .expect("valid");
        v.push(GasCase {
            model: m,
            what: "slice (CLS row)",
            index: 383,
            case,
        });
    }
    // SmolLM2.
    v.push(fc(r, s, "fully_connected (FFN down, K 1536)", 1, 1536, 576));
    v.push(fc(
        r,
        s,
        "fully_connected (LM head, K 576, N 49152)",
        1,
        576,
        49152,
    ));
    v.push(bmm(
        r,
        s,
        "batch_matmul (Q K^T, K 64, 9/3 heads)",
        9,
        3,
        1,
        64,
        512,
        true,
    ));
    v.push(bmm(
        r,
        s,
        "batch_matmul (P V^T, K 512, 9/3 heads)",
        9,
        3,
        1,
        512,
        64,
        true,
    ));
    v.push(bmm(
        r,
        s,
        "batch_matmul (P V, K 512 strided: not used, for contrast)",
        9,
        3,
        1,
        512,
        64,
        false,
    ));
    v.push(pointwise(
        r,
        s,
        Op::Add {
            a_zero_point: 0,
            a_multiplier: 1 << 30,
            b_zero_point: 0,
            b_multiplier: 1 << 30,
            shift: 30,
            y_zero_point: 0,
        },
        &[1, 576],
        DType::I32,
        Some(DType::I32),
        DType::I32,
    ));
    v.push(pointwise(
        r,
        s,
        Op::Mul {
            a_zero_point: 0,
            b_zero_point: 0,
            multiplier: 1 << 30,
            shift: 44,
            y_zero_point: 0,
        },
        &[1, 1536],
        DType::I16,
        Some(DType::I16),
        DType::I32,
    ));
    v.push(pointwise(
        r,
        s,
        Op::Lut,
        &[1, 1536],
        DType::I8,
        Some(DType::I16),
        DType::I16,
    ));
    v.extend(split_softmax(r, s, 9, (1, 512), 16384));
    v.push(softmax(r, s, 9, (1, 512), 16384, false, true));
    v.push(softmax(&mut Rng::new(2), s, 9, (1, 512), 16384, true, true));
    v.push(norm(r, s, true, 1, 576, DType::I32));
    {
        let word = t(r, DType::I8, &[49152, 576]);
        let ids = r.tensor_with(DType::I32, &[1, 1], |r| r.range(0, 49151));
        let case = Case::inferred(Op::Embedding, vec![word, ids], DType::I8).expect("valid");
        v.push(GasCase {
            model: s,
            what: "embedding (49152 x 576)",
            index: case.out.numel() - 1,
            case,
        });
    }
    {
        let x = t(r, DType::I16, &[1, 9, 1, 64]);
        let cos = t(r, DType::I32, &[512, 32]);
        let sin = t(r, DType::I32, &[512, 32]);
        let op = Op::Rope {
            x_zero_point: 0,
            y_zero_point: 0,
            position_offset: 511,
            frac_bits: 20,
            pairing: RopePairing::Half,
        };
        let case = Case::inferred(op, vec![x, cos, sin], DType::I16).expect("valid");
        v.push(GasCase {
            model: s,
            what: "rope (position 511)",
            index: case.out.numel() - 1,
            case,
        });
        let a = t(r, DType::I8, &[3, 511, 64]);
        let b = t(r, DType::I8, &[3, 1, 64]);
        let case = Case::inferred(Op::Concat { axis: 1 }, vec![a, b], DType::I8).expect("valid");
        v.push(GasCase {
            model: s,
            what: "concat (K cache)",
            index: case.out.numel() - 1,
            case,
        });
        // Values are cached transposed and grow along the last axis.
        let a = t(r, DType::I8, &[3, 64, 511]);
        let b = t(r, DType::I8, &[3, 64, 1]);
        let case = Case::inferred(Op::Concat { axis: 2 }, vec![a, b], DType::I8).expect("valid");
        v.push(GasCase {
            model: s,
            what: "concat (V^T cache)",
            index: case.out.numel() - 1,
            case,
        });
    }
    // SmolLM2's program picks each token in two stages (`inference/src/import/smollm2.rs`):
    // argmax over 192 chunks of 256 logits, the chunk maxima gathered by index, argmax over
    // them, the token gathered by index. One row of 49,152 is kept for contrast.
    let logits = t(r, DType::I32, &[192, 256]);
    let case = Case::inferred(Op::Argmax, vec![logits], DType::I32).expect("valid");
    v.push(GasCase {
        model: s,
        what: "argmax (stage 1: a chunk of 256 i32 logits)",
        index: 191,
        case,
    });
    let maxima = t(r, DType::I32, &[1, 192]);
    let case = Case::inferred(Op::Argmax, vec![maxima], DType::I32).expect("valid");
    v.push(GasCase {
        model: s,
        what: "argmax (stage 2: 192 i32 chunk maxima)",
        index: 0,
        case,
    });
    let table = t(r, DType::I32, &[49152, 1]);
    let indices =
        Tensor::from_i32(vec![192], (0..192).map(|c| c * 256 + 255).collect()).expect("indices");
    let case = Case::inferred(Op::Embedding, vec![table, indices], DType::I32).expect("valid");
    v.push(GasCase {
        model: s,
        what: "embedding (gather a chunk maximum from 49152 x 1 i32 logits)",
        index: 191,
        case,
    });
    let x = t(r, DType::I32, &[1, 49152]);
    let case = Case::inferred(Op::Argmax, vec![x], DType::I32).expect("valid");
    v.push(GasCase {
        model: s,
        what: "argmax (one row of 49152 i32 logits: not used, for contrast)",
        index: 0,
        case,
    });
    v
}

#[test]
fn one_step_gas_at_model_shapes() {
    let mut verifier = Verifier::deploy();
    // Above EIP-7825's 2^24 per-transaction cap (not in force under Cancun): the widest
    // argmax rows need more, and the report must show how much.
    verifier.evm.set_gas_limit(200_000_000);
    let mut rng = Rng::new(7);
    let mut rows = Vec::new();
    for g in cases() {
        let want = g.case.reference(g.index).expect("reference");
        let needed = g.case.needed(g.index);
        let fixture = Fixture::new(&mut rng, &g.case);
        let mut best: Option<(u64, Grouping, usize)> = None;
        for grouping in [Grouping::Runs, Grouping::Cover] {
            let call = fixture.call(&g.case, g.index, &needed, grouping);
            let calldata = call.encode().abi_encode().len();
            let (got, gas) = verifier.compute(&call).expect("computeElement");
            assert_eq!(got, want, "{} {}", g.model, g.what);
            if best.is_none_or(|(b, _, _)| gas < b) {
                best = Some((gas, grouping, calldata));
            }
        }
        let (gas, grouping, calldata) = best.expect("measured");
        let leaves: usize = needed.iter().map(Vec::len).sum();
        eprintln!(
            "{:<26} {:<48} {:>10} gas  {:>7} calldata bytes  {:?}",
            g.model, g.what, gas, calldata, grouping
        );
        rows.push(json!({
            "model": g.model,
            "op": g.case.op.kind().name(),
            "element": g.what,
            "operands": g.case.inputs.iter().map(|t| t.ty().to_string()).collect::<Vec<_>>(),
            "needed_leaves": leaves,
            "grouping": format!("{grouping:?}").to_lowercase(),
            "calldata_bytes": calldata,
            "gas": gas,
            "under_1m": gas < LIMIT,
        }));
    }
    let report = json!({
        "command": "cargo test -p contracts --release --test gas",
        "rules": "Cancun (revm 43); gas of the whole transaction: 21000 + calldata + execution",
        "limit": LIMIT,
        "elements": rows,
    });
    let path = contracts::artifacts::crate_dir().join("gas/onestep.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap() + "\n")
        .expect("write the report");
}
