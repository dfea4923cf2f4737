#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every test.
#   ./tests/run.sh                 everything (what CI runs)
#   ./tests/run.sh -L unit         pass extra arguments to every ctest call
# Labels run in order — unit, parity, mpi, e2e — then the fuzz targets (60 s each, two at a time;
# skipped when ctest arguments are given or BITFLEET_SKIP_FUZZ is set), and all of them run even
# after a failure; the exit status is non-zero if any failed. BITFLEET_BUILD_DIR overrides ./build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/env.sh"

"$root/deploy/install-deps.sh"

build=${BITFLEET_BUILD_DIR:-$root/build}
bitfleet_build "$build"

cd "$build"
export BITFLEET_MINILM_DIR=$(bitfleet_minilm_dir)
failed=0
for label in unit parity mpi e2e; do
  if [ -z "$(ctest -N -L "^${label}\$" | grep -E '^ +Test +#')" ]; then
    continue
  fi
  echo "=== ctest -L $label"
  # unit tests are independent processes: run two at a time; the rest start servers and worker
  # groups that want the machine to themselves.
  jobs=1
  [ "$label" = unit ] && jobs=$(nproc)
  ctest -L "^${label}\$" --output-on-failure -j "$jobs" "$@" || failed=1
done
# Fuzzing: every libFuzzer target for a bounded time (tests/fuzz/run.sh; BITFLEET_FUZZ_SECONDS).
if [ -z "${BITFLEET_SKIP_FUZZ:-}" ] && [ $# -eq 0 ]; then
  echo "=== fuzz"
  BITFLEET_FUZZ_BUILD_DIR="$build-fuzz" "$root/tests/fuzz/run.sh" || failed=1
fi
echo "=== summary"
ctest -N | tail -n 1
if [ "$failed" -ne 0 ]; then
  echo "tests/run.sh: some tests failed (see above)"
  exit 1
fi
echo "tests/run.sh: all tests passed"
