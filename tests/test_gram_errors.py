"""Bad input to listToolExecutionLogs: the status, the Goa error name, a message naming the
parameter, and the one error shape; fuzzed query strings never yield a 500."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gramlogs.core.errors import ErrorBody, InvalidRange, error_body
from tests._support import key_answers_expire

URL = "/rpc/logs.listToolExecutionLogs"
ERROR_KEYS = ["name", "id", "message", "temporary", "timeout", "fault"]


def assert_error(r: httpx.Response, status: int, name: str, message: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ERROR_KEYS
    assert body["name"] == name
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", body["id"])
    assert body["id"] == r.headers["x-request-id"]
    assert (body["temporary"], body["timeout"], body["fault"]) == (False, False, False)
    if message is not None:
        assert body["message"] == message
    return body


def test_error_body_is_goas_service_error_shape() -> None:
    body = error_body(InvalidRange.at_most("per_page", 100, 101), "abcdefgh")
    assert body == ErrorBody(
        name="invalid_range",
        id="abcdefgh",
        message="per_page must be lesser or equal than 100 but got value 101",
        temporary=False,
        timeout=False,
        fault=False,
    )


BAD_PARAMS = [
    (
        "per_page",
        "101",
        "invalid_range",
        "per_page must be lesser or equal than 100 but got value 101",
    ),
    ("per_page", "0", "invalid_range", "per_page must be greater or equal than 1 but got value 0"),
    (
        "per_page",
        "-5",
        "invalid_range",
        "per_page must be greater or equal than 1 but got value -5",
    ),
    (
        "per_page",
        "99999999999999999999999",
        "invalid_range",
        "per_page must be lesser or equal than 100 but got value 99999999999999999999999",
    ),
    (
        "per_page",
        "ten",
        "invalid_field_type",
        'invalid value "ten" for per_page, must be a integer',
    ),
    (
        "per_page",
        "1.5",
        "invalid_field_type",
        'invalid value "1.5" for per_page, must be a integer',
    ),
    (
        "per_page",
        "\uff11",
        "invalid_field_type",
        'invalid value "\uff11" for per_page, must be a integer',
    ),
    (
        "sort",
        "up",
        "invalid_enum_value",
        'value of sort must be one of "asc", "desc" but got value "up"',
    ),
    (
        "direction",
        "back",
        "invalid_enum_value",
        'value of direction must be one of "next", "prev" but got value "back"',
    ),
    (
        "level",
        "fatal",
        "invalid_enum_value",
        'value of level must be one of "debug", "info", "warn", "error" but got value "fatal"',
    ),
    (
        "source",
        "kernel",
        "invalid_enum_value",
        'value of source must be one of "server", "function", "stdout", "stderr"'
        ' but got value "kernel"',
    ),
    ("cursor", "nope", "invalid_format", 'cursor must be formatted as a uuid but got value "nope"'),
    (
        "function_id",
        "1234",
        "invalid_format",
        'function_id must be formatted as a uuid but got value "1234"',
    ),
    (
        "deployment_id",
        "{00000000-0000-0000-0000-000000000000}",
        "invalid_format",
        "deployment_id must be formatted as a uuid"
        ' but got value "{00000000-0000-0000-0000-000000000000}"',
    ),
    (
        "ts_start",
        "2025-12-01",
        "invalid_format",
        'ts_start must be formatted as an RFC 3339 date-time but got value "2025-12-01"',
    ),
    (
        "ts_end",
        "tomorrow",
        "invalid_format",
        'ts_end must be formatted as an RFC 3339 date-time but got value "tomorrow"',
    ),
]


@pytest.mark.parametrize(("param", "value", "name", "message"), BAD_PARAMS)
async def test_bad_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, tenant, param: str, value: str, name: str, message: str
) -> None:
    r = await client.get(URL, params={param: value}, headers=tenant.headers())
    assert_error(r, 400, name, message)


async def test_ts_start_after_ts_end_is_bad_request(client: httpx.AsyncClient, tenant) -> None:
    params = {"ts_start": "2025-12-02T00:00:00Z", "ts_end": "2025-12-01T00:00:00Z"}
    r = await client.get(URL, params=params, headers=tenant.headers())
    body = assert_error(r, 400, "bad_request")
    assert "ts_start" in body["message"] and "ts_end" in body["message"]


@pytest.mark.parametrize(
    ("query", "per_page"),
    [
        ("level=&sort=&per_page=&cursor=&ts_start=", 20),
        ("unknown=1&per_page=5", 5),
        ("per_page=5&per_page=abc", 5),
    ],
)
async def test_empty_unknown_and_repeated_parameters_are_tolerated(
    client: httpx.AsyncClient, tenant, query: str, per_page: int
) -> None:
    r = await client.get(f"{URL}?{query}", headers=tenant.headers())
    assert r.status_code == 200, r.text
    pagination = {"per_page": per_page, "has_next_page": False, "has_prev_page": False}
    assert r.json() == {"logs": [], "pagination": pagination}


async def test_windows_beyond_the_id_range_are_clamped_not_refused(
    client: httpx.AsyncClient, tenant
) -> None:
    params = {"ts_start": "1900-01-01T00:00:00Z", "ts_end": "2200-01-01T00:00:00Z"}
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Gram-Key header"),
        ({"Gram-Project": "proj"}, "missing Gram-Key header"),
        ({"Gram-Key": "glk_whatever"}, "missing Gram-Project header"),
        ({"Gram-Key": "glk_unknown", "Gram-Project": "proj"}, "invalid or revoked API key"),
        ({"Gram-Key": "Bearer ", "Gram-Project": "proj"}, "missing Gram-Key header"),
    ],
)
async def test_missing_or_unknown_credentials_are_401(
    client: httpx.AsyncClient, headers: dict[str, str], message: str
) -> None:
    assert_error(await client.get(URL, headers=headers), 401, "unauthorized", message)


async def test_bearer_prefix_is_tolerated(client: httpx.AsyncClient, tenant) -> None:
    headers = {"Gram-Key": f"Bearer {tenant.consumer_key}", "Gram-Project": tenant.slug}
    assert (await client.get(URL, headers=headers)).status_code == 200


async def test_project_of_another_organization_is_403(client: httpx.AsyncClient, make_tenant):
    mine, theirs = await make_tenant("mine"), await make_tenant("theirs")
    headers = {"Gram-Key": mine.consumer_key, "Gram-Project": theirs.slug}
    r = await client.get(URL, headers=headers)
    assert_error(r, 403, "forbidden", "this key may not access project 'theirs'")
    # A slug that exists nowhere gets the same answer: existence is not revealed.
    headers["Gram-Project"] = "nowhere"
    assert_error(await client.get(URL, headers=headers), 403, "forbidden")


async def test_key_bound_to_another_project_is_403(client: httpx.AsyncClient, pool, make_tenant):
    from gramlogs.core.keys import KeyScope
    from gramlogs.storage import tenants

    tenant = await make_tenant("first")
    async with pool.acquire() as conn:
        await tenants.create_project(conn, tenant.organization_id, "second")
        bound = await tenants.create_key(
            conn, tenant.organization_id, KeyScope.CONSUMER, project_id=tenant.project_id
        )
    ok = await client.get(URL, headers={"Gram-Key": bound.key, "Gram-Project": "first"})
    assert ok.status_code == 200
    r = await client.get(URL, headers={"Gram-Key": bound.key, "Gram-Project": "second"})
    assert_error(r, 403, "forbidden")
    unbound = await client.get(
        URL, headers={"Gram-Key": tenant.consumer_key, "Gram-Project": "second"}
    )
    assert unbound.status_code == 200


async def test_revoked_key_is_refused_once_the_key_cache_bound_has_passed(
    app, client: httpx.AsyncClient, pool, tenant
) -> None:
    from gramlogs.storage import tenants

    assert (await client.get(URL, headers=tenant.headers())).status_code == 200
    async with pool.acquire() as conn:
        key_id = await conn.fetchval(
            "SELECT id FROM api_keys WHERE organization_id = $1 AND scope = 'consumer'",
            tenant.organization_id,
        )
        assert await tenants.revoke_key(conn, key_id)
    key_answers_expire(app)
    r = await client.get(URL, headers=tenant.headers())
    assert_error(r, 401, "unauthorized", "invalid or revoked API key")


async def test_unknown_route_is_404_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/rpc/logs.nothing"), 404, "not_found")
    r = await client.post(URL)
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


PARAM_NAMES = [
    "ts_start",
    "ts_end",
    "deployment_id",
    "function_id",
    "instance",
    "level",
    "source",
    "cursor",
    "per_page",
    "sort",
    "direction",
    "other",
]


# Values arrive percent-encoded, as on the wire: any text, any bytes (invalid UTF-8 included),
# and values close to valid ones.
encoded_values = st.one_of(
    st.text(max_size=40).map(lambda t: quote(t, safe="")),
    st.binary(max_size=20).map(lambda b: quote(b, safe="")),
    st.sampled_from(
        [
            "2025-01-01T00:00:00Z",
            "asc",
            "prev",
            "50",
            "info",
            "%00",
            "%FF%FE",
            "00000000-0000-7000-8000-000000000000",
            "1e3",
            "+5",
            "0x10",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=10)),
            encoded_values,
        ),
        max_size=6,
    )
)
async def test_fuzzed_query_strings_get_200_or_400_never_500(
    client: httpx.AsyncClient, make_tenant, pairs
) -> None:
    tenant = await _fuzz_tenant(make_tenant)
    query = "&".join(f"{quote(k, safe='')}={v}" for k, v in pairs)
    r = await client.get(f"{URL}?{query}", headers=tenant.headers())
    assert r.status_code in (200, 400), r.text
    body = r.json()
    if r.status_code == 400:
        assert list(body) == ERROR_KEYS
        assert body["name"] in {
            "invalid_format",
            "invalid_enum_value",
            "invalid_field_type",
            "invalid_range",
            "bad_request",
        }
    else:
        assert set(body) == {"logs", "pagination"}


_FUZZ_TENANT: list = []


async def _fuzz_tenant(make_tenant):
    if not _FUZZ_TENANT:
        _FUZZ_TENANT.append(await make_tenant("fuzz"))
    return _FUZZ_TENANT[0]
