#!/usr/bin/env bash
# Builds, on this machine, everything the GPU check runs, and packs it into .gpu/ (ignored
# by git) for a GPU machine that has PyTorch but no Rust toolchain and no network (the
# `device` tool's machines: the working tree and the paths a call carries must stay under
# 64 MiB together). Then, on that machine, from the repository root, carrying .gpu:
#     scripts/gpu-check.sh
# `make gpu-pack` runs this after `make setup models`.
#
# What goes in:
#   bin.tar.xz     release builds with `--features tch`, stripped:
#                  tch_backend  inference/tests/tch_backend.rs: every op (random cases),
#                               the demo model and MiniLM on the CPU and CUDA against the
#                               CPU engine, batched too
#                  tch_exec     sequencer/tests/tch_exec.rs: TchExecutor, direct and through
#                               the pool
#                  tch_minilm   inference/benches/tch_minilm.rs: sentences/s, libtorch vs the
#                               Rust engine
#                  bench_serve  sequencer/examples/bench_serve.rs: serving vs inference alone
#   minilm.tar.xz  models/minilm (140 MB: four buckets whose weights are mostly the same
#                  tensors; one xz stream with a dictionary larger than a bucket keeps one
#                  copy of what they share: ~30 MB)
#   tokenizer.json the PyTorch baseline's tokenizer (its weights are random ones of the
#                  real shapes: the float16 file, 45 MB, does not fit; the work done, and so
#                  the throughput, does not depend on the values)
#   built-at       the repository path the binaries were built at (their tests find
#                  models/ through it; gpu-check.sh links it to the copy it runs in)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LIBTORCH:=$PWD/.venv/lib/python3.11/site-packages/torch}"
export LIBTORCH
PACK=.gpu
LIMIT_MB=${GPU_PACK_LIMIT_MB:-60}

test -f models/minilm/family.json || { echo "models/minilm is missing: run make models" >&2; exit 1; }
test -d "$LIBTORCH/lib" || { echo "no libtorch at $LIBTORCH: run make setup" >&2; exit 1; }

# The executables of target TARGET that a cargo command builds.
executables() {
  local target=$1
  shift
  cargo "$@" --message-format=json-render-diagnostics | .venv/bin/python -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m.get("target", {}).get("name") == sys.argv[1]:
        print(m["executable"])' "$target"
}

one() { # NAME cargo-args...: builds target NAME's executable and copies it to $PACK/bin/
  local name=$1
  shift
  local exe
  exe=$(executables "$name" "$@")
  if [ "$(printf '%s\n' "$exe" | grep -c .)" != 1 ]; then
    echo "expected one executable from cargo $*, got: $exe" >&2
    exit 1
  fi
  cp "$exe" "$PACK/bin/$name"
}

rm -rf "$PACK"
mkdir -p "$PACK/bin"
one tch_backend test --release --locked --no-run -p inference --features tch --test tch_backend
one tch_exec test --release --locked --no-run -p sequencer --features tch --test tch_exec
one tch_minilm bench --locked --no-run -p inference --features tch --bench tch_minilm
one bench_serve build --release --locked -p sequencer --features tch --example bench_serve
strip "$PACK"/bin/*
pwd > "$PACK/built-at"
cp models/minilm/seq16/tokenizer.json "$PACK/tokenizer.json"
echo "compressing (about 2 minutes)"
tar -C "$PACK" -cf - bin | xz -T1 -6 > "$PACK/bin.tar.xz"
rm -r "$PACK/bin"
tar -cf - models/minilm | xz -T1 -9 --lzma2=dict=192MiB > "$PACK/minilm.tar.xz"
ls -la "$PACK"
total=$(( $(du -sk "$PACK" | cut -f1) / 1024 ))
echo "packed: ${total} MiB in $PACK (carry it; the working tree adds ~4 MiB)"
if [ "$total" -gt "$LIMIT_MB" ]; then
  echo "over ${LIMIT_MB} MiB: the device tool will refuse it" >&2
  exit 1
fi
