#!/usr/bin/env bash
# The aged-log benchmark (issue 18): the dispatcher benchmark on an empty delivery log, then
# the log filled as a day at 1 M deliveries an hour fills it (BENCH_AGED_ROWS rows in each of
# `deliveries` and `delivery_attempts`, spread over the last 24 h, made with SQL), then the
# same benchmark again; and the plans of the API's log queries on the full log. Runs in a
# database of its own on the dev Postgres. Writes bench/aged-log.md.
# Settings: BENCH_AGED_ROWS (24000000), BENCH_EVENTS (100000), BENCH_CONCURRENCY (256).
source "$(dirname "$0")/lib.sh"

rows=${BENCH_AGED_ROWS:-24000000}
events=${BENCH_EVENTS:-100000}
concurrency=${BENCH_CONCURRENCY:-256}
"$HS_ROOT/scripts/dev-up.sh" >/dev/null
build_release
admin_url=$HOOKSTREAM_TEST_DATABASE_URL
db=hookstream_aged
export HOOKSTREAM_DATABASE__URL=${admin_url%/*}/$db
psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
"$bin/hookstream" migrate >/dev/null
sql() { psql "$HOOKSTREAM_DATABASE__URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
bench() { # one dispatcher benchmark; prints its deliveries/s
  "$bin/hookstream-testbed" bench-dispatch --dispatcher-bin "$bin/hookstream-dispatcher" \
    --events "$events" --concurrency "$concurrency" >"$1"
  sed -n 's/^dispatcher: .*: \([0-9]*\) deliveries\/s.*/\1/p' "$1"
}
out=$(mktemp -d)

log "dispatcher benchmark on an empty log"
empty=$(bench "$out/empty.txt")
log "empty log: $empty deliveries/s; filling the log with $rows rows per table"
fill_started=$(date +%s)
sql <<SQL
SELECT hookstream_log_partitions(current_date - 1, current_date);
-- 100 accounts of 4 endpoints, every row of the last 24 h; event ids random as real ones are
-- (the indexes grow by random inserts).
CREATE TEMP TABLE aged_endpoints AS
  SELECT a.id AS account_id, gen_random_uuid() AS endpoint_id
  FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 100)) a, generate_series(1, 4);
INSERT INTO accounts (id, name, tier) SELECT DISTINCT account_id, 'aged', 'small' FROM aged_endpoints;
CREATE TEMP TABLE aged_ep AS SELECT row_number() OVER () - 1 AS n, * FROM aged_endpoints;
INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, attempts,
    last_status, received_at, first_attempt_at, last_attempt_at, delivered_at, updated_at)
SELECT e.account_id, 'evt_' || md5(g::text), e.endpoint_id, 'subscriber.created',
    CASE WHEN g % 20 = 0 THEN 'failed' ELSE 'delivered' END, 1 + (g % 20 = 0)::int * 4, 200,
    t, t, t, t, t
FROM generate_series(1, $rows) g
CROSS JOIN LATERAL (SELECT now() - (g::float8 / $rows) * interval '24 hours' AS t) times
JOIN aged_ep e ON e.n = g % 400;
INSERT INTO delivery_attempts (account_id, event_id, endpoint_id, attempt, outcome, http_status,
    latency_ms, response_body, attempted_at)
SELECT e.account_id, 'evt_' || md5(g::text), e.endpoint_id, 1, 'delivered', 200, 5 + g % 50,
    'ok', now() - (g::float8 / $rows) * interval '24 hours'
FROM generate_series(1, $rows) g JOIN aged_ep e ON e.n = g % 400;
ANALYZE deliveries;
ANALYZE delivery_attempts;
SQL
fill_s=$(($(date +%s) - fill_started))
size=$(sql -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")
log "filled in ${fill_s}s ($size); dispatcher benchmark on the full log"
aged=$(bench "$out/aged.txt")

# The API's log queries on the full log, for an event and an endpoint of the aged rows.
account=$(sql -Atc "SELECT account_id FROM deliveries WHERE event_id = 'evt_' || md5('1000')")
endpoint=$(sql -Atc "SELECT endpoint_id FROM deliveries WHERE event_id = 'evt_' || md5('1000')")
plans=$(sql <<SQL
\echo '-- GET /v1/events/{id}/deliveries: the deliveries'
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) SELECT endpoint_id, state, attempts FROM deliveries
  WHERE account_id = '$account' AND event_id = 'evt_' || md5('1000') ORDER BY endpoint_id;
\echo '-- GET /v1/events/{id}/deliveries: the attempts'
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) SELECT endpoint_id, attempt, outcome FROM delivery_attempts
  WHERE account_id = '$account' AND event_id = 'evt_' || md5('1000') ORDER BY id;
\echo '-- GET /v1/endpoints/{id}/stats (window 1 h): counts by state'
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) SELECT count(*) FILTER (WHERE state = 'delivered'),
  count(*) FILTER (WHERE state = 'failed') FROM deliveries
  WHERE account_id = '$account' AND endpoint_id = '$endpoint' AND updated_at >= now() - interval '1 hour';
\echo '-- GET /v1/endpoints/{id}/stats (window 1 h): latency percentiles'
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) SELECT count(*), percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)
  FROM delivery_attempts WHERE account_id = '$account' AND endpoint_id = '$endpoint'
  AND attempted_at >= now() - interval '1 hour' AND http_status IS NOT NULL;
SQL
)
ratio=$(python3 -c "import sys; print(f'{int(sys.argv[2]) / int(sys.argv[1]):.2f}')" "$empty" "$aged")
mkdir -p "$HS_ROOT/bench"
{
  echo "# Aged-log benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; broker: Apache Kafka $HOOKSTREAM_KAFKA_VERSION (one node); the dispatcher benchmark ($events deliveries, concurrency $concurrency, release build) on an empty delivery log, then on the log filled with $rows rows in each of \`deliveries\` and \`delivery_attempts\` over the last 24 h (a day at 1 M deliveries an hour; filled by SQL in ${fill_s} s, database $size). Written by scripts/bench-aged-log.sh."
  echo
  echo "| measure | value | target |"
  echo "| --- | --- | --- |"
  echo "| dispatcher, empty log | $empty deliveries/s | baseline |"
  echo "| dispatcher, a day of log ($rows rows per table) | $aged deliveries/s | |"
  echo "| full / empty | $ratio | >= 0.9 |"
  echo
  echo "Each run in full:"
  echo
  echo '```'
  cat "$out/empty.txt"
  echo
  cat "$out/aged.txt"
  echo '```'
  echo
  echo "The API's log queries on the full log (\`EXPLAIN ANALYZE\`):"
  echo
  echo '```'
  echo "$plans"
  echo '```'
} | tee "$HS_ROOT/bench/aged-log.md"
