"""Run R's flexmix through Rscript, for the cross-check tests (no rpy2)."""

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


@functools.cache
def flexmix_available():
    """True where Rscript exists and loads the flexmix package."""
    if shutil.which("Rscript") is None:
        return False
    result = subprocess.run(
        ["Rscript", "--vanilla", "-e", "suppressMessages(library(flexmix))"],
        capture_output=True, timeout=120,
    )
    return result.returncode == 0


_SCRIPT = r"""
suppressMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
k <- as.integer(args[2]); nrep <- as.integer(args[3]); tol <- as.numeric(args[4])
set.seed(as.integer(args[5]))
xs <- setdiff(names(D), "y")
f <- as.formula(paste("y ~", paste(xs, collapse = " + ")))
conc <- if (args[6] == "1") FLXPmultinom(as.formula(paste("~", paste(xs, collapse = " + ")))) else NULL
ctrl <- list(minprior = 0, tolerance = tol, iter.max = 2000)
best <- NULL
for (r in seq_len(nrep)) {
  m <- if (is.null(conc)) {
    try(flexmix(f, data = D, k = k, model = FLXMRglm(family = "gaussian"), control = ctrl), silent = TRUE)
  } else {
    try(flexmix(f, data = D, k = k, model = FLXMRglm(family = "gaussian"),
                concomitant = conc, control = ctrl), silent = TRUE)
  }
  if (inherits(m, "try-error")) next
  if (m@k < k) next
  if (is.null(best) || logLik(m) > logLik(best)) best <- m
}
if (is.null(best)) { cat("RESULT NA\n") } else {
  cat("RESULT", as.numeric(logLik(best)), best@iter, "\n")
}
"""


def flexmix_gaussian_moe(X, y, n_experts, nrep=5, tol=1e-8, seed=0, concomitant=True):
    """Best log-likelihood of flexmix's softmax-gated Gaussian MoE over ``nrep`` starts.

    With ``concomitant=False`` the mixing weights are constant (a finite
    mixture of regressions).

    Starts that lose an expert (flexmix drops components) are not counted.

    Returns
    -------
    loglik : float or None
        None when no start kept every expert.
    iterations : int or None
    """
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        names = [f"x{j + 1}" for j in range(X.shape[1])]
        np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header=",".join([*names, "y"]), comments="")
        script = Path(tmp) / "fit.R"
        script.write_text(_SCRIPT)
        out = subprocess.run(
            ["Rscript", "--vanilla", str(script), str(csv), str(n_experts), str(nrep), str(tol), str(seed),
             "1" if concomitant else "0"],
            capture_output=True, text=True, timeout=1200, check=True,
        ).stdout
    fields = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    if fields[1] == "NA":
        return None, None
    return float(fields[1]), int(fields[2])
