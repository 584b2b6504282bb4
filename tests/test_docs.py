"""The documentation stays true to the code and to the repository.

The settings table in docs/settings.md is the output of ``gramlogs settings``; every relative
link leads to a file of the repository (and, with a ``#fragment``, to one of its headings); no
page points outside the repository or at issue numbers; the README stays short.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gramlogs.core.config import SETTINGS, settings_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETTINGS_DOC = ROOT / "docs" / "settings.md"
START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"

# The pages users read: the README, docs/, and the benchmark results the docs link to.
PAGES = sorted([README, *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_OUTSIDE = re.compile(r"\.\./shared|shared/reference|/work/")
_ISSUE = re.compile(r"\bissues?\s*#?\s*\d+|(?<![\w/&#`])#\d+\b", re.IGNORECASE)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (examples may hold anything)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """The ``#fragment`` of each heading, as GitHub makes them."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_prose(path)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_settings_table_is_the_output_of_gramlogs_settings():
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, (
        f"docs/settings.md must hold the markers {START.strip()} and {END} once each"
    )
    table = text.split(START, 1)[1].split(END, 1)[0]
    assert table == settings_table(), (
        "docs/settings.md's settings table is out of date: run `gramlogs settings` and paste"
        f" its output between {START.strip()} and {END}"
    )


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_the_settings_doc(setting):
    assert setting.env in SETTINGS_DOC.read_text(encoding="utf-8")


def test_there_are_pages_to_check():
    assert README in PAGES and SETTINGS_DOC in PAGES and len(PAGES) > 5


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_lead_to_files_of_the_repository(page):
    broken = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:: not a file of the repository
        path_part, _, fragment = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not path.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
            broken.append(f"{target} (no such heading in {_name(path)})")
    assert not broken, f"{_name(page)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_page_points_outside_the_repository_or_at_issue_numbers(page):
    text = page.read_text(encoding="utf-8")
    outside = _OUTSIDE.findall(text)
    issues = _ISSUE.findall(text)
    assert not outside, f"{_name(page)} mentions paths outside the repository: {outside}"
    assert not issues, f"{_name(page)} mentions issue numbers (say what, not which): {issues}"


def test_the_readme_stays_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move details into docs/ (at most 250)"
