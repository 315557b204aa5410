"""True mixture-of-experts models with known parameters: sampling, densities, starts.

Three gates, each with Gaussian linear experts ``y | x, z = k ~ N(b_k + a_k^T x,
sigma_k^2)`` (``sigma_k^2`` is a *variance*, as in the papers):

* :class:`SoftmaxGatedMoE`: ``P(z = k | x) = softmax_k(beta_{0k} + beta_{1k}^T x)``
  (Nguyen, Nguyen & Ho, NeurIPS 2023), the model of
  :class:`mixexp.MixtureOfExpertsRegressor` with ``gate="softmax"``;
* :class:`TopKSoftmaxMoE`: the softmax restricted to the ``top_k`` largest
  logits at each x (Nguyen, Akbarian, Yan & Ho, ICLR 2024);
* :class:`GaussianGatedMoE`: ``z ~ Cat(pi)``, ``x | z = k ~ N(mu_k, Sigma_k)``, so
  that ``P(z = k | x)`` is proportional to ``pi_k N(x; mu_k, Sigma_k)`` (Nguyen,
  Nguyen, Nguyen & Ho, AISTATS 2024).

Coefficient arrays follow the estimators: ``gate_coef`` (K, 1 + d) is
``[beta_0, beta_1]`` row by row and ``expert_coef`` (K, 1 + d) is ``[b, a]``
(intercept first), so a fitted estimator converts both ways
(:meth:`SoftmaxGatedMoE.from_estimator`, :meth:`SoftmaxGatedMoE.to_estimator`).
"""

import warnings

import numpy as np
from scipy.special import log_softmax, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

X_DISTRIBUTIONS = ("uniform", "normal", "grid")

#: Perturbation of :meth:`SoftmaxGatedMoE.near_truth`: ``part -> (c, e)``, the
#: standard deviation ``c * n**-e`` of the noise added to that part. The values
#: are those of the reference implementation of Nguyen, Nguyen & Ho (2023)
#: (``initParam(nearTrue=TRUE)`` of ``Trung-TinNGUYEN/meteoritsSim``, called by
#: ``experiment.py`` of ``Trung-TinNGUYEN/CRPE-SGaME``).
PAPER_PERTURBATION = {"gate": (0.005, 0.083), "expert": (0.05, 0.083), "variance": (0.005, 0.25)}

#: Perturbation of :meth:`GaussianGatedMoE.near_truth`, ``part -> (c, e)`` as in
#: :data:`PAPER_PERTURBATION`: the values of ``init_params_GLLiM`` in
#: ``experiment.py`` of ``Trung-TinNGUYEN/CRPE-GMoE`` (Nguyen, Nguyen, Nguyen &
#: Ho, AISTATS 2024). The covariance and variance noise is added in absolute
#: value to the diagonal.
PAPER_PERTURBATION_GAUSSIAN = {
    "gate_mean": (0.005, 0.083),
    "gate_covariance": (0.0005, 0.25),
    "expert": (0.005, 0.083),
    "variance": (0.0005, 0.25),
}


def _as_2d(coef, name):
    coef = np.array(coef, dtype=float)
    if coef.ndim != 2 or coef.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (n_experts, 1 + n_features); got shape {coef.shape}.")
    if not np.all(np.isfinite(coef)):
        raise ValueError(f"{name} must be finite.")
    return coef


def _check_variance(noise_variance, n_experts):
    var = np.array(noise_variance, dtype=float).reshape(-1)
    if var.shape != (n_experts,) or not np.all(var > 0) or not np.all(np.isfinite(var)):
        raise ValueError(
            f"noise_variance must be {n_experts} positive finite numbers; got {noise_variance!r}."
        )
    return var


def _gaussian_log_pdf(y, mean, var):
    return -0.5 * (np.log(2 * np.pi * var) + (y - mean) ** 2 / var)


def _draw_categorical(prob, rng):
    """One label per row of ``prob`` (n, K) by inversion of the cumulative sums."""
    u = rng.uniform(size=(prob.shape[0], 1))
    return np.minimum((u > np.cumsum(prob, axis=1)).sum(axis=1), prob.shape[1] - 1)


class _ConditionalMoE:
    """What every true model derives from its gate and its Gaussian linear experts.

    Subclasses give ``log_gate_probabilities(X)`` and ``expert_means(X)``,
    each (n_samples, n_experts), and ``noise_variance``.
    """

    def gate_probabilities(self, X):
        """Gate probabilities ``P(z = k | x)``, shape (n_samples, n_experts); rows sum to 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_experts)
        """
        return np.exp(self.log_gate_probabilities(X))

    def mean(self, X):
        """Regression function ``E[y | x] = sum_k P(z = k | x) (b_k + a_k^T x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return np.einsum("nk,nk->n", self.gate_probabilities(X), self.expert_means(X))

    def _joint_log(self, X, y):
        y = np.asarray(y, dtype=float).reshape(-1)
        log_gate = self.log_gate_probabilities(X)
        if y.shape[0] != log_gate.shape[0]:
            raise ValueError(f"X has {log_gate.shape[0]} rows but y has {y.shape[0]}.")
        return log_gate + _gaussian_log_pdf(y[:, None], self.expert_means(X), self.noise_variance)

    def log_density(self, X, y):
        """Conditional log-density ``log p(y_i | x_i)`` of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return logsumexp(self._joint_log(X, y), axis=1)

    def responsibilities(self, X, y):
        """Posterior probabilities ``P(z = k | x_i, y_i)`` under this model.

        Passed as ``init=`` to :class:`mixexp.MixtureOfExpertsRegressor`, they
        start EM with the M-step that follows an E-step at these parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        joint = self._joint_log(X, y)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))



class _LinearGatedMoE(_ConditionalMoE):
    """Shared parts of the gates whose logits are linear in x (softmax, top-K)."""

    def __init__(
        self, gate_coef, expert_coef, noise_variance, *, x_distribution="uniform", x_range=(0.0, 1.0)
    ):
        self.gate_coef = _as_2d(gate_coef, "gate_coef")
        self.expert_coef = _as_2d(expert_coef, "expert_coef")
        if self.gate_coef.shape != self.expert_coef.shape:
            raise ValueError(
                f"gate_coef {self.gate_coef.shape} and expert_coef {self.expert_coef.shape} must have the "
                "same shape (n_experts, 1 + n_features)."
            )
        self.noise_variance = _check_variance(noise_variance, self.gate_coef.shape[0])
        if x_distribution not in X_DISTRIBUTIONS:
            raise ValueError(f"x_distribution must be one of {X_DISTRIBUTIONS}; got {x_distribution!r}.")
        if x_distribution == "grid" and self.n_features != 1:
            raise ValueError("x_distribution='grid' needs n_features=1.")
        low, high = (float(v) for v in x_range)
        if not high > low:
            raise ValueError(f"x_range must be (low, high) with high > low; got {x_range!r}.")
        self.x_distribution = x_distribution
        self.x_range = (low, high)

    # -- shape -------------------------------------------------------------------
    @property
    def n_experts(self):
        """Number of experts K."""
        return self.gate_coef.shape[0]

    @property
    def n_features(self):
        """Dimension d of x."""
        return self.gate_coef.shape[1] - 1

    def _design(self, X):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}); got {X.shape}.")
        return np.column_stack([np.ones(X.shape[0]), X])

    # -- the model ---------------------------------------------------------------
    def gate_logits(self, X):
        """Gate logits ``beta_{0k} + beta_{1k}^T x``, shape (n_samples, n_experts)."""
        return self._design(X) @ self.gate_coef.T

    def log_gate_probabilities(self, X):
        """Log gate probabilities, shape (n_samples, n_experts)."""
        return log_softmax(self.gate_logits(X), axis=1)

    def expert_means(self, X):
        """Expert means ``b_k + a_k^T x``, shape (n_samples, n_experts)."""
        return self._design(X) @ self.expert_coef.T

    # -- sampling ----------------------------------------------------------------
    def sample_X(self, n_samples, random_state=None):
        """Draw covariates from ``x_distribution``.

        ``"uniform"``: independent coordinates uniform on ``x_range``;
        ``"normal"``: standard normal; ``"grid"``: ``n_samples`` equispaced
        points spanning ``x_range`` (d = 1; the fixed design of the reference
        implementation, which is not random).

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        rng = check_random_state(random_state)
        low, high = self.x_range
        if self.x_distribution == "uniform":
            return rng.uniform(low, high, size=(n_samples, self.n_features))
        if self.x_distribution == "normal":
            return rng.standard_normal((n_samples, self.n_features))
        return np.linspace(low, high, n_samples)[:, None]

    def sample(self, n_samples, random_state=None, return_labels=False):
        """Draw ``(X, y)`` from the model.

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState instance or None, default=None
        return_labels : bool, default=False
            Also return the latent expert label of each sample.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        labels : ndarray of shape (n_samples,)
            Only when ``return_labels`` is True.
        """
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
        rng = check_random_state(random_state)
        X = self.sample_X(n_samples, rng)
        labels = _draw_categorical(self.gate_probabilities(X), rng)
        mean = np.einsum("ij,ij->i", self._design(X), self.expert_coef[labels])
        y = mean + np.sqrt(self.noise_variance[labels]) * rng.standard_normal(n_samples)
        return (X, y, labels) if return_labels else (X, y)

    # -- parameters --------------------------------------------------------------
    def _kwargs(self):
        return {"x_distribution": self.x_distribution, "x_range": self.x_range}

    def get_params(self):
        """The parameters as a dict of arrays (copies).

        Returns
        -------
        dict
            ``gate_coef``, ``expert_coef``, ``noise_variance``.
        """
        return {
            "gate_coef": self.gate_coef.copy(),
            "expert_coef": self.expert_coef.copy(),
            "noise_variance": self.noise_variance.copy(),
        }

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_experts={self.n_experts}, n_features={self.n_features}, "
            f"x_distribution={self.x_distribution!r})"
        )


class SoftmaxGatedMoE(_LinearGatedMoE):
    """Softmax-gated mixture of Gaussian linear experts with known parameters.

    .. math::

        p(y \\mid x) = \\sum_{k=1}^{K}
        \\operatorname{softmax}_k(\\beta_{0k} + \\beta_{1k}^\\top x)\\,
        \\mathcal{N}(y;\\ b_k + a_k^\\top x,\\ \\sigma_k^2),

    with covariates drawn from ``x_distribution``. The gate is identifiable
    only up to a common shift of its rows; any row may be the reference.

    Parameters
    ----------
    gate_coef : array-like of shape (n_experts, 1 + n_features)
        ``[beta_0k, beta_1k]``, intercept first.
    expert_coef : array-like of shape (n_experts, 1 + n_features)
        ``[b_k, a_k]``, intercept first.
    noise_variance : array-like of shape (n_experts,)
        ``sigma_k^2``.
    x_distribution : {"uniform", "normal", "grid"}, default="uniform"
        Distribution of x (see :meth:`sample_X`).
    x_range : tuple of float, default=(0.0, 1.0)
        Support of the uniform distribution and of the grid.

    See Also
    --------
    neurips2023_model : the simulation model of Nguyen, Nguyen & Ho (2023).

    Examples
    --------
    >>> from mixexp.theory import SoftmaxGatedMoE
    >>> model = SoftmaxGatedMoE([[-8, 25], [0, 0]], [[15, -20], [-5, 20]], [0.09, 0.16])
    >>> X, y = model.sample(1000, random_state=0)
    >>> X.shape, model.gate_probabilities(X).shape
    ((1000, 1), (1000, 2))
    """

    gate = "softmax"

    def canonical(self, reference=0):
        """The same model with gate row ``reference`` shifted to zero.

        Parameters
        ----------
        reference : int, default=0

        Returns
        -------
        SoftmaxGatedMoE
        """
        gate = self.gate_coef - self.gate_coef[reference]
        return type(self)(gate, self.expert_coef, self.noise_variance, **self._kwargs())

    # -- estimators ----------------------------------------------------------------
    @classmethod
    def from_estimator(cls, estimator, **kwargs):
        """The model of a fitted softmax-gated Gaussian regressor.

        Parameters
        ----------
        estimator : MixtureOfExpertsRegressor
            Fitted, with ``gate="softmax"``, ``expert="gaussian"`` and every
            column of X feeding both the gate and the experts.
        **kwargs
            ``x_distribution`` and ``x_range`` of the new model.

        Returns
        -------
        SoftmaxGatedMoE
        """
        _check_estimator(estimator, fitted=True)
        return cls(estimator.gate_coef_, estimator.expert_coef_, estimator.noise_variance_, **kwargs)

    def to_estimator(self, X, y, **params):
        """A :class:`~mixexp.MixtureOfExpertsRegressor` set at this model's parameters.

        The estimator is fitted to ``(X, y)`` for its data scaling, then its
        parameters are replaced by this model's (gate row 0 shifted to zero),
        with ``n_iter_ = 0``, ``converged_ = False`` and ``lower_bound_`` the
        mean penalised log-likelihood at these parameters. Refitting it with
        ``warm_start=True`` runs EM from exactly these parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **params
            Estimator parameters (``n_experts`` is this model's).

        Returns
        -------
        MixtureOfExpertsRegressor
        """
        from .._estimators import MixtureOfExpertsRegressor

        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        est = MixtureOfExpertsRegressor(self.n_experts, **params)
        _check_estimator(est, fitted=False)
        saved = {k: getattr(est, k) for k in ("init", "max_iter", "warm_start", "n_init")}
        est.set_params(init=self.responsibilities(X, y), max_iter=1, warm_start=False, n_init=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        canon = self.canonical(0)
        est.gate_.set_raw_params({"coef": canon.gate_coef}, est._scaling)
        est.experts_.set_raw_params(
            {"coef": canon.expert_coef, "var": canon.noise_variance}, est._scaling, True
        )
        total = est.score_samples(X, y).sum()
        lower_bound = (total - est.gate_.penalty_value() - est.experts_.penalty_value()) / X.shape[0]
        est.n_iter_ = 0
        est.converged_ = False
        est.lower_bound_ = float(lower_bound)
        est.lower_bounds_ = np.array([lower_bound])
        est.set_params(**saved)
        return est

    # -- starts near the truth -------------------------------------------------------
    def near_truth(self, n_experts, n_samples, *, split="random", perturbation=None, random_state=None):
        """A perturbed copy of the truth with ``n_experts`` atoms: an EM start.

        Each fitted atom is given a true atom (a *split*, every true atom
        covered); the ``m`` copies of a true atom get its parameters, gate
        intercept lowered by ``log m`` (so that unperturbed copies represent
        exactly the true conditional density), plus Gaussian noise of standard
        deviation ``c * n_samples**-e`` for the ``(c, e)`` of each part in
        ``perturbation``; the variances get the absolute value of the noise
        added. This is the near-truth start of the reference implementation of
        Nguyen, Nguyen & Ho (2023) (``Trung-TinNGUYEN/CRPE-SGaME``,
        ``experiment.py``, which calls ``emNMoE(nearTrue=TRUE)`` of
        ``Trung-TinNGUYEN/meteoritsSim``), with three differences: the copies'
        intercepts are lowered by ``log m`` (the reference keeps them), the
        noise is drawn per coordinate (the reference adds one draw to a whole
        coefficient vector), and the variance noise is added to the true
        variance (the reference adds it to the true standard deviation).

        Parameters
        ----------
        n_experts : int
            Number of atoms of the start, at least ``self.n_experts``.
        n_samples : int
            Sample size n, which sets the noise level.
        split : {"random", "balanced"}, default="random"
            ``"random"``: each atom draws its true atom uniformly, redrawn
            until every true atom is covered (the reference's partition).
            ``"balanced"``: cell sizes as equal as possible, the extra copies
            going to the first true atoms (deterministic).
        perturbation : dict, default=None
            ``{"gate": (c, e), "expert": (c, e), "variance": (c, e)}``;
            missing parts take :data:`PAPER_PERTURBATION`'s values. ``c = 0``
            gives no noise.
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        start : SoftmaxGatedMoE
            With ``n_experts`` atoms.
        assignment : ndarray of shape (n_experts,)
            The true atom each atom of ``start`` was made from.
        """
        rng = check_random_state(random_state)
        K, K0 = int(n_experts), self.n_experts
        if K < K0:
            raise ValueError(f"n_experts={K} must be at least the true number of experts {K0}.")
        assignment = _split(K, K0, split, rng)
        pert = {**PAPER_PERTURBATION, **(perturbation or {})}
        unknown = set(pert) - set(PAPER_PERTURBATION)
        if unknown:
            raise ValueError(
                f"unknown perturbation parts {sorted(unknown)}; use {sorted(PAPER_PERTURBATION)}."
            )
        sd = {part: c * float(n_samples) ** (-e) for part, (c, e) in pert.items()}
        sizes = np.bincount(assignment, minlength=K0)
        gate = self.gate_coef[assignment].copy()
        gate[:, 0] -= np.log(sizes[assignment])
        gate += sd["gate"] * rng.standard_normal(gate.shape)
        expert = self.expert_coef[assignment] + sd["expert"] * rng.standard_normal(gate.shape)
        var = self.noise_variance[assignment] + np.abs(sd["variance"] * rng.standard_normal(K))
        return type(self)(gate, expert, var, **self._kwargs()), assignment


def _split(K, K0, split, rng):
    if split == "balanced":
        return np.sort(np.arange(K) % K0)
    if split == "random":
        while True:
            assignment = rng.randint(K0, size=K)
            if np.unique(assignment).size == K0:
                return assignment
    raise ValueError(f"split must be 'random' or 'balanced'; got {split!r}.")


def _check_estimator(estimator, fitted, gate="softmax"):
    wanted = gate
    gate = getattr(estimator, "gate", None)
    expert = getattr(estimator, "expert", None)
    if gate != wanted or expert != "gaussian":
        raise ValueError(
            f"needs a MixtureOfExpertsRegressor with gate={wanted!r} and expert='gaussian'; "
            f"got gate={gate!r}, expert={expert!r}."
        )
    if estimator.gate_features is not None or estimator.expert_features is not None:
        raise ValueError("needs gate_features=None and expert_features=None (every column in both parts).")
    if not estimator.fit_intercept:
        raise ValueError("needs fit_intercept=True.")
    if fitted and not hasattr(estimator, "gate_"):
        raise ValueError("the estimator is not fitted.")


class TopKSoftmaxMoE(_LinearGatedMoE):
    """Top-K sparse softmax-gated mixture of Gaussian linear experts.

    At each x only the ``top_k`` largest logits ``beta_{0k} + beta_{1k}^T x``
    are kept and the softmax is taken over them; the other experts get weight
    zero (Nguyen, Akbarian, Yan & Ho, ICLR 2024). With ``top_k = n_experts``
    it is the dense :class:`SoftmaxGatedMoE`. Ties at the K-th logit are
    broken towards the lower expert index.

    Parameters
    ----------
    gate_coef, expert_coef, noise_variance
        As in :class:`SoftmaxGatedMoE`.
    top_k : int
        Number of experts active at each x, ``1 <= top_k <= n_experts``.
    x_distribution : {"uniform", "normal", "grid"}, default="uniform"
    x_range : tuple of float, default=(0.0, 1.0)
    """

    gate = "top_k"

    def __init__(
        self, gate_coef, expert_coef, noise_variance, top_k, *, x_distribution="uniform", x_range=(0.0, 1.0)
    ):
        super().__init__(
            gate_coef, expert_coef, noise_variance, x_distribution=x_distribution, x_range=x_range
        )
        top_k = int(top_k)
        if not 1 <= top_k <= self.n_experts:
            raise ValueError(f"top_k must be in [1, {self.n_experts}]; got {top_k}.")
        self.top_k = top_k

    def active(self, X):
        """Boolean mask (n_samples, n_experts) of the experts selected at each x."""
        logits = self.gate_logits(X)
        order = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]
        mask = np.zeros(logits.shape, dtype=bool)
        np.put_along_axis(mask, order, True, axis=1)
        return mask

    def log_gate_probabilities(self, X):
        """Log gate probabilities (``-inf`` for the experts not selected)."""
        logits = np.where(self.active(X), self.gate_logits(X), -np.inf)
        return log_softmax(logits, axis=1)

    def _kwargs(self):
        return {"top_k": self.top_k, **super()._kwargs()}

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, top_k={self.top_k})"

    def _dense(self):
        """The dense :class:`SoftmaxGatedMoE` with the same parameters."""
        return SoftmaxGatedMoE(
            self.gate_coef, self.expert_coef, self.noise_variance, **_LinearGatedMoE._kwargs(self)
        )

    def to_estimator(self, X, y, **params):
        """A :class:`~mixexp.MixtureOfExpertsRegressor` with ``top_k`` set at this model's parameters.

        As :meth:`SoftmaxGatedMoE.to_estimator`, with ``top_k=self.top_k``
        unless ``params`` sets it; ``lower_bound_`` is the top-K model's.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **params
            Estimator parameters (``n_experts`` is this model's).

        Returns
        -------
        MixtureOfExpertsRegressor
        """
        return self._dense().to_estimator(X, y, **{"top_k": self.top_k, **params})

    def near_truth(self, n_experts, n_samples, *, split="random", perturbation=None, random_state=None):
        """A perturbed copy of the truth with ``n_experts`` atoms and a wider top-K: an EM start.

        The atoms are those of :meth:`SoftmaxGatedMoE.near_truth`. The start
        selects ``top_k + n_experts - self.n_experts`` experts (at most
        ``n_experts``): the over-specified top-:math:`\\bar K` of Nguyen,
        Akbarian, Yan & Ho (2024), who show that the fitted model must select
        at least as many experts as the Voronoi cells of the selected true
        experts hold (here the extra atoms may all be copies of selected
        ones).

        Parameters
        ----------
        n_experts, n_samples, split, perturbation, random_state
            As in :meth:`SoftmaxGatedMoE.near_truth`.

        Returns
        -------
        start : TopKSoftmaxMoE
        assignment : ndarray of shape (n_experts,)
        """
        start, assignment = self._dense().near_truth(
            n_experts, n_samples, split=split, perturbation=perturbation, random_state=random_state
        )
        top_k = min(start.n_experts, self.top_k + start.n_experts - self.n_experts)
        kwargs = _LinearGatedMoE._kwargs(self)
        start = type(self)(start.gate_coef, start.expert_coef, start.noise_variance, top_k, **kwargs)
        return start, assignment


class GaussianGatedMoE(_ConditionalMoE):
    """Gaussian-gated mixture of Gaussian linear experts with known parameters.

    ``z ~ Cat(pi)``, ``x | z = k ~ N(mu_k, Sigma_k)`` and ``y | x, z = k ~
    N(b_k + a_k^T x, nu_k)``, so the gate is ``P(z = k | x) = pi_k N(x; mu_k,
    Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j)`` (Nguyen, Nguyen, Nguyen & Ho,
    AISTATS 2024; the model of their ``Trung-TinNGUYEN/CRPE-GMoE`` code, a
    GLLiM). Its Voronoi losses are in :mod:`mixexp.theory.losses`.

    Parameters
    ----------
    weights : array-like of shape (n_experts,)
        Mixing proportions ``pi_k``, positive, summing to one.
    means : array-like of shape (n_experts, n_features)
        Gate locations ``mu_k``.
    covariances : array-like of shape (n_experts, n_features, n_features)
        Gate covariances ``Sigma_k``, symmetric positive definite.
    expert_coef : array-like of shape (n_experts, 1 + n_features)
        ``[b_k, a_k]``, intercept first.
    noise_variance : array-like of shape (n_experts,)
        ``nu_k``.
    """

    gate = "gaussian"

    def __init__(self, weights, means, covariances, expert_coef, noise_variance):
        weights = np.array(weights, dtype=float).reshape(-1)
        K = weights.shape[0]
        if not np.all(weights > 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-10):
            raise ValueError("weights must be positive and sum to one.")
        means = np.array(means, dtype=float)
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or means.shape[0] != K:
            raise ValueError(f"means must have shape ({K}, n_features); got {means.shape}.")
        d = means.shape[1]
        covariances = np.array(covariances, dtype=float).reshape(K, d, d)
        if not np.allclose(covariances, np.swapaxes(covariances, 1, 2)):
            raise ValueError("covariances must be symmetric.")
        try:
            self._chol = np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError:
            raise ValueError("covariances must be positive definite.") from None
        expert_coef = _as_2d(expert_coef, "expert_coef")
        if expert_coef.shape != (K, 1 + d):
            raise ValueError(f"expert_coef must have shape ({K}, {1 + d}); got {expert_coef.shape}.")
        self.weights = weights
        self.means = means
        self.covariances = covariances
        self.expert_coef = expert_coef
        self.noise_variance = _check_variance(noise_variance, K)

    @property
    def n_experts(self):
        """Number of experts K."""
        return self.weights.shape[0]

    @property
    def n_features(self):
        """Dimension d of x."""
        return self.means.shape[1]

    def _check_X(self, X):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}); got {X.shape}.")
        return X

    def _log_gate_numerators(self, X):
        """``log pi_k + log N(x_i; mu_k, Sigma_k)``, shape (n_samples, n_experts)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_experts))
        for k in range(self.n_experts):
            L = self._chol[k]
            z = np.linalg.solve(L, (X - self.means[k]).T)
            logdet = 2 * np.log(np.diag(L)).sum()
            out[:, k] = np.log(self.weights[k]) - 0.5 * (
                self.n_features * np.log(2 * np.pi) + logdet + (z**2).sum(axis=0)
            )
        return out

    def log_gate_probabilities(self, X):
        """Log gate probabilities ``log P(z = k | x)``, shape (n_samples, n_experts)."""
        return log_softmax(self._log_gate_numerators(X), axis=1)

    def expert_means(self, X):
        """Expert means ``b_k + a_k^T x``, shape (n_samples, n_experts)."""
        X = self._check_X(X)
        return np.column_stack([np.ones(X.shape[0]), X]) @ self.expert_coef.T

    def sample(self, n_samples, random_state=None, return_labels=False):
        """Draw ``(X, y)``: the label, then x given the label, then y given both.

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState instance or None, default=None
        return_labels : bool, default=False

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        labels : ndarray of shape (n_samples,)
            Only when ``return_labels`` is True.
        """
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
        rng = check_random_state(random_state)
        labels = _draw_categorical(np.broadcast_to(self.weights, (n_samples, self.n_experts)), rng)
        noise = rng.standard_normal((n_samples, self.n_features))
        X = self.means[labels] + np.einsum("nij,nj->ni", self._chol[labels], noise)
        mean = self.expert_coef[labels, 0] + np.einsum("ni,ni->n", X, self.expert_coef[labels, 1:])
        y = mean + np.sqrt(self.noise_variance[labels]) * rng.standard_normal(n_samples)
        return (X, y, labels) if return_labels else (X, y)

    def log_marginal_x(self, X):
        """Log-density of the covariates, ``log sum_k pi_k N(x_i; mu_k, Sigma_k)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return logsumexp(self._log_gate_numerators(X), axis=1)

    # -- estimators ----------------------------------------------------------------
    @classmethod
    def from_estimator(cls, estimator):
        """The model of a fitted Gaussian-gated Gaussian regressor.

        Parameters
        ----------
        estimator : MixtureOfExpertsRegressor
            Fitted, with ``gate="gaussian"``, ``expert="gaussian"``,
            ``fit_intercept=True`` and every column of X feeding both parts.
            Diagonal and spherical gate covariances become diagonal matrices.

        Returns
        -------
        GaussianGatedMoE
        """
        _check_estimator(estimator, fitted=True, gate="gaussian")
        cov = np.asarray(estimator.gate_covariances_, dtype=float)
        if cov.ndim == 2:  # "diag" or "spherical": variances per column
            cov = np.stack([np.diag(row) for row in cov])
        return cls(
            estimator.gate_weights_,
            estimator.gate_means_,
            cov,
            estimator.expert_coef_,
            estimator.noise_variance_,
        )

    def to_estimator(self, X, y, **params):
        """A :class:`~mixexp.MixtureOfExpertsRegressor` (``gate="gaussian"``) set at this model.

        As :meth:`SoftmaxGatedMoE.to_estimator`: the estimator is fitted to
        ``(X, y)`` for its data scaling (one EM step from this model's
        responsibilities), then its parameters are replaced by this model's,
        with ``n_iter_ = 0``, ``converged_ = False`` and ``lower_bound_`` the
        mean joint log-likelihood of ``(x, y)`` at these parameters (minus the
        experts' penalty), the objective EM maximises with this gate. Refitting
        with ``warm_start=True`` runs EM from exactly these parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **params
            Estimator parameters (``n_experts`` is this model's and ``gate`` is
            ``"gaussian"``; ``gate_covariance_type`` must be ``"full"``, the
            default here).

        Returns
        -------
        MixtureOfExpertsRegressor
        """
        from .._estimators import MixtureOfExpertsRegressor

        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        params = {"gate_covariance_type": "full", **params, "gate": "gaussian"}
        if params["gate_covariance_type"] != "full":
            raise ValueError(
                "to_estimator needs gate_covariance_type='full' (the model's covariances are full); "
                f"got {params['gate_covariance_type']!r}."
            )
        est = MixtureOfExpertsRegressor(self.n_experts, **params)
        _check_estimator(est, fitted=False, gate="gaussian")
        saved = {k: getattr(est, k) for k in ("init", "max_iter", "warm_start", "n_init")}
        est.set_params(init=self.responsibilities(X, y), max_iter=1, warm_start=False, n_init=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        est.gate_.set_raw_params(
            {"weights": self.weights, "means": self.means, "covariances": self.covariances}, est._scaling
        )
        est.experts_.set_raw_params(
            {"coef": self.expert_coef, "var": self.noise_variance}, est._scaling, True
        )
        total = (est.score_samples(X, y) + self.log_marginal_x(X)).sum()
        lower_bound = (total - est.gate_.penalty_value() - est.experts_.penalty_value()) / X.shape[0]
        est.n_iter_ = 0
        est.converged_ = False
        est.lower_bound_ = float(lower_bound)
        est.lower_bounds_ = np.array([lower_bound])
        est.set_params(**saved)
        return est

    # -- starts near the truth -------------------------------------------------------
    def near_truth(self, n_experts, n_samples, *, split="random", perturbation=None, random_state=None):
        """A perturbed copy of the truth with ``n_experts`` atoms: an EM start.

        The start of ``init_params_GLLiM`` in ``experiment.py`` of
        ``Trung-TinNGUYEN/CRPE-GMoE`` (Nguyen, Nguyen, Nguyen & Ho, AISTATS
        2024): each fitted atom is given a true atom (every true atom covered);
        the ``m`` copies of a true atom share its weight equally (``pi_j /
        m``, unperturbed) and get its parameters plus Gaussian noise of
        standard deviation ``c * n_samples**-e`` for the ``(c, e)`` of each
        part in ``perturbation``: the gate means and the expert coefficients
        ``[b, a]`` coordinate by coordinate, the absolute value of the noise
        on the diagonal of the gate covariances and on the noise variances.

        Parameters
        ----------
        n_experts : int
            Number of atoms of the start, at least ``self.n_experts``.
        n_samples : int
            Sample size n, which sets the noise level.
        split : {"random", "balanced"}, default="random"
            As in :meth:`SoftmaxGatedMoE.near_truth` (``"random"`` is the
            reference's partition).
        perturbation : dict, default=None
            ``{"gate_mean": (c, e), "gate_covariance": (c, e), "expert": (c,
            e), "variance": (c, e)}``; missing parts take
            :data:`PAPER_PERTURBATION_GAUSSIAN`'s values.
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        start : GaussianGatedMoE
            With ``n_experts`` atoms.
        assignment : ndarray of shape (n_experts,)
            The true atom each atom of ``start`` was made from.
        """
        rng = check_random_state(random_state)
        K, K0 = int(n_experts), self.n_experts
        if K < K0:
            raise ValueError(f"n_experts={K} must be at least the true number of experts {K0}.")
        pert = {**PAPER_PERTURBATION_GAUSSIAN, **(perturbation or {})}
        unknown = set(pert) - set(PAPER_PERTURBATION_GAUSSIAN)
        if unknown:
            raise ValueError(
                f"unknown perturbation parts {sorted(unknown)}; use {sorted(PAPER_PERTURBATION_GAUSSIAN)}."
            )
        assignment = _split(K, K0, split, rng)
        sd = {part: c * float(n_samples) ** (-e) for part, (c, e) in pert.items()}
        sizes = np.bincount(assignment, minlength=K0)
        d = self.n_features
        weights = self.weights[assignment] / sizes[assignment]
        means = self.means[assignment] + sd["gate_mean"] * rng.standard_normal((K, d))
        cov = self.covariances[assignment].copy()
        cov[:, np.arange(d), np.arange(d)] += np.abs(sd["gate_covariance"] * rng.standard_normal((K, d)))
        expert = self.expert_coef[assignment] + sd["expert"] * rng.standard_normal((K, 1 + d))
        var = self.noise_variance[assignment] + np.abs(sd["variance"] * rng.standard_normal(K))
        return type(self)(weights, means, cov, expert, var), assignment

    def get_params(self):
        """The parameters as a dict of arrays (copies)."""
        return {
            "weights": self.weights.copy(),
            "means": self.means.copy(),
            "covariances": self.covariances.copy(),
            "expert_coef": self.expert_coef.copy(),
            "noise_variance": self.noise_variance.copy(),
        }

    def __repr__(self):
        return f"GaussianGatedMoE(n_experts={self.n_experts}, n_features={self.n_features})"


def neurips2023_model(x_distribution="uniform"):
    """The simulation model of Nguyen, Nguyen & Ho (NeurIPS 2023).

    Two experts, d = 1, ``X ~ Uniform[0, 1]``; gate ``beta_0* = (-8, 0)``,
    ``beta_1* = (25, 0)`` (expert 2 is the reference); experts ``b* = (15, -5)``,
    ``a* = (-20, 20)``; noise standard deviations ``(0.3, 0.4)``, i.e.
    variances ``(0.09, 0.16)``. The values are those of ``models.py`` of
    ``Trung-TinNGUYEN/CRPE-SGaME`` (whose ``experiment.py`` uses the fixed
    grid ``x_distribution="grid"`` instead of uniform draws).

    Parameters
    ----------
    x_distribution : {"uniform", "grid", "normal"}, default="uniform"

    Returns
    -------
    SoftmaxGatedMoE
    """
    return SoftmaxGatedMoE(
        [[-8.0, 25.0], [0.0, 0.0]],
        [[15.0, -20.0], [-5.0, 20.0]],
        [0.3**2, 0.4**2],
        x_distribution=x_distribution,
        x_range=(0.0, 1.0),
    )


#: The four true models of Nguyen, Nguyen, Nguyen & Ho (AISTATS 2024), keyed by
#: ``(n_features, setting)``: the ``model`` number 1-4 of ``models.py`` in
#: ``Trung-TinNGUYEN/CRPE-GMoE``.
AISTATS2024_MODELS = {(1, "I"): 1, (1, "II"): 2, (2, "I"): 3, (2, "II"): 4}


def aistats2024_model(n_features=1, setting="I"):
    """A simulation model of Nguyen, Nguyen, Nguyen & Ho (AISTATS 2024).

    Three components, ``pi* = (0.3, 0.4, 0.3)``, the GLLiM parameters of
    ``models.py`` in ``Trung-TinNGUYEN/CRPE-GMoE`` (derived there from the
    joint Gaussian mixture of Ho & Nguyen, 2016): gate means ``c* = (-0.1,
    0.1, 0.5)`` (Type I) or ``(0, 0.1, 0.5)`` (Type II: the first mean is
    zero), repeated on both coordinates when ``n_features=2``; gate
    covariances ``Gamma* = (0.042824, 0.0175, 0.01)`` (times the identity for
    d = 2); expert slopes ``A*_k = s_k / Gamma*_k`` with ``s = (0.017324,
    -0.0125, 0)`` (on every coordinate); intercepts ``b*_k = t_k - A*_k
    c*_k`` with ``t = (0.3, -0.4, 0.2)`` (the first coordinate of ``c*``;
    for the third component ``A* = 0`` and ``b* = 0.2``); noise variances
    ``nu* = (0.0081759 - A*_1 u 0.017324, 0.0175 + 0.0125^2 / 0.0175,
    0.0175)`` with ``u = -0.1`` (Type I) or ``u = 1`` (Type II), exactly as
    written in that file.

    Parameters
    ----------
    n_features : {1, 2}, default=1
    setting : {"I", "II"}, default="I"

    Returns
    -------
    GaussianGatedMoE
    """
    key = (int(n_features), str(setting))
    if key not in AISTATS2024_MODELS:
        raise ValueError(
            f"(n_features, setting) must be one of {sorted(AISTATS2024_MODELS)}; "
            f"got {(n_features, setting)!r}."
        )
    d, type_ii = key[0], key[1] == "II"
    gamma = np.array([0.042824, 0.0175, 0.01])
    slope = np.array([0.017324, -0.0125, 0.0]) / gamma
    c1 = np.array([0.0 if type_ii else -0.1, 0.1, 0.5])
    # models.py writes b* with the first coordinate of c* only (and 0 * ... for the third)
    intercept = np.array([0.3, -0.4, 0.2]) - slope * np.array([c1[0], c1[1], 0.0])
    u = 1.0 if type_ii else -0.1
    nu = np.array([0.0081759 - slope[0] * u * 0.017324, 0.0175 + 0.0125**2 / 0.0175, 0.0175])
    means = np.repeat(c1[:, None], d, axis=1)
    covariances = gamma[:, None, None] * np.eye(d)
    expert = np.column_stack([intercept, np.repeat(slope[:, None], d, axis=1)])
    return GaussianGatedMoE([0.3, 0.4, 0.3], means, covariances, expert, nu)
