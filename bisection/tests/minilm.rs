//! Games over the real all-MiniLM-L6-v2 program (`make models`): a lie at a spread of ops
//! and leaves loses, a false challenge loses, and the documented bound table holds.
//!
//! Without the imported model the tests say so and pass, unless `REQUIRE_MODELS=1`.

use bisection::{
    Belief, Claim, DissectionDegree, Fault, Game, GameConfig, Side, TracePlayer, play,
};
use inference::commit::{leaf_count, tensor_hash};
use inference::import::bert::{self, FAMILY_FILE, Family};
use inference::merkle::{H256, depth_for};
use inference::model::{MANIFEST_FILE, Model, PROGRAM_FILE, WEIGHTS_FILE};
use inference::tokenize::TextTokenizer;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The bucket of `seq_len` tokens, or `None` (skipped) when the models are not imported.
fn bucket(seq_len: usize) -> Option<(Model, TextTokenizer)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/minilm");
    if !dir.join(FAMILY_FILE).is_file() {
        if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
            panic!("models/minilm is missing: run `make models`");
        }
        eprintln!("skipped: models/minilm is not prepared (run `make models`)");
        return None;
    }
    let family = Family::from_json(&std::fs::read(dir.join(FAMILY_FILE)).unwrap()).unwrap();
    let b = family
        .buckets
        .iter()
        .find(|b| b.seq_len == seq_len)
        .expect("bucket");
    let d = dir.join(&b.dir);
    let read = |n: &str| std::fs::read(d.join(n)).unwrap();
    let model = Model::from_bytes(
        &read(PROGRAM_FILE),
        &read(WEIGHTS_FILE),
        &read(MANIFEST_FILE),
    )
    .unwrap();
    let tokenizer = TextTokenizer::from_json(&read("tokenizer.json"), seq_len).unwrap();
    Some((model, tokenizer))
}

#[test]
fn the_honest_side_wins_on_minilm() {
    let Some((model, tokenizer)) = bucket(16) else {
        return;
    };
    let input = bert::input(
        &tokenizer
            .encode("Optimistic rollups settle disputes on chain.")
            .unwrap(),
        16,
    )
    .unwrap();
    let program = Arc::new(model.program().clone());
    let n = program.ops.len();
    let config = GameConfig {
        degree: DissectionDegree::new(8).unwrap(),
        tensor_levels: 3,
        clock_seconds: 600,
        ..GameConfig::default()
    };
    let truth = Belief::honest(model.program(), model.weights(), &input).unwrap();
    // The first op of every kind, and every 17th op.
    let mut kinds = BTreeSet::new();
    let ops: Vec<usize> = (1..=n)
        .filter(|&i| kinds.insert(program.ops[i - 1].op.kind().code()) || i % 17 == 0)
        .collect();
    assert!(kinds.len() >= 10, "MiniLM uses {} op kinds", kinds.len());
    let open = |output_hash| {
        let claim = Claim {
            request_id: H256::ZERO,
            model_id: model.id(),
            input_hash: tensor_hash(&input),
            output_hash,
        };
        Game::open(
            config.clone(),
            program.clone(),
            model.weights().root(),
            claim,
            0,
        )
        .unwrap()
    };
    for (k, &op) in ops.iter().enumerate() {
        let ty = &program.ops[op - 1].output;
        let last = (ty.numel() - 1) * ty.dtype.size() / 32;
        let fault = Fault {
            op,
            leaf: if k % 2 == 0 { 0 } else { last },
            propagate: k % 3 != 0,
        };
        let lie = Belief::with_fault(model.program(), model.weights(), &input, fault).unwrap();
        let mut game = open(lie.output_hash());
        let t = play(
            &mut game,
            &mut TracePlayer::new(Side::Defender, lie.clone()),
            &mut TracePlayer::new(Side::Challenger, truth.clone()),
            30,
        );
        assert_eq!(
            t.outcome.winner,
            Side::Challenger,
            "{fault:?}: {:?}",
            t.refused
        );
        if k % 4 == 0 {
            let mut game = open(truth.output_hash());
            let t = play(
                &mut game,
                &mut TracePlayer::new(Side::Defender, truth.clone()),
                &mut TracePlayer::new(Side::Challenger, lie),
                30,
            );
            assert_eq!(
                t.outcome.winner,
                Side::Defender,
                "false challenge {fault:?}"
            );
        }
    }
}

#[test]
fn the_documented_minilm_bound_table_holds() {
    let Some((model, _)) = bucket(128) else {
        return;
    };
    let p = model.program();
    let depth = p
        .ops
        .iter()
        .map(|o| depth_for(leaf_count(&o.output)))
        .max()
        .unwrap();
    assert_eq!((p.ops.len(), depth), (201, 14));
    for (k, trace, tensor, moves) in [(2, 8, 5, 30), (8, 3, 5, 20), (64, 2, 5, 18)] {
        let c = GameConfig {
            degree: DissectionDegree::new(k).unwrap(),
            tensor_levels: 3,
            ..GameConfig::default()
        };
        let b = c.bound(p.ops.len() as u64, depth);
        assert_eq!(
            (b.trace_rounds, b.tensor_rounds, b.moves),
            (trace, tensor, moves),
            "degree {k}"
        );
    }
}
