#!/usr/bin/env bash
# Prints the bitfleet-auth Secret (Kubernetes) with fresh random tokens: an admin token, a worker
# token, a metrics token (Prometheus's scrape of /metrics), bitfleet-serve's token (role admin: it
# downloads every tenant's artifacts, and serves each only to its own tenant), and one user token
# per tenant named on the command line. Keep the output private.
#
#   ./deploy/kubernetes/make-auth-secret.sh team-a team-b | kubectl apply -f -
#
# auth.json is the coordinator's --auth-file; worker.token is mounted into the worker groups,
# serve.token into bitfleet-serve (deploy/kubernetes/serve.yaml).
# The tokens are also printed to stderr once, for the people who will use them.
set -euo pipefail
token() { openssl rand -hex 32; }
admin=$(token)
worker=$(token)
metrics=$(token)
serve=$(token)
entries="{\"token\": \"$admin\", \"tenant\": \"admin\", \"role\": \"admin\"}, {\"token\": \"$worker\", \"tenant\": \"workers\", \"role\": \"worker\"}"
entries+=", {\"token\": \"$metrics\", \"tenant\": \"metrics\", \"role\": \"metrics\"}"
entries+=", {\"token\": \"$serve\", \"tenant\": \"serve\", \"role\": \"admin\"}"
echo "admin token: $admin" >&2
for tenant in "$@"; do
  t=$(token)
  entries+=", {\"token\": \"$t\", \"tenant\": \"$tenant\", \"role\": \"user\"}"
  echo "$tenant token: $t" >&2
done
auth="{\"tokens\": [$entries]}"
cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: bitfleet-auth
  labels: {app.kubernetes.io/name: bitfleet}
type: Opaque
data:
  auth.json: $(printf '%s' "$auth" | base64 -w0)
  worker.token: $(printf '%s' "$worker" | base64 -w0)
  metrics.token: $(printf '%s' "$metrics" | base64 -w0)
  serve.token: $(printf '%s' "$serve" | base64 -w0)
YAML
