-- Schema version 3: keyword search through block summaries instead of a trigram entry per line.
--
-- Version 2's logs_keyword_tenant gave every line ~150 GIN entries (its trigrams, its project
-- and function): a COPY into logs ran at half its speed without it, slower as the table grew.
-- Now each stored batch is cut by function, then into blocks of 256 lines in id order, and
-- log_blocks keeps one row per block: its function, its id range and its trigrams (hashed to
-- 16-bit codes, gramlogs/storage/grams.py) under one GIN index, ~10 entries per line, written
-- in the same transaction as the lines. A keyword page walks the blocks that hold every trigram
-- of the word, nearest first, and reads only their lines (store.py). Measured in
-- benchmarks/index_costs.md and benchmarks/keyword.md.
--
-- A block whose grams is NULL is not summarised yet: it may hold any word. This migration
-- makes one such block per function over the lines already stored; the server's maintenance
-- summarises them in the background (blocks.summarise_pending), newest lines first, and until
-- then a keyword search of those lines reads them all, as a search without an index does.
CREATE TABLE IF NOT EXISTS log_blocks (
    project_id   uuid NOT NULL,
    function_id  uuid NOT NULL,
    lo           uuid NOT NULL,
    hi           uuid NOT NULL,
    grams        int4[]
);
-- No key identifies a block (a batch sent twice makes its blocks twice, harmlessly), so the
-- whole row identifies it to logical replication: Citus moves shards that way.
ALTER TABLE log_blocks REPLICA IDENTITY FULL;
-- btree_gin (migrations/0002) gives the uuids their GIN operator class. No other index: the
-- table holds a row per 256 lines, small enough for retention and the unsummarised blocks to
-- read whole, and a btree on the id range tempts the planner to walk a project's blocks and
-- unpack every block's codes instead of asking this index.
CREATE INDEX IF NOT EXISTS log_blocks_grams ON log_blocks
    USING gin (project_id, function_id, grams);
-- Each function's first and last line, from logs_function's index: the functions that have
-- lines, one index probe each (a loose index scan), then two probes for the bounds.
WITH RECURSIVE stored (project_id, function_id) AS (
    (SELECT project_id, function_id FROM logs ORDER BY project_id, function_id LIMIT 1)
    UNION ALL
    SELECT n.project_id, n.function_id
    FROM stored s
    CROSS JOIN LATERAL (
        SELECT project_id, function_id FROM logs
        WHERE (project_id, function_id) > (s.project_id, s.function_id)
        ORDER BY project_id, function_id LIMIT 1
    ) n
)
INSERT INTO log_blocks (project_id, function_id, lo, hi, grams)
SELECT s.project_id, s.function_id,
       (SELECT id FROM logs WHERE project_id = s.project_id AND function_id = s.function_id
        ORDER BY id LIMIT 1),
       (SELECT id FROM logs WHERE project_id = s.project_id AND function_id = s.function_id
        ORDER BY id DESC LIMIT 1),
       NULL
FROM stored s;
DROP INDEX IF EXISTS logs_keyword_tenant;
