#!/usr/bin/env bash
# The README's Quickstart as a script, checked: starts `scripts/run.sh --local` and
# `scripts/testbed sink --print`, creates an account, a key and an endpoint pointing at the
# sink, posts one event, and waits until the sink prints it with its signature verified. Then
# stops everything (run.sh stops its broker and Postgres). Exits 0 only if the webhook arrived.
#
# Runs in an environment of its own (state under .dev/quickstart, ports below), so it can run
# beside the dev environment and inside scripts/test.sh. The same commands as the README, with
# these ports: QUICKSTART_PORT_BASE (default 18300) + 0 ingest, +1 sink, +2/+3/+6/+9 admin ports,
# +4 broker, +5 Postgres, +7 the broker's controller, +8 the management API. HOOKSTREAM_PROFILE=debug reuses the test build (the README's run is release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${QUICKSTART_PORT_BASE:-18300}
export HOOKSTREAM_DEV_DIR=${QUICKSTART_DEV_DIR:-$here/../.dev/quickstart}
export HOOKSTREAM_HTTP_PORT=$base
sink_port=$((base + 1))
export HOOKSTREAM_DISPATCHER_ADMIN_PORT=$((base + 2)) HOOKSTREAM_RETRIER_ADMIN_PORT=$((base + 3))
export HOOKSTREAM_KAFKA_PORT=$((base + 4)) HOOKSTREAM_PG_PORT=$((base + 5))
export HOOKSTREAM_INGEST_ADMIN_PORT=$((base + 6)) HOOKSTREAM_KAFKA_CONTROLLER_PORT=$((base + 7))
export HOOKSTREAM_API_PORT=$((base + 8)) HOOKSTREAM_API_ADMIN_PORT=$((base + 9))
unset HOOKSTREAM_KAFKA__BROKERS HOOKSTREAM_DATABASE__URL HOOKSTREAM_TEST_BROKERS \
  HOOKSTREAM_TEST_DATABASE_URL HOOKSTREAM_HTTP__LISTEN
export HOOKSTREAM_PROFILE=${HOOKSTREAM_PROFILE:-release}
source "$here/lib.sh"

out=$HOOKSTREAM_DEV_DIR/out
rm -rf "$out" && mkdir -p "$out"
run_pid="" sink_pid=""
cleanup() {
  local code=$?
  [ -n "$sink_pid" ] && kill -TERM "$sink_pid" 2>/dev/null
  # run.sh stops the services, then its broker and Postgres.
  if [ -n "$run_pid" ]; then
    kill -TERM "$run_pid" 2>/dev/null
    wait "$run_pid" 2>/dev/null || true
  fi
  exit "$code"
}
trap cleanup EXIT INT TERM

# A clean slate: the run owns this environment. (Kept from an earlier run, the account of that
# run has an endpoint at the same URL, and the sink would check the signature with its secret.)
"$here/dev-down.sh" --purge >/dev/null 2>&1 || true
mkdir -p "$out"

# 1. The pipeline, local profile.
"$here/run.sh" --local >"$out/run.log" 2>&1 &
run_pid=$!
for _ in $(seq 7200); do
  grep -q "hookstream running" "$out/run.log" && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$out/run.log" >&2; die "run.sh --local exited before the pipeline ran"; }
  sleep 0.5
done
grep -q "hookstream running" "$out/run.log" || die "run.sh --local did not start within an hour (log: $out/run.log)"
wait_for_port "$HOOKSTREAM_HTTP_PORT" ingest 60
wait_for_port "$HOOKSTREAM_API_PORT" api 60

# 2. The receiver.
# Built first (a no-op after run.sh's build), so the wait below is the sink's start alone.
"$here/testbed" --version >/dev/null
"$here/testbed" sink --print --listen "127.0.0.1:$sink_port" >"$out/sink.out" 2>"$out/sink.err" &
sink_pid=$!
wait_for_port "$sink_port" sink 60

# 3. An account and its key.
key=$("$here/hookstream" keys issue --account "$("$here/hookstream" accounts create --name acme)")

# 4. An endpoint at the receiver.
curl -sf "localhost:$HOOKSTREAM_API_PORT/v1/endpoints" -H "authorization: Bearer $key" \
  -H 'content-type: application/json' \
  -d "{\"url\":\"http://127.0.0.1:$sink_port/hooks/acme\",\"event_types\":[\"*\"]}" >"$out/endpoint.json" \
  || die "creating the endpoint failed"

# 5. An event.
curl -sf "localhost:$HOOKSTREAM_HTTP_PORT/v1/events" -H "authorization: Bearer $key" \
  -H 'content-type: application/json' \
  -d '{"event_type":"subscriber.created","data":{"subscriber":{"id":"s1","email":"a@example.com"}}}' \
  >"$out/event.json" || die "posting the event failed"
event_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["event_id"])' "$out/event.json")

for _ in $(seq 300); do
  grep -q "signature verified" "$out/sink.out" && break
  sleep 0.1
done
grep -q "signature verified" "$out/sink.out" || { cat "$out/sink.out" "$out/run.log" >&2; die "the webhook did not arrive within 30 s"; }
grep -q "webhook-id: $event_id" "$out/sink.out" || die "the sink printed another event than $event_id"
cat "$out/sink.out"
log "quickstart: event $event_id arrived at the sink, signature verified"
