#!/usr/bin/env bash
# The steady-state benchmark (issue 15): the whole pipeline at a fixed rate for a long run, once
# per broker storage, each in an environment of its own (a new broker and Postgres, started
# empty). What it shows is whether the run's last minute is as fast as its first: the
# end-to-end latency (the event's timestamp to its arrival at the sink) per minute of sending,
# the broker's and the services' RSS and the broker's data on disk over time.
# Writes bench/soak.md (tables) and bench/soak-<storage>.tsv (the samples).
#
#   scripts/bench-soak.sh                 memory and sqlite, 2,000 events/s for 10 minutes
#
# Settings: SOAK_STORAGES ("memory sqlite"), SOAK_RATE (2000), SOAK_SECONDS (600),
# SOAK_RETENTION (3m: the topics' retention.ms, short so that the run reaches the state where
# the broker deletes as much as it takes in), SOAK_MAINTENANCE (1m: how often tansu applies it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
storages=${SOAK_STORAGES:-memory sqlite}
rate=${SOAK_RATE:-2000}
seconds=${SOAK_SECONDS:-600}
retention=${SOAK_RETENTION:-3m}
export HOOKSTREAM_BROKER_MAINTENANCE=${SOAK_MAINTENANCE:-1m}
export HOOKSTREAM_KAFKA_PORT=${SOAK_KAFKA_PORT:-19392}
export HOOKSTREAM_PG_PORT=${SOAK_PG_PORT:-15732}
ingest_port=18380
sink_port=18390
unset HOOKSTREAM_KAFKA__BROKERS HOOKSTREAM_DATABASE__URL HOOKSTREAM_TEST_BROKERS HOOKSTREAM_TEST_DATABASE_URL
# dev-up.sh builds and runs the CLI of this profile: the one built above.
export HOOKSTREAM_PROFILE=release
source "$here/lib.sh"

# Retention must outlast the longest retry delay (the services refuse it otherwise).
export HOOKSTREAM_TOPICS__RETRY_SCHEDULE=1s,5s,25s,125s
export HOOKSTREAM_TOPICS__RETENTION=$retention
export HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn
export HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$ingest_port

log "building release binaries"
cargo build --quiet --release --bins --manifest-path "$HS_ROOT/Cargo.toml"
bin=$CARGO_TARGET_DIR/release
root=$HS_ROOT/.dev/soak
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
finish() {
  stop_all
  [ -n "${HOOKSTREAM_DEV_DIR:-}" ] && "$HS_ROOT/scripts/dev-down.sh" >/dev/null 2>&1 || true
}
trap finish EXIT

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo -; }
disk_mb() { du -sm "$HOOKSTREAM_DEV_DIR"/tansu.db* 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
delivered() { awk -F'\t' '$8 == "0" {n++} END {print n + 0}' "$1"; }

for storage in $storages; do
  export HOOKSTREAM_BROKER_STORAGE=$storage HOOKSTREAM_DEV_DIR=$root/$storage
  # Re-read the paths that follow from the environment directory.
  source "$here/lib.sh"
  "$HS_ROOT/scripts/dev-down.sh" --purge >/dev/null 2>&1 || true
  "$HS_ROOT/scripts/dev-up.sh"
  run=$HOOKSTREAM_DEV_DIR/run
  mkdir -p "$run"
  log "$storage storage: $rate events/s for ${seconds}s over 20 accounts (retention $retention)"
  "$bin/hookstream" seed --accounts 20 --endpoint-url "http://127.0.0.1:$sink_port/soak/{n}" \
    --keys-out "$run/keys" --name "soak-$storage" >/dev/null
  "$bin/hookstream" sink --listen "127.0.0.1:$sink_port" --record "$run/sink.tsv" --json \
    >"$run/sink.report" &
  pids+=($!)
  wait_for_port "$sink_port" sink 30
  # tansu answers a fetch only after fetch.wait.max.ms (see scripts/bench.sh).
  HOOKSTREAM_KAFKA__FETCH_WAIT=5ms HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18391 \
    "$bin/hookstream-dispatcher" 2>>"$run/dispatcher.log" &
  pids+=($!)
  dispatcher=$!
  HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18392 "$bin/hookstream-retrier" 2>>"$run/retrier.log" &
  pids+=($!)
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
    echo -e "second\tbroker_rss_mb\tbroker_disk_mb\tdispatcher_rss_mb\tingest_rss_mb\tdelivered"
    while true; do
      echo -e "$((($(date +%s%3N) - start_ms) / 1000))\t$(rss_mb "$broker")\t$(disk_mb)\t$(rss_mb "$dispatcher")\t$(rss_mb "$ingest")\t$(delivered "$run/sink.tsv")"
      sleep 10
    done
  ) >"$run/samples.tsv" &
  sampler=$!
  "$bin/hookstream" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$run/keys" \
    --rate "$rate" --duration "${seconds}s" --connections 64 --payload-bytes 1024 \
    --ids-out "$run/ids" --json >"$run/load.json"
  accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$run/load.json")
  for _ in $(seq 300); do
    [ "$(delivered "$run/sink.tsv")" -ge "$accepted" ] && break
    sleep 1
  done
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  "$bin/hookstream" reconcile --ids "$run/ids" --sink-record "$run/sink.tsv" --json \
    >"$run/reconcile.json" || true
  echo "$start_ms" >"$run/start_ms"
  cp "$run/samples.tsv" "$HS_ROOT/bench/soak-$storage.tsv"
  stop_all
  "$HS_ROOT/scripts/dev-down.sh" >/dev/null
done

{
  echo "# Steady-state benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; broker: tansu $HOOKSTREAM_TANSU_BUILD; $rate events/s of 1 KiB over 20 accounts for $seconds s, each storage on a broker and Postgres started empty; topics' retention $retention, tansu's maintenance every $HOOKSTREAM_BROKER_MAINTENANCE; loadgen, ingest, broker, dispatcher, retrier, sink and Postgres on this one machine, loopback. Release builds. Latency: the event's timestamp to its arrival at the sink, by the minute it was sent in. Written by scripts/bench-soak.sh."
  python3 - "$root" "$storages" <<'PY'
import json, sys
root, storages = sys.argv[1], sys.argv[2].split()

def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

for storage in storages:
    run = f"{root}/{storage}/run"
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
    print(f"## {storage} storage")
    print()
    print(f"accepted {load['accepted']:,}; lost {rec['lost']}; duplicates {rec.get('duplicates', '?')}")
    print()
    print("| minute | delivered | p50 ms | p99 ms | max ms | broker RSS MB | broker disk MB | dispatcher RSS MB | ingest RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in sorted(k for k in minutes if k >= 0):
        lat = sorted(minutes[m])
        # The last sample taken within this minute.
        within = [s for s in samples if int(s[0]) < (m + 1) * 60] or samples[:1]
        s = within[-1] if within else ["-"] * 6
        print(f"| {m + 1} | {len(lat):,} | {pct(lat, 0.5):.1f} | {pct(lat, 0.99):.1f} | {lat[-1]:.1f} | {s[1]} | {s[2]} | {s[3]} | {s[4]} |")
PY
} | tee "$HS_ROOT/bench/soak.md"
