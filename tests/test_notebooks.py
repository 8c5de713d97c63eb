"""The tutorial notebooks: every notebook in notebooks/ runs top to bottom in small mode
(MINIGRU_SMALL=1), and every committed notebook was saved executed, in order, without errors.

Each notebook runs on a copy of the notebooks folder in a temporary directory, so the committed
file is never touched. A failure reports the notebook, the failing cell's source and its traceback.
"""
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 180          # per cell, in small mode; a whole notebook should take well under a minute
MAX_NOTEBOOK_BYTES = 2_000_000

pytestmark = pytest.mark.notebook


def _code_cells(notebook: dict) -> list:
    return [c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_the_tutorials_are_there():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_was_saved_executed(path):
    """Outputs are part of the tutorial: a notebook is committed after one clean top-to-bottom run."""
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; keep notebooks under {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB "
        "(smaller figures, fewer printed arrays)")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = _code_cells(notebook)
    assert cells, f"{path.name} has no code cells"
    counts = [c.get("execution_count") for c in cells]
    assert None not in counts, (f"{path.name}: code cells {[i for i, n in enumerate(counts) if n is None]} were "
                                "never run; execute the notebook (jupyter nbconvert --execute --to notebook "
                                "--inplace) before committing it")
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts} show cells run out of order or repeatedly; restart the "
        "kernel and run everything top to bottom before saving")
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was saved with error outputs (code cell, error, message): {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    monkeypatch.setenv("MINIGRU_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)          # let the kernel use the inline backend
    # The "python3" kernel spec may say just "python": make that this interpreter (the one with minigru).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

    notebook = nbformat.read(work / path.name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))     # the kernel colours its tracebacks
        pytest.fail(f"{path.name} failed in small mode (MINIGRU_SMALL=1):\n{message}", pytrace=False)
