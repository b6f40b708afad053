"""The notebooks are stored with their outputs (``make notebooks`` executes them in place), and
they still execute from a clean kernel (the venv's own python3, no kernelspec install): each
is run from an in-memory copy, so the stored outputs are never rewritten by the suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: a stored notebook (outputs, images included) stays well under this many bytes
MAX_BYTES = 5 * 1024 * 1024


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_with_outputs_of_one_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code cells"
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name} is stored with cells that were not executed: run `make notebooks`"
    # one run, top to bottom, in a fresh kernel
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}; run `make notebooks`"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} is stored with error outputs: {[e.get('ename') for e in errors]}"
    assert any(c.outputs for c in code), f"{path.name} is stored without any output"
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 2**20:.1f} MB"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)  # an in-memory copy: the stored file is not touched
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # a last cell (in memory only) reports the kernel's interpreter
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    # the kernel runs this interpreter (ipykernel's native "python3" spec) from the repo root,
    # so the package imports whether or not it is pip-installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # the kernel is this environment's python (the venv's, where the package is installed)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream").strip()
    assert printed == sys.prefix, (printed, sys.prefix)
