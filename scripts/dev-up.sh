#!/usr/bin/env bash
# Brings up the local broker and Postgres (installing what is missing), waits until both
# answer, creates the topics and applies the migrations. Idempotent: what runs stays running.
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/install.sh"
mkdir -p "$HOOKSTREAM_DEV_DIR"

start_postgres() {
  if pg_running; then
    log "postgres already running on 127.0.0.1:$HOOKSTREAM_PG_PORT"
    return
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "creating a throwaway Postgres cluster in $PG_DATA"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$HOOKSTREAM_DEV_DIR/pg"
    # Trust on loopback only: a disposable dev cluster whose superuser is "hookstream".
    pg_as_owner "$(pg_bin initdb)" -D "$PG_DATA" -U hookstream --auth=trust -E UTF8 \
      --no-instructions >/dev/null
    cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $HOOKSTREAM_PG_PORT
unix_socket_directories = ''
max_connections = 300
# Throwaway data: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  log "starting postgres on 127.0.0.1:$HOOKSTREAM_PG_PORT"
  pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_DATA" -l "$PG_LOG" -w -t 30 start >/dev/null \
    || die "postgres did not start; see $PG_LOG"
}

start_broker() {
  if broker_running; then
    log "broker already running on 127.0.0.1:$HOOKSTREAM_KAFKA_PORT"
    return
  fi
  port_open "$HOOKSTREAM_KAFKA_PORT" && die "port $HOOKSTREAM_KAFKA_PORT is taken by another process (set HOOKSTREAM_KAFKA_PORT)"
  local storage=memory://tansu/
  if [ "$HOOKSTREAM_BROKER_STORAGE" = postgres ]; then
    "$(pg_bin psql)" -q -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream -d postgres \
      -tc "SELECT 1 FROM pg_database WHERE datname = 'tansu'" | grep -q 1 \
      || "$(pg_bin createdb)" -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream tansu
    storage="postgres://hookstream@127.0.0.1:$HOOKSTREAM_PG_PORT/tansu"
  fi
  log "starting tansu broker on 127.0.0.1:$HOOKSTREAM_KAFKA_PORT ($HOOKSTREAM_BROKER_STORAGE storage)"
  # tansu reads some settings from the environment (OTEL_EXPORTER_OTLP_ENDPOINT, ...):
  # give it a clean one so only the flags below count.
  env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${TANSU_LOG:-warn}" nohup "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$HOOKSTREAM_KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$HOOKSTREAM_KAFKA_PORT" \
    --storage-engine "$storage" >"$BROKER_LOG" 2>&1 &
  echo $! >"$BROKER_PID"
  wait_for_port "$HOOKSTREAM_KAFKA_PORT" "tansu broker (log: $BROKER_LOG)" 30
}

start_postgres
start_broker

"$(pg_bin psql)" -q -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream -d postgres \
  -tc "SELECT 1 FROM pg_database WHERE datname = 'hookstream'" | grep -q 1 \
  || "$(pg_bin createdb)" -h 127.0.0.1 -p "$HOOKSTREAM_PG_PORT" -U hookstream hookstream

log "migrating and creating topics"
hookstream_cli migrate
hookstream_cli topics create
log "dev environment up: kafka 127.0.0.1:$HOOKSTREAM_KAFKA_PORT, postgres 127.0.0.1:$HOOKSTREAM_PG_PORT"
