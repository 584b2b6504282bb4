-- Schema version 8: a page's rows statement as a function, for Citus to run on the worker that
-- holds the project's shard (gramlogs/storage/routing.py).
--
-- On one PostgreSQL the server keeps a generic plan of each page statement per connection
-- (pages.PLAN_SETTINGS). Citus cannot route a generic plan of it, so on a cluster the worker
-- planned every page's statement for its values: ~1 ms over a shard's time partitions, most of
-- a page's time there (benchmarks/citus.md). Distributed by its first argument and colocated
-- with logs (citus.distribute), a call of this function is delegated whole to that worker.
-- There it runs the statement on the shard itself, as a statement prepared once per worker
-- session: a generic plan, kept, as on one node. Through the name `logs` it would not do:
-- Citus plans every statement over a distributed table again, for its values, also inside a
-- function on a worker (1.2-2.6 ms a call there, against 0.1-0.2 for the shard's own plan).
--
-- The statement is the one pages._page_sql makes, for the filters given (a NULL argument is a
-- filter not given): one prepared statement per shard, sort direction and set of filters.
-- Where the shard is not on this node (a call Citus did not delegate) or there is no Citus,
-- it reads `logs` instead: planned for its values on a coordinator, prepared on one node.
--
-- VOLATILE: PREPARE is refused in a function that is not. The settings are pages.PLAN_SETTINGS.
CREATE OR REPLACE FUNCTION gramlogs_page_rows(
    p_project_id uuid, p_lo uuid, p_hi uuid, p_back_lo uuid, p_back_hi uuid, p_limit integer,
    p_ascending boolean, p_function_id uuid, p_deployment_id uuid, p_instance text,
    p_level text, p_source text, p_execution_id text, p_sources text[]
)
RETURNS TABLE (
    id uuid, "timestamp" timestamptz, instance text, level text, source text, raw_log text,
    message text, attributes jsonb, project_id uuid, deployment_id uuid, function_id uuid,
    execution_id text, has_back boolean
)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_sort = off SET jit = off
AS $function$
DECLARE
    relation text := 'logs';
    shard bigint := 0;
    filters text := '';
    shape integer := 0;
    scan text := CASE WHEN p_ascending THEN 'ASC' ELSE 'DESC' END;
    probe text := CASE WHEN p_ascending THEN 'DESC' ELSE 'ASC' END;
    prepared text;
    sql text;
BEGIN
    -- Parameters $7 to $13, in filters.EQUALITY_FILTERS order; each filter given is a bit of
    -- the statement's name.
    IF p_function_id IS NOT NULL THEN
        filters := filters || ' AND function_id = $7'; shape := shape | 1;
    END IF;
    IF p_deployment_id IS NOT NULL THEN
        filters := filters || ' AND deployment_id = $8'; shape := shape | 2;
    END IF;
    IF p_instance IS NOT NULL THEN
        filters := filters || ' AND instance = $9'; shape := shape | 4;
    END IF;
    IF p_level IS NOT NULL THEN
        filters := filters || ' AND level = $10'; shape := shape | 8;
    END IF;
    IF p_source IS NOT NULL THEN
        filters := filters || ' AND source = $11'; shape := shape | 16;
    END IF;
    IF p_execution_id IS NOT NULL THEN
        filters := filters || ' AND execution_id = $12'; shape := shape | 32;
    END IF;
    IF p_sources IS NOT NULL THEN
        filters := filters || ' AND source = ANY($13)'; shape := shape | 64;
    END IF;
    IF to_regproc('get_shard_id_for_distribution_column') IS NOT NULL THEN
        shard := get_shard_id_for_distribution_column('logs', p_project_id);
        relation := shard_name('logs'::regclass, shard);
        IF to_regclass(relation) IS NULL THEN
            relation := 'logs';
            shard := -1;
        END IF;
    END IF;
    sql := format(
        'SELECT id, "timestamp", instance, level, source, raw_log, message, attributes,'
        ' project_id, deployment_id, function_id, execution_id,'
        ' (SELECT true FROM %1$s WHERE project_id = $1 AND id BETWEEN $4 AND $5%2$s'
        ' ORDER BY id %4$s LIMIT 1) AS has_back'
        ' FROM %1$s WHERE project_id = $1 AND id BETWEEN $2 AND $3%2$s'
        ' ORDER BY id %3$s LIMIT $6',
        relation, filters, scan, probe
    );
    IF shard < 0 THEN
        -- Citus plans a statement over the distributed table for its values, and a statement
        -- given its values with USING is planned for them.
        RETURN QUERY EXECUTE sql USING p_project_id, p_lo, p_hi, p_back_lo, p_back_hi, p_limit,
            p_function_id, p_deployment_id, p_instance, p_level, p_source, p_execution_id,
            p_sources;
        RETURN;
    END IF;
    prepared := format('gramlogs_page_rows_%s_%s_%s', shard, lower(scan), shape);
    IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements AS p WHERE p.name = prepared) THEN
        EXECUTE format(
            'PREPARE %I (uuid, uuid, uuid, uuid, uuid, integer, uuid, uuid, text, text, text,'
            ' text, text[]) AS %s',
            prepared, sql
        );
    END IF;
    -- EXECUTE takes no parameters of its own: the values go in as literals.
    RETURN QUERY EXECUTE format(
        'EXECUTE %I(%L, %L, %L, %L, %L, %s, %L, %L, %L, %L, %L, %L, %L)',
        prepared, p_project_id, p_lo, p_hi, p_back_lo, p_back_hi, p_limit, p_function_id,
        p_deployment_id, p_instance, p_level, p_source, p_execution_id, p_sources
    );
END
$function$;
