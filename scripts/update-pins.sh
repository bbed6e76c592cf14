#!/usr/bin/env bash
# Move every pinned version in scripts/system-packages.txt that the apt sources no longer serve to the
# version they offer now (apt-cache policy's Candidate) - what to do when the image build stops at
# `system-packages.sh --check` or apt's "Version '...' was not found".  Run it where the image is built
# from, after `apt-get update`: on Debian 12, or
#   podman run --rm -v "$PWD:/src" -w /src debian:bookworm-slim bash -c 'apt-get update -qq && scripts/update-pins.sh'
# Pins still served are left alone.  Prints each change; review the diff, then rebuild and test.
# SYSTEM_PACKAGES_LIST=FILE updates another list (the tests use it).
set -euo pipefail
list="${SYSTEM_PACKAGES_LIST:-$(dirname "$0")/system-packages.txt}"
changed=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
while IFS= read -r line; do
  read -r pkg ver _ <<<"$line" || true
  case "$pkg" in ''|\#*) printf '%s\n' "$line" >>"$tmp"; continue;; esac
  if [ "$ver" != "-" ] && ! apt-cache madison "$pkg" 2>/dev/null \
      | awk -F'|' -v v="$ver" '{gsub(/ /, "", $2)} $2 == v {found=1} END {exit !found}'; then
    now=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$now" ] || [ "$now" = "(none)" ]; then
      echo "update-pins: $pkg: the apt sources offer no version (apt-get update? the right Debian release?)" >&2
      exit 1
    fi
    # the same columns: the version field padded to its old width where it fits
    line=$(awk -v old="$ver" -v new="$now" '{
      i = index($0, old); w = length(old); pad = w - length(new); s = new
      while (pad-- > 0) s = s " "
      print substr($0, 1, i - 1) s substr($0, i + w)
    }' <<<"$line")
    echo "update-pins: $pkg $ver -> $now"
    changed=$((changed + 1))
  fi
  printf '%s\n' "$line" >>"$tmp"
done < "$list"
cat "$tmp" >"$list"
echo "update-pins: $changed pin(s) changed in $list"
