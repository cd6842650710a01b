"""The documentation holds together: every relative link and anchor resolves, every file path it names exists,
the README stays a short way in (the reference lives in docs/), and every exit code is documented.

A reader who follows a link from the README must land on the section it promises; a doc that names
``pipelines/batcher.py`` after the module moved sends a reader to a file that is not there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_BYTES = 20_500  # about 20 KB: what it is, the quick start, each topic short, with links
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
PATH = re.compile(
    r"(?<![\w./-])((?:streamer|pipelines|models|tests|benchmarks|docs|scripts)/[\w/.-]*\.(?:py|md|html|png|json|sh))"
)
EXIT_CONSTANT = re.compile(r"^EXIT_\w+\s*=\s*(\d+)", re.M)


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than ``-`` and ``_`` dropped, spaces as ``-``."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {dest.name} has no heading with that anchor")
    return broken


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    assert not broken_links(doc), f"{doc.relative_to(ROOT)}: {broken_links(doc)}"


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_path_named_exists(doc: Path) -> None:
    named = set(PATH.findall(doc.read_text(encoding="utf-8")))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# A `code` heading: here\n\n[ok](#a-code-heading-here) [gone](missing.md) [bad](#nowhere)\n"
        "```\n[in a fence](ignored.md)\n```\n[web](https://example.com)\n",
        encoding="utf-8",
    )
    assert broken_links(doc) == ["missing.md: no such file", "#nowhere: doc.md has no heading with that anchor"]
    assert PATH.findall("see `pipelines/batcher.py` and ../shared/x.md") == ["pipelines/batcher.py"]


def test_the_readme_is_a_short_way_in() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move reference to docs/ (at most {README_MAX_BYTES})"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"the README does not link {doc.relative_to(ROOT)}"


def test_every_exit_code_is_documented() -> None:
    codes = set(EXIT_CONSTANT.findall((ROOT / "streamer" / "errors.py").read_text(encoding="utf-8"))) | {"130"}
    table = re.sub(r"<!--.*?-->", "", (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8"), flags=re.S)
    documented = set(re.findall(r"^\|\s*(\d+)\s*\|", table, re.M))
    assert codes <= documented, f"exit codes missing from docs/reliability.md's table: {sorted(codes - documented)}"
