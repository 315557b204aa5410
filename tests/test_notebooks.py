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


#: notebooks committed with their generator's full run (``python notebooks/_make_NN_*.py --full``)
FULL_RUN_GENERATORS = ["_make_02_gaussian_gating_rates.py", "_make_03_softmax_gating_rates.py"]


@pytest.mark.parametrize("generator", FULL_RUN_GENERATORS)
def test_committed_notebook_is_the_generators_full_run(generator):
    # same cells as the generator's build, the parameter cell set to the full run, every code cell executed
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    import importlib.util

    spec = importlib.util.spec_from_file_location(generator[:-3], NOTEBOOK_DIR / generator)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.build(full=True)
    committed = nbformat.read(module.PATH, as_version=4)
    assert [c.cell_type for c in committed.cells] == [c.cell_type for c in expected.cells]
    assert [c.source for c in committed.cells] == [c.source for c in expected.cells]
    assert any(c.source.startswith("QUICK = False") for c in committed.cells if c.cell_type == "code")
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
