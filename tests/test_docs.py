"""Documentation references: every `docs/<name>.md §N` cited in the code, configs, tests and
Markdown points at a file that exists and at a numbered section heading it has; relative Markdown
links between the docs resolve (anchors included); nothing points at the method / design notes
that live outside this repository. Plain file reading, no JAX.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "runs", "node_modules", ".pytest_cache",
             "build", "dist"}
SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".sh", ".sbatch", ".yaml", ".yml", ".js",
            ".html", ".json"}
NAMES = {"Makefile"}

# `docs/method.md`, optionally followed by a list of sections: "§4.3", "§4.2, §4.3, §5",
# "§4.3 / §6", "§4-§6; §10".
REF = re.compile(r"docs/([A-Za-z0-9_\-]+\.md)"
                 r"((?:\s*(?:,|/|;|-|–|and)?\s*§\s*\d+(?:\.\d+)*)*)")
SECTION = re.compile(r"§\s*(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Notes kept outside the repository; spelled in two halves so this file does not match itself.
OUTSIDE = ("PAPER" + ".md", "DESIGN" + ".md")


def _files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix in SUFFIXES or name in NAMES:
                yield path


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


FILES = sorted(_files())


def _sections(doc: Path) -> set[str]:
    return set(HEADING.findall(_text(doc)))


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.*)$", _text(doc), re.MULTILINE)}


def test_docs_exist_and_have_numbered_sections():
    for name in ("method.md", "architecture.md"):
        doc = DOCS / name
        assert doc.is_file(), f"{doc} is missing"
        assert len(_sections(doc)) >= 10, f"{doc}: expected numbered section headings"


def test_every_docs_reference_resolves():
    problems = []
    for path in FILES:
        for lineno, line in enumerate(_text(path).splitlines(), 1):
            for m in REF.finditer(line):
                doc = DOCS / m.group(1)
                where = f"{path.relative_to(ROOT)}:{lineno}"
                if not doc.is_file():
                    problems.append(f"{where}: docs/{m.group(1)} does not exist")
                    continue
                have = _sections(doc)
                for sec in SECTION.findall(m.group(2)):
                    if sec not in have:
                        problems.append(f"{where}: docs/{m.group(1)} has no section §{sec}")
    assert not problems, "\n".join(problems)


def test_markdown_links_between_docs_resolve():
    problems = []
    for path in [p for p in FILES if p.suffix == ".md"]:
        for lineno, line in enumerate(_text(path).splitlines(), 1):
            for target in LINK.findall(line):
                if "://" in target or target.startswith(("#", "mailto:")):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (path.parent / file_part).resolve()
                where = f"{path.relative_to(ROOT)}:{lineno}"
                if not dest.exists():
                    problems.append(f"{where}: link target {target} does not exist")
                elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                    problems.append(f"{where}: {file_part} has no heading for #{anchor}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", OUTSIDE, ids=("paper-notes", "design-notes"))
def test_no_reference_to_notes_outside_the_repository(name):
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in FILES
            for i, line in enumerate(_text(p).splitlines(), 1) if name in line]
    assert not hits, f"references to {name}, which is not in this repository: {hits}"
