#!/usr/bin/env bash
# The whole test suite: dev-up (installs what is missing), formatting and lints, then every
# test of the workspace against the real broker and Postgres. Stops what it started.
# Exits non-zero on any failure.
source "$(dirname "$0")/lib.sh"

already_up=false
broker_running && pg_running && already_up=true
"$HS_ROOT/scripts/dev-up.sh"
$already_up || trap '"$HS_ROOT/scripts/dev-down.sh"' EXIT

cd "$HS_ROOT"
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
log "Helm chart, dashboard and alert rules"
"$HS_ROOT/scripts/check-chart.sh"
log "schemathesis against the running ingest's /openapi.json"
"$HS_ROOT/scripts/schemathesis.sh"
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doc tests; run them first so nextest's summary closes the output.
  cargo test --quiet --workspace --doc
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
log "fault run, short (scripts/faults.sh --short: kills, broker, Postgres and sink outages; nothing lost)"
"$HS_ROOT/scripts/faults.sh" --short
log "all tests passed"
