# The `warrant` binary (engine, `warrant run` on Kafka, and the tools) and
# `loadgen`.
#   docker build -t warrant .
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain,
# make and the headers below at build time, nothing at run time.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warrant-cli --bin warrant -p warrant-loadgen --bin loadgen

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 warrant
COPY --from=build /src/target/release/warrant /usr/local/bin/warrant
COPY --from=build /src/target/release/loadgen /usr/local/bin/loadgen
USER warrant
ENTRYPOINT ["warrant"]
CMD ["--help"]
