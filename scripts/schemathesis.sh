#!/usr/bin/env bash
# Property-based API test (issue 6): runs schemathesis (PyPI) against /openapi.json of a running
# ingest and of a running management API, with a fresh account and key. Checks: no 5xx, responses match the documented status
# codes, content types and schemas. scripts/install.sh (run by dev-up) installs schemathesis
# into a venv in the cache directory unless an `st` is on the PATH.
# Settings: SCHEMATHESIS_EXAMPLES (default 25 per operation).
source "$(dirname "$0")/lib.sh"

"$HS_ROOT/scripts/dev-up.sh" >/dev/null
st=$(command -v st || echo "$SCHEMATHESIS_BIN")
[ -x "$st" ] || die "schemathesis missing: run scripts/install.sh"
cargo build --quiet --bins --manifest-path "$HS_ROOT/Cargo.toml"
bin=$CARGO_TARGET_DIR/debug
account=$("$bin/hookstream" accounts create --name schemathesis --tier xlarge)
key=$("$bin/hookstream" keys issue --account "$account" --name schemathesis 2>/dev/null)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
failed=0
# Each HTTP service serves the document of its own routes.
for service in ingest api; do
  port=$(free_port)
  HOOKSTREAM_HTTP__LISTEN=127.0.0.1:$port HOOKSTREAM_ADMIN__LISTEN=127.0.0.1:$(free_port) \
    HOOKSTREAM_TELEMETRY__LOG_LEVEL=warn HOOKSTREAM_API__ALLOW_HTTP_ENDPOINTS=true \
    "$bin/hookstream-$service" &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
  log "schemathesis against $service: http://127.0.0.1:$port/openapi.json"
  "$st" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --generation-deterministic \
    --no-color || failed=1
done
exit $failed
