"""Summarise bench/load/run.sh results as Markdown: medians across rounds, ratios to
Gatehouse, added latency over the upstream, CPU per request, and the filter-chain time
measured inside the gateway (its own histogram)."""
import re
import statistics
import sys
from collections import defaultdict

results, metrics, secs, rounds, chain = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
threads = sys.argv[6] if len(sys.argv) > 6 else "1"
rows = defaultdict(list)
for line in open(results):
    name, label, rps, p50, p99, cpu, errors, delay = line.rstrip("\n").split("\t")
    rows[(name, label)].append((float(rps), float(p50), float(p99), float(cpu), int(errors)))

def med(key, i):
    v = [r[i] for r in rows.get(key, [])]
    return statistics.median(v) if v else float("nan")

g_rps = med(("gatehouse", "pool100"), 0)
if threads == "1":
    setup = "wrk -t1 -c32 pinned to CPU 1; each proxy one worker thread pinned to CPU 0"
else:
    setup = f"wrk -t1 -c32; each proxy {threads} worker threads; nothing pinned"
print(f"### Load run ({rounds} interleaved rounds x {secs}s per target; {setup})\n")
print("| target | tokens | req/s (median) | Gatehouse ÷ target | p50 µs | p99 µs | CPU µs/req | non-2xx |")
print("|---|---|---|---|---|---|---|---|")
for key in [("direct", "pool100"), ("nginx", "pool100"), ("haproxy", "pool100"), ("haproxy-jwt", "pool100"), ("gatehouse", "pool100"), ("gatehouse-split", "pool100"), ("gatehouse-wasm", "pool100"), ("gatehouse-redis", "pool100"), ("haproxy-jwt", "fresh"), ("gatehouse", "fresh")]:
    if key not in rows:
        continue
    rps = med(key, 0)
    ref = g_rps if key[1] == "pool100" else med(("gatehouse", "fresh"), 0)
    errors = sum(r[4] for r in rows[key])
    print(f"| {key[0]} | {key[1]} | {rps:,.0f} | {ref / rps:.2f}× | {med(key, 1):.0f} | {med(key, 2):.0f} | {med(key, 3):.1f} | {errors} |")

d50, d99 = med(("direct", "half-peak"), 1), med(("direct", "half-peak"), 2)
g50, g99 = med(("gatehouse", "half-peak"), 1), med(("gatehouse", "half-peak"), 2)
print(f"\nAt half of Gatehouse's peak ({med(('gatehouse', 'half-peak'), 0):,.0f} req/s, constant rate, open loop; medians of the runs): "
      f"p50 {g50:.0f} µs vs {d50:.0f} µs direct (+{g50 - d50:.0f} µs), p99 {g99:.0f} µs vs {d99:.0f} µs direct (+{g99 - d99:.0f} µs).")
for name in ("direct", "gatehouse"):
    runs = rows.get((name, "half-peak"), [])
    print(f"- {name}, each run (p50 / p99 µs): " + ", ".join(f"{r[1]:.0f} / {r[2]:.0f}" for r in runs))

text = open(metrics).read()
def metric(name, labels):
    m = re.search(r"^%s\{%s\} ([\d.e+-]+)$" % (re.escape(name), labels), text, re.M)
    return float(m.group(1)) if m else float("nan")
s = metric("gatehouse_filter_chain_seconds_sum", 'decision="allow"')
c = metric("gatehouse_filter_chain_seconds_count", 'decision="allow"')
print(f"\nFilter chain inside the native-engine gateway, mean over all {c:,.0f} allowed requests of the run "
      f"(both chains, pool and fresh tokens together): {s / c * 1e6:.1f} µs. Per step (mean):")
for f in ["gatehouse", "ip", "geo", "token", "rate"]:
    fs = metric("gatehouse_filter_call_seconds_sum", f'filter="{f}"')
    fc = metric("gatehouse_filter_call_seconds_count", f'filter="{f}"')
    print(f"- `{f}`: {fs / fc * 1e6:.1f} µs per call (mean)")

# Chain time per target and token set: deltas of the gateway's own histogram around each run.
acc = defaultdict(lambda: [0.0, 0.0])
for line in open(chain):
    parts = line.split()
    if len(parts) != 6:
        continue
    name, label, s0, n0, s1, n1 = parts[0], parts[1], *map(float, parts[2:])
    acc[(name, label)][0] += s1 - s0
    acc[(name, label)][1] += n1 - n0
print("\nFilter chain time measured inside the gateway, per run type (its histogram's sum/count over those runs):")
for (name, label), (s_, n_) in sorted(acc.items()):
    if n_ > 0:
        print(f"- {name}, {label}: {s_ / n_ * 1e6:.1f} µs mean over {n_:,.0f} allowed requests")
