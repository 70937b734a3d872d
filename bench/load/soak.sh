#!/usr/bin/env bash
# Soak: the gateway (native engine, chain `gatehouse`, one worker thread on CPU 0) in
# front of nginx, at 80% of its measured peak for SOAK_SECS (default 600) at a constant
# rate (bench/src/bin/paced.rs, open loop, 32 connections, CPU 1), in one-minute
# segments. The gateway's resident memory and open file descriptors are sampled every
# 10 s. Passes when no request failed and the last minute's mean RSS is within 5% of the
# second minute's (the first is warm-up). Writes bench/load/last-soak.md.
#
# Usage: bench/load/soak.sh [soak-seconds] (SOAK_SECS also works; at least 180)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. bench/load/common.sh
soak=${1:-${SOAK_SECS:-600}}
[ "$soak" -ge 180 ] || { echo "a soak needs at least 180 s (three minutes: warm-up, second, last)"; exit 2; }
ensure_load_tools
build_load_binaries
work="$GATEHOUSE_CACHE/soak"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
bench_bundle_and_tokens 0

U=18201; G=18202; GA=18203
upstream_conf $U
gateway_conf $G $GA $U
taskset -c 0 nginx -c "$work/upstream.conf" & pids+=($!)
GATEHOUSE_THREADS=1 GATEHOUSE_LOG=warn taskset -c 0 "$gh" gateway --config "$work/gateway.toml" 2>"$work/gateway.log" & pids+=($!)
gw=$!
wait_ready $GA
url="http://127.0.0.1:$G/api/items"

step "peak: wrk 10 s, 32 connections, pool of 100 tokens"
out=$(TOKENS="$work/pool.txt" taskset -c 1 wrk -t1 -c32 -d10s -s bench/load/tokens.lua "$url" 2>&1)
peak=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
rate=$(( peak * 8 / 10 ))
echo "peak $peak req/s; soaking at $rate req/s for $soak s"

samples="$work/samples.tsv"
: >"$samples"
( t0=$(date +%s)
  while kill -0 "$gw" 2>/dev/null; do
    echo -e "$(( $(date +%s) - t0 ))\t$(rss_kib "$gw")\t$(open_fds "$gw")" >>"$samples"
    sleep 10
  done ) & sampler=$!
pids+=($sampler)

segments="$work/segments.txt"
: >"$segments"
left=$soak
while [ "$left" -gt 0 ]; do
  s=$(( left < 60 ? left : 60 ))
  line=$(taskset -c 1 "$CARGO_TARGET_DIR/release/paced" "$url" "$rate" "$s" 32 "$work/pool.txt" bench.test)
  echo "$line" | tee -a "$segments"
  left=$(( left - s ))
done
kill "$sampler" 2>/dev/null || true
kill -0 "$gw" || { echo "the gateway died during the soak"; tail -20 "$work/gateway.log"; exit 1; }

python3 - "$samples" "$segments" "$peak" "$rate" "$soak" <<'PY' | tee bench/load/last-soak.md
import sys
samples, segments, peak, rate, soak = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [tuple(int(x) for x in l.split("\t")) for l in open(samples) if l.strip()]
segs = [dict(kv.split("=") for kv in l.split()) for l in open(segments) if l.strip()]
def mean_rss(lo, hi):
    v = [r for t, r, _ in rows if lo <= t < hi]
    return sum(v) / len(v) if v else float("nan")
second = mean_rss(60, 120)
last = mean_rss(soak - 60, soak + 1)
drift = (last - second) / second * 100
errors = sum(int(s["errors"]) for s in segs)
requests = sum(int(s["requests"]) for s in segs)
fds = [f for _, _, f in rows]
ok = errors == 0 and abs(drift) <= 5
print(f"### Soak ({soak} s at {rate:,} req/s = 80% of the measured peak {peak:,} req/s; gateway one worker thread on CPU 0, paced on CPU 1)\n")
print(f"{requests:,} requests, {errors} failed. RSS: second minute {second/1024:.1f} MiB, last minute {last/1024:.1f} MiB ({drift:+.1f}%). "
      f"Open file descriptors: {min(fds)}–{max(fds)}. **{'pass' if ok else 'FAIL'}** (no failures, last minute within 5% of the second).\n")
print("| minute | requests | failed | rate | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|---|---|")
for i, s in enumerate(segs, 1):
    print(f"| {i} | {int(s['requests']):,} | {s['errors']} | {s['rate']} | {s['p50_us']} | {s['p99_us']} | {s['max_us']} |")
print("\n| t (s) | RSS MiB | open FDs |\n|---|---|---|")
for t, r, f in rows:
    print(f"| {t} | {r/1024:.1f} | {f} |")
sys.exit(0 if ok else 1)
PY
