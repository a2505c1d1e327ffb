"""The README stays short and every link in it and in docs/ leads somewhere: a file that exists, a heading that
exists. Its minimal config is one the schema accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _outside_code(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are code, not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for line in re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M).splitlines():
        heading = re.match(r"^#+ (.*)", line)
        if heading:
            text = heading.group(1).strip().lower().replace("`", "")
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def links(page: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(_outside_code(page.read_text()))]


def test_the_readme_fits_in_a_few_screens():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_to_a_file_and_heading_that_exist(page):
    relative = [link for link in links(page) if not re.match(r"^[a-z]+:", link)]
    assert relative or page.name != "index.md"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} leads nowhere"
        assert ROOT in target.parents or target == ROOT, f"{page.name}: {link} leaves the repository"
        if anchor:
            assert target.suffix == ".md" and anchor in anchors(target), f"{page.name}: no heading for {link}"


def test_the_anchor_rule_is_github_s():
    page = ROOT / "docs" / "tiny-world.md"
    assert "the-cross-skill-experiment-does-evolution-find-what-a-plain-merge-misses" in anchors(page)


def test_the_readme_s_minimal_config_is_one_the_schema_accepts():
    from mergekit_evo.config import EvolveConfig

    block = re.search(r"## A minimal config\n\n```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    config = EvolveConfig.model_validate(yaml.safe_load(block.group(1)))
    assert config.optimizer.name == "cma" and config.tasks[0].validation == 0.2
