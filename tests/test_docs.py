"""The README and docs/: every link leads somewhere, nothing points at files users do not have,
and every variable the blocks read is in the configuration table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ubertruck_ops.blocks.database import LIBPQ_ENV

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
VARIABLE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lowercase, punctuation dropped, spaces to dashes."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file_and_heading_that_exist():
    checked = 0
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
            assert resolved.is_relative_to(ROOT), f"{page.name} links outside the checkout: {target}"
            if anchor:
                assert anchor in anchors(resolved), f"{page.name} links to {target}: no such heading"
            checked += 1
    assert checked >= 10


def test_the_readme_is_a_front_page_and_docs_name_no_file_users_do_not_have():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 130
    for page in PAGES:
        text = page.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text and "seed/" not in text, page.name
    readme = (ROOT / "README.md").read_text()
    assert "./ops demo" in readme and "./ops test" in readme and "blocks init" in readme


def test_every_variable_the_blocks_read_is_in_the_configuration_table():
    table = "\n".join(line for line in (ROOT / "docs" / "configuration.md").read_text().splitlines()
                      if line.startswith("| `"))
    in_table = set(VARIABLE.findall(table))
    named = set()
    for module in sorted((ROOT / "ubertruck_ops" / "blocks").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
                named.add(node.value)
    # libpq's own variables: what the tools get from DATABASE_URL, not something operators set here.
    named -= set(LIBPQ_ENV.values())
    assert {"DATABASE_URL", "LB_KIND", "HEALTHCHECK_PING_URL"} <= named
    assert sorted(named - in_table) == []
