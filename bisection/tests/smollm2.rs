//! The documented bound table for the real SmolLM2-135M generation programs
//! (`make models`): the smallest (16-token prompt, 8 new tokens) and the largest (128, 32).
//!
//! Without the imported model the test says so and passes, unless `REQUIRE_MODELS=1`.

use bisection::{DissectionDegree, GameConfig};
use inference::commit::leaf_count;
use inference::merkle::depth_for;
use inference::model::PROGRAM_FILE;
use inference::program::Program;
use std::path::Path;

/// The program in `models/smollm2/<dir>`, or `None` (skipped) when the model is not imported.
fn program(dir: &str) -> Option<Program> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2");
    if !root.join("family.json").is_file() {
        if std::env::var("REQUIRE_MODELS").as_deref() == Ok("1") {
            panic!("models/smollm2 is missing: run `make models`");
        }
        eprintln!("skipped: models/smollm2 is not prepared (run `make models`)");
        return None;
    }
    let json = std::fs::read_to_string(root.join(dir).join(PROGRAM_FILE)).unwrap();
    Some(Program::from_json(&json).unwrap())
}

#[test]
fn the_documented_smollm2_bound_table_holds() {
    type Row = (u32, u32, u32, u32);
    let cases: [(&str, usize, u32, [Row; 3]); 2] = [
        (
            "p16-n8",
            19_019,
            13,
            [(2, 15, 5, 44), (8, 5, 5, 24), (64, 3, 5, 20)],
        ),
        (
            "p128-n32",
            76_427,
            15,
            [(2, 17, 5, 48), (8, 6, 5, 26), (64, 3, 5, 20)],
        ),
    ];
    for (dir, ops, tree_depth, rows) in cases {
        let Some(p) = program(dir) else {
            return;
        };
        let depth = p
            .ops
            .iter()
            .map(|o| depth_for(leaf_count(&o.output)))
            .max()
            .unwrap();
        assert_eq!((p.ops.len(), depth), (ops, tree_depth), "{dir}");
        for (k, trace, tensor, moves) in rows {
            let c = GameConfig {
                degree: DissectionDegree::new(k).unwrap(),
                tensor_levels: 3,
                ..GameConfig::default()
            };
            let b = c.bound(p.ops.len() as u64, depth);
            assert_eq!(
                (b.trace_rounds, b.tensor_rounds, b.moves),
                (trace, tensor, moves),
                "{dir}, degree {k}"
            );
        }
    }
}
