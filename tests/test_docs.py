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


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, report=False
    )
    assert result.attempted > 0, f"no doctest found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
