# The `warrant` binary (engine, `warrant run` on Kafka, and the tools) and
# `loadgen`.
#   docker build -t warrant .
# librdkafka is built from source by rdkafka-sys, with OpenSSL (TLS, SASL
# SCRAM): it needs a C toolchain, make, pkg-config and the OpenSSL headers
# at build time, and the OpenSSL library (libssl3) at run time.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warrant-cli --bin warrant -p warrant-loadgen --bin loadgen

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 warrant
COPY --from=build /src/target/release/warrant /usr/local/bin/warrant
COPY --from=build /src/target/release/loadgen /usr/local/bin/loadgen
USER warrant
ENTRYPOINT ["warrant"]
CMD ["--help"]
