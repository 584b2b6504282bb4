-- gramlogs schema, version 1. Applied by `gramlogs migrate` to an empty database; later changes
-- go in migrations/NNNN_name.sql and upgrade existing databases in place.

CREATE TABLE IF NOT EXISTS organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS projects (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    slug             text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug)
);

-- Keys are stored only as SHA-256 of the whole key: keys carry 256 random bits, so a fast hash
-- is as safe as a slow one and keeps the per-request lookup to one index probe.
CREATE TABLE IF NOT EXISTS api_keys (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    project_id       uuid REFERENCES projects (id),
    name             text NOT NULL,
    scope            text NOT NULL CHECK (scope IN ('consumer', 'producer')),
    key_hash         bytea NOT NULL UNIQUE,
    key_prefix       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);

-- Per-function settings (Poly's logsEnabled). Keyed by project too, so that no tenant can claim
-- another tenant's function id: the same id in two projects is two functions.
CREATE TABLE IF NOT EXISTS functions (
    project_id    uuid NOT NULL REFERENCES projects (id),
    id            uuid NOT NULL,
    logs_enabled  boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id)
);
CREATE INDEX IF NOT EXISTS functions_id ON functions (id);

-- One row per log line. The id is a UUIDv7 whose first 64 bits are the line's own timestamp
-- (gramlogs/ids.py), so (project_id, id) orders a project's lines by time: every page is a
-- keyset range scan on one of the indexes below, whatever its depth. The table is partitioned
-- by id range, i.e. by time (block "Partitioning" at the end of this file).
CREATE TABLE IF NOT EXISTS logs (
    project_id     uuid NOT NULL,
    id             uuid NOT NULL,
    "timestamp"    timestamptz NOT NULL,
    instance       text NOT NULL DEFAULT '',
    level          text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    source         text NOT NULL CHECK (source IN ('server', 'function', 'stdout', 'stderr')),
    raw_log        text NOT NULL CHECK (octet_length(raw_log) <= 16384),
    message        text,
    attributes     jsonb NOT NULL DEFAULT '{}',
    deployment_id  uuid NOT NULL,
    function_id    uuid NOT NULL,
    execution_id   text,
    PRIMARY KEY (project_id, id)
) PARTITION BY RANGE (id);

-- One index per equality filter, each ending in id so that a filtered page is an ordered
-- range scan that stops after per_page + 1 rows. A time window is an id range on the primary key.
CREATE INDEX IF NOT EXISTS logs_function ON logs (project_id, function_id, id);
CREATE INDEX IF NOT EXISTS logs_deployment ON logs (project_id, deployment_id, id);
CREATE INDEX IF NOT EXISTS logs_instance ON logs (project_id, instance, id);
CREATE INDEX IF NOT EXISTS logs_level ON logs (project_id, level, id);
CREATE INDEX IF NOT EXISTS logs_source ON logs (project_id, source, id);

-- == Partitioning and retention ============================================================
-- logs is partitioned by id range, i.e. by time. Two catch-all partitions cover every id from
-- the start: logs_past [MINVALUE, B) and logs_future [B, MAXVALUE), so an insert can never miss a
-- partition. gramlogs/partitions.py then keeps weekly partitions (logs_pYYYYMMDD) between them,
-- from the retention horizon to a week ahead, splitting the catch-alls as time reaches them.
-- No DEFAULT partition: once it holds rows it blocks creating any partition overlapping them.
-- B is an arbitrary start (the lowest id of 2000-01-01); the first maintenance run moves it.
CREATE TABLE IF NOT EXISTS logs_past PARTITION OF logs
    FOR VALUES FROM (MINVALUE) TO ('00dc6acf-ac00-7000-0000-000000000000');
CREATE TABLE IF NOT EXISTS logs_future PARTITION OF logs
    FOR VALUES FROM ('00dc6acf-ac00-7000-0000-000000000000') TO (MAXVALUE);

-- Per-project retention in days; NULL: the server's default (GRAMLOGS_RETENTION_DAYS, 30).
ALTER TABLE projects ADD COLUMN IF NOT EXISTS retention_days integer
    CHECK (retention_days BETWEEN 1 AND 36500);

-- ---- Keyword search and the Poly dialect ---------------------------------------------------
-- `keyword` is a case-insensitive substring of message or raw_log (ILIKE with %, _ and \
-- escaped). A trigram GIN index answers it without reading every line of the project; see
-- pages.py for how a page chooses between it and the ordered (project_id, id) scans above.
-- One expression holds both columns, so a trigram they share (a JSON line's message is in its
-- raw line) is indexed once: 40% smaller than a two-column index, and cheaper to insert into.
-- A keyword without \x01 matches the expression exactly when it matches message or raw_log.
-- (Version 2, migrations/0002, replaces this index with one that holds project and function.)
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS logs_keyword ON logs
    USING gin ((coalesce(message, '') || E'\x01' || raw_log) gin_trgm_ops);
-- Poly's executionId filter: one run's lines, newest first, without walking the function's
-- whole history. Lines without an execution (server lines) are left out of the index.
CREATE INDEX IF NOT EXISTS logs_execution ON logs (project_id, execution_id, id)
    WHERE execution_id IS NOT NULL;
