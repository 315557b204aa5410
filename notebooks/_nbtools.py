"""What the notebook generators (``notebooks/_make_*.py``) share: cells, the build, execution.

A generator imports it after putting its own folder on ``sys.path`` (so it
works both as a script and when a test loads the generator from its file).
"""

import time

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text):
    """A markdown cell, surrounding blank lines stripped."""
    return new_markdown_cell(text.strip("\n"))


def code(text, tags=None):
    """A code cell, surrounding blank lines stripped, with cell ``tags`` (e.g. ``["parameters"]``)."""
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(cells):
    """A Python 3 notebook of ``cells``."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _same_code(a, b):
    """Whether two code cells are the same, up to the ``QUICK`` switch of the parameter cell."""

    def normal(source):
        return source.replace("QUICK = False", "QUICK = True")

    return normal(a.source) == normal(b.source)


def markdown_only(path, cells):
    """Copy the markdown of ``cells`` into the committed notebook at ``path``, executing nothing.

    Refused (``SystemExit``) unless the notebook has the same cells, with the
    same code, up to the ``QUICK`` switch: its outputs must still be those of
    this code.
    """
    nb = nbformat.read(path, as_version=4)
    if len(nb.cells) != len(cells) or not all(
        a.cell_type == b.cell_type and (a.cell_type == "markdown" or _same_code(a, b))
        for a, b in zip(nb.cells, cells, strict=True)
    ):
        raise SystemExit("the notebook's cells differ from this script's; regenerate it in full.")
    for cell, new in zip(nb.cells, cells, strict=True):
        if cell.cell_type == "markdown":
            cell.source = new.source
    nbformat.write(nb, path)
    print(f"updated the markdown cells of {path}")


def execute(nb, path, timeout=3600):
    """Execute ``nb`` in the folder of ``path``, write it there and print the wall time."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    nbformat.write(nb, path)
    print(f"wrote {path} ({time.perf_counter() - start:.0f} s)")


def switch_quick(cells, quick):
    """Copies of ``cells`` with the parameter cell's ``QUICK`` switch set to ``quick``."""
    cells = [nbformat.from_dict(dict(cell)) for cell in cells]
    old, new = ("QUICK = False", "QUICK = True") if quick else ("QUICK = True", "QUICK = False")
    for cell in cells:
        if cell.cell_type == "code" and cell.source.startswith(old):
            cell.source = new + cell.source[len(old) :]
    return cells


def run(path, cells, argv, timeout=3600):
    """The command line of a generator whose notebook is quick by default.

    ``--markdown-only``: :func:`markdown_only`; ``--full``: execute the full
    version; otherwise the quick one. The notebook is written to ``path``.
    """
    if "--markdown-only" in argv:
        markdown_only(path, cells)
        return
    execute(notebook(switch_quick(cells, "--full" not in argv)), path, timeout=timeout)
