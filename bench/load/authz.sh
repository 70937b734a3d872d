#!/usr/bin/env bash
# The authorization service benchmark: decisions per second and CPU per decision of ONE
# gatehouse process asked three ways, the same tokens (a pool of 100 ES256 bearer tokens),
# the same bundle and route, on loopback:
#   inline - the reverse proxy (GET /api/items, to an nginx upstream answering 200)
#   http   - the HTTP authorization endpoint as nginx auth_request asks it
#            (GET /auth with X-Original-URI / X-Original-Method)
#   grpc   - Envoy ext_authz v3 Check over gRPC (HTTP/2, 16 calls per connection)
# The load generator is bench/src/bin/authz_load.rs (closed loop, IN_FLIGHT requests
# outstanding). As in run.sh: the gateway has one worker thread and shares CPU 0 with the
# upstream; the load generator is pinned to CPU 1. Targets are interleaved over rounds;
# each run is bounded in seconds. CPU per decision is the gatehouse process's
# utime+stime over the run divided by the decisions. Writes bench/load/last-run-authz.md.
#
# Usage: bench/load/authz.sh [seconds-per-run] [rounds] [in-flight]   (NO_BUILD=1: skip the build)
# TELEMETRY=1: the gateway also traces every request ([telemetry.otlp], ratio 1, OTLP/HTTP to
# the nginx upstream, which answers 200) and the table goes to last-run-authz-telemetry.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. bench/load/common.sh
secs=${1:-5}
rounds=${2:-3}
inflight=${3:-32}
pin0="taskset -c 0"; pin1="taskset -c 1"

command -v nginx >/dev/null || {
  step "installing nginx (Debian package)"
  apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null
}
if [ "${NO_BUILD:-}" != 1 ]; then  # NO_BUILD=1: measure the binaries already built
  step "building gatehouse, the load generator and the filter components (release)"
  ./scripts/build-components >/dev/null
  cargo build --locked --release -p gatehouse-cli -p gatehouse-bench --bin gatehouse --bin authz_load
fi
gh="$CARGO_TARGET_DIR/release/gatehouse"
load="$CARGO_TARGET_DIR/release/authz_load"
export GATEHOUSE_FILTER_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release"

work="$GATEHOUSE_CACHE/load-authz"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

bench_bundle_and_tokens 0

U=18201; G=18202; GA=18203; AH=18204; AG=18205
step "starting the upstream and the gateway (one worker thread, CPU 0)"
upstream_conf $U
gateway_conf $G $GA $U '' "[authz]
http = \"127.0.0.1:$AH\"
grpc = \"127.0.0.1:$AG\""
if [ "${TELEMETRY:-}" = 1 ]; then
  printf '[telemetry.otlp]\nendpoint = "http://127.0.0.1:%s"\nprotocol = "http/protobuf"\nsample_ratio = 1.0\n' "$U" >>"$work/gateway.toml"
fi
$pin0 nginx -c "$work/upstream.conf" & pids+=($!)
(cd "$work" && GATEHOUSE_THREADS=1 GATEHOUSE_LOG=warn exec $pin0 "$gh" gateway --config gateway.toml 2>"$work/gateway.log") & pids+=($!)
gw_pid=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$GA/readyz" >/dev/null && break; sleep 0.2; done
# The subshell execs gatehouse, so $gw_pid is the gateway's own process.
grep -q gatehouse "/proc/$gw_pid/cmdline" || { echo "no gateway process"; tail -20 "$work/gateway.log"; exit 1; }

addr_of() { case $1 in inline) echo "127.0.0.1:$G";; http) echo "127.0.0.1:$AH";; grpc) echo "127.0.0.1:$AG";; esac; }
step "every target allows the pool's tokens (1 s each)"
for t in inline http grpc; do
  line=$($pin1 "$load" "$t" "$(addr_of "$t")" 1 4 "$work/pool.txt" bench.test "$gw_pid")
  echo "$line"
  case $line in *" errors=0 "*) ;; *) echo "target $t answered something else than allow"; tail -20 "$work/gateway.log"; exit 1;; esac
done

results="$work/results.txt"
: >"$results"
step "measuring: $rounds interleaved rounds, ${secs}s per target, $inflight in flight"
for r in $(seq 1 "$rounds"); do
  for t in inline http grpc; do
    line=$($pin1 "$load" "$t" "$(addr_of "$t")" "$secs" "$inflight" "$work/pool.txt" bench.test "$gw_pid")
    echo "round $r $line" | tee -a "$results"
  done
done

out=bench/load/last-run-authz.md
[ "${TELEMETRY:-}" = 1 ] && out=bench/load/last-run-authz-telemetry.md
python3 - "$results" "$secs" "$rounds" "$inflight" <<'PY' | tee "$out"
import statistics, sys
path, secs, rounds, inflight = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = {}
for line in open(path):
    f = dict(kv.split("=", 1) for kv in line.split()[2:])
    runs.setdefault(f["target"], []).append(f)
med = lambda t, k: statistics.median(float(r[k]) for r in runs[t])
label = {"inline": "inline gateway (reverse proxy, nginx upstream)",
         "http": "HTTP authz endpoint (nginx auth_request convention)",
         "grpc": "gRPC Envoy ext_authz v3 Check"}
print(f"Authorization benchmark: {rounds} interleaved rounds of {secs} s per target, {inflight} requests in flight, "
      "pool of 100 ES256 tokens; medians over rounds. CPU µs/decision: the gatehouse process's utime+stime ÷ decisions.\n")
print("| target | decisions/s | ÷ inline | p50 µs | p99 µs | CPU µs/decision | ÷ inline | errors |")
print("|---|---|---|---|---|---|---|---|")
base_rate, base_cpu = med("inline", "rate"), med("inline", "cpu_us")
for t in ["inline", "http", "grpc"]:
    rate, cpu = med(t, "rate"), med(t, "cpu_us")
    errors = sum(int(r["errors"]) for r in runs[t])
    print(f"| {label[t]} | {rate:,.0f} | {rate / base_rate:.2f}× | {med(t, 'p50_us'):,.0f} | {med(t, 'p99_us'):,.0f} "
          f"| {cpu:.1f} | {cpu / base_cpu:.2f}× | {errors} |")
print("\nEvery run: " + "; ".join(
    f"{t} " + ", ".join(f"{float(r['rate']):,.0f}/s {r['cpu_us']} µs" for r in runs[t]) for t in ["inline", "http", "grpc"]))
PY
