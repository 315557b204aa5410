"""Voronoi losses between a fitted mixture of experts and the true one.

A mixture of experts is a set of *atoms*, one per expert: its gate parameters
and its expert parameters, with a *weight* (``exp(beta_0)`` for softmax gates,
the mixing proportion ``pi`` for Gaussian gates). The Voronoi cell ``A_j`` of a
true atom ``j`` is the set of fitted atoms closer to it than to any other true
atom, the distance being the sum of the per-parameter norms (as in the
reference implementations, ``discrepancies.py`` of
``Trung-TinNGUYEN/CRPE-SGaME`` and ``Trung-TinNGUYEN/CRPE-GMoE``). The losses
add the error of each cell's total weight and the weighted parameter errors of
its atoms, raised to powers that depend on the cell's size:

.. math::

    \\mathcal{D}(G, G_*) = \\sum_{j} \\Bigl|\\sum_{i \\in A_j} w_i - w^*_j\\Bigr|
    + \\sum_{j} \\sum_{i \\in A_j} w_i \\sum_{p} \\|\\theta^{p}_i - \\theta^{p*}_j\\|^{e_p(|A_j|)} .

``D1`` (exact-fitted) has every exponent 1. ``D2`` (over-fitted) keeps 1 for
cells of one atom and uses the exponents of the paper for larger cells, from a
table ``r_bar`` of cell size -> exponent.

Softmax gates are identifiable only up to a common shift of their rows, and
``exp(beta_0)`` depends on that shift, so the fitted gate is first put on the
truth's normalisation: shifted so that the cell of the true *reference* atom
has the reference's total weight and weighted-mean gate slope (with one atom in
that cell: the fitted atom takes exactly the reference's gate row). The papers
write this as an infimum over translations; fixing the same reference expert,
as here and in the reference code, bounds it from above and equals it at the
truth. The losses are then invariant to any common shift of the fitted gate
and to relabelling of the fitted atoms.
"""

from dataclasses import dataclass

import numpy as np

#: r-bar(M) of Nguyen, Nguyen & Ho (NeurIPS 2023), Lemma 1: the exponent of
#: the slowest parameters in a Voronoi cell of M fitted atoms (known for M <= 3).
R_BAR_SOFTMAX = {1: 1, 2: 4, 3: 6}
#: The tables used by ``Trung-TinNGUYEN/CRPE-GMoE`` for the Gaussian-gated
#: losses (r-bar for Type I, r-tilde for Type II cells).
R_BAR_GAUSSIAN = {1: 1, 2: 4, 3: 6}
R_TILDE_GAUSSIAN = {1: 1, 2: 4, 3: 6}

#: parameter blocks of each gate, in the order of the per-parameter errors
SOFTMAX_PARAMETERS = ("gate_slope", "intercept", "slope", "variance")
GAUSSIAN_PARAMETERS = ("gate_mean", "gate_covariance", "slope", "intercept", "variance")


@dataclass
class Atoms:
    """Atoms of a mixture of experts: weights and named parameter blocks.

    Attributes
    ----------
    weights : ndarray of shape (K,)
        ``exp(beta_0)`` (softmax, top-K) or ``pi`` (Gaussian gate).
    blocks : dict of str to ndarray of shape (K, m)
        Parameter blocks, one row per atom.
    """

    weights: np.ndarray
    blocks: dict


@dataclass
class CellErrors:
    """Per-atom errors within Voronoi cells (see :func:`cell_errors`).

    Attributes
    ----------
    cell : ndarray of shape (K,)
        The true atom whose cell holds each fitted atom.
    cell_size : ndarray of shape (K,)
        The size of that cell.
    weight : ndarray of shape (K,)
        Each fitted atom's weight (after the gate alignment for softmax gates).
    errors : dict of str to ndarray of shape (K,)
        Norm of each parameter block's error, per fitted atom.
    mass : ndarray of shape (K_true,)
        ``|sum_{i in A_j} w_i - w_j^*|`` per true atom.
    exponents : dict of str to ndarray of shape (K,) or None, default=None
        The exponent of each parameter block's error of each fitted atom in
        the over-fitted loss D2 (1 in cells of one atom; NaN in a cell larger
        than the exponent table); used by :func:`summarize_cell_errors` for
        the weighted columns. None: no weighted columns.
    """

    cell: np.ndarray
    cell_size: np.ndarray
    weight: np.ndarray
    errors: dict
    mass: np.ndarray
    exponents: dict = None


# -- parameter extraction ---------------------------------------------------------
def _get(obj, *names):
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if not isinstance(obj, dict) and hasattr(obj, name):
            return getattr(obj, name)
    raise ValueError(f"{type(obj).__name__} has none of {names}.")


def softmax_parameters(model):
    """``(gate_coef, expert_coef, noise_variance)`` of a softmax-type model.

    Parameters
    ----------
    model : SoftmaxGatedMoE, TopKSoftmaxMoE, fitted MixtureOfExpertsRegressor or dict
        A dict needs the keys ``gate_coef``, ``expert_coef``, ``noise_variance``.

    Returns
    -------
    gate_coef : ndarray of shape (K, 1 + d)
    expert_coef : ndarray of shape (K, 1 + d)
    noise_variance : ndarray of shape (K,)
    """
    gate = np.array(_get(model, "gate_coef", "gate_coef_"), dtype=float)
    expert = np.array(_get(model, "expert_coef", "expert_coef_"), dtype=float)
    var = np.array(_get(model, "noise_variance", "noise_variance_"), dtype=float).reshape(-1)
    if gate.ndim != 2 or gate.shape != expert.shape or var.shape != (gate.shape[0],):
        raise ValueError(
            f"inconsistent shapes: gate_coef {gate.shape}, expert_coef {expert.shape}, "
            f"noise_variance {var.shape}."
        )
    return gate, expert, var


def _softmax_atoms(gate, expert, var):
    with np.errstate(over="ignore"):  # a degenerate fit's weight overflows to inf: an infinite loss
        weights = np.exp(gate[:, 0])
    return Atoms(
        weights,
        {
            "gate_slope": gate[:, 1:],
            "intercept": expert[:, :1],
            "slope": expert[:, 1:],
            "variance": var[:, None],
        },
    )


def _gaussian_atoms(model):
    weights = np.array(_get(model, "weights"), dtype=float).reshape(-1)
    means = np.array(_get(model, "means"), dtype=float).reshape(weights.size, -1)
    d = means.shape[1]
    cov = np.array(_get(model, "covariances"), dtype=float).reshape(weights.size, d * d)
    expert = np.array(_get(model, "expert_coef"), dtype=float).reshape(weights.size, 1 + d)
    var = np.array(_get(model, "noise_variance"), dtype=float).reshape(weights.size, 1)
    return Atoms(
        weights,
        {
            "gate_mean": means,
            "gate_covariance": cov,
            "slope": expert[:, 1:],
            "intercept": expert[:, :1],
            "variance": var,
        },
    )


# -- cells ----------------------------------------------------------------------------
def _distances(fitted, true, names=None):
    """(K, K_true) sums of per-block Euclidean norms."""
    names = fitted.blocks.keys() if names is None else names
    return sum(
        np.linalg.norm(fitted.blocks[b][:, None, :] - true.blocks[b][None, :, :], axis=2) for b in names
    )


def voronoi_cells(fitted_atoms, true_atoms):
    """Voronoi cells of the true atoms: the nearest true atom of each fitted atom.

    Parameters
    ----------
    fitted_atoms : ndarray of shape (K, p)
        One row per fitted atom; the distance is the L1 norm of the row
        difference (with one parameter per column, the sum of per-parameter
        norms).
    true_atoms : ndarray of shape (K_true, p)

    Returns
    -------
    assignment : ndarray of shape (K,)
        Index of the true atom whose cell holds each fitted atom (ties go to
        the lower index).
    cells : list of ndarray
        ``cells[j]``: the fitted atoms in the cell of true atom ``j`` (possibly
        empty).
    """
    fitted_atoms = np.atleast_2d(np.asarray(fitted_atoms, dtype=float))
    true_atoms = np.atleast_2d(np.asarray(true_atoms, dtype=float))
    dist = np.abs(fitted_atoms[:, None, :] - true_atoms[None, :, :]).sum(axis=2)
    assignment = np.argmin(dist, axis=1)
    return assignment, [np.flatnonzero(assignment == j) for j in range(true_atoms.shape[0])]


def _assign(fitted, true):
    return np.argmin(_distances(fitted, true), axis=1)


def _reference_atom(true_gate, reference):
    if reference is not None:
        return int(reference)
    zero = np.flatnonzero(np.all(true_gate == 0, axis=1))
    return int(zero[-1]) if zero.size else true_gate.shape[0] - 1


def align_softmax_gate(fitted, true, reference=None, max_rounds=20):
    """Shift the fitted softmax gate onto the truth's normalisation.

    First the fitted atom nearest (in expert parameters) to the true reference
    atom takes the reference's gate row; then, until the cells stop changing,
    the gate is shifted so that the reference's cell has the reference's total
    weight ``exp(beta_0)`` and weighted-mean gate slope.

    Parameters
    ----------
    fitted, true : model or dict
        Anything :func:`softmax_parameters` accepts.
    reference : int, default=None
        The true reference atom; default the last true atom whose gate row is
        zero, else the last atom.
    max_rounds : int, default=20

    Returns
    -------
    gate_coef : ndarray of shape (K, 1 + d)
        The shifted fitted gate.
    assignment : ndarray of shape (K,)
        The Voronoi cell of each fitted atom after the shift.
    """
    gate, expert, var = softmax_parameters(fitted)
    t_gate, t_expert, t_var = softmax_parameters(true)
    ref = _reference_atom(t_gate, reference)
    true_atoms = _softmax_atoms(t_gate, t_expert, t_var)
    expert_only = ("intercept", "slope", "variance")
    first = np.argmin(_distances(_softmax_atoms(gate, expert, var), true_atoms, expert_only)[:, ref])
    gate = gate - gate[first] + t_gate[ref]
    assignment = _assign(_softmax_atoms(gate, expert, var), true_atoms)
    for _ in range(max_rounds):
        cell = np.flatnonzero(assignment == ref)
        if cell.size == 0:
            break
        b0 = gate[cell, 0]
        w = np.exp(b0 - b0.max())
        w /= w.sum()
        shift = np.empty(gate.shape[1])
        shift[0] = t_gate[ref, 0] - (b0.max() + np.log(np.exp(b0 - b0.max()).sum()))
        shift[1:] = t_gate[ref, 1:] - w @ gate[cell, 1:]
        gate = gate + shift
        new = _assign(_softmax_atoms(gate, expert, var), true_atoms)
        if np.array_equal(new, assignment):
            break
        assignment = new
    return gate, assignment


# -- the generic loss -------------------------------------------------------------------
def _check_table(table, name):
    table = dict(table)
    for size, value in table.items():
        if int(size) < 1 or not value > 0:
            raise ValueError(f"{name} must map cell sizes >= 1 to positive exponents; got {table!r}.")
    return {int(k): float(v) for k, v in table.items()}


def _lookup(table, size, name):
    if size not in table:
        raise ValueError(
            f"a Voronoi cell holds {size} fitted atoms but {name} has no entry for {size} "
            f"(known: {sorted(table)}); pass {name} with an exponent for cell size {size}."
        )
    return table[size]


def _loss(fitted, true, assignment, exponent):
    """Mass errors plus weighted parameter errors with ``exponent(block, size, j)``."""
    K0 = true.weights.shape[0]
    sizes = np.bincount(assignment, minlength=K0)
    with np.errstate(over="ignore", invalid="ignore"):  # an infinite weight gives an infinite loss
        total = float(
            np.abs(np.bincount(assignment, weights=fitted.weights, minlength=K0) - true.weights).sum()
        )
        for i, j in enumerate(assignment):
            for name, block in fitted.blocks.items():
                err = float(np.linalg.norm(block[i] - true.blocks[name][j]))
                total += fitted.weights[i] * err ** exponent(name, sizes[j], j)
    return total if not np.isnan(total) else float("inf")


def _errors(fitted, true, assignment, exponent):
    """CellErrors with the D2 exponents ``exponent(block, size, j)`` (NaN beyond the table)."""
    K0 = true.weights.shape[0]
    sizes = np.bincount(assignment, minlength=K0)
    errors = {
        name: np.linalg.norm(block - true.blocks[name][assignment], axis=1)
        for name, block in fitted.blocks.items()
    }

    def safe(name, size, j):
        try:
            return exponent(name, size, j)
        except ValueError:  # a cell larger than the exponent table: no weighted error
            return np.nan

    exponents = {
        name: np.array([safe(name, sizes[j], j) for j in assignment], dtype=float) for name in fitted.blocks
    }
    with np.errstate(invalid="ignore"):
        mass = np.abs(np.bincount(assignment, weights=fitted.weights, minlength=K0) - true.weights)
    return CellErrors(assignment, sizes[assignment], fitted.weights.copy(), errors, mass, exponents)


def _aligned_softmax(fitted, true, reference):
    gate, assignment = align_softmax_gate(fitted, true, reference)
    _, expert, var = softmax_parameters(fitted)
    return _softmax_atoms(gate, expert, var), _softmax_atoms(*softmax_parameters(true)), assignment


# -- softmax gating (NeurIPS 2023) -------------------------------------------------------
def softmax_d1(fitted, true, reference=None):
    """Exact-fitted Voronoi loss D1 of Nguyen, Nguyen & Ho (NeurIPS 2023).

    .. math::

        \\mathcal{D}_1 = \\sum_j \\Bigl|\\sum_{i \\in A_j} e^{\\beta_{0i}} - e^{\\beta^*_{0j}}\\Bigr|
        + \\sum_j \\sum_{i \\in A_j} e^{\\beta_{0i}} \\bigl(\\|\\Delta\\beta_{1ij}\\| + |\\Delta b_{ij}|
        + \\|\\Delta a_{ij}\\| + |\\Delta\\sigma_{ij}|\\bigr),

    ``sigma`` being the noise variance, after :func:`align_softmax_gate`. As
    ``loss_SGaME_exact`` of ``discrepancies.py`` in
    ``Trung-TinNGUYEN/CRPE-SGaME`` for equal numbers of atoms. The MLE
    converges at rate ``n^{-1/2}`` in D1 when the number of experts is known.

    Parameters
    ----------
    fitted, true : SoftmaxGatedMoE, fitted MixtureOfExpertsRegressor or dict
        Anything :func:`softmax_parameters` accepts.
    reference : int, default=None
        The true reference atom (see :func:`align_softmax_gate`).

    Returns
    -------
    float
    """
    fit, tru, assignment = _aligned_softmax(fitted, true, reference)
    return _loss(fit, tru, assignment, lambda name, size, j: 1.0)


def softmax_d2(fitted, true, r_bar=None, reference=None):
    """Over-fitted Voronoi loss D2 of Nguyen, Nguyen & Ho (NeurIPS 2023).

    Cells of one atom contribute as in :func:`softmax_d1`; an atom in a cell of
    ``M > 1`` atoms contributes ``exp(beta_0i) (|Delta beta_1|^r + |Delta b|^r +
    |Delta a|^{r/2} + |Delta sigma|^{r/2})`` with ``r = r_bar[M]``; plus the
    cells' weight errors. So the rate ``n^{-1/2}`` in D2 means ``n^{-1/(2r)}``
    for ``beta_1`` and ``b`` and ``n^{-1/r}`` for ``a`` and ``sigma`` in such a
    cell: ``n^{-1/8}`` and ``n^{-1/4}`` for two atoms. As the over-fitted branch
    of ``loss_SGaME_exact`` in ``Trung-TinNGUYEN/CRPE-SGaME``.

    Parameters
    ----------
    fitted, true : model or dict
        Anything :func:`softmax_parameters` accepts.
    r_bar : dict of int to float, default=None
        Cell size -> exponent; default :data:`R_BAR_SOFTMAX` ``{1: 1, 2: 4,
        3: 6}`` (the value for size 1 is not used). A cell larger than the
        table raises ValueError.
    reference : int, default=None

    Returns
    -------
    float
    """
    exponent = _softmax_exponent(r_bar)
    fit, tru, assignment = _aligned_softmax(fitted, true, reference)
    return _loss(fit, tru, assignment, exponent)


def _softmax_exponent(r_bar):
    """``exponent(block, size, j)`` of D2 for softmax and top-K gates."""
    table = _check_table(R_BAR_SOFTMAX if r_bar is None else r_bar, "r_bar")

    def exponent(name, size, j):
        if size == 1:
            return 1.0
        r = _lookup(table, size, "r_bar")
        return r if name in ("gate_slope", "intercept") else r / 2

    return exponent


def softmax_cell_errors(fitted, true, reference=None, r_bar=None):
    """Per-atom parameter errors within the Voronoi cells (softmax gate).

    Parameters
    ----------
    fitted, true : model or dict
        Anything :func:`softmax_parameters` accepts.
    reference : int, default=None
    r_bar : dict of int to float, default=None
        The exponent table of :func:`softmax_d2` (default
        :data:`R_BAR_SOFTMAX`), for ``exponents``.

    Returns
    -------
    CellErrors
        ``errors`` has the keys ``gate_slope`` (``beta_1``), ``intercept``
        (``b``), ``slope`` (``a``) and ``variance`` (``sigma``); ``weight`` is
        ``exp(beta_0)`` after alignment; ``exponents`` are those of
        :func:`softmax_d2`: ``r_bar[M]`` for ``beta_1`` and ``b``,
        ``r_bar[M] / 2`` for ``a`` and ``sigma`` in a cell of ``M > 1`` atoms.
    """
    exponent = _softmax_exponent(r_bar)
    fit, tru, assignment = _aligned_softmax(fitted, true, reference)
    return _errors(fit, tru, assignment, exponent)


# -- top-K sparse softmax gating (ICLR 2024) -----------------------------------------------
def topk_d1(fitted, true, reference=None):
    """Exact-specified Voronoi loss of top-K sparse softmax gating (ICLR 2024).

    Nguyen, Akbarian, Yan & Ho (2024) measure the top-K sparse softmax MoE
    with the same Voronoi loss as the dense softmax gate: the top-K selection
    changes which parameters are estimable and how fast, not the loss's form.
    Hence this is :func:`softmax_d1` on the atoms (the ``top_k`` of the models
    does not enter).

    Parameters
    ----------
    fitted, true : TopKSoftmaxMoE or dict
    reference : int, default=None

    Returns
    -------
    float
    """
    return softmax_d1(fitted, true, reference)


def topk_d2(fitted, true, r_bar=None, reference=None):
    """Over-specified Voronoi loss of top-K sparse softmax gating (ICLR 2024).

    The over-specified loss has the form of :func:`softmax_d2`, cells of ``M >
    1`` atoms raising the gate-slope and intercept errors to ``r_bar[M]`` and
    the slope and variance errors to ``r_bar[M] / 2``.

    Parameters
    ----------
    fitted, true : TopKSoftmaxMoE or dict
    r_bar : dict of int to float, default=None
        Default :data:`R_BAR_SOFTMAX`.
    reference : int, default=None

    Returns
    -------
    float
    """
    return softmax_d2(fitted, true, r_bar, reference)


# -- Gaussian gating (AISTATS 2024) ------------------------------------------------------
def gaussian_gating_d1(fitted, true):
    """Exact-fitted Voronoi loss of the Gaussian-gated MoE (AISTATS 2024).

    Weights are the mixing proportions ``pi``; the atoms' parameters are the
    gate mean ``mu`` and covariance ``Sigma`` (Frobenius norm) and the expert
    ``a``, ``b``, ``nu``; every exponent is 1. There is no translation to fix.

    Parameters
    ----------
    fitted, true : GaussianGatedMoE or dict
        A dict needs ``weights``, ``means``, ``covariances``, ``expert_coef``,
        ``noise_variance``.

    Returns
    -------
    float
    """
    fit, tru = _gaussian_atoms(fitted), _gaussian_atoms(true)
    return _loss(fit, tru, _assign(fit, tru), lambda name, size, j: 1.0)


def gaussian_gating_d2(fitted, true, setting="auto", r_bar=None, r_tilde=None):
    """Over-fitted Voronoi losses of the Gaussian-gated MoE (AISTATS 2024), Type I/II.

    Nguyen, Nguyen, Nguyen & Ho (2024) split the parameter space by the gate
    locations: **Type I**, every true ``mu_j`` non-zero; **Type II**, some
    ``mu_j = 0``. For a cell of ``M > 1`` atoms with ``r = r_bar[M]`` (Type I)
    or ``r = r_tilde[M]`` (Type II) the exponents are ``r`` for ``mu`` and
    ``b``, ``r / 2`` for ``Sigma`` and ``nu``, and for ``a``: 2, except in a
    Type II cell whose true ``mu_j = 0``, where it is ``r / 2``. Cells of one
    atom have exponent 1. As ``gauss_loss_GLLiM1``/``gauss_loss_GLLiM2`` of
    ``discrepancies.py`` in ``Trung-TinNGUYEN/CRPE-GMoE`` (whose tables are
    the defaults).

    Parameters
    ----------
    fitted, true : GaussianGatedMoE or dict
    setting : {"auto", "I", "II"}, default="auto"
        ``"auto"``: Type II if some true ``mu_j`` is exactly zero.
    r_bar, r_tilde : dict of int to float, default=None
        Defaults :data:`R_BAR_GAUSSIAN`, :data:`R_TILDE_GAUSSIAN`.

    Returns
    -------
    float
    """
    fit, tru = _gaussian_atoms(fitted), _gaussian_atoms(true)
    return _loss(fit, tru, _assign(fit, tru), _gaussian_exponent(tru, setting, r_bar, r_tilde))


def _gaussian_exponent(tru, setting, r_bar, r_tilde):
    """``exponent(block, size, j)`` of the Gaussian-gated D2 (Type I or II)."""
    zero_mean = np.all(tru.blocks["gate_mean"] == 0, axis=1)
    if setting == "auto":
        setting = "II" if zero_mean.any() else "I"
    if setting not in ("I", "II"):
        raise ValueError(f"setting must be 'auto', 'I' or 'II'; got {setting!r}.")
    name_table = "r_bar" if setting == "I" else "r_tilde"
    default = R_BAR_GAUSSIAN if setting == "I" else R_TILDE_GAUSSIAN
    table = _check_table(
        default if (r_bar if setting == "I" else r_tilde) is None else (r_bar if setting == "I" else r_tilde),
        name_table,
    )

    def exponent(name, size, j):
        if size == 1:
            return 1.0
        r = _lookup(table, size, name_table)
        if name in ("gate_mean", "intercept"):
            return r
        if name == "slope":
            return r / 2 if (setting == "II" and zero_mean[j]) else 2.0
        return r / 2

    return exponent


def gaussian_cell_errors(fitted, true, setting="auto", r_bar=None, r_tilde=None):
    """Per-atom parameter errors within the Voronoi cells (Gaussian gate).

    Parameters
    ----------
    fitted, true : GaussianGatedMoE or dict
    setting : {"auto", "I", "II"}, default="auto"
    r_bar, r_tilde : dict of int to float, default=None
        As in :func:`gaussian_gating_d2`, for ``exponents``.

    Returns
    -------
    CellErrors
        ``errors`` has the keys ``gate_mean``, ``gate_covariance``, ``slope``,
        ``intercept``, ``variance``; ``weight`` is ``pi``; ``exponents`` are
        those of :func:`gaussian_gating_d2`.
    """
    fit, tru = _gaussian_atoms(fitted), _gaussian_atoms(true)
    exponent = _gaussian_exponent(tru, setting, r_bar, r_tilde)
    return _errors(fit, tru, _assign(fit, tru), exponent)


def summarize_cell_errors(errors, max_cell_size):
    """Per-parameter errors by cell size: the columns of a rate experiment.

    Parameters
    ----------
    errors : CellErrors
    max_cell_size : int
        Columns are made for cell sizes 1 .. ``max_cell_size``.

    Returns
    -------
    dict of str to float
        ``mass``: the largest cell weight error; ``{parameter}_size{m}``: the
        largest error of that parameter over the atoms in cells of ``m`` atoms
        (NaN when there is no such cell); ``{parameter}_size{m}_w`` for ``m >=
        2`` (when ``errors.exponents`` is given): the weighted error defined
        below, the largest over the cells of ``m`` atoms (NaN when there is no
        such cell, or when a weight is not finite or the cell is beyond the
        exponent table); ``d2_mass``, ``d2_single``, ``d2_over`` (when
        ``errors.exponents`` is given): the three parts of the over-fitted
        loss D2 whose exponents these are, summed below; ``max_cell_size``:
        the largest cell.

    Notes
    -----
    The largest error in a cell is not what the theory bounds: an atom whose
    weight fades has an unidentified parameter that can stay far off. The
    over-fitted loss D2 holds an atom ``i`` of the cell ``A_j`` as ``w_i
    |Delta_i|^r``, ``r`` the exponent of that parameter for that cell size
    (``errors.exponents``, e.g. 4 for ``beta_1`` and ``b`` and 2 for ``a``
    and ``sigma`` in a softmax cell of two atoms). The weighted column is the
    weighted power mean over the cell, with the weights normalised within it:

    .. math::

        e^{w}_j = \\Bigl(\\sum_{i \\in A_j} \\frac{w_i}{W_j} |\\Delta_i|^{r}\\Bigr)^{1/r},
        \\qquad W_j = \\sum_{i \\in A_j} w_i ,

    and ``{parameter}_size{m}_w`` is the largest ``e^w_j`` over the cells of
    ``m`` atoms. Since ``W_j (e^w_j)^r <= D2`` and ``W_j`` tends to the true
    weight ``w_j^* > 0``, a rate ``n^{-1/2}`` of D2 gives ``e^w_j =
    O(n^{-1/(2r)})``: the per-parameter rate of the theory (``n^{-1/8}`` for
    ``beta_1`` and ``b``, ``n^{-1/4}`` for ``a`` and ``sigma`` in softmax
    cells of two atoms). It lies between the smallest and the largest error
    of the cell, equals the common error when all are equal, and does not
    depend on the order of the atoms. Cells of one atom have ``r = 1`` and
    ``e^w_j`` is that atom's error, so no column is made for ``m = 1``.

    The parts of D2 say which term a loss's rate comes from:

    .. math::

        D_2 = \\underbrace{\\sum_j |W_j - w_j^*|}_{\\texttt{d2\\_mass}}
        + \\underbrace{\\sum_{i: |A_{j(i)}| = 1} w_i \\sum_p |\\Delta_{ip}|}_{\\texttt{d2\\_single}}
        + \\underbrace{\\sum_{i: |A_{j(i)}| > 1} w_i \\sum_p |\\Delta_{ip}|^{r_p}}_{\\texttt{d2\\_over}} ,

    ``p`` running over the parameters. The first two are parametric (they
    fall as ``n^{-1/2}`` at the MLE); the theory bounds the third by
    ``n^{-1/2}`` too, but it can fall faster, so a loss whose over-fitted
    part still dominates falls faster than ``n^{-1/2}``. ``d2_over`` is 0
    without a cell of two atoms or more, NaN when a cell is beyond the
    exponent table, and not finite when a weight is not.
    """
    row = {"mass": float(errors.mass.max()), "max_cell_size": int(errors.cell_size.max())}
    for name, values in errors.errors.items():
        for m in range(1, max_cell_size + 1):
            sel = errors.cell_size == m
            row[f"{name}_size{m}"] = float(values[sel].max()) if sel.any() else float("nan")
    if errors.exponents is None:
        return row
    row.update(_d2_parts(errors))
    for name in errors.errors:
        for m in range(2, max_cell_size + 1):
            cells = np.unique(errors.cell[errors.cell_size == m])
            row[f"{name}_size{m}_w"] = (
                float(np.max([_weighted_error(errors, name, j) for j in cells])) if cells.size else np.nan
            )
    return row


def _d2_parts(errors):
    """``{"d2_mass", "d2_single", "d2_over"}``: the parts of D2 (see :func:`summarize_cell_errors`)."""
    with np.errstate(over="ignore", invalid="ignore"):
        terms = errors.weight * sum(
            errors.errors[name] ** errors.exponents[name] for name in errors.errors
        )
        single = errors.cell_size == 1
        return {
            "d2_mass": float(errors.mass.sum()),
            "d2_single": float(terms[single].sum()),
            "d2_over": float(terms[~single].sum()),
        }


def _weighted_error(errors, name, j):
    """``(sum_{i in A_j} w_i / W_j |Delta_i|^r)^(1/r)`` (NaN for non-finite weights or exponent)."""
    atoms = np.flatnonzero(errors.cell == j)
    w = errors.weight[atoms]
    r = errors.exponents[name][atoms]
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(r)) and w.sum() > 0):
        return float("nan")
    r = float(r[0])  # one exponent per parameter and cell
    return float(((w / w.sum()) @ errors.errors[name][atoms] ** r) ** (1 / r))
