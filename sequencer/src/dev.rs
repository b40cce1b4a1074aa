//! Development modes that make this sequencer misbehave on purpose, to exercise the
//! challengers and the dispute games end to end. Never for production.
//!
//! [`LyingExecutor`] serves wrong outputs in the most demanding way for a challenger: one
//! element of one op's output is changed and every later op computes on from it (a
//! consistent lie, as [`bisection::Fault`] with `propagate`), so the output is wrong but
//! every step after the lie is right, and only a bisection down to the lying op can show
//! it. The sequencer's defence ([`crate::chain::watch`]) then plays the same corrupted
//! trace, consistent with what was posted, and loses at the one-step.

use crate::execution::{ExecutionError, Executor};
use bisection::{Belief, Fault};
use inference::model::Model;
use inference::tensor::Tensor;
use std::sync::Arc;

/// Where the lie is: op `op`'s output (1-based, as the e2e scenarios' `fault_op`), the
/// first element of its 32-byte leaf `leaf` (its low bit flipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lie {
    /// The op (1-based index in the program).
    pub op: usize,
    /// The index of a 32-byte leaf of that op's output.
    pub leaf: usize,
}

impl Lie {
    /// The consistent fault this lie makes (later ops compute on from the changed value).
    pub fn fault(self) -> Fault {
        Fault {
            op: self.op,
            leaf: self.leaf,
            propagate: true,
        }
    }

    /// Whether `model` has this op and leaf (programs of other buckets may be shorter or
    /// have smaller tensors).
    pub fn applies_to(self, model: &Model) -> bool {
        let program = model.program();
        if self.op == 0 || self.op > program.ops.len() {
            return false;
        }
        let ty = &program.ops[self.op - 1].output;
        let per_leaf = 32 / ty.dtype.size();
        self.leaf
            .checked_mul(per_leaf)
            .is_some_and(|element| element < ty.numel())
    }

    /// The belief of a defender that posted this lie for `input`: the whole faulty trace.
    pub fn belief<'a>(
        self,
        model: &'a Model,
        input: &Tensor,
    ) -> Result<Belief<'a>, inference::Error> {
        Belief::with_fault(model.program(), model.weights(), input, self.fault())
    }

    /// The program's output with the lie in it.
    pub fn output(self, model: &Model, input: &Tensor) -> Result<Tensor, inference::Error> {
        Ok(self.belief(model, input)?.trace().output().clone())
    }
}

impl std::str::FromStr for Lie {
    type Err = String;

    /// Parses `OP:LEAF` (both decimal; op 1-based).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (op, leaf) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected OP:LEAF, e.g. 120:3"))?;
        let op: usize = op.trim().parse().map_err(|e| format!("{s:?}: op: {e}"))?;
        let leaf: usize = leaf
            .trim()
            .parse()
            .map_err(|e| format!("{s:?}: leaf: {e}"))?;
        if op == 0 {
            return Err(format!("{s:?}: ops are numbered from 1"));
        }
        Ok(Self { op, leaf })
    }
}

impl std::fmt::Display for Lie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.op, self.leaf)
    }
}

/// An [`Executor`] that lies: for every model that has the lie's op and leaf it returns the
/// output of the program run with that leaf corrupted and the later ops computing on from
/// it. Models without that op or leaf are run honestly by the inner executor.
#[derive(Clone)]
pub struct LyingExecutor {
    inner: Arc<dyn Executor>,
    lie: Lie,
}

impl std::fmt::Debug for LyingExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LyingExecutor")
            .field("inner", &self.inner.backend())
            .field("lie", &self.lie)
            .finish()
    }
}

impl LyingExecutor {
    /// Lies with `lie`, running the models it does not apply to on `inner`.
    pub fn new(inner: Arc<dyn Executor>, lie: Lie) -> Self {
        Self { inner, lie }
    }

    /// The lie.
    pub fn lie(&self) -> Lie {
        self.lie
    }
}

impl Executor for LyingExecutor {
    fn backend(&self) -> &'static str {
        "lying"
    }

    fn run(&self, model: &Model, input: &Tensor) -> Result<Tensor, ExecutionError> {
        if !self.lie.applies_to(model) {
            tracing::debug!(target: "dev", model = %model.id(), lie = %self.lie, "the lie does not fit this model: running it honestly");
            return self.inner.run(model, input);
        }
        self.lie.output(model, input).map_err(|e| ExecutionError {
            backend: "lying",
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Lie;

    #[test]
    fn lies_parse_and_print_as_op_colon_leaf() {
        let lie: Lie = "120:192".parse().unwrap();
        assert_eq!(lie, Lie { op: 120, leaf: 192 });
        assert_eq!(lie.to_string(), "120:192");
        assert!(lie.fault().propagate, "a consistent lie");
        for bad in ["", "120", "0:1", "a:1", "1:b", "1:-2"] {
            assert!(bad.parse::<Lie>().is_err(), "{bad:?} parsed");
        }
    }
}
