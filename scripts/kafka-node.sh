#!/usr/bin/env bash
# Runs one Apache Kafka node in the foreground, as Kafka's own bin/kafka-server-start.sh does:
# broker and KRaft controller in one process, on loopback, its log on disk under DIR. The first
# start formats DIR (kafka.tools.StorageTool format --standalone); later starts reuse it, so
# topics, records and committed offsets survive a restart, a SIGKILL included.
#
#   scripts/kafka-node.sh DIR PORT CONTROLLER_PORT [key=value ...]
#
# Settings given after the ports are added to its server.properties (last, so they win).
# HOOKSTREAM_BROKER_HEAP bounds the JVM heap (512m). scripts/lib.sh starts the dev broker with
# it; tests that stop and restart a broker start their own with it (core/src/testkit.rs).
source "$(dirname "$0")/lib.sh"

[ $# -ge 3 ] || die "usage: scripts/kafka-node.sh DIR PORT CONTROLLER_PORT [key=value ...]"
dir=$1 port=$2 controller_port=$3
shift 3
[ -f "$KAFKA_LIBS/kafka_2.13-$HOOKSTREAM_KAFKA_VERSION.jar" ] \
  || die "Apache Kafka $HOOKSTREAM_KAFKA_VERSION is not installed in $KAFKA_HOME: run scripts/install.sh"
mkdir -p "$dir/data" "$dir/logs"
dir=$(cd "$dir" && pwd)

# Written on every start, so a change here reaches existing brokers; the data stays.
cat >"$dir/server.properties" <<PROPS
# Written by scripts/kafka-node.sh: one node, broker and controller, on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# Topics are created by 'hookstream topics create' with their partitions and retention; a
# produce to a topic that does not exist fails instead of creating it, as on a managed cluster.
auto.create.topics.enable=false
num.partitions=1
# One node: every internal topic has one replica, and few partitions (default 50).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=4
# A group forms as soon as its first member joins (default: 3 s later).
group.initial.rebalance.delay.ms=0
# KIP-848 groups (group.protocol=consumer): the broker owns the session timeout. Its minimum
# (45 s by default) is lowered so a dev broker can match kafka.session_timeout's 10 s.
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=2000
# Smaller segments than the 1 GiB default, so retention (which drops whole closed segments)
# bounds a dev broker's disk over a long run.
log.segment.bytes=67108864
PROPS
for setting in "$@"; do
  [[ $setting == *=* ]] || die "not a key=value setting: $setting"
  echo "$setting" >>"$dir/server.properties"
done

if [ ! -f "$dir/data/meta.properties" ]; then
  cluster_id=$("$JAVA" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid)
  "$JAVA" -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$dir/logs" \
    kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$dir/server.properties" >/dev/null \
    || die "could not format $dir/data for Kafka"
fi

# kafka-server-start.sh's and kafka-run-class.sh's JVM flags, with a bounded heap.
exec "$JAVA" "-Xmx$HOOKSTREAM_BROKER_HEAP" "-Xms$HOOKSTREAM_BROKER_HEAP" \
  -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
  -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$dir/logs" \
  -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
