#!/usr/bin/env bash
# One command: set everything up (venv, test tools, Debian's chromium) and run every test.
#   bash scripts/test.sh                 every test, two workers (pytest-xdist), the 25 slowest listed
#   bash scripts/test.sh --quick         the developer's loop: no browser, no Ray, nothing slow (about 60 s)
#   bash scripts/test.sh --record-slow   every test, then tests/slow_tests.txt from their times
# Any other arguments go to pytest. Workers: $TEST_WORKERS (default 2, the cores of the machine we test on).
# --dist loadfile: a module runs whole on one worker (its server, its Ray cluster, its fixtures set up once);
# --no-loadscope-reorder keeps conftest's order of the modules, the longest (recorded seconds) first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
mode=all
if [[ "${1:-}" == --quick ]]; then mode=quick; shift; fi
if [[ "${1:-}" == --record-slow ]]; then mode=record; shift; fi
xdist=(-n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
# Keep compiled modules between runs (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is
# set: each worker then reads pytest's rewritten test modules instead of rewriting them (2.5 s a worker).
unset PYTHONDONTWRITEBYTECODE
case $mode in
  quick)
    exec .venv/bin/python -m pytest -rs "${xdist[@]}" -m "not browser and not ray and not slow" "$@" ;;
  record)
    mkdir -p test-artifacts
    .venv/bin/python -m pytest -rs "${xdist[@]}" --junitxml=test-artifacts/times.xml "$@" || true
    exec .venv/bin/python scripts/slow_tests.py test-artifacts/times.xml ;;
  *)
    exec .venv/bin/python -m pytest -rs "${xdist[@]}" --durations=25 "$@" ;;
esac
