"""The command line: python -m mixexp demo / fit."""

import subprocess
import sys

import numpy as np
import pytest

from mixexp.cli import main
from mixexp.datasets import load_mcycle, make_moe_regression


def test_demo_prints_summary(capsys):
    main(["demo", "--n-init", "2"])
    out = capsys.readouterr().out
    for text in ("Motorcycle", "Experts", "Gate", "noise sd", "BIC", "single linear regression", "fit time"):
        assert text in out
    # the mixture fits better than one line
    lines = {l.split()[0]: l.split() for l in out.splitlines() if l.startswith(("mixture", "single"))}
    assert float(lines["mixture"][4]) > float(lines["single"][3])


def test_python_dash_m_demo_runs():
    result = subprocess.run(
        [sys.executable, "-m", "mixexp", "demo", "--n-init", "1"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "mixture of 3 experts" in result.stdout


def test_fit_csv(tmp_path, capsys):
    X, y = make_moe_regression(300, n_features=2, n_experts=2, random_state=0)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,resp", comments="")
    main(["fit", str(path), "--target", "resp", "--n-init", "2"])
    out = capsys.readouterr().out
    assert "resp ~ a + b" in out
    with pytest.raises(SystemExit, match="not in"):
        main(["fit", str(path), "--target", "nope"])


def test_load_mcycle():
    data = load_mcycle()
    assert data.data.shape == (133, 1) and data.target.shape == (133,)
    assert "Silverman" in data.DESCR
    assert np.isfinite(data.data).all() and np.isfinite(data.target).all()
