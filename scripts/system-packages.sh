#!/usr/bin/env bash
# Print the apt install arguments (name=version, or name) of scripts/system-packages.txt for the
# given scopes, e.g. `scripts/system-packages.sh runtime build`.  Used by the Dockerfile and bootstrap.
set -euo pipefail
list="$(dirname "$0")/system-packages.txt"
want=" $* "
while read -r pkg ver where _; do
  case "$pkg" in ''|\#*) continue;; esac
  case "$want" in *" $where "*) ;; *) continue;; esac
  if [ "$ver" = "-" ]; then echo "$pkg"; else echo "$pkg=$ver"; fi
done < "$list"
