"""gramlogs: a log query server for Gram's and PolyAPI's Logs APIs, over PostgreSQL."""

__version__ = "0.1.0"
