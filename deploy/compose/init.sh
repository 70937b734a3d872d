#!/bin/sh
# One-shot set-up of the compose stack (the `init` service): keys and secrets into the
# `keys` volume, once (a rerun keeps them, so the origin's data stays readable), and the
# gateway's configuration with the edge's token filled in. Runs as root in the gatehouse
# image; leaves everything owned by the image's user (10001), private files 0600.
set -eu
umask 077
keys=/var/lib/gatehouse/keys
mkdir -p "$keys"
[ -f "$keys/bundle-signing.pem" ] || gatehouse keys generate --out-dir "$keys"

# A random bearer token (24 bytes, base64url).
token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
for name in edge operator peer; do
  [ -s "$keys/$name.token" ] || token > "$keys/$name.token"
done
# The origin's list of edges (`name token` lines) and the API-key hashing secret it shares
# with the edges (the one in edge-secrets.toml).
printf 'compose-gateway %s\n' "$(cat "$keys/edge.token")" > "$keys/edge.tokens"
sed -n 's/^api_key_secret = "\(.*\)"$/\1/p' "$keys/edge-secrets.toml" | tr -d '\n' > "$keys/apikey.secret"
[ -s "$keys/apikey.secret" ] || { echo "init: no api_key_secret in edge-secrets.toml" >&2; exit 1; }

# gateway.toml and authz.toml with the edge token filled in (the token is a secret: the
# rendered files stay in the volume).
for f in gateway authz; do
  sed "s|@EDGE_TOKEN@|$(cat "$keys/edge.token")|g" "/etc/gatehouse/$f.toml" > "$keys/$f.toml"
done

chown -R 10001:10001 "$keys"
# The servers' writable volumes (mounted here too): the origin's databases, the gateway's
# compiled filter cache.
for d in /var/lib/gatehouse/data /var/cache/gatehouse; do
  [ -d "$d" ] && chown 10001:10001 "$d"
done
chmod 0700 "$keys"
chmod 0644 "$keys/bundle-signing.pub.pem" "$keys/token-signing.jwks.json"
echo "init: keys and secrets ready in $keys (operator token: docker compose exec origin cat $keys/operator.token)"
