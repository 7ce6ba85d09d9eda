#!/usr/bin/env bash
# Retrier benchmark, in one run on this machine (issue 5): tasks come due on the first retry
# tier at a constant rate and a retrier process delivers them to a local sink that measures
# lateness (arrival minus hs-due-at); then the DLQ redrive rate. Writes bench/retrier.md.
# Settings: BENCH_RATE (default 1000 tasks/s), BENCH_DURATION (30s), BENCH_REDRIVE (20000).
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/dev-up.sh" >/dev/null
build_release
mkdir -p "$HS_ROOT/bench"
{
  echo "# Retrier benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node, heap $HOOKSTREAM_BROKER_HEAP); sink, retrier, broker and Postgres on one machine, loopback. Default schedule 1s,5s,25s,125s,625s; tasks go to the 1s tier."
  echo
  "$bin/hookstream-testbed" bench-retry --retrier-bin "$bin/hookstream-retrier" \
    --rate "${BENCH_RATE:-1000}" --duration "${BENCH_DURATION:-30s}" --redrive "${BENCH_REDRIVE:-20000}"
} | tee "$HS_ROOT/bench/retrier.md"
