#!/usr/bin/env bash
# Stops the local broker and Postgres started by dev-up.sh. With --purge, also deletes their
# data (the Postgres cluster and the broker's files under .dev/).
source "$(dirname "$0")/lib.sh"

stop_broker
pg_stop

if [ "${1:-}" = --purge ]; then
  log "deleting $HOOKSTREAM_DEV_DIR"
  rm -rf "$HOOKSTREAM_DEV_DIR"
fi
