#!/usr/bin/env bash
# The end-to-end benchmark (issue 8), in one go on this machine, every process on loopback.
# Prints one Markdown table and writes it, with the machine description, to bench/latest.md:
#   - bare rdkafka producer vs ingest (scripts/bench-ingest.sh; target ratio >= 0.8);
#   - bare reqwest loop vs dispatcher (scripts/bench-dispatcher.sh; >= 0.8, >= 10,000/s);
#   - end-to-end latency (ingest -> broker -> dispatcher -> sink) at a fixed rate
#     (BENCH_E2E_RATE, 2,000 events/s) for BENCH_E2E_SECONDS (60); target p99 < 50 ms;
#   - fairness, three phases of BENCH_FAIR_SECONDS (300) each: 20 small accounts at
#     BENCH_SMALL_RATE (5) events/s each, alone; the same beside a hot account sending 10x its
#     delivery limit BENCH_HOT_LIMIT (100/s), at least two small accounts on its partition;
#     the same beside an account with 200 endpoints that each answer after 9 s, sending
#     BENCH_SLOW_RATE (2) events/s. The small accounts' p50 / p99 / max in each, the ratios to
#     alone (target <= 2x), the dispatcher's RSS at each phase's start and end, and the hot
#     account's delivered rate during its flood (target: its limit);
#   - peak RSS and CPU of ingest, dispatcher and retrier (and the broker's CPU) during the
#     end-to-end run.
# Settings: BENCH_E2E_RATE, BENCH_E2E_SECONDS, BENCH_FAIR_SECONDS, BENCH_SMALL_RATE,
# BENCH_HOT_LIMIT, BENCH_SLOW_RATE, BENCH_DISPATCHER_FETCH_WAIT (50ms).
#   scripts/bench.sh --reuse-baselines   keeps bench/ingest.md and bench/dispatcher.md from an
#                                        earlier run instead of running those two again
source "$(dirname "$0")/lib.sh"
reuse=false
[ "${1:-}" = --reuse-baselines ] && reuse=true

e2e_rate=${BENCH_E2E_RATE:-2000}
e2e_seconds=${BENCH_E2E_SECONDS:-60}
fair_seconds=${BENCH_FAIR_SECONDS:-300}
small_rate=${BENCH_SMALL_RATE:-5}
hot_limit=${BENCH_HOT_LIMIT:-100}
slow_rate=${BENCH_SLOW_RATE:-2}
ingest_port=18280
sink_port=18290

if $reuse && [ -f "$HS_ROOT/bench/ingest.md" ] && [ -f "$HS_ROOT/bench/dispatcher.md" ]; then
  log "reusing bench/ingest.md and bench/dispatcher.md"
else
  "$HS_ROOT/scripts/bench-ingest.sh"
  "$HS_ROOT/scripts/bench-dispatcher.sh"
fi

build_release
work=$(mktemp -d)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
# The run's files stay for a look when the table cannot be made; removed at the end otherwise.
trap stop_all EXIT

export HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn
export HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$ingest_port
# Kafka answers a fetch as soon as records arrive, so the default wait (50 ms) only bounds
# idle polling; it can still be set for the dispatcher.
dispatcher_fetch_wait=${BENCH_DISPATCHER_FETCH_WAIT:-50ms}

# Every phase has topics of its own: what one phase leaves undelivered is not in the next
# one's way.
use_topics() { # phase
  export HOOKSTREAM_TOPICS__PREFIX=hookstream.bench$$.$1.
  "$bin/hookstream" topics create >/dev/null
}
start_services() {
  HOOKSTREAM_KAFKA__FETCH_WAIT=$dispatcher_fetch_wait HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18291 \
    "$bin/hookstream-dispatcher" &
  pids+=($!)
  echo $! >"$work/dispatcher.pid"
  HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18292 "$bin/hookstream-retrier" &
  pids+=($!)
  echo $! >"$work/retrier.pid"
  HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:18293 "$bin/hookstream-ingest" &
  pids+=($!)
  echo $! >"$work/ingest.pid"
  wait_for_port "$ingest_port" ingest 30
  # The dispatcher owns its partitions once it reports its lanes.
  for _ in $(seq 300); do
    curl -sf http://127.0.0.1:18291/metrics | grep -q webhook_queue_depth && break
    sleep 0.1
  done
}
start_sink() { # record file
  "$bin/hookstream-testbed" sink --listen "127.0.0.1:$sink_port" --record "$1" --json >"$1.report" &
  pids+=($!)
  wait_for_port "$sink_port" sink 30
}
# First deliveries in a sink record, of every account but the one given.
delivered() { # record file, account to leave out
  awk -F'\t' -v x="${2:-}" '$8 == "0" && $3 != x {n++} END {print n + 0}' "$1"
}
# Waits (at most $3 seconds, or 15 s without progress) until the record holds $2 deliveries.
wait_delivered() { # record file, expected, timeout, account to leave out
  local last=-1 same=0 n
  for _ in $(seq "$3"); do
    n=$(delivered "$1" "${4:-}")
    [ "$n" -ge "$2" ] && return 0
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 15 ] && break
    last=$n
    sleep 1
  done
  log "$n of $2 delivered after the load stopped"
}
accepted() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$1"; }
# Seconds of CPU (user + system) a process has used.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
broker_pid=$(cat "$BROKER_PID")

log "end to end: $e2e_rate events/s for ${e2e_seconds}s over 20 accounts"
use_topics e2e
"$bin/hookstream-testbed" seed --accounts 20 --endpoint-url "http://127.0.0.1:$sink_port/e2e$$/{n}" \
  --keys-out "$work/e2e.keys" --name "bench-e2e" >/dev/null
start_sink "$work/e2e.tsv"
start_services
broker_cpu0=$(cpu_s "$broker_pid")
"$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$work/e2e.keys" \
  --rate "$e2e_rate" --duration "${e2e_seconds}s" --connections 64 --payload-bytes 1024 \
  --ids-out "$work/e2e.ids" --json >"$work/e2e.load.json"
{
  for s in ingest dispatcher retrier; do
    pid=$(cat "$work/$s.pid")
    echo "$s $(hwm_mb "$pid") $(cpu_s "$pid")"
  done
  echo "broker - $(awk -v a="$(cpu_s "$broker_pid")" -v b="$broker_cpu0" 'BEGIN {print a - b}')"
} >"$work/e2e.procs"
wait_delivered "$work/e2e.tsv" "$(accepted "$work/e2e.load.json")" 120
curl -sf "http://127.0.0.1:$sink_port/_sink/report" >"$work/e2e.sink.json"
# Every accepted event accounted for on every endpoint it is owed to; the table judges the
# result, so a loss must not stop the run here.
"$bin/hookstream-testbed" reconcile --ids "$work/e2e.ids" --sink-record "$work/e2e.tsv" --json \
  >"$work/e2e.reconcile.json" || true
stop_all

# Fairness. The accounts are chosen so that at least two small ones share the hot account's
# partition: librdkafka's default partitioner is CRC-32 of the key (the account id) modulo
# the partition count.
partitions=${HOOKSTREAM_TOPICS__PARTITIONS:-8}
"$bin/hookstream-testbed" seed --accounts 60 --endpoint-url "http://127.0.0.1:$sink_port/fair$$/{n}" \
  --first-delivery-rate "$hot_limit" --keys-out "$work/fair.keys" --name "bench-fair" \
  | cut -f1 >"$work/fair.accounts"
python3 - "$work" "$partitions" <<'PY'
import sys, zlib
work, partitions = sys.argv[1], int(sys.argv[2])
accounts = [l.strip() for l in open(f"{work}/fair.accounts")]
keys = [l.strip() for l in open(f"{work}/fair.keys")]
part = [zlib.crc32(a.encode()) % partitions for a in accounts]
hot = 0
near = [i for i in range(1, len(accounts)) if part[i] == part[hot]][:2]
if len(near) < 2:
    sys.exit("fewer than two accounts on the hot account's partition; seed more")
others = [i for i in range(1, len(accounts)) if i not in near][:18]
small = near + others
open(f"{work}/hot.keys", "w").write(keys[hot] + "\n")
open(f"{work}/hot.account", "w").write(accounts[hot] + "\n")
open(f"{work}/small.keys", "w").write("".join(keys[i] + "\n" for i in small))
shared = sum(1 for i in small if part[i] == part[hot])
open(f"{work}/shared", "w").write(f"{shared}\n")
PY
hot=$(cat "$work/hot.account")
"$bin/hookstream-testbed" seed --accounts 1 --endpoints 200 \
  --endpoint-url "http://127.0.0.1:$((sink_port + 4))/slow$$/{e}" --keys-out "$work/slow.keys" \
  --name "bench-slow" | awk -F'\t' 'NR == 1 {print $1}' >"$work/slow.account"
slow=$(cat "$work/slow.account")
small_load() { # phase
  "$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$work/small.keys" \
    --rate "$((small_rate * 20))" --duration "${fair_seconds}s" --connections 16 \
    --payload-bytes 1024 --json >"$work/$1.load.json"
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
fair_phase() { # phase, big account's keys file (none for alone), its rate
  log "fairness ($1): 20 small accounts at $small_rate events/s each for ${fair_seconds}s${2:+, beside $(basename "$2" .keys) at $3/s}"
  use_topics "$1"
  start_sink "$work/$1.tsv"
  start_services
  local pid
  pid=$(cat "$work/dispatcher.pid")
  echo "$(rss_mb "$pid")" >"$work/$1.rss"
  date +%s%3N >"$work/$1.window"
  local big=""
  if [ -n "${2:-}" ]; then
    "$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$2" \
      --rate "$3" --duration "${fair_seconds}s" --connections 32 --payload-bytes 1024 \
      --json >"$work/$1.big.load.json" &
    big=$!
  fi
  small_load "$1"
  [ -n "$big" ] && wait "$big"
  date +%s%3N >>"$work/$1.window"
  echo "$(rss_mb "$pid")" >>"$work/$1.rss"
  # The big account stays behind; the small accounts' events must all arrive.
  wait_delivered "$work/$1.tsv" "$(accepted "$work/$1.load.json")" 60 "${4:-}"
  stop_all
}
fair_phase alone
fair_phase hot "$work/hot.keys" "$((hot_limit * 10))" "$hot"
# The 200 slow endpoints answer from a sink of their own, after 9 s.
"$bin/hookstream-testbed" sink --listen "127.0.0.1:$((sink_port + 4))" --latency 9s >/dev/null &
slow_sink=$!
wait_for_port "$((sink_port + 4))" "slow sink" 30
fair_phase slow "$work/slow.keys" "$slow_rate" "$slow"
kill "$slow_sink" 2>/dev/null || true
wait "$slow_sink" 2>/dev/null || true

mkdir -p "$HS_ROOT/bench"
{
  echo "# End-to-end benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node, heap $HOOKSTREAM_BROKER_HEAP), dispatcher's fetch wait $dispatcher_fetch_wait; Postgres $("$(pg_bin postgres)" --version | awk '{print $3}'); loadgen, ingest, broker, dispatcher, retrier, sink and Postgres on this one machine, loopback. Release builds."
  python3 - "$HS_ROOT/bench" "$work" "$e2e_rate" "$e2e_seconds" "$fair_seconds" "$small_rate" \
    "$hot_limit" "$hot" "$slow" "$slow_rate" <<'PY'
import json, re, sys
bench, work, e2e_rate, e2e_seconds, fair_seconds, small_rate, hot_limit, hot, slow, slow_rate = sys.argv[1:]

def row(md, label):
    """The value cell of the row starting with `label` in one of our bench tables."""
    for line in open(f"{bench}/{md}"):
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and cells[0].startswith(label):
            return cells[1]
    return "?"

def num(text):
    m = re.search(r"[\d,]+(\.\d+)?", text)
    return float(m.group(0).replace(",", "")) if m else float("nan")

def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]

def records(tsv):
    """First deliveries: (account, arrival ms, latency ms)."""
    for line in open(tsv):
        f = line.rstrip("\n").split("\t")
        if len(f) == 8 and f[7] == "0":
            yield f[2], int(f[4]), int(f[5]) / 1000.0

def small(phase, big):
    """The small accounts' latencies in a phase, an event never delivered counting as slower
    than every one that was; and how many never were."""
    got = [lat for account, _, lat in records(f"{work}/{phase}.tsv") if account != big]
    accepted = json.load(open(f"{work}/{phase}.load.json"))["accepted"]
    missing = max(0, accepted - len(got))
    return got + [float("inf")] * missing, accepted, missing

bare_p = num(row("ingest.md", "bare rdkafka producer"))
ingest = num(row("ingest.md", "ingest, max rate"))
bare_h = num(row("dispatcher.md", "bare reqwest loop"))
disp = num(row("dispatcher.md", "dispatcher, "))
load = json.load(open(f"{work}/e2e.load.json"))
sink = json.load(open(f"{work}/e2e.sink.json"))
lat = sink["latency_ms"]
lost = json.load(open(f"{work}/e2e.reconcile.json"))["lost"]
procs = [l.split() for l in open(f"{work}/e2e.procs")]
secs = float(e2e_seconds)

def ok(good):
    return "met" if good else "**missed**"

print()
print("| measure | value | target | |")
print("| --- | --- | --- | --- |")
print(f"| bare rdkafka producer | {bare_p:,.0f} msgs/s | baseline | |")
print(f"| ingest, max rate | {ingest:,.0f} events/s | | |")
print(f"| ingest / bare producer | {ingest / bare_p:.2f} | >= 0.8 | {ok(ingest / bare_p >= 0.8)} |")
print(f"| bare reqwest loop | {bare_h:,.0f} requests/s | baseline | |")
print(f"| dispatcher (one worker) | {disp:,.0f} deliveries/s | >= 10,000/s | {ok(disp >= 10000)} |")
print(f"| dispatcher / bare loop | {disp / bare_h:.2f} | >= 0.8 | {ok(disp / bare_h >= 0.8)} |")
print(f"| end to end at {e2e_rate}/s for {e2e_seconds} s: accepted, delivered | {load['accepted']:,}, {sink['delivered']:,} (lost {lost}, duplicates {sink['duplicates']}, bad signatures {sink['bad_signatures']}) | all | {ok(lost == 0)} |")
print(f"| end to end p50 / p99 / max | {lat['p50']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms | p99 < 50 ms | {ok(lat['p99'] < 50)} |")
alone, alone_accepted, _ = small("alone", None)
a50, a99, amax = pct(alone, 0.5), pct(alone, 0.99), max(alone, default=float("nan"))
shared = open(f"{work}/shared").read().strip()
print(f"| small accounts alone ({small_rate}/s each, 20 accounts, {fair_seconds} s): p50 / p99 / max | {a50:.1f} / {a99:.1f} / {amax:.1f} ms ({alone_accepted:,} accepted) | baseline | |")
for phase, big, what in [
    ("hot", hot, f"a hot account sending {int(hot_limit) * 10}/s, limited to {hot_limit}/s ({shared} small accounts on its partition)"),
    ("slow", slow, f"an account with 200 endpoints answering after 9 s, sending {slow_rate}/s"),
]:
    lat, accepted, missing = small(phase, big)
    p50, p99, mx = pct(lat, 0.5), pct(lat, 0.99), max(lat, default=float("nan"))
    print(f"| small accounts beside {what}: p50 / p99 / max | {p50:.1f} / {p99:.1f} / {mx:.1f} ms ({accepted:,} accepted) | | |")
    if missing:
        print(f"| {phase}: p99 with / without | {missing} small accounts' events not delivered | <= 2x | **missed** |")
    else:
        print(f"| {phase}: p99 with / without | {p99 / a99:.2f}x (p50 {p50 / a50:.2f}x) | <= 2x | {ok(p99 / a99 <= 2)} |")
    rss = [float(x) for x in open(f"{work}/{phase}.rss")]
    print(f"| {phase}: dispatcher RSS at the phase's start / end | {rss[0]:.1f} / {rss[1]:.1f} MB | flat (within 10%) | {ok(rss[1] <= rss[0] * 1.1)} |")
    if phase == "hot":
        t0, t1 = [int(x) for x in open(f"{work}/hot.window")]
        sent = json.load(open(f"{work}/hot.big.load.json"))["accepted"]
        # Past the first minute (a third of a shorter phase): the account's burst and the
        # queue in memory are spent.
        start = t0 + min(60_000, (t1 - t0) // 3)
        n = sum(1 for account, at, _ in records(f"{work}/hot.tsv") if account == hot and start <= at < t1)
        rate = n / ((t1 - start) / 1000.0)
        print(f"| hot account: delivered rate during its flood (after its first minute) | {rate:.1f}/s of {sent:,} accepted | {hot_limit}/s | {ok(abs(rate - float(hot_limit)) <= 0.05 * float(hot_limit))} |")
for name, hwm, cpu in procs:
    label, value = f"{name}: CPU during the end-to-end load", f"{float(cpu) / secs * 100:.0f}% of a core"
    if hwm != "-":
        label, value = f"{name}: peak RSS, CPU during the end-to-end load", f"{float(hwm):.1f} MB, {value}"
    print(f"| {label} | {value} | | |")
PY
} | tee "$HS_ROOT/bench/latest.md"
rm -rf "$work"
