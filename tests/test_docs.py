"""The documentation names what exists: docs/architecture.md's module map lists every module,
and every ``docs/x.md`` reference or relative Markdown link in README.md and docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_architecture_page_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z0-9_]+\.py)`", text))
    missing = []
    for folder in ("monitor", "monitor/core", "monitor/app", "monitor/readers", "firmware_bridge"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name != "__init__.py" and path.name not in named:
                missing.append(f"{folder}/{path.name}")
    assert not missing, f"docs/architecture.md does not name {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_references_to_docs_and_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    broken = [ref for ref in re.findall(r"\bdocs/[A-Za-z0-9_-]+\.md\b", text) if not (ROOT / ref).exists()]
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):  # relative links, not URLs
        if not (doc.parent / target).exists():
            broken.append(target)
    assert not broken, f"{doc.name}: {broken}"
