"""The harness shared by the tests and the benchmarks: free ports, PostgreSQL servers and
databases of their own, ``gramlogs serve`` as a subprocess, the benchmarks' seeded datasets and
wrk. Not part of the package."""
