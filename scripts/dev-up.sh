#!/usr/bin/env bash
# Brings up the local broker and Postgres (installing what is missing), waits until both
# answer, creates the topics and applies the migrations. Idempotent: what runs stays running.
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/install.sh"
mkdir -p "$HOOKSTREAM_DEV_DIR"

start_postgres
start_broker

"$(pg_bin psql)" -q -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream -d postgres \
  -tc "SELECT 1 FROM pg_database WHERE datname = 'hookstream'" | grep -q 1 \
  || "$(pg_bin createdb)" -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream hookstream

log "migrating and creating topics"
hookstream_cli migrate
hookstream_cli topics create
log "dev environment up: kafka 127.0.0.1:$HOOKSTREAM_KAFKA_PORT, postgres 127.0.0.1:$HOOKSTREAM_PG_PORT"
