"""Degrees of freedom and standard errors under L1 penalties (issue 4).

* ``n_parameters()`` counts, for a part with an L1 term (``penalty > 0`` and
  ``l1_ratio > 0``), only its non-zero penalised coefficients plus its
  unpenalised parameters; BIC/AIC/ICL and ``select_n_experts`` use that count,
  and nothing changes without an L1 term.
* ``fit_inference(method="observed")`` under L1 is inference given the selected
  model: the information over the non-zero coefficients only; the zero
  coefficients are reported as 0 with NaN standard errors and a warning.
"""

import copy
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mixexp import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, select_n_experts
from mixexp._penalties import flat_l1_penalized, flat_l1_zeros, has_l1
from mixexp.inference import InferenceWarning, align_experts, fit_inference, permute_experts

#: gate_features / expert_features of the true sparse model below
GATE_ACTIVE, EXPERT_ACTIVE = [0], [0, 1]


def simulate(n, seed, expert1_x1=0.5):
    """A 2-expert Gaussian MoE with a sparse truth over 4 covariates.

    Gate: logit P(expert 1) = 0.3 + 2 x0 (slopes of x1, x2, x3 zero). Experts:
    y = 1 + 2 x0 + x1 and y = -1 - 1.5 x0 + ``expert1_x1`` x1, noise sd 0.5
    (slopes of x2, x3 zero). x2 = 0.8 x0 + 0.6 e is correlated with x0, so the
    information of x0's coefficients changes by a factor 1 / (1 - 0.8^2) when
    x2's coefficient is treated as free: standard errors over all coefficients
    differ clearly from those of the selected model.
    """
    rng = np.random.default_rng(seed)
    x0, x1, e, x3 = rng.standard_normal((4, n))
    X = np.column_stack([x0, x1, 0.8 * x0 + 0.6 * e, x3])
    z = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(0.3 + 2.0 * x0)))
    mu = np.where(z, -1.0 - 1.5 * x0 + expert1_x1 * x1, 1.0 + 2.0 * x0 + 1.0 * x1)
    return X, mu + 0.5 * rng.standard_normal(n)


N = 2000
#: penalties c sqrt(n): the scale of the noise coefficients' scores is sqrt(n), so a
#: penalty of ~1.2 of those sds sets them to zero at this n (checked by the test below)
LAMBDA = 1.2 * np.sqrt(N)
KW = dict(random_state=0, tol=1e-10, max_iter=5000)


@pytest.fixture(scope="module")
def data():
    return simulate(N, 0)


@pytest.fixture(scope="module")
def lasso_fit(data):
    X, y = data
    est = MixtureOfExpertsRegressor(
        2, gate_penalty=LAMBDA, gate_l1_ratio=1.0, expert_penalty=LAMBDA, expert_l1_ratio=1.0, **KW
    )
    return est.fit(X, y)


@pytest.fixture(scope="module")
def refit(data, lasso_fit):
    """The unpenalised MLE of the model restricted to the true (and selected) active set."""
    X, y = data
    ref = MixtureOfExpertsRegressor(
        2, gate_penalty=0.0, gate_features=GATE_ACTIVE, expert_features=EXPERT_ACTIVE, **KW
    ).fit(X, y)
    reference = {
        "gate_coef": lasso_fit.gate_coef_[:, [0, *(1 + np.array(GATE_ACTIVE))]],
        "expert_coef": lasso_fit.expert_coef_[:, [0, *(1 + np.array(EXPERT_ACTIVE))]],
        "noise_variance": lasso_fit.noise_variance_,
    }
    return permute_experts(ref, align_experts(ref, reference))


def _count_nonzero_by_hand(est):
    """Free parameters counted from the public attributes: non-zero slopes + intercepts + variances."""
    K = est.n_experts
    gate_slopes = est.gate_coef_[1:, 1:]
    expert_slopes = est.expert_coef_[:, 1:]
    return (K - 1) + np.count_nonzero(gate_slopes) + K + np.count_nonzero(expert_slopes) + K


# -- (a) the active-set count ---------------------------------------------------------------
def test_lasso_selects_the_true_sparse_model(lasso_fit):
    """At this n and penalty the lasso recovers the truth's zeros (the premise of the refit tests)."""
    gate_zero = lasso_fit.gate_coef_[1, 1:] == 0.0
    expert_zero = lasso_fit.expert_coef_[:, 1:] == 0.0
    assert_array_equal(gate_zero, [False, True, True, True])
    assert_array_equal(expert_zero, [[False, False, True, True]] * 2)


def test_n_parameters_counts_the_non_zero_coefficients(lasso_fit, data):
    X, y = data
    full = 1 * 5 + 2 * 5 + 2  # gate row 1, two expert rows (intercept + 4 slopes), two variances
    assert lasso_fit.n_parameters(active_only=False) == full
    assert lasso_fit.n_parameters() == _count_nonzero_by_hand(lasso_fit) == 10
    # the criteria use the active count
    ll = lasso_fit.score_samples(X, y).sum()
    assert lasso_fit.bic(X, y) == pytest.approx(-2 * ll + 10 * np.log(N), rel=1e-12)
    assert lasso_fit.aic(X, y) == pytest.approx(-2 * ll + 20, rel=1e-12)
    resp = lasso_fit.predict_responsibilities(X, y)
    icl = -2 * (ll + np.log(resp.max(axis=1)).sum()) + 10 * np.log(N)
    assert lasso_fit.icl(X, y) == pytest.approx(icl, rel=1e-12)


def test_zero_detection_is_exact(lasso_fit):
    """Zeros are the flat coordinates that are penalised, under an L1 term, and exactly 0.0."""
    gate_mask = flat_l1_zeros(lasso_fit.gate_)
    assert_array_equal(gate_mask, lasso_fit.gate_.get_flat() == 0.0)
    assert not gate_mask[0]  # the intercept is never penalised
    # a tiny non-zero slope (e.g. a halved proximal step) is counted: no tolerance
    est = copy.deepcopy(lasso_fit)
    est.gate_.coef[1, 2] = 1e-300
    assert est.n_parameters() == lasso_fit.n_parameters() + 1
    # an exactly zero intercept or variance is never dropped: they are not penalised
    est = copy.deepcopy(lasso_fit)
    est.gate_.coef[1, 0] = 0.0
    est.experts_.coef[0, 0] = 0.0
    assert est.n_parameters() == lasso_fit.n_parameters()
    penalized = flat_l1_penalized(lasso_fit.experts_)
    assert penalized.sum() == 2 * 4 and not penalized[-2:].any()  # slopes only, not the log-variances


def test_without_l1_nothing_changes(data):
    """l1_ratio = 0 (ridge) or penalty = 0: the full count, even for an exactly zero slope."""
    X, y = data
    ridge = MixtureOfExpertsRegressor(
        2, gate_penalty=LAMBDA, expert_penalty=LAMBDA, gate_l1_ratio=0.0, expert_l1_ratio=0.0, **KW
    ).fit(X, y)
    assert not has_l1(ridge.gate_) and not has_l1(ridge.experts_)
    full = ridge.n_parameters(active_only=False)
    assert ridge.n_parameters() == full == 17
    ll = ridge.score_samples(X, y).sum()
    assert ridge.bic(X, y) == -2.0 * ll + full * np.log(N)  # the same expression as before: bitwise
    assert ridge.aic(X, y) == -2.0 * ll + 2.0 * full
    ridge.gate_.coef[1, 3] = 0.0  # a ridge slope is never exactly zero; if one were, it still counts
    ridge.experts_.coef[1, 2] = 0.0
    assert ridge.n_parameters() == 17
    # an l1_ratio without a penalty is no L1 term either
    l1_no_penalty = MixtureOfExpertsRegressor(
        2, gate_penalty=0.0, gate_l1_ratio=1.0, expert_penalty=0.0, expert_l1_ratio=1.0, **KW
    ).fit(X, y)
    assert l1_no_penalty.n_parameters() == l1_no_penalty.n_parameters(active_only=False) == 17


def test_active_only_must_be_bool(lasso_fit):
    with pytest.raises(TypeError, match="active_only must be a bool"):
        lasso_fit.n_parameters(active_only="yes")


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("student_t", {"expert": "student_t"}),
        ("poisson", {"expert": "poisson"}),
        ("hierarchical", {"gate": "hierarchical"}),
    ],
)
def test_other_parts_follow_the_rule(kind, kwargs):
    """Student-t (df unpenalised), Poisson experts and the hierarchical gate's nodes."""
    rng = np.random.default_rng(1)
    n = 400
    X = rng.standard_normal((n, 4))
    z = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-2.0 * X[:, 0]))
    K = 4 if kind == "hierarchical" else 2
    if kind == "poisson":
        y = rng.poisson(np.exp(np.where(z, 1.0 + 0.8 * X[:, 0], 0.2 - 0.5 * X[:, 0])))
    else:
        y = np.where(z, 1.0 + 2.0 * X[:, 0], -1.0 - X[:, 0]) + 0.5 * rng.standard_normal(n)
    est = MixtureOfExpertsRegressor(
        K,
        gate_penalty=30.0,
        gate_l1_ratio=1.0,
        expert_penalty=30.0,
        expert_l1_ratio=1.0,
        random_state=0,
        max_iter=100,
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    zeros = int(flat_l1_zeros(est.gate_).sum() + flat_l1_zeros(est.experts_).sum())
    assert zeros > 0  # the penalty zeroes something, so the count is exercised
    assert est.n_parameters() == est.n_parameters(active_only=False) - zeros
    # by hand from the public attributes: the experts' zero slopes (raw zero iff internal zero)
    expert_zero = int(np.count_nonzero(est.expert_coef_[:, 1:] == 0.0))
    assert int(flat_l1_zeros(est.experts_).sum()) == expert_zero
    if kind == "hierarchical":
        gate_zero = sum(int(np.count_nonzero(node["coef"][1:, 1:] == 0.0)) for node in est.gate_tree_)
    else:
        gate_zero = int(np.count_nonzero(est.gate_coef_[1:, 1:] == 0.0))
    assert int(flat_l1_zeros(est.gate_).sum()) == gate_zero
    # inference given the selected model: one reported zero per internal zero, each with a NaN SE
    # (parameters at a bound, e.g. a Student-t df at its limit, may add NaN SEs of their own)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_inference(est, X, y)
    assert int(np.count_nonzero(~res.active)) == zeros
    assert_array_equal(res.params[~res.active], 0.0)
    assert np.all(np.isnan(res.bse[~res.active]))
    if kind == "poisson":  # no bounded parameter: finite everywhere else
        assert np.all(np.isfinite(res.bse[res.active]))


def test_classifier_multinomial_experts():
    rng = np.random.default_rng(2)
    n = 600
    X = rng.standard_normal((n, 4))
    z = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-2.0 * X[:, 0]))
    logit = np.where(z, 2.0 * X[:, 1], -2.0 * X[:, 1])
    labels = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    est = MixtureOfExpertsClassifier(
        2, gate_penalty=20.0, gate_l1_ratio=1.0, expert_penalty=20.0, expert_l1_ratio=1.0, random_state=0
    ).fit(X, labels)
    coef = est.experts_.coef  # (K, C, p), class 0 the reference
    expert_zero = int(np.count_nonzero(coef[:, 1:, 1:] == 0.0))
    gate_zero = int(np.count_nonzero(est.gate_.coef[1:, 1:] == 0.0))
    assert expert_zero + gate_zero > 0
    assert est.n_parameters() == est.n_parameters(active_only=False) - expert_zero - gate_zero
    with pytest.warns(InferenceWarning, match="set to zero by the L1 penalty"):
        res = fit_inference(est, X, labels)
    assert int(np.count_nonzero(~res.active)) == expert_zero + gate_zero
    assert np.all(np.isnan(res.bse[~res.active])) and np.all(np.isfinite(res.bse[res.active]))


def test_select_n_experts_uses_the_active_count(data):
    X, y = data
    X, y = X[:600], y[:600]
    lasso = MixtureOfExpertsRegressor(
        gate_penalty=30.0,
        gate_l1_ratio=1.0,
        expert_penalty=30.0,
        expert_l1_ratio=1.0,
        n_init=2,
        init="kmeans",
        random_state=0,
    )
    result = select_n_experts(lasso, X, y, n_experts=[1, 2])
    for K, est in result.estimators_.items():
        row = list(result.table["n_experts"]).index(K)
        assert result.table["n_parameters"][row] == est.n_parameters()
        assert result.table["bic"][row] == pytest.approx(est.bic(X, y), rel=1e-12)
    fits = result.estimators_.values()
    assert any(est.n_parameters() < est.n_parameters(active_only=False) for est in fits)
    # without L1 the table is the full count
    ridge = lasso.set_params(gate_l1_ratio=0.0, expert_l1_ratio=0.0)
    result = select_n_experts(ridge, X, y, n_experts=[1, 2])
    for K, est in result.estimators_.items():
        row = list(result.table["n_experts"]).index(K)
        assert result.table["n_parameters"][row] == est.n_parameters(active_only=False)


# -- (b), (c) standard errors given the selected model -----------------------------------------
@pytest.fixture(scope="module")
def lasso_inference(data, lasso_fit):
    X, y = data
    with pytest.warns(InferenceWarning, match="set to zero by the L1 penalty"):
        return fit_inference(lasso_fit, X, y)


def test_zero_coefficients_are_reported_with_nan_se(lasso_inference):
    res = lasso_inference
    zero_names = ["gate[1]:x1", "gate[1]:x2", "gate[1]:x3"] + [
        f"expert[{k}]:x{j}" for k in range(2) for j in (2, 3)
    ]
    inactive = [n for n, a in zip(res.param_names, res.active, strict=True) if not a]
    assert inactive == zero_names
    assert_array_equal(res.params[~res.active], 0.0)
    # NaN exactly where documented, finite everywhere else
    assert np.all(np.isnan(res.bse[~res.active])) and np.all(np.isfinite(res.bse[res.active]))
    assert np.all(res.bse[res.active] > 0)
    ci = res.conf_int()
    assert np.all(np.isnan(ci[~res.active])) and np.all(np.isfinite(ci[res.active]))
    assert np.all(np.isfinite(res.pvalues[res.active]))
    cov = res.cov_params()
    assert np.all(np.isfinite(cov[np.ix_(res.active, res.active)]))
    frame = res.to_frame()
    assert frame["std_err"].isna().sum() == len(zero_names)
    text = res.summary()
    assert "set to zero by the L1 penalty" in text and "ignore the selection step" in text


def test_se_of_the_selected_model_at_the_same_parameters_is_exact(data, lasso_fit, refit):
    """The machinery: the L1 fit carrying the refit's parameters gives the refit's SEs exactly.

    At equal parameter values the log-likelihood of the full model with the
    zero coefficients held at zero IS that of the restricted model, so the
    information over the non-zero coefficients is the restricted model's
    information and the SEs must agree up to the central differences' error
    (step 1e-5: truncation ~1e-10, rounding ~1e-11 relative), far below 1e-5.
    Over all coefficients (no conditioning) they differ by the x0/x2
    correlation's factor, so the comparison can fail.
    """
    X, y = data
    est = copy.deepcopy(lasso_fit)
    raw_gate = np.zeros_like(lasso_fit.gate_coef_)
    raw_gate[:, [0, *(1 + np.array(GATE_ACTIVE))]] = refit.gate_coef_
    raw_expert = np.zeros_like(lasso_fit.expert_coef_)
    raw_expert[:, [0, *(1 + np.array(EXPERT_ACTIVE))]] = refit.expert_coef_
    est.gate_.set_raw_params({"coef": raw_gate}, est._scaling)
    est.experts_.set_raw_params({"coef": raw_expert, "var": refit.noise_variance_}, est._scaling, True)
    assert flat_l1_zeros(est.gate_).sum() + flat_l1_zeros(est.experts_).sum() == 7
    with pytest.warns(InferenceWarning):
        res = fit_inference(est, X, y)
    ref = fit_inference(refit, X, y)
    assert [n for n, a in zip(res.param_names, res.active, strict=True) if a] == ref.param_names
    assert_allclose(res.params[res.active], ref.params, rtol=1e-10, atol=1e-12)
    assert_allclose(res.bse[res.active], ref.bse, rtol=1e-5)
    # the same parameters with every coefficient treated as free: clearly different SEs
    unconditional = copy.deepcopy(est)
    unconditional.gate_.l1_ratio = unconditional.experts_.l1_ratio = 0.0
    full = fit_inference(unconditional, X, y)
    assert np.all(full.active)
    x0 = [ref.param_names.index(n) for n in ("gate[1]:x0", "expert[0]:x0", "expert[1]:x0")]
    ratio = full.bse[res.active][x0] / ref.bse[x0]
    assert ratio.min() > 1.25  # x0's SEs inflated by the correlated x2 (measured 1.33 to 1.50)


def test_se_of_the_lasso_fit_agree_with_the_refit(lasso_inference, refit, data):
    """The L1 fit's SEs over its active set against the unpenalised refit on that set.

    They are the same function of the parameters (previous test), evaluated at
    the lasso estimate and at the refit. The lasso shrinks the active
    coefficients by, to first order, ``I_AA^{-1} lambda sign(theta_A)``
    (its KKT conditions), at most ``lambda / (n i_min)`` per coordinate with
    ``i_min`` the smallest per-sample information of a penalised active
    coefficient on the standardised scale, i.e. ``lambda * max SE^2`` (the
    gate slope's). The SEs are smooth in the parameters, and their relative
    change is of the order of that shift (standardised units), so the relative
    difference must be below ``2 lambda max SE^2``: O(lambda / n) = O(1 /
    sqrt(n)) for lambda ~ sqrt(n) (measured: 0.83 against a bound of 1.1 here,
    0.47 against 0.71 at n = 8000 with lambda = 1.5 sqrt(n)).
    """
    X, _ = data
    res, ref = lasso_inference, fit_inference(refit, *data)
    # SE^2 of the penalised active coefficients on the standardised scale: raw slope SE times the
    # column's sd (times 1 / y's sd for the experts, whose y is standardised too)
    names = ref.param_names
    sd = dict(zip([f"x{j}" for j in range(X.shape[1])], X.std(axis=0), strict=True))
    y_sd = refit._scaling.y_scale
    se2 = []
    for name, se in zip(names, ref.bse, strict=True):
        part, col = name.split(":")
        if col in sd:
            se2.append((se * sd[col] / (1.0 if part.startswith("gate") else y_sd)) ** 2)
    bound = 2.0 * LAMBDA * max(se2)
    rel = np.abs(res.bse[res.active] / ref.bse - 1.0)
    assert rel.max() < bound
    assert bound < 1.5  # the bound is O(1 / sqrt(n)), informative at this n


def test_per_expert_sparsity():
    """Expert 1 without x1 (a zero that differs between experts): count and SEs of the selected model."""
    X, y = simulate(N, 3, expert1_x1=0.0)
    est = MixtureOfExpertsRegressor(
        2, gate_penalty=LAMBDA, gate_l1_ratio=1.0, expert_penalty=LAMBDA, expert_l1_ratio=1.0, **KW
    ).fit(X, y)
    # the expert whose y does not depend on x1 is the one whose x0 slope is negative
    k = int(np.argmin(est.expert_coef_[:, 1]))
    assert est.expert_coef_[k, 2] == 0.0 and est.expert_coef_[1 - k, 2] != 0.0
    assert est.n_parameters() == _count_nonzero_by_hand(est) == 9
    with pytest.warns(InferenceWarning):
        res = fit_inference(est, X, y)
    assert_array_equal(res.active, lasso_inference_active(est))
    assert np.all(np.isnan(res.bse[~res.active])) and np.all(np.isfinite(res.bse[res.active]))
    assert f"expert[{k}]:x1" in [n for n, a in zip(res.param_names, res.active, strict=True) if not a]


def test_bootstrap_refits_with_the_penalty(data, lasso_fit):
    X, y = data
    res = fit_inference(lasso_fit, X, y, method="bootstrap", n_bootstrap=6, random_state=0)
    assert res.n_failed == 0
    assert_array_equal(res.active, lasso_inference_active(lasso_fit))
    freq = res.selection_frequency
    penalized = np.array([":x" in n for n in res.param_names])
    assert np.all(np.isnan(freq[~penalized]))
    assert np.all((freq[penalized] >= 0) & (freq[penalized] <= 1))
    # every replicate keeps the strong true effects, re-selects the others
    strong = [res.param_names.index(n) for n in ("gate[1]:x0", "expert[0]:x0", "expert[1]:x0")]
    assert_array_equal(freq[strong], 1.0)
    # the replicates' zeros are the selection frequencies' complement
    reps = res.bootstrap_params
    assert_allclose(freq[penalized], np.mean(reps[:, penalized] != 0, axis=0))
    assert np.all(np.isfinite(res.bse))  # the spread of refits, zeros included: no NaN
    assert "re-selects" in res.summary()


def lasso_inference_active(est):
    """Which reported parameters are not L1 zeros, from the public attributes."""
    active = [True] + list(est.gate_coef_[1, 1:] != 0.0)
    for k in range(est.n_experts):
        active += [True] + list(est.expert_coef_[k, 1:] != 0.0) + [True]
    return np.array(active)


def test_no_l1_results_unchanged(data):
    """Without an L1 term: every parameter active, no selection note, no selection frequency."""
    X, y = data
    X, y = X[:500], y[:500]
    est = MixtureOfExpertsRegressor(2, gate_penalty=1e-3, **KW).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InferenceWarning)
        res = fit_inference(est, X, y)
    assert np.all(res.active) and res.selection_frequency is None
    assert "L1" not in res.summary()
