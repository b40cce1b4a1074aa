//! Against a real anvil with the real contracts and the real MiniLM program: an honest
//! sequencer is never disputed; claims of an unknown model and claims whose input does not
//! fit the model are reported and skipped, without a crash or a dispute.

mod common;

use challenger::{ChallengerConfig, ClaimOutcome, Metrics, ModelStore, Verdict};
use common::*;
use inference::merkle::H256;
use inference::tensor::Tensor;
use inference::trace::run;
use sequencer::chain::{BatchData, BatchEntry};
use sequencer::claim::request_word;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_batches_are_never_disputed_and_bad_claims_are_reported() {
    let Some((model, tok)) = minilm() else { return };
    let net = Devnet::start(&model).await;
    let honest = |i: u64, text: &str| {
        let x = input(&tok, text);
        let y = run(model.program(), model.weights(), &x).unwrap();
        BatchEntry {
            request_id: request_word(i),
            model_id: model.id(),
            input: x,
            output: y,
        }
    };
    let (honest_batch, _) = net
        .sequencer
        .post_batch(&BatchData {
            entries: vec![
                honest(1, "An honest sequencer."),
                honest(2, "Posts what the model computes."),
                honest(3, "Every time."),
            ],
        })
        .await
        .unwrap();
    // A claim of a model nobody registered, and one whose input does not fit MiniLM.
    let unknown = BatchEntry {
        model_id: H256([0xab; 32]),
        ..honest(4, "Unknown model.")
    };
    let bad_input = BatchEntry {
        input: Tensor::from_i32(vec![2, 8], vec![1; 16]).unwrap(),
        ..honest(5, "Bad input.")
    };
    let (bad_batch, _) = net
        .sequencer
        .post_batch(&BatchData {
            entries: vec![unknown, bad_input],
        })
        .await
        .unwrap();

    let store = Arc::new(ModelStore::new());
    store.load_dir(&minilm_dir()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut bot = challenger::Challenger::new(
        net.challenger.clone(),
        store,
        ChallengerConfig {
            poll_interval: Duration::from_millis(50),
            ..ChallengerConfig::default()
        },
        metrics.clone(),
    );
    let mut reports = Vec::new();
    loop {
        let (r, caught_up) = bot.poll().await.unwrap();
        reports.extend(r);
        if caught_up {
            break;
        }
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    let h = reports.iter().find(|r| r.batch_id == honest_batch).unwrap();
    assert_eq!(h.claims, vec![ClaimOutcome::Checked(Verdict::Correct); 3]);
    let b = reports.iter().find(|r| r.batch_id == bad_batch).unwrap();
    assert!(
        matches!(b.claims[0], ClaimOutcome::UnknownModel(_)),
        "{b:?}"
    );
    assert!(
        matches!(b.claims[1], ClaimOutcome::Checked(Verdict::BadInput(_))),
        "{b:?}"
    );
    assert_eq!(bot.open_games(), 0);
    assert!(bot.finish_games().await.is_empty());
    assert_eq!(metrics.games_opened.get(), 0);
    assert_eq!(metrics.claims_checked.get(), 4);
    assert_eq!(metrics.unknown_models.get(), 1);
    assert_eq!(net.challenger.games().gameCount().call().await.unwrap(), 0);
}
