"""The log viewer at ``/``, in a real Chromium (Playwright for Python, Debian's ``chromium``).

Each test drives the page as a user would (by role and label) against a real server on the test
database, and checks what is on screen against what the API answers for the same question. The
data is seeded with fixed times and seeds, and the browser's clock is fixed, so the views are the
same on every run. No test may leave an error in the browser's console unless it expects one.

Without a Chromium the module is skipped, unless GRAMLOGS_REQUIRE_BROWSER=1 (CI sets it).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, Request, expect

from gramlogs.core.keys import hash_key
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import tenants
from testkit.browser import chromium_path, launch

LIST = "/rpc/logs.listToolExecutionLogs"
END = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROWS = 600  # over the day before END: 25 an hour
# The browser's clock: "now" for the presets and the histogram of "All".
NOW = END + timedelta(minutes=1)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if chromium_path() is None:
        if os.environ.get("GRAMLOGS_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "GRAMLOGS_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium)"
            )
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    async with launch() as b:
        yield b


@pytest.fixture(scope="module")
def server(serve) -> Iterator[str]:
    with serve() as s:
        yield s.url


@pytest.fixture(scope="module")
async def seeded(make_tenant, pool):
    tenant = await make_tenant("viewer")
    async with pool.acquire() as conn:
        await seed_logs(conn, SeedPlan(tenant.project_id, rows=ROWS, end=END, days=1, seed=7))
    return tenant


@pytest.fixture(scope="module")
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


class Console:
    """What the page wrote to its console as errors, and every URL it asked for."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.expected = False

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_request(self, request: Request) -> None:
        self.urls.append(request.url)


@pytest.fixture
async def console() -> Console:
    return Console()


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    # A fixed zone with no summer time, so that "local" differs from UTC by the same 5:30 always.
    context = await browser.new_context(
        timezone_id="Asia/Kolkata", locale="en-GB", viewport={"width": 1280, "height": 720}
    )
    p = await context.new_page()
    await p.clock.set_fixed_time(NOW)
    p.on("console", console.on_console)
    p.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    p.on("request", console.on_request)
    yield p
    await context.close()
    if not console.expected:
        assert console.errors == []


def signed_in(server: str, tenant, query: str = "") -> str:
    return f"{server}/{query}#key={tenant.consumer_key}&project={tenant.slug}"


async def api_ids(api: httpx.AsyncClient, tenant, limit: int = 100, **params: str) -> list[str]:
    """The ids the list endpoint gives for ``params``, newest first, up to ``limit``."""
    out: list[str] = []
    query: dict[str, str] = {"per_page": "100", **params}
    while len(out) < limit:
        r = await api.get(LIST, params=query, headers=tenant.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        out += [log["id"] for log in body["logs"]]
        if not body["pagination"]["has_next_page"]:
            break
        query["cursor"] = body["pagination"]["next_page_cursor"]
    return out[:limit]


async def shown_ids(page: Page) -> list[str]:
    return await page.locator("tr.row").evaluate_all("rows => rows.map(r => r.dataset.id)")


async def loaded(page: Page) -> None:
    """The view asked for (a click, a URL) has loaded its rows."""
    await expect(page.get_by_role("table", name="Log lines")).to_have_attribute(
        "aria-busy", "false"
    )


async def rows_are(page: Page, ids: list[str]) -> None:
    await loaded(page)
    await expect(page.locator("tr.row")).to_have_count(len(ids))
    if ids:
        await expect(page.locator("tr.row").first).to_have_attribute("data-id", ids[0])
        await expect(page.locator("tr.row").last).to_have_attribute("data-id", ids[-1])
    assert await shown_ids(page) == ids


async def test_sign_in_shows_the_apis_rows_and_keeps_the_key_out_of_urls(
    page: Page, console: Console, server: str, seeded, api
) -> None:
    await page.goto(f"{server}/?range=all")
    dialog = page.get_by_role("dialog", name="Sign in")
    await expect(dialog).to_be_visible()
    await page.get_by_label("Project").fill(seeded.slug)
    await page.get_by_label("Gram key").fill(seeded.consumer_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("table", name="Log lines")).to_be_visible()
    for name in ("Time", "Level", "Source", "Instance", "Function", "Message"):
        await expect(page.get_by_role("columnheader", name=name, exact=True)).to_be_visible()
    want = await api_ids(api, seeded, limit=100)
    first = page.locator("tr.row").first
    await expect(first).to_have_attribute("data-id", want[0])
    assert (await shown_ids(page))[:100] == want
    # What the first row says is what the API says of that line.
    r = await api.get(LIST, params={"per_page": "1"}, headers=seeded.headers())
    line = r.json()["logs"][0]
    cells = await first.locator("td").all_inner_texts()
    assert cells[1:4] == [line["level"], line["source"], line["instance"]]
    assert cells[4] == line["function_id"][:8]
    assert cells[5] == line.get("message", line["raw_log"])
    assert cells[0] == line["timestamp"].replace("T", " ")[:23]
    # The key is in sessionStorage (not localStorage) and in no URL the browser asked for.
    assert await page.evaluate("sessionStorage.getItem('gramlogs.key')") == seeded.consumer_key
    assert await page.evaluate("localStorage.getItem('gramlogs.key')") is None
    assert console.urls and not [u for u in console.urls if seeded.consumer_key in u]


async def test_a_link_with_the_key_in_its_fragment_signs_in_and_clears_the_address_bar(
    page: Page, console: Console, server: str, seeded
) -> None:
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    assert "#" not in page.url and seeded.consumer_key not in page.url
    assert page.url == f"{server}/?range=all"
    assert not [u for u in console.urls if seeded.consumer_key in u]


@pytest.mark.parametrize("answer", ["accept", "dismiss"])
async def test_a_link_with_another_key_asks_before_replacing_the_saved_one(
    page: Page, server: str, seeded, make_tenant, answer: str
) -> None:
    other = await make_tenant("other")
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    asked: list[str] = []

    async def answer_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if answer == "accept" else dialog.dismiss())

    page.once("dialog", answer_dialog)
    await page.goto(signed_in(server, other, "?range=24h"))
    await loaded(page)
    assert page.url == f"{server}/?range=24h"
    assert asked == [
        'This link signs in with another key for the project "other".\n'
        'Replace the key saved for the project "viewer"?'
    ]
    kept = other if answer == "accept" else seeded
    assert await page.evaluate("sessionStorage.getItem('gramlogs.key')") == kept.consumer_key
    assert await page.evaluate("sessionStorage.getItem('gramlogs.project')") == kept.slug


async def test_a_link_with_the_saved_key_asks_nothing(page: Page, server: str, seeded) -> None:
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.message))
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    await page.goto(signed_in(server, seeded, "?range=24h"))
    await loaded(page)
    assert asked == []
    assert await page.evaluate("sessionStorage.getItem('gramlogs.key')") == seeded.consumer_key


async def test_remember_keeps_the_key_in_local_storage(page: Page, server: str, seeded) -> None:
    await page.goto(f"{server}/?range=all")
    await page.get_by_label("Project").fill(seeded.slug)
    await page.get_by_label("Gram key").fill(seeded.consumer_key)
    await page.get_by_label("Remember on this device").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("tr.row").first).to_be_visible()
    assert await page.evaluate("localStorage.getItem('gramlogs.key')") == seeded.consumer_key
    assert await page.evaluate("sessionStorage.getItem('gramlogs.key')") is None


async def test_a_refused_key_asks_for_the_key_again(
    page: Page, console: Console, server: str, seeded, api
) -> None:
    console.expected = True  # the browser reports the 401 itself
    await page.goto(f"{server}/?range=all#key=glk_not-a-real-key&project={seeded.slug}")
    dialog = page.get_by_role("dialog", name="Sign in")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("alert")).to_contain_text("refused the key")
    await page.get_by_label("Gram key").fill(seeded.consumer_key)
    await page.get_by_role("button", name="Sign in").click()
    await rows_are_first_page(page, api, seeded)
    assert all("401" in e for e in console.errors), console.errors


async def rows_are_first_page(page: Page, api, tenant, **params: str) -> None:
    want = await api_ids(api, tenant, limit=100, **params)
    await loaded(page)
    await expect(page.locator("tr.row").first).to_have_attribute("data-id", want[0])
    assert (await shown_ids(page))[: len(want)] == want


async def test_a_503_shows_retrying_and_retries(
    page: Page, console: Console, server: str, seeded, api
) -> None:
    console.expected = True  # the browser reports the 503 itself
    failures: list[str] = []

    async def unavailable_once(route) -> None:
        if not failures:
            failures.append(route.request.url)
            body = {"name": "unavailable", "id": "x", "message": "database unavailable"}
            await route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({**body, "temporary": True, "timeout": False, "fault": False}),
            )
        else:
            await route.continue_()

    await page.route(re.compile(re.escape(f"{server}{LIST}?") + ".*per_page=100"), unavailable_once)
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.get_by_role("status")).to_contain_text("Retrying")
    await rows_are_first_page(page, api, seeded)
    assert len(failures) == 1
    await expect(page.get_by_role("status")).not_to_contain_text("Retrying")
    assert all("503" in e for e in console.errors), console.errors


async def first_of(api, tenant, field: str) -> str:
    r = await api.get(LIST, params={"per_page": "1"}, headers=tenant.headers())
    return r.json()["logs"][0][field]


@pytest.mark.parametrize(
    ("label", "param", "kind"),
    [
        ("Level", "level", "select"),
        ("Source", "source", "select"),
        ("Function", "function_id", "text"),
        ("Deployment", "deployment_id", "text"),
        ("Instance", "instance", "text"),
        ("Search", "keyword", "text"),
    ],
)
async def test_each_filter_shows_the_apis_rows_and_lives_in_the_url(
    page: Page, server: str, seeded, api, label: str, param: str, kind: str
) -> None:
    value = {
        "level": "error",
        "source": "server",
        "keyword": "timeout",
    }.get(param) or await first_of(api, seeded, param)
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    control = page.get_by_label(label, exact=True)
    if kind == "select":
        await control.select_option(value)
    else:
        await control.fill(value)
        await control.press("Enter")
    await expect(page).to_have_url(f"{server}/?{httpx.QueryParams({param: value, 'range': 'all'})}")
    assert await api_ids(api, seeded, limit=1, **{param: value})
    await rows_are_first_page(page, api, seeded, **{param: value})
    # A reload shows the same view, from the URL alone.
    await page.reload()
    await expect(control).to_have_value(value)
    await rows_are_first_page(page, api, seeded, **{param: value})
    # Back goes to the unfiltered view.
    await page.go_back()
    await expect(control).to_have_value("")
    await rows_are_first_page(page, api, seeded)


async def test_from_and_to_and_the_presets(page: Page, server: str, seeded, api) -> None:
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    await page.get_by_label("From", exact=True).fill("2026-06-01 06:00")
    await page.get_by_label("To", exact=True).fill("2026-06-01 08:00:00")
    await page.get_by_label("To", exact=True).press("Enter")
    await expect(page).to_have_url(
        f"{server}/?from=2026-06-01T06%3A00%3A00.000Z&to=2026-06-01T08%3A00%3A00.000Z"
    )
    want = await api_ids(
        api, seeded, ts_start="2026-06-01T06:00:00Z", ts_end="2026-06-01T08:00:00Z"
    )
    await rows_are(page, want)
    # "1 h" is the hour before the browser's (fixed) clock.
    await page.get_by_role("button", name="1 h", exact=True).click()
    await expect(page).to_have_url(f"{server}/?range=1h")
    want = await api_ids(api, seeded, ts_start=(NOW - timedelta(hours=1)).isoformat())
    assert 0 < len(want) < 100
    await rows_are(page, want)


async def test_paging_older_and_back_newer_keeps_a_bounded_window(
    page: Page, server: str, seeded, api
) -> None:
    per_page, cap = 10, 50  # the window keeps five pages
    every = await api_ids(api, seeded, limit=ROWS)
    # A screen taller than the window: what comes in is what the buttons asked for, not what a
    # scroll brought (scrolling has a test of its own).
    await page.set_viewport_size({"width": 1280, "height": 1800})
    await page.goto(signed_in(server, seeded, f"?range=all&per_page={per_page}"))
    # The first page, then more until the screen is full: never more than the window holds.
    await expect(page.locator("tr.row")).to_have_count(cap)
    await loaded(page)

    async def window() -> tuple[int, int]:
        ids = await shown_ids(page)
        start = every.index(ids[0])
        assert ids == every[start : start + len(ids)], "the rows shown are consecutive"
        assert len(ids) <= cap
        return start, start + len(ids)

    older = page.get_by_role("button", name="Older", exact=True)
    newer = page.get_by_role("button", name="Newer", exact=True)
    for _ in range(3):
        _, end = await window()
        await older.click()
        await expect(
            page.locator(f'tr.row[data-id="{every[end + per_page - 1]}"]')
        ).to_be_attached()
    top, _ = await window()
    assert top > 0, "the newest rows left the window"
    while top > 0:
        await newer.click()
        await expect(page.locator("tr.row").first).to_have_attribute(
            "data-id", every[top - per_page]
        )
        top, _ = await window()
    assert (await shown_ids(page))[0] == every[0]


async def test_scrolling_through_every_line_keeps_a_bounded_window(
    page: Page, server: str, seeded, api
) -> None:
    every = await api_ids(api, seeded, limit=ROWS)
    await page.goto(signed_in(server, seeded, "?range=all&per_page=25"))
    await expect(page.locator("tr.row").first).to_have_attribute("data-id", every[0])
    seen: dict[str, None] = {}
    end = page.locator("#end")
    while True:
        ids = await shown_ids(page)
        start = every.index(ids[0])
        assert ids == every[start : start + len(ids)] and len(ids) <= 125
        seen.update(dict.fromkeys(ids))
        if await end.inner_text() == "The oldest matching line.":
            break
        await page.locator("#scroller").evaluate("s => { s.scrollTop = s.scrollHeight; }")
        await expect(page.locator("tr.row").last).not_to_have_attribute("data-id", ids[-1])
    assert list(seen) == every
    assert every[0] not in await shown_ids(page)


async def test_expanding_a_line_shows_its_fields(page: Page, server: str, seeded, api) -> None:
    await page.goto(signed_in(server, seeded, "?range=all&level=info"))
    row = page.locator("tr.row").first
    await expect(row).to_be_visible()
    line_id = await row.get_attribute("data-id")
    r = await api.get(LIST, params={"per_page": "1", "level": "info"}, headers=seeded.headers())
    line = r.json()["logs"][0]
    assert line["id"] == line_id
    await row.click()
    detail = page.locator("tr.detail")
    await expect(detail).to_contain_text(line["raw_log"])
    await expect(detail).to_contain_text(line["message"])
    await expect(detail).to_contain_text(line["deployment_id"])
    tool = json.loads(line["attributes"])["tool"]
    await expect(detail.locator("details summary")).to_have_text("{…} 1 key")
    await expect(detail.locator("ul.json")).to_contain_text(f'tool: "{tool}"')
    for what in ("id", "raw log", "function id", "deployment id", "link"):
        await expect(detail.get_by_role("button", name=f"Copy {what}", exact=True)).to_be_visible()
    await row.click()
    await expect(detail).to_have_count(0)


async def test_clicking_a_value_filters_by_it(page: Page, server: str, seeded, api) -> None:
    await page.goto(signed_in(server, seeded, "?range=all"))
    row = page.locator("tr.row").nth(3)
    await expect(row).to_be_visible()
    function_id = await row.locator("td.c-function button").get_attribute("data-value")
    assert function_id is not None
    await row.locator("td.c-function button").click()
    await expect(page).to_have_url(f"{server}/?function_id={function_id}&range=all")
    await expect(page.get_by_label("Function", exact=True)).to_have_value(function_id)
    await rows_are_first_page(page, api, seeded, function_id=function_id)
    # A second value adds to the first.
    level = await page.locator("tr.row").first.locator("td.c-level button").inner_text()
    await page.locator("tr.row").first.locator("td.c-level button").click()
    await expect(page.get_by_label("Level", exact=True)).to_have_value(level)
    await rows_are_first_page(page, api, seeded, function_id=function_id, level=level)


async def test_a_permalink_opens_on_the_line_with_its_context(
    page: Page, server: str, seeded, api
) -> None:
    every = await api_ids(api, seeded, limit=ROWS)
    line = every[300]
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("tr.row").first).to_be_visible()
    await page.locator("tr.row").nth(5).click()
    link = page.get_by_role("link", name="Link to this line, with context")
    await expect(link).to_have_attribute("href", f"/?line={every[5]}")
    await page.goto(f"{server}/?line={line}")
    current = page.locator('tr.row[aria-current="true"]')
    await expect(current).to_have_attribute("data-id", line)
    await expect(page.locator("tr.detail")).to_have_count(1)
    await expect(current).to_be_in_viewport()
    ids = await shown_ids(page)
    at = ids.index(line)
    assert at == 50 and ids == every[250:351], "a page before and a page after the line"


async def test_histogram_counts_sum_to_the_rows_of_the_window_and_a_drag_zooms_in(
    page: Page, server: str, seeded, api
) -> None:
    await page.goto(signed_in(server, seeded, "?from=2026-06-01T00:00:00Z&to=2026-06-01T06:00:00Z"))
    bars = page.locator("#histogram rect.bar")
    await expect(bars.first).to_be_attached()
    counts = [int(c) for c in await bars.evaluate_all("bs => bs.map(b => b.dataset.count)")]
    rows = await api_ids(
        api, seeded, limit=ROWS, ts_start="2026-06-01T00:00:00Z", ts_end="2026-06-01T06:00:00Z"
    )
    assert sum(counts) == len(rows) > 0
    await expect(page.locator("#histogram-summary")).to_contain_text(f"{len(rows)} lines")
    # A drag across the first bars sets the time filter to them.
    box = await page.locator("#histogram").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + 2, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=5)
    await page.mouse.up()
    await expect(page).to_have_url(
        re.compile(re.escape(f"{server}/?from=2026-06-01T00%3A00%3A00.000Z&to=") + ".+")
    )
    url = httpx.URL(page.url)
    zoomed = await api_ids(
        api, seeded, limit=ROWS, ts_start=url.params["from"], ts_end=url.params["to"]
    )
    assert 0 < len(zoomed) < len(rows)
    await rows_are(page, zoomed)


async def test_the_histogram_of_all_spans_a_long_history(
    page: Page, server: str, make_tenant, api
) -> None:
    tenant = await make_tenant("history")
    body = [
        {
            "raw_log": f"line of {year}",
            "function_id": str(uuid.UUID(int=1)),
            "deployment_id": str(uuid.UUID(int=2)),
            "timestamp": f"{year}-03-01T00:00:00Z",
        }
        for year in (2019, 2026)
    ]
    r = await api.post("/rpc/logs.ingest", json=body, headers=tenant.headers(producer=True))
    assert r.status_code == 200, r.text
    await page.goto(signed_in(server, tenant, "?range=all"))
    await expect(page.locator("tr.row")).to_have_count(2)
    await expect(page.locator("#histogram-summary")).to_contain_text("2 lines; a bar is 7 d.")
    bars = page.locator("#histogram rect.bar")
    counts = [int(c) for c in await bars.evaluate_all("bs => bs.map(b => b.dataset.count)")]
    assert sum(counts) == 2 and counts[0] == 1 and len(counts) > 60
    await expect(page.get_by_role("alert")).to_be_hidden()


async def test_live_shows_a_new_line_within_two_seconds(
    page: Page, server: str, make_tenant, api
) -> None:
    tenant = await make_tenant("live")
    await page.goto(signed_in(server, tenant, "?range=all"))
    await expect(page.locator("#end")).to_have_text(
        "No lines match these filters in this time range."
    )
    live = page.get_by_role("button", name="Live", exact=True)
    await live.click()
    await expect(live).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_role("status")).to_contain_text("Live")
    body = [
        {
            "raw_log": "hello from the live test",
            "function_id": str(uuid.UUID(int=1)),
            "deployment_id": str(uuid.UUID(int=2)),
            "timestamp": NOW.isoformat(),
        }
    ]
    r = await api.post("/rpc/logs.ingest", json=body, headers=tenant.headers(producer=True))
    assert r.status_code == 200, r.text
    await expect(page.locator("tr.row td.c-message")).to_have_text(
        ["hello from the live test"], timeout=2000
    )
    # Scrolled or reading: new lines wait, counted, and come in without a gap.
    await page.locator("tr.row").first.click()
    body[0]["raw_log"] = "while reading"
    r = await api.post("/rpc/logs.ingest", json=body * 2, headers=tenant.headers(producer=True))
    assert r.status_code == 200, r.text
    waiting = page.get_by_role("button", name="2 new lines")
    await expect(waiting).to_be_visible(timeout=2000)
    await waiting.click()
    await expect(page.locator("tr.row")).to_have_count(3)


async def test_live_stops_and_says_so_when_the_key_is_revoked(
    page: Page, serve, make_tenant, pool
) -> None:
    tenant = await make_tenant("revoked")
    with serve(GRAMLOGS_STREAM_KEY_CHECK_S="0.1") as s:
        await page.goto(signed_in(s.url, tenant, "?range=all"))
        await loaded(page)
        live = page.get_by_role("button", name="Live", exact=True)
        await live.click()
        await expect(page.get_by_role("status")).to_contain_text("Live: new lines appear")
        await loaded(page)  # the tail is open and the newest page read: the key goes
        async with pool.acquire() as conn:
            key_id = await conn.fetchval(
                "SELECT id FROM api_keys WHERE key_hash = $1", hash_key(tenant.consumer_key)
            )
            assert await tenants.revoke_key(conn, key_id)
        await expect(page.get_by_role("status")).to_have_text(
            "Live stopped: the key was revoked. Sign in with another key to go on.",
            timeout=20000,
        )
        await expect(live).to_have_attribute("aria-pressed", "false")


async def test_times_in_utc_or_local_and_the_choice_is_remembered(
    page: Page, server: str, seeded, api
) -> None:
    await page.goto(signed_in(server, seeded, "?range=all"))
    time_cell = page.locator("tr.row td.c-time").first
    await expect(time_cell).to_be_visible()
    stamp = datetime.fromisoformat(await first_of(api, seeded, "timestamp"))
    await expect(time_cell).to_have_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:23])
    await page.get_by_role("button", name="UTC", exact=True).click()
    local = stamp + timedelta(hours=5, minutes=30)  # Asia/Kolkata
    await expect(time_cell).to_have_text(local.strftime("%Y-%m-%d %H:%M:%S.%f")[:23])
    await page.reload()
    await expect(page.get_by_role("button", name="Local", exact=True)).to_be_visible()
    await expect(page.locator("tr.row td.c-time").first).to_have_text(
        local.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    )


async def test_keyboard(page: Page, server: str, seeded, api) -> None:
    await page.goto(signed_in(server, seeded, "?range=all"))
    rows = page.locator("tr.row")
    await expect(rows.first).to_be_visible()
    current = page.locator('tr.row[aria-current="true"]')
    await page.keyboard.press("j")
    await expect(current).to_have_attribute("data-id", await rows.nth(0).get_attribute("data-id"))
    await page.keyboard.press("j")
    await page.keyboard.press("j")
    await expect(current).to_have_attribute("data-id", await rows.nth(2).get_attribute("data-id"))
    await page.keyboard.press("k")
    await expect(current).to_have_attribute("data-id", await rows.nth(1).get_attribute("data-id"))
    await page.keyboard.press("Enter")
    await expect(page.locator("tr.detail")).to_have_count(1)
    await expect(current).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("Escape")
    await expect(page.locator("tr.detail")).to_have_count(0)
    await page.keyboard.press("/")
    await expect(page.get_by_label("Search", exact=True)).to_be_focused()
    await page.keyboard.type("timeout")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{server}/?keyword=timeout&range=all")
    await page.keyboard.press("Escape")
    await expect(page.get_by_label("Search", exact=True)).not_to_be_focused()


async def test_export_downloads_the_filters_lines_as_ndjson(
    page: Page, server: str, seeded, api, tmp_path: Path
) -> None:
    await page.goto(signed_in(server, seeded, "?range=all&level=error"))
    await expect(page.locator("tr.row").first).to_be_visible()
    await expect(page.get_by_text("NDJSON, up to 10,000 lines")).to_be_visible()
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export", exact=True).click()
    download = await info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    want = await api_ids(api, seeded, limit=ROWS, level="error")
    assert [line["id"] for line in lines] == want
    await expect(page.get_by_role("status")).to_contain_text(f"Exported {len(want)} lines")


async def test_a_screenshot_of_the_viewer(page: Page, server: str, seeded) -> None:
    """Kept in test-artifacts/ for people to look at (CI keeps the directory)."""
    await page.goto(signed_in(server, seeded, "?range=all"))
    await expect(page.locator("#histogram rect.bar").first).to_be_attached()
    await page.locator("tr.row").nth(2).click()
    await expect(page.locator("tr.detail")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "viewer.png"
    await page.screenshot(path=target)
    assert target.stat().st_size > 10_000
