-- Schema version 7: older lines sealed into compressed blocks (gramlogs/storage/sealed.py).
--
-- A line costs ~850 bytes as a row of logs with its indexes. The server's upkeep now moves a
-- function's older lines, a few thousand at a time in id order, into one row of log_sealed:
-- the lines compressed with zstd in Python (gramlogs/storage/codec.py; no extension), with
-- per-block postings for the equality filters (one entry per distinct value per block, not
-- per line), per-level and per-source counts (histograms count blocks, not lines) and the
-- block's trigram codes (keyword search, as log_blocks does for the rows). Measured in
-- benchmarks/sealing.md and benchmarks/scale_ingest.md.
--
-- A line is in exactly one place: a row of logs or a block. Sealing deletes the rows and
-- writes their block in one transaction, and reads take one snapshot, so a page sees each
-- line once whatever is being sealed.
CREATE TABLE IF NOT EXISTS log_sealed (
    project_id   uuid NOT NULL,
    function_id  uuid NOT NULL,
    lo           uuid NOT NULL,
    hi           uuid NOT NULL,
    lines        integer NOT NULL CHECK (lines > 0),
    levels       integer[] NOT NULL,  -- lines per level: debug, info, warn, error
    sources      integer[] NOT NULL,  -- lines per source: server, function, stdout, stderr
    instances    text[] NOT NULL,
    deployments  uuid[] NOT NULL,
    executions   text[] NOT NULL,
    grams        int4[] NOT NULL,
    keys         bytea NOT NULL,
    texts        bytea[] NOT NULL,
    -- A line is in one block, so no two blocks of a function start at the same id.
    PRIMARY KEY (project_id, function_id, lo)
);
-- Already compressed: TOAST stores them as they are instead of trying pglz first.
ALTER TABLE log_sealed ALTER COLUMN keys SET STORAGE EXTERNAL;
ALTER TABLE log_sealed ALTER COLUMN texts SET STORAGE EXTERNAL;
-- A page walks blocks nearest first: by lo upwards, by hi downwards; of one function (Poly,
-- a function filter) or of the whole project. lo/hi in each: the other end is tested in the
-- index. A block is a few thousand lines, so these are a few bytes a line.
CREATE INDEX IF NOT EXISTS log_sealed_function_hi ON log_sealed (project_id, function_id, hi, lo);
CREATE INDEX IF NOT EXISTS log_sealed_lo ON log_sealed (project_id, lo, hi);
CREATE INDEX IF NOT EXISTS log_sealed_hi ON log_sealed (project_id, hi, lo);
CREATE INDEX IF NOT EXISTS log_sealed_grams ON log_sealed USING gin (project_id, function_id, grams);

-- The newest lines are few (sealing keeps them so) and recent, so the equality btrees of
-- version 1 cost more at every insert (~550 of a line's 850 bytes, most of its write time)
-- than they save a page: a filtered page of the newest rows reads the project's range of the
-- primary key. The function's btree stays (sealing reads a function's oldest rows; every Poly
-- page names a function), and so does the execution one (Poly's executionId, a needle).
-- On an upgraded database with many rows, pages filtered by these columns read the project's
-- primary-key range of rows until the server has sealed them (it starts at once, 4,096 lines
-- of a function at a time, back to back): run `gramlogs migrate` in a quiet hour.
DROP INDEX IF EXISTS logs_deployment;
DROP INDEX IF EXISTS logs_instance;
DROP INDEX IF EXISTS logs_level;
DROP INDEX IF EXISTS logs_source;
