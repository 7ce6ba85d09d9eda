#!/usr/bin/env bash
# The whole test suite: dev-up (installs what is missing), formatting and lints, then every
# test of the workspace against the real broker and Postgres. Stops what it started.
# Exits non-zero on any failure.
source "$(dirname "$0")/lib.sh"

already_up=false
broker_running && pg_running && already_up=true
# Set before dev-up, so a start that fails part way (a build error, a port in use) stops what
# it had started. dev-down stops only this checkout's broker and Postgres.
$already_up || trap '"$HS_ROOT/scripts/dev-down.sh"' EXIT
"$HS_ROOT/scripts/dev-up.sh"

cd "$HS_ROOT"
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
log "Helm chart, dashboard and alert rules"
"$HS_ROOT/scripts/check-chart.sh"
log "schemathesis against the running ingest's and API's /openapi.json"
"$HS_ROOT/scripts/schemathesis.sh"
log "tests"
# nextest (scripts/install.sh provides it) runs each test in a process of its own: tests
# start services in-process and read their one-per-process metrics. It does not run doc
# tests; they go first so nextest's summary closes the output.
cargo test --quiet --workspace --doc
cargo nextest run --workspace --no-fail-fast
log "fault run, short (scripts/faults.sh --short: kills, broker, Postgres and sink outages; nothing lost)"
"$HS_ROOT/scripts/faults.sh" --short
log "quickstart (scripts/quickstart.sh: the README's five commands, in an environment of its own)"
HOOKSTREAM_PROFILE=debug "$HS_ROOT/scripts/quickstart.sh"
log "all tests passed"
