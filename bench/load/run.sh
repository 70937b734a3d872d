#!/usr/bin/env bash
# Load harness: the same requests (ES256 bearer tokens, IP allowlist, per-org rate limit
# that never triggers) sent with wrk, on loopback only, to
#   direct   - the upstream (nginx answering 200) with no proxy
#   nginx    - nginx as a plain reverse proxy
#   haproxy  - HAProxy as a plain reverse proxy
#   haproxy-jwt - HAProxy with jwt_verify (ES256, same key), a src ACL and a stick-table limit
#   gatehouse - the Gatehouse gateway, default chain `gatehouse` (every check in one step)
#               on the native engine (the default)
#   gatehouse-split - the same gateway through the chain ip, geo, token, rate (four steps)
#   gatehouse-wasm - a second gateway process, engine = "wasm": the `gatehouse` component
#   gatehouse-redis - a third, counting the org's limit in Redis (redis-server on CPU 0
#               beside the proxies; its CPU is added to the row's CPU per request)
# Every proxy runs one worker thread pinned to CPU 0; wrk (one thread) is pinned to CPU 1.
# Rounds are interleaved; each run is bounded in seconds. CPU per request comes from the
# proxy process's utime+stime over the run. Writes bench/load/last-run.md.
#
# Usage: bench/load/run.sh [seconds-per-run] [rounds]
# THREADS=N (default 1): worker threads for every proxy. With 1, proxies are pinned to CPU
# 0 and wrk to CPU 1; with more, nothing is pinned (on a 2-core machine wrk then competes
# with the proxies, so compare within the run only).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
secs=${1:-8}
rounds=${2:-2}
threads=${THREADS:-1}
if [ "$threads" = 1 ]; then pin0="taskset -c 0"; pin1="taskset -c 1"; else pin0=""; pin1=""; fi

. bench/load/common.sh
ensure_load_tools
build_load_binaries

work="$GATEHOUSE_CACHE/load"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

bench_bundle_and_tokens $(( 9000 * secs + 20000 * rounds ))

U=18101; N=18102; H=18103; HJ=18104; G=18105; GA=18106; GW=18107; GWA=18108; GR=18109; GRA=18110; R=18111
step "starting the upstream and the proxies ($threads worker thread(s) each${pin0:+, CPU 0})"
upstream_conf $U
cat >"$work/nginx.conf" <<CONF
worker_processes $threads; daemon off; pid $work/nginx.pid; error_log $work/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$U; keepalive 64; }
  server { listen 127.0.0.1:$N;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat >"$work/haproxy.cfg" <<CONF
global
  nbthread $threads
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
backend up
  server s1 127.0.0.1:$U
frontend plain
  bind 127.0.0.1:$H
  default_backend up
frontend jwt
  bind 127.0.0.1:$HJ
  stick-table type ipv6 size 100k expire 30s store http_req_rate(10s)
  acl allowed src 127.0.0.0/8
  http-request deny deny_status 403 unless allowed
  http-request track-sc0 src
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str ES256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/keys/es256.pub.pem") -m int 1 }
  default_backend up
CONF
gateway_conf $G $GA $U '[[routes]]
path_prefix = "/split"
upstream = "http://127.0.0.1:'"$U"'"
filters = ["ip", "geo", "token", "rate"]'
# The same gateway on the WebAssembly engine, and counting in Redis.
sed -e "s/127.0.0.1:$G\"/127.0.0.1:$GW\"/; s/127.0.0.1:$GA\"/127.0.0.1:$GWA\"/; s/^\[filters\]/[filters]\nengine = \"wasm\"/" \
  "$work/gateway.toml" >"$work/gateway-wasm.toml"
sed -e "s/127.0.0.1:$G\"/127.0.0.1:$GR\"/; s/127.0.0.1:$GA\"/127.0.0.1:$GRA\"/" "$work/gateway.toml" >"$work/gateway-redis.toml"
printf '[rate_store]\nkind = "redis"\nurl = "redis://127.0.0.1:%s/0"\n' "$R" >>"$work/gateway-redis.toml"
$pin0 nginx -c "$work/upstream.conf" & pids+=($!)
$pin0 nginx -c "$work/nginx.conf" & pids+=($!)
$pin0 haproxy -f "$work/haproxy.cfg" -q & pids+=($!)
GATEHOUSE_THREADS=$threads GATEHOUSE_LOG=warn $pin0 "$gh" gateway --config "$work/gateway.toml" 2>"$work/gateway.log" & pids+=($!)
gw_pid=$!
$pin0 redis-server --port $R --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 & pids+=($!)
redis_pid=$!
GATEHOUSE_THREADS=$threads GATEHOUSE_LOG=warn $pin0 "$gh" gateway --config "$work/gateway-wasm.toml" 2>"$work/gateway-wasm.log" & pids+=($!)
gw_wasm_pid=$!
GATEHOUSE_THREADS=$threads GATEHOUSE_LOG=warn $pin0 "$gh" gateway --config "$work/gateway-redis.toml" 2>"$work/gateway-redis.log" & pids+=($!)
gw_redis_pid=$!
for a in $GA $GWA $GRA; do wait_ready $a; done
tok=$(head -1 "$work/pool.txt")
for port in $U $N $H $HJ $G $GW $GR; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/api/items")
  [ "$code" = 200 ] || { echo "port $port answered $code"; cat "$work"/*.err "$work/gateway.log" 2>/dev/null | tail -20; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H 'Authorization: Bearer x.y.z' "http://127.0.0.1:$HJ/api/items")
[ "$code" = 401 ] || { echo "haproxy jwt_verify admitted a bad token ($code)"; exit 1; }

# CPU ticks (utime+stime, 1/100 s) of a process (all its threads) and its child processes
# (nginx workers).
ticks() {
  local t=0 p
  for p in $1 $(pgrep -P "${1%% *}" || true); do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  echo "$t"
}
pid_of() {
  case $1 in
    direct) cat "$work/upstream.pid" ;;
    nginx) cat "$work/nginx.pid" ;;
    haproxy|haproxy-jwt) pgrep -f "haproxy -f $work/haproxy.cfg" | tail -1 ;;
    gatehouse|gatehouse-split) echo "$gw_pid" ;;
    gatehouse-wasm) echo "$gw_wasm_pid" ;;
    gatehouse-redis) echo "$gw_redis_pid $redis_pid" ;;
  esac
}
port_of() { case $1 in direct) echo $U;; nginx) echo $N;; haproxy) echo $H;; haproxy-jwt) echo $HJ;; gatehouse|gatehouse-split) echo $G;; gatehouse-wasm) echo $GW;; gatehouse-redis) echo $GR;; esac; }
admin_of() { case $1 in gatehouse-wasm) echo $GWA;; gatehouse-redis) echo $GRA;; *) echo $GA;; esac; }
prefix_of() { case $1 in gatehouse-split) echo /split;; *) echo "";; esac; }

results="$work/results.tsv"
: >"$results"
chain_sum() { curl -s "http://127.0.0.1:${1:-$GA}/metrics" | awk '/^gatehouse_filter_chain_seconds_(sum|count)\{decision="allow"\}/ {printf "%s ", $2}'; }
measure() { # name tokens-file label [delay_ms conns offset]
  local name=$1 file=$2 label=$3 delay=${4:-0} conns=${5:-32} offset=${6:-0}
  local pid port t0 t1 out c0 c1
  pid=$(pid_of "$name"); port=$(port_of "$name")
  c0=$(chain_sum "$(admin_of "$name")")
  t0=$(ticks "$pid")
  out=$(OFFSET=$offset TOKENS="$file" DELAY_MS=$delay PATH_PREFIX="$(prefix_of "$name")" $pin1 wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/load/tokens.lua "http://127.0.0.1:$port/api/items" 2>&1)
  t1=$(ticks "$pid")
  c1=$(chain_sum "$(admin_of "$name")")
  case $name in gatehouse*) echo "$name $label $c0 $c1" >>"$work/chain.txt" ;; esac
  python3 - "$name" "$label" "$((t1 - t0))" "$delay" <<PY >>"$results"
import re, sys
out = """$out"""
name, label, ticks, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errors = int(non2xx.group(1)) if non2xx else 0
cpu_us = ticks * 10000 / max(total, 1)
print(f"{name}\t{label}\t{rps:.0f}\t{lat(50):.0f}\t{lat(99):.0f}\t{cpu_us:.1f}\t{errors}\t{delay}")
PY
  tail -1 "$results"
}

step "measuring: $rounds interleaved rounds, ${secs}s per run"
for r in $(seq 1 "$rounds"); do
  for name in direct nginx haproxy haproxy-jwt gatehouse gatehouse-split gatehouse-wasm gatehouse-redis; do measure "$name" "$work/pool.txt" "pool100"; done
  for name in haproxy-jwt gatehouse; do measure "$name" "$work/fresh.txt" "fresh" 0 32 $(( (r - 1) * 20000 )); done
done
curl -s "http://127.0.0.1:$GA/metrics" >"$work/metrics.txt"

# Half of Gatehouse's peak, at a constant rate: bench/src/bin/paced.rs spreads requests
# evenly in time (open loop, latency counted from when each request was due, as wrk2
# does), on 32 connections, pinned like wrk. A 2 s warm-up at the same rate precedes
# each measured run. Direct and Gatehouse alternate, five runs each; the report takes the
# median of each target's runs (a single stall of this shared machine moves one run's p99
# by milliseconds, whichever target is running) and lists every run.
peak=$(awk -F'\t' '$1=="gatehouse" && $2=="pool100" {if ($3>m) m=$3} END {print int(m)}' "$results")
half=$(( peak / 2 ))
paced="$CARGO_TARGET_DIR/release/paced"
for run in 1 2 3 4 5; do
  for name in direct gatehouse; do
    port=$(port_of "$name")
    $pin1 "$paced" "http://127.0.0.1:$port/api/items" "$half" 2 32 "$work/pool.txt" bench.test >/dev/null
    line=$($pin1 "$paced" "http://127.0.0.1:$port/api/items" "$half" "$secs" 32 "$work/pool.txt" bench.test)
    echo "$name half-peak $line"
    python3 - "$name" "$line" <<'PY' >>"$results"
import re, sys
name, line = sys.argv[1], sys.argv[2]
f = dict(kv.split("=") for kv in line.split())
print(f"{name}\thalf-peak\t{f['rate']}\t{f['p50_us']}\t{f['p99_us']}\tnan\t{f['errors']}\tpaced")
PY
  done
done

out=bench/load/last-run.md; [ "$threads" = 1 ] || out=bench/load/last-run-${threads}threads.md
python3 bench/load/report.py "$results" "$work/metrics.txt" "$secs" "$rounds" "$work/chain.txt" "$threads" | tee "$out"
