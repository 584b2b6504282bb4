-- Schema version 3: keyword search through block summaries instead of a trigram entry per line.
--
-- Version 2's logs_keyword_tenant gave every line ~150 GIN entries (its trigrams, its project
-- and function): a COPY into logs ran at a fifth of its speed without it, slower as the table
-- grew. Now each stored batch is cut into blocks of 256 lines in id order, and log_blocks keeps
-- one row per block: the block's id range and its trigrams (hashed to 16-bit codes,
-- gramlogs/storage/grams.py) under one GIN index, ~10 entries per line, written in the same
-- transaction as the lines. A keyword page walks the blocks that hold every trigram of the
-- word, newest (or oldest) first, and reads only their id ranges (store.py). Measured in
-- benchmarks/index_costs.md.
--
-- A block whose grams is NULL is not summarised yet: it may hold any word. This migration
-- makes one such block per project over the lines already stored; the server's maintenance
-- summarises them in the background (grams.summarise_pending), newest lines first, and until
-- then a keyword search of those lines reads them all, as a search without an index does.
CREATE TABLE IF NOT EXISTS log_blocks (
    project_id  uuid NOT NULL,
    lo          uuid NOT NULL,
    hi          uuid NOT NULL,
    grams       int4[]
);
-- btree_gin (migrations/0002) gives project_id its GIN operator class.
CREATE INDEX IF NOT EXISTS log_blocks_grams ON log_blocks USING gin (project_id, grams);
-- No other index: the table holds a row per 256 lines, small enough for retention and the
-- unsummarised blocks to read whole, and a btree on (project_id, hi) tempts the planner to walk
-- a project's blocks and unpack every block's codes instead of asking the GIN index.
INSERT INTO log_blocks (project_id, lo, hi, grams)
SELECT p.id, b.lo, b.hi, NULL
FROM projects p
CROSS JOIN LATERAL (
    SELECT (SELECT id FROM logs WHERE project_id = p.id ORDER BY id LIMIT 1) AS lo,
           (SELECT id FROM logs WHERE project_id = p.id ORDER BY id DESC LIMIT 1) AS hi
) b
WHERE b.lo IS NOT NULL;
DROP INDEX IF EXISTS logs_keyword_tenant;
