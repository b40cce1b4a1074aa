//! Differential tests of the int8 matrix product: every available [`KernelPath`] and
//! [`matmul`] against a naive triple loop, in wrapping `i32`.

use inference::gemm::{KernelPath, PackedMatrix, matmul, matmul_with};
use proptest::prelude::*;
use proptest::sample::select;
use std::sync::OnceLock;

/// `out[i][j] = Σ_t x[i][t] · w[j][t]`, wrapping: the definition.
fn naive(x: &[i8], m: usize, w: &[i8], n: usize, k: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).fold(0i32, |acc, t| {
                acc.wrapping_add(i32::from(x[i * k + t]) * i32::from(w[j * k + t]))
            });
        }
    }
    out
}

/// Checks `matmul` and every available path against [`naive`].
fn check(x: &[i8], m: usize, w: &[i8], n: usize, k: usize) -> Result<(), TestCaseError> {
    let expected = naive(x, m, w, n, k);
    let packed = PackedMatrix::pack(w, n, k);
    prop_assert_eq!((packed.n(), packed.k()), (n, k));
    let mut out = vec![i32::MIN; m * n];
    matmul(x, m, &packed, &mut out);
    prop_assert!(out == expected, "matmul differs at m={m} n={n} k={k}");
    for path in KernelPath::available() {
        let mut out = vec![0x5a5a_5a5a; m * n];
        matmul_with(path, x, m, &packed, &mut out);
        prop_assert!(
            out == expected,
            "{} differs at m={m} n={n} k={k}",
            path.name()
        );
    }
    Ok(())
}

/// A dimension: small, or one around a panel, tile or group boundary.
fn dim(max: usize, edges: &'static [usize]) -> impl Strategy<Value = usize> {
    prop_oneof![0..=max, select(edges)]
}

/// Rows of `x`: around the tile heights (4, 6, 8) and decode's 1 and 2.
const M_EDGES: &[usize] = &[0, 1, 2, 3, 5, 6, 7, 8, 9, 12, 15, 16, 17];
/// Rows of `w`: around the 16-column panels and 3- and 8-panel tiles.
const N_EDGES: &[usize] = &[
    0, 1, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 127, 128, 129, 143,
];
/// Depth: around the 4-byte groups.
const K_EDGES: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255,
];

/// A shape with random operands.
fn random_case(
    max_m: usize,
    max_n: usize,
    max_k: usize,
) -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i8>)> {
    (
        dim(max_m, M_EDGES),
        dim(max_n, N_EDGES),
        dim(max_k, K_EDGES),
    )
        .prop_flat_map(|(m, n, k)| {
            (
                Just(m),
                Just(n),
                Just(k),
                prop::collection::vec(any::<i8>(), m * k),
                prop::collection::vec(any::<i8>(), n * k),
            )
        })
}

/// A shape with operands drawn from the extremes, so that any saturation would show.
fn extreme_case() -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i8>)> {
    const EXTREMES: &[i8] = &[-128, 127, -127, -1, 0, 1];
    (dim(12, M_EDGES), dim(70, N_EDGES), dim(300, K_EDGES)).prop_flat_map(|(m, n, k)| {
        (
            Just(m),
            Just(n),
            Just(k),
            prop::collection::vec(select(EXTREMES), m * k),
            prop::collection::vec(select(EXTREMES), n * k),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn matmul_random_small_shapes_match_naive((m, n, k, x, w) in random_case(20, 70, 140)) {
        check(&x, m, &w, n, k)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn matmul_extreme_values_match_naive((m, n, k, x, w) in extreme_case()) {
        check(&x, m, &w, n, k)?;
    }

    #[test]
    fn matmul_constant_operands_match_naive(
        m in dim(20, M_EDGES),
        n in dim(70, N_EDGES),
        k in dim(600, K_EDGES),
        a in select(&[-128i8, 127, -127][..]),
        b in select(&[-128i8, 127, -127][..]),
    ) {
        check(&vec![a; m * k], m, &vec![b; n * k], n, k)?;
    }

    #[test]
    fn pack_row_sums_are_wrapping_row_sums((n, k, w) in (dim(70, N_EDGES), dim(300, K_EDGES)).prop_flat_map(|(n, k)| {
        (Just(n), Just(k), prop::collection::vec(any::<i8>(), n * k))
    })) {
        let packed = PackedMatrix::pack(&w, n, k);
        let expected: Vec<i32> = (0..n)
            .map(|j| w[j * k..(j + 1) * k].iter().fold(0i32, |acc, &b| acc.wrapping_add(i32::from(b))))
            .collect();
        prop_assert_eq!(packed.row_sums(), &expected[..]);
    }
}

/// A 3-thread pool: products run from inside it are split into many blocks (odd ones too).
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matmul_split_across_threads_matches_naive((m, n, k, x, w) in random_case(70, 150, 300)) {
        pool().install(|| check(&x, m, &w, n, k))?;
    }
}

/// Deterministic pseudo-random bytes (xorshift), for the fixed-shape tests.
fn bytes(len: usize, seed: u64) -> Vec<i8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as i8
        })
        .collect()
}

#[test]
fn matmul_true_sum_beyond_i32_wraps_like_naive() {
    // (-128)² · (2^17 + 3) = 2^31 + 3 · 2^14: past i32::MAX, so the exact sum wraps.
    let (m, n, k) = (3, 17, (1 << 17) + 3);
    let x = vec![-128i8; m * k];
    let mut w = vec![-128i8; n * k];
    // One row of w at +127 and one mixed, so not every column is the same.
    w[k..2 * k].fill(127);
    w[2 * k..3 * k].copy_from_slice(&bytes(k, 7));
    let expected = naive(&x, m, &w, n, k);
    let wrapped = (16384i64 * k as i64) as i32;
    assert!(wrapped < 0, "the true sum must overflow i32");
    assert_eq!(expected[0], wrapped);
    let packed = PackedMatrix::pack(&w, n, k);
    for path in KernelPath::available() {
        let mut out = vec![0; m * n];
        matmul_with(path, &x, m, &packed, &mut out);
        assert_eq!(out, expected, "{}", path.name());
    }
}

#[test]
fn matmul_transformer_shapes_match_naive() {
    for (m, k, n) in [
        (128, 384, 384),
        (1, 576, 1536),
        (3, 576, 1000),
        (65, 97, 211),
    ] {
        let (x, w) = (bytes(m * k, 1), bytes(n * k, 2));
        check(&x, m, &w, n, k).unwrap();
    }
}

#[test]
fn matmul_is_identical_for_every_thread_count() {
    let (m, k, n) = (70, 300, 517);
    let (x, w) = (bytes(m * k, 3), bytes(n * k, 4));
    let packed = PackedMatrix::pack(&w, n, k);
    let expected = naive(&x, m, &w, n, k);
    for threads in [1, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for path in KernelPath::available() {
            let mut out = vec![0; m * n];
            pool.install(|| matmul_with(path, &x, m, &packed, &mut out));
            assert_eq!(out, expected, "{} on {threads} threads", path.name());
        }
    }
}

#[test]
fn kernel_path_detect_is_the_last_available() {
    let available = KernelPath::available();
    assert_eq!(available.first(), Some(&KernelPath::Portable));
    assert_eq!(available.last(), Some(&KernelPath::detect()));
    assert!(available.iter().all(|path| path.is_supported()));
    let names: Vec<_> = [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::Avx512Vnni,
    ]
    .map(KernelPath::name)
    .into();
    assert_eq!(names, ["portable", "avx2", "avx512-vnni"]);
}

#[test]
fn matmul_with_any_path_is_exact_even_if_unsupported() {
    // A path the CPU lacks falls back to the portable kernels.
    let (m, k, n) = (5, 33, 40);
    let (x, w) = (bytes(m * k, 5), bytes(n * k, 6));
    let packed = PackedMatrix::pack(&w, n, k);
    for path in [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::Avx512Vnni,
    ] {
        let mut out = vec![0; m * n];
        matmul_with(path, &x, m, &packed, &mut out);
        assert_eq!(out, naive(&x, m, &w, n, k), "{}", path.name());
    }
}

#[test]
fn matmul_with_zero_depth_writes_zeros() {
    let packed = PackedMatrix::pack(&[], 3, 0);
    assert_eq!(packed.row_sums(), [0, 0, 0]);
    let mut out = vec![7; 6];
    matmul(&[], 2, &packed, &mut out);
    assert_eq!(out, [0; 6]);
}

#[test]
#[should_panic(expected = "x has")]
fn matmul_with_short_x_panics() {
    let packed = PackedMatrix::pack(&[1; 12], 3, 4);
    matmul(&[1; 7], 2, &packed, &mut [0; 6]);
}

#[test]
#[should_panic(expected = "out has")]
fn matmul_with_short_out_panics() {
    let packed = PackedMatrix::pack(&[1; 12], 3, 4);
    matmul(&[1; 8], 2, &packed, &mut [0; 5]);
}

#[test]
#[should_panic(expected = "w has")]
fn pack_with_wrong_length_panics() {
    PackedMatrix::pack(&[1; 11], 3, 4);
}
