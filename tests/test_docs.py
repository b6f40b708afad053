"""The documentation points inside the repository: every relative link and image of the
README and of ``docs/`` names a file that exists, and no file of the repository refers to a
document that lives outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: [text](target) and ![alt](target); the target up to a space (titles) or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _relative_targets(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not code blocks
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page):
    missing = [t for t in _relative_targets(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("see [a](there.md) and ![b](img/x.png) and [c](https://example.org) and [d](#top)\n"
                    "```\n[not a link](nowhere.md)\n```\n")
    assert _relative_targets(page) == ["there.md", "img/x.png"]


def test_no_file_refers_to_a_document_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"THEORY\.md|DESIGN\.md|\.\./shared/")
    offenders = []
    for name in files:
        path = ROOT / name
        if name == "tests/test_docs.py" or path.suffix not in {".py", ".md", ".ipynb", ".toml", ".sh", ""} \
                or not path.is_file():
            continue
        if outside.search(path.read_text(encoding="utf-8", errors="ignore")):
            offenders.append(name)
    assert not offenders, f"these files refer to documents outside the repository: {offenders}"
