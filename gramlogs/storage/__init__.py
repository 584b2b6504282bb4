"""The database layer: the pool, the page statements, writes, tenants and keys, schema,
partitions and retention. It knows nothing of HTTP."""
