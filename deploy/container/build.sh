#!/usr/bin/env bash
# Builds the bitfleet container image with podman, from a Debian 12 base made on this machine
# (no image registry is needed: Debian's package mirror and PyPI are).
#
#   deploy/container/build.sh [--tag bitfleet:0.1.0] [--mirror URL]
#
# 1. The base: `debootstrap --variant=minbase bookworm` into a temporary root, imported as
#    localhost/bitfleet-base:bookworm. Made once, reused while podman holds it (remove it with
#    `podman rmi localhost/bitfleet-base:bookworm` to refresh it).
# 2. deploy/container/Containerfile, two stages on that base: the build stage runs the same
#    deploy/install-deps.sh and bitfleet_build as a developer's machine (the CUDA toolkit is mounted
#    read-only from /usr/local/cuda: the torch wheel's CMake package refuses to configure without
#    one); the runtime stage holds the programs, the torch wheel's libraries, OpenMPI and nothing
#    else, and runs as the unprivileged user bitfleet.
# pip's downloads and ccache's objects persist in $BITFLEET_HOME/container-cache and are mounted
# into the build stage, so a rebuild after a source change compiles only what changed.
# Needs root (debootstrap, and podman's rootful storage); prints the image's name and size.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/deploy/lib/env.sh"

tag=bitfleet:$(bitfleet_version)
mirror=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    *) echo "usage: $0 [--tag NAME:VERSION] [--mirror URL]" >&2; exit 2 ;;
  esac
done
base=localhost/bitfleet-base:bookworm
log() { printf '[container] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root (debootstrap and podman's rootful storage); run it with sudo" >&2
  exit 1
fi
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing podman and debootstrap (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman debootstrap uidmap crun
fi
if [ ! -d /usr/local/cuda/include ]; then
  echo "$0: no CUDA toolkit at /usr/local/cuda: the torch wheel's CMake package needs one to configure" >&2
  exit 1
fi

if ! podman image exists "$base"; then
  log "making $base with debootstrap from $mirror (a few minutes, once)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 20 "$tmp/debootstrap.log" >&2; exit 1; }
  cat >"$tmp/root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
  tar -C "$tmp/root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$tmp"
  trap - EXIT
fi

cache=$BITFLEET_HOME/container-cache
mkdir -p "$cache/pip" "$cache/ccache"
# Where this host reaches PyPI through a TLS-inspecting proxy, pip in the build stage needs the
# host's CA bundle (PIP_CERT, else SSL_CERT_FILE): mounted for the build only, never in the image.
ca=()
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-}}
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
  ca=(-v "$host_ca:/run/bitfleet-build-ca.crt:ro" --build-arg PIP_CERT=/run/bitfleet-build-ca.crt)
fi
log "building $tag from $root (first build: Debian packages, the torch wheel, a full compile)"
podman build --isolation "${BITFLEET_BUILD_ISOLATION:-chroot}" --network host --layers -f "$root/deploy/container/Containerfile" -t "$tag" \
  --build-arg BASE="$base" "${ca[@]}" \
  -v /usr/local/cuda:/usr/local/cuda:ro \
  -v "$cache/pip:/root/.cache/pip" -v "$cache/ccache:/root/.cache/ccache" \
  "$root"
log "built $tag: $(podman image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')"
