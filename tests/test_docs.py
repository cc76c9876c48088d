"""The documentation names what exists: docs/architecture.md names every module in its room,
and every ``docs/x.md`` reference or relative Markdown link in README.md and docs/ resolves."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from monitor.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_architecture_page_names_every_module_in_its_room():
    """Each module is named where its folder is described ("Three rooms"): a file name alone is
    not enough, since ``emotibit.py`` and ``cli.py`` exist in the bridge and in the monitor."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = re.split(r"^\d\. \*\*", text.split("## The core, from batch to check-in")[0], flags=re.M)[1:]
    assert [room.split("**")[0] for room in rooms] == ["`firmware_bridge/`", "`monitor/core/`", "`monitor/` shell"]
    shell = rooms[2]
    where = {"firmware_bridge": rooms[0], "monitor/core": rooms[1]}
    for sub in ("readers", "app"):  # a subpackage's modules in the parentheses after its name
        listed = re.search(rf"`{sub}/`\s*\(([^)]*)\)", shell)
        assert listed, f"docs/architecture.md: the shell room does not list `{sub}/` (...)"
        where[f"monitor/{sub}"] = listed.group(1)
        shell = shell.replace(listed.group(1), "")
    where["monitor"] = shell
    misplaced = []
    for folder, room in where.items():
        named = set(re.findall(r"`([A-Za-z0-9_]+\.py)`", room))
        misplaced += [f"{folder}/{path.name}" for path in sorted((ROOT / folder).glob("*.py"))
                      if path.name != "__init__.py" and path.name not in named]
    assert not misplaced, f"docs/architecture.md does not name these where their folder is described: {misplaced}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_references_to_docs_and_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    broken = [ref for ref in re.findall(r"\bdocs/[A-Za-z0-9_-]+\.md\b", text) if not (ROOT / ref).exists()]
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):  # relative links, not URLs
        if not (doc.parent / target).exists():
            broken.append(target)
    assert not broken, f"{doc.name}: {broken}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of the subcommands under it (``bridge ble`` ...)."""
    found = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _options(child)
    return found


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "CONTRIBUTING.md", ROOT / "bench" / "README.md"], ids=lambda p: p.name)
def test_documented_commands_use_options_that_exist(doc):
    """Each ``anxmon COMMAND ... --option`` in a shell block or an inline code span names an
    option of that command: a renamed option leaves no stale example behind."""
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    text = doc.read_text(encoding="utf-8")
    commands = re.findall(r"^(?:\.venv/bin/)?anxmon ([a-z]+)(?![\w-])(.*)$", "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S)), re.M)
    commands += re.findall(r"`(?:\.venv/bin/)?anxmon ([a-z]+)(?![\w-])([^`]*)`", text)
    unknown = []
    for command, rest in commands:
        if command not in subcommands:  # prose: "`anxmon service`" as a value
            continue
        known = _options(subcommands[command]) | {"--help", "--version", "--verbose"}
        unknown += [f"anxmon {command} {o}" for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest.split("#")[0]) if o not in known]
    assert not unknown, f"{doc.name}: {unknown}"
