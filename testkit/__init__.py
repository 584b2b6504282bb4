"""The harness shared by the tests and the benchmarks: free ports, PostgreSQL servers and
databases of their own, and ``gramlogs serve`` as a subprocess. Not part of the package."""
