"""How the viewer's files are served: types, ETags and 304s, the Content-Security-Policy, and
what the files may not contain (inline code the policy would block, HTML built from strings)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gramlogs.web.viewer import CONTENT_SECURITY_POLICY

VIEWER = Path(__file__).resolve().parent.parent / "gramlogs" / "web" / "viewer"
FILES = sorted(p.relative_to(VIEWER).as_posix() for p in VIEWER.rglob("*") if p.is_file())


async def test_the_page_is_served_at_the_root_with_its_policy(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-cache"
    assert r.text == (VIEWER / "index.html").read_text()


@pytest.mark.parametrize("name", FILES)
async def test_every_file_is_served_with_its_type_and_an_etag(
    client: httpx.AsyncClient, name: str
) -> None:
    r = await client.get(f"/viewer/{name}")
    assert r.status_code == 200
    assert r.content == (VIEWER / name).read_bytes()
    kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    suffix = Path(name).suffix
    assert r.headers["content-type"].startswith(kind.get(suffix, "image/svg+xml"))
    etag = r.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = await client.get(f"/viewer/{name}", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    changed = await client.get(f"/viewer/{name}", headers={"If-None-Match": '"other", W/"x"'})
    assert changed.status_code == 200


async def test_what_the_page_links_is_what_the_server_serves(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    linked = re.findall(r'(?:src|href)="(/viewer/[^"]+)"', html)
    assert len(linked) == 3
    imported: set[str] = set()
    for js in (VIEWER / "js").glob("*.js"):
        imported |= {f"/viewer/js/{m}" for m in re.findall(r'from "\./([\w.]+)"', js.read_text())}
    for path in [*linked, *imported]:
        assert (await client.get(path)).status_code == 200, path


async def test_an_unknown_file_is_a_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/viewer/nope.js")
    assert r.status_code == 404
    assert r.json()["name"] == "not_found"
    assert r.json()["message"] == "no such file: /viewer/nope.js"
    r = await client.get("/viewer/../pyproject.toml")
    assert r.status_code == 404


def test_nothing_inline_that_the_policy_would_block() -> None:
    html = (VIEWER / "index.html").read_text()
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son\w+=", html)
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(' src="/viewer/' in s for s in scripts)


def test_the_scripts_build_no_html_from_strings() -> None:
    """Log lines are text: nothing sets innerHTML (or its kin) or evaluates strings."""
    for js in (VIEWER / "js").glob("*.js"):
        code = js.read_text()
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert risky not in code, (js.name, risky)


def test_the_page_is_light() -> None:
    """Everything the page loads, uncompressed (docs/viewer.md states the figure)."""
    total = sum((VIEWER / name).stat().st_size for name in FILES)
    assert total < 100_000
