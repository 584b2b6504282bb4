"""The HTTP layer: Starlette handlers, request parsing, the OpenAPI document and the server.
It builds no SQL: it calls the storage layer."""
