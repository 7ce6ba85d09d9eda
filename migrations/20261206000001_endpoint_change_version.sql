-- A version that every statement changing endpoints bumps, in the same transaction. The endpoint
-- caches compare it with the version they loaded before dispatching an event newer than their
-- last check, so an endpoint committed before an event was produced gets it even when the
-- change notification arrives after the event (Kafka can deliver an event to the dispatcher
-- within a millisecond of its produce).
CREATE TABLE endpoint_changes (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version bigint NOT NULL
);
INSERT INTO endpoint_changes (singleton, version) VALUES (true, 0);

CREATE OR REPLACE FUNCTION hookstream_notify_endpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE endpoint_changes SET version = version + 1;
  PERFORM pg_notify('hookstream_endpoints', '');
  RETURN NULL;
END;
$$;
