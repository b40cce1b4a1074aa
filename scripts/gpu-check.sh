#!/usr/bin/env bash
# The GPU check of issue 6, on a machine with an NVIDIA GPU and PyTorch 2.11 (its libtorch is
# the one the packed binaries load), no Rust toolchain needed: the binaries and
# models/minilm come prebuilt from `make gpu-pack` (.gpu/, carried). From the repository root:
#     scripts/gpu-check.sh        (QUICK=1: one short pass of each measurement;
#                                  DEVICE=cpu: the same steps on the CPU, to try a pack
#                                  on a machine without a GPU)
# Every step's output goes to $OUT (default /tmp/gpu-check): *.log, and bench.jsonl with one
# JSON line per measurement. Steps, each under its own time limit; a failing step does not
# stop the rest, and the exit status is the number of steps that failed:
#   1. nvidia-smi, the torch build
#   2. tch_backend: every op (random cases with edge values, batched too), the demo model
#      and MiniLM, CUDA against the CPU engine, bit for bit (REQUIRE_CUDA: no skipping)
#   3. tch_exec: the sequencer's TchExecutor on CUDA, direct and through the pool, stacked
#   4. tch_minilm: MiniLM sentences/s, libtorch on CUDA (outputs checked against the Rust
#      engine) and the Rust engine on the CPU cores, batch 1 and 64
#   5. minilm_torch.py: the PyTorch float16 baseline on the same sentences, batch 1 and 64
#   6. bench_serve on CUDA without a chain: serving vs inference alone, stack 1 and 32
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PACK=.gpu
SECONDS_EACH=${SECONDS_EACH:-4}
DEVICE=${DEVICE:-cuda}
require_cuda=(REQUIRE_CUDA=1)
[ "$DEVICE" = cpu ] && require_cuda=()
[ "${QUICK:-0}" = 1 ] && SECONDS_EACH=1
failed=0

step() { # NAME LIMIT_S command...: runs one step, its output to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s) at $(date +%T)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc $rc in $((SECONDS - start)) s"
  if [ $rc != 0 ]; then
    failed=$((failed + 1))
    tail -n 20 "$OUT/$name.log"
  fi
}

test -f "$PACK/bin.tar.xz" || { echo "no $PACK/bin.tar.xz: run make gpu-pack and carry .gpu" >&2; exit 100; }
echo "== unpacking at $(date +%T)"
python3 - "$PACK" <<'EOF' || exit 100
import sys, tarfile
pack = sys.argv[1]
tarfile.open(f"{pack}/bin.tar.xz").extractall(pack, filter="data")
tarfile.open(f"{pack}/minilm.tar.xz").extractall(".", filter="data")
EOF
chmod +x "$PACK"/bin/*
test -f models/minilm/family.json || { echo "no models/minilm after unpacking" >&2; exit 100; }

# libtorch from the machine's PyTorch (same version as the build's; the rpath of the build
# machine's venv does not exist here).
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || exit 100
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The test binaries look for models/ under the path they were built at.
built=$(cat "$PACK/built-at")
if [ "$(realpath "$built" 2>/dev/null)" != "$(realpath .)" ]; then
  if [ -e "$built" ]; then
    echo "$built exists and is not this checkout: the tests would read its models" >&2
    exit 100
  fi
  mkdir -p "$(dirname "$built")" && ln -s "$(realpath .)" "$built" || exit 100
fi
cores=$(nproc)

step env 60 bash -c 'nvidia-smi || true; python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"'
cat "$OUT/env.log"
step tch_backend 300 env "${require_cuda[@]}" REQUIRE_MODELS=1 RUST_TEST_THREADS="$cores" "$PACK/bin/tch_backend"
step tch_exec 240 env "${require_cuda[@]}" REQUIRE_MODELS=1 "$PACK/bin/tch_exec"
grep -h "test result\|CUDA" "$OUT/tch_backend.log" "$OUT/tch_exec.log"
step tch_minilm 180 env BENCH_DEVICE="$DEVICE" BENCH_THREADS="$cores" BENCH_SECONDS="$SECONDS_EACH" \
  OMP_WAIT_POLICY=PASSIVE "$PACK/bin/tch_minilm" --bench
step minilm_torch 180 env PYTHONUNBUFFERED=1 python3 scripts/minilm_torch.py --device "$DEVICE" --dtype "$([ "$DEVICE" = cpu ] && echo float32 || echo float16)" \
  --seconds "$SECONDS_EACH" --random-weights --tokenizer "$PACK/tokenizer.json"
for stack in 1 32; do
  step "bench_serve_stack$stack" 150 "$PACK/bin/bench_serve" --backend tch --no-chain --pairs 1 \
    --seconds "$SECONDS_EACH" --threads 2 --max-batch 2 --clients 64 --stack "$stack"
done
grep -h '^{' "$OUT"/tch_minilm.log "$OUT"/minilm_torch.log "$OUT"/bench_serve_stack*.log > "$OUT/bench.jsonl"
cat "$OUT/bench.jsonl"
echo "== $failed step(s) failed"
exit "$failed"
