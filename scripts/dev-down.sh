#!/usr/bin/env bash
# Stops the local broker and Postgres started by dev-up.sh. With --purge, also deletes their
# data (the Postgres cluster under .dev/).
source "$(dirname "$0")/lib.sh"

if broker_running; then
  log "stopping tansu broker"
  pid=$(cat "$BROKER_PID")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$BROKER_PID"

if pg_running; then
  log "stopping postgres"
  pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_DATA" -m fast -w stop >/dev/null
fi

if [ "${1:-}" = --purge ]; then
  log "deleting $HOOKSTREAM_DEV_DIR"
  rm -rf "$HOOKSTREAM_DEV_DIR"
fi
