#!/usr/bin/env bash
# The Worker under workerd and the Spin component under the project's WASI 0.3 host
# (tests/spin-host `spin-serve`: a fresh instance per request, as Spin's HTTP trigger
# makes) beside the native gateway and each platform's floor (a passthrough that only
# forwards to the same upstream: a JavaScript Worker in the same workerd, the Spin
# component built with `--passthrough`), on the same requests (cached-token
# path: a pool of 100 EdDSA tokens, IP allowlist, an org rate limit that never triggers),
# on loopback: upstream nginx and the runtime under test pinned to CPU 0, wrk (one thread,
# 32 connections) on CPU 1; interleaved rounds, bounded in seconds. CPU µs/request is the
# process's utime+stime over the run ÷ requests. Spin runs twice: as deployed by default
# (`spin`) and with the sealed cache in the key-value store (`spin-cached`, variable
# `cache_key`). Writes bench/load/last-run-edge.md.
#
# Usage: bench/load/edge.sh [seconds-per-run] [rounds]   (needs scripts/build-worker first)
# NO_LIMIT=1: no rate limit in the policy (the Worker then makes no Durable Object call).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. bench/load/common.sh
secs=${1:-8}
rounds=${2:-2}
command -v wrk >/dev/null && command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null; }
ensure_wasm_targets
ensure_build_packages
./scripts/build-components >/dev/null
cargo build --locked --release -p gatehouse-cli
[ -f components/worker/build/index_bg.wasm ] || ./scripts/build-worker
./scripts/build-spin >/dev/null
./scripts/build-spin --passthrough >/dev/null
cargo build --locked --release --manifest-path tests/spin-host/Cargo.toml --bin spin-serve
spin_serve="$CARGO_TARGET_DIR/release/spin-serve"
spin_wasm="$PWD/components/spin/dist/gatehouse_spin.wasm"
spin_floor_wasm="$PWD/components/spin/dist/gatehouse_spin_passthrough.wasm"
gh="$CARGO_TARGET_DIR/release/gatehouse"
workerd="$GATEHOUSE_CACHE/node/node_modules/.bin/workerd"
export GATEHOUSE_FILTER_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release"
work="$GATEHOUSE_CACHE/load-edge"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

TOKEN_ALG=EdDSA bench_bundle_and_tokens 0

U=18201; G=18202; GA=18203; W=18204; S=18205; WF=18206; SC=18207; SF=18208
upstream_conf $U
gateway_conf $G $GA $U
cp components/worker/build/index.js components/worker/build/index_bg.wasm "$work/"
# The Worker platform's floor: forward to the same upstream, decide nothing.
cat >"$work/passthrough.js" <<'JS'
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM + url.pathname + url.search, { method: request.method, headers: request.headers });
  },
};
JS
bundle=$(base64 -w0 "$work/bundle.ghb")
pinned=$(openssl pkey -pubin -in "$work/keys/bundle-signing.pub.pem" -outform DER | tail -c 32 | base64 -w0)
cat >"$work/config.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .gateway), (name = "floor", worker = .floor),
               (name = "net", network = (allow = ["public", "private", "local"])) ],
  sockets = [ (name = "http", address = "127.0.0.1:$W", http = (), service = "main"),
              (name = "floor", address = "127.0.0.1:$WF", http = (), service = "floor") ],
);
const floor :Workerd.Worker = (
  modules = [ (name = "passthrough.js", esModule = embed "passthrough.js") ],
  compatibilityDate = "2026-04-01",
  bindings = [ (name = "UPSTREAM", text = "http://127.0.0.1:$U") ],
  globalOutbound = "net",
);
const gateway :Workerd.Worker = (
  modules = [ (name = "index.js", esModule = embed "index.js"), (name = "index_bg.wasm", wasm = embed "index_bg.wasm") ],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "UPSTREAM", text = "http://127.0.0.1:$U"),
    (name = "ORIGIN_PUBLIC_KEY", text = "$pinned"),
    (name = "BUNDLE", text = "$bundle"),
    (name = "RATE_LIMITER", durableObjectNamespace = "RateLimiter"),
  ],
  durableObjectNamespaces = [ (className = "RateLimiter", uniqueKey = "gatehouse-rate-limiter", enableSql = true) ],
  durableObjectStorage = (inMemory = void),
  globalOutbound = "net",
);
CAPNP
python3 - "$bundle" "$pinned" "http://127.0.0.1:$U" "$(openssl rand -base64 32)" "$work" <<'PY'
import json, sys
v = {"bundle": sys.argv[1], "origin_public_key": sys.argv[2], "edge_secrets": "", "upstream": sys.argv[3]}
open(sys.argv[5] + "/spin-vars.json", "w").write(json.dumps(v))
open(sys.argv[5] + "/spin-cached-vars.json", "w").write(json.dumps(dict(v, cache_key=sys.argv[4])))
PY
taskset -c 0 nginx -c "$work/upstream.conf" & pids+=($!)
(cd "$work" && GATEHOUSE_THREADS=1 GATEHOUSE_LOG=warn exec taskset -c 0 "$gh" gateway --config gateway.toml 2>gateway.log) & pids+=($!); gw_pid=$!
(cd "$work" && exec taskset -c 0 "$workerd" serve config.capnp --experimental 2>workerd.log) & pids+=($!); wd_pid=$!
(cd "$work" && exec taskset -c 0 "$spin_serve" "$spin_wasm" "127.0.0.1:$S" spin-vars.json 1 2>spin.log) & pids+=($!); sp_pid=$!
(cd "$work" && exec taskset -c 0 "$spin_serve" "$spin_wasm" "127.0.0.1:$SC" spin-cached-vars.json 1 2>spin-cached.log) & pids+=($!); sc_pid=$!
(cd "$work" && exec taskset -c 0 "$spin_serve" "$spin_floor_wasm" "127.0.0.1:$SF" spin-vars.json 1 2>spin-floor.log) & pids+=($!); sf_pid=$!
up() { curl -s -o /dev/null "http://127.0.0.1:$1/"; }
for i in $(seq 1 300); do curl -sf "http://127.0.0.1:$GA/readyz" >/dev/null && up $W && up $WF && up $S && up $SC && up $SF && break; sleep 0.2; done
tok=$(head -1 "$work/pool.txt")
for t in "$G" "$W" "$WF" "$S" "$SC" "$SF"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H 'CF-Connecting-IP: 127.0.0.1' -H "Authorization: Bearer $tok" "http://127.0.0.1:$t/api/items")
  [ "$code" = 200 ] || { echo "port $t answered $code"; tail -5 "$work"/*.log; exit 1; }
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
results="$work/results.tsv"; : >"$results"
measure() { # name port pid
  local t0 t1 out
  t0=$(ticks "$3")
  out=$(TOKENS="$work/pool.txt" HOST=bench.test EXTRA_HEADER=CF-Connecting-IP EXTRA_VALUE=127.0.0.1 taskset -c 1 wrk -t1 -c32 -d"${secs}s" --latency -s bench/load/tokens.lua "http://127.0.0.1:$2/api/items")
  t1=$(ticks "$3")
  python3 - "$1" "$((t1 - t0))" <<PY | tee -a "$results"
import re, sys
out = """$out"""
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(f"{sys.argv[1]}\t{rps:.0f}\t{lat(50):.0f}\t{lat(99):.0f}\t{int(sys.argv[2]) * 10000 / n:.1f}\t{bad.group(1) if bad else 0}")
PY
}
for r in $(seq 1 "$rounds"); do
  measure native "$G" "$gw_pid"
  measure worker "$W" "$wd_pid"
  measure worker-floor "$WF" "$wd_pid"
  measure spin "$S" "$sp_pid"
  measure spin-cached "$SC" "$sc_pid"
  measure spin-floor "$SF" "$sf_pid"
done
python3 - "$results" "$secs" "$rounds" <<'PY' | tee "bench/load/last-run-edge${NO_LIMIT:+-nolimit}.md"
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    n, rps, p50, p99, cpu, bad = line.split("\t")
    rows.setdefault(n, []).append((float(rps), float(p50), float(p99), float(cpu), int(bad)))
med = lambda n, i: statistics.median(r[i] for r in rows[n])
print(f"### Edge runtimes, cached tokens ({sys.argv[3]} rounds x {sys.argv[2]}s; runtime + upstream on CPU 0, wrk -t1 -c32 on CPU 1)\n")
print("| runtime | req/s | native ÷ runtime | p50 µs | p99 µs | CPU µs/req | CPU ÷ platform floor | non-2xx |\n|---|---|---|---|---|---|---|---|")
floor = {"worker": "worker-floor", "spin": "spin-floor", "spin-cached": "spin-floor"}
for n in ["native", "worker", "worker-floor", "spin", "spin-cached", "spin-floor"]:
    ratio = f"{med(n,3)/med(floor[n],3):.2f}×" if n in floor else "—"
    print(f"| {n} | {med(n,0):,.0f} | {med('native',0)/med(n,0):.2f}× | {med(n,1):.0f} | {med(n,2):.0f} | {med(n,3):.1f} | {ratio} | {sum(r[4] for r in rows[n])} |")
PY
