//! The typed MDBX layer and the sequencer's transactions, on a real database.

use inference::merkle::H256;
use sequencer::claim::Claim;
use sequencer::db::tables::*;
use sequencer::db::{Execution, NewRequest, SequencerDb};
use sequencer::storage::{Database, Schema, Table};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Thing {
    name: String,
    values: Vec<i64>,
    hash: H256,
    maybe: Option<u8>,
}

struct Things;
impl Table for Things {
    const NAME: &'static str = "Things";
    type Key = u64;
    type Value = Thing;
}

struct ByHash;
impl Table for ByHash {
    const NAME: &'static str = "ByHash";
    type Key = H256;
    type Value = u64;
}

struct TestSchema;
impl Schema for TestSchema {
    const TABLES: &'static [&'static str] = &["Things", "ByHash"];
}

fn thing(i: u64) -> Thing {
    Thing {
        name: format!("thing {i}"),
        values: vec![i as i64, -(i as i64)],
        hash: H256([i as u8; 32]),
        maybe: i.is_multiple_of(2).then_some(i as u8),
    }
}

#[test]
fn typed_roundtrips_order_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open::<TestSchema>(dir.path()).unwrap();
        let tx = db.tx_mut().unwrap();
        // Out of order on purpose: keys come back sorted (big-endian encoding).
        for i in [5u64, 300, 1, 70_000, 2] {
            tx.put::<Things>(&i, &thing(i)).unwrap();
            tx.put::<ByHash>(&thing(i).hash, &i).unwrap();
        }
        tx.commit().unwrap();
        // An aborted transaction leaves nothing.
        let tx = db.tx_mut().unwrap();
        tx.put::<Things>(&999, &thing(999)).unwrap();
        drop(tx);
    }
    let db = Database::open::<TestSchema>(dir.path()).unwrap();
    let tx = db.tx().unwrap();
    assert_eq!(tx.get::<Things>(&300).unwrap(), Some(thing(300)));
    assert_eq!(tx.get::<Things>(&999).unwrap(), None);
    assert_eq!(tx.entries::<Things>().unwrap(), 5);
    let keys: Vec<u64> = tx
        .walk::<Things>(None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, [1, 2, 5, 300, 70_000]);
    let from: Vec<u64> = tx
        .walk::<Things>(Some(&3), 2)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(from, [5, 300]);
    assert_eq!(tx.last::<Things>().unwrap().unwrap().0, 70_000);
    assert_eq!(tx.get::<ByHash>(&H256([5; 32])).unwrap(), Some(5));
    let mut cursor = tx.cursor::<Things>().unwrap();
    assert_eq!(cursor.seek_exact(&5).unwrap().unwrap().1, thing(5));
    assert_eq!(cursor.next().unwrap().unwrap().0, 300);
    assert_eq!(cursor.prev().unwrap().unwrap().0, 5);
    drop(cursor);
    drop(tx);
    db.update(|tx| {
        assert!(tx.delete::<Things>(&5)?);
        assert!(!tx.delete::<Things>(&5)?);
        Ok::<_, sequencer::storage::StorageError>(())
    })
    .unwrap();
    assert_eq!(db.tx().unwrap().entries::<Things>().unwrap(), 4);
    let stats = db.stats(TestSchema::TABLES).unwrap();
    assert_eq!(stats[0].entries, 4);
}

#[test]
fn a_table_outside_the_schema_is_an_error() {
    struct Other;
    impl Table for Other {
        const NAME: &'static str = "Other";
        type Key = u64;
        type Value = u64;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open::<TestSchema>(dir.path()).unwrap();
    let err = db.tx().unwrap().get::<Other>(&1).unwrap_err();
    assert!(err.to_string().contains("Other"), "{err}");
}

fn new_request(i: u32) -> NewRequest {
    NewRequest {
        model: "m".into(),
        model_id: H256([9; 32]),
        input: InputRecord {
            text: Some(format!("sentence {i}")),
            tokens: vec![101, i, 102],
            seq_len: 16,
            hash: H256([i as u8; 32]),
        },
    }
}

fn output(i: u64) -> TensorRecord {
    TensorRecord {
        dtype: inference::DType::I32,
        shape: vec![1, 2],
        data: vec![i as u8; 8],
        hash: H256([i as u8 ^ 0xff; 32]),
    }
}

#[test]
fn a_request_run_before_it_is_stored_is_stored_once_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let accepted = db.accept(vec![new_request(0)]).unwrap();
    assert_eq!(accepted, [0]);
    // Numbers are handed out in order whether reserved or accepted.
    let (a, b, c) = (db.reserve_id(), db.reserve_id(), db.reserve_id());
    assert_eq!((a, b, c), (1, 2, 3));
    assert_eq!(db.accept(vec![new_request(4)]).unwrap(), [4]);
    let run = |id: u64, i: u32| Execution {
        id,
        output: Ok(output(id)),
        request: Some(new_request(i)),
    };

    // a: its output comes first: stored, executed, claimed and queued for a batch, in one
    // transaction; storing it again (or accepting it late) changes nothing.
    db.record_executions(&[run(a, 1)]).unwrap();
    db.record_executions(&[run(a, 1)]).unwrap();
    assert!(!db.accept_reserved(a, new_request(1)).unwrap());
    let view = db.request(a).unwrap().unwrap();
    assert_eq!(view.request.status, RequestStatus::Pending);
    assert_eq!(view.request.output, Some(output(a)));
    assert_eq!(view.request.input, new_request(1).input);
    assert_eq!(
        view.claim.unwrap().claim.request_id,
        sequencer::claim::http_request_id([0; 20], a)
    );
    assert_eq!(
        db.request_number(sequencer::claim::http_request_id([0; 20], a))
            .unwrap(),
        Some(a)
    );

    // b: its client stopped waiting first: accepted and queued like any request, then its
    // output is recorded the ordinary way.
    assert!(db.accept_reserved(b, new_request(2)).unwrap());
    assert!(!db.accept_reserved(b, new_request(2)).unwrap());
    let queued: Vec<u64> = db.unexecuted().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(queued, [0, b, 4]);
    db.record_executions(&[run(b, 2)]).unwrap();
    assert_eq!(
        db.request(b).unwrap().unwrap().request.output,
        Some(output(b))
    );

    // c never finished (a crash): it is nowhere, and a reopened database goes on above
    // every stored number.
    assert!(db.request(c).unwrap().is_none());
    assert_eq!(db.batch_queue().unwrap().len, 2);
    let batch = db.make_batch(10).unwrap().unwrap();
    assert_eq!(batch.requests, [a, b]);
    drop(db);
    let db = SequencerDb::open(dir.path()).unwrap();
    assert_eq!(db.reserve_id(), 5);
    assert_eq!(db.accept(vec![new_request(6)]).unwrap(), [6]);
}

#[test]
fn requests_move_through_execution_batching_and_posting() {
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let ids = db.accept((0..5).map(new_request).collect()).unwrap();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert_eq!(db.unexecuted().unwrap().len(), 5);
    let results: Vec<Execution> = ids[..4]
        .iter()
        .map(|&id| Execution {
            id,
            request: None,
            output: if id == 3 {
                Err("boom".into())
            } else {
                Ok(output(id))
            },
        })
        .collect();
    db.record_executions(&results).unwrap();
    // Storing the same results again changes nothing.
    db.record_executions(&results).unwrap();
    assert_eq!(db.unexecuted().unwrap().len(), 1);
    assert_eq!(db.batch_queue().unwrap().len, 3);
    assert_eq!(
        db.request(3).unwrap().unwrap().request.status,
        RequestStatus::Failed
    );

    let batch = db.make_batch(2).unwrap().unwrap();
    assert_eq!(batch.requests, [0, 1]);
    assert_eq!(batch.status, BatchStatus::Ready);
    let second = db.make_batch(2).unwrap().unwrap();
    assert_eq!((second.id, second.requests.clone()), (1, vec![2]));
    assert!(db.make_batch(2).unwrap().is_none());

    // Every claim proves against its batch root, with the fixed leaf.
    for id in [0u64, 1, 2] {
        let view = db.request(id).unwrap().unwrap();
        assert_eq!(view.request.status, RequestStatus::Batched);
        let claim = view.claim.unwrap();
        assert_eq!(
            claim.claim,
            Claim {
                request_id: sequencer::claim::http_request_id([0; 20], id),
                model_id: H256([9; 32]),
                input_hash: H256([id as u8; 32]),
                output_hash: output(id).hash,
            }
        );
        let inclusion = claim.inclusion.unwrap();
        let batch = view.batch.unwrap();
        inclusion
            .proof
            .verify(batch.claims_root, &claim.claim.leaf())
            .unwrap();
    }

    // What the poster reads for a batch: each request with its output, and its claim, in
    // leaf order; a request that is not there (or has no claim) is an error.
    let (claims, requests) = db.claimed_requests(&batch.requests).unwrap();
    for ((claim, request), &id) in claims.iter().zip(&requests).zip(&batch.requests) {
        let view = db.request(id).unwrap().unwrap();
        assert_eq!(*claim, view.claim.unwrap().claim);
        assert_eq!(*request, view.request);
        assert_eq!(request.output, Some(output(id)));
    }
    assert_eq!(requests.len(), 2);
    assert!(db.claimed_requests(&[0, 99]).is_err(), "no request 99");
    assert!(
        db.claimed_requests(&[3]).is_err(),
        "request 3 failed: no claim"
    );

    // Posting: the tx is recorded before sending, then the batch and its requests move.
    let tx = SignedTx {
        hash: H256([7; 32]),
        raw: vec![1, 2, 3],
        nonce: 4,
    };
    db.set_batch_status(0, BatchStatus::Signed(tx.clone()), 1)
        .unwrap();
    assert_eq!(db.unposted_batches().unwrap().len(), 2);
    db.set_batch_status(
        0,
        BatchStatus::Posted {
            tx_hash: tx.hash,
            block: 12,
        },
        1,
    )
    .unwrap();
    let unposted: Vec<u64> = db
        .unposted_batches()
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(unposted, [1]);
    assert_eq!(
        db.request(1).unwrap().unwrap().request.status,
        RequestStatus::Posted
    );

    // Everything survives a reopen.
    drop(db);
    let db = SequencerDb::open(dir.path()).unwrap();
    assert_eq!(db.requests(0, 100).unwrap().len(), 5);
    assert_eq!(
        db.batch(0).unwrap().unwrap().status.tx_hash(),
        Some(tx.hash)
    );
    assert_eq!(db.unexecuted().unwrap()[0].id, 4);
    let report = sequencer::db::inspect(&db).unwrap();
    assert_eq!(report["requests_by_status"]["posted"], 2);
}

#[test]
fn an_older_readable_version_is_upgraded_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let set_version = |db: &SequencerDb, v: u64| {
        let tx = db.tx_mut().unwrap();
        tx.put::<Meta>(&"schema_version".to_string(), &v).unwrap();
        tx.commit().unwrap();
    };
    let version = |db: &SequencerDb| {
        let tx = db.tx().unwrap();
        tx.get::<Meta>(&"schema_version".to_string()).unwrap()
    };
    {
        let db = SequencerDb::open(dir.path()).unwrap();
        assert_eq!(version(&db), Some(SCHEMA_VERSION), "recorded when created");
        set_version(&db, READABLE_FROM);
    }
    {
        let db = SequencerDb::open(dir.path()).expect("an older readable version opens");
        assert_eq!(
            version(&db),
            Some(SCHEMA_VERSION),
            "and becomes this version"
        );
        set_version(&db, READABLE_FROM - 1);
    }
    match SequencerDb::open(dir.path()) {
        Err(sequencer::db::DbError::SchemaVersion { found, expected }) => {
            assert_eq!((found, expected), (READABLE_FROM - 1, SCHEMA_VERSION));
        }
        other => panic!("expected a schema version error, got {other:?}"),
    }
    // A newer version than this build's is refused too.
    {
        let raw = Database::open::<SequencerTables>(dir.path()).unwrap();
        raw.update(|tx| tx.put::<Meta>(&"schema_version".to_string(), &(SCHEMA_VERSION + 1)))
            .unwrap();
    }
    match SequencerDb::open(dir.path()) {
        Err(sequencer::db::DbError::SchemaVersion { found, .. }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
        }
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

/// Batching, posting and fee bumps write a request's state and a batch's transaction once,
/// never the request records again (their input and output: ~2 KB each for MiniLM) nor the
/// transaction on every status change; an older database's inline forms still read.
#[test]
fn batching_and_posting_leave_request_records_and_the_signed_transaction_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = SequencerDb::open(dir.path()).unwrap();
    let ids = db.accept((0..3).map(new_request).collect()).unwrap();
    let results: Vec<Execution> = ids
        .iter()
        .map(|&id| Execution {
            id,
            request: None,
            output: Ok(output(id)),
        })
        .collect();
    db.record_executions(&results).unwrap();
    let raw = |db: &SequencerDb, id: u64| db.tx().unwrap().get::<Requests>(&id).unwrap();
    let executed: Vec<_> = ids.iter().map(|&id| raw(&db, id).unwrap()).collect();
    let stored_tx = |db: &SequencerDb| db.tx().unwrap().get::<BatchTxs>(&0).unwrap();
    let inline_raw = |db: &SequencerDb| match db.tx().unwrap().get::<Batches>(&0).unwrap() {
        Some(BatchRecord {
            status: BatchStatus::Signed(t) | BatchStatus::Sent { tx: t, .. },
            ..
        }) => Some(t.raw.len()),
        _ => None,
    };

    let batch = db.make_batch(10).unwrap().unwrap();
    let tx = SignedTx {
        hash: H256([7; 32]),
        raw: vec![5; 100],
        nonce: 1,
    };
    db.set_batch_status(0, BatchStatus::Signed(tx.clone()), 1)
        .unwrap();
    assert_eq!(stored_tx(&db), Some(tx.clone()));
    assert_eq!(inline_raw(&db), Some(0), "the record keeps the hash only");
    db.set_batch_status(
        0,
        BatchStatus::Sent {
            tx: tx.clone(),
            sent_at_ms: 9,
        },
        1,
    )
    .unwrap();
    let sent = db.batch(0).unwrap().unwrap();
    assert_eq!(
        sent.status,
        BatchStatus::Sent {
            tx: tx.clone(),
            sent_at_ms: 9
        },
        "read back whole"
    );
    assert_eq!(db.unposted_batches().unwrap()[0].status, sent.status);
    // A fee bump stores the replacement in place of the transaction.
    let bumped = SignedTx {
        hash: H256([8; 32]),
        raw: vec![6; 101],
        nonce: 1,
    };
    db.replace_batch_tx(0, bumped.clone()).unwrap();
    assert_eq!(stored_tx(&db), Some(bumped.clone()));
    assert_eq!(
        db.batch(0).unwrap().unwrap().status,
        BatchStatus::Signed(bumped.clone())
    );
    for &id in &batch.requests {
        let view = db.request(id).unwrap().unwrap();
        assert_eq!(view.request.status, RequestStatus::Batched);
        assert_eq!(view.request.batch, Some(0));
        assert_eq!(
            view.batch.unwrap().status,
            BatchStatus::Signed(bumped.clone())
        );
    }
    db.set_batch_status(
        0,
        BatchStatus::Posted {
            tx_hash: bumped.hash,
            block: 3,
        },
        1,
    )
    .unwrap();
    assert_eq!(stored_tx(&db), None, "posted: the transaction is not kept");
    for (&id, record) in ids.iter().zip(&executed) {
        assert_eq!(
            db.request(id).unwrap().unwrap().request.status,
            RequestStatus::Posted
        );
        assert_eq!(
            raw(&db, id).as_ref(),
            Some(record),
            "request {id}'s record untouched"
        );
    }
    assert_eq!(db.requests(0, 10).unwrap()[1].status, RequestStatus::Posted);
    let report = sequencer::db::inspect(&db).unwrap();
    assert_eq!(report["requests_by_status"]["posted"], 3);

    // An older database: the batched state in the record itself, the transaction inline.
    {
        let w = db.tx_mut().unwrap();
        let mut old = raw(&db, 0).unwrap();
        old.status = RequestStatus::Batched;
        old.batch = Some(1);
        w.delete::<RequestStates>(&0).unwrap();
        w.put::<Requests>(&0, &old).unwrap();
        let mut b = db.batch(0).unwrap().unwrap();
        b.id = 1;
        b.requests = vec![0];
        b.status = BatchStatus::Signed(tx.clone());
        w.put::<Batches>(&1, &b).unwrap();
        w.commit().unwrap();
    }
    let view = db.request(0).unwrap().unwrap();
    assert_eq!(
        (view.request.status, view.request.batch),
        (RequestStatus::Batched, Some(1))
    );
    assert_eq!(view.batch.unwrap().status, BatchStatus::Signed(tx.clone()));
    db.set_batch_status(
        1,
        BatchStatus::Sent {
            tx: tx.clone(),
            sent_at_ms: 1,
        },
        1,
    )
    .unwrap();
    assert_eq!(
        db.tx().unwrap().get::<BatchTxs>(&1).unwrap(),
        Some(tx.clone()),
        "moved out of the record on its next write"
    );
    db.set_batch_status(
        1,
        BatchStatus::Posted {
            tx_hash: tx.hash,
            block: 4,
        },
        1,
    )
    .unwrap();
    assert_eq!(
        db.request(0).unwrap().unwrap().request.status,
        RequestStatus::Posted
    );
}
