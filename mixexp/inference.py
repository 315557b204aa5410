"""Standard errors, bootstrap and label alignment for fitted mixtures of experts.

Inference lives beside the estimators, in a results object (statsmodels'
pattern): :func:`fit_inference` takes a fitted estimator and its data and
returns a :class:`MoEInferenceResults` with named parameters on the raw data's
scale, their standard errors, z-values, p-values, confidence intervals,
covariance matrix and a summary table.

The experts of a mixture are exchangeable: relabelling them gives the same
conditional density. :func:`align_experts` finds the relabelling of one fit
that best matches another fit (or the true parameters), and
:func:`permute_experts` applies a relabelling to a fitted estimator. The
bootstrap aligns every replicate to the original fit with them.

See :doc:`/user_guide/inference` for the maths.
"""

import copy
import warnings
from numbers import Integral

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._threads import parallel_map

__all__ = [
    "InferenceWarning",
    "MoEInferenceResults",
    "SingularInformationWarning",
    "align_experts",
    "fit_inference",
    "permute_experts",
]


class InferenceWarning(UserWarning):
    """Something in :func:`fit_inference` deserves attention (e.g. failed bootstrap replicates)."""


class SingularInformationWarning(InferenceWarning):
    """The observed information matrix is singular or not positive definite.

    The fit is then not at a strict local maximum of the log-likelihood (a
    saddle point, a flat direction such as an empty expert, or a gate whose
    regions are separable); :func:`fit_inference` reports NaN standard errors.
    """


#: expert/gate parameters that are positive and compared on the log scale when aligning
_POSITIVE = ("var", "df", "dispersion", "weights", "shape", "scale")
#: names of per-expert parameters in the results' parameter names
_DISPLAY = {"var": "sigma2"}
#: stands for an infinite or undefined distance when matching experts
_BIG = 1e100
_GATE_DISPLAY = {"weights": "weight", "means": "mean", "covariances": "cov"}


# -- parameter blocks ------------------------------------------------------------------
def _is_estimator(model):
    return hasattr(model, "_raw_parts") and hasattr(model, "fit")


def _lookup(model, names):
    for name in names:
        if isinstance(model, dict):
            if name in model:
                return model[name]
        elif hasattr(model, name):
            return getattr(model, name)
    return None


#: (block, canonical key) -> accepted names in a dict or on a model object
_DICT_KEYS = {
    ("gate", "coef"): ("gate_coef", "gate_coef_"),
    ("gate", "weights"): ("weights", "weights_"),
    ("gate", "means"): ("means", "means_"),
    ("gate", "covariances"): ("covariances", "covariances_"),
    ("expert", "coef"): ("expert_coef", "expert_coef_"),
    ("expert", "var"): ("noise_variance", "noise_variance_", "var"),
    ("expert", "df"): ("df", "df_"),
    ("expert", "dispersion"): ("dispersion", "dispersion_"),
}


def _blocks(model, name):
    """Per-expert parameter arrays ``{(block, key): ndarray (K, ...)}`` of a model.

    A fitted estimator gives its gate's and experts' raw parameters
    (``gate_coef_``, ``expert_coef_`` with the intercept column, and the
    family's other parameters); a dict or a model object (e.g. a
    :class:`mixexp.theory.SoftmaxGatedMoE`) the keys or attributes of
    ``_DICT_KEYS``.
    """
    if _is_estimator(model):
        check_is_fitted(model)
        if getattr(model, "gate", None) == "hierarchical":
            raise ValueError(
                f"{name}: align_experts and permute_experts need a flat gate (one row of gate "
                "parameters per expert); a hierarchical gate's parameters belong to its internal "
                "nodes, and only permutations that respect the tree keep the model. Compare the "
                "experts with include_gate=False on a flat refit, or use predict_gate."
            )
        gate_raw, expert_raw, _ = model._raw_parts()
        out = {("gate", key): np.asarray(value, dtype=float) for key, value in gate_raw.items()}
        out.update({("expert", key): np.asarray(v, dtype=float) for key, v in expert_raw.items()})
        out["expert", "coef"] = np.asarray(model.expert_coef_, dtype=float)
        return out
    if (
        not isinstance(model, dict)
        and not hasattr(model, "expert_coef")
        and not hasattr(model, "expert_coef_")
    ):
        raise TypeError(
            f"{name} must be a fitted mixexp estimator, a dict of parameters (keys such as "
            f"'gate_coef', 'expert_coef', 'noise_variance') or a model object with those "
            f"attributes; got {type(model).__name__}."
        )
    out = {}
    for key, names in _DICT_KEYS.items():
        value = _lookup(model, names)
        if value is not None:
            out[key] = np.asarray(value, dtype=float)
    if ("expert", "coef") not in out:
        raise ValueError(f"{name} has no expert coefficients ('expert_coef').")
    return out


def _n_experts(blocks, name):
    sizes = {key: value.shape[0] if value.ndim else -1 for key, value in blocks.items()}
    K = sizes["expert", "coef"]
    bad = {f"{b}:{k}": s for (b, k), s in sizes.items() if s != K}
    if bad:
        raise ValueError(
            f"{name}: every parameter must have one row per expert ({K}); got leading sizes {bad}."
        )
    return K


def _features_for_matching(blocks):
    """Shift-invariant, comparable (K, m) arrays of each block."""
    out = {}
    for (block, key), value in blocks.items():
        value = value.reshape(value.shape[0], -1)
        if block == "gate" and key == "coef":
            # softmax gates are identified up to a common shift of their rows: centre them
            value = value - value.mean(axis=0)
        elif key in _POSITIVE and np.all(value > 0):
            value = np.log(value)
        out[block, key] = value
    return out


def _cost_matrix(model_blocks, reference_blocks, include_gate):
    keys = [k for k in reference_blocks if k in model_blocks and (include_gate or k[0] != "gate")]
    if not keys:
        raise ValueError("the model and the reference share no parameter to match experts on.")
    A = _features_for_matching({k: model_blocks[k] for k in keys})
    R = _features_for_matching({k: reference_blocks[k] for k in keys})
    K = R[keys[0]].shape[0]
    cost = np.zeros((K, K))
    for key in keys:
        if A[key].shape != R[key].shape:
            raise ValueError(
                f"parameter {key[0]}:{key[1]} has shape {A[key].shape} in the model but "
                f"{R[key].shape} in the reference."
            )
        # Each block's squared distances are measured in units of the block's own best-match
        # error (the mean squared distance under the assignment that is best for this block
        # alone): a block that separates the reference's experts well beyond the estimation
        # error then dominates, whatever its units, and a block whose experts are about equal
        # (say equal mixing weights) changes the cost of a permutation by O(1) at most.
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.sum((A[key][:, None, :] - R[key][None, :, :]) ** 2, axis=2)
            spread = np.sum((R[key][:, None, :] - R[key][None, :, :]) ** 2) / max(K * (K - 1), 1)
            size = np.mean(R[key] ** 2)
        d = np.nan_to_num(d, nan=_BIG, posinf=_BIG)
        rows, cols = linear_sum_assignment(d)
        noise = d[rows, cols].mean()
        floor = 1e-12 * float(np.nan_to_num(spread + size, nan=_BIG, posinf=_BIG)) + 1e-300
        cost += d / (noise + floor)
    return cost


def align_experts(model, reference, *, include_gate=True, return_aligned=False):
    """The relabelling of a model's experts that best matches a reference.

    The experts of a mixture are exchangeable, so two fits of the same data (or
    a fit and the truth) may list them in different orders (label switching).
    This finds the permutation ``perm`` with ``model``'s expert ``perm[j]``
    matched to ``reference``'s expert ``j``, by Hungarian matching
    (:func:`scipy.optimize.linear_sum_assignment`) on a cost that adds, over
    the parameter blocks both share (expert coefficients, noise variances and
    other family parameters on the log scale, gate rows), the squared
    distances between experts, each block divided by its own best-match
    error (the mean squared distance under the assignment that is best for
    that block alone). So a block counts in units of its own estimation
    error, whatever its units: a block that separates the experts well
    dominates, and one in which the experts are about equal (equal mixing
    weights, say) cannot swamp it. Softmax gates are identified only up to a
    common shift of their rows, so gate rows are compared after centring
    them over the experts.

    Parameters
    ----------
    model : fitted estimator, dict or model object
        A fitted :class:`~mixexp.MixtureOfExpertsRegressor` or
        :class:`~mixexp.MixtureOfExpertsClassifier`, a dict with keys
        ``"gate_coef"`` (K, 1 + d), ``"expert_coef"`` and optionally
        ``"noise_variance"``, ``"df"``, ``"dispersion"`` (raw scale, as the
        estimators' attributes), or an object with those attributes (such as
        :class:`mixexp.theory.SoftmaxGatedMoE`).
    reference : fitted estimator, dict or model object
        What to match, in the same forms; the same number of experts.
    include_gate : bool, default=True
        Whether the gate's parameters enter the cost.
    return_aligned : bool, default=False
        Also return ``model`` relabelled (see :func:`permute_experts`).

    Returns
    -------
    perm : ndarray of shape (n_experts,)
        ``perm[j]`` is the expert of ``model`` matched to expert ``j`` of
        ``reference``.
    aligned : estimator or dict
        Only with ``return_aligned=True``: ``permute_experts(model, perm)``.

    See Also
    --------
    permute_experts : apply a permutation.
    mixexp.theory.align_softmax_gate : the Voronoi-cell alignment of the
        theory tools, which lets several fitted experts share one true expert.

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp.inference import align_experts
    >>> truth = {"gate_coef": [[0, 0], [1, 2]], "expert_coef": [[1, 2], [-1, -1]],
    ...          "noise_variance": [0.25, 0.25]}
    >>> fit = {"gate_coef": [[0, 0], [-1.1, -2.1]], "expert_coef": [[-0.9, -1.1], [1.1, 2.0]],
    ...        "noise_variance": [0.24, 0.26]}
    >>> align_experts(fit, truth)
    array([1, 0])
    """
    if not isinstance(include_gate, bool | np.bool_):
        raise TypeError(f"include_gate must be a bool; got {include_gate!r}.")
    model_blocks = _blocks(model, "model")
    reference_blocks = _blocks(reference, "reference")
    K = _n_experts(model_blocks, "model")
    K_ref = _n_experts(reference_blocks, "reference")
    if K != K_ref:
        raise ValueError(f"the model has {K} experts but the reference has {K_ref}; they must be equal.")
    cost = _cost_matrix(model_blocks, reference_blocks, include_gate)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(K, dtype=np.intp)
    perm[cols] = rows
    if return_aligned:
        return perm, permute_experts(model, perm)
    return perm


def _check_permutation(perm, K):
    perm = np.asarray(perm)
    if (
        perm.ndim != 1
        or perm.dtype.kind not in "iu"
        or perm.size != K
        or not np.array_equal(np.sort(perm), np.arange(K))
    ):
        raise ValueError(f"perm must be a permutation of 0..{K - 1} (integers); got {perm!r}.")
    return perm.astype(np.intp)


def _permute_dict(params, perm, K, shift_keys):
    out = {}
    for key, value in params.items():
        arr = np.asarray(value)
        if arr.ndim and arr.shape[0] == K and arr.dtype.kind in "fiu":
            arr = np.array(arr, dtype=float)[perm]
            if key in shift_keys and arr.ndim == 2 and np.all(np.asarray(value, dtype=float)[0] == 0):
                # re-reference a shift-identified gate to the new expert 0
                arr = arr - arr[0]
            out[key] = arr
        else:
            out[key] = copy.deepcopy(value)
    return out


def permute_experts(model, perm):
    """Relabel the experts of a fitted estimator or a parameter dict.

    New expert ``j`` is old expert ``perm[j]``. A softmax gate (whose row 0 is
    the fixed reference) is re-referenced to the new expert 0, so its row 0
    stays zero; the conditional density, and so every prediction, is
    unchanged.

    Parameters
    ----------
    model : fitted estimator or dict
        A fitted mixexp estimator, or a dict of per-expert arrays (as
        accepted by :func:`align_experts`).
    perm : array-like of int of shape (n_experts,)
        A permutation of ``0 .. n_experts - 1``.

    Returns
    -------
    permuted : estimator or dict
        A deep copy of the estimator with its parts relabelled, or a new
        dict.

    Examples
    --------
    >>> from mixexp.inference import permute_experts
    >>> permute_experts({"gate_coef": [[0.0, 0.0], [1.0, 2.0]], "expert_coef": [[1.0], [2.0]]},
    ...                 [1, 0])["gate_coef"]
    array([[ 0.,  0.],
           [-1., -2.]])
    """
    if _is_estimator(model):
        check_is_fitted(model)
        K = model.gate_.n_experts
        perm = _check_permutation(perm, K)
        if "node_coef" in model.gate_.raw_params(model._scaling):
            raise ValueError(
                "permute_experts cannot relabel the experts of a hierarchical gate (gate='hierarchical'): "
                "a permutation of the leaves is a different tree unless it is one of the tree's "
                "symmetries. Compare gate_tree_ and the experts directly."
            )
        new = copy.deepcopy(model)
        gate_raw, expert_raw, intercept = new._raw_parts()
        new.gate_.set_raw_params(_permute_dict(gate_raw, perm, K, ("coef",)), new._scaling)
        new.experts_.set_raw_params(_permute_dict(expert_raw, perm, K, ()), new._scaling, intercept)
        return new
    if isinstance(model, dict):
        K = _n_experts(_blocks(model, "model"), "model")
        perm = _check_permutation(perm, K)
        return _permute_dict(model, perm, K, ("gate_coef", "gate_coef_"))
    raise TypeError(
        f"permute_experts takes a fitted mixexp estimator or a dict of parameters; got "
        f"{type(model).__name__}."
    )


# -- the reported parameter vector ------------------------------------------------------
def _feature_names(est, indices):
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        return [str(names[j]) for j in indices]
    return [f"x{j}" for j in indices]


def _reported(gate, experts, est):
    """Names and values of the free parameters of parts ``gate``, ``experts`` on the raw scale.

    The gate's coefficients in rows 1..K-1 (row 0 is the fixed reference), the
    experts' coefficients (for multinomial experts classes 1..C-1) and the
    family's other parameters (``sigma2`` for the noise variance, ``df``,
    ``dispersion``), in that order, expert by expert.
    """
    sc, intercept = est._scaling, est.fit_intercept
    gate_raw = gate.raw_params(sc)
    expert_raw = experts.raw_params(sc, intercept)
    K = gate.n_experts
    names, values = [], []
    gate_cols = ["const", *_feature_names(est, est.gate_feature_indices_)]
    features = gate_cols[1:]
    for key, value in gate_raw.items():
        value = np.asarray(value, dtype=float)
        if key == "node_coef":  # a hierarchical gate: each node's children 1..B-1 (child 0 is its reference)
            for v, node in enumerate(value):
                for c in range(1, node.shape[0]):
                    names += [f"gate[node {v}, child {c}]:{col}" for col in gate_cols[: node.shape[1]]]
                    values.append(node[c])
            continue
        first = 0
        if key == "coef" and gate.n_parameters() == (K - 1) * value.shape[1]:
            first = 1  # row 0 is the reference, fixed at zero
        label = _GATE_DISPLAY.get(key, key)
        for k in range(first, K):
            v = value[k]
            if key == "coef":
                names += [f"gate[{k}]:{c}" for c in gate_cols[: v.size]]
            elif v.ndim == 0:
                names.append(f"gate[{k}]:{label}")
            elif v.ndim == 1:
                cols = features if v.size == len(features) else [str(j) for j in range(v.size)]
                names += [f"gate[{k}]:{label}[{c}]" for c in cols]
            elif v.ndim == 2 and v.shape[0] == v.shape[1] and np.allclose(v, v.T):
                # a symmetric matrix: its upper triangle only
                cols = features if v.shape[0] == len(features) else [str(j) for j in range(v.shape[0])]
                rows, columns = np.triu_indices(v.shape[0])
                names += [
                    f"gate[{k}]:{label}[{cols[a]},{cols[b]}]" for a, b in zip(rows, columns, strict=True)
                ]
                v = v[rows, columns]
            else:
                names += [f"gate[{k}]:{label}[{j}]" for j in range(v.size)]
            values.append(np.ravel(v))
    expert_cols = (["const"] if intercept else []) + _feature_names(est, est.expert_feature_indices_)
    coef = np.asarray(expert_raw["coef"], dtype=float)
    fixed_df = bool(getattr(experts, "fixed_df", False))
    for k in range(K):
        if coef.ndim == 3:  # multinomial experts: class 0 is each expert's reference
            classes = getattr(est, "classes_", np.arange(coef.shape[1]))
            for c in range(1, coef.shape[1]):
                names += [f"expert[{k}]:class[{classes[c]}]:{col}" for col in expert_cols]
                values.append(coef[k, c])
        else:
            names += [f"expert[{k}]:{col}" for col in expert_cols]
            values.append(coef[k])
        for key, value in expert_raw.items():
            if key == "coef" or (key == "df" and fixed_df):
                continue
            value = np.asarray(value, dtype=float)
            label = _DISPLAY.get(key, key)
            if value.ndim == 1:
                names.append(f"expert[{k}]:{label}")
            else:
                names += [f"expert[{k}]:{label}[{j}]" for j in range(value[k].size)]
            values.append(np.ravel(value[k]))
    return names, np.concatenate(values) if values else np.empty(0)


# -- the results object -------------------------------------------------------------------
class MoEInferenceResults:
    """Estimates, standard errors and intervals of a fitted mixture of experts.

    Returned by :func:`fit_inference`; not meant to be built directly. The
    parameters are those of the fitted estimator on the raw data's scale: the
    gate's coefficients ``gate[k]:...`` of experts k = 1..K-1 (expert 0 is the
    gate's reference, its row fixed at zero), each expert's coefficients
    ``expert[k]:...`` and its other parameters (``expert[k]:sigma2``, the
    noise variance of Gaussian experts; ``df``; ``dispersion``).

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        The estimates (those of the fit, also with the bootstrap).
    param_names : list of str
        Their names.
    method : {"observed", "bootstrap"}
    bootstrap : {"nonparametric", "parametric"} or None
    nobs : float
        Number of samples (the sum of the sample weights).
    loglik : float
        Conditional log-likelihood ``sum_i w_i log p(y_i | x_i)`` at the fit.
    information : ndarray of shape (n_flat, n_flat) or None
        ``"observed"`` only: the observed information (negative Hessian of the
        log-likelihood) in the estimator's internal parametrisation
        (standardised columns and y, log-variances), see Notes of
        :func:`fit_inference`.
    jacobian : ndarray of shape (n_params, n_flat) or None
        ``"observed"`` only: derivative of ``params`` with respect to the
        internal parameters (the delta method's Jacobian).
    bootstrap_params : ndarray of shape (n_bootstrap, n_params) or None
        ``"bootstrap"`` only: the aligned estimates of each replicate (rows of
        NaN for replicates whose fit failed).
    n_failed : int
        ``"bootstrap"`` only: replicates whose refit raised an error or did
        not give the same parameter layout (0 for ``"observed"``).
    active : ndarray of bool of shape (n_params,)
        False for the coefficients an L1 penalty (``gate_l1_ratio`` or
        ``expert_l1_ratio`` > 0 with a positive penalty) set to exactly zero
        at the fit, True for every other parameter (all True without an L1
        penalty). With ``"observed"`` the inactive ones have estimate 0 and
        NaN standard errors, and the others' are conditional on the selected
        model (see :func:`fit_inference`).
    selection_frequency : ndarray of shape (n_params,) or None
        ``"bootstrap"`` with an L1 penalty only: for each L1-penalised
        coefficient, the fraction of the successful replicates in which it is
        not zero (NaN for the parameters the L1 penalty does not apply to);
        None otherwise.
    notes : list of str
        Caveats shown by :meth:`summary`.
    """

    def __init__(
        self,
        params,
        param_names,
        cov,
        *,
        method,
        nobs,
        loglik,
        model,
        bootstrap=None,
        information=None,
        jacobian=None,
        bootstrap_params=None,
        n_failed=0,
        notes=(),
        active=None,
        selection_frequency=None,
    ):
        self.params = np.asarray(params, dtype=float)
        self.param_names = list(param_names)
        self._cov = np.asarray(cov, dtype=float)
        self.method = method
        self.bootstrap = bootstrap
        self.nobs = float(nobs)
        self.loglik = float(loglik)
        self.model = model
        self.information = information
        self.jacobian = jacobian
        self.bootstrap_params = bootstrap_params
        self.n_failed = int(n_failed)
        self.notes = list(notes)
        self.active = (
            np.ones(self.params.size, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        )
        self.selection_frequency = (
            None if selection_frequency is None else np.asarray(selection_frequency, dtype=float)
        )

    @property
    def bse(self):
        """Standard errors, ndarray of shape (n_params,) (NaN where unavailable)."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.where(np.diag(self._cov) >= 0, np.diag(self._cov), np.nan))

    @property
    def zvalues(self):
        """``params / bse``, ndarray of shape (n_params,)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.params / self.bse

    @property
    def pvalues(self):
        """Two-sided p-values of ``param = 0`` from the normal distribution of the z-values."""
        return 2.0 * stats.norm.sf(np.abs(self.zvalues))

    def cov_params(self):
        """Covariance matrix of the estimates, ndarray of shape (n_params, n_params).

        Observed information: the delta-method covariance ``J I^{-1} J'``;
        bootstrap: the sample covariance of the aligned replicates.
        """
        return self._cov.copy()

    def conf_int(self, alpha=0.05):
        """Confidence intervals of level ``1 - alpha``.

        Wald intervals ``params -/+ z_{1 - alpha/2} bse`` for ``"observed"``;
        percentile intervals of the aligned replicates for ``"bootstrap"``.

        Parameters
        ----------
        alpha : float, default=0.05
            In (0, 1).

        Returns
        -------
        ndarray of shape (n_params, 2)
            Lower and upper bounds.
        """
        if not (isinstance(alpha, float | int | np.floating) and 0 < alpha < 1):
            raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.")
        if self.method == "bootstrap":
            reps = self.bootstrap_params[~np.isnan(self.bootstrap_params).any(axis=1)]
            if reps.shape[0] < 2:
                return np.full((self.params.size, 2), np.nan)
            return np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0).T
        z = stats.norm.isf(alpha / 2)
        bse = self.bse
        return np.column_stack([self.params - z * bse, self.params + z * bse])

    def _table(self, alpha=0.05):
        ci = self.conf_int(alpha)
        return [
            (name, p, s, z, pv, lo, hi)
            for name, p, s, z, pv, (lo, hi) in zip(
                self.param_names, self.params, self.bse, self.zvalues, self.pvalues, ci, strict=True
            )
        ]

    def _header(self):
        est = self.model
        family = getattr(est, "expert", None)
        family = family if isinstance(family, str) else type(est.experts_).__name__
        method = self.method if self.bootstrap is None else f"{self.bootstrap} bootstrap"
        rows = [
            ("Model", type(est).__name__),
            ("Experts", f"{est.gate_.n_experts} x {family}"),
            ("Gate", str(getattr(est, "gate", type(est.gate_).__name__))),
            ("Observations", f"{self.nobs:g}"),
            ("Log-likelihood", f"{self.loglik:.6g}"),
            ("Standard errors", method),
        ]
        if self.method == "bootstrap":
            rows.append(("Replicates", f"{self.bootstrap_params.shape[0]} ({self.n_failed} failed)"))
        return rows

    def summary(self, alpha=0.05):
        """A text table of the estimates.

        Parameters
        ----------
        alpha : float, default=0.05
            Level of the confidence intervals.

        Returns
        -------
        str
        """
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        head = ["", "coef", "std err", "z", "P>|z|", lo, hi]
        body = [
            [name]
            + [f"{v:.4g}" if np.isfinite(v) else "nan" for v in (p, s, z)]
            + [f"{pv:.3f}" if np.isfinite(pv) else "nan"]
            + [f"{v:.4g}" if np.isfinite(v) else "nan" for v in (a, b)]
            for name, p, s, z, pv, a, b in self._table(alpha)
        ]
        widths = [max(len(r[j]) for r in [head, *body]) for j in range(len(head))]

        def line(cells):
            return "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "=" * len(line(head))
        title = "Mixture of experts: inference".center(len(rule))
        info = [f"{k + ':':<17}{v}" for k, v in self._header()]
        out = [title, rule, *info, "-" * len(rule), line(head), "-" * len(rule)]
        out += [line(r) for r in body] + [rule]
        out += [f"Note: {note}" for note in self.notes]
        return "\n".join(out)

    def _repr_html_(self):
        import html

        info = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._header()
        )
        head = "".join(f"<th>{h}</th>" for h in ["", "coef", "std err", "z", "P&gt;|z|", "[0.025", "0.975]"])
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            + "".join(f"<td>{v:.4g}</td>" for v in (p, s, z))
            + f"<td>{pv:.3f}</td><td>{a:.4g}</td><td>{b:.4g}</td></tr>"
            for name, p, s, z, pv, a, b in self._table()
        )
        notes = "".join(f"<p>Note: {html.escape(n)}</p>" for n in self.notes)
        return (
            f"<table>{info}</table><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{notes}"
        )

    def __repr__(self):
        return (
            f"<MoEInferenceResults: {self.params.size} parameters, method={self.method!r}"
            + (f", bootstrap={self.bootstrap!r}" if self.bootstrap else "")
            + ">"
        )

    def to_frame(self, alpha=0.05):
        """The estimates as a pandas DataFrame (requires pandas).

        Parameters
        ----------
        alpha : float, default=0.05
            Level of the confidence intervals.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``param_names``, columns ``coef``, ``std_err``, ``z``,
            ``p_value``, ``ci_lower``, ``ci_upper``.
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a test dependency
            raise ImportError("to_frame requires pandas; install it with `pip install pandas`.") from exc
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "coef": self.params,
                "std_err": self.bse,
                "z": self.zvalues,
                "p_value": self.pvalues,
                "ci_lower": ci[:, 0],
                "ci_upper": ci[:, 1],
            },
            index=pd.Index(self.param_names, name="parameter"),
        )


# -- observed information ---------------------------------------------------------------------
#: relative step of the central differences (of the analytic gradient, and of the map to the
#: reported parameters): about eps**(1/3), the step that balances truncation and rounding
_STEP = 1e-5


def _observed(est, data):
    """Observed information (internal scale), the Jacobian to the reported parameters, and both."""
    from .solvers._gradient import (
        flat_bounds,
        get_flat_params,
        loglik_and_grad,
        missing_gradient_methods,
        set_flat_params,
    )

    gate, experts = copy.deepcopy(est.gate_), copy.deepcopy(est.experts_)
    missing = missing_gradient_methods(gate, experts)
    if missing:
        raise ValueError(
            f"method='observed' needs the parts' analytic gradients; missing: {', '.join(missing)}. "
            "Implement them or use method='bootstrap'."
        )
    theta = np.array(get_flat_params(gate, experts), dtype=float)
    P = theta.size

    def grad(t):
        return np.asarray(loglik_and_grad(gate, experts, data, t, penalized=False)[1], dtype=float)

    def reported(t):
        set_flat_params(gate, experts, t)
        return _reported(gate, experts, est)[1]

    hess = np.empty((P, P))
    jac = None
    for j in range(P):
        h = _STEP * (1.0 + abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        hess[:, j] = (grad(up) - grad(down)) / (2.0 * h)
        column = (reported(up) - reported(down)) / (2.0 * h)
        if jac is None:
            jac = np.empty((column.size, P))
        jac[:, j] = column
    set_flat_params(gate, experts, theta)
    information = -0.5 * (hess + hess.T)
    lower, upper = flat_bounds(gate, experts)
    margin = 1e-8 * (1.0 + np.abs(theta))
    bounded = (theta - np.asarray(lower) <= margin) | (np.asarray(upper) - theta <= margin)
    return information, jac, bounded


def _depends_only_on(jac, mask):
    """Reported parameters (rows of ``jac``) that move with coordinates in ``mask`` and with no other."""
    if not mask.any():
        return np.zeros(jac.shape[0], dtype=bool)
    return np.any(jac[:, mask] != 0, axis=1) & ~np.any(jac[:, ~mask] != 0, axis=1)


def _reported_jacobian(est):
    """Derivative of the reported parameters with respect to the internal flat ones (central differences).

    Without the Hessian: what :func:`_observed` computes for the delta
    method, used here for its pattern of zeros (which reported value moves with
    which internal parameter).
    """
    from .solvers._gradient import get_flat_params, set_flat_params

    gate, experts = copy.deepcopy(est.gate_), copy.deepcopy(est.experts_)
    theta = np.array(get_flat_params(gate, experts), dtype=float)
    columns = []
    for j in range(theta.size):
        h = _STEP * (1.0 + abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        set_flat_params(gate, experts, up)
        hi = _reported(gate, experts, est)[1]
        set_flat_params(gate, experts, down)
        lo = _reported(gate, experts, est)[1]
        columns.append((hi - lo) / (2.0 * h))
    return np.column_stack(columns) if columns else np.empty((0, 0))


def _l1_masks(est):
    """Internal flat coordinates that carry an L1 penalty, and those it set to exactly zero.

    Laid out as :func:`mixexp.solvers.get_flat_params` (gate, then experts);
    both all False without an L1 term (see :func:`mixexp._penalties.flat_l1_zeros`).
    """
    from ._penalties import flat_l1_penalized, flat_l1_zeros

    parts = (est.gate_, est.experts_)
    penalized = np.concatenate([flat_l1_penalized(p) for p in parts])
    zero = np.concatenate([flat_l1_zeros(p) for p in parts])
    return penalized, zero


def _covariance_from_information(information, jac, bounded, names, zero=None):
    """``J I^{-1} J'``, or NaN (with a warning) when ``I`` is not positive definite.

    Internal parameters on a bound of the parameter space (a variance at its
    floor, say) are held fixed: the inverse is taken over the others, and the
    reported parameters that depend on a bounded one get NaN.

    Internal coefficients an L1 penalty set to zero (``zero``) are held at zero
    too: the inverse is that of the information of the selected (non-zero)
    parameters, ``(I_AA)^{-1}``, and the reported parameters that depend on
    zero coefficients only (the zero coefficients themselves) get NaN. The
    others, intercepts included, get their standard errors given the
    selected model.
    """
    Q = jac.shape[0]
    zero = np.zeros(bounded.shape, dtype=bool) if zero is None else zero & ~bounded
    free = ~bounded & ~zero
    affected = np.any(jac[:, bounded] != 0, axis=1)
    if bounded.any():
        listed = [n for n, a in zip(names, affected, strict=True) if a]
        warnings.warn(
            f"{int(bounded.sum())} parameter(s) lie on a bound of the parameter space (e.g. a variance at "
            f"the floor set by reg_covar), where the Wald approximation does not hold: {listed} get NaN "
            "standard errors, and the others are computed with them held fixed.",
            InferenceWarning,
            stacklevel=3,
        )
    sub = information[np.ix_(free, free)]
    try:
        w, V = np.linalg.eigh(sub)
        ok = bool(np.all(np.isfinite(w))) and w.size > 0 and w.min() > 1e-10 * np.abs(w).max()
    except np.linalg.LinAlgError:
        ok = False
    if not ok:
        warnings.warn(
            "The observed information matrix is singular or not positive definite: the fit is not at "
            "a strict local maximum of the log-likelihood (an empty or duplicated expert, a gate "
            "whose regions are separable, or a fit that has not converged). Standard errors are NaN; "
            "refit with a tighter tol, fewer experts or gate_penalty > 0, or use method='bootstrap'.",
            SingularInformationWarning,
            stacklevel=3,
        )
        return np.full((Q, Q), np.nan)
    J = jac[:, free]
    cov = J @ ((V / w) @ V.T) @ J.T
    cov = 0.5 * (cov + cov.T)
    affected |= _depends_only_on(jac, zero)
    cov[affected] = np.nan
    cov[:, affected] = np.nan
    return cov


# -- bootstrap ------------------------------------------------------------------------------------
def _replicate(est, X, y, sample_weight, kind, seed, n_params):
    """One bootstrap replicate: refit from the fit, align to it; the reported parameters or None."""
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    if kind == "nonparametric":
        rows = rng.integers(0, n, size=n)
        Xb, yb, wb = _safe_indexing(X, rows), y[rows], sample_weight[rows]
    else:
        draw = np.asarray(est.sample_y(X, n_samples=1, random_state=int(rng.integers(2**31 - 1))))
        yb = draw.reshape(n, -1)[:, 0] if draw.ndim > 1 else draw
        Xb, wb = X, sample_weight
    rep = copy.deepcopy(est)
    # start from the fit; no printing, history or user callback in the replicates
    quiet = {"verbose": 0, "record_history": False, "callback": None}
    current = rep.get_params()
    rep.set_params(warm_start=True, **{k: v for k, v in quiet.items() if k in current})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            rep.fit(Xb, yb, sample_weight=wb)
        aligned = permute_experts(rep, align_experts(rep, est))
        values = _reported(aligned.gate_, aligned.experts_, aligned)[1]
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        return None, False
    if values.size != n_params or not np.all(np.isfinite(values)):
        return None, False
    return values, bool(rep.converged_)


def _bootstrap(est, X, y, sample_weight, kind, n_bootstrap, n_jobs, random_state, n_params):
    entropy = int(check_random_state(random_state).randint(0, 2**62, dtype=np.int64))
    seeds = np.random.SeedSequence(entropy).spawn(n_bootstrap)
    tasks = [(est, X, y, sample_weight, kind, seed, n_params) for seed in seeds]
    out = parallel_map(_replicate, tasks, n_jobs)
    reps = np.full((n_bootstrap, n_params), np.nan)
    n_failed = n_not_converged = 0
    for b, (values, converged) in enumerate(out):
        if values is None:
            n_failed += 1
        else:
            reps[b] = values
            n_not_converged += not converged
    return reps, n_failed, n_not_converged


# -- the entry point --------------------------------------------------------------------------------
def fit_inference(
    estimator,
    X,
    y,
    sample_weight=None,
    *,
    method="observed",
    bootstrap="nonparametric",
    n_bootstrap=200,
    n_jobs=None,
    random_state=None,
):
    """Standard errors and confidence intervals of a fitted mixture of experts.

    Parameters
    ----------
    estimator : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The fit to make inference about; it is not changed.
    X : array-like of shape (n_samples, n_features)
        The data it was fitted on.
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None
        The weights it was fitted with (frequency weights: the log-likelihood
        is ``sum_i w_i log p(y_i | x_i)``).
    method : {"observed", "bootstrap"}, default="observed"
        ``"observed"``: the inverse observed information matrix (negative
        Hessian of the log-likelihood at the fit), carried to the reported
        parameters by the delta method. ``"bootstrap"``: the spread of
        ``n_bootstrap`` refits.
    bootstrap : {"nonparametric", "parametric"}, default="nonparametric"
        With ``method="bootstrap"``: resample the rows (with their weights)
        with replacement, or keep X and draw a new y from the fitted model
        (``estimator.sample_y``). Each replicate is fitted by EM started at
        the fit (a copy of ``estimator`` with ``warm_start=True``) and its
        experts are aligned to the fit's with :func:`align_experts`.
    n_bootstrap : int, default=200
        Number of bootstrap replicates (at least 2).
    n_jobs : int or None, default=None
        Processes running the replicates in parallel (joblib); the result does
        not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seed of the bootstrap draws; each replicate gets its own stream, so
        the result depends only on it.

    Returns
    -------
    MoEInferenceResults
        ``params``, ``param_names``, ``bse``, ``zvalues``, ``pvalues``,
        ``conf_int(alpha)``, ``cov_params()``, ``summary()``, ``to_frame()``.

    Warns
    -----
    SingularInformationWarning
        The observed information is singular or not positive definite; the
        standard errors are NaN.
    InferenceWarning
        Some bootstrap replicates failed (they are left out) or did not
        converge; or, with ``"observed"``, an L1 penalty set coefficients to
        zero (their standard errors are NaN and the others are conditional on
        the selected model).

    Notes
    -----
    The reported parameters are the raw-scale ones of the estimator: rows
    1..K-1 of ``gate_coef_`` (row 0 is the gate's reference, fixed at zero),
    the rows of ``expert_coef_``, and the noise variances ``sigma2`` (and
    ``df``, ``dispersion`` for those families).

    *Observed information.* The estimator holds its parameters on an
    internal scale: standardised columns and y, log-variances (unconstrained).
    The Hessian ``H`` of ``l(theta) = sum_i w_i log p(y_i | x_i; theta)`` there
    is computed by central differences of the analytic gradient, column by
    column, and symmetrised; ``I = -H``. The reported parameters are a smooth
    map ``phi(theta)`` (affine for the coefficients, ``exp`` for the
    variances); with its Jacobian ``J`` (central differences, exact to about
    1e-10 as the map is affine or exponential), the delta method gives
    ``Cov(phi) = J I^{-1} J'``. Confidence intervals are Wald intervals.

    The Hessian is that of the *unpenalised* log-likelihood. With
    ``gate_penalty > 0`` (the default is 1e-3) the fit maximises the
    penalised log-likelihood, whose Hessian differs by ``gate_penalty`` on the
    diagonal of the standardised gate slopes, against an information of order
    n: the estimates are shrunk slightly and the standard errors are those of
    the maximum-likelihood estimator at this fit. Fit with
    ``gate_penalty=0`` for the plain MLE; the summary notes the penalty.

    *L1 penalties* (``gate_l1_ratio`` or ``expert_l1_ratio`` > 0 with a
    positive penalty) set coefficients exactly to zero: they select a model.
    ``"observed"`` then gives inference *given the selected model*: the
    information is inverted over the active set ``A`` (the non-zero
    coefficients and the unpenalised parameters), ``Cov = J_A (I_AA)^{-1}
    J_A'``, the zero coefficients held at zero. At the same parameter values
    this is exactly the covariance of the maximum-likelihood estimator of the
    model restricted to ``A``. The zero coefficients are reported with
    estimate 0 and NaN standard errors (``active`` is False for them), since
    the lasso estimate of a zero coefficient has a point mass at zero and no
    Wald approximation; an :class:`InferenceWarning` and a note say that the
    other standard errors ignore the selection step, so they are optimistic
    (Leeb and Pötscher 2005), and that they are evaluated at the shrunk lasso
    estimate. Inverting the full information instead would treat the zeros as
    free and, on correlated covariates, inflate the selected coefficients'
    standard errors. ``"bootstrap"`` refits every replicate with the penalty,
    so each re-selects; ``selection_frequency`` gives how often each penalised
    coefficient is non-zero. The bootstrap of lasso-type estimators is not
    consistent for coefficients whose true value is zero (Chatterjee and
    Lahiri 2010), which the summary notes. See
    :doc:`/user_guide/penalties`.

    *Bootstrap.* Standard errors are the standard deviations, and
    ``cov_params`` the covariance, of the aligned replicates; ``conf_int``
    gives percentile intervals. Replicates start at the fit, so they stay in
    its basin of attraction, and the alignment undoes label switching.

    References
    ----------
    .. [1] McLachlan, G. J. and Peel, D. (2000). Finite Mixture Models,
       chapter 2.15 (standard errors) and 2.16 (bootstrap). Wiley.
    .. [2] Louis, T. A. (1982). Finding the observed information matrix when
       using the EM algorithm. JRSS B, 44(2), 226-233.
    .. [3] Leeb, H. and Pötscher, B. M. (2005). Model selection and inference:
       facts and fiction. Econometric Theory, 21(1), 21-59.
    .. [4] Chatterjee, A. and Lahiri, S. N. (2010). Asymptotic properties of
       the residual bootstrap for Lasso estimators. Proc. AMS, 138(12),
       4497-4509.

    Examples
    --------
    >>> import numpy as np
    >>> from mixexp import MixtureOfExpertsRegressor
    >>> from mixexp.inference import fit_inference
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(400, 1))
    >>> z = rng.uniform(size=400) < 1 / (1 + np.exp(-2 * X[:, 0]))
    >>> y = np.where(z, 1 + 2 * X[:, 0], -1 - X[:, 0]) + 0.3 * rng.standard_normal(400)
    >>> est = MixtureOfExpertsRegressor(2, gate_penalty=0, random_state=0).fit(X, y)
    >>> res = fit_inference(est, X, y)
    >>> res.param_names[:3]
    ['gate[1]:const', 'gate[1]:x0', 'expert[0]:const']
    >>> bool(np.all(res.bse > 0))
    True
    """
    if not _is_estimator(estimator):
        raise TypeError(
            f"estimator must be a fitted mixexp estimator (MixtureOfExpertsRegressor or "
            f"MixtureOfExpertsClassifier); got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    if method not in ("observed", "bootstrap"):
        raise ValueError(f"method must be 'observed' or 'bootstrap'; got {method!r}.")
    if bootstrap not in ("nonparametric", "parametric"):
        raise ValueError(f"bootstrap must be 'nonparametric' or 'parametric'; got {bootstrap!r}.")
    if method == "bootstrap":
        if not isinstance(n_bootstrap, Integral) or isinstance(n_bootstrap, bool) or n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be an integer >= 2; got {n_bootstrap!r}.")
        if bootstrap == "parametric" and not hasattr(estimator, "sample_y"):
            raise ValueError(f"bootstrap='parametric' needs {type(estimator).__name__}.sample_y.")
    from .solvers import Design

    Xv, yv = estimator._validate_X_y(X, y)
    sw = _check_sample_weight(sample_weight, Xv, dtype=np.float64, ensure_non_negative=True)
    if not sw.sum() > 0:
        raise ValueError("sample_weight must have a positive sum.")
    data = Design(*estimator._design(Xv), estimator._scaled_target(yv), sw)
    names, params = _reported(estimator.gate_, estimator.experts_, estimator)
    loglik = float(sw @ estimator.score_samples(X, _labels(y)))
    notes = []
    # penalties that are active at this fit (a constant gate ignores gate_penalty)
    active = estimator.gate_.penalty_value() > 0 or estimator.experts_.penalty_value() > 0
    penalties = {
        k: v for k, v in estimator.get_params().items() if active and k.endswith("_penalty") and v and v > 0
    }
    kwargs = {"method": method, "nobs": sw.sum(), "loglik": loglik, "model": estimator}
    l1_penalized, l1_zero = _l1_masks(estimator)
    if method == "observed":
        if penalties:
            notes.append(
                ", ".join(f"{k}={v:g}" for k, v in penalties.items())
                + ": the estimates maximise a penalised likelihood; the standard errors use the "
                "unpenalised information."
            )
        information, jac, bounded = _observed(estimator, data)
        free = np.any(jac != 0, axis=1)  # a reported value no free parameter moves is fixed
        names = [n for n, f in zip(names, free, strict=True) if f]
        params, jac = params[free], jac[free]
        if l1_zero.size != bounded.size:  # a part whose penalised coordinates are unknown
            l1_zero = np.zeros(bounded.size, dtype=bool)
        # inference given the model the L1 penalty selected: its zero coefficients are held at zero
        inactive = _depends_only_on(jac, l1_zero)
        if inactive.any():
            listed = [n for n, z in zip(names, inactive, strict=True) if z]
            warnings.warn(
                f"{len(listed)} coefficient(s) set to zero by the L1 penalty {_l1_settings(estimator)} are "
                f"reported as 0 with NaN standard errors: {listed}. The other standard errors are those "
                "of the model the penalty selected, as if it had been chosen before seeing the data: "
                "they ignore the selection step (post-selection inference), so they tend to be too "
                "small. method='bootstrap' refits with the penalty and re-selects in every replicate.",
                InferenceWarning,
                stacklevel=2,
            )
            notes.append(
                f"{len(listed)} coefficient(s) set to zero by the L1 penalty: estimate 0, std err NaN. The "
                "other standard errors are conditional on the selected model and ignore the selection step."
            )
        cov = _covariance_from_information(information, jac, bounded, names, zero=l1_zero)
        return MoEInferenceResults(
            params,
            names,
            cov,
            information=information,
            jacobian=jac,
            notes=notes,
            active=~inactive,
            **kwargs,
        )
    y_fit = _labels(y)
    # a DataFrame stays one, so the refits see the feature names the fit saw
    X_fit = X if hasattr(X, "iloc") else Xv
    reps, n_failed, n_not_converged = _bootstrap(
        estimator, X_fit, y_fit, sw, bootstrap, n_bootstrap, n_jobs, random_state, params.size
    )
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n_bootstrap} bootstrap replicates failed (their refit raised an error or "
            "changed the model's layout, e.g. a class missing from a resample) and are left out.",
            InferenceWarning,
            stacklevel=2,
        )
        notes.append(f"{n_failed} failed replicates left out.")
    if n_not_converged:
        notes.append(f"{n_not_converged} replicates stopped at max_iter before converging.")
    good = reps[~np.isnan(reps).any(axis=1)]
    cov = (
        np.cov(good, rowvar=False).reshape(params.size, params.size)
        if good.shape[0] >= 2
        else (np.full((params.size, params.size), np.nan))
    )
    active = frequency = None
    flat_parts = all(
        callable(getattr(part, m, None))
        for part in (estimator.gate_, estimator.experts_)
        for m in ("get_flat", "set_flat")
    )
    if l1_penalized.any() and flat_parts:
        jac = _reported_jacobian(estimator)
        active = ~_depends_only_on(jac, l1_zero)
        penalized = _depends_only_on(jac, l1_penalized)
        frequency = np.full(params.size, np.nan)
        if good.shape[0]:
            frequency[penalized] = np.mean(good[:, penalized] != 0.0, axis=0)
        notes.append(
            f"L1 penalty {_l1_settings(estimator)}: every replicate refits with it and re-selects "
            "(selection_frequency: how often each penalised coefficient is non-zero). The bootstrap of "
            "lasso-type estimators is not consistent for coefficients whose true value is zero "
            "(Chatterjee and Lahiri 2010): read their intervals with care."
        )
    return MoEInferenceResults(
        params,
        names,
        cov,
        bootstrap=bootstrap,
        bootstrap_params=reps,
        n_failed=n_failed,
        notes=notes,
        active=active,
        selection_frequency=frequency,
        **kwargs,
    )


def _l1_settings(estimator):
    """The L1 penalties of a fit, e.g. ``(gate_penalty=5, gate_l1_ratio=1)``."""
    from ._penalties import has_l1

    settings = [
        f"{name}_penalty={float(part.penalty):g}, {name}_l1_ratio={float(part.l1_ratio):g}"
        for part, name in ((estimator.gate_, "gate"), (estimator.experts_, "expert"))
        if has_l1(part)
    ]
    return f"({'; '.join(settings)})"


def _labels(y):
    """y as the user gave it, one-dimensional (the labels a refit needs)."""
    y = np.asarray(y)
    return y.reshape(y.shape[0], -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
