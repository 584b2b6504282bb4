-- The live tail's journal (docs/tail.md; gramlogs/storage/journal.py). The schema version is
-- the file's number.
--
-- Every transaction that stores lines for a project takes the project's next sequence number
-- from tail_heads, as its last statement, and appends one tail_journal row: that number and the
-- ids it stored. The number is an UPDATE of the project's row, whose lock is held until COMMIT,
-- so a project's transactions take their numbers in the order they commit: a reader that has
-- seen number n has seen every number below it, and "the rows after n" misses nothing, late
-- lines included. A rolled-back transaction gives its number back (the numbers have no gaps).
--
-- No foreign keys to projects: on Citus both tables are distributed by project_id beside logs
-- (storage/citus.py, COLOCATED_TABLES), so a batch and its journal row are one transaction on
-- one worker. Rows older than GRAMLOGS_TAIL_RESUME_HOURS go, oldest first (the server's upkeep).
CREATE TABLE IF NOT EXISTS tail_heads (
    project_id  uuid PRIMARY KEY,
    seq         bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS tail_journal (
    project_id    uuid NOT NULL,
    seq           bigint NOT NULL,
    lines         integer NOT NULL,
    ids           uuid[] NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, seq)
);
