"""Every notebook in notebooks/ runs from top to bottom without errors.

The notebooks run in the ``python3`` Jupyter kernel. With ipykernel installed in
the test environment (the ``test`` extra), that kernel resolves to the
interpreter running the tests, so it imports the mixexp installed there.
"""

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    nb = nbformat.read(path, as_version=4)
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
