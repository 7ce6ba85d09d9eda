-- A DLQ redrive started through the API is a job: the request answers at once with its id,
-- and progress and result are read here (from any ingest replica). A job whose runner stopped
-- updating it (a restart) is reported interrupted; its unsent entries stay in the DLQ.
CREATE TABLE redrive_jobs (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    actor       text NOT NULL,
    filter      jsonb NOT NULL,
    state       text NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    matched     bigint NOT NULL DEFAULT 0,
    redriven    bigint NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX redrive_jobs_account ON redrive_jobs (account_id, created_at);
