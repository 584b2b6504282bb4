-- Schema version 3: keyword search through block summaries instead of a trigram entry per line.
--
-- Version 2's logs_keyword_tenant gave every line ~150 GIN entries (its trigrams, its project
-- and function): a COPY into logs ran at half its speed without it, slower as the table grew.
-- Now each stored batch is cut by function, then into blocks of 256 lines in id order, and
-- log_blocks keeps one row per block: its function, its id range and its trigrams (hashed to
-- 16-bit codes, gramlogs/storage/trigrams.py) under one GIN index, ~10 entries per line, written
-- in the same transaction as the lines. A keyword page walks the blocks that hold every trigram
-- of the word, nearest first, and reads only their lines (pages.py). Measured in
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
-- btree_gin (migrations/0002) gives the uuids their GIN operator class. No btree on the id
-- range: the table holds a row per 256 lines, small enough for retention to read whole, and
-- such an index tempts the planner to walk a project's blocks and unpack every block's codes
-- instead of asking this one.
CREATE INDEX IF NOT EXISTS log_blocks_grams ON log_blocks
    USING gin (project_id, function_id, grams);
-- The blocks not summarised yet, which every search asks for too: none once maintenance has
-- summarised them, so this index is empty and costs a write nothing.
CREATE INDEX IF NOT EXISTS log_blocks_pending ON log_blocks (project_id, function_id)
    WHERE grams IS NULL;
-- Each function's first and last line (canonical uuid text sorts as the uuid does; PostgreSQL
-- before 18 has no min(uuid)). One pass over logs (a GROUP BY by project, which Citus
-- runs on every worker at once), so run `gramlogs migrate` in a quiet hour on a large database;
-- on Citus, run `gramlogs citus distribute` right after it, to distribute log_blocks.
INSERT INTO log_blocks (project_id, function_id, lo, hi, grams)
SELECT project_id, function_id,
       min(id::text COLLATE "C")::uuid, max(id::text COLLATE "C")::uuid, NULL
FROM logs
GROUP BY project_id, function_id;
DROP INDEX IF EXISTS logs_keyword_tenant;
