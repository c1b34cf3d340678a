#!/usr/bin/env bash
# Makes sure the image the Dockerfile starts FROM exists locally. Where a
# registry is reachable `docker build` pulls it; where none is (this project's
# CI machines), it is built here from Debian packages: debootstrap
# --variant=minbase into a folder, then `docker import` under the same name,
# so the same Dockerfile works in both places.
#
#   bash deploy/docker/offline-base.sh [IMAGE]     # default debian:bookworm-slim
set -euo pipefail
IMAGE=${1:-debian:bookworm-slim}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "offline-base: $IMAGE is already present"
  exit 0
fi
if docker pull "$IMAGE" >/dev/null 2>&1; then
  echo "offline-base: pulled $IMAGE"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "offline-base: $IMAGE is missing, no registry answers, and debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
fi
ROOT=$(mktemp -d /tmp/runnel-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "offline-base: building $IMAGE with debootstrap ($SUITE from $MIRROR)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >/tmp/runnel-debootstrap.log 2>&1 || {
  echo "offline-base: debootstrap failed; see /tmp/runnel-debootstrap.log" >&2
  exit 1
}
# As the official slim image: no package lists or caches.
$SUDO rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
$SUDO tar -C "$ROOT" -c . | docker import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "offline-base: imported $IMAGE"
