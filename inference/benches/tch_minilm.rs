//! MiniLM sentences per second: the libtorch backend on the CPU against the pure-Rust
//! engine, tokenization included, at batch 1 and batch 64, on the same threads.
//!
//! `cargo bench -p inference --features tch --bench tch_minilm` (after `make models`).
//! Environment: `BENCH_THREADS` (default 2: the rayon pool and libtorch's intra-op pool
//! alike), `BENCH_SECONDS` per measurement (default 5), `BENCH_DEVICE` for the libtorch
//! side (`cpu` by default; `auto` or `cuda` on a GPU machine). Prints one JSON line per
//! measurement. On a machine shared with other work, `OMP_WAIT_POLICY=PASSIVE` keeps
//! libtorch's OpenMP threads from spinning against each other (read when libgomp loads,
//! so it must be set outside the process).
//!
//! Batch 1 runs one sentence at a time, each run using every thread. Batch 64 runs 64
//! sentences at a time: the pure-Rust engine runs them concurrently on its pool; the
//! libtorch side runs each bucket's sentences of the 64 as one stacked batch
//! (`TchModel::run_batch`), each op using libtorch's pool.

use inference::import::bert::{self, FAMILY_FILE, Family};
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tch_backend::{self, DeviceChoice, TchModel};
use inference::tokenize::TextTokenizer;
use inference::trace::run;
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `batch_fn` on batches of `batch` sentences for about `seconds`; sentences/s.
fn measure(seconds: f64, batch: usize, mut batch_fn: impl FnMut(usize) -> usize) -> (usize, f64) {
    // One warm-up batch: first-touch allocations and libtorch's lazy initialisation.
    batch_fn(0);
    let started = Instant::now();
    let (mut done, mut next) = (0usize, batch);
    while started.elapsed().as_secs_f64() < seconds {
        done += batch_fn(next);
        next += batch;
    }
    (done, done as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no root")?;
    let dir = root.join("models/minilm");
    if !dir.join(FAMILY_FILE).is_file() {
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return Ok(());
    }
    let threads: usize = env_or("BENCH_THREADS", 2);
    let seconds: f64 = env_or("BENCH_SECONDS", 5.0);
    let device_choice: DeviceChoice = std::env::var("BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    tch::set_num_threads(threads as i32);
    let device = tch_backend::select_device(device_choice)?;

    let family = Family::from_json(&std::fs::read(dir.join(FAMILY_FILE))?)?;
    let models = family
        .buckets
        .iter()
        .map(|b| {
            let read = |n: &str| std::fs::read(dir.join(&b.dir).join(n));
            Ok(Model::from_bytes(
                &read(PROGRAM_FILE)?,
                &read(WEIGHTS_FILE)?,
                &read(MANIFEST_FILE)?,
            )?)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let tch_models = models
        .iter()
        .map(|m| TchModel::new(m.program(), m.weights(), device))
        .collect::<Result<Vec<_>, _>>()?;
    let tokenizer = TextTokenizer::from_json(
        &std::fs::read(dir.join(&family.buckets[0].dir).join("tokenizer.json"))?,
        family.max_seq_len(),
    )?;
    let text = std::fs::read_to_string(root.join("data/sentences_eval.txt"))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    let cpu_one = |line: &str| -> inference::Result<Vec<f32>> {
        let ids = tokenizer.encode(line)?;
        let b = family.bucket_for(ids.len());
        let input = bert::input(&ids, family.buckets[b].seq_len)?;
        bert::normalize(&run(models[b].program(), models[b].weights(), &input)?)
    };
    let tch_one = |line: &str| -> Result<Vec<f32>, tch_backend::Error> {
        let ids = tokenizer.encode(line)?;
        let b = family.bucket_for(ids.len());
        let input = bert::input(&ids, family.buckets[b].seq_len)?;
        Ok(bert::normalize(&tch_models[b].run(&input)?)?)
    };
    // A batch: the sentences of each bucket through one `run_batch`; the embeddings in
    // the chunk's order.
    let tch_batch = |chunk: &[&str]| -> Result<Vec<Vec<f32>>, tch_backend::Error> {
        let mut by_bucket: Vec<(Vec<usize>, Vec<inference::tensor::Tensor>)> =
            vec![(Vec::new(), Vec::new()); models.len()];
        for (i, line) in chunk.iter().enumerate() {
            let ids = tokenizer.encode(line)?;
            let b = family.bucket_for(ids.len());
            by_bucket[b].0.push(i);
            by_bucket[b]
                .1
                .push(bert::input(&ids, family.buckets[b].seq_len)?);
        }
        let mut out = vec![Vec::new(); chunk.len()];
        for (b, (at, inputs)) in by_bucket.iter().enumerate() {
            for (&i, y) in at.iter().zip(tch_models[b].run_batch(inputs)?) {
                out[i] = bert::normalize(&y)?;
            }
        }
        Ok(out)
    };
    // The two engines agree on every sentence before anything is timed, one by one and in
    // one batch.
    let batched = tch_batch(&lines)?;
    for (line, got) in lines.iter().zip(&batched) {
        let want = cpu_one(line)?;
        if want != tch_one(line)? || &want != got {
            return Err(format!("the engines disagree on {line:?}").into());
        }
    }

    for batch in [1usize, 64] {
        let (n, cpu) = measure(seconds, batch, |start| {
            let chunk: Vec<&str> = (0..batch)
                .map(|i| lines[(start + i) % lines.len()])
                .collect();
            if batch == 1 {
                cpu_one(chunk[0]).map(|_| 1).unwrap_or(0)
            } else {
                chunk
                    .par_iter()
                    .map(|l| cpu_one(l).map(|_| 1).unwrap_or(0))
                    .sum()
            }
        });
        println!(
            "{{\"engine\": \"cpu-rust\", \"batch\": {batch}, \"threads\": {threads}, \"sentences\": {n}, \"sentences_per_second\": {cpu:.1}}}"
        );
        let (n, tch) = measure(seconds, batch, |start| {
            let chunk: Vec<&str> = (0..batch)
                .map(|i| lines[(start + i) % lines.len()])
                .collect();
            if batch == 1 {
                tch_one(chunk[0]).map(|_| 1).unwrap_or(0)
            } else {
                tch_batch(&chunk).map(|v| v.len()).unwrap_or(0)
            }
        });
        println!(
            "{{\"engine\": \"tch\", \"device\": \"{device:?}\", \"batch\": {batch}, \"threads\": {threads}, \"sentences\": {n}, \"sentences_per_second\": {tch:.1}}}"
        );
    }
    Ok(())
}
