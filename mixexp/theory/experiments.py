"""Simulation sweeps: parameter-estimation rates and generalisation curves.

A sweep is a grid of *cells* (a sample size, a replicate and, for
:func:`generalization_curve`, a number of experts). Each cell draws its data
with its own seed, derived from ``random_state`` and the cell's coordinates
only, so the results do not depend on ``n_jobs``, on the order in which cells
finish, or on which cells a checkpoint already holds. Cells run in parallel
with joblib; a tqdm progress bar is shown when tqdm is installed. With
``checkpoint=path`` every finished cell is appended to a CSV file at once and a
re-run skips the cells already there (a JSON file beside it records the
settings, and a re-run with other settings is refused).
"""

import csv
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ..solvers._squarem import MAX_DECREASE
from . import losses as _losses
from ._tables import append_row, as_columns, read_rows, rows_to_table

INIT_METHODS = ("near_truth", "kmeans")

#: EM settings of the rate sweeps: the plain maximum-likelihood estimate the
#: theory is about (no gate penalty), a tight tolerance and many iterations,
#: since EM is slow to converge in over-fitted models.
RATE_ESTIMATOR_PARAMS = {"gate_penalty": 0.0}


# -- gates: losses and fitters ------------------------------------------------------------
@dataclass(frozen=True)
class GateSpec:
    """How a rate sweep measures one kind of gate.

    Attributes
    ----------
    d1, d2 : callable
        ``d1(fitted, true)`` and ``d2(fitted, true, r_bar)`` Voronoi losses.
    cell_errors : callable
        ``cell_errors(fitted, true, r_bar=None)`` returning a
        :class:`~mixexp.theory.losses.CellErrors` (with the exponents of
        ``d2`` for ``r_bar``).
    parameters : tuple of str
        The keys of its ``errors``.
    fit : callable or None
        ``fit(X, y, n_experts, start, spec, seed)`` for ``solver="em"``, or
        None when mixexp has no estimator for this gate yet (pass a callable
        ``solver``).
    """

    d1: object
    d2: object
    cell_errors: object
    parameters: tuple
    fit: object = None


def _em_fit(X, y, n_experts, start, spec, seed):
    """Fit MixtureOfExpertsRegressor by EM, from ``start`` models (near truth) or k-means."""
    from .._estimators import MixtureOfExpertsRegressor

    # tol_scale="total": a tolerance on the total log-likelihood, so the mean's is tol / n
    tol = spec.tol / len(y) if spec.tol_scale == "total" else spec.tol
    params = {
        **RATE_ESTIMATOR_PARAMS,
        "solver": spec.solver,
        **spec.estimator_params,
        "max_iter": spec.max_iter,
        "tol": tol,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if start is None:
            est = MixtureOfExpertsRegressor(
                n_experts, init="kmeans", n_init=spec.n_init, random_state=seed,
                **{**_estimator_gate(spec.true_model, n_experts), **params},
            ).fit(X, y)
            return _fit_result(est)
        best = None
        for model in start:
            est = model.to_estimator(X, y, **params)
            est.set_params(warm_start=True)
            est.fit(X, y)
            if best is None or est.lower_bound_ > best.lower_bound_:
                best = est
        return _fit_result(best)


def _fit_result(est):
    if est.gate == "gaussian":  # the parameters of GaussianGatedMoE
        cov = np.asarray(est.gate_covariances_)
        if cov.ndim == 2:  # "diag" or "spherical" gate covariances: (K, d) variances
            cov = np.stack([np.diag(row) for row in cov])
        return {
            "weights": est.gate_weights_,
            "means": est.gate_means_,
            "covariances": cov,
            "expert_coef": est.expert_coef_,
            "noise_variance": est.noise_variance_,
            "n_iter": int(est.n_iter_),
            "converged": bool(est.converged_),
            "lower_bound": float(est.lower_bound_),
        }
    return {
        "gate_coef": est.gate_coef_,
        "expert_coef": est.expert_coef_,
        "noise_variance": est.noise_variance_,
        "n_iter": int(est.n_iter_),
        "converged": bool(est.converged_),
        "lower_bound": float(est.lower_bound_),
    }


def _estimator_gate(true_model, n_experts):
    """Estimator gate parameters for a k-means-started fit of ``n_experts`` experts to ``true_model``.

    A top-K truth is fitted with ``gate="softmax"`` and ``top_k = top_k* + n_experts - k*`` (capped at
    ``n_experts``), the over-specified top-K-bar of :meth:`TopKSoftmaxMoE.near_truth`.
    """
    if true_model.gate == "top_k":
        top_k = min(n_experts, true_model.top_k + n_experts - true_model.n_experts)
        return {"gate": "softmax", "top_k": top_k}
    return {"gate": true_model.gate}


#: ``true_model.gate`` -> how to measure it. Registering a new gate here (and
#: an estimator in ``fit``) is all a sweep needs.
GATE_SPECS = {
    "softmax": GateSpec(
        _losses.softmax_d1,
        _losses.softmax_d2,
        _losses.softmax_cell_errors,
        _losses.SOFTMAX_PARAMETERS,
        _em_fit,
    ),
    "top_k": GateSpec(
        _losses.topk_d1, _losses.topk_d2, _losses.softmax_cell_errors, _losses.SOFTMAX_PARAMETERS, _em_fit
    ),
    "gaussian": GateSpec(
        _losses.gaussian_gating_d1,
        lambda fitted, true, r_bar=None: _losses.gaussian_gating_d2(fitted, true, r_bar=r_bar, r_tilde=r_bar),
        lambda fitted, true, r_bar=None: _losses.gaussian_cell_errors(
            fitted, true, r_bar=r_bar, r_tilde=r_bar
        ),
        _losses.GAUSSIAN_PARAMETERS,
        _em_fit,
    ),
}


# -- seeds, progress, checkpoints --------------------------------------------------------------
def _base_seed(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31 - 1))
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def cell_seed(base_seed, *coords):
    """The seed of one cell: a function of the base seed and the cell's coordinates only.

    Parameters
    ----------
    base_seed : int
    *coords : int
        E.g. ``(n, replicate)``.

    Returns
    -------
    int
    """
    return int(np.random.SeedSequence([int(base_seed), *(int(c) for c in coords)]).generate_state(1)[0])


def _progress_bar(total, enabled, desc):
    """A tqdm bar, or None when ``enabled`` is False or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return value


def _open_checkpoint(checkpoint, settings, base_seed, random_state):
    """Rows already in the checkpoint and the base seed to use (checks the settings)."""
    path = Path(checkpoint)
    meta_path = path.with_name(path.name + ".json")
    settings = _jsonable(settings)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["settings"] != settings:
            raise ValueError(
                f"the checkpoint {path} was made with other settings; use another path or delete it and "
                f"{meta_path.name}."
            )
        if random_state is None:
            base_seed = meta["base_seed"]
        elif meta["base_seed"] != base_seed:
            raise ValueError(
                f"the checkpoint {path} was made with base seed {meta['base_seed']}, not {base_seed}; "
                "use the same random_state, or another path."
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps({"settings": settings, "base_seed": base_seed}, indent=1))
        if path.exists():
            path.unlink()
    rows = read_rows(path) if path.exists() and path.stat().st_size else []
    return path, rows, base_seed


def _check_checkpoint_columns(path, columns):
    """Refuse a checkpoint whose header is not ``columns`` (rows appended to it would be misread)."""
    if not (path.exists() and path.stat().st_size):
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if header != list(columns):
        missing = [c for c in columns if c not in header]
        raise ValueError(
            f"the checkpoint {path} holds other columns than this version of mixexp writes"
            f"{f' (missing: {missing})' if missing else ''}; delete it and {path.name}.json to recompute, "
            "or use another path."
        )


def _run_cells(func, spec, cells, keys, columns, n_jobs, progress, checkpoint, settings, random_state, desc):
    """Run ``func(spec, *cell, seed)`` over the cells not in the checkpoint; all rows, sorted."""
    from joblib import Parallel, delayed

    base_seed = _base_seed(random_state)
    done = {}
    path = None
    if checkpoint is not None:
        path, rows, base_seed = _open_checkpoint(checkpoint, settings, base_seed, random_state)
        _check_checkpoint_columns(path, columns)
        for row in rows:
            if all(isinstance(row.get(k), (int, np.integer)) for k in keys):
                done[tuple(row[k] for k in keys)] = row
    wanted = [tuple(int(c) for c in cell) for cell in cells]
    todo = [cell for cell in wanted if cell not in done]
    bar = _progress_bar(len(wanted), progress, desc)
    if bar is not None and len(todo) < len(wanted):
        bar.update(len(wanted) - len(todo))
    new = {}
    try:
        if todo:
            one_job = n_jobs in (None, 1)
            tasks = (delayed(func)(spec, *cell, cell_seed(base_seed, *cell), one_job) for cell in todo)
            results = Parallel(n_jobs=1 if one_job else n_jobs, return_as="generator_unordered")(tasks)
            for row in results:
                key = tuple(row[k] for k in keys)
                new[key] = row
                if path is not None:
                    append_row(path, row, columns)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = [new[c] if c in new else done[c] for c in sorted(set(wanted))]
    return rows_to_table(rows, columns)


# -- rate experiments ------------------------------------------------------------------------
@dataclass
class _RateSpec:
    true_model: object
    n_experts: int
    init: str
    solver: object
    n_init: int
    split: str
    perturbation: dict
    r_bar: dict
    max_iter: int
    tol: float
    estimator_params: dict = field(default_factory=dict)
    tol_scale: str = "mean"


def _rate_columns(n_experts, parameters):
    per = [f"{p}_size{m}" for p in parameters for m in range(1, n_experts + 1)]
    per += [f"{p}_size{m}_w" for p in parameters for m in range(2, n_experts + 1)]
    return [
        "n",
        "replicate",
        "seed",
        "n_experts",
        "loss",
        "d1",
        "d2",
        "mass",
        "d2_mass",
        "d2_single",
        "d2_over",
        "max_cell_size",
        *per,
        "n_iter",
        "converged",
        "lower_bound",
        "fit_time",
    ]


def _rate_cell(spec, n, replicate, seed, single_job=True):
    """One fit of a rate sweep: sample, fit, measure."""
    if not single_job:
        import numba

        numba.set_num_threads(1)  # one Numba thread per joblib worker
    rng = np.random.RandomState(seed)
    model = spec.true_model
    gate = GATE_SPECS[model.gate]
    X, y = model.sample(n, rng)
    start = None
    if spec.init == "near_truth":
        start = [
            model.near_truth(
                spec.n_experts, n, split=spec.split, perturbation=spec.perturbation, random_state=rng
            )[0]
            for _ in range(spec.n_init)
        ]
    fit_seed = int(rng.randint(2**31 - 1))
    t0 = time.perf_counter()
    if callable(spec.solver):
        fitted = spec.solver(X, y, n_experts=spec.n_experts, start=start, random_state=fit_seed)
    else:
        fitted = gate.fit(X, y, spec.n_experts, start, spec, fit_seed)
    fit_time = time.perf_counter() - t0
    d1 = gate.d1(fitted, model)
    try:
        d2 = gate.d2(fitted, model, r_bar=spec.r_bar)
    except ValueError:  # a cell larger than the r_bar table
        d2 = float("nan")
    summary = _losses.summarize_cell_errors(gate.cell_errors(fitted, model, r_bar=spec.r_bar), spec.n_experts)
    exact = spec.n_experts == model.n_experts
    return {
        "n": int(n),
        "replicate": int(replicate),
        "seed": int(seed),
        "n_experts": spec.n_experts,
        "loss": d1 if exact else d2,
        "d1": d1,
        "d2": d2,
        **summary,
        "n_iter": int(fitted.get("n_iter", -1)),
        "converged": bool(fitted.get("converged", False)),
        "lower_bound": float(fitted.get("lower_bound", np.nan)),
        "fit_time": fit_time,
    }


def rate_experiment(
    true_model,
    n_experts,
    n_grid,
    n_replicates,
    *,
    init="near_truth",
    solver="em",
    n_init=1,
    split="random",
    perturbation=None,
    r_bar=None,
    max_iter=2000,
    tol=1e-8,
    tol_scale="mean",
    estimator_params=None,
    n_jobs=None,
    random_state=None,
    progress=True,
    checkpoint=None,
):
    """Fit the model to samples of growing size and measure the Voronoi losses.

    For each ``n`` in ``n_grid`` and each of ``n_replicates`` replicates: draw
    ``n`` samples from ``true_model``, fit a mixture of ``n_experts`` experts
    and compute the exact-fitted loss D1, the over-fitted loss D2 and the
    per-parameter errors within the Voronoi cells (see
    :mod:`mixexp.theory.losses`).

    Parameters
    ----------
    true_model : SoftmaxGatedMoE, TopKSoftmaxMoE or GaussianGatedMoE
        The truth. ``solver="em"`` fits softmax- and Gaussian-gated models
        (:class:`~mixexp.MixtureOfExpertsRegressor` with ``gate="softmax"`` or
        ``gate="gaussian"``, full gate covariances) and top-K gates
        (``gate="softmax"`` with ``top_k = top_k* + n_experts - k*``, the
        over-specified top-K-bar; ``estimator_params={"top_k": ...}``
        overrides it).
    n_experts : int
        Number of fitted experts (equal to the truth's: exact-fitted; larger:
        over-fitted).
    n_grid : sequence of int
        Sample sizes.
    n_replicates : int
        Replicates per sample size.
    init : {"near_truth", "kmeans"}, default="near_truth"
        ``"near_truth"``: EM starts at the true parameters, split into
        ``n_experts`` atoms and perturbed (:meth:`SoftmaxGatedMoE.near_truth`,
        the protocol of the reference implementation); the fitted estimator is
        set at those parameters and refitted with ``warm_start=True``, so EM
        starts exactly there. ``"kmeans"``: the estimator's own k-means start.
    solver : "em", "squarem" or callable, default="em"
        ``"em"`` and ``"squarem"`` are the estimator's solvers (SQUAREM: the
        same EM steps with extrapolation, reaching tight tolerances on
        over-fitted models in several times fewer steps). A callable is
        called as ``solver(X, y, n_experts=..., start=..., random_state=...)``
        with ``start`` the list of near-truth models (None for
        ``init="kmeans"``) and returns a dict of the fitted parameters in
        the truth's format (for softmax gates ``gate_coef``, ``expert_coef``,
        ``noise_variance``), optionally with ``n_iter``, ``converged`` and
        ``lower_bound``.
    n_init : int, default=1
        Starts per fit (near-truth starts, or k-means starts); the highest
        likelihood is kept. The reference implementation used 1 start for
        K = 2 and 5 for K = 3, 4.
    split : {"random", "balanced"}, default="random"
        How near-truth starts share the atoms among the true experts.
    perturbation : dict, default=None
        Noise of the near-truth starts (default
        :data:`~mixexp.theory.simulate.PAPER_PERTURBATION`).
    r_bar : dict, default=None
        Exponent table of D2 (default ``{1: 1, 2: 4, 3: 6}``); D2 is NaN for a
        fit with a larger cell than the table knows.
    max_iter : int, default=2000
        EM iterations (the reference implementation's value).
    tol : float, default=1e-8
        EM stops when the mean log-likelihood changes by less than ``tol``.
        Over-fitted models need far tighter values than usual: their
        likelihood is flat along the directions that separate copies of an
        atom, and at large n a near-truth start may already be within
        ``tol`` of its next step, so EM stops there and the measured errors
        are the start's.
    tol_scale : {"mean", "total"}, default="mean"
        ``"total"``: ``tol`` bounds the change of the *total* log-likelihood
        (the estimator gets ``tol / n``), the same precision in nats at every
        n. A tolerance on the mean is n times looser in total nats at sample
        size n, so it stops over-fitted fits earlier, relative to the
        likelihood ratio left to gain, the larger n is.
    estimator_params : dict, default=None
        Other estimator parameters; the default sets ``gate_penalty=0`` (the
        maximum-likelihood estimate).
    n_jobs : int, default=None
        joblib workers over cells (None: 1). With several workers each uses one
        Numba thread.
    random_state : int, RandomState instance or None, default=None
        Base seed; cell ``(n, replicate)`` uses a seed derived from it and its
        coordinates only.
    progress : bool, default=True
        Show a tqdm bar (if tqdm is installed).
    checkpoint : str or Path, default=None
        CSV file that every finished cell is appended to; a re-run skips the
        cells already in it. A checkpoint written with other columns (e.g. by
        a version of mixexp without the ``*_w`` columns) is refused with a
        ValueError.

    Returns
    -------
    table : DataFrame or dict of ndarray
        One row per cell, sorted by ``(n, replicate)``: ``n``, ``replicate``,
        ``seed``, ``n_experts``, ``loss`` (D1 when exact-fitted, else D2),
        ``d1``, ``d2``, ``mass`` (largest cell-weight error),
        ``max_cell_size``, ``{parameter}_size{m}`` (largest error of that
        parameter among atoms in cells of ``m`` atoms, NaN if none),
        ``{parameter}_size{m}_w`` for ``m >= 2`` (the error weighted as in
        D2, whose rate the theory bounds; see
        :func:`~mixexp.theory.losses.summarize_cell_errors`),
        ``n_iter``, ``converged``, ``lower_bound``, ``fit_time``. A pandas
        DataFrame when pandas is installed, else a dict of arrays.

    See Also
    --------
    fit_rate : the log-log slope of a column of the table.
    """
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}; got {init!r}.")
    if tol_scale not in ("mean", "total"):
        raise ValueError(f"tol_scale must be 'mean' or 'total'; got {tol_scale!r}.")
    gate_name = getattr(true_model, "gate", None)
    if gate_name not in GATE_SPECS:
        raise ValueError(f"true_model.gate must be one of {sorted(GATE_SPECS)}; got {gate_name!r}.")
    if not callable(solver):
        if solver not in ("em", "squarem"):
            raise ValueError(f"solver must be 'em', 'squarem' or a callable; got {solver!r}.")
        if GATE_SPECS[gate_name].fit is None:
            raise ValueError(f"mixexp has no estimator for gate={gate_name!r} yet; pass a callable solver.")
    if init == "near_truth" and not hasattr(true_model, "near_truth"):
        raise ValueError(f"{type(true_model).__name__} has no near_truth start; use init='kmeans'.")
    n_experts = int(n_experts)
    if n_experts < true_model.n_experts:
        raise ValueError(f"n_experts={n_experts} is below the true number {true_model.n_experts}.")
    n_grid = sorted({int(n) for n in n_grid})
    if not n_grid or n_grid[0] < n_experts:
        raise ValueError(f"n_grid must hold sample sizes >= n_experts; got {n_grid}.")
    spec = _RateSpec(
        true_model,
        n_experts,
        init,
        solver,
        int(n_init),
        split,
        perturbation,
        r_bar,
        int(max_iter),
        float(tol),
        dict(estimator_params or {}),
        tol_scale,
    )
    settings = {
        "kind": "rate_experiment",
        "true_model": {
            "type": type(true_model).__name__,
            **true_model.get_params(),
            **_model_kwargs(true_model),
        },
        "n_experts": n_experts,
        "init": init,
        "solver": solver,
        "n_init": spec.n_init,
        "split": split,
        "perturbation": perturbation,
        "r_bar": r_bar,
        "max_iter": spec.max_iter,
        "tol": spec.tol,
        "estimator_params": spec.estimator_params,
    }
    if tol_scale != "mean":  # (absent from the settings of the default, as before it existed)
        settings["tol_scale"] = tol_scale
    if solver == "squarem":
        # SQUAREM's acceptance slack, named whatever set it; absent when 0, the only value
        # before the parameter existed, so those checkpoints stay valid and others refuse them
        params = dict(spec.estimator_params)
        slack = float(params.pop("squarem_max_decrease", MAX_DECREASE))
        settings["estimator_params"] = params
        if slack != 0.0:
            settings["squarem_max_decrease"] = slack
    cells = [(n, r) for n in n_grid for r in range(int(n_replicates))]
    columns = _rate_columns(n_experts, GATE_SPECS[gate_name].parameters)
    return _run_cells(
        _rate_cell,
        spec,
        cells,
        ("n", "replicate"),
        columns,
        n_jobs,
        progress,
        checkpoint,
        settings,
        random_state,
        f"K={n_experts}",
    )


def _model_kwargs(model):
    kwargs = getattr(model, "_kwargs", None)
    return kwargs() if kwargs is not None else {}


# -- generalisation ------------------------------------------------------------------------------
@dataclass
class _GenSpec:
    make_data: object
    n_test: int
    estimator_params: dict
    mean_grid: object = None
    true_mean: object = None


def _sample(make_data, n, rng):
    if hasattr(make_data, "sample"):
        return make_data.sample(n, rng)
    return make_data(n, rng)


def _generalization_cell(spec, n_experts, n, replicate, seed, single_job=True):
    from .._estimators import MixtureOfExpertsRegressor

    if not single_job:
        import numba

        numba.set_num_threads(1)
    rng = np.random.RandomState(seed)
    X, y = _sample(spec.make_data, n, rng)
    X_test, y_test = _sample(spec.make_data, spec.n_test, rng)
    est = MixtureOfExpertsRegressor(
        n_experts, random_state=int(rng.randint(2**31 - 1)), **spec.estimator_params
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X, y)
    fit_time = time.perf_counter() - t0
    train = -float(est.score_samples(X, y).mean())
    test = -float(est.score_samples(X_test, y_test).mean())
    oracle = oracle_train = np.nan
    if hasattr(spec.make_data, "log_density"):
        oracle = -float(spec.make_data.log_density(X_test, y_test).mean())
        oracle_train = -float(spec.make_data.log_density(X, y).mean())
    mean_ise = np.nan
    if spec.mean_grid is not None:
        mean_ise = _mean_ise(est, spec.mean_grid, spec.true_mean)
    return {
        "n_experts": int(n_experts),
        "n": int(n),
        "replicate": int(replicate),
        "seed": int(seed),
        "train_nll": train,
        "test_nll": test,
        "gap": test - train,
        "oracle_nll": oracle,
        "oracle_train_nll": oracle_train,
        "excess_nll": test - oracle,
        "mean_ise": mean_ise,
        "bic": float(est.bic(X, y)),
        "n_iter": int(est.n_iter_),
        "converged": bool(est.converged_),
        "fit_time": fit_time,
    }


def generalization_curve(
    make_data,
    n_experts_grid,
    n_grid,
    n_replicates,
    *,
    n_test=10_000,
    estimator_params=None,
    mean_grid=None,
    true_mean=None,
    n_jobs=None,
    random_state=None,
    progress=True,
    checkpoint=None,
):
    """Held-out negative log-likelihood against the number of experts and the sample size.

    For each number of experts K, sample size n and replicate: draw a
    training sample of size n and a test sample of size ``n_test``, fit
    :class:`~mixexp.MixtureOfExpertsRegressor` with K experts, and record the
    mean negative log-likelihood on both and their gap. With ``mean_grid``,
    also the approximation error of the fitted mean: the squared difference
    between ``predict`` and the true regression function E[y | x], averaged
    over the grid points.

    Parameters
    ----------
    make_data : model with ``sample(n, random_state)``, or callable
        A true model (e.g. :class:`SoftmaxGatedMoE`; then the test NLL of the
        truth itself is recorded too) or ``make_data(n, random_state) -> (X,
        y)`` (``random_state`` a RandomState; it must be picklable for
        ``n_jobs > 1``).
    n_experts_grid : sequence of int
    n_grid : sequence of int
    n_replicates : int
    n_test : int, default=10000
    estimator_params : dict, default=None
        Parameters of the estimator (e.g. ``n_init``, ``gate_penalty``).
    mean_grid : array-like of shape (m, n_features) or (m,), default=None
        Points ``x_1, ..., x_m`` where the fitted mean is compared with the
        true one. Each cell then records ``mean_ise`` =
        ``mean_j (predict(x_j) - E[y | x_j])**2``: on a fine evenly spaced
        grid over a box this is, up to the grid's quadrature error, the
        integrated squared error divided by the box's volume. None: no
        comparison (``mean_ise`` is NaN).
    true_mean : callable, default=None
        ``true_mean(X) -> (m,)``, the true regression function ``E[y | x]``;
        by default ``make_data.mean`` (true models such as
        :class:`SoftmaxGatedMoE` have one). Used with ``mean_grid`` only.
    n_jobs : int, default=None
    random_state : int, RandomState instance or None, default=None
    progress : bool, default=True
    checkpoint : str or Path, default=None
        As in :func:`rate_experiment`.

    Returns
    -------
    table : DataFrame or dict of ndarray
        One row per cell: ``n_experts``, ``n``, ``replicate``, ``seed``,
        ``train_nll``, ``test_nll``, ``gap`` (test minus train),
        ``oracle_nll`` (the truth's test NLL; NaN for a callable),
        ``oracle_train_nll`` (the truth's training NLL: ``gap - oracle_nll +
        oracle_train_nll`` is the gap with the samples' own noise removed),
        ``excess_nll`` (test minus oracle), ``mean_ise`` (NaN without
        ``mean_grid``), ``bic``, ``n_iter``, ``converged``, ``fit_time``.

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp.theory import generalization_curve
    >>> def make_data(n, rng):
    ...     x = rng.uniform(0, 1, n)
    ...     return x[:, None], np.sin(2 * np.pi * x) + 0.3 * rng.randn(n)
    >>> table = generalization_curve(
    ...     make_data, [1, 3], [300], 1, n_test=1000, mean_grid=np.linspace(0, 1, 101),
    ...     true_mean=lambda X: np.sin(2 * np.pi * X[:, 0]), random_state=0, progress=False)
    >>> bool(table["mean_ise"].iloc[1] < table["mean_ise"].iloc[0])  # 3 lines fit a sine better than 1
    True
    """
    if not (hasattr(make_data, "sample") or callable(make_data)):
        raise ValueError("make_data must have a sample(n, random_state) method or be callable.")
    grid, true_mean = _check_mean_grid(make_data, mean_grid, true_mean)
    spec = _GenSpec(make_data, int(n_test), dict(estimator_params or {}), grid, true_mean)
    settings = {
        "kind": "generalization_curve",
        "make_data": _describe_data(make_data),
        "n_test": spec.n_test,
        "estimator_params": spec.estimator_params,
    }
    if grid is not None:  # only then, so checkpoints written before mean_grid existed stay valid
        settings["mean_grid"] = _describe_grid(grid)
        settings["true_mean"] = _jsonable(true_mean)
    cells = [(int(k), int(n), r) for k in n_experts_grid for n in n_grid for r in range(int(n_replicates))]
    columns = [
        "n_experts",
        "n",
        "replicate",
        "seed",
        "train_nll",
        "test_nll",
        "gap",
        "oracle_nll",
        "oracle_train_nll",
        "excess_nll",
        "mean_ise",
        "bic",
        "n_iter",
        "converged",
        "fit_time",
    ]
    return _run_cells(
        _generalization_cell,
        spec,
        cells,
        ("n_experts", "n", "replicate"),
        columns,
        n_jobs,
        progress,
        checkpoint,
        settings,
        random_state,
        "generalization",
    )


def _mean_ise(estimator, grid, true_mean):
    """Mean over the grid points of the squared error of ``predict`` against ``true_mean``."""
    truth = np.asarray(true_mean(grid), dtype=float)
    if truth.shape != (grid.shape[0],):
        raise ValueError(
            f"true_mean(mean_grid) must return shape ({grid.shape[0]},), one value per grid point; "
            f"got {truth.shape}."
        )
    return float(np.mean((estimator.predict(grid) - truth) ** 2))


def _check_mean_grid(make_data, mean_grid, true_mean):
    """The grid as a finite float (m, d) array and the true regression function (or None, None)."""
    if mean_grid is None:
        if true_mean is not None:
            raise ValueError("true_mean is only used with mean_grid; pass the grid to evaluate it on.")
        return None, None
    grid = np.asarray(mean_grid, dtype=float)
    if grid.ndim == 1:
        grid = grid[:, None]
    if grid.ndim != 2 or grid.shape[0] == 0:
        raise ValueError(f"mean_grid must be a non-empty array of shape (m, n_features); got {grid.shape}.")
    if not np.all(np.isfinite(grid)):
        raise ValueError("mean_grid must hold finite values only.")
    if true_mean is None:
        true_mean = getattr(make_data, "mean", None)
        if not callable(true_mean):
            raise ValueError(
                "mean_grid needs the true regression function: pass true_mean, or a make_data with a "
                "mean(X) method."
            )
    elif not callable(true_mean):
        raise TypeError(f"true_mean must be callable; got {type(true_mean).__name__}.")
    return np.ascontiguousarray(grid), true_mean


def _describe_grid(grid):
    if grid is None:
        return None
    import hashlib

    return {"shape": list(grid.shape), "sha256": hashlib.sha256(grid.tobytes()).hexdigest()}


def _describe_data(make_data):
    if hasattr(make_data, "get_params"):
        return {"type": type(make_data).__name__, **make_data.get_params(), **_model_kwargs(make_data)}
    if not callable(make_data):  # an object with sample(): its type names it
        return {"type": f"{type(make_data).__module__}.{type(make_data).__qualname__}"}
    return _jsonable(make_data)


def summarize_by_n(table, column, by=("n",), statistic="median"):
    """Per-group median (or mean) and 25%/75% quantiles of a column.

    Parameters
    ----------
    table : DataFrame or dict of arrays
    column : str
    by : tuple of str, default=("n",)
    statistic : {"median", "mean"}, default="median"

    Returns
    -------
    table : DataFrame or dict of ndarray
        The ``by`` columns, ``center``, ``q25``, ``q75`` and ``count``
        (finite values only).
    """
    cols = as_columns(table)
    keys = list(zip(*(cols[b] for b in by), strict=True))
    rows = []
    for key in sorted(set(keys)):
        sel = np.array([k == key for k in keys])
        v = np.asarray(cols[column], dtype=float)[sel]
        v = v[np.isfinite(v)]
        center = (np.median(v) if statistic == "median" else np.mean(v)) if v.size else np.nan
        q25, q75 = np.quantile(v, [0.25, 0.75]) if v.size else (np.nan, np.nan)
        rows.append(
            {**dict(zip(by, key, strict=True)), "center": center, "q25": q25, "q75": q75, "count": v.size}
        )
    return rows_to_table(rows, [*by, "center", "q25", "q75", "count"])
