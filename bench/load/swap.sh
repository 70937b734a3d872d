#!/usr/bin/env bash
# A gateway swapping a 10,000-tenant bundle under load (bench/src/bin/bundle_swap.rs):
# nginx as the upstream and the gateway on CPU 0, the origin (in the bench process) and
# the constant-rate load on CPU 1. Writes bench/load/last-swap.md.
#
# Usage: bench/load/swap.sh [tenants] [rate] [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
. bench/load/common.sh
ensure_load_tools
build_load_binaries
cargo build --locked --release -p gatehouse-bench --bin bundle_swap
work="$GATEHOUSE_CACHE/swap"
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
U=18301
upstream_conf $U
taskset -c 0 nginx -c "$work/upstream.conf" & pids+=($!)
{
  echo "### Bundle swap under load (\`bench/load/swap.sh $*\`; gateway one worker thread on CPU 0, origin and load on CPU 1)"
  echo
  taskset -c 1 "$CARGO_TARGET_DIR/release/bundle_swap" "$gh" "$CARGO_TARGET_DIR/release/paced" "http://127.0.0.1:$U" "${1:-10000}" "${2:-10000}" "${3:-20}" "${4:-3}"
} | tee bench/load/last-swap.md
