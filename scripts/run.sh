#!/usr/bin/env bash
# Runs the whole pipeline locally: dev-up (installs what is missing, starts the broker and
# Postgres, creates topics, migrates), then ingest, the management API, dispatcher and retrier
# in the foreground,
# built in release mode. A service that crashes is restarted (and the log says so); one that
# exits with 2 (bad configuration) stops everything. Ctrl-C or SIGTERM stops the services, then
# the broker and Postgres: nothing is left running, also when start-up fails part way.
#
#   scripts/run.sh            production rules: endpoints must be https:// and public
#   scripts/run.sh --local    the local profile: http:// and loopback/private receivers allowed,
#                             in ingest (endpoint creation) and in delivery alike
set -euo pipefail
profile=production
case "${1:-}" in
  --local) profile=local ;;
  "") ;;
  *) echo "usage: scripts/run.sh [--local]" >&2; exit 2 ;;
esac
export HOOKSTREAM_PROFILE=${HOOKSTREAM_PROFILE:-release}
source "$(dirname "$0")/lib.sh"

if [ "$profile" = local ]; then
  # The one local switch: the API's checks at endpoint creation and the delivery guard in the
  # dispatcher and retrier must agree, or endpoints are accepted that nothing delivers to.
  export HOOKSTREAM_API__ALLOW_HTTP_ENDPOINTS=true
  export HOOKSTREAM_API__ALLOW_PRIVATE_ENDPOINTS=true
  export HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS=true
fi

HOOKSTREAM_HTTP_PORT=${HOOKSTREAM_HTTP_PORT:-8080}
HOOKSTREAM_API_PORT=${HOOKSTREAM_API_PORT:-8081}
HOOKSTREAM_API_ADMIN_PORT=${HOOKSTREAM_API_ADMIN_PORT:-9093}
HOOKSTREAM_DISPATCHER_ADMIN_PORT=${HOOKSTREAM_DISPATCHER_ADMIN_PORT:-9091}
HOOKSTREAM_RETRIER_ADMIN_PORT=${HOOKSTREAM_RETRIER_ADMIN_PORT:-9092}
HOOKSTREAM_INGEST_ADMIN_PORT=${HOOKSTREAM_INGEST_ADMIN_PORT:-9090}
# Each HTTP service gets its own listen address below (the same config key, http.listen).
unset HOOKSTREAM_HTTP__LISTEN
# Before anything starts: a port in use is named now, not as a service's bind error later.
require_free_port "$HOOKSTREAM_HTTP_PORT" ingest HOOKSTREAM_HTTP_PORT
require_free_port "$HOOKSTREAM_API_PORT" api HOOKSTREAM_API_PORT
require_free_port "$HOOKSTREAM_API_ADMIN_PORT" "api admin" HOOKSTREAM_API_ADMIN_PORT
require_free_port "$HOOKSTREAM_DISPATCHER_ADMIN_PORT" "dispatcher admin" HOOKSTREAM_DISPATCHER_ADMIN_PORT
require_free_port "$HOOKSTREAM_RETRIER_ADMIN_PORT" "retrier admin" HOOKSTREAM_RETRIER_ADMIN_PORT
require_free_port "$HOOKSTREAM_INGEST_ADMIN_PORT" "ingest admin" HOOKSTREAM_INGEST_ADMIN_PORT

pids=()
stopping=false
stop() {
  trap - INT TERM EXIT
  stopping=true
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping services"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
  # dev-down stops only this checkout's broker and Postgres (its own pid file and data dir).
  "$HS_ROOT/scripts/dev-down.sh"
}
# Set before dev-up, so a start that fails part way stops what it had started.
trap stop INT TERM EXIT

"$HS_ROOT/scripts/dev-up.sh"
log "building the services ($HOOKSTREAM_PROFILE)"
cargo build --quiet "${HS_CARGO_PROFILE[@]}" --bins --manifest-path "$HS_ROOT/Cargo.toml"

# Runs a service, restarting it when it dies. Not restarted: exit 0 (it was told to stop) and
# exit 2 (bad configuration, which a restart cannot mend). SIGTERM is passed on to it.
supervise() { # name [env=value ...]
  local name=$1 child="" rc
  shift
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM
  while true; do
    env "$@" "$HS_BIN/hookstream-$name" &
    child=$!
    rc=0
    wait "$child" || rc=$?
    case $rc in
      0) exit 0 ;;
      2) log "$name exited with 2 (bad configuration); not restarting"; exit 2 ;;
    esac
    log "$name exited with $rc; restarting it in 2 s"
    sleep 2
  done
}

supervise dispatcher HOOKSTREAM_ADMIN__LISTEN="127.0.0.1:$HOOKSTREAM_DISPATCHER_ADMIN_PORT" &
pids+=($!)
supervise retrier HOOKSTREAM_ADMIN__LISTEN="127.0.0.1:$HOOKSTREAM_RETRIER_ADMIN_PORT" &
pids+=($!)
supervise ingest HOOKSTREAM_HTTP__LISTEN="127.0.0.1:$HOOKSTREAM_HTTP_PORT" \
  HOOKSTREAM_ADMIN__LISTEN="127.0.0.1:$HOOKSTREAM_INGEST_ADMIN_PORT" &
pids+=($!)
supervise api HOOKSTREAM_HTTP__LISTEN="127.0.0.1:$HOOKSTREAM_API_PORT" \
  HOOKSTREAM_ADMIN__LISTEN="127.0.0.1:$HOOKSTREAM_API_ADMIN_PORT" &
pids+=($!)

log "hookstream running ($profile profile, $HOOKSTREAM_PROFILE build, Apache Kafka $HOOKSTREAM_KAFKA_VERSION): ingest http://127.0.0.1:$HOOKSTREAM_HTTP_PORT (admin 127.0.0.1:$HOOKSTREAM_INGEST_ADMIN_PORT), api http://127.0.0.1:$HOOKSTREAM_API_PORT (admin 127.0.0.1:$HOOKSTREAM_API_ADMIN_PORT), dispatcher admin 127.0.0.1:$HOOKSTREAM_DISPATCHER_ADMIN_PORT, retrier admin 127.0.0.1:$HOOKSTREAM_RETRIER_ADMIN_PORT (Ctrl-C stops)"
# Returns when a service stops for good (bad configuration, or stopped from outside) or a
# signal arrives.
wait -n "${pids[@]}" || true
$stopping || log "a service stopped for good; stopping the rest"
