#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time over a
# copy of its seed corpus, two at a time. A crash fails the run and leaves its input in the work
# folder; turn every one into a regression test beside the code it found.
#   tests/fuzz/run.sh              60 s per target (BITFLEET_FUZZ_SECONDS overrides)
#   tests/fuzz/run.sh table_reader one target
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${BITFLEET_FUZZ_BUILD_DIR:-$here/../../build-fuzz}
seconds=${BITFLEET_FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors table_reader job_spec protocol http_request tokenizer predict_request)
CXX=${CXX_FUZZ:-clang++} cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ! cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1; then
  grep -E "error|undefined reference" "$build/build.log" | head -20
  echo "fuzz: the targets did not build (full log: $build/build.log)"
  exit 1
fi
work=$build/runs
rm -rf "$work"
mkdir -p "$work"
run_one() {
  local t=$1
  mkdir -p "$work/$t/corpus"
  cp "$here/corpus/$t/"* "$work/$t/corpus/"
  if (cd "$work/$t" && "$build/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 corpus >log 2>&1); then
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$') runs, no crash"
  else
    echo "fuzz_$t: FAILED — $(ls "$work/$t" | grep -E '^(crash|leak|timeout|oom)-' | head -1)"
    tail -n 40 "$work/$t/log"
    return 1
  fi
}
failed=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] && echo "fuzz: $(echo "${targets[@]}" | wc -w) targets, ${seconds} s each, no crash" || exit 1
