# syntax=docker/dockerfile:1
# Gatehouse: one image for every server (`gatehouse gateway`, `gatehouse authz`, `gatehouse
# origin`, `gatehouse upstream`) and the CLI.
#
#   docker build -t gatehouse .                  # or: podman build / buildah bud
#   docker run --rm gatehouse --version
#
# Stages:
#   builder       rust:bookworm + wasm32-wasip2: the release `gatehouse` binary and the
#                 built-in filter components (as scripts/demo builds them)
#   runtime-base  debian:bookworm-slim with only the libraries the binary links (the origin's
#                 SAML support: libxmlsec1 with its OpenSSL back end, libxml2, OpenSSL) and a
#                 non-root user (uid/gid 10001)
#   prebuilt      runtime-base + a binary and filters built outside the image: for CI and
#                 scripts/check-deploy --image, which must not compile Rust inside an image.
#                 Build context: a directory holding `gatehouse` and `filters/*.wasm`
#                 (`--target prebuilt`)
#   runtime       runtime-base + the builder's output (the default target)
#
# The binary lives in /usr/lib/gatehouse with the built-in filters in
# /usr/lib/gatehouse/filters beside it, where the gateway looks when neither
# `filters.builtin_dir` nor GATEHOUSE_FILTER_DIR says otherwise; /usr/local/bin/gatehouse
# links to it. Kubernetes probes the admin listener (/healthz, /readyz): no HEALTHCHECK here.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
# The runtime's base; scripts/check-deploy --image substitutes a debootstrapped bookworm
# where no registry is reachable.
ARG RUNTIME_BASE_IMAGE=docker.io/library/debian:${DEBIAN_RELEASE}-slim

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# What building the origin needs (scripts/env.sh ensure_build_packages): samael's XML-DSig
# (libxmlsec1, libxml2, OpenSSL) and bindgen's libclang. Unpinned on purpose: Debian stable's
# versions only move for security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libclang-dev libxml2-dev libxmlsec1-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/src/target CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p gatehouse-cli \
 && cargo build --locked --release --target wasm32-wasip2 --manifest-path components/Cargo.toml \
 && mkdir -p /out/filters \
 && cp target/release/gatehouse /out/gatehouse \
 && cp target/wasm32-wasip2/release/gatehouse_filter_*.wasm /out/filters/

FROM ${RUNTIME_BASE_IMAGE} AS runtime-base
# The shared libraries `ldd gatehouse` lists beyond libc and libgcc_s: libxmlsec1 and
# libxmlsec1-openssl, libxml2, libssl3 (libcrypto); CA certificates for OTLP, Sentry, SMTP
# and identity providers over TLS. Unpinned as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libxmlsec1 libxmlsec1-openssl libxml2 libssl3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/gatehouse \
      --no-create-home --shell /usr/sbin/nologin gatehouse \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/gatehouse /var/cache/gatehouse \
 && install -d -m 0755 /usr/lib/gatehouse/filters /etc/gatehouse
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Gatehouse: an edge-deployable auth gateway (gateway, authorization service, regional origin)" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /var/lib/gatehouse
# 8080 gateway, 9090 admin (/healthz /readyz /metrics), 9191 authz HTTP, 9192 authz gRPC,
# 7400 origin, 3000 the demo upstream app.
EXPOSE 8080 9090 9191 9192 7400 3000
USER 10001:10001
ENTRYPOINT ["gatehouse"]
CMD ["--help"]

FROM runtime-base AS prebuilt
COPY --chmod=0755 gatehouse /usr/lib/gatehouse/gatehouse
COPY --chmod=0644 filters/ /usr/lib/gatehouse/filters/
USER 0:0
RUN ln -s /usr/lib/gatehouse/gatehouse /usr/local/bin/gatehouse && gatehouse --version
USER 10001:10001

FROM runtime-base AS runtime
COPY --from=builder --chmod=0755 /out/gatehouse /usr/lib/gatehouse/gatehouse
COPY --from=builder --chmod=0644 /out/filters/ /usr/lib/gatehouse/filters/
USER 0:0
RUN ln -s /usr/lib/gatehouse/gatehouse /usr/local/bin/gatehouse && gatehouse --version
USER 10001:10001
