"""The viewer in a real Chromium: sign-in to 100 rows painted, and scrolling 5,000 rows.

A real ``gramlogs serve`` on a fresh database holding the demo's data (5,000 lines over three
days, the same generator and seed as ``make run``'s demo) and Debian's Chromium, headless,
driven by Playwright. Side by side in one run, each ``--runs`` times in a fresh browser
context (no cache):

- **sign-in to 100 rows painted**: from the sign-in form's submit to the frame after the 100th
  row is in the table (two animation frames: the rows are laid out and painted), measured in
  the page with ``performance.now()``;
- **the same page fetched alone**: the list request the viewer makes (``per_page=100``), with
  ``fetch`` from the same page and its JSON parsed, no rendering: the floor the page is
  compared with (the ratio is the page's own cost on top of the API);
- **scrolling 5,000 rows**: the scroller is moved to its end again and again, as a reader
  holding the End key would, until the oldest line is shown. For every page that comes in: the
  time from the scroll to the frame after its rows are painted (p50/p99 over the first ten and
  over the last ten pages, so a page that slows as rows go by shows), the table's rows in the
  DOM (the window is bounded) and the JS heap after the walk.

    .venv/bin/python -m benchmarks.viewer --smoke     # seconds; make test runs it
    .venv/bin/python -m benchmarks.viewer              # about a minute
    .venv/bin/python -m benchmarks.viewer --write      # and append the report to viewer.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page

from benchmarks import harness as h
from benchmarks import runner
from benchmarks.results import (
    fmt_ms,
    machine,
    percentiles,
    print_machine,
    publish,
)
from gramlogs.core.keys import KeyScope
from gramlogs.local.demo import DEMO_ROWS
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import tenants
from testkit.browser import chromium_path, launch
from testkit.postgres import temporary_database
from testkit.serve import live_server

END = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# In the page: the time from the sign-in's submit to the frame after 100 rows are painted.
_ARM_SIGN_IN = """() => {
  window.__bench = new Promise((resolve) => {
    const form = document.getElementById("sign-in-form");
    form.addEventListener("submit", () => {
      const start = performance.now();
      const rows = document.getElementById("rows");
      const check = () => {
        if (rows.querySelectorAll("tr.row").length >= 100) {
          observer.disconnect();
          const painted = () => resolve(performance.now() - start);
          requestAnimationFrame(() => requestAnimationFrame(painted));
        }
      };
      const observer = new MutationObserver(check);
      observer.observe(rows, { childList: true });
      check();
    }, { capture: true, once: true });
  });
}"""

_FETCH_ALONE = """async ([key, project]) => {
  const start = performance.now();
  const response = await fetch("/rpc/logs.listToolExecutionLogs?per_page=100&sort=desc",
    { headers: { "Gram-Key": key, "Gram-Project": project }, cache: "no-store" });
  const body = await response.json();
  if (body.logs.length !== 100) throw new Error("not a full page");
  return performance.now() - start;
}"""

# One step of the walk: scroll to the end; resolve when a new page is painted, or the oldest
# line is shown. Returns [ms, rows in the DOM, the last row's id, at the end].
_SCROLL_STEP = """async () => {
  const scroller = document.getElementById("scroller");
  const rows = document.getElementById("rows");
  const end = document.getElementById("end");
  const last = () => rows.lastElementChild?.dataset.id;
  const before = last();
  const done = () => end.textContent.startsWith("The oldest");
  const start = performance.now();
  scroller.scrollTop = scroller.scrollHeight;
  await new Promise((resolve) => {
    const tick = () => (last() !== before || done() ? resolve() : setTimeout(tick, 1));
    tick();
  });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [performance.now() - start, rows.querySelectorAll("tr.row").length, last(), done()];
}"""


async def seed(url: str, rows: int) -> tuple[str, str, str]:
    """The demo's lines in a project ``demo``: a consumer key, the slug, PostgreSQL's version."""
    conn = await asyncpg.connect(url)
    try:
        org = await tenants.create_organization(conn, "viewerbench")
        project = await tenants.create_project(conn, org, "demo")
        key = await tenants.create_key(conn, org, KeyScope.CONSUMER)
        await seed_logs(conn, SeedPlan(project, rows=rows, end=END, days=3, seed=1))
        await conn.execute("VACUUM ANALYZE logs")
        version: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return key.key, "demo", version


async def sign_in(page: Page, base: str, key: str, project: str) -> float:
    await page.goto(f"{base}/?range=all")
    await page.wait_for_selector("#sign-in-form")
    await page.evaluate(_ARM_SIGN_IN)
    await page.get_by_label("Project").fill(project)
    await page.get_by_label("Gram key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    ms: float = await page.evaluate("window.__bench")
    return ms


async def scroll_all(page: Page, rows: int) -> dict[str, Any]:
    steps: list[float] = []
    seen: list[int] = []
    for _ in range(rows):
        ms, in_dom, _last, done = await page.evaluate(_SCROLL_STEP)
        steps.append(ms)
        seen.append(in_dom)
        if done:
            break
    else:
        raise SystemExit("viewer: the walk never reached the oldest line")
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    metrics = await cdp.send("Performance.getMetrics")
    heap = next(m["value"] for m in metrics["metrics"] if m["name"] == "JSHeapUsedSize")
    return {
        "pages": len(steps),
        "first_10": percentiles([s / 1000 for s in steps[:10]]),
        "last_10": percentiles([s / 1000 for s in steps[-10:]]),
        "max_rows_in_dom": max(seen),
        "js_heap_mib": round(heap / 2**20, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if chromium_path() is None:
        raise SystemExit("viewer: no Chromium (apt-get install chromium)")
    server = h.server_url()
    async with temporary_database(server, "viewerbench") as url:
        key, project, version = await seed(url, args.rows)
        info = machine(version)
        print_machine(info)
        with (
            tempfile.TemporaryDirectory() as logs,
            live_server(url, Path(logs), GRAMLOGS_LOG_LEVEL="warning") as srv,
        ):
            async with launch() as browser:
                sign_ins, alone, walks = [], [], []
                for _ in range(args.runs):
                    context = await browser.new_context(viewport={"width": 1280, "height": 800})
                    page = await context.new_page()
                    sign_ins.append(await sign_in(page, srv.url, key, project))
                    alone.append(await page.evaluate(_FETCH_ALONE, [key, project]))
                    walks.append(await scroll_all(page, args.rows))
                    await context.close()
    result = {
        "machine": info,
        "rows": args.rows,
        "runs": args.runs,
        "chromium": browser.version,
        "sign_in_to_100_rows_ms": percentiles([s / 1000 for s in sign_ins]),
        "same_page_fetched_alone_ms": percentiles([s / 1000 for s in alone]),
        "ratio_p50": statistics.median(sign_ins) / statistics.median(alone),
        "scroll": walks[-1],
        "scroll_pages_p50_ms_first_10": statistics.median(w["first_10"]["p50"] for w in walks),
        "scroll_pages_p50_ms_last_10": statistics.median(w["last_10"]["p50"] for w in walks),
    }
    publish("viewer", result, render(result), write_to=args.write_to)
    return result


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    s, a, w = r["sign_in_to_100_rows_ms"], r["same_page_fetched_alone_ms"], r["scroll"]
    return "\n".join(
        [
            f"## {m['date']}: {r['rows']:,} lines, {r['runs']} runs",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, load at start "
            f"{m['load_avg_at_start']}; PostgreSQL {m['postgresql']}; Chromium {r['chromium']}.",
            "",
            "| measure | p50 ms | p95 ms |",
            "|---|---|---|",
            f"| sign-in to 100 rows painted | {fmt_ms(s['p50'])} | {fmt_ms(s['p95'])} |",
            f"| the same page fetched alone | {fmt_ms(a['p50'])} | {fmt_ms(a['p95'])} |",
            f"| a page in while scrolling, first 10 pages | "
            f"{fmt_ms(r['scroll_pages_p50_ms_first_10'])} | |",
            f"| a page in while scrolling, last 10 pages | "
            f"{fmt_ms(r['scroll_pages_p50_ms_last_10'])} | |",
            "",
            f"Sign-in to 100 rows painted is {r['ratio_p50']:.1f}x the page fetched alone (p50). "
            f"Scrolling all {r['rows']:,} rows took {w['pages']} pages; at most "
            f"{w['max_rows_in_dom']} rows were in the DOM; JS heap after the walk "
            f"{w['js_heap_mib']} MiB.",
            "",
        ]
    )


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=DEMO_ROWS, help=f"lines ({DEMO_ROWS:,})")
    p.add_argument("--runs", type=int, default=5, help="browser contexts (5)")


def _smoke(args: argparse.Namespace) -> None:
    args.rows, args.runs = 600, 1


if __name__ == "__main__":
    runner.run(
        "viewer",
        __doc__,
        main,
        options=_options,
        smoke=_smoke,
        smoke_help="600 lines, 1 run",
        results=runner.results_file("viewer"),
    )
