#!/usr/bin/env bash
# Install the AWS SAM CLI into its own venv, .venv-sam (aws-sam-cli pins boto3, pydantic, cfn-lint ...
# differently from requirements-dev.lock, so it cannot share .venv).  Made from Debian's /usr/bin/python3
# like .venv; installs requirements-sam.lock when the lock is newer than the stamp file.  Idempotent;
# prints the path of `sam` at the end.  Called by scripts/bootstrap.sh and CI; tests/test_deploy.py
# needs .venv-sam/bin/sam.
#   PYTHON=/path/to/python3   another interpreter (default: /usr/bin/python3 when present)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
venv=.venv-sam
lock=requirements-sam.lock
stamp=$venv/.installed

want_home=$(dirname "$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')")
if [ -f "$venv/pyvenv.cfg" ] && ! grep -qx "home = $want_home" "$venv/pyvenv.cfg"; then
  echo "sam-venv: $venv was made from another interpreter; recreating it from $PYTHON"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
  rm -f "$stamp"
fi
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$lock"
  touch "$stamp"
fi
"$venv/bin/sam" --version >/dev/null
echo "$venv/bin/sam"
