-- The DLQ index: every record of the dlq topic, kept queryable (by account, endpoint, event
-- type, time, error class) so people can inspect and redrive without scanning Kafka. The
-- topic stays the durable hand-off; this table is built from it by the retrier.
CREATE TABLE dead_letters (
    id           uuid PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Where the record sits in the dlq topic; indexing it twice is a no-op.
    topic        text NOT NULL,
    partition    integer NOT NULL,
    kafka_offset bigint NOT NULL,
    event_id     text NOT NULL,
    endpoint_id  uuid NOT NULL,
    event_type   text NOT NULL,
    error_class  text NOT NULL,
    last_status  integer,
    last_error   text,
    attempts     integer NOT NULL,
    -- The whole delivery task, so a redrive needs nothing but this row.
    task         jsonb NOT NULL,
    origin       text,
    traceparent  text,
    dead_at      timestamptz NOT NULL,
    redriven_at  timestamptz,
    redriven_by  text,
    UNIQUE (topic, partition, kafka_offset)
);
CREATE INDEX dead_letters_account ON dead_letters (account_id, id);
CREATE INDEX dead_letters_live ON dead_letters (account_id, dead_at) WHERE redriven_at IS NULL;

-- Redrives are marked in the delivery log.
ALTER TABLE deliveries ADD COLUMN redrives integer NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN last_redriven_at timestamptz;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('delivered', 'retryable', 'permanent', 'skipped', 'redriven'));
