#!/usr/bin/env bash
# Dispatcher benchmark, in one run on this machine (issue 4): a bare reqwest loop at
# concurrency C against a fast local sink, then a dispatcher process draining N pre-produced
# events to the same sink with the same C. Writes bench/dispatcher.md.
# Settings: BENCH_EVENTS (default 100000), BENCH_CONCURRENCY (256).
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/dev-up.sh" >/dev/null
build_release
mkdir -p "$HS_ROOT/bench"
{
  echo "# Dispatcher benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node, heap $HOOKSTREAM_BROKER_HEAP); sink, dispatcher, broker and Postgres on one machine, loopback."
  echo
  "$bin/hookstream-testbed" bench-dispatch --dispatcher-bin "$bin/hookstream-dispatcher" \
    --events "${BENCH_EVENTS:-100000}" --concurrency "${BENCH_CONCURRENCY:-256}"
} | tee "$HS_ROOT/bench/dispatcher.md"
