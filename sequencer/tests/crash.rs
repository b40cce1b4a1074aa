//! Crash safety: `kill -9` the real binary while clients are sending requests, restart it
//! on the same database, and check that every acknowledged request is there exactly once,
//! gets executed and batched, and that each is in exactly one batch.

mod common;

use common::{Node, get_json, infer, minilm_dir, wait_for};
use inference::merkle::{H256, MerkleProof};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn hash(v: &serde_json::Value) -> H256 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn kill_9_loses_no_acknowledged_request() {
    let Some(dir) = minilm_dir() else { return };
    let db = tempfile::tempdir().unwrap();
    let flags = [
        "--batch.max-size",
        "3",
        "--batch.max-age",
        "300ms",
        "--exec.threads",
        "2",
    ];
    let mut node = Node::start(db.path(), &dir, &flags);

    // Four clients send unique texts, half waiting for outputs and half not, until the
    // connection breaks. `acked` maps request number to text for every 2xx answer.
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, acked, stop) = (node.url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for k in 0..10_000 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let text = format!("client {c} sentence {k} about crash safety");
                    let (status, resp) = infer(
                        &url,
                        &json!({"model": "minilm", "text": text, "wait": c % 2 == 0}),
                    );
                    match status {
                        200 | 202 => {
                            let id = resp["id"].as_u64().unwrap();
                            assert!(
                                acked.lock().unwrap().insert(id, text).is_none(),
                                "request number {id} acknowledged twice"
                            );
                        }
                        0 => return, // the server is gone
                        other => panic!("unexpected status {other}: {resp}"),
                    }
                }
            })
        })
        .collect();
    // Kill mid-way: once some requests are acknowledged and some batched.
    wait_for(Duration::from_secs(120), "acknowledged requests", || {
        acked.lock().unwrap().len() >= 24
    });
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 24);

    // Restart on the same database.
    let node = Node::start(db.path(), &dir, &flags);
    let url = &node.url;
    let queued_at_restart = get_json(url, "/readyz").1["queued"].as_u64().unwrap_or(0);
    for (&id, text) in &acked {
        let (status, r) = get_json(url, &format!("/v1/requests/{id}"));
        assert_eq!(status, 200, "acknowledged request {id} lost");
        assert_eq!(r["input"]["text"].as_str(), Some(text.as_str()));
    }
    // Every stored request (acknowledged or caught by the kill after its commit) appears
    // once; none is duplicated. Numbers may have gaps: a waiting client's request runs
    // before it is stored, so one running at the kill leaves its number unused (its client
    // got no answer). Each client has one request in flight, so none is stored far above
    // the last acknowledged number.
    let last_acked = *acked.keys().last().unwrap();
    let mut texts = HashSet::new();
    let mut stored = Vec::new();
    for id in 0..=last_acked + 64 {
        let (status, r) = get_json(url, &format!("/v1/requests/{id}"));
        if status == 404 {
            continue;
        }
        assert_eq!(status, 200, "{r}");
        let text = r["input"]["text"].as_str().unwrap().to_string();
        assert!(texts.insert(text.clone()), "{text:?} stored twice");
        stored.push(id);
    }
    assert!(stored.len() >= acked.len());
    eprintln!(
        "acknowledged {}, stored {} (numbers up to {:?}), unexecuted at restart {queued_at_restart}",
        acked.len(),
        stored.len(),
        stored.last()
    );
    // A new request after the restart gets a number above every stored one.
    let (status, r) = infer(
        url,
        &json!({"model": "minilm", "text": "the first request after the restart"}),
    );
    assert_eq!(status, 200, "{r}");
    stored.push(r["id"].as_u64().unwrap());
    assert!(stored.windows(2).all(|w| w[0] < w[1]), "{stored:?}");

    // Execution and batching resume: every stored request ends in exactly one batch whose
    // root its proof reaches.
    let mut places: HashMap<(u64, u64), u64> = HashMap::new();
    for &id in &stored {
        wait_for(
            Duration::from_secs(120),
            "batching after the restart",
            || !get_json(url, &format!("/v1/requests/{id}")).1["inclusion"].is_null(),
        );
        let r = get_json(url, &format!("/v1/requests/{id}")).1;
        assert!(r["error"].is_null(), "{r}");
        let inc = &r["inclusion"];
        let place = (
            inc["batch"].as_u64().unwrap(),
            inc["index"].as_u64().unwrap(),
        );
        assert!(
            places.insert(place, id).is_none(),
            "two requests at {place:?}"
        );
        let proof = MerkleProof {
            index: place.1,
            siblings: inc["proof"].as_array().unwrap().iter().map(hash).collect(),
        };
        proof
            .verify(hash(&inc["claimsRoot"]), &hash(&r["claim"]["leaf"]).0)
            .unwrap();
    }
    // A batch's leaves are contiguous from 0 and no batch exceeds the size limit.
    let mut per_batch: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(b, i) in places.keys() {
        per_batch.entry(b).or_default().push(i);
    }
    for (b, mut idx) in per_batch {
        idx.sort();
        assert!(idx.len() <= 3, "batch {b} has {} claims", idx.len());
        assert_eq!(idx, (0..idx.len() as u64).collect::<Vec<_>>(), "batch {b}");
    }
}
