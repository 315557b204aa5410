"""The documentation builds warning-free, and the docstring examples run."""

import doctest
import importlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

DOCTEST_MODULES = ["mixexp._estimators", "mixexp.datasets._base", "mixexp.inference"]


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("matplotlib")  # docs/_scripts/plot_mcycle.py makes a figure
    from sphinx.cmd.build import build_main

    outdir = tmp_path / "html"
    status = build_main(["-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(outdir)])
    assert status == 0, "sphinx-build -W failed; see the warnings in the captured stderr"
    assert (outdir / "index.html").is_file()
    assert (outdir / "generated" / "mixexp.MixtureOfExpertsRegressor.html").is_file()
    assert (outdir / "_images" / "mcycle_moe.png").is_file()
    assert (outdir / "_images" / "gaussian_gating_parts.png").is_file()
    assert (outdir / "_images" / "squarem_paths.png").is_file()


def test_gaussian_parts_figure_is_the_notebooks_output(tmp_path):
    # docs/_scripts/plot_gaussian_parts.py copies the committed notebook's figure, byte for byte
    import base64
    import json

    spec = importlib.util.spec_from_file_location("plot_parts", DOCS / "_scripts" / "plot_gaussian_parts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    notebook = json.loads(module.NOTEBOOK.read_text())
    [cell] = [c for c in notebook["cells"] if "".join(c["source"]).startswith(module.CELL_START)]
    [image] = [o["data"]["image/png"] for o in cell["outputs"] if "image/png" in o.get("data", {})]
    assert base64.b64decode(image) == out.read_bytes()
    # the cell not executed, or no such cell: a clear error
    for c in notebook["cells"]:
        if c["cell_type"] == "code":
            c["outputs"] = []
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(ValueError, match="no image output"):
        module.figure_png(tmp_path / "nb.ipynb")
    notebook["cells"].remove(cell)
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(ValueError, match="expected one code cell"):
        module.figure_png(tmp_path / "nb.ipynb")


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, report=False
    )
    assert result.attempted > 0, f"no doctest found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"


def test_shared_parameter_docs_are_filled_in():
    # the estimators' shared parameter descriptions (mixexp._estimators._SHARED_PARAM_DOCS) replace their
    # "{shared: NAME}" lines, at the indentation of the surrounding parameters
    from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
    from mixexp._estimators import _SHARED_PARAM_DOCS

    for cls in (MixtureOfExpertsRegressor, MixtureOfExpertsClassifier):
        assert "{shared:" not in cls.__doc__
        lines = cls.__doc__.split("\n")
        for name, text in _SHARED_PARAM_DOCS.items():
            [i] = [k for k, line in enumerate(lines) if line.lstrip().startswith(f"{name} : ")]
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            [n_experts] = [line for line in lines if line.lstrip().startswith("n_experts : ")]
            assert n_experts.startswith(indent) and not n_experts[len(indent)].isspace()
            expected = "\n".join(indent + t if t else "" for t in text.splitlines())
            assert "\n".join(lines[i:]).startswith(expected)
