# One small image with every hookstream service binary: ingest, api, dispatcher, retrier and the
# operators' CLI (not the testbed).
# Build: docker build -t hookstream .
FROM rust:1-bookworm AS build
# librdkafka is built from the rdkafka crate's bundled sources (cmake-build feature).
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hookstream-cli -p hookstream-ingest -p hookstream-api -p hookstream-dispatcher -p hookstream-retrier \
    && mkdir /out \
    && cp target/release/hookstream target/release/hookstream-ingest target/release/hookstream-api \
          target/release/hookstream-dispatcher target/release/hookstream-retrier /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home hookstream
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 8080 8081 9090 9091 9092 9093
# The chart sets the command per deployment; alone, the image runs ingest.
ENTRYPOINT []
CMD ["/usr/local/bin/hookstream-ingest"]
