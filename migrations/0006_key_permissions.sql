-- Key scopes as sets of permissions (gramlogs/core/keys.py; docs/operations.md, "Security
-- model"). The schema version is the file's number.
--
-- Two new scopes: 'ingest' (write only: the key that sits in every function and collector)
-- and 'admin' (read, write and delete). 'producer' stays, with the power it always had (read,
-- write and delete), so that every key made before this version works as it did; no row is
-- rewritten.
--
-- On Citus api_keys is a reference table: Citus applies the constraint on every node.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check
    CHECK (scope IN ('consumer', 'ingest', 'admin', 'producer'));
