#!/usr/bin/env bash
# The steady-state benchmark: the whole pipeline at a fixed rate for a long run, on a broker and
# Postgres started empty in an environment of their own, two endpoints per account and a sink
# that fails a share of requests (so retries flow all along). What it shows is whether the
# run's last minutes are as fast and as small as its first: per minute of sending, the
# end-to-end latency (the event's timestamp to its arrival at the sink: p50, p99, max) and the
# deliveries; every 10 s, the broker's RSS and data on disk, each service's RSS, Postgres's
# size and the consumer groups' lag. Writes the table to --out, the samples beside it
# (<name>.tsv) and the curves as a PNG (<name>.png).
#
#   scripts/soak.sh                                 2,000 events/s for 10 minutes
#   scripts/soak.sh --minutes 60 --rate 300         seed 000's hour: 1.08 M events
#
# Options (or their variables): --rate (SOAK_RATE, 2000), --minutes (SOAK_SECONDS / 60, 10),
# --out (SOAK_OUT, bench/soak.md), --fail-rate (SOAK_FAIL_RATE, 0.05: the sink's share of 500s),
# --endpoints (SOAK_ENDPOINTS, 2 per account), --stall AT:FOR:MS (SOAK_STALL, none: AT seconds into
# sending, the sink answers every request MS ms late for FOR seconds, a receiver that slows down
# and recovers; bench/soak-stall.md); SOAK_RETENTION (3m: the topics' retention.ms,
# short so that the run reaches the state where the broker deletes as much as it takes in; its
# segments roll every minute so that it can).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rate=${SOAK_RATE:-2000}
seconds=${SOAK_SECONDS:-600}
retention=${SOAK_RETENTION:-3m}
out=${SOAK_OUT:-bench/soak.md}
fail_rate=${SOAK_FAIL_RATE:-0.05}
endpoints=${SOAK_ENDPOINTS:-2}
stall=${SOAK_STALL:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fail-rate) fail_rate=$2; shift 2 ;;
    --endpoints) endpoints=$2; shift 2 ;;
    --stall) stall=$2; shift 2 ;;
    *) echo "soak.sh: unknown option $1 (see the head of the script)" >&2; exit 2 ;;
  esac
done
if [ -n "$stall" ] && ! [[ $stall =~ ^[0-9]+:[0-9]+:[0-9]+$ ]]; then
  echo "soak.sh: --stall wants AT:FOR:MS (seconds, seconds, milliseconds), got '$stall'" >&2
  exit 2
fi
export HOOKSTREAM_KAFKA_PORT=${SOAK_KAFKA_PORT:-19392}
export HOOKSTREAM_KAFKA_CONTROLLER_PORT=${SOAK_KAFKA_CONTROLLER_PORT:-19393}
export HOOKSTREAM_PG_PORT=${SOAK_PG_PORT:-15732}
export HOOKSTREAM_DEV_DIR=${SOAK_DEV_DIR:-$here/../.dev/soak}
ingest_port=18380
sink_port=18390
unset HOOKSTREAM_KAFKA__BROKERS HOOKSTREAM_DATABASE__URL HOOKSTREAM_TEST_BROKERS HOOKSTREAM_TEST_DATABASE_URL
# dev-up.sh builds and runs the CLI of this profile: the one built below.
export HOOKSTREAM_PROFILE=release
source "$here/lib.sh"
cd "$HS_ROOT"
out=$(realpath -m "$out")

# Retention must outlast the longest retry delay (the services refuse it otherwise).
export HOOKSTREAM_TOPICS__RETRY_SCHEDULE=1s,5s,25s,125s
export HOOKSTREAM_TOPICS__RETENTION=$retention
export HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn
export HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$ingest_port

build_release
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
finish() {
  stop_all
  "$HS_ROOT/scripts/dev-down.sh" >/dev/null 2>&1 || true
}
trap finish EXIT

# CPU seconds (user + system) of processes so far; per-interval differences give % of a core.
cpu_s() { for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done | awk -v t="$(getconf CLK_TCK)" '{s += $14 + $15} END {printf "%.2f", s / t}'; }
pg_pids() { # this run's postmaster and its backends
  local m
  m=$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
  echo "$m $(pgrep -d' ' -P "$m" || true)"
}
pg_mb() { psql "$HOOKSTREAM_DATABASE__URL" -Atc "SELECT pg_database_size(current_database()) / 1048576" 2>/dev/null || echo -; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo -; }
disk_mb() { du -sm "$KAFKA_DIR/data" 2>/dev/null | awk '{print $1}'; }
delivered() { awk -F'\t' '$8 == "0" {n++} END {print n + 0}' "$1"; }
lag() { # messages behind, summed over every group of the pipeline's topics
  "$bin/hookstream" lag --json 2>/dev/null \
    | python3 -c 'import json, sys; print(sum(g["lag_messages"] for g in json.load(sys.stdin)))' 2>/dev/null \
    || echo -
}

"$HS_ROOT/scripts/dev-down.sh" --purge >/dev/null 2>&1 || true
# Segments roll every minute so retention (which drops closed segments) can act in the run.
export HOOKSTREAM_BROKER_PROPERTIES="log.roll.ms=60000 log.retention.check.interval.ms=30000"
"$HS_ROOT/scripts/dev-up.sh"
run=$HOOKSTREAM_DEV_DIR/run
mkdir -p "$run"
log "$rate events/s for ${seconds}s over 20 accounts, $endpoints endpoints each, the sink failing $fail_rate (retention $retention)"
"$bin/hookstream-testbed" seed --accounts 20 --endpoints "$endpoints" \
  --endpoint-url "http://127.0.0.1:$sink_port/soak/{n}/{e}" --keys-out "$run/keys" --name soak >/dev/null
"$bin/hookstream-testbed" sink --listen "127.0.0.1:$sink_port" --record "$run/sink.tsv" --json \
  --fail-rate "$fail_rate" >"$run/sink.report" &
pids+=($!)
wait_for_port "$sink_port" sink 30
HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18391 "$bin/hookstream-dispatcher" 2>>"$run/dispatcher.log" &
pids+=($!)
dispatcher=$!
HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18392 "$bin/hookstream-retrier" 2>>"$run/retrier.log" &
pids+=($!)
retrier=$!
HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18393 "$bin/hookstream-ingest" 2>>"$run/ingest.log" &
pids+=($!)
ingest=$!
wait_for_port "$ingest_port" ingest 30
for _ in $(seq 300); do
  curl -sf http://127.0.0.1:18391/metrics | grep -q webhook_queue_depth && break
  sleep 0.1
done
broker=$(cat "$BROKER_PID")
start_ms=$(date +%s%3N)
(
  echo -e "second\tbroker_rss_mb\tbroker_disk_mb\tingest_rss_mb\tdispatcher_rss_mb\tretrier_rss_mb\tlag\tdelivered\tbroker_cpu_s\tingest_cpu_s\tdispatcher_cpu_s\tretrier_cpu_s\tpostgres_cpu_s\tpostgres_mb"
  while true; do
    # shellcheck disable=SC2046 # one word per pid
    echo -e "$((($(date +%s%3N) - start_ms) / 1000))\t$(rss_mb "$broker")\t$(disk_mb)\t$(rss_mb "$ingest")\t$(rss_mb "$dispatcher")\t$(rss_mb "$retrier")\t$(lag)\t$(delivered "$run/sink.tsv")\t$(cpu_s "$broker")\t$(cpu_s "$ingest")\t$(cpu_s "$dispatcher")\t$(cpu_s "$retrier")\t$(cpu_s $(pg_pids))\t$(pg_mb)"
    sleep 10
  done
) >"$run/samples.tsv" &
sampler=$!
if [ -n "$stall" ]; then
  IFS=: read -r stall_at stall_for stall_ms <<<"$stall"
  (
    faults() { curl -sf -X POST -H 'content-type: application/json' -d "$1" "http://127.0.0.1:$sink_port/_sink/faults" >/dev/null; }
    sleep "$stall_at"
    faults "{\"latency_ms\":$stall_ms}"
    sleep "$stall_for"
    faults '{"latency_ms":0}'
  ) &
  pids+=($!)
fi
"$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$run/keys" \
  --rate "$rate" --duration "${seconds}s" --connections 64 --payload-bytes 1024 \
  --ids-out "$run/ids" --json >"$run/load.json"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$run/load.json")
# Each accepted event is owed to every endpoint of its account; retries take up to the last
# tier's delay to come through.
for _ in $(seq 300); do
  [ "$(delivered "$run/sink.tsv")" -ge "$((accepted * endpoints))" ] && break
  sleep 1
done
kill "$sampler"
wait "$sampler" 2>/dev/null || true
"$bin/hookstream-testbed" reconcile --ids "$run/ids" --sink-record "$run/sink.tsv" --json \
  >"$run/reconcile.json" || true
tsv=${out%.md}.tsv
cp "$run/samples.tsv" "$tsv"

echo "$start_ms" >"$run/start_ms"
{
  echo "# Steady-state benchmark: $rate events/s for $((seconds / 60)) minutes"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node, heap $HOOKSTREAM_BROKER_HEAP, log on disk); $rate events/s of 1 KiB over 20 accounts, $endpoints endpoints each (every event goes to each), the sink failing a share of $fail_rate of requests with a 500 (retried on the 1 s, 5 s, 25 s, 125 s tiers), for $seconds s, on a broker and Postgres started empty; topics' retention $retention;${stall:+ the sink answering ${stall##*:} ms late from second ${stall%%:*} of sending for $(cut -d: -f2 <<<"$stall") s;} loadgen, ingest, broker, dispatcher, retrier, sink and Postgres on this one machine, loopback. Release builds. Latency: the event's timestamp to its arrival at the sink, by the minute it was sent in (with the sink failing a share f of requests, about f of the deliveries wait for a retry tier: p90 shows first attempts, p99 the 1 s tier); the other columns are the minute's last sample (samples every 10 s in \`$(basename "$tsv")\`). The curves: \`$(basename "${out%.md}.png")\`. Written by scripts/soak.sh."
  python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
minutes_tsv = open(f"{run}/minutes.tsv", "w")
minutes_tsv.write("minute\tdeliveries_per_s\tp50_ms\tp90_ms\tp99_ms\tbroker_rss_mb\tingest_rss_mb\tdispatcher_rss_mb\tretrier_rss_mb\tpostgres_mb\tlag\n")

def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

start = int(open(f"{run}/start_ms").read())
minutes = {}
for line in open(f"{run}/sink.tsv"):
    f = line.rstrip("\n").split("\t")
    if len(f) != 8 or f[7] != "0":
        continue
    latency_ms = int(f[5]) / 1000.0
    sent = int(f[4]) - latency_ms
    minutes.setdefault(int((sent - start) // 60000), []).append(latency_ms)
samples = [l.rstrip("\n").split("\t") for l in open(f"{run}/samples.tsv")][1:]
load = json.load(open(f"{run}/load.json"))
rec = json.load(open(f"{run}/reconcile.json"))
print()
print(f"accepted {load['accepted']:,}; lost {rec['lost']}; duplicates {rec.get('duplicates', '?')}")
print()
print("| minute | delivered | p50 ms | p90 ms | p99 ms | max ms | broker RSS MB | broker disk MB | ingest RSS MB | dispatcher RSS MB | retrier RSS MB | Postgres MB | lag (messages) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for m in sorted(k for k in minutes if k >= 0):
    lat = sorted(minutes[m])
    within = [s for s in samples if int(s[0]) < (m + 1) * 60] or samples[:1]
    s = within[-1] if within else ["-"] * 14
    pg = s[13] if len(s) > 13 else "-"
    print(f"| {m + 1} | {len(lat):,} | {pct(lat, 0.5):.1f} | {pct(lat, 0.9):.1f} | {pct(lat, 0.99):.1f} | {lat[-1]:.1f} | {s[1]} | {s[2]} | {s[3]} | {s[4]} | {s[5]} | {pg} | {s[6]} |")
    # The last, partial minute (the tail of retries after sending stopped) is left off the plot.
    if len(lat) > 0.5 * max(len(v) for v in minutes.values()):
        minutes_tsv.write(f"{m + 1}\t{len(lat) / 60:.1f}\t{pct(lat, 0.5):.1f}\t{pct(lat, 0.9):.1f}\t{pct(lat, 0.99):.1f}\t{s[1]}\t{s[3]}\t{s[4]}\t{s[5]}\t{pg}\t{s[6]}\n")
minutes_tsv.close()
# Where the machine's CPU went over the run (% of one core; the machine has os.cpu_count()).
import os
if len(samples) >= 2 and len(samples[0]) >= 13:
    first, last = samples[0], samples[-1]
    span = int(last[0]) - int(first[0])
    names = ["broker", "ingest", "dispatcher", "retrier", "Postgres"]
    shares = [100 * (float(last[8 + i]) - float(first[8 + i])) / span for i in range(5)]
    print()
    print(f"CPU over the run, % of one core ({os.cpu_count()} cores in all): " + ", ".join(f"{n} {v:.0f}%" for n, v in zip(names, shares)) + ".")
PY
} | tee "$out"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [ ! -f "$font" ]; then
  log "no PNG of the curves: $font is missing (apt-get install fonts-dejavu-core); the table and samples are written"
  exit 0
fi
"$bin/hookstream-testbed" plot --tsv "$run/minutes.tsv" --out "${out%.md}.png" --x minute --font "$font" \
  --title "hookstream soak: $rate events/s, $endpoints endpoints per account, sink failing $fail_rate${stall:+, stalled $stall}" \
  --panel "end-to-end latency p50 and p90 (first attempts), ms, by minute sent:p50_ms,p90_ms" \
  --panel "end-to-end latency p99, ms (with the sink failing, a retry's 1 s delay):p99_ms" \
  --panel "deliveries/s:deliveries_per_s" \
  --panel "RSS, MB:ingest_rss_mb,dispatcher_rss_mb,retrier_rss_mb" \
  --panel "broker RSS and Postgres size, MB:broker_rss_mb,postgres_mb" \
  --panel "consumer lag, messages:lag"
