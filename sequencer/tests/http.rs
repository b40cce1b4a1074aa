//! The real binary serving the real MiniLM model over HTTP: outputs equal the CPU engine's
//! `inference embed` path, bad requests get 4xx JSON errors, batches prove, metrics count.

mod common;

use base64::Engine as _;
use common::{Node, get, get_json, infer, minilm_dir, post_raw, wait_for};
use inference::import::bert::{self, Family};
use inference::merkle::{H256, MerkleProof};
use inference::model::Model;
use inference::tokenize::TextTokenizer;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// What `inference embed` computes for one sentence: tokens, bucket model id, pooled
/// output bytes and hash, normalized embedding.
struct Expected {
    tokens: Vec<u32>,
    model_id: H256,
    input_hash: H256,
    output: Vec<u8>,
    output_hash: H256,
    embedding: Vec<f32>,
}

struct CpuEngine {
    family: Family,
    models: Vec<Model>,
    tokenizer: TextTokenizer,
}

impl CpuEngine {
    fn load(dir: &Path) -> Self {
        let family = Family::from_json(&std::fs::read(dir.join("family.json")).unwrap()).unwrap();
        let models = family
            .buckets
            .iter()
            .map(|b| {
                let d = dir.join(&b.dir);
                let r = |n: &str| std::fs::read(d.join(n)).unwrap();
                Model::from_bytes(
                    &r("program.json"),
                    &r("weights.safetensors"),
                    &r("manifest.json"),
                )
                .unwrap()
            })
            .collect();
        let tokenizer = TextTokenizer::from_json(
            &std::fs::read(dir.join(&family.buckets[0].dir).join("tokenizer.json")).unwrap(),
            family.max_seq_len(),
        )
        .unwrap();
        Self {
            family,
            models,
            tokenizer,
        }
    }

    fn embed(&self, text: &str) -> Expected {
        let ids = self.tokenizer.encode(text).unwrap();
        let b = self.family.bucket_for(ids.len());
        let model = &self.models[b];
        let input = bert::input(&ids, self.family.buckets[b].seq_len).unwrap();
        let pooled = inference::trace::run(model.program(), model.weights(), &input).unwrap();
        Expected {
            tokens: ids,
            model_id: model.id(),
            input_hash: inference::commit::tensor_hash(&input),
            output: pooled.to_le_bytes(),
            output_hash: inference::commit::tensor_hash(&pooled),
            embedding: bert::normalize(&pooled).unwrap(),
        }
    }
}

fn hash(v: &Value) -> H256 {
    v.as_str().unwrap().parse().unwrap()
}

fn check_output(resp: &Value, want: &Expected) {
    assert_eq!(hash(&resp["modelId"]), want.model_id);
    assert_eq!(hash(&resp["input"]["hash"]), want.input_hash);
    let out = &resp["output"];
    let data = base64::engine::general_purpose::STANDARD
        .decode(out["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, want.output);
    assert_eq!(hash(&out["hash"]), want.output_hash);
    let embedding: Vec<f32> = out["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(embedding, want.embedding);
    assert_eq!(hash(&resp["claim"]["outputHash"]), want.output_hash);
    assert_eq!(hash(&resp["claim"]["inputHash"]), want.input_hash);
    assert_eq!(hash(&resp["claim"]["modelId"]), want.model_id);
}

/// Parses the Prometheus text format: `name{labels}` to value; fails on a malformed line.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        out.insert(series.to_string(), value);
    }
    out
}

#[test]
fn serves_minilm_over_http() {
    let Some(dir) = minilm_dir() else { return };
    let engine = CpuEngine::load(&dir);
    let db = tempfile::tempdir().unwrap();
    let node = Node::start(
        db.path(),
        &dir,
        &[
            "--batch.max-size",
            "4",
            "--batch.max-age",
            "200ms",
            "--http.max-text-bytes",
            "2000",
            "--http.max-body-bytes",
            "4096",
        ],
    );
    let url = &node.url;

    let sentences = [
        "A man is playing a guitar.",
        "The quick brown fox jumps over the lazy dog, then runs far away into the forest to hide.",
        "hello",
        "Integer-only inference makes every device agree bit for bit, so anyone can check a result by running it again on a laptop and comparing hashes leaf by leaf.",
        "Sequencers post claims; challengers dispute them.",
    ];
    let mut ids = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let model = if i % 2 == 0 {
            "all-MiniLM-L6-v2"
        } else {
            "minilm"
        };
        let (status, resp) = infer(url, &json!({ "model": model, "text": s }));
        assert_eq!(status, 200, "{resp}");
        let want = engine.embed(s);
        check_output(&resp, &want);
        assert_eq!(resp["input"]["tokens"], json!(want.tokens));
        ids.push(resp["id"].as_u64().unwrap());
    }
    // Token ids directly, and a bucket named by its model id: the same claim contents.
    let want = engine.embed(sentences[0]);
    let (status, resp) = infer(
        url,
        &json!({ "model": want.model_id.to_string(), "tokens": want.tokens }),
    );
    assert_eq!(status, 200, "{resp}");
    check_output(&resp, &want);
    ids.push(resp["id"].as_u64().unwrap());
    // Not waiting: 202 at once, the output later.
    let (status, resp) = infer(
        url,
        &json!({ "model": "minilm", "text": "later", "wait": false }),
    );
    assert_eq!(status, 202, "{resp}");
    let later = resp["id"].as_u64().unwrap();
    ids.push(later);
    wait_for(Duration::from_secs(60), "the 202 request's output", || {
        !get_json(url, &format!("/v1/requests/{later}")).1["output"].is_null()
    });
    check_output(
        &get_json(url, &format!("/v1/requests/{later}")).1,
        &engine.embed("later"),
    );

    // Every request gets batched (4 by size, the rest by age) and proves against its root.
    for &id in &ids {
        wait_for(Duration::from_secs(30), "batching", || {
            !get_json(url, &format!("/v1/requests/{id}")).1["inclusion"].is_null()
        });
        let (status, r) = get_json(url, &format!("/v1/requests/{id}"));
        assert_eq!(status, 200);
        assert_eq!(r["status"], "pending");
        let inc = &r["inclusion"];
        let proof = MerkleProof {
            index: inc["index"].as_u64().unwrap(),
            siblings: inc["proof"].as_array().unwrap().iter().map(hash).collect(),
        };
        let leaf = hash(&r["claim"]["leaf"]);
        proof.verify(hash(&inc["claimsRoot"]), &leaf.0).unwrap();
        assert_eq!(inc["batchStatus"], "ready");
        // The same request by its 32-byte word.
        let word = r["requestId"].as_str().unwrap().to_string();
        assert_eq!(
            get_json(url, &format!("/v1/requests/{word}")).1["id"],
            json!(id)
        );
    }

    // Bad requests: 4xx with a JSON error code.
    let json_ct = Some("application/json");
    let long_text = "word ".repeat(500);
    let too_many_tokens: Vec<u32> = vec![1000; 129];
    let big_body = format!("{{\"model\":\"minilm\",\"text\":\"{}\"}}", "x".repeat(5000));
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (json_ct, "{\"model\":".into(), 400, "invalid_json"),
        (json_ct, "[1,2]".into(), 400, "invalid_json"),
        (
            json_ct,
            json!({"model": "minilm", "text": 5}).to_string(),
            400,
            "invalid_json",
        ),
        (
            json_ct,
            json!({"model": "minilm", "tokens": [1, -2]}).to_string(),
            400,
            "invalid_json",
        ),
        (
            json_ct,
            json!({"model": "minilm", "text": "a", "extra": 1}).to_string(),
            400,
            "invalid_json",
        ),
        (
            json_ct,
            json!({"text": "no model"}).to_string(),
            400,
            "invalid_json",
        ),
        (
            json_ct,
            json!({"model": "gpt-9", "text": "a"}).to_string(),
            400,
            "unknown_model",
        ),
        (
            json_ct,
            json!({"model": format!("0x{}", "ab".repeat(32)), "text": "a"}).to_string(),
            400,
            "unknown_model",
        ),
        (
            json_ct,
            json!({"model": "minilm", "text": "   "}).to_string(),
            400,
            "empty_input",
        ),
        (
            json_ct,
            json!({"model": "minilm", "tokens": []}).to_string(),
            400,
            "empty_input",
        ),
        (
            json_ct,
            json!({"model": "minilm"}).to_string(),
            400,
            "invalid_input",
        ),
        (
            json_ct,
            json!({"model": "minilm", "text": "a", "tokens": [101]}).to_string(),
            400,
            "invalid_input",
        ),
        (
            json_ct,
            json!({"model": "minilm", "text": long_text}).to_string(),
            400,
            "input_too_long",
        ),
        (
            json_ct,
            json!({"model": "minilm", "tokens": too_many_tokens}).to_string(),
            400,
            "input_too_long",
        ),
        (
            json_ct,
            json!({"model": want.model_id.to_string(), "tokens": vec![1000u32; 17]}).to_string(),
            400,
            "input_too_long",
        ),
        (json_ct, big_body, 413, "body_too_large"),
        (
            Some("text/plain"),
            json!({"model": "minilm", "text": "a"}).to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            None,
            json!({"model": "minilm", "text": "a"}).to_string(),
            415,
            "unsupported_media_type",
        ),
    ];
    let invalid = cases.len();
    for (ct, body, status, code) in cases {
        let (got, text) = post_raw(url, "/v1/inference", ct, &body);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON error body {text:?} for {body}"));
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {text}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    for (path, status, code) in [
        ("/v1/requests/abc", 400, "invalid_request_id"),
        ("/v1/requests/123456", 404, "unknown_request"),
        ("/v2/nothing", 404, "not_found"),
    ] {
        let (got, v) = get_json(url, path);
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    let (got, text) = post_raw(url, "/healthz", json_ct, "{}");
    assert_eq!(got, 405, "{text}");

    // Health, OpenAPI, metrics.
    assert_eq!(get_json(url, "/healthz"), (200, json!({"status": "ok"})));
    let (status, api) = get_json(url, "/openapi.json");
    assert_eq!(status, 200);
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/inference",
        "/v1/requests/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            api["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let (status, text) = get(url, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&text);
    assert_eq!(
        m["sequencer_requests_total{outcome=\"accepted\"}"],
        ids.len() as f64
    );
    assert_eq!(
        m["sequencer_requests_total{outcome=\"invalid\"}"],
        invalid as f64
    );
    assert_eq!(
        m["sequencer_inference_latency_seconds_count"],
        ids.len() as f64
    );
    assert!(m["sequencer_batches_total"] >= 2.0);
    assert_eq!(m["sequencer_batch_size_sum"], ids.len() as f64);
    // Every output stored by some commit of the storing thread, each commit timed.
    assert_eq!(m["sequencer_store_commit_size_sum"], ids.len() as f64);
    let commits = m["sequencer_store_commit_size_count"];
    assert!(
        (1.0..=ids.len() as f64).contains(&commits),
        "{commits} commits"
    );
    assert_eq!(m["sequencer_store_commit_latency_seconds_count"], commits);
    for gauge in [
        "sequencer_queue_depth",
        "sequencer_gas_used_total",
        "sequencer_games_open",
        "sequencer_bonds_at_risk_wei",
        "sequencer_stake_wei",
        "sequencer_games_total{result=\"won\"}",
    ] {
        assert!(m.contains_key(gauge), "{gauge} missing");
    }
}

/// A waiting client whose output is not ready within `--http.wait-timeout` gets 202 and a
/// request number: the request (run before it was stored) is accepted then, and its output
/// is stored later under that number, once.
#[test]
fn a_wait_that_times_out_is_accepted_and_executed_later() {
    let Some(dir) = minilm_dir() else { return };
    let engine = CpuEngine::load(&dir);
    let db = tempfile::tempdir().unwrap();
    let node = Node::start(db.path(), &dir, &["--http.wait-timeout", "1ms"]);
    let url = &node.url;
    // Long sentences (the 128-token bucket): each runs for far longer than 1 ms.
    let texts: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{i}: {}",
                "waiting clients give up before the output is ready; ".repeat(8)
            )
        })
        .collect();
    let mut answers = Vec::new();
    for text in &texts {
        let (status, resp) = infer(url, &json!({ "model": "minilm", "text": text }));
        assert!(status == 202 || status == 200, "{status}: {resp}");
        answers.push((status, resp["id"].as_u64().unwrap()));
    }
    assert!(
        answers.iter().any(|&(status, _)| status == 202),
        "no request outlasted a 1 ms wait: {answers:?}"
    );
    let mut ids: Vec<u64> = answers.iter().map(|&(_, id)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        texts.len(),
        "request numbers repeat: {answers:?}"
    );
    for (text, &(_, id)) in texts.iter().zip(&answers) {
        wait_for(
            Duration::from_secs(60),
            "the timed-out request's output",
            || !get_json(url, &format!("/v1/requests/{id}")).1["output"].is_null(),
        );
        let (status, r) = get_json(url, &format!("/v1/requests/{id}"));
        assert_eq!(status, 200);
        assert_eq!(r["input"]["text"], json!(text));
        check_output(&r, &engine.embed(text));
    }
    // Stored once each, under the numbers the clients were told, and nothing else.
    assert_eq!(ids, [0, 1, 2, 3]);
    assert_eq!(get(url, "/v1/requests/4").0, 404);
    let metrics = parse_metrics(&get(url, "/metrics").1);
    assert_eq!(
        metrics.get("sequencer_requests_total{outcome=\"accepted\"}"),
        Some(&(texts.len() as f64))
    );
}
