#!/usr/bin/env bash
# Runs Apicurio Registry in the foreground on 127.0.0.1:PORT, with in-memory storage: a
# Confluent-compatible schema registry (its API at http://127.0.0.1:PORT/apis/ccompat/v7/) for
# the tests of Avro events (core/src/testkit.rs starts it).
#
#   scripts/registry-node.sh PORT
source "$(dirname "$0")/lib.sh"

[ $# = 1 ] || die "usage: scripts/registry-node.sh PORT"
[ -f "$REGISTRY_JAR" ] || die "Apicurio Registry is not installed in $REGISTRY_HOME: run scripts/install.sh"
export QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT=$1
exec "$JAVA" -Xmx256m -Xms64m -jar "$REGISTRY_JAR"
