"""Every notebook in notebooks/ runs from top to bottom without errors.

The notebooks run in the ``python3`` Jupyter kernel. With ipykernel installed in
the test environment (the ``test`` extra), that kernel resolves to the
interpreter running the tests, so it imports the mixexp installed there.
"""

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _quick(nb):
    """Switch a notebook committed with a full run (parameter cell ``QUICK = False``) to its quick run."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            lines = cell.source.split("\n")
            cell.source = "\n".join(
                "QUICK = True" + line[len("QUICK = False"):] if line.startswith("QUICK = False") else line
                for line in lines
            )
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    nb = _quick(nbformat.read(path, as_version=4))
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    # Raises CellExecutionError, with the failing cell and its traceback, on any error.
    client.execute()


def test_notebooks_found():
    assert NOTEBOOKS, f"no notebook found in {NOTEBOOK_DIR}"


def test_full_run_notebooks_are_run_quick():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("QUICK = False  # full\nN = 3")])
    assert _quick(nb).cells[0].source == "QUICK = True  # full\nN = 3"
