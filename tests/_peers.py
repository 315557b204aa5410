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


_GLM_SCRIPT = r"""
suppressMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
k <- as.integer(args[2]); nrep <- as.integer(args[3]); tol <- as.numeric(args[4])
set.seed(as.integer(args[5]))
family <- args[6]; link <- args[7]; iter_max <- as.integer(args[8])
xs <- grep("^x", names(D), value = TRUE)
zs <- grep("^z", names(D), value = TRUE)
f <- as.formula(paste("y ~", if (length(xs)) paste(xs, collapse = " + ") else "1"))
model <- FLXMRglm(family = family)
if (link == "log" && family == "Gamma") {
  # flexmix 2.3-18 hard-codes Gamma()'s inverse link; the same driver with the log link
  # (glm.fit M-step, flexmix's shape sum(w) / deviance).
  model@defineComponent <- function(para) {
    predict <- function(x, ...) exp(x %*% para$coef)
    logLik <- function(x, y, ...) dgamma(y, shape = para$shape, scale = predict(x) / para$shape, log = TRUE)
    new("FLXcomponent", parameters = list(coef = para$coef, shape = para$shape),
        predict = predict, logLik = logLik, df = para$df)
  }
  model@fit <- function(x, y, w, component) {
    fit <- glm.fit(x, y, weights = w, family = Gamma(link = "log"), start = component$coef)
    model@defineComponent(para = list(coef = coef(fit), df = ncol(x) + 1,
                                      shape = sum(fit$prior.weights) / fit$deviance))
  }
}
conc <- if (length(zs)) FLXPmultinom(as.formula(paste("~", paste(zs, collapse = " + ")))) else FLXPconstant()
ctrl <- list(minprior = 0, tolerance = tol, iter.max = iter_max)
best <- NULL
for (r in seq_len(nrep)) {
  m <- try(flexmix(f, data = D, k = k, model = model, concomitant = conc, control = ctrl), silent = TRUE)
  if (inherits(m, "try-error")) next
  if (m@k < k) next
  if (is.null(best) || logLik(m) > logLik(best)) best <- m
}
if (is.null(best)) { cat("RESULT NA\n") } else {
  cat("RESULT", format(as.numeric(logLik(best)), digits = 17), best@iter, "\n")
  for (j in seq_len(k)) {
    p <- best@components[[j]][[1]]@parameters
    cat("COEF", format(p$coef, digits = 17), "\n")
    cat("SHAPE", if (is.null(p$shape)) "NA" else format(p$shape, digits = 17), "\n")
  }
  if (length(zs)) {
    g <- best@concomitant@coef
    for (j in seq_len(k)) cat("GATE", format(g[, j], digits = 17), "\n")
  }
}
"""


def flexmix_glm_moe(y, X_expert, X_gate, n_experts, family, nrep=5, tol=1e-8, seed=0, link=None,
                    iter_max=2000):
    """Best fit of a flexmix GLM mixture of experts over ``nrep`` starts.

    ``flexmix(y ~ x1 + ..., k = K, model = FLXMRglm(family = family),
    concomitant = FLXPmultinom(~ z1 + ...), control = list(minprior = 0,
    tolerance = tol, iter.max = iter_max))``; ``FLXPconstant()`` when ``X_gate``
    has no column. Starts that lose an expert are not counted.

    Parameters
    ----------
    y : ndarray of shape (n,)
    X_expert, X_gate : ndarray of shape (n, p) and (n, q)
        Expert (``x1, ...``) and concomitant (``z1, ...``) covariates.
    n_experts : int
    family : {"poisson", "Gamma", "gaussian", "binomial"}
    link : {None, "log"}
        ``"log"`` with ``family="Gamma"`` swaps flexmix's hard-coded inverse
        link for the log link (same driver, same shape estimate).

    Returns
    -------
    dict or None
        None when no start kept every expert; else ``loglik`` (flexmix's
        ``logLik``), ``iterations``, ``coef`` (K, 1 + p), ``shape`` (K,) (NaN
        for families without one) and, with concomitant covariates, ``gate``
        (K, 1 + q), row 0 zero (flexmix's reference component).
    """
    n = len(y)
    X_expert = np.reshape(X_expert, (n, -1))
    X_gate = np.reshape(X_gate, (n, -1))
    names = ["y"] + [f"x{j + 1}" for j in range(X_expert.shape[1])]
    names += [f"z{j + 1}" for j in range(X_gate.shape[1])]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        np.savetxt(csv, np.column_stack([y, X_expert, X_gate]), delimiter=",", header=",".join(names),
                   comments="", fmt="%.17g")
        script = Path(tmp) / "fit.R"
        script.write_text(_GLM_SCRIPT)
        out = subprocess.run(
            ["Rscript", "--vanilla", str(script), str(csv), str(n_experts), str(nrep), str(tol), str(seed),
             family, link or "default", str(iter_max)],
            capture_output=True, text=True, timeout=3600, check=True,
        ).stdout
    lines = out.splitlines()
    fields = next(line for line in lines if line.startswith("RESULT")).split()
    if fields[1] == "NA":
        return None

    def rows(tag):
        tagged = [line.split()[1:] for line in lines if line.startswith(tag + " ")]
        return np.array([[float(v) for v in fields] for fields in tagged])

    result = {
        "loglik": float(fields[1]),
        "iterations": int(fields[2]),
        "coef": rows("COEF"),
        "shape": np.array([float("nan") if line.split()[1] == "NA" else float(line.split()[1])
                           for line in lines if line.startswith("SHAPE ")]),
    }
    if X_gate.shape[1]:
        result["gate"] = rows("GATE")
    return result


_CLASSIFIER_SCRIPT = r"""
suppressMessages(library(flexmix))
args <- commandArgs(trailingOnly = TRUE)
D <- read.csv(args[1])
k <- as.integer(args[2]); nrep <- as.integer(args[3]); tol <- as.numeric(args[4])
set.seed(as.integer(args[5]))
family <- args[6]
xs <- setdiff(names(D), "y")
rhs <- paste(xs, collapse = " + ")
if (family == "binomial") {
  f <- as.formula(paste("cbind(y, 1 - y) ~", rhs))
  model <- FLXMRglm(family = "binomial")
} else {
  D$y <- factor(D$y)
  f <- as.formula(paste("y ~", rhs))
  model <- FLXMRmultinom()
}
conc <- FLXPmultinom(as.formula(paste("~", rhs)))
ctrl <- list(minprior = 0, tolerance = tol, iter.max = 5000)
best <- NULL
for (r in seq_len(nrep)) {
  m <- try(flexmix(f, data = D, k = k, model = model, concomitant = conc, control = ctrl), silent = TRUE)
  if (inherits(m, "try-error")) next
  if (m@k < k) next
  if (is.null(best) || logLik(m) > logLik(best)) best <- m
}
if (is.null(best)) { cat("RESULT NA\n") } else {
  cat("RESULT", as.numeric(logLik(best)), best@iter, "\n")
}
"""


def flexmix_classifier_moe(X, y, n_experts, nrep=5, tol=1e-8, seed=0, family="binomial"):
    """Best log-likelihood of flexmix's softmax-gated classification MoE over ``nrep`` starts.

    ``family="binomial"``: ``FLXMRglm(family = "binomial")`` experts on 0/1
    outcomes given as ``cbind(y, 1 - y)``; ``family="multinom"``:
    ``FLXMRmultinom()`` experts on class indices ``y`` (0..C-1). The gate is
    ``FLXPmultinom`` on every column of X; ``minprior = 0``. Starts that lose
    an expert are not counted.

    Returns
    -------
    loglik : float or None
        None when no start kept every expert.
    iterations : int or None
    """
    if family not in ("binomial", "multinom"):
        raise ValueError(f"family must be 'binomial' or 'multinom'; got {family!r}")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        names = [f"x{j + 1}" for j in range(X.shape[1])]
        np.savetxt(
            csv, np.column_stack([X, y]), delimiter=",", header=",".join([*names, "y"]),
            comments="", fmt="%.17g",
        )
        script = Path(tmp) / "fit.R"
        script.write_text(_CLASSIFIER_SCRIPT)
        out = subprocess.run(
            ["Rscript", "--vanilla", str(script), str(csv), str(n_experts), str(nrep), str(tol),
             str(seed), family],
            capture_output=True, text=True, timeout=1800, check=True,
        ).stdout
    fields = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    if fields[1] == "NA":
        return None, None
    return float(fields[1]), int(fields[2])
