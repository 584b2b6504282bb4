-- Idempotency keys: the Idempotency-Key header of the write endpoints (docs/ingestion.md,
-- "Idempotency-Key"; gramlogs/storage/idempotency.py). The schema version is the file's number.
--
-- One row per key a project has used: a hash of the request it was first used with, and the
-- reply that request got, so that a resend is answered with the same bytes and stores nothing.
-- The row is written in the transaction that stores the batch, so it exists exactly when the
-- batch does (a crash between the commit and the reply included). status, media_type and
-- response are filled in before that transaction commits; they are NULL only inside it.
--
-- No foreign key to projects: on Citus this table is distributed by project_id beside logs
-- (storage/citus.py, COLOCATED_TABLES), so that a batch and its key are one transaction on one
-- worker. Rows go when they are older than GRAMLOGS_IDEMPOTENCY_HOURS (the server's hourly
-- upkeep, a project at a time along idempotency_keys_expiry).
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id    uuid NOT NULL,
    key           text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    request_hash  bytea NOT NULL,
    status        smallint,
    media_type    text,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (project_id, created_at);
