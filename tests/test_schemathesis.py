"""schemathesis against ``/openapi.json``, in process, as ``st run`` would test a live server.

Every phase that applies (the schema's examples, coverage of boundaries and missing or invalid
parameters, fuzzing), valid and invalid inputs (``mode = "all"``), once per kind of credentials:
a consumer key, a producer key, an ingest (write-only) key, a key of another organization, an
unknown key and no key. The
checks: no 5xx, and every response conforms to the document (status code, content type,
headers, body); invalid input is refused with a 4xx; undocumented methods get a 405 with
``Allow``; a request without credentials is refused. A fixed seed makes the run replayable.

``positive_data_acceptance`` is off: OpenAPI cannot say that ``ts_start`` must not be after
``ts_end``, or that an ingested entry's ``id`` must match its timestamp, so schema-valid requests
may rightly get a 400.

The Poly dialect names a function in its path: a generated uuid would nearly always be unknown
(404), so half of the valid ids are swapped for seeded functions, GET and DELETE each their own,
so that GETs find rows whatever DELETE has removed. OTLP protobuf bodies are arbitrary bytes
(schemathesis cannot make a valid protobuf message): they must get a 400, never a 5xx.

The write operations' ``Idempotency-Key`` is drawn from a few short strings, so most valid bodies
would meet a key already used with another body and get a 422 instead of being stored. Every
other valid key is therefore made the case's own (a number appended); the others keep the
drawn value, and with it replays and 422s.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python.asgi import shutdown_lifespans

from gramlogs.core.config import Config
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage.tenants import create_key
from gramlogs.web import loki
from gramlogs.web.app import create_app
from gramlogs.web.ingest import NDJSON_TYPES

# Deeper or different runs by hand: GRAMLOGS_SCHEMATHESIS_SEED=7 GRAMLOGS_SCHEMATHESIS_EXAMPLES=2000
SEED = int(os.environ.get("GRAMLOGS_SCHEMATHESIS_SEED", "20250601"))
MAX_EXAMPLES = int(os.environ.get("GRAMLOGS_SCHEMATHESIS_EXAMPLES", "40"))
# Each of the five runs makes at least this many requests, so 1,000 or more in all.
MIN_CASES_PER_RUN = 250
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
]
# 413 is how a batch past the entry limit (maxItems) is refused.
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
LIST = "GET /rpc/logs.listToolExecutionLogs"
TAIL = "GET /rpc/logs.tail"
EXPORT = "GET /rpc/logs.export"
HISTOGRAM = "GET /rpc/logs.histogram"
INGEST = "POST /rpc/logs.ingest"
OTLP = "POST /v1/logs"
LOKI_PUSH = "POST /loki/api/v1/push"
POLY_GET = ("GET /functions/server/{id}/logs", "GET /functions/server/{id}/system-logs")
POLY_DELETE = ("DELETE /functions/server/{id}/logs", "DELETE /functions/server/{id}/system-logs")
OPERATIONS = {
    LIST,
    TAIL,
    EXPORT,
    HISTOGRAM,
    INGEST,
    OTLP,
    LOKI_PUSH,
    *POLY_GET,
    *POLY_DELETE,
    "GET /loki/api/v1/query_range",
    "GET /loki/api/v1/query",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    # Loki's API, each operation as declared (web/loki/__init__.py).
    *(f"{op.method} {e.path}" for e in loki.ENDPOINTS for op in e.operations),
}
# schemathesis does not test the path its schema came from; test_openapi.py checks that one.
UNKNOWN_KEY = "glk_" + "A" * 43


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
                "negative_data_rejection": {
                    "enabled": True,
                    "expected-statuses": NEGATIVE_STATUSES,
                },
            },
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            # The document has no links, so there is nothing stateful to test.
            "phases": {"stateful": {"enabled": False}},
        }
    )


@schemathesis.serializer(*NDJSON_TYPES)
def _ndjson(ctx: object, value: object) -> bytes:
    # One entry per line; a generated body that is not an array (negative data) as one line.
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


schemathesis.serializer.alias(
    ["application/x-protobuf", "application/protobuf"], "application/octet-stream"
)


@dataclass(frozen=True)
class Functions:
    """Seeded functions the Poly operations are pointed at: GETs at one, DELETEs at another."""

    read: str
    delete: str


def _credentials(key: str | None, project: str, functions: Functions) -> type:
    """An auth provider that puts ``key`` (or, when None, no key at all) and ``project`` on every
    generated request, replacing the values schemathesis generated for those headers:
    ``Gram-Key`` and ``Gram-Project`` for the Gram dialect and ingestion, ``Authorization:
    Bearer`` for the Poly dialect. schemathesis still leaves them out or spoils them where a case
    tests exactly that. It also swaps half of the valid Poly function ids for seeded ones."""

    class Credentials:
        def get(self, case: object, context: object) -> Credentials:
            return self

        def set(self, case: schemathesis.Case, data: object, context: object) -> None:
            skip = {"Gram-Key", "Authorization"}
            headers: dict[str, Any] = {
                k: v for k, v in (case.headers or {}).items() if k not in skip
            }
            if case.operation.path.startswith("/functions/"):
                if key is not None:
                    headers["Authorization"] = f"Bearer {key}"
                _point_at_seeded_function(case, functions)
            else:
                if key is not None:
                    headers["Gram-Key"] = key
                headers["Gram-Project"] = project
                _own_key_for_half(headers)
            case.headers = headers  # type: ignore[assignment]  # read as any Mapping

    return Credentials


_KEY = "Idempotency-Key"
_VALID_KEY = re.compile(r"[ -~]{1,200}")
_CASE_NUMBERS = itertools.count()


def _own_key_for_half(headers: dict[str, str]) -> None:
    value = headers.get(_KEY)
    if value is not None and _VALID_KEY.fullmatch(value) and (n := next(_CASE_NUMBERS)) % 2:
        headers[_KEY] = f"{value}-{n}"


def _point_at_seeded_function(case: schemathesis.Case, functions: Functions) -> None:
    value = (case.path_parameters or {}).get("id")
    try:
        generated = uuid.UUID(str(value))
    except ValueError:
        return  # invalid on purpose: leave it
    if str(generated) == value and generated.int % 2 == 0:
        seeded = functions.delete if case.method.upper() == "DELETE" else functions.read
        case.path_parameters = {**case.path_parameters, "id": seeded}


@dataclass
class Outcome:
    cases: int = 0
    statuses: collections.Counter[tuple[str | None, int]] = field(
        default_factory=collections.Counter
    )
    logs_returned: int = 0
    poly_logs_returned: int = 0
    deleted: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.cases} cases; " + ", ".join(
            f"{label} {status}: {n}" for (label, status), n in sorted(self.statuses.items())
        )


def run_schemathesis(app: object, key: str | None, project: str, functions: Functions) -> Outcome:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config())
    # refresh_interval=None: no caching provider, so a 401 does not make schemathesis log in again.
    schema.auth(refresh_interval=None)(_credentials(key, project, functions))
    outcome = Outcome()
    try:
        _collect(from_schema(schema).execute(), outcome)
    finally:
        # schemathesis keeps the application's lifespan (our pool) running until the process
        # exits unless told otherwise.
        shutdown_lifespans()
    return outcome


def _collect(stream: Iterable[events.EngineEvent], outcome: Outcome) -> None:
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                response = interaction.response
                if response is None:
                    continue
                outcome.cases += 1
                outcome.statuses[(event.label, response.status_code)] += 1
                if response.status_code != 200:
                    continue
                if event.label == LIST:
                    outcome.logs_returned += response.content.count(b'"raw_log":')
                elif event.label in POLY_GET:
                    outcome.poly_logs_returned += response.content.count(b'"executionId":')
                elif event.label in POLY_DELETE:
                    outcome.deleted += json.loads(response.content)["deleted"]
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        outcome.failures.append(
                            f"{event.label} ({event.phase.value}) {node.name}: {failure.title}\n"
                            f"{failure.message}\n{node.failure_info.code_sample}"
                        )
            if event.status is Status.ERROR:
                outcome.failures.append(f"{event.label} ({event.phase.value}): error {event!r}")
        elif isinstance(event, events.NonFatalError):
            outcome.failures.append(f"{event.label}: {event.value!r}\n{event.info.code_sample}")
        elif isinstance(event, events.FatalError):
            outcome.failures.append(f"fatal: {event.exception!r}")


@pytest.fixture(scope="module")
async def tenants(make_tenant, pool):
    """A project with rows, so that 200s carry logs; its functions (to read and to delete);
    another organization's tenant; and an ingest key of the project."""
    tenant = await make_tenant("schemathesis")
    async with pool.acquire() as conn:
        await seed_logs(
            conn, SeedPlan(tenant.project_id, rows=500, end=datetime(2025, 6, 1, tzinfo=UTC))
        )
        seeded = await conn.fetch(
            "SELECT id FROM functions WHERE project_id = $1 ORDER BY id", tenant.project_id
        )
        ingest = await create_key(
            conn, tenant.organization_id, KeyScope.INGEST, project_id=tenant.project_id
        )
    functions = Functions(read=str(seeded[0]["id"]), delete=str(seeded[1]["id"]))
    return tenant, functions, await make_tenant("elsewhere"), ingest.key


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ("consumer", 200),
        ("producer", 200),
        # Reads and deletes are 403s (the scope lacks their permissions); writes are stored.
        ("ingest", 403),
        ("other_organization", 403),
        ("unknown", 401),
        ("missing", 401),
    ],
)
def test_schemathesis_finds_no_5xx_and_no_nonconforming_response(
    credentials, expected, tenants, database_url
):
    tenant, functions, other, ingest = tenants
    key = {
        "consumer": tenant.consumer_key,
        "producer": tenant.producer_key,
        "ingest": ingest,
        "other_organization": other.consumer_key,
        "unknown": UNKNOWN_KEY,
        "missing": None,
    }[credentials]
    # An application of its own: schemathesis runs it, lifespan included, on its own event loop.
    # Tails end after 50 ms (with their end event), so that each 200 case has a whole body.
    config = Config(
        database_url=database_url,
        pool_min=1,
        pool_max=4,
        seal_interval_s=0,
        tail_max_s=0.05,
        auth_failures_per_minute=0,
    )
    app = create_app(config)

    outcome = run_schemathesis(app, key, tenant.slug, functions)
    print(f"{credentials}: {outcome.summary()}")  # shown by pytest -rP

    assert not outcome.failures, "\n\n".join(outcome.failures[:10])
    assert outcome.cases >= MIN_CASES_PER_RUN, outcome.summary()
    assert {label for label, _ in outcome.statuses} == OPERATIONS, outcome.summary()
    assert outcome.statuses[(LIST, expected)] > 0, outcome.summary()
    if expected == 200:
        assert outcome.logs_returned > 0, outcome.summary()
        assert outcome.poly_logs_returned > 0, outcome.summary()
    if credentials == "ingest":
        assert outcome.statuses[(INGEST, 200)] > 0, outcome.summary()
        assert outcome.deleted == 0, outcome.summary()
    if credentials == "producer":
        assert outcome.statuses[(INGEST, 200)] > 0, outcome.summary()
        # Only a producer key may delete (the consumer run, before it, gets 403s).
        assert outcome.deleted > 0, outcome.summary()
