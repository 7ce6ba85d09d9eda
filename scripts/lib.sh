# Shared settings and helpers for the scripts in this folder. Source it; do not run it.
# Every setting can be overridden from the environment, so two checkouts can run side by side.

set -euo pipefail

HS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Throwaway state of this checkout: the Postgres cluster, logs, pid files.
HOOKSTREAM_DEV_DIR=${HOOKSTREAM_DEV_DIR:-$HS_ROOT/.dev}
# Survives clones: the broker binary and the cargo target directory.
HOOKSTREAM_CACHE_DIR=${HOOKSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hookstream}
HOOKSTREAM_KAFKA_PORT=${HOOKSTREAM_KAFKA_PORT:-19092}
# The local broker's KRaft controller listener (loopback only, used by the node itself).
HOOKSTREAM_KAFKA_CONTROLLER_PORT=${HOOKSTREAM_KAFKA_CONTROLLER_PORT:-19093}
HOOKSTREAM_PG_PORT=${HOOKSTREAM_PG_PORT:-15432}
# The local broker: Apache Kafka from Maven Central (scripts/kafka/pom.xml), see README,
# "Local broker", for why this version.
HOOKSTREAM_KAFKA_VERSION=${HOOKSTREAM_KAFKA_VERSION:-4.1.1}
# Its JVM heap (-Xmx and -Xms): resident memory is about this plus 150-200 MB.
export HOOKSTREAM_BROKER_HEAP=${HOOKSTREAM_BROKER_HEAP:-512m}
# More broker settings for the dev broker, space-separated key=value (benchmarks use it).
HOOKSTREAM_BROKER_PROPERTIES=${HOOKSTREAM_BROKER_PROPERTIES:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOOKSTREAM_CACHE_DIR/target}

# The broker's jars, fetched once by scripts/install.sh. The directory is named for the version
# and for the POM's content, so a changed POM is fetched anew.
KAFKA_HOME=$HOOKSTREAM_CACHE_DIR/kafka-$HOOKSTREAM_KAFKA_VERSION-$(cksum <"$HS_ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1)
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_LOG4J=$HS_ROOT/scripts/kafka/log4j2.xml
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# A Confluent-compatible schema registry for the Avro tests: Apicurio Registry (its Confluent
# API at /apis/ccompat/v7), the runnable assembly Maven Central serves beside the artifact.
# 3.0.9 is the newest that runs on Java 17 (3.1 and later are built for Java 21); its parent
# POM is not served, so Maven cannot resolve it and install.sh fetches the file by its URL,
# checked against this digest.
HOOKSTREAM_REGISTRY_VERSION=3.0.9
HOOKSTREAM_REGISTRY_SHA256=2b28181501a20cbf6efcd77f9b7153908fc01f3d3a7c32024c0bd9e1b04c8a43
REGISTRY_HOME=$HOOKSTREAM_CACHE_DIR/apicurio-registry-$HOOKSTREAM_REGISTRY_VERSION
REGISTRY_JAR=$REGISTRY_HOME/apicurio-registry-app-$HOOKSTREAM_REGISTRY_VERSION-runner.jar
# Tests that need a schema registry start one with this script.
export HOOKSTREAM_REGISTRY_NODE=$HS_ROOT/scripts/registry-node.sh
HOOKSTREAM_SCHEMATHESIS_VERSION=${HOOKSTREAM_SCHEMATHESIS_VERSION:-4.32.5}
SCHEMATHESIS_BIN=$HOOKSTREAM_CACHE_DIR/schemathesis/bin/st
# Validates rendered chart manifests; installed only where `helm` exists to render them.
HOOKSTREAM_KUBERNETES_VALIDATE_VERSION=${HOOKSTREAM_KUBERNETES_VALIDATE_VERSION:-1.37.0}
KUBERNETES_VALIDATE_BIN=$HOOKSTREAM_CACHE_DIR/kubernetes-validate/bin/kubernetes-validate
# The test runner: each test in a process of its own (tests start services in-process, and
# Prometheus' recorder is one per process), a hung test ended after four minutes. Built into
# the cache where the machine has none.
HOOKSTREAM_NEXTEST_VERSION=${HOOKSTREAM_NEXTEST_VERSION:-0.9.143}
export PATH=$PATH:$HOOKSTREAM_CACHE_DIR/nextest/bin
PG_DATA=$HOOKSTREAM_DEV_DIR/pg/data
# The dev broker's directory: its log (data/), server.properties, its own logs (logs/).
KAFKA_DIR=$HOOKSTREAM_DEV_DIR/kafka
BROKER_PID=$KAFKA_DIR/kafka.pid
# The JVM's stdout and stderr: warnings and errors (the full log is $KAFKA_DIR/logs/server.log).
BROKER_LOG=$KAFKA_DIR/kafka.out
# Tests that stop and restart a broker start one of their own with this script.
export HOOKSTREAM_KAFKA_NODE=$HS_ROOT/scripts/kafka-node.sh

# What the services, the CLI and the tests read (see core/src/config.rs and testkit.rs).
export HOOKSTREAM_KAFKA__BROKERS=${HOOKSTREAM_KAFKA__BROKERS:-127.0.0.1:$HOOKSTREAM_KAFKA_PORT}
export HOOKSTREAM_DATABASE__URL=${HOOKSTREAM_DATABASE__URL:-postgres://hookstream@127.0.0.1:$HOOKSTREAM_PG_PORT/hookstream}
export HOOKSTREAM_TEST_BROKERS=${HOOKSTREAM_TEST_BROKERS:-127.0.0.1:$HOOKSTREAM_KAFKA_PORT}
export HOOKSTREAM_TEST_DATABASE_URL=${HOOKSTREAM_TEST_DATABASE_URL:-postgres://hookstream@127.0.0.1:$HOOKSTREAM_PG_PORT/postgres}

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# Builds the release binaries the benchmarks measure; sets `bin` to their directory.
build_release() {
  log "building release binaries"
  cargo build --quiet --release --bins --manifest-path "$HS_ROOT/Cargo.toml"
  bin=$CARGO_TARGET_DIR/release
}

# Runs a Postgres binary as the cluster's owner: Postgres refuses to run as root.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_bin() {
  local b
  for b in "$(command -v "$1" 2>/dev/null)" /usr/lib/postgresql/*/bin/"$1"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  die "PostgreSQL binary $1 not found (scripts/install.sh installs it)"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who listens on a port, as "pid N (name)" where the system can tell (ss from iproute2, or
# /proc), else "another process".
port_holder() {
  local port=$1 inode pid fd
  # /proc/net/tcp lists listening sockets (state 0A) with the port in hex; find the owning pid.
  inode=$(awk -v p="$(printf '%04X' "$port")" '$4 == "0A" && $2 ~ ":"p"$" {print $10; exit}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
  if [ -n "$inode" ] && [ "$inode" != 0 ]; then
    for fd in /proc/[0-9]*/fd/*; do
      if [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ]; then
        pid=${fd#/proc/}; pid=${pid%%/*}
        echo "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
        return
      fi
    done
  fi
  echo "another process"
}

# Fails, naming the holder and the variable to change, when a port this checkout wants is taken.
require_free_port() { # port, what, variable
  port_open "$1" || return 0
  die "port $1 ($2) is already in use by $(port_holder "$1"), perhaps another checkout's dev environment: stop it, or set $3 to another port"
}

wait_for_port() { # port, what, seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die "$2 did not open port $1 within $3 s"
}

broker_running() { [ -f "$BROKER_PID" ] && kill -0 "$(cat "$BROKER_PID")" 2>/dev/null; }
pg_running() { [ -f "$PG_DATA/postmaster.pid" ] && pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_DATA" status >/dev/null 2>&1; }
pg_stop() {
  if pg_running; then
    log "stopping postgres"
    pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
}

# Starts the Postgres cluster under $HOOKSTREAM_DEV_DIR, creating it if missing.
start_postgres() {
  local data=$PG_DATA port=$HOOKSTREAM_PG_PORT
  if pg_running; then
    log "postgres already running on 127.0.0.1:$port"
    return
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a throwaway Postgres cluster in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$(dirname "$data")"
    # Trust on loopback only: a disposable dev cluster whose superuser is "hookstream".
    pg_as_owner "$(pg_bin initdb)" -D "$data" -U hookstream --auth=trust -E UTF8 \
      --no-instructions >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 300
# Throwaway data: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  require_free_port "$port" postgres HOOKSTREAM_PG_PORT
  log "starting postgres on 127.0.0.1:$port"
  pg_as_owner "$(pg_bin pg_ctl)" -D "$data" -l "$(dirname "$data")/postgres.log" -w -t 30 start \
    >/dev/null || die "postgres did not start; see $(dirname "$data")/postgres.log"
}

start_broker() {
  if broker_running; then
    log "broker already running on 127.0.0.1:$HOOKSTREAM_KAFKA_PORT"
    return
  fi
  require_free_port "$HOOKSTREAM_KAFKA_PORT" broker HOOKSTREAM_KAFKA_PORT
  require_free_port "$HOOKSTREAM_KAFKA_CONTROLLER_PORT" "broker's controller" HOOKSTREAM_KAFKA_CONTROLLER_PORT
  mkdir -p "$KAFKA_DIR"
  log "starting Apache Kafka $HOOKSTREAM_KAFKA_VERSION on 127.0.0.1:$HOOKSTREAM_KAFKA_PORT (data in $KAFKA_DIR/data, heap $HOOKSTREAM_BROKER_HEAP)"
  # shellcheck disable=SC2086 # one word per setting
  nohup "$HOOKSTREAM_KAFKA_NODE" "$KAFKA_DIR" "$HOOKSTREAM_KAFKA_PORT" "$HOOKSTREAM_KAFKA_CONTROLLER_PORT" \
    $HOOKSTREAM_BROKER_PROPERTIES >"$BROKER_LOG" 2>&1 </dev/null &
  echo $! >"$BROKER_PID"
  # Kafka opens its client listener once the node has started (controller quorum formed,
  # broker registered and unfenced), so an open port means it answers.
  local i
  for ((i = 0; i < 1200; i++)); do
    port_open "$HOOKSTREAM_KAFKA_PORT" && return 0
    broker_running || die "Kafka exited during start-up: $(tail -n 20 "$BROKER_LOG" "$KAFKA_DIR/logs/server.log" 2>/dev/null)"
    sleep 0.1
  done
  die "Kafka did not open port $HOOKSTREAM_KAFKA_PORT within 120 s (log: $KAFKA_DIR/logs/server.log)"
}

# Stops the broker started by start_broker: SIGTERM (a controlled shutdown, which closes its
# log cleanly), then SIGKILL after 60 s, saying so.
stop_broker() {
  if broker_running; then
    log "stopping Kafka"
    local pid
    pid=$(cat "$BROKER_PID")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "Kafka (pid $pid) did not stop within 60 s of SIGTERM: killing it (its log recovers at the next start)"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$BROKER_PID"
}

# debug (tests) or release (scripts/run.sh): which build the scripts run.
HOOKSTREAM_PROFILE=${HOOKSTREAM_PROFILE:-debug}
case "$HOOKSTREAM_PROFILE" in
  debug) HS_CARGO_PROFILE=() ;;
  release) HS_CARGO_PROFILE=(--release) ;;
  *) die "HOOKSTREAM_PROFILE must be debug or release, not $HOOKSTREAM_PROFILE" ;;
esac
HS_BIN=$CARGO_TARGET_DIR/$HOOKSTREAM_PROFILE

# Builds every binary of the workspace, as run.sh and the scripts/hookstream and scripts/testbed
# wrappers do: one feature set for all, so no build redoes another's work (one package built
# alone unifies its dependencies' features differently and rebuilds them).
hookstream_cli() {
  cargo build --quiet "${HS_CARGO_PROFILE[@]}" --bins --manifest-path "$HS_ROOT/Cargo.toml"
  "$HS_BIN/hookstream" "$@"
}
