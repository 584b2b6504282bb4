"""Running gramlogs on one machine: the embedded PostgreSQL, a local Citus cluster, the demo
project and generated lines. The server works without it when a database is configured."""
