#!/usr/bin/env bash
# A hosted class: a Ray head (training jobs), N dashboard replicas and HAProxy in front of them
# with cookie-sticky sessions and websockets. Ctrl-C (or SIGTERM) stops everything it started.
#
#   bash scripts/serve-class.sh [--replicas N] [--port PORT] [--bind ADDR]
#
# --replicas  dashboard processes (default 2; about one per core serves browsing best)
# --port      the balancer's port (default 8500); replicas listen on 127.0.0.1:PORT+1..PORT+N
# --bind      the balancer's address (default 127.0.0.1; 0.0.0.0 to serve a class on the network)
# RAY_ADDRESS set: jobs go to that existing cluster; unset: a Ray head is started on loopback
#   (127.0.0.2, or $CONVNETLAB_RAY_IP) with token authentication, and stopped after. A worker node
#   joins with RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<the token file printed> ray start --address=IP:PORT+100.
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

run=$(mktemp -d -t convnetlab-class-XXXXXX)
pids=()
started_ray=0
stop() {
  trap - EXIT INT TERM
  echo "== stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if (( started_ray )); then .venv/bin/ray stop --force >/dev/null 2>&1 || true; fi
  rm -rf "$run"
}
trap stop EXIT
trap 'exit 0' INT TERM

export CONVNETLAB_RUNNER=ray
if [[ -z "${RAY_ADDRESS:-}" ]]; then
  # Ray swaps 127.0.0.1 for the machine's network address; 127.0.0.2 is loopback too and kept.
  # For worker nodes on other machines set CONVNETLAB_RAY_IP to this machine's address.
  ray_ip=${CONVNETLAB_RAY_IP:-127.0.0.2}
  ray_port=$((port + 100 > 65535 ? 6380 : port + 100))
  # Ray's token authentication, with a token of this class's own (a node joins only with it).
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$run/ray-token"
  (umask 077 && .venv/bin/python -c "import secrets; print(secrets.token_hex(32))" >"$RAY_AUTH_TOKEN_PATH")
  echo "== starting a Ray head on $ray_ip:$ray_port (token in $RAY_AUTH_TOKEN_PATH)"
  .venv/bin/ray start --head --node-ip-address="$ray_ip" --port="$ray_port" --include-dashboard=false \
    --disable-usage-stats --object-store-memory=500000000 >"$run/ray.log" 2>&1 \
    || { cat "$run/ray.log" >&2; exit 1; }
  started_ray=1
  export RAY_ADDRESS="$ray_ip:$ray_port"
fi
# One secret for every replica, so a session id one issued is valid on all (core.links).
.venv/bin/python -c "from core.links import server_secret; server_secret()"

servers=""
for i in $(seq 1 "$replicas"); do
  p=$((port + i))
  .venv/bin/python -m streamlit run app.py --server.headless true --server.address 127.0.0.1 --server.port "$p" \
    --server.fileWatcherType none --server.enableXsrfProtection true --server.enableCORS true \
    --server.maxUploadSize 200 --browser.gatherUsageStats false >"$run/replica-$i.log" 2>&1 &
  pids+=($!)
  servers+="    server r$i 127.0.0.1:$p cookie r$i check"$'\n'
done

# Cookie stickiness (students behind one NAT share an address); websockets pass through in http
# mode, kept open by "timeout tunnel"; health from Streamlit's own endpoint.
cat >"$run/haproxy.cfg" <<EOF
global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 2h
    option forwardfor
frontend class
    bind $bind:$port
    default_backend dashboards
backend dashboards
    balance leastconn
    cookie CONVNETLAB_REPLICA insert indirect nocache httponly
    option httpchk GET /_stcore/health
$servers
EOF
haproxy -f "$run/haproxy.cfg" -db >"$run/haproxy.log" 2>&1 &
pids+=($!)

for i in $(seq 1 "$replicas"); do
  for _ in $(seq 1 120); do
    curl -fs "http://127.0.0.1:$((port + i))/_stcore/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
done
curl -fs "http://127.0.0.1:$port/_stcore/health" >/dev/null || { echo "the balancer did not come up; logs in $run" >&2; exit 1; }
echo "== ready: http://$bind:$port/  ($replicas replicas, jobs on Ray at $RAY_ADDRESS, logs in $run)"
wait "${pids[-1]}" || true    # the balancer; a replica that fails leaves its health check
echo "the balancer stopped; see the logs in $run" >&2
