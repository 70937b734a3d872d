# Shared by the load scripts (run.sh, soak.sh, swap.sh): the Debian peers, the release
# binaries, and a bench tenant's keys, policy, signed bundle and tokens. Source it after
# scripts/env.sh; it sets $gh (the gatehouse binary) and writes under $work.

# wrk, nginx, haproxy and redis-server from Debian, once.
ensure_load_tools() {
  command -v wrk >/dev/null && command -v nginx >/dev/null && command -v haproxy >/dev/null && command -v redis-server >/dev/null || {
    step "installing wrk, nginx, haproxy, redis-server (Debian packages)"
    apt-get update -qq && apt-get install -y -qq wrk nginx-light haproxy redis-server >/dev/null
  }
}

# The gatehouse binary, the filter components and the paced load generator (release).
build_load_binaries() {
  step "building gatehouse and the filter components (release)"
  ensure_wasm_targets
  ensure_build_packages
  ./scripts/build-components >/dev/null
  cargo build --locked --release -p gatehouse-cli
  cargo build --locked --release -p gatehouse-bench --bin paced
  gh="$CARGO_TARGET_DIR/release/gatehouse"
  export GATEHOUSE_FILTER_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release"
}

# Keys, the bench policy (IP allowlist, org rate limit that never triggers — none with
# NO_LIMIT=1 —, one route), its signed bundle, a pool of 100 tokens (pool.txt) and $1
# fresh ones (fresh.txt). Tokens are ES256 (HAProxy's jwt_verify takes them; its public
# key in keys/es256.pub.pem), or EdDSA with TOKEN_ALG=EdDSA.
bench_bundle_and_tokens() {
  step "keys, policy, bundle, tokens"
  "$gh" keys generate --out-dir "$work/keys" --token-alg "${TOKEN_ALG:-ES256}" >/dev/null
  if [ "${TOKEN_ALG:-ES256}" = ES256 ]; then
    openssl pkey -in "$work/keys/token-signing.pem" -pubout -out "$work/keys/es256.pub.pem"
  fi
  cat >"$work/policy.toml" <<TOML
[tiers.bench]
${NO_LIMIT:+#}limits.org = { requests = 1000000000, per_secs = 1 }

[[issuers]]
issuer = "https://login.bench.test"
audiences = ["gatehouse"]
jwks_file = "keys/token-signing.jwks.json"

[orgs.bench]
tier = "bench"
hosts = ["bench.test"]
ip = { allow = ["127.0.0.0/8"] }

[[routes]]
name = "api"
path = "/api"
TOML
  "$gh" policy compile --policy "$work/policy.toml" --signing-key "$work/keys/bundle-signing.pem" --out "$work/bundle.ghb" --ttl 2h >/dev/null
  mint 100 >"$work/pool.txt"
  if [ "${1:-0}" -gt 0 ]; then mint "$1" >"$work/fresh.txt"; fi
}
mint() { "$gh" token mint --alg "${TOKEN_ALG:-ES256}" --key "$work/keys/token-signing.pem" --kid k1 --iss https://login.bench.test --aud gatehouse --sub user --org bench --roles viewer --ttl 2h --count "$1"; }

# nginx answering 200 on 127.0.0.1:$1 (the upstream), pid file $work/upstream.pid.
upstream_conf() {
  cat >"$work/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1; location / { return 200 "ok\n"; } } }
CONF
}

# The bench gateway's configuration, $work/gateway.toml: listening on 127.0.0.1:$1 (admin
# port $2), the bundle file, every request to the upstream on port $3 through the
# `gatehouse` filter. $4 goes before that route (more routes), $5 after it (more tables).
gateway_conf() {
  cat >"$work/gateway.toml" <<CONF
[listen]
addr = "127.0.0.1:$1"
admin = "127.0.0.1:$2"
[bundle]
file = "bundle.ghb"
public_key = "keys/bundle-signing.pub.pem"
[filters]
cache_dir = "cwasm"
${4:-}
[[routes]]
upstream = "http://127.0.0.1:$3"
filters = ["gatehouse"]
${5:-}
CONF
}

# Wait for a gateway's admin port $1 to answer /readyz (60 s at most).
wait_ready() {
  local i
  for i in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done
  echo "the gateway on admin port $1 never became ready"; return 1
}

# Resident memory (KiB) and open file descriptors of process $1.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
open_fds() { ls "/proc/$1/fd" | wc -l; }
