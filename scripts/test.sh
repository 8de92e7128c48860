#!/usr/bin/env bash
# One command: set everything up (venv, test tools, Debian's chromium) and run every test.
#   bash scripts/test.sh                 every test, two workers (pytest-xdist)
#   bash scripts/test.sh --quick         the developer's loop: no browser, no Ray, nothing slow (under a minute)
#   bash scripts/test.sh --record-slow   every test, then tests/slow_tests.txt from their times
# Any other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
mode=all
if [[ "${1:-}" == --quick ]]; then mode=quick; shift; fi
if [[ "${1:-}" == --record-slow ]]; then mode=record; shift; fi
case $mode in
  quick)
    exec .venv/bin/python -m pytest -rs -n 2 -m "not browser and not ray and not slow" "$@" ;;
  record)
    .venv/bin/python -m pytest -rs -n 2 --junitxml=test-artifacts/times.xml "$@"
    exec .venv/bin/python scripts/slow_tests.py test-artifacts/times.xml ;;
  *)
    exec .venv/bin/python -m pytest -rs -n 2 --durations=25 "$@" ;;
esac
