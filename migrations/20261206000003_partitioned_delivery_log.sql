-- The delivery log, partitioned by day so that its retention drops whole days (DETACH
-- CONCURRENTLY, then DROP: no DELETE, no vacuum debt, no lock on the live days) instead of
-- growing for ever. `deliveries` is partitioned by the event's `received_at` (fixed for the
-- row's life, so the upsert always lands in the same day), `delivery_attempts` by
-- `attempted_at`. There is no DEFAULT partition: a row for a day without one fails, so the
-- days are created ahead (hookstream_log_partitions) by the services that write the log, and
-- the writer creates any other day it meets (an old event replayed) before it writes.

-- Creates the partitions of both log tables for every day from first_day to last_day (UTC)
-- that has none; returns how many it created. Safe to call from several processes at once.
CREATE FUNCTION hookstream_log_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d     date;
    t     text;
    part  text;
    made  integer := 0;
BEGIN
    -- Two services creating the same day at once would collide on its name.
    PERFORM pg_advisory_xact_lock(hashtext('hookstream_log_partitions'));
    FOR d IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH t IN ARRAY ARRAY['deliveries', 'delivery_attempts'] LOOP
            part := t || '_p' || to_char(d, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, t, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN made;
END;
$$;

ALTER TABLE deliveries RENAME TO deliveries_unpartitioned;
ALTER TABLE deliveries_unpartitioned DROP CONSTRAINT deliveries_pkey;
DROP INDEX deliveries_endpoint_state;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_unpartitioned;
ALTER TABLE delivery_attempts_unpartitioned DROP CONSTRAINT delivery_attempts_pkey;
DROP INDEX delivery_attempts_event;

-- One row per (event, endpoint): the delivery's current state.
CREATE TABLE deliveries (
    account_id       uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id         text NOT NULL,
    endpoint_id      uuid NOT NULL,
    event_type       text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'retrying', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status      integer,
    last_error       text,
    replay           boolean NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    redrives         integer NOT NULL DEFAULT 0,
    last_redriven_at timestamptz,
    -- The partition key must be part of the key; an event's received_at never changes.
    PRIMARY KEY (account_id, event_id, endpoint_id, received_at)
) PARTITION BY RANGE (received_at);
-- Endpoint stats (by state, over a window of updated_at).
CREATE INDEX deliveries_endpoint_state ON deliveries (account_id, endpoint_id, state, updated_at);

-- One row per attempt, written in batches. No primary key: `id` orders an event's attempts,
-- and a key would have to carry the partition key (one more index on the busiest insert).
CREATE TABLE delivery_attempts (
    id            bigint NOT NULL DEFAULT nextval('delivery_attempts_id_seq'),
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id      text NOT NULL,
    endpoint_id   uuid NOT NULL,
    attempt       integer NOT NULL,
    outcome       text NOT NULL
        CHECK (outcome IN ('delivered', 'retryable', 'permanent', 'skipped', 'redriven')),
    http_status   integer,
    latency_ms    integer,
    response_body text,
    error         text,
    attempted_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (attempted_at);
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;
-- An event's attempts (GET /v1/events/{id}/deliveries, expunge).
CREATE INDEX delivery_attempts_event ON delivery_attempts (account_id, event_id, endpoint_id);
-- An endpoint's attempts over a window (GET /v1/endpoints/{id}/stats).
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts (account_id, endpoint_id, attempted_at);

-- The days the old rows need, and the week ahead.
SELECT hookstream_log_partitions(
    LEAST(
        (SELECT min(received_at AT TIME ZONE 'UTC')::date FROM deliveries_unpartitioned),
        (SELECT min(attempted_at AT TIME ZONE 'UTC')::date FROM delivery_attempts_unpartitioned),
        (now() AT TIME ZONE 'UTC')::date),
    (now() AT TIME ZONE 'UTC')::date + 7);

INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, attempts,
    last_status, last_error, replay, received_at, first_attempt_at, last_attempt_at,
    delivered_at, updated_at, redrives, last_redriven_at)
SELECT account_id, event_id, endpoint_id, event_type, state, attempts, last_status, last_error,
    replay, received_at, first_attempt_at, last_attempt_at, delivered_at, updated_at, redrives,
    last_redriven_at
FROM deliveries_unpartitioned;
INSERT INTO delivery_attempts (id, account_id, event_id, endpoint_id, attempt, outcome,
    http_status, latency_ms, response_body, error, attempted_at)
SELECT id, account_id, event_id, endpoint_id, attempt, outcome, http_status, latency_ms,
    response_body, error, attempted_at
FROM delivery_attempts_unpartitioned;
DROP TABLE deliveries_unpartitioned;
DROP TABLE delivery_attempts_unpartitioned;

-- How far each source partition's records have been logged: the highest offset (of the topic
-- partition a delivery was read from) whose attempt is in the log, written in the same
-- transaction as the attempts. A record above it cannot have been attempted before, so the
-- engine asks the log "delivered before?" only for records at or below it.
CREATE TABLE log_marks (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    last_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
