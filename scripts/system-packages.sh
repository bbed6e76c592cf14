#!/usr/bin/env bash
# Print the apt install arguments (name=version, or name) of scripts/system-packages.txt for the
# given scopes, e.g. `scripts/system-packages.sh runtime build`.  Used by the Dockerfile and bootstrap.
#
#   scripts/system-packages.sh --check SCOPE...   after `apt-get update`: exit 1 with one message naming
#                                                 each pinned version the apt sources no longer serve
#                                                 (Debian replaced it) and the command that updates the pins
# SYSTEM_PACKAGES_LIST=FILE reads another list (the tests use it).
set -euo pipefail
list="${SYSTEM_PACKAGES_LIST:-$(dirname "$0")/system-packages.txt}"
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
want=" $* "
gone=()
while read -r pkg ver where _; do
  case "$pkg" in ''|\#*) continue;; esac
  case "$want" in *" $where "*) ;; *) continue;; esac
  if [ "$check" = 0 ]; then
    if [ "$ver" = "-" ]; then echo "$pkg"; else echo "$pkg=$ver"; fi
    continue
  fi
  [ "$ver" = "-" ] && continue
  # `apt-cache madison` lists every version the configured sources serve: "pkg | version | source"
  if ! apt-cache madison "$pkg" 2>/dev/null | awk -F'|' -v v="$ver" '{gsub(/ /, "", $2)} $2 == v {found=1} END {exit !found}'; then
    now=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    gone+=("$pkg=$ver (the apt sources now offer ${now:-nothing})")
  fi
done < "$list"
if [ ${#gone[@]} -gt 0 ]; then
  echo "system-packages: pinned version(s) no longer served by Debian: ${gone[*]}. Run scripts/update-pins.sh (after apt-get update, on Debian 12 or in debian:bookworm-slim), check the diff of scripts/system-packages.txt, and rebuild." >&2
  exit 1
fi
