"""Bad input is a clean 400 naming the parameter: invalid UTF-8, NUL, absurd timestamps."""

from __future__ import annotations

import pytest

from gramlogs.core.errors import InvalidFormat
from gramlogs.web.params import header_text, parse_query

URL = "/rpc/logs.listToolExecutionLogs"
TEXT = "UTF-8 text without NUL characters"


def error(name: str, message: str, rid: str) -> dict:
    return {
        "name": name,
        "id": rid,
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": False,
    }


def test_parse_query_takes_first_values_and_drops_empty_ones():
    raw = b"level=&level=info&a=1&a=2&b=x+y%2Bz&c&=v"
    assert parse_query(raw) == {"a": "1", "b": "x y+z", "": "v"}


def test_parse_query_decodes_utf8():
    assert parse_query("instance=caf%C3%A9&x=é".encode()) == {"instance": "café", "x": "é"}


@pytest.mark.parametrize(
    "raw",
    [
        b"instance=a%00b",
        b"instance=a%FFb",
        b"instance=a\xffb",
        b"instance=%C3",
        b"instance=%ED%A0%80",
    ],
)
def test_parse_query_refuses_nul_and_invalid_utf8_naming_the_parameter(raw):
    with pytest.raises(InvalidFormat) as caught:
        parse_query(raw)
    assert caught.value.message.startswith(f"instance must be formatted as {TEXT} but got value")


def test_parse_query_refuses_an_invalid_parameter_name():
    with pytest.raises(InvalidFormat) as caught:
        parse_query(b"a%00=1")
    assert caught.value.message.startswith("a query parameter name must be formatted as")


def test_header_text_refuses_control_characters():
    assert header_text("Gram-Project", "my-proj") == "my-proj"
    with pytest.raises(InvalidFormat) as caught:
        header_text("Gram-Project", "a\x00b")
    assert caught.value.message == (
        'Gram-Project must be formatted as printable text but got value "a\\u0000b"'
    )


async def test_nul_in_instance_is_a_400_naming_it(client, make_tenant):
    tenant = await make_tenant()
    r = await client.get(URL + "?instance=snowy%00water", headers=tenant.headers())
    assert r.status_code == 400
    message = f'instance must be formatted as {TEXT} but got value "snowy\ufffdwater"'
    assert r.json() == error("invalid_format", message, r.headers["x-request-id"])


async def test_invalid_utf8_in_instance_is_a_400_naming_it(client, make_tenant):
    tenant = await make_tenant()
    r = await client.get(URL + "?instance=caf%E9", headers=tenant.headers())
    assert r.status_code == 400
    message = f'instance must be formatted as {TEXT} but got value "caf\ufffd"'
    assert r.json() == error("invalid_format", message, r.headers["x-request-id"])


async def test_nul_in_gram_project_is_a_400_naming_it(client, make_tenant):
    tenant = await make_tenant()
    headers = {"Gram-Key": tenant.consumer_key, "Gram-Project": "proj\x00"}
    r = await client.get(URL, headers=headers)
    assert r.status_code == 400
    message = 'Gram-Project must be formatted as printable text but got value "proj\\u0000"'
    assert r.json() == error("invalid_format", message, r.headers["x-request-id"])


async def test_non_ascii_gram_project_is_simply_not_a_project_of_the_key(client, make_tenant):
    tenant = await make_tenant()
    headers = [(b"Gram-Key", tenant.consumer_key.encode()), (b"Gram-Project", "café".encode())]
    r = await client.get(URL, headers=headers)
    assert r.status_code == 403
    assert r.json()["name"] == "forbidden"


async def test_nul_in_gram_key_is_just_an_unknown_key(client, make_tenant):
    tenant = await make_tenant()
    r = await client.get(URL, headers={"Gram-Key": "glk_\x00", "Gram-Project": tenant.slug})
    assert r.status_code == 401
    assert r.json()["message"] == "invalid or revoked API key"


def bad_rfc3339(param: str, value: str) -> tuple[dict, str, str]:
    message = f'{param} must be formatted as an RFC 3339 date-time but got value "{value}"'
    return {param: value}, "invalid_format", message


@pytest.mark.parametrize(
    ("params", "name", "message"),
    [
        bad_rfc3339("ts_start", "0000-01-01T00:00:00Z"),
        bad_rfc3339("ts_end", "99999-01-01T00:00:00Z"),
        bad_rfc3339("ts_start", "0001-01-01T00:00:00+23:59"),
        bad_rfc3339("ts_end", "9999-12-31T23:59:59-23:59"),
        bad_rfc3339("ts_start", "2025-02-30T00:00:00Z"),
        bad_rfc3339("ts_start", "2025-01-01T00:00:00.1234567890Z"),
        (
            {"ts_start": "9999-12-31T23:59:59Z"},
            "bad_request",
            "ts_start (9999-12-31T23:59:59+00:00) must not be after"
            " ts_end (2100-01-01T00:00:00+00:00)",
        ),
    ],
)
async def test_absurd_timestamps_are_a_400(client, make_tenant, params, name, message):
    tenant = await make_tenant()
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 400
    assert r.json() == error(name, message, r.headers["x-request-id"])


@pytest.mark.parametrize(
    "params",
    [
        {"ts_start": "0001-01-01T00:00:00Z", "ts_end": "9999-12-31T23:59:59.999999Z"},
        {"ts_start": "1900-01-01T00:00:00Z", "ts_end": "1960-01-01T00:00:00Z"},
        {"ts_start": "2200-01-01T00:00:00Z", "ts_end": "2300-01-01T00:00:00Z"},
        {"ts_start": "2016-12-31T23:59:60Z"},
    ],
)
async def test_timestamps_outside_the_id_range_are_an_empty_or_clamped_window(
    client, make_tenant, params
):
    tenant = await make_tenant()
    r = await client.get(URL, params=params, headers=tenant.headers())
    assert r.status_code == 200
    assert r.json()["logs"] == []


async def test_a_huge_instance_value_is_answered(client, make_tenant):
    tenant = await make_tenant()
    r = await client.get(URL, params={"instance": "x" * 60_000}, headers=tenant.headers())
    assert r.status_code == 200
    assert r.json()["logs"] == []
