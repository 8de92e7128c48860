#!/usr/bin/env bash
# A hosted class: a Ray head (training jobs), N dashboard replicas and HAProxy in front of them
# with cookie-sticky sessions and websockets, under scripts/class_supervisor.py (see there: readiness,
# restarts, stale state). Ctrl-C (or SIGTERM, or this script's death) stops everything it started.
#
#   bash scripts/serve-class.sh [--replicas N] [--port PORT] [--bind ADDR]
#
# --replicas  dashboard processes (default 2; about one per core serves browsing best)
# --port      the balancer's port (default 8500); replicas listen on 127.0.0.1:PORT+1..PORT+N
# --bind      the balancer's address (default 127.0.0.1; 0.0.0.0 to serve a class on the network)
# RAY_ADDRESS set: jobs go to that existing cluster; unset: a Ray head is started on 127.0.0.1 (every
#   Ray port on loopback), or on $CONVNETLAB_RAY_IP for worker nodes on other machines, with token
#   authentication, and stopped after. A worker node joins with RAY_AUTH_MODE=token
#   RAY_AUTH_TOKEN_PATH=<a copy of the token file printed> ray start --address=IP:PORT+100.
# State, token, Ray's temp dir and logs: $TMPDIR/convnetlab-class-PORT (removed on stop; the logs of a
#   failed start are kept in $TMPDIR/convnetlab-class-PORT-failed).
# CONVNETLAB_RESULTS: the results directory every replica and Ray worker shares (a shared disk
#   when workers run on other machines); default ~/.cache/convnetlab.
set -euo pipefail
cd "$(dirname "$0")/.."
replicas=2 port=8500 bind=127.0.0.1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --replicas) replicas=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    *) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
[[ "$replicas" =~ ^[1-9][0-9]?$ ]] || { echo "--replicas must be 1 to 99" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] && (( port > 1023 && port + replicas < 65536 )) || { echo "--port must be 1024 to 65535" >&2; exit 2; }

bash scripts/setup.sh
if ! command -v haproxy >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian's haproxy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
  else
    echo "haproxy is missing: install it (Debian: apt-get install haproxy) and run this again" >&2; exit 1
  fi
fi

# One secret for every replica, so a session id one issued is valid on all (core.links).
.venv/bin/python -c "from core.links import server_secret; server_secret()"

# The class runs under a supervisor in a session of its own (scripts/class_supervisor.py): it owns
# every process, says "== ready" once the balancer sees every replica UP, restarts a replica that
# exits, and stops everything when this script ends, however it ends (kill -9 included).
.venv/bin/python scripts/class_supervisor.py --port "$port" --replicas "$replicas" --bind "$bind" --watch $$ &
sup=$!
trap 'kill -TERM "$sup" 2>/dev/null || true' INT TERM HUP
rc=0
wait "$sup" || rc=$?
while kill -0 "$sup" 2>/dev/null; do   # a trapped signal ends `wait` early: wait for the stop itself
  rc=0
  wait "$sup" || rc=$?
done
exit "$rc"
