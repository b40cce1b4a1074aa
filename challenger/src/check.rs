//! Re-executing one claim with the CPU reference engine and comparing output hashes.

use inference::commit::try_tensor_hash;
use inference::merkle::H256;
use inference::model::Model;
use inference::trace::run;
use sequencer::chain::BatchEntry;

/// What re-executing a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The claimed output is the model's output.
    Correct,
    /// The claimed output is not the model's output.
    Wrong {
        /// The output hash the claim states.
        claimed: H256,
        /// The output hash the engine computed.
        computed: H256,
    },
    /// The input does not fit the model (wrong type): the claim cannot be re-executed.
    BadInput(String),
}

impl Verdict {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Correct => "correct",
            Self::Wrong { .. } => "wrong",
            Self::BadInput(_) => "bad_input",
        }
    }
}

/// Re-executes `entry` on `model` (whose id the caller matched with the entry's).
pub fn check_entry(model: &Model, entry: &BatchEntry) -> Verdict {
    let program = model.program();
    if entry.input.ty() != program.input {
        return Verdict::BadInput(format!(
            "input {} for a model that takes {}",
            entry.input.ty(),
            program.input
        ));
    }
    let claimed = match try_tensor_hash(&entry.output) {
        Ok(h) => h,
        Err(e) => return Verdict::BadInput(format!("output: {e}")),
    };
    match run(program, model.weights(), &entry.input) {
        Ok(out) => match try_tensor_hash(&out) {
            Ok(computed) if computed == claimed => Verdict::Correct,
            Ok(computed) => Verdict::Wrong { claimed, computed },
            Err(e) => Verdict::BadInput(e.to_string()),
        },
        Err(e) => Verdict::BadInput(format!("execution: {e}")),
    }
}
