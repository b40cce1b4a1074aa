//! A load generator for `sequencer run`: `clients` threads each POST sentences (cycled from a
//! file, one a line) to `/v1/inference` with `"wait": true` for `seconds`, then print the
//! completed requests per second as JSON. Measures the whole serving path: HTTP, group
//! commit of the request, execution on the worker pool, output commit, batching.
//!
//! ```text
//! cargo run --release -p sequencer --example load -- URL FILE CLIENTS SECONDS
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: load URL FILE CLIENTS SECONDS");
        std::process::exit(2);
    }
    let url = format!("{}/v1/inference", args[1].trim_end_matches('/'));
    let text = std::fs::read_to_string(&args[2]).expect("reading the sentences");
    let lines: Arc<Vec<String>> = Arc::new(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    );
    let clients: usize = args[3].parse().expect("CLIENTS is a number");
    let seconds: f64 = args[4].parse().expect("SECONDS is a number");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, lines, done, errors) =
                (url.clone(), lines.clone(), done.clone(), errors.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut k = c;
                while Instant::now() < deadline {
                    let body = serde_json::json!({
                        "model": "minilm",
                        "text": lines[k % lines.len()],
                    });
                    k += clients;
                    match agent
                        .post(&url)
                        .content_type("application/json")
                        .send(body.to_string())
                    {
                        Ok(r) if r.status().as_u16() == 200 => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "clients": clients,
            "requests": n,
            "errors": errors.load(Ordering::Relaxed),
            "seconds": secs,
            "requests_per_second": n as f64 / secs,
        })
    );
}
