"""The OpenAPI document: valid OpenAPI 3.0, in step with Gram's published listToolExecutionLogs,
served as built, and describing the responses schemathesis cannot reach (its own path, unknown
routes, wrong methods, rate limiting, a database that is down)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import jsonschema_rs
import msgspec
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# The OpenAPI 3.0 meta-schema (from OAI/OpenAPI-Specification), as schemathesis ships it.
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR
from starlette.routing import Route

from gramlogs.core import errors
from gramlogs.core.config import Config
from gramlogs.core.errors import ErrorBody, GramlogsError
from gramlogs.web import gram, histogram, ingest, openapi, otlp, params, poly, reading
from gramlogs.web.app import create_app
from gramlogs.web.ingest import NDJSON_TYPES
from gramlogs.web.loki import query as loki_query
from gramlogs.web.observe import plain_text_errors
from testkit.ports import free_port
from tests._support import app_client

URL = "/rpc/logs.listToolExecutionLogs"
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Gram's published operation, from the Goa design of its logs service
# (ListToolExecutionLogsPayload and friends, speakeasy-api/gram server/design/toolmetrics):
# each query parameter's schema as Goa renders it, less the description.
GRAM_PARAMETERS: dict[str, dict[str, Any]] = {
    "ts_start": {"type": "string", "format": "date-time"},
    "ts_end": {"type": "string", "format": "date-time"},
    "deployment_id": {"type": "string", "format": "uuid"},
    "function_id": {"type": "string", "format": "uuid"},
    "instance": {"type": "string"},
    "level": {"type": "string", "enum": ["debug", "info", "warn", "error"]},
    "source": {"type": "string", "enum": ["stdout", "stderr"]},
    "cursor": {"type": "string", "format": "uuid"},
    "per_page": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 100, "default": 20},
    "direction": {"type": "string", "enum": ["next", "prev"], "default": "next"},
    "sort": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
}
GRAM_HEADERS = ["Gram-Key", "Gram-Project"]  # Gram also has Gram-Session: dashboard sessions
# (type, format) of each property, and the required ones.
GRAM_SCHEMAS = {
    "ListToolExecutionLogsResult": (
        {"logs": ("array", None), "pagination": (None, None)},
        None,
    ),
    "PaginationResponse": (
        {
            "per_page": ("integer", "int64"),
            "has_next_page": ("boolean", None),
            "next_page_cursor": ("string", "uuid"),
        },
        None,
    ),
    "ToolExecutionLog": (
        {
            "id": ("string", "uuid"),
            "timestamp": ("string", "date-time"),
            "instance": ("string", None),
            "level": ("string", None),
            "source": ("string", None),
            "raw_log": ("string", None),
            "message": ("string", None),
            "attributes": ("string", None),
            "project_id": ("string", "uuid"),
            "deployment_id": ("string", "uuid"),
            "function_id": ("string", "uuid"),
        },
        [
            "id",
            "timestamp",
            "instance",
            "level",
            "source",
            "raw_log",
            "project_id",
            "deployment_id",
            "function_id",
        ],
    ),
    "Error": (
        {
            "fault": ("boolean", None),
            "id": ("string", None),
            "message": ("string", None),
            "name": ("string", None),
            "temporary": ("boolean", None),
            "timeout": ("boolean", None),
        },
        ["name", "id", "message", "temporary", "timeout", "fault"],
    ),
}
GRAM_SECURITY = {
    "apikey_header_Gram-Key": ("apiKey", "header", "Gram-Key"),
    "project_slug_header_Gram-Project": ("apiKey", "header", "Gram-Project"),
}


def list_operation() -> dict:
    return openapi.DOCUMENT["paths"][URL]["get"]


def test_document_is_valid_openapi_3_0():
    assert openapi.DOCUMENT["openapi"] == "3.0.3"
    assert list(OPENAPI_30_VALIDATOR.iter_errors(openapi.build())) == []
    broken = openapi.build()
    broken["paths"][URL]["get"]["parameters"][0]["in"] = "body"
    assert list(OPENAPI_30_VALIDATOR.iter_errors(broken)) != []  # the validator does validate


def test_list_operation_has_grams_operation_id_parameters_and_security():
    operation = list_operation()
    assert operation["operationId"] == "listToolExecutionLogs"
    query = {
        p["name"]: p
        for p in operation["parameters"]
        if p["in"] == "query" and not p.get("x-gramlogs-extension")
    }
    assert list(query) == list(GRAM_PARAMETERS)
    for name, gram_schema in GRAM_PARAMETERS.items():
        ours = {k: v for k, v in query[name]["schema"].items() if k != "description"}
        assert query[name]["allowEmptyValue"] is True
        assert query[name].get("required", False) is False
        if name == "source":
            # Gram's enum, then the values gramlogs adds, marked as such.
            extra = query[name]["x-gramlogs-extension-values"]
            assert ours == {**gram_schema, "enum": gram_schema["enum"] + extra}
            assert extra == ["server", "function"]
        elif name == "instance":
            # Free text, less the NUL character that PostgreSQL text cannot hold.
            assert ours == {**gram_schema, "pattern": openapi.NO_NUL}
        else:
            assert ours == gram_schema, name
    headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert headers == GRAM_HEADERS
    assert operation["security"] == [{name: [] for name in GRAM_SECURITY}]
    schemes = openapi.DOCUMENT["components"]["securitySchemes"]
    gram_schemes = {n: s for n, s in schemes.items() if not s.get("x-gramlogs-extension")}
    assert {n: (s["type"], s["in"], s["name"]) for n, s in gram_schemes.items()} == GRAM_SECURITY


def test_keyword_is_the_one_extension_parameter_with_its_length_limit():
    extensions = [p for p in list_operation()["parameters"] if p.get("x-gramlogs-extension")]
    assert [(p["name"], p["in"]) for p in extensions] == [("keyword", "query")]
    assert extensions[0]["schema"]["maxLength"] == params.MAX_TEXT_LENGTH == 1024


def test_write_and_poly_operations_are_extensions_with_their_security():
    paths = openapi.DOCUMENT["paths"]
    gram: dict[str, list[str]] = {
        "apikey_header_Gram-Key": [],
        "project_slug_header_Gram-Project": [],
    }
    bearer: dict[str, list[str]] = {"bearer_Authorization": []}
    ingest_op = paths["/rpc/logs.ingest"]["post"]
    assert ingest_op["security"] == [gram]
    assert set(ingest_op["requestBody"]["content"]) == {"application/json", *NDJSON_TYPES}
    assert set(ingest_op["responses"]) >= {"200", "400", "401", "403", "409", "413", "415"}
    otlp_op = paths["/v1/logs"]["post"]
    assert otlp_op["security"] == [
        gram,
        {**bearer, "project_slug_header_Gram-Project": []},
    ]
    assert set(otlp_op["requestBody"]["content"]) == set(otlp.MEDIA_TYPES)
    assert set(otlp_op["responses"]["200"]["content"]) == {otlp.JSON, otlp.PROTOBUF}
    for path in ("/functions/server/{id}/logs", "/functions/server/{id}/system-logs"):
        assert set(paths[path]) == {"parameters", "get", "delete"}
        assert paths[path]["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
        get = paths[path]["get"]
        assert [p["name"] for p in get["parameters"]] == list(poly.PARAMS)
        assert "parameters" not in paths[path]["delete"]
        assert "403" in paths[path]["delete"]["responses"]
        assert "404" in get["responses"]
        for operation in (get, paths[path]["delete"]):
            assert operation["security"] == [bearer]
    for operation in (ingest_op, otlp_op, paths["/functions/server/{id}/logs"]["get"]):
        assert operation["x-gramlogs-extension"] is True
    scheme = openapi.DOCUMENT["components"]["securitySchemes"]["bearer_Authorization"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_schemas_have_grams_names_types_and_required_fields_and_mark_extensions():
    schemas = openapi.DOCUMENT["components"]["schemas"]
    for name, (gram_properties, required) in GRAM_SCHEMAS.items():
        properties = schemas[name]["properties"]
        gram_part = {
            prop: (schema.get("type"), schema.get("format"))
            for prop, schema in properties.items()
            if not schema.get("x-gramlogs-extension")
        }
        assert gram_part == gram_properties, name
        assert schemas[name].get("required") == required, name
    extensions = [
        prop
        for schema in schemas.values()
        for prop, value in schema.get("properties", {}).items()
        if value.get("x-gramlogs-extension")
    ]
    assert extensions == ["has_prev_page", "prev_page_cursor"]


def test_every_error_class_is_documented_with_its_status_and_name():
    responses = openapi.DOCUMENT["components"]["responses"]
    by_status = {
        status: responses[component] for status, (component, _) in openapi.ERROR_RESPONSES.items()
    }
    pending: list[type[GramlogsError]] = [GramlogsError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        response = by_status[cls.status]
        assert cls.name in response["x-gramlogs-error-names"], cls
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        assert "X-Request-Id" in response["headers"]
    assert "Retry-After" in by_status[429]["headers"]
    assert "Retry-After" in by_status[503]["headers"]
    assert "Allow" in by_status[405]["headers"]


def _encoded_fields(struct: type[msgspec.Struct]) -> tuple[list[str], list[str]]:
    """The names a Struct's fields have on the wire (rename applied), and the required ones; a
    tagged Struct's tag field first (Loki's resultType), always written."""
    fields = msgspec.structs.fields(struct)
    tag = struct.__struct_config__.tag_field
    first = [tag] if tag else []
    return (
        first + [f.encode_name for f in fields],
        first + [f.encode_name for f in fields if f.required],
    )


async def test_served_schemas_have_each_wire_structs_fields_and_required_ones(
    client: httpx.AsyncClient,
):
    served = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert len(set(openapi.WIRE_STRUCTS.values())) == len(openapi.WIRE_STRUCTS)
    for struct, name in openapi.WIRE_STRUCTS.items():
        names, required = _encoded_fields(struct)
        assert list(served[name]["properties"]) == names, name
        assert served[name].get("required", []) == required, name


def test_every_public_struct_of_the_wire_modules_is_a_wire_struct():
    found = {
        value
        for module in (gram, reading, histogram, ingest, poly, errors, loki_query)
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
        and not value.__name__.startswith("_")
    }
    assert found == set(openapi.WIRE_STRUCTS)


def test_the_struct_schemas_are_generated_from_the_structs():
    schemas = openapi.DOCUMENT["components"]["schemas"]
    generated = openapi.struct_schemas(openapi.WIRE_STRUCTS)
    assert {name: schemas[name] for name in generated} == generated
    assert list(generated) == list(openapi.WIRE_STRUCTS.values())

    # A field added to a Struct is in its schema, with what its Meta says.
    class GrownError(ErrorBody):
        hint: Annotated[str, msgspec.Meta(description="What to try next", examples=["later"])]
        retries: int = 0

    grown = {GrownError if s is ErrorBody else s: n for s, n in openapi.WIRE_STRUCTS.items()}
    error = openapi.struct_schemas(grown)["Error"]
    assert error["properties"]["hint"] == {
        "type": "string",
        "description": "What to try next",
        "example": "later",
    }
    assert error["properties"]["retries"] == {"type": "integer", "default": 0}
    assert error["required"] == [*schemas["Error"]["required"], "hint"]
    assert {k: v for k, v in error["properties"].items() if k not in ("hint", "retries")} == (
        schemas["Error"]["properties"]
    )


def test_a_struct_held_by_a_wire_struct_must_be_named():
    with pytest.raises(ValueError, match=r"LogEntry.*Pagination"):
        openapi.struct_schemas({gram.ListResult: "ListToolExecutionLogsResult"})


def _subschemas(schema: Any) -> list[dict]:
    if isinstance(schema, list):
        return [s for item in schema for s in _subschemas(item)]
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key, value in schema.items():
        if key == "properties":
            found += [s for v in value.values() for s in _subschemas(v)]
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            found += _subschemas(value)
    return found


# What msgspec writes and OpenAPI 3.0 lacks or reads otherwise, in Structs of each kind.
class _Inner(msgspec.Struct, tag="inner"):
    n: Annotated[int, msgspec.Meta(gt=0)]


class _Outer(msgspec.Struct, kw_only=True):
    """Wrapped
    docstring.

    Second paragraph."""

    inner: Annotated[_Inner | None, msgspec.Meta(description="maybe")] = None
    described: Annotated[_Inner, msgspec.Meta(description="an inner")]
    when: Annotated[str | None, msgspec.Meta(examples=["x", "y"])] = None


def test_struct_schemas_are_openapi_3_0_not_json_schema_2020():
    schemas = openapi.struct_schemas({_Outer: "Out", _Inner: "In"})
    assert schemas["Out"]["description"] == "Wrapped docstring.\n\nSecond paragraph."
    assert "title" not in schemas["Out"]
    ref = {"$ref": "#/components/schemas/In"}
    assert schemas["Out"]["properties"] == {
        "inner": {"type": "object", "allOf": [ref], "description": "maybe", "nullable": True},
        "described": {"allOf": [ref], "description": "an inner"},
        "when": {"type": "string", "example": "x", "nullable": True},
    }
    assert schemas["Out"]["required"] == ["described"]
    assert schemas["In"]["properties"]["n"] == {
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    document = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": schemas},
    }
    assert list(OPENAPI_30_VALIDATOR.iter_errors(document)) == []
    # And the document's own: no null type, const, examples or $ref with siblings anywhere.
    for schema in _subschemas(list(openapi.DOCUMENT["components"]["schemas"].values())):
        assert schema.get("type") != "null" and not isinstance(schema.get("type"), list)
        assert "const" not in schema and "examples" not in schema and "title" not in schema
        assert "$ref" not in schema or len(schema) == 1, schema
        if schema.get("nullable"):
            assert "type" in schema, schema


def test_a_union_3_0_cannot_make_nullable_is_refused():
    class Either(msgspec.Struct):
        value: int | str | None = None

    with pytest.raises(ValueError, match="nullable"):
        openapi.struct_schemas({Either: "Either"})


async def test_openapi_json_serves_the_document(client: httpx.AsyncClient):
    first = await client.get("/openapi.json")
    second = await client.get("/openapi.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.content == second.content
    assert json.loads(first.content) == openapi.build()
    schema = schemathesis.openapi.from_dict(openapi.build())
    schema["/openapi.json"]["GET"].Case().validate_response(first, checks=CHECKS)


def _error_validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(openapi.DOCUMENT["components"]["schemas"]["Error"])


def _assert_documented_error(response: httpx.Response, component: str) -> None:
    documented = openapi.DOCUMENT["components"]["responses"][component]
    body = response.json()
    _error_validator().validate(body)
    assert body["name"] in documented["x-gramlogs-error-names"]
    assert body["id"] == response.headers["x-request-id"]
    assert response.headers["content-type"] == "application/json"
    for header in documented["headers"]:
        assert header.lower() in response.headers, header


async def test_unknown_route_is_the_documented_404(client: httpx.AsyncClient):
    r = await client.get("/rpc/logs.nope")
    assert r.status_code == 404
    _assert_documented_error(r, "NotFound")
    assert openapi.DOCUMENT["x-gramlogs-any-route"]["404"] == {
        "$ref": "#/components/responses/NotFound"
    }


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def _documented_methods(path: str) -> set[str]:
    return {m.upper() for m in openapi.DOCUMENT["paths"][path] if m != "parameters"}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (path, method)
        for path in openapi.DOCUMENT["paths"]
        for method in METHODS
        if method not in _documented_methods(path)
    ],
)
async def test_a_method_a_route_lacks_is_the_documented_405(client, path, method):
    url = path.replace("{id}", "00000000-0000-7000-8000-000000000000")
    r = await client.request(method, url)
    assert r.status_code == 405
    if plain_text_errors(path):  # Loki's errors are plain text, as Loki's are
        documented = openapi.DOCUMENT["components"]["responses"]["LokiMethodNotAllowed"]
        assert list(documented["content"]) == ["text/plain"]
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text == "method not allowed on this route"
    else:
        _assert_documented_error(r, "MethodNotAllowed")
    documented = _documented_methods(path)
    # Starlette answers HEAD wherever there is GET; the order of Allow varies (a set).
    head = {"HEAD"} if "GET" in documented else set()
    assert set(r.headers["allow"].split(", ")) == documented | head


async def test_rate_limited_request_is_the_documented_429(database_url, make_tenant):
    tenant = await make_tenant()
    schema = schemathesis.openapi.from_dict(openapi.build())
    # One token per 1,000 s: however slow the first request, the second finds the bucket empty.
    async with app_client(database_url, rate_limit=0.001, rate_limit_burst=1) as c:
        for path in (URL, "/healthz"):
            await c.get(path, headers=tenant.headers())
            r = await c.get(path, headers=tenant.headers())
            assert r.status_code == 429
            _assert_documented_error(r, "TooManyRequests")
            schema[path]["GET"].Case().validate_response(r, checks=CHECKS)


async def test_database_down_is_the_documented_503(make_tenant):
    tenant = await make_tenant()
    schema = schemathesis.openapi.from_dict(openapi.build())
    # Nothing listens on the port; pool_min=0 lets the application start without the database.
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with app_client(down, pool_min=0, acquire_timeout_ms=500) as c:
        for path in (URL, "/readyz"):
            r = await c.get(path, headers=tenant.headers())
            assert r.status_code == 503
            _assert_documented_error(r, "Unavailable")
            schema[path]["GET"].Case().validate_response(r, checks=CHECKS)


def test_operation_ids_are_unique():
    operations = [
        op["operationId"]
        for path in openapi.DOCUMENT["paths"].values()
        for op in path.values()
        if isinstance(op, dict)  # not a path's shared parameters
    ]
    assert len(operations) == len(set(operations))


def test_export_is_an_extension_with_the_list_parameters_but_per_page_and_a_limit():
    op = openapi.DOCUMENT["paths"]["/rpc/logs.export"]["get"]
    listed = openapi.DOCUMENT["paths"][URL]["get"]["parameters"]
    assert op[openapi.EXTENSION] is True
    assert op["security"] == openapi.DOCUMENT["paths"][URL]["get"]["security"]
    names = [p["name"] for p in op["parameters"]]
    assert names == [p["name"] for p in listed if p["name"] != "per_page"] + ["limit"]
    limit = op["parameters"][-1]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100_000, 10_000)
    ok = op["responses"]["200"]
    assert ok["content"] == {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/ToolExecutionLog"}}
    }
    assert {"Content-Disposition", "Gramlogs-Export-Limit"} <= set(ok["headers"])


# The app's routes that are no API operation: the viewer's page and files (docs/viewer.md).
NOT_OPERATIONS = {"/", "/viewer/{name:path}"}


def _app_routes() -> dict[str, set[str]]:
    """Each path the application routes, with its methods (Starlette adds HEAD to GET)."""
    app = create_app(Config())
    return {
        route.path: (route.methods or set()) - {"HEAD"}
        for route in app.routes
        if isinstance(route, Route)
    }


def test_every_route_is_documented_and_every_documented_path_is_routed():
    routes = _app_routes()
    documented = {path: _documented_methods(path) for path in openapi.DOCUMENT["paths"]}
    assert set(routes) >= NOT_OPERATIONS
    undocumented = set(routes) - set(documented) - NOT_OPERATIONS
    assert undocumented == set(), f"routes missing from /openapi.json: {sorted(undocumented)}"
    unrouted = set(documented) - set(routes)
    assert unrouted == set(), f"paths in /openapi.json that no route serves: {sorted(unrouted)}"
    assert {path: routes[path] for path in documented} == documented


def test_a_parameter_is_parsed_by_the_declaration_the_document_lists():
    # Bounds and enums live in one place: the declaration's schema is what its parser enforces.
    per_page = gram.PER_PAGE
    listed = next(p for p in list_operation()["parameters"] if p["name"] == per_page.name)
    assert listed["schema"]["maximum"] == per_page.schema["maximum"] == gram.MAX_PER_PAGE
    assert per_page.value({}) == listed["schema"]["default"]
    with pytest.raises(errors.InvalidRange):
        per_page.value({"per_page": str(listed["schema"]["maximum"] + 1)})
    source = next(p for p in list_operation()["parameters"] if p["name"] == "source")
    for value in source["schema"]["enum"]:
        assert reading.FILTERS[-1].value({"source": value}) == value
