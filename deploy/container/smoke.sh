#!/usr/bin/env bash
# Proves the image end to end: a coordinator and a 1-rank worker group, each in its own container
# of IMAGE, train one real BitFit job (deploy/local's sentiment task on a random tiny BERT that the
# image's bitfleet-train makes), and the bitfleet CLI from the image downloads its artifact.
#
#   deploy/container/smoke.sh [IMAGE]        (default: bitfleet:<project version>)
#
# Containers share the host's network (loopback) and one scratch directory mounted at /work.
# Where podman's default OCI runtime cannot start a container (seen here: crun refuses a cgroup
# v1/v2 hybrid, and a root without CAP_SYS_RESOURCE cannot raise rlimits to podman's defaults),
# it retries with runc and the shell's own limits, and says so; BITFLEET_PODMAN_RUN_FLAGS overrides.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/deploy/lib/env.sh"
image=${1:-bitfleet:$(bitfleet_version)}
log() { printf '[smoke] %s\n' "$*"; }

if [ -n "${BITFLEET_PODMAN_RUN_FLAGS:-}" ]; then
  read -r -a flags <<<"$BITFLEET_PODMAN_RUN_FLAGS"
elif podman run --rm --network host "$image" true 2>/dev/null; then
  flags=()
else
  flags=(--runtime runc --ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit "nproc=4096:4096")
  log "the default OCI runtime cannot start a container here; using: ${flags[*]}"
fi
tmp=$(mktemp -d)
names=()
cleanup() {
  for n in "${names[@]}"; do podman rm -f "$n" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# The image runs as the unprivileged user bitfleet (uid 10001): the scratch directory is its.
mkdir -p "$tmp/manifest/data" "$tmp/data"
cp "$root/deploy/local/data/"sentiment-*.tsv "$tmp/manifest/data/"
sed -n '1p; /^sentiment,/p' "$root/deploy/local/tasks.csv" >"$tmp/manifest/tasks.csv"
chown -R 10001:10001 "$tmp"
run=(podman run "${flags[@]}" --network host -v "$tmp:/work")
suffix=$$

log "coordinator"
names+=("bitfleet-smoke-coordinator-$suffix")
"${run[@]}" -d --name "${names[-1]}" "$image" \
  bitfleet-coordinator --listen 127.0.0.1:0 --data-dir /work/data >/dev/null
url=""
for ((i = 0; i < 300; i++)); do
  url=$(podman logs "${names[-1]}" 2>/dev/null | sed -n 's/^listening on \(127.0.0.1:[0-9]*\)$/http:\/\/\1/p')
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { podman logs "${names[-1]}" >&2; echo "smoke: the coordinator did not start" >&2; exit 1; }
log "coordinator at $url"

"${run[@]}" --rm "$image" bitfleet-train random-backbone --arch bert --layers 2 --hidden 64 --heads 4 \
  --intermediate 128 --vocab-size 1000 --max-seq-len 128 --seed 5 --out /work/backbone >/dev/null

log "worker group: mpirun -np 1 bitfleet-worker"
names+=("bitfleet-smoke-worker-$suffix")
"${run[@]}" -d --name "${names[-1]}" "$image" \
  mpirun --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -np 1 \
  bitfleet-worker --coordinator "$url" --backbone /work/backbone --backbone-name random-bert --slots 2 \
  --threads 1 --token-file /work/data/worker.token --cache-dir /work/cache >/dev/null

cli=("${run[@]}" --rm -e BITFLEET_URL="$url" -e BITFLEET_TOKEN_FILE=/work/data/admin.token -w /work "$image" bitfleet)
for ((i = 0; i < 300; i++)); do
  "${cli[@]}" workers 2>/dev/null | grep -q random-bert && break
  sleep 0.5
done
"${cli[@]}" workers
id=$("${cli[@]}" submit --manifest /work/manifest/tasks.csv --backbone random-bert --json |
  grep -o '"id": "job-[0-9a-f]*"' | cut -d'"' -f4)
log "job $id"
"${cli[@]}" watch "$id" --interval 1
"${cli[@]}" download "$id" -o /work/artifacts
artifact=$(ls "$tmp/artifacts/"*.safetensors)
log "ok: $image trained $id; artifact $(basename "$artifact"), $(stat -c %s "$artifact") bytes"
