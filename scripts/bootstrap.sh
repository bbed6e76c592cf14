#!/usr/bin/env bash
# Set up a development machine: the Debian packages of scripts/system-packages.txt (only the missing or
# differently-versioned ones) and .venv, made from Debian's own /usr/bin/python3 - the interpreter the
# container image runs - with the project installed from the lock file.  Idempotent; run by `make demo`,
# `make test` and `make image-test`.
#   SCOPES="runtime build dev"   which columns of system-packages.txt to install (image-test adds imagetest)
#   SKIP_APT=1                   non-Debian systems: install the programs of system-packages.txt yourself
#   PYTHON=/path/to/python3      another interpreter for .venv (default: /usr/bin/python3 on Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
SCOPES=${SCOPES:-runtime build dev}

if [ "${SKIP_APT:-0}" != 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  # shellcheck disable=SC2086
  for spec in $(scripts/system-packages.sh $SCOPES); do
    pkg=${spec%%=*}
    have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)
    case "$have" in
      "install ok installed "*) ;;
      *) missing+=("$spec"); continue;;
    esac
    if [ "$spec" != "$pkg" ] && [ "${have##* }" != "${spec#*=}" ]; then missing+=("$spec"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends --allow-downgrades \
      "${missing[@]}" >/dev/null
  fi
fi

if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ] && command -v dpkg-query >/dev/null 2>&1; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
want_home=$(dirname "$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')")
if [ -f .venv/pyvenv.cfg ] && ! grep -qx "home = $want_home" .venv/pyvenv.cfg; then
  echo "bootstrap: .venv was made from another interpreter; recreating it from $PYTHON"
  rm -rf .venv
fi
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements-dev.lock -e '.[dev]'
  touch "$stamp"
fi
# the AWS SAM CLI (sam validate in tests/test_deploy.py; the Lambda emulator for the image tests)
scripts/sam-venv.sh >/dev/null
