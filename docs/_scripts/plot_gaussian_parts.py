"""Figure of the user guide: the parts of the Gaussian-gating loss against n.

The figure is the output of ``notebooks/02_gaussian_gating_rates.ipynb``'s full
run (hours of fits, not redone at build time): this script copies that cell's
image. Run by ``docs/conf.py`` at build time; also usable on its own::

    python docs/_scripts/plot_gaussian_parts.py [output-directory]
"""

import base64
import json
import sys
from pathlib import Path

FILENAME = "gaussian_gating_parts.png"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_gaussian_gating_rates.ipynb"
#: the first line of the notebook's code cell that draws the figure
CELL_START = "fig, axes = plt.subplots(2, 4"


def figure_png(notebook=NOTEBOOK):
    """The PNG bytes of the figure cell's output in ``notebook``.

    Raises
    ------
    ValueError
        When the notebook has no such cell, or the cell has no image (not executed).
    """
    cells = json.loads(Path(notebook).read_text())["cells"]
    found = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith(CELL_START)]
    if len(found) != 1:
        raise ValueError(
            f"{notebook}: expected one code cell starting with {CELL_START!r}, found {len(found)}."
        )
    images = [o["data"]["image/png"] for o in found[0].get("outputs", []) if "image/png" in o.get("data", {})]
    if not images:
        raise ValueError(f"{notebook}: the figure cell has no image output; execute the notebook first.")
    return base64.b64decode(images[0])


def main(outdir):
    """Write ``gaussian_gating_parts.png`` into ``outdir``."""
    out = Path(outdir) / FILENAME
    out.write_bytes(figure_png())
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()))
