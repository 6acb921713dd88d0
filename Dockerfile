# syntax=docker/dockerfile:1.7
#
# One image recipe for every Polytape binary. Pick the binary with the BIN build argument:
#
#   docker build --build-arg BIN=polytape-collector -t polytape-collector:0.1.0 .
#
# BIN is one of polytape-collector, polytape-ws-bridge, polytape-candle-builder,
# polytape-signals, polytape-sink-clickhouse, polytape-api, polymarket-sim (the simulator, compose `demo` profile).
# compose.yaml builds each service this way; the builder stages are shared, so BuildKit compiles
# the workspace once for all of them.
#
# The build mirrors CI (.ci/run): the same toolchain as `rust-version` in Cargo.toml, Debian 12
# (bookworm) like the CI machines, CARGO_INCREMENTAL=0, `--locked`, and rdkafka's vendored
# librdkafka (default features: a C compiler and make, nothing else). The `ci` target runs CI's
# formatting and lint commands (`docker build --target ci .`); `cargo xtask test` needs the local
# engines and stays outside the image. `cargo xtask lint-deploy` checks that this file keeps
# mirroring CI (toolchain version, flags) and lints it with hadolint.

ARG RUST_VERSION=1.95.0

# --- toolchain + cargo-chef (dependency-only layer caching) ---------------------------------
FROM rust:${RUST_VERSION}-bookworm AS chef
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# --- the dependency recipe (changes only when manifests or Cargo.lock change) ---------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- dependencies, then the workspace's binaries --------------------------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
        -p polytape-collector -p polytape-ws-bridge -p polytape-candle-builder \
        -p polytape-signals -p polytape-sink-clickhouse -p polytape-api -p polymarket-sim \
    && mkdir -p /out \
    && cp target/release/polytape-collector target/release/polytape-ws-bridge \
          target/release/polytape-candle-builder target/release/polytape-signals \
          target/release/polytape-sink-clickhouse \
          target/release/polytape-api target/release/polymarket-sim /out/

# --- CI's static checks, for `docker build --target ci .` ----------------------------------
FROM chef AS ci
COPY . .
RUN rustup component add rustfmt clippy \
    && cargo fmt --all -- --check \
    && cargo clippy --workspace --all-targets -- -D warnings

# --- a static busybox, only for `wget` in container healthchecks ----------------------------
FROM busybox:1.37.0-musl AS busybox

# --- the runtime image: glibc + CA roots + one binary, non-root -----------------------------
FROM debian:12.11-slim AS runtime
ARG BIN=polytape-api
LABEL org.opencontainers.image.source="https://github.com/polytape/polytape" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="Polytape: exact, gap-aware Polymarket market data"
# TLS roots for the upstream APIs (rustls verifies against the system store).
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
COPY --from=builder /out/${BIN} /usr/local/bin/polytape-service
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it; no home, no shell login.
USER 10001:10001
WORKDIR /tmp
ENV POLYTAPE_LOG_FORMAT=json \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/polytape-service"]
