#!/usr/bin/env bash
# Runs the whole pipeline locally: dev-up (installs what is missing, starts the broker and
# Postgres, creates topics, migrates), then ingest, dispatcher and retrier in the foreground.
# Ctrl-C or SIGTERM stops the services, then the broker and Postgres: nothing is left running.
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/dev-up.sh"
log "building the services"
cargo build --quiet --bins --manifest-path "$HS_ROOT/Cargo.toml"

HOOKSTREAM_HTTP_PORT=${HOOKSTREAM_HTTP_PORT:-8080}
export HOOKSTREAM_HTTP__LISTEN=${HOOKSTREAM_HTTP__LISTEN:-127.0.0.1:$HOOKSTREAM_HTTP_PORT}
pids=()
stopping=false
stop() {
  trap - INT TERM EXIT
  stopping=true
  log "stopping services"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$HS_ROOT/scripts/dev-down.sh"
}
trap stop INT TERM EXIT

HOOKSTREAM_ADMIN__LISTEN=${HOOKSTREAM_DISPATCHER_ADMIN:-127.0.0.1:9091} \
  "$CARGO_TARGET_DIR/debug/hookstream-dispatcher" &
pids+=($!)
HOOKSTREAM_ADMIN__LISTEN=${HOOKSTREAM_RETRIER_ADMIN:-127.0.0.1:9092} \
  "$CARGO_TARGET_DIR/debug/hookstream-retrier" &
pids+=($!)
"$CARGO_TARGET_DIR/debug/hookstream-ingest" &
pids+=($!)

log "hookstream running: ingest http://$HOOKSTREAM_HTTP__LISTEN, dispatcher admin ${HOOKSTREAM_DISPATCHER_ADMIN:-127.0.0.1:9091}, retrier admin ${HOOKSTREAM_RETRIER_ADMIN:-127.0.0.1:9092} (Ctrl-C stops)"
# Return as soon as any service exits (a crash is not silent) or a signal arrives.
wait -n "${pids[@]}" || true
$stopping || log "a service exited; stopping the rest"
