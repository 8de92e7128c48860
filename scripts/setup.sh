#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements (idempotent: skips pip when nothing changed).
# Usage: bash scripts/setup.sh [dev]   ("dev" adds the test tools and Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
req=requirements.txt
[[ "${1:-}" == dev ]] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-${1:-app}"
dev_stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-dev"
if [[ ! -f "$stamp" && ! -f "$dev_stamp" ]]; then   # the dev install includes the app's
  echo "== installing $req (torch is large: a few minutes on a fresh machine)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$req"
  touch "$stamp"
fi
if [[ "${1:-}" == dev && ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "!! /usr/bin/chromium is missing and cannot be installed here (need root and apt-get):"
    echo "!! the browser tests will be skipped (in CI they fail instead)."
  fi
fi
