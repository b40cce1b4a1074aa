#!/usr/bin/env bash
# Serving path vs inference alone on MiniLM, same backend, threads and sentences: the
# `bench_serve` example (see its documentation), run as release build.
#   sequencer/bench-serve.sh [bench_serve flags...]      e.g. --pairs 7 --seconds 10
# BACKEND=tch runs the libtorch backend on both sides (built with `--features tch`, in
# $TCH_TARGET_DIR if set, so that a shared target keeps its features).
# OMP_WAIT_POLICY=PASSIVE keeps libtorch's OpenMP threads from spinning on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-rust}
if [ "$BACKEND" = tch ]; then
  : "${LIBTORCH:=$PWD/.venv/lib/python3.11/site-packages/torch}"
  export LIBTORCH
  TARGET=${TCH_TARGET_DIR:-target}
  CARGO_TARGET_DIR=$TARGET cargo build --release --locked -p sequencer --features tch --example bench_serve
  OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} "$TARGET/release/examples/bench_serve" --backend tch "$@"
else
  cargo build --release --locked -p sequencer --example bench_serve
  target/release/examples/bench_serve --backend rust "$@"
fi
