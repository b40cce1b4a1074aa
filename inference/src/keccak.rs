//! keccak256 of many short inputs at once, for Merkle roots: the 32-byte leaves of a level
//! and the 64-byte pairs of the levels above. On CPUs with AVX-512 eight Keccak-f\[1600\]
//! states run side by side, one in each 64-bit lane of 25 registers; elsewhere each input
//! is hashed alone ([`keccak256`]). Both give `keccak256(input)` exactly (the Ethereum
//! hash: Keccak padding `0x01 ... 0x80`, not SHA-3's).

use crate::merkle::{H256, keccak256};

/// keccak256 of each 32-byte input: `out[i] = keccak256(inputs[i])`.
pub(crate) fn hash_32_many(inputs: &[[u8; 32]], out: &mut [H256]) {
    assert_eq!(inputs.len(), out.len(), "one output per input");
    #[cfg(target_arch = "x86_64")]
    if inputs.len() >= 2 && x8::is_supported() {
        // SAFETY: the CPU has AVX-512F.
        unsafe { x8::hash_many::<4>(inputs.len(), &|i| words(&inputs[i]), out) };
        return;
    }
    for (input, o) in inputs.iter().zip(out) {
        *o = keccak256(input);
    }
}

/// keccak256 of each consecutive pair: `out[i] = keccak256(nodes[2i] || nodes[2i + 1])`.
pub(crate) fn hash_pairs(nodes: &[H256], out: &mut [H256]) {
    assert_eq!(nodes.len(), 2 * out.len(), "two nodes per output");
    #[cfg(target_arch = "x86_64")]
    if out.len() >= 2 && x8::is_supported() {
        let pair = |i: usize| -> [u64; 8] {
            let (l, r) = (words::<4>(&nodes[2 * i].0), words::<4>(&nodes[2 * i + 1].0));
            [l[0], l[1], l[2], l[3], r[0], r[1], r[2], r[3]]
        };
        // SAFETY: the CPU has AVX-512F.
        unsafe { x8::hash_many::<8>(out.len(), &pair, out) };
        return;
    }
    for (pair, o) in nodes.chunks_exact(2).zip(out) {
        *o = crate::merkle::hash_pair(&pair[0], &pair[1]);
    }
}

/// The little-endian 64-bit words of a `8 * W`-byte input.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn words<const W: usize>(bytes: &[u8]) -> [u64; W] {
    std::array::from_fn(|w| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[8 * w..8 * w + 8]);
        u64::from_le_bytes(word)
    })
}

#[cfg(target_arch = "x86_64")]
mod x8 {
    use super::H256;
    use std::arch::x86_64::*;

    /// Words absorbed per block (1088 bits of rate at 256 bits of output).
    const RATE_WORDS: usize = 17;

    /// The 24 round constants of Keccak-f\[1600\].
    const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808a,
        0x8000000080008000,
        0x000000000000808b,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008a,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000a,
        0x000000008000808b,
        0x800000000000008b,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800a,
        0x800000008000000a,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];

    /// Whether this CPU can run the eight-lane path.
    pub(super) fn is_supported() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// keccak256 of `count` inputs of `W` words (`W < RATE_WORDS`), eight at a time (the
    /// last group filled with empty lanes): `out[i]` for `input(i)`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn hash_many<const W: usize>(
        count: usize,
        input: &impl Fn(usize) -> [u64; W],
        out: &mut [H256],
    ) {
        // `lanes[w][j]`: word `w` of lane `j`'s state.
        let mut lanes = [[0u64; 8]; 25];
        let mut start = 0;
        while start < count {
            let n = (count - start).min(8);
            for lane in lanes.iter_mut() {
                *lane = [0; 8];
            }
            #[allow(clippy::needless_range_loop)] // `j` is the inner index: `lanes[w][j]`
            for j in 0..n {
                for (w, word) in input(start + j).into_iter().enumerate() {
                    lanes[w][j] = word;
                }
                // Keccak's padding after the input, and at the end of the rate.
                lanes[W][j] ^= 0x01;
                lanes[RATE_WORDS - 1][j] ^= 0x80 << 56;
            }
            let mut state = [_mm512_setzero_si512(); 25];
            for (s, lane) in state.iter_mut().zip(&lanes) {
                // SAFETY: `[u64; 8]` is 64 bytes; unaligned loads and stores.
                *s = unsafe { _mm512_loadu_si512(lane.as_ptr().cast()) };
            }
            permute(&mut state);
            for (s, lane) in state.iter().zip(lanes.iter_mut()).take(4) {
                // SAFETY: as above.
                unsafe { _mm512_storeu_si512(lane.as_mut_ptr().cast(), *s) };
            }
            for j in 0..n {
                let mut digest = [0u8; 32];
                for (w, chunk) in digest.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&lanes[w][j].to_le_bytes());
                }
                out[start + j] = H256(digest);
            }
            start += n;
        }
    }

    /// Keccak-f\[1600\] on eight states, one per 64-bit lane, written out so that every
    /// lane index and rotation is a constant (lane `x + 5y` is `a{x + 5y}`; rho and pi
    /// move it to `b{y + 5((2x + 3y) mod 5)}`; chi is `b ^ (!b1 & b2)`, ternary logic
    /// `0xD2`; the theta sums are ternary XORs, `0x96`).
    #[target_feature(enable = "avx512f")]
    fn permute(state: &mut [__m512i; 25]) {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
            mut a8,
            mut a9,
            mut a10,
            mut a11,
            mut a12,
            mut a13,
            mut a14,
            mut a15,
            mut a16,
            mut a17,
            mut a18,
            mut a19,
            mut a20,
            mut a21,
            mut a22,
            mut a23,
            mut a24,
        ] = *state;
        for rc in RC {
            // theta
            let c0 = _mm512_ternarylogic_epi64::<0x96>(
                _mm512_ternarylogic_epi64::<0x96>(a0, a5, a10),
                a15,
                a20,
            );
            let c1 = _mm512_ternarylogic_epi64::<0x96>(
                _mm512_ternarylogic_epi64::<0x96>(a1, a6, a11),
                a16,
                a21,
            );
            let c2 = _mm512_ternarylogic_epi64::<0x96>(
                _mm512_ternarylogic_epi64::<0x96>(a2, a7, a12),
                a17,
                a22,
            );
            let c3 = _mm512_ternarylogic_epi64::<0x96>(
                _mm512_ternarylogic_epi64::<0x96>(a3, a8, a13),
                a18,
                a23,
            );
            let c4 = _mm512_ternarylogic_epi64::<0x96>(
                _mm512_ternarylogic_epi64::<0x96>(a4, a9, a14),
                a19,
                a24,
            );
            let d0 = _mm512_xor_si512(c4, _mm512_rol_epi64::<1>(c1));
            let d1 = _mm512_xor_si512(c0, _mm512_rol_epi64::<1>(c2));
            let d2 = _mm512_xor_si512(c1, _mm512_rol_epi64::<1>(c3));
            let d3 = _mm512_xor_si512(c2, _mm512_rol_epi64::<1>(c4));
            let d4 = _mm512_xor_si512(c3, _mm512_rol_epi64::<1>(c0));
            // rho and pi
            let b0 = _mm512_xor_si512(a0, d0);
            let b10 = _mm512_rol_epi64::<1>(_mm512_xor_si512(a1, d1));
            let b20 = _mm512_rol_epi64::<62>(_mm512_xor_si512(a2, d2));
            let b5 = _mm512_rol_epi64::<28>(_mm512_xor_si512(a3, d3));
            let b15 = _mm512_rol_epi64::<27>(_mm512_xor_si512(a4, d4));
            let b16 = _mm512_rol_epi64::<36>(_mm512_xor_si512(a5, d0));
            let b1 = _mm512_rol_epi64::<44>(_mm512_xor_si512(a6, d1));
            let b11 = _mm512_rol_epi64::<6>(_mm512_xor_si512(a7, d2));
            let b21 = _mm512_rol_epi64::<55>(_mm512_xor_si512(a8, d3));
            let b6 = _mm512_rol_epi64::<20>(_mm512_xor_si512(a9, d4));
            let b7 = _mm512_rol_epi64::<3>(_mm512_xor_si512(a10, d0));
            let b17 = _mm512_rol_epi64::<10>(_mm512_xor_si512(a11, d1));
            let b2 = _mm512_rol_epi64::<43>(_mm512_xor_si512(a12, d2));
            let b12 = _mm512_rol_epi64::<25>(_mm512_xor_si512(a13, d3));
            let b22 = _mm512_rol_epi64::<39>(_mm512_xor_si512(a14, d4));
            let b23 = _mm512_rol_epi64::<41>(_mm512_xor_si512(a15, d0));
            let b8 = _mm512_rol_epi64::<45>(_mm512_xor_si512(a16, d1));
            let b18 = _mm512_rol_epi64::<15>(_mm512_xor_si512(a17, d2));
            let b3 = _mm512_rol_epi64::<21>(_mm512_xor_si512(a18, d3));
            let b13 = _mm512_rol_epi64::<8>(_mm512_xor_si512(a19, d4));
            let b14 = _mm512_rol_epi64::<18>(_mm512_xor_si512(a20, d0));
            let b24 = _mm512_rol_epi64::<2>(_mm512_xor_si512(a21, d1));
            let b9 = _mm512_rol_epi64::<61>(_mm512_xor_si512(a22, d2));
            let b19 = _mm512_rol_epi64::<56>(_mm512_xor_si512(a23, d3));
            let b4 = _mm512_rol_epi64::<14>(_mm512_xor_si512(a24, d4));
            // chi
            a0 = _mm512_ternarylogic_epi64::<0xD2>(b0, b1, b2);
            a1 = _mm512_ternarylogic_epi64::<0xD2>(b1, b2, b3);
            a2 = _mm512_ternarylogic_epi64::<0xD2>(b2, b3, b4);
            a3 = _mm512_ternarylogic_epi64::<0xD2>(b3, b4, b0);
            a4 = _mm512_ternarylogic_epi64::<0xD2>(b4, b0, b1);
            a5 = _mm512_ternarylogic_epi64::<0xD2>(b5, b6, b7);
            a6 = _mm512_ternarylogic_epi64::<0xD2>(b6, b7, b8);
            a7 = _mm512_ternarylogic_epi64::<0xD2>(b7, b8, b9);
            a8 = _mm512_ternarylogic_epi64::<0xD2>(b8, b9, b5);
            a9 = _mm512_ternarylogic_epi64::<0xD2>(b9, b5, b6);
            a10 = _mm512_ternarylogic_epi64::<0xD2>(b10, b11, b12);
            a11 = _mm512_ternarylogic_epi64::<0xD2>(b11, b12, b13);
            a12 = _mm512_ternarylogic_epi64::<0xD2>(b12, b13, b14);
            a13 = _mm512_ternarylogic_epi64::<0xD2>(b13, b14, b10);
            a14 = _mm512_ternarylogic_epi64::<0xD2>(b14, b10, b11);
            a15 = _mm512_ternarylogic_epi64::<0xD2>(b15, b16, b17);
            a16 = _mm512_ternarylogic_epi64::<0xD2>(b16, b17, b18);
            a17 = _mm512_ternarylogic_epi64::<0xD2>(b17, b18, b19);
            a18 = _mm512_ternarylogic_epi64::<0xD2>(b18, b19, b15);
            a19 = _mm512_ternarylogic_epi64::<0xD2>(b19, b15, b16);
            a20 = _mm512_ternarylogic_epi64::<0xD2>(b20, b21, b22);
            a21 = _mm512_ternarylogic_epi64::<0xD2>(b21, b22, b23);
            a22 = _mm512_ternarylogic_epi64::<0xD2>(b22, b23, b24);
            a23 = _mm512_ternarylogic_epi64::<0xD2>(b23, b24, b20);
            a24 = _mm512_ternarylogic_epi64::<0xD2>(b24, b20, b21);
            // iota
            a0 = _mm512_xor_si512(a0, _mm512_set1_epi64(rc as i64));
        }
        *state = [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
            a19, a20, a21, a22, a23, a24,
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(n: usize, seed: u8) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| std::array::from_fn(|b| (i * 131 + b * 7 + usize::from(seed)) as u8))
            .collect()
    }

    #[test]
    fn many_at_once_match_one_at_a_time() {
        // Every group size on both sides of eight, on whichever path this CPU takes.
        #[cfg(target_arch = "x86_64")]
        if !x8::is_supported() {
            eprintln!("no AVX-512F on this CPU: only the one-at-a-time path is tested here");
        }
        for n in [0, 1, 2, 7, 8, 9, 16, 17, 63] {
            let leaves = inputs(n, n as u8);
            let mut out = vec![H256::ZERO; n];
            hash_32_many(&leaves, &mut out);
            for (leaf, h) in leaves.iter().zip(&out) {
                assert_eq!(*h, keccak256(leaf));
            }
            let nodes: Vec<H256> = leaves.iter().map(|l| H256(*l)).collect();
            let mut pairs = vec![H256::ZERO; n / 2];
            hash_pairs(&nodes[..n / 2 * 2], &mut pairs);
            for (i, h) in pairs.iter().enumerate() {
                let mut buf = [0u8; 64];
                buf[..32].copy_from_slice(&leaves[2 * i]);
                buf[32..].copy_from_slice(&leaves[2 * i + 1]);
                assert_eq!(*h, keccak256(&buf));
            }
        }
    }
}
