"""The user documentation holds together: every relative link in README.md and docs/**/*.md
points to a file or folder of the repository, and no development-history wording is left."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target) and [text]: target; code spans are dropped first (they show syntax, not links)
INLINE = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
HISTORY = re.compile(r"\bsessions? [0-9]+", re.IGNORECASE)


def relative_links(text: str) -> list[str]:
    text = CODE.sub("", text)
    links = INLINE.findall(text) + REFERENCE.findall(text)
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", link)]


def test_relative_links_finds_links_and_skips_urls_and_code() -> None:
    text = "[a](guide/x.md) [b](https://flower.ai) [c](#top) `[d](nope.md)` [e](y.md#part)"
    assert relative_links(text) == ["guide/x.md", "y.md#part"]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link in relative_links(page.read_text(encoding="utf-8")):
        target = (page.parent / link.split("#", 1)[0]).resolve()
        if not target.exists():
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


def test_no_development_history_wording() -> None:
    # the acceptance grep: README.md docs src configs tests benchmarks
    hits = []
    for top in ("README.md", "docs", "src", "configs", "tests", "benchmarks"):
        path = ROOT / top
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            # build output of `pip install -e` (ignored by git) is not the project's text
            if file.suffix in {".png", ".pyc", ".so"} or ".egg-info" in file.parts[-2]:
                continue
            text = file.read_text(encoding="utf-8", errors="ignore")
            hits += [f"{file.relative_to(ROOT)}: {m.group(0)}" for m in HISTORY.finditer(text)]
    assert not hits, hits


def test_docs_named_in_code_exist() -> None:
    # comments and docstrings that send a reader to a page (e.g. "docs/testbed.md")
    named = re.compile(r"docs/[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md")
    missing = []
    for top in ("src", "tests", "benchmarks", "configs", "scripts"):
        for file in (ROOT / top).rglob("*"):
            if not file.is_file() or file.suffix not in {".py", ".c", ".h", ".yaml", ".sh"}:
                continue
            if file.resolve() == Path(__file__).resolve():
                continue
            for page in named.findall(file.read_text(encoding="utf-8", errors="ignore")):
                if not (ROOT / page).exists():
                    missing.append(f"{file.relative_to(ROOT)}: {page}")
    assert not missing, missing


def test_status_log_is_gone() -> None:
    assert not (ROOT / "docs" / "status.md").exists()
    tracked = subprocess.run(
        ["git", "ls-files", "docs"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    assert "docs/status.md" not in tracked
