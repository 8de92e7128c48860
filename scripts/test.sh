#!/usr/bin/env bash
# One command: set everything up (venv, test tools, Debian's chromium) and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest -rs "$@"
