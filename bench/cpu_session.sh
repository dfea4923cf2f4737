#!/usr/bin/env bash
# One command on a CPU machine (an AMX-BF16 Xeon above all: issue 17's targets are stated there):
# every CPU measurement docs/performance.md reports for the bf16 step, in one go, into $OUT
# (default ./cpu-out), on the build that ./tests/run.sh or the quickstart made.
#
#   bench/cpu_session.sh [cpu|ab|step|parity|serve|tasks|all]...     (default: all; ~30 min on 2 cores)
#
#   cpu     the CPU's model and flags (lscpu, AMX), torch's version            -> cpu.txt
#   ab      alternating A/Bs of bitfleet-bench-step (bench/ab_step.py), bf16: the block attention
#           kernel against LibTorch's flash kernels, and the last layer for the head rows only
#           against the full layer                                               -> ab-*.txt, ab-*.json
#   step    bench/step_bench.py, twice: fp32 and bf16 at S = 1, 4, 16 beside the transformers loop
#           (fp32 and bf16 autocast) in the same run, a profiled bf16 step at S = 4 -> step-*.txt
#   parity  the bf16 CPU step against float64 beside transformers' autocast     -> parity.txt
#   serve   bench/serve_bench.py --dtype bf16                                    -> serve.txt
#   tasks   bench/tasks_per_hour.py --dtype bf16 (the longest: ~15-20 min)       -> tasks.txt
#
# BITFLEET_THREADS (default 2) is every run's --threads. Needs the real MiniLM (deploy/lib/env.sh)
# and, for serve and tasks, ../shared/data/glue (both fall back to generated data without it).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/env.sh
OUT=${OUT:-$PWD/cpu-out}
THREADS=${BITFLEET_THREADS:-2}
PYTHON=$(bitfleet_python)
BACKBONE=$(bitfleet_minilm_dir)
mkdir -p "$OUT"
[[ -x build/bin/bitfleet-bench-step ]] || { echo "no build/bin/bitfleet-bench-step: run ./tests/run.sh first" >&2; exit 1; }
steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(all)
for s in "${steps[@]}"; do
  [[ " cpu ab step parity serve tasks all " == *" $s "* ]] || { echo "unknown step '$s'" >&2; exit 2; }
done
want() { [[ " ${steps[*]} " == *" $1 "* || " ${steps[*]} " == *" all "* ]]; }
failed=()

if want cpu; then
  {
    date -u +%Y-%m-%dT%H:%M:%SZ
    git rev-parse --short HEAD
    lscpu | grep -E '^(Model name|Vendor ID|CPU family|Model|CPU\(s\)|Thread|L2|L3)'
    echo "AMX: $(grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "avx512: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())'
  } | tee "$OUT/cpu.txt"
fi

if want ab; then
  # The baseline (what the change replaced) first: the ratios are the change's gain.
  for pair in "attention:flash=--cpu-attention flash:block=--cpu-attention block" \
              "head-rows:full=--head-rows off:cut=--head-rows on"; do
    IFS=: read -r name a b <<< "$pair"
    echo "== A/B: $name"
    "$PYTHON" bench/ab_step.py --backbone "$BACKBONE" --variant "$a" --variant "$b" --rounds 3 --slots 1,4,16 \
      --threads "$THREADS" --json-out "$OUT/ab-$name.json" 2>&1 | tee "$OUT/ab-$name.txt" || failed+=("ab $name")
  done
fi

if want step; then
  for run in 1 2; do
    echo "== step bench, run $run"
    "$PYTHON" bench/step_bench.py --backbone "$BACKBONE" --slots 1,4,16 --seq 64 --batch 16 --threads "$THREADS" \
      --steps 5 --profile-slots 4 --out "$OUT" 2>&1 | tee "$OUT/step-$run.txt" || failed+=("step $run")
  done
fi

if want parity; then
  echo "== bf16 parity on the CPU"
  (cd build && BITFLEET_MINILM_DIR="$BACKBONE" ctest -R '^parity_engine_bf16_cpu$' -V) 2>&1 | tee "$OUT/parity.txt" |
    grep -E 'relative error|accuracy|tests passed|Failed' || failed+=(parity)
fi

if want serve; then
  echo "== serving"
  "$PYTHON" bench/serve_bench.py --backbone "$BACKBONE" --threads "$THREADS" --dtype bf16 --out "$OUT" 2>&1 |
    tee "$OUT/serve.txt" || failed+=(serve)
fi

if want tasks; then
  echo "== tasks per hour"
  "$PYTHON" bench/tasks_per_hour.py --backbone "$BACKBONE" --threads "$THREADS" --dtype bf16 --out "$OUT" 2>&1 |
    tee "$OUT/tasks.txt" || failed+=(tasks)
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]} (see $OUT)" >&2
  exit 1
fi
echo "all in $OUT"
