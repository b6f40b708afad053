"""The documentation points inside the repository: every relative link and image of the
README and of ``docs/`` names a file that exists, no file of the repository refers to a
document that lives outside it, and every results table between ``<!-- table:NAME -->``
markers is what ``docs/generate.py`` makes of the committed JSON (``make docs`` rewrites them)."""

from __future__ import annotations

import importlib.util
import re
import resource
import subprocess
import sys
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


def _slugs(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_to_a_page_names_one_of_its_headings(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    missing = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or "#" not in target:
            continue
        name, anchor = target.split("#", 1)
        dest = page if not name else page.parent / name
        if dest.suffix == ".md" and dest.exists() and anchor not in _slugs(dest):
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to headings that do not exist: {missing}"


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


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_table_is_up_to_date_with_its_json():
    stale = _generator().stale()
    assert not stale, f"results tables out of date with benchmarks/results/*.json in {stale}: run `make docs`"


def test_the_pages_hold_generated_tables_and_name_only_known_ones():
    gen = _generator()
    names = [m.group(2) for page in PAGES for m in gen.MARKER.finditer(page.read_text(encoding="utf-8"))]
    assert names, "no generated tables found"
    assert set(names) <= set(gen.TABLES), sorted(set(names) - set(gen.TABLES))
    # every table the generator knows is shown somewhere
    assert set(gen.TABLES) <= set(names), sorted(set(gen.TABLES) - set(names))


def test_the_freshness_check_sees_a_changed_number_and_an_unknown_table():
    gen = _generator()
    fresh = gen.regenerate("x\n<!-- table:bad-input -->\n<!-- /table:bad-input -->\ny\n")
    assert "| input class |" in fresh and gen.regenerate(fresh) == fresh
    tampered = fresh.replace("| 441 |", "| 442 |").replace("**441**", "**442**")
    assert tampered != fresh and gen.regenerate(tampered) == fresh
    with pytest.raises(KeyError, match="unknown table"):
        gen.regenerate("<!-- table:no-such-table -->\n<!-- /table:no-such-table -->")


def test_the_generator_is_fast_and_reads_only_json():
    code = ("import runpy, sys; sys.argv = ['generate.py', '--check']\n"
            "try:\n    runpy.run_path('docs/generate.py', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "assert not any(m == 'jax' or m.startswith(('jax.', 'numpy', 'flax')) for m in sys.modules), 'imports jax/numpy'\n"
            "sys.exit(code)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    # CPU seconds, not wall time: the machine may be shared
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert seconds < 5, f"docs/generate.py --check took {seconds:.1f} CPU seconds"


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 260, f"README.md has {lines} lines; move detail to docs/"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_snippet_compiles(page):
    for i, block in enumerate(_python_blocks(page)):
        compile(block, f"{page.name}, python block {i}", "exec")


@pytest.mark.slow
def test_the_readme_tour_runs():
    """The README's first two snippets (the construction; a shipped model), as a reader runs them."""
    blocks = _python_blocks(ROOT / "README.md")
    assert len(blocks) >= 2
    for block in blocks[:2]:
        done = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
