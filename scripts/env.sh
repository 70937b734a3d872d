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
