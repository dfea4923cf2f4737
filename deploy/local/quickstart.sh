#!/usr/bin/env bash
# Quickstart: install, build, and show bitfleet working on this machine.
# Today it installs and builds; the coordinator, worker group and real jobs arrive with
# issues #5-#7, and this script says so rather than pretending.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/deploy/lib/env.sh"
"$root/deploy/install-deps.sh"
build=${BITFLEET_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja \
  -DBITFLEET_PYTHON="$(bitfleet_python)" -DBITFLEET_MINILM_DIR="$(bitfleet_minilm_dir)" >/dev/null
cmake --build "$build" -j "$(bitfleet_build_jobs)"
echo
echo "Built into $build/bin. Not there yet: the coordinator, the worker and the CLI, so no jobs run."
