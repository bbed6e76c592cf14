"""The README is a front door that stays small, and every page it and docs/ link to is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_cli

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_the_readme_is_at_most_12_kb() -> None:
    assert (REPO / "README.md").stat().st_size <= 12 * 1024


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_the_readme_indexes_every_page_of_docs() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_readmes_headline_figures_are_the_benchmarks_page() -> None:
    """The README repeats four ratios: each is a figure docs/benchmarks.md states, not a copy that drifts."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    figures = re.findall(r"\*\*([\d.,]+ ?(?:x|%))\*\*", section)
    assert len(figures) == 4
    benchmarks = (REPO / "docs/benchmarks.md").read_text()
    headline = benchmarks.split("## Headline ratios", 1)[1].split("\n## ", 1)[0]
    assert [f for f in figures if f"**{f}**" not in headline] == []


def test_the_readmes_configuration_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    (example,) = re.findall(r"^```toml\n(.*?)^```", section.split("\n## ", 1)[0], re.S | re.M)
    config = tmp_path / "media-worker.toml"
    config.write_text(example.replace("/mnt/workspace", str(tmp_path)))
    res = run_cli("config", "validate", "--config", str(config), env=cli_env())
    assert res.returncode == 0, res.stderr
    assert "config ok" in res.stdout
