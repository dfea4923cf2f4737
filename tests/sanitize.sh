#!/usr/bin/env bash
# Sanitizer builds of bitfleet's tests, each in its own build folder:
#   ./tests/sanitize.sh address   ASan + UBSan, leaks on: every unit test (the engine's included:
#                                 LibTorch itself is not instrumented, our code around it is), and
#                                 the integration tests of bitfleet-train and of the coordinator
#                                 (API, hardening, durability) against instrumented binaries
#   ./tests/sanitize.sh thread    TSan: the coordinator's and the agent's concurrency — the agent
#                                 against an in-process coordinator (agent_test), the store, and the
#                                 coordinator binary under the API and hardening tests' clients
#   ./tests/sanitize.sh           both
# A finding fails the run (halt_on_error); the report is in the test's output.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/env.sh"
"$root/deploy/install-deps.sh" >/dev/null
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(address thread)
export BITFLEET_MINILM_DIR=$(bitfleet_minilm_dir)
export BITFLEET_SANITIZER=1  # tests that measure memory or time skip themselves
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_init_order=1
failed=0
for mode in "${modes[@]}"; do
  build=${BITFLEET_BUILD_DIR:-$root/build}-$mode
  case $mode in
    address) sanitize=address,undefined ;;
    thread) sanitize=thread ;;
    *) echo "sanitize.sh: unknown mode $mode (address or thread)"; exit 2 ;;
  esac
  echo "=== sanitize: $mode ($build)"
  cmake -S "$root" -B "$build" -G Ninja -DBITFLEET_SANITIZE=$sanitize -DBITFLEET_WERROR=OFF \
    -DBITFLEET_PYTHON="$(bitfleet_python)" -DBITFLEET_MINILM_DIR="$BITFLEET_MINILM_DIR" >/dev/null
  if [ "$mode" = address ]; then
    cmake --build "$build" -j "$(bitfleet_build_jobs)"
    (cd "$build" && ctest -L '^unit$' -j "$(nproc)" --output-on-failure) || failed=1
    (cd "$build" && ctest -R '^(trainer_properties|coordinator_api|coordinator_hardening|coordinator_durability)$' \
      --output-on-failure) || failed=1
  else
    unit_tests=(agent_test coordinator_test common_test)
    cmake --build "$build" -j "$(bitfleet_build_jobs)" --target bitfleet-coordinator "${unit_tests[@]}"
    for t in "${unit_tests[@]}"; do
      "$build/tests/$t" --gtest_brief=1 || failed=1
    done
    # The Python clients drive the instrumented coordinator (BITFLEET_BIN_DIR points at it).
    for t in test_coordinator test_hardening; do
      BITFLEET_BIN_DIR="$build/bin" "$(bitfleet_python)" -u "$root/tests/integration/$t.py" || failed=1
    done
  fi
done
[ "$failed" -eq 0 ] && echo "sanitize.sh: clean" || { echo "sanitize.sh: findings (see above)"; exit 1; }
