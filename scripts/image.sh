#!/usr/bin/env bash
# Build the Lambda image with podman/buildah (no Docker engine needed), as `make image` / `make image-test`.
#   scripts/image.sh build      base image (pulled, or made locally with mmdebstrap and cached), then the Dockerfile
#   scripts/image.sh base       only the base image
#   scripts/image.sh rie        print the path of the Lambda Runtime Interface Emulator (from the aws-sam-cli wheel)
# Environment: IMAGE (default media-worker:dev), BASE_IMAGE (default debian:bookworm-slim),
#   MW_CACHE (default /var/cache/media-worker: the base tarball, kept between runs on one machine).
# Measured quirks of this kind of machine (../shared/reference/containers-and-sam-facts.md): runc, not
# crun; explicit ulimits; chroot isolation for builds; the host's CA bundle mounted for pip, build-time only.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-media-worker:dev}
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
MW_CACHE=${MW_CACHE:-/var/cache/media-worker}
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
CA=/etc/ssl/certs/ca-certificates.crt

base() {
  if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then return; fi
  local tar="$MW_CACHE/bookworm-slim.tar"
  if [ ! -s "$tar" ] && ! timeout 60 "${PODMAN[@]}" pull -q "docker.io/library/$BASE_IMAGE" >/dev/null 2>&1; then
    echo "image: no registry answers; making $BASE_IMAGE locally with mmdebstrap (cached in $tar)"
    mkdir -p "$MW_CACHE"
    # like the official slim image (debuerreotype): minbase, no recommends, no docs/man pages/locales, security
    # updates on; usr-is-merged instead of usrmerge and the full perl it needs (46 MB; perl-base stays)
    mmdebstrap --variant=minbase --format=tar \
      --aptopt='APT::Install-Recommends "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --customize-hook='chroot "$1" sh -c "apt-get install -y -q usr-is-merged >/dev/null && dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 && apt-get clean && rm -rf /var/lib/apt/lists/*"' \
      bookworm "$tar.part" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main"
    mv "$tar.part" "$tar"
  fi
  if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
    "${PODMAN[@]}" import -q "$tar" "docker.io/library/$BASE_IMAGE" >/dev/null
  fi
}

build() {
  base
  local t0=$SECONDS mounts=()
  [ -f "$CA" ] && mounts=(-v "$CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
  "${PODMAN[@]}" build --pull=never --format docker --isolation chroot "${ULIMITS[@]}" "${mounts[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" .
  local size
  size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
  echo "image: $IMAGE built in $((SECONDS - t0)) s, $((size / 1000000)) MB uncompressed"
}

rie() {
  local rie
  rie=$(ls .venv-sam/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64 2>/dev/null | head -1)
  if [ -z "$rie" ]; then
    echo "image: the Runtime Interface Emulator comes with aws-sam-cli: run scripts/sam-venv.sh" >&2
    exit 2
  fi
  chmod a+rx "$rie"
  realpath "$rie"
}

case "${1:-build}" in
  base) base ;;
  build) build ;;
  rie) rie ;;
  *) echo "usage: $0 [build|base|rie]" >&2; exit 2 ;;
esac
