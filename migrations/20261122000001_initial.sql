-- hookstream's tables (DESIGN.md, "Postgres"). Every table that holds tenant data carries
-- account_id, and every query filters on it.

CREATE TABLE accounts (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Seed 000's subscriber-count tiers: small (< 10k), medium (10k+), large (50k+), xlarge (100k+).
    tier                 text NOT NULL DEFAULT 'small' CHECK (tier IN ('small', 'medium', 'large', 'xlarge')),
    -- Per-account limits; NULL means "the tier's default".
    delivery_rate_per_sec integer CHECK (delivery_rate_per_sec > 0),
    delivery_burst       integer CHECK (delivery_burst > 0),
    ingest_rate_per_sec  integer CHECK (ingest_rate_per_sec > 0),
    ingest_burst         integer CHECK (ingest_burst > 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE endpoints (
    id                 uuid PRIMARY KEY,
    account_id         uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                text NOT NULL,
    description        text NOT NULL DEFAULT '',
    -- Exact types (subscriber.created) or wildcards (subscriber.*, *).
    event_types        text[] NOT NULL DEFAULT ARRAY['*'],
    rate_limit_per_sec integer CHECK (rate_limit_per_sec > 0),
    rate_limit_burst   integer CHECK (rate_limit_burst > 0),
    enabled            boolean NOT NULL DEFAULT true,
    disabled_reason    text,
    disabled_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_account ON endpoints (account_id);

-- Signing secrets; during rotation an endpoint has two rows, the old one with expires_at set.
CREATE TABLE endpoint_secrets (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE INDEX endpoint_secrets_endpoint ON endpoint_secrets (account_id, endpoint_id);

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
    PRIMARY KEY (account_id, event_id, endpoint_id)
);
CREATE INDEX deliveries_endpoint_state ON deliveries (account_id, endpoint_id, state, updated_at);

-- One row per attempt, written in batches.
CREATE TABLE delivery_attempts (
    id            bigserial PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id      text NOT NULL,
    endpoint_id   uuid NOT NULL,
    attempt       integer NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'retryable', 'permanent', 'skipped')),
    http_status   integer,
    latency_ms    integer,
    response_body text,
    error         text,
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (account_id, event_id, endpoint_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    -- NULL for operator actions that concern no single account.
    account_id  uuid REFERENCES accounts (id) ON DELETE CASCADE,
    -- "key:<api key id>" or "operator:<name>".
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    before      jsonb,
    after       jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);
