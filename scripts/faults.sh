#!/usr/bin/env bash
# Fault-injection run (issue 8): at a steady load, with a sink failing a share of requests,
# in sequence: SIGKILL the dispatcher and restart it; SIGKILL the retrier and restart it; stop
# the broker (SIGTERM) and start it again; SIGKILL the broker and start it again (Kafka recovers
# its log); stop Postgres and start it again; take the sink down. Then stop
# the load, let the retry schedule drain and account for every accepted event: delivered to each
# of its endpoints or in the DLQ. Prints one Markdown table; exits 1 if anything is lost or
# duplicates exceed their bound.
#
# Runs in an environment of its own (ports, state under .dev/faults), beside the dev one; the
# broker keeps its log on disk, so its topics, records and committed offsets survive its
# restarts.
#
#   scripts/faults.sh            the full run: 200 events/s, 20 s outages, sink down 30 s (~6 min)
#   scripts/faults.sh --short    the version scripts/test.sh runs: 100 events/s, 5 s outages
#
# After every fault it checks that delivery resumes: a fresh probe event must reach the sink
# within a bound of the fault healing (the group's session timeout + 15 s; after the sink's
# outage, the circuit cooldown + 15 s); the table gives the time per phase.
#
# Settings: FAULTS_RATE (events/s), FAULTS_FAIL_RATE (sink's share of 500s, 0.2),
# FAULTS_ACCOUNTS (10), FAULTS_PROFILE (release or debug).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
short=false
[ "${1:-}" = --short ] && short=true

export HOOKSTREAM_DEV_DIR=${FAULTS_DEV_DIR:-$here/../.dev/faults}
export HOOKSTREAM_KAFKA_PORT=${FAULTS_KAFKA_PORT:-19192}
export HOOKSTREAM_KAFKA_CONTROLLER_PORT=${FAULTS_KAFKA_CONTROLLER_PORT:-19193}
export HOOKSTREAM_PG_PORT=${FAULTS_PG_PORT:-15532}
unset HOOKSTREAM_KAFKA__BROKERS HOOKSTREAM_DATABASE__URL HOOKSTREAM_TEST_BROKERS HOOKSTREAM_TEST_DATABASE_URL
source "$here/lib.sh"

if $short; then
  rate=${FAULTS_RATE:-100} outage=5 sink_outage=5 phase=10 schedule=1s,2s,4s,8s
  profile=${FAULTS_PROFILE:-debug}
else
  rate=${FAULTS_RATE:-200} outage=20 sink_outage=30 phase=40 schedule=1s,2s,4s,8s,16s,32s
  profile=${FAULTS_PROFILE:-release}
fi
fail_rate=${FAULTS_FAIL_RATE:-0.2}
accounts=${FAULTS_ACCOUNTS:-10}
export HOOKSTREAM_TOPICS__RETRY_SCHEDULE=$schedule
export HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS=true
export HOOKSTREAM_TELEMETRY__LOG_LEVEL=${FAULTS_LOG_LEVEL:-info}
# Short timeouts so an outage is seen, and recovered from, within the run.
export HOOKSTREAM_KAFKA__SESSION_TIMEOUT=6s
ingest_port=${FAULTS_INGEST_PORT:-18180}
sink_port=${FAULTS_SINK_PORT:-18190}
export HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$ingest_port

run_dir=$HOOKSTREAM_DEV_DIR/run
pids_dir=$run_dir/pids
bin=$CARGO_TARGET_DIR/$profile

cleanup() {
  local code=$?
  for f in "$pids_dir"/*.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  "$HS_ROOT/scripts/dev-down.sh" >/dev/null 2>&1 || true
  exit $code
}
trap cleanup EXIT INT TERM

# A clean slate: the run owns this environment.
"$HS_ROOT/scripts/dev-down.sh" --purge >/dev/null 2>&1 || true
log "building ($profile)"
flag=""
[ "$profile" = release ] && flag=--release
cargo build --quiet $flag --bins --manifest-path "$HS_ROOT/Cargo.toml"
"$HS_ROOT/scripts/dev-up.sh"
mkdir -p "$pids_dir"

service() { # name [env=value ...]: starts a service in the background, logging to run/<name>.log
  local name=$1
  shift
  env "$@" "$bin/hookstream-$name" >>"$run_dir/$name.log" 2>&1 &
  echo $! >"$pids_dir/$name.pid"
  # Killed on purpose: no "Killed" job notices from this shell.
  disown
}
kill9() { # name
  kill -9 "$(cat "$pids_dir/$1.pid")" 2>/dev/null || true
  wait "$(cat "$pids_dir/$1.pid")" 2>/dev/null || true
}
start_dispatcher() { service dispatcher HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$((sink_port + 1)); }
start_retrier() { service retrier HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$((sink_port + 2)); }
start_ingest() { service ingest HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$((sink_port + 3)); }
faults() { # JSON body for the sink's fault control
  curl -sSf -X POST -H 'content-type: application/json' -d "$1" \
    "http://127.0.0.1:$sink_port/_sink/faults" >/dev/null
}

log "seeding $accounts accounts with one endpoint each on the sink"
"$bin/hookstream-testbed" seed --accounts "$accounts" --keys-out "$run_dir/keys" \
  --endpoint-url "http://127.0.0.1:$sink_port/a/{n}" --name faults >"$run_dir/accounts"
"$bin/hookstream-testbed" sink --listen "127.0.0.1:$sink_port" --fail-rate "$fail_rate" \
  --record "$run_dir/sink.tsv" --json >"$run_dir/sink-report.json" 2>>"$run_dir/sink.log" &
echo $! >"$pids_dir/sink.pid"
disown
start_ingest
start_dispatcher
start_retrier
wait_for_port "$ingest_port" "ingest" 30
wait_for_port "$sink_port" "sink" 30

# After each fault has healed: how long until a fresh event reaches the sink. A probe event
# (its own id, so no retry of an older event can count) is sent every second until one
# arrives; past the bound the phase failed, whatever a later phase heals (a broker restart
# heals a stuck consumer group, and would hide it from a count taken at the very end).
# The bound: the group's session timeout + 15 s after a process or broker fault; after the
# sink's outage, the endpoints' circuits are open and probe again only after
# delivery.circuit_cooldown (30 s), so that + 15 s.
session_timeout=${HOOKSTREAM_KAFKA__SESSION_TIMEOUT%s}
resume_bound=$((session_timeout + 15))
circuit_cooldown=30
sink_resume_bound=$((circuit_cooldown + 15))
# Keys are in account order: the first key is the first account's.
probe_key=$(head -1 "$run_dir/keys")
probe_account=$(head -1 "$run_dir/accounts" | cut -f1)
resume() { # phase [bound]: writes run/resume.<phase> ("seconds bound", or "none bound")
  local name=$1 bound=${2:-$resume_bound} n=0 key id code started now
  started=$EPOCHREALTIME
  : >"$run_dir/ids.probe-$name"
  : >"$run_dir/sent.probe-$name"
  while true; do
    n=$((n + 1))
    key="probe-$name-$n"
    # The event id ingest gives an idempotency key: UUIDv5 of the key in the account's
    # namespace, known before the answer (a probe may arrive though its answer did not).
    id=$(python3 -c 'import sys, uuid; print(uuid.uuid5(uuid.UUID(sys.argv[1]), sys.argv[2]))' \
      "$probe_account" "$key")
    echo "$id" >>"$run_dir/sent.probe-$name"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 6 -X POST \
      "http://127.0.0.1:$ingest_port/v1/events" -H "authorization: Bearer $probe_key" \
      -H 'content-type: application/json' -H "idempotency-key: $key" \
      -d '{"event_type":"subscriber.created","data":{"subscriber":{"id":"probe","email":"probe@example.com"}}}' || true)
    [ "$code" = 202 ] && echo "$id" >>"$run_dir/ids.probe-$name"
    now=$EPOCHREALTIME
    if grep -qFf "$run_dir/sent.probe-$name" "$run_dir/sink.tsv" 2>/dev/null; then
      python3 -c "print(f'{$now - $started:.1f} $bound')" >"$run_dir/resume.$name"
      return
    fi
    if python3 -c "import sys; sys.exit(0 if $now - $started > $bound else 1)"; then
      echo "none $bound" >"$run_dir/resume.$name"
      return
    fi
    sleep 1
  done
}

# One loadgen per phase, so each phase's answers are counted apart; the fault runs beside it.
# Connections: enough for the rate while every request waits out the produce timeout (5 s).
phases=()
load() { # name seconds
  "$bin/hookstream-testbed" loadgen --url "http://127.0.0.1:$ingest_port" --keys-file "$run_dir/keys" \
    --rate "$rate" --duration "$2s" --connections $((rate * 6)) --payload-bytes 512 \
    --ids-out "$run_dir/ids.$1" --json >"$run_dir/load.$1.json"
  phases+=("$1")
}

log "phase steady: $rate events/s, the sink failing $fail_rate of requests"
load steady $((phase / 2))

# during NAME SECONDS FAULT...: one phase, the load running for SECONDS while FAULT (a command
# that heals what it breaks, then measures the resumption) runs beside it.
during() {
  local name=$1 seconds=$2 fault
  shift 2
  "$@" &
  fault=$!
  load "$name" "$seconds"
  wait "$fault"
}
kill_dispatcher() { kill9 dispatcher; sleep 1; start_dispatcher; resume dispatcher-kill; }
kill_retrier() { kill9 retrier; sleep 1; start_retrier; resume retrier-kill; }
stop_broker_for() { stop_broker; sleep "$outage"; start_broker; resume broker-down; }
kill_broker_for() { kill -9 "$(cat "$BROKER_PID")"; sleep "$outage"; start_broker; resume broker-kill; }
stop_postgres_for() { pg_stop; sleep "$outage"; start_postgres; resume postgres-down; }
sink_down_for() { sleep "$sink_outage"; resume sink-down "$sink_resume_bound"; }

log "phase dispatcher: SIGKILL, restart after 1 s"
during dispatcher-kill "$phase" kill_dispatcher

log "phase retrier: SIGKILL, restart after 1 s"
during retrier-kill "$phase" kill_retrier

log "phase broker: stopped for $outage s"
during broker-down $((phase + outage)) stop_broker_for

log "phase broker: SIGKILL, down for $outage s"
during broker-kill $((phase + outage)) kill_broker_for

log "phase postgres: stopped for $outage s"
during postgres-down $((phase + outage)) stop_postgres_for

log "phase sink: down for $sink_outage s"
faults "{\"fail_rate\": $fail_rate, \"outage_secs\": $sink_outage}"
during sink-down $((phase + sink_outage)) sink_down_for

log "phase tail: steady again"
load tail $((phase / 2))

log "load stopped; the sink stops failing; waiting for the retry schedule to drain"
faults '{"fail_rate": 0}'
cat "$run_dir"/ids.* >"$run_dir/ids"
# Bound on duplicates: each crash or broker restart may redeliver what was in flight or
# delivered but not yet committed: in-flight bound + rate x commit interval (1 s), for the
# dispatcher kill, the retrier kill and the two broker restarts.
bound=$((4 * (512 + rate)))
drain_total=0
for d in ${schedule//,/ }; do drain_total=$((drain_total + ${d%s})); done
deadline=$((SECONDS + drain_total + 90))
sleep "$((drain_total / 2))"
reconcile() {
  "$bin/hookstream-testbed" reconcile --ids "$run_dir/ids" --sink-record "$run_dir/sink.tsv" \
    --max-duplicates "$bound" --json >"$run_dir/reconcile.json" 2>"$run_dir/reconcile.err"
}
until reconcile; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    break
  fi
  sleep 5
done
ok=true
reconcile || ok=false
curl -sSf "http://127.0.0.1:$sink_port/_sink/report" >"$run_dir/sink-report.json"

table_ok=0
python3 - "$run_dir" "$bound" "$rate" "$outage" "$sink_outage" "$schedule" "${phases[@]}" <<'PY' || table_ok=1
import json, os, sys
run, bound, rate, outage, sink_outage, schedule, *phases = sys.argv[1:]
r = json.load(open(f"{run}/reconcile.json"))
s = json.load(open(f"{run}/sink-report.json"))
print(f"\n## Fault run: {rate} events/s, sink failing {s['injected_5xx']} requests on purpose, "
      f"outages {outage} s (sink {sink_outage} s), retry schedule {schedule}\n")
print("| phase | sent | ingest answers | delivery resumed after the fault healed (bound) |")
print("| --- | --- | --- | --- |")
stuck = []
for p in phases:
    l = json.load(open(f"{run}/load.{p}.json"))
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(l["statuses"].items()))
    resumed = "—"
    if os.path.exists(f"{run}/resume.{p}"):
        took, limit = open(f"{run}/resume.{p}").read().split()
        if took == "none":
            stuck.append(p)
            resumed = f"**not within {limit} s**"
        else:
            resumed = f"{took} s ({limit} s)"
    print(f"| {p} | {l['sent']} | {answers} | {resumed} |")
print()
print("| measure | value | must be |")
print("| --- | --- | --- |")
print(f"| accepted (202) | {r['accepted']} | |")
print(f"| deliveries owed | {r['owed']} | |")
print(f"| delivered | {r['delivered']} | |")
print(f"| in DLQ | {r['in_dlq']} | |")
print(f"| **lost** | **{r['lost']}** | 0 |")
print(f"| duplicates | {r['duplicates']} | <= {bound} (4 x (in-flight 512 + {rate}/s x 1 s commit interval)) |")
print(f"| delivered though ingest did not answer 202 | {r['unacknowledged_delivered']} | |")
print(f"| sink: bad signatures | {s['bad_signatures']} | 0 |")
print(f"| sink: latency p50 / p99 / max | {s['latency_ms']['p50']:.1f} / {s['latency_ms']['p99']:.1f} / {s['latency_ms']['max']:.1f} ms | |")
bad = {}
for p in ("broker-down", "broker-kill"):
    for k, v in json.load(open(f"{run}/load.{p}.json"))["statuses"].items():
        if k.startswith("5") and k != "503":
            bad[k] = bad.get(k, 0) + v
print(f"| ingest 5xx other than 503 during the broker outages | {sum(bad.values())} | 0 |")
print(f"| phases whose delivery did not resume within their bound | {len(stuck)} {' '.join(stuck)} | 0 |")
ok = r["lost"] == 0 and r["duplicates"] <= int(bound) and s["bad_signatures"] == 0 and not bad and not stuck
sys.exit(0 if ok else 1)
PY
$ok && [ "$table_ok" = 0 ] || { cat "$run_dir/reconcile.err" >&2; die "the fault run failed (logs in $run_dir)"; }
log "fault run passed"
