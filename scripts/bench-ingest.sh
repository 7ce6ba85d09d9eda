#!/usr/bin/env bash
# Ingest benchmark, in one run on this machine (issue 3):
#   (a) a bare rdkafka producer on the same broker, payloads and in-flight count;
#   (b) ingest at max rate through HTTP (events/s, ratio to (a));
#   (c) ingest at a fixed 5,000 events/s (p50/p99 latency);
#   (d) ingest at max rate again, exporting every span over OTLP/HTTP to `hookstream-testbed
#       otlp-sink` (the cost of tracing: (d) / (b), both in this run);
#   ingest's peak RSS.
# Settings: BENCH_SECONDS (default 15), BENCH_CONNECTIONS (32), BENCH_PAYLOAD (1024),
# BENCH_ACCOUNTS (20), BENCH_RATE (5000), BENCH_PORT (18080).
source "$(dirname "$0")/lib.sh"

seconds=${BENCH_SECONDS:-15}
conns=${BENCH_CONNECTIONS:-32}
payload=${BENCH_PAYLOAD:-1024}
accounts=${BENCH_ACCOUNTS:-20}
rate=${BENCH_RATE:-5000}
port=${BENCH_PORT:-18080}

"$HS_ROOT/scripts/dev-up.sh" >/dev/null
build_release
work=$(mktemp -d)
trap 'kill "${ingest_pid:-}" "${otlp_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

log "creating $accounts accounts with high intake limits"
for i in $(seq "$accounts"); do
  id=$("$bin/hookstream" accounts create --name "bench-$i" --tier xlarge --ingest-rate 1000000 --ingest-burst 1000000)
  "$bin/hookstream" keys issue --account "$id" --name bench 2>/dev/null >>"$work/keys"
done

log "(a) bare producer, ${seconds}s, $conns in flight, $payload-byte messages"
bare=$("$bin/hookstream-testbed" bench-produce --duration "${seconds}s" --in-flight "$conns" --payload-bytes "$payload" --keys "$accounts")
echo "$bare"

HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$port HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$((port + 1)) HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn "$bin/hookstream-ingest" &
ingest_pid=$!
wait_for_port "$port" "ingest" 30

log "(b) ingest at max rate, ${seconds}s, $conns connections"
max=$("$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$port" --keys-file "$work/keys" --connections "$conns" --duration "${seconds}s" --payload-bytes "$payload" --json)
log "(c) ingest at $rate events/s, ${seconds}s"
fixed=$("$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$port" --keys-file "$work/keys" --connections "$conns" --rate "$rate" --duration "${seconds}s" --payload-bytes "$payload" --json)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$ingest_pid/status")
kill "$ingest_pid"
wait "$ingest_pid" 2>/dev/null || true

log "(d) ingest at max rate with every span exported over OTLP/HTTP, ${seconds}s"
otlp_port=$((port + 2))
"$bin/hookstream-testbed" otlp-sink --listen "127.0.0.1:$otlp_port" >"$work/otlp.json" &
otlp_pid=$!
wait_for_port "$otlp_port" "otlp-sink" 30
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp_port HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$port HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$((port + 1)) HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn "$bin/hookstream-ingest" &
ingest_pid=$!
wait_for_port "$port" "ingest" 30
traced=$("$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$port" --keys-file "$work/keys" --connections "$conns" --duration "${seconds}s" --payload-bytes "$payload" --json)
# Stopping ingest flushes the spans it still holds; then the sink reports what it got.
kill "$ingest_pid"
wait "$ingest_pid" 2>/dev/null || true
kill "$otlp_pid"
wait "$otlp_pid" 2>/dev/null || true
otlp=$(cat "$work/otlp.json")

bare_rate=$(sed -E 's/.* ([0-9.]+) msgs\/s.*/\1/' <<<"$bare")
mkdir -p "$HS_ROOT/bench"
{
echo "# Ingest benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m); broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node, heap $HOOKSTREAM_BROKER_HEAP); loadgen, ingest and broker on one machine, loopback."
python3 - "$bare_rate" "$rss_kb" "$rate" "$conns" "$payload" <<PY
import json, sys
bare, rss_kb, rate, conns, payload = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
mx = json.loads('''$max''')
fx = json.loads('''$fixed''')
tr = json.loads('''$traced''')
ot = json.loads('''$otlp''')
print()
print(f"| measure ({payload}-byte events, {conns} connections / in flight) | value | target |")
print("| --- | --- | --- |")
print(f"| bare rdkafka producer | {bare:,.0f} msgs/s | baseline |")
print(f"| ingest, max rate | {mx['accepted_per_sec']:,.0f} events/s (p50 {mx['p50_ms']:.2f} ms, p99 {mx['p99_ms']:.2f} ms) | |")
print(f"| ingest / bare producer | {mx['accepted_per_sec']/bare:.2f} | >= 0.8 |")
print(f"| ingest at {rate}/s: accepted | {fx['accepted']:,} of {fx['sent']:,} ({fx['accepted_per_sec']:,.0f}/s) | all |")
print(f"| ingest at {rate}/s: p50 / p99 / max | {fx['p50_ms']:.2f} / {fx['p99_ms']:.2f} / {fx['max_ms']:.2f} ms | p99 < 10 ms |")
print(f"| ingest peak RSS | {rss_kb/1024:.1f} MB | < 100 MB |")
print(f"| ingest, max rate, every span exported (OTLP/HTTP) | {tr['accepted_per_sec']:,.0f} events/s (p50 {tr['p50_ms']:.2f} ms, p99 {tr['p99_ms']:.2f} ms); the receiver got {ot['spans']:,} spans in {ot['traces']:,} traces | |")
print(f"| tracing cost: exported / not exported | {tr['accepted_per_sec']/mx['accepted_per_sec']:.2f} | |")
print(f"| statuses (max rate) | {mx['statuses']} | |")
PY
} | tee "$HS_ROOT/bench/ingest.md"
