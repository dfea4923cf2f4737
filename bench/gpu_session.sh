#!/usr/bin/env bash
# One call on a GPU machine: build the engine against that machine's own torch, run the engine's
# tests and the parity tests (the GPU ones included), then the step benchmark on a BERT-base-sized
# and a MiniLM-sized backbone. Everything it measures lands in $OUT (default ./gpu-out).
#
#   bench/gpu_session.sh [build|test|bench|all]...      (default: all)
#
# Needs: python3 with torch (CUDA), transformers and safetensors; cmake and ninja; the headers of
# nlohmann-json and GoogleTest's sources, installed or in $BITFLEET_THIRD_PARTY_DIR
# (default ./third_party_carry: nlohmann/json.hpp and googletest/). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
PYTHON=${PYTHON:-python3}
BUILD=${BITFLEET_GPU_BUILD:-build-gpu}
THIRD_PARTY=${BITFLEET_THIRD_PARTY_DIR:-$PWD/third_party_carry}
SLOTS=${BITFLEET_BENCH_SLOTS:-1,4,16,64}
PROFILE_SLOTS=${BITFLEET_BENCH_PROFILE_SLOTS:-16}  # one extra step profiled at this S (0: none)
mkdir -p "$OUT"
steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(all)
want() { [[ " ${steps[*]} " == *" $1 "* || " ${steps[*]} " == *" all "* ]]; }

if want build; then
  {
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
  } | tee "$OUT/device.txt"
  cmake -S . -B "$BUILD" -G Ninja -DBITFLEET_ENGINE_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
    -DBITFLEET_PYTHON="$(command -v "$PYTHON")" -DBITFLEET_THIRD_PARTY_DIR="$THIRD_PARTY" 2>&1 |
    tee "$OUT/configure.log" | grep 'bitfleet:'
  cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "built $(ls "$BUILD/bin" | tr '\n' ' ')"
fi

if want test; then
  # Unit and parity tests: the engine's CPU numerics, and the bf16 GPU path against transformers.
  # -V keeps what the GPU parity tests print (the measured bf16 errors) in the log.
  (cd "$BUILD" && ctest -L 'unit|parity' -j 8 -V --timeout 900) > "$OUT/ctest.log" 2>&1 &&
    echo "ctest: all passed" || echo "ctest: FAILURES (see ctest.log)"
  grep -E 'tests passed|\*\*\*Failed|relative error|dev accuracy|skipped' "$OUT/ctest.log" || true
fi

if want bench; then
  # Random weights of the two shapes: speed depends on the shape, not the values.
  "$PYTHON" - "$OUT" <<'EOF'
import sys
from transformers import BertConfig, BertModel
for name, config in {"bert-base-sized": BertConfig(),
                     "minilm-sized": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                                intermediate_size=1536)}.items():
    BertModel(config).save_pretrained(f"/tmp/{name}")
    print("wrote", name)
EOF
  for backbone in bert-base-sized minilm-sized; do
    PYTHONUNBUFFERED=1 "$PYTHON" bench/step_bench.py --device cuda --backbone "/tmp/$backbone" --seq 128 --batch 16 \
      --slots "$SLOTS" --steps 20 --warmup 3 --profile-slots "$PROFILE_SLOTS" --bin "$BUILD/bin/bitfleet-bench-step" --out "$OUT" \
      2>&1 | tee "$OUT/step-$backbone.txt" || echo "step bench on $backbone FAILED"
  done
  # The last layer for the head rows only against the full layer (--head-rows, ModelOptions::
  # head_rows_only): alternating runs at S = 16 on the BERT-base-sized backbone.
  for round in 1 2; do
    for rows in off on; do
      "$BUILD/bin/bitfleet-bench-step" --device cuda --backbone /tmp/bert-base-sized --seq 128 --batch 16 --slots 16 \
        --steps 20 --warmup 3 --head-rows "$rows" --json > "$OUT/head-rows-$rows-$round.json" 2>/dev/null &&
        "$PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"][0]
print("head rows", sys.argv[2] + ":", round(r["examples_per_second"], 1), "ex/s,", round(100 * r["share_of_bf16_peak"], 1), "% of bf16 peak")' \
          "$OUT/head-rows-$rows-$round.json" "$rows" | tee -a "$OUT/head-rows.txt" || echo "head-rows $rows FAILED"
    done
  done
fi
