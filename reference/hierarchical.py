r"""Blocked Gibbs sampler for Gaussian hierarchical regression: collapsed and ASIS scale updates.

Model
-----
For rows :math:`i = 1, \dots, n` and independent group terms :math:`t = 1, \dots, T` (Bambi's
``(1|g)`` and ``(x|g)``, no correlation between terms, no LKJ),

.. math::

    y_i = x_i^\top\beta + \sum_t z_{t,i}\, b_{t, g_t[i]} + \varepsilon_i, \qquad
    \varepsilon_i \sim N(0, \sigma^2 / w_i),

    \beta \sim N(m, V), \qquad b_{t,j} \sim N(0, \tau_t^2)\ (j = 1, \dots, J_t), \qquad
    \tau_t \sim p(\tau_t), \qquad \sigma \sim p(\sigma).

``w`` are known relative precisions (all ones by default). With :math:`\sigma` known
(``sigma_prior=None`` means :math:`\sigma = 1`) the weights carry known per-row standard
deviations :math:`s_i = w_i^{-1/2}`, as in the eight-schools model. Parameter names follow Bambi
0.21: scalar coefficients (``Intercept``, ``x``), the group effects ``1|g`` (dim
``g__factor_dim``, coords the level labels), their scales ``1|g_sigma`` (:math:`\tau`), and
``sigma``.

One sweep
---------
Write :math:`\theta = (\beta, b_1, \dots, b_T)` (length :math:`D = p + \sum_t J_t`) and
:math:`W = [X, Z_1, \dots, Z_T]`. A sweep updates, for all chains at once:

1. :math:`\theta \mid \tau, \sigma, y` jointly, a Gaussian in :math:`D` dimensions
   (:func:`draw_theta`). It needs only :math:`W^\top\Omega W` and :math:`W^\top\Omega y`
   (:func:`reference.design.sufficient_stats`), so no length-n array is touched in the sweep;
   the block of the largest group term is diagonal and is eliminated first, so only a small
   Schur complement is factored.
2. For every term, the scale :math:`\tau_t` (see *Mixing when tau is small*).
3. :math:`\sigma \mid \theta, y` (:func:`draw_scale` with the weighted residual sum of
   squares), unless :math:`\sigma` is known.

Scale updates
-------------
The centred :math:`\tau_t \mid b_t` and :math:`\sigma \mid \theta` both have the form
:math:`p(s \mid \cdot) \propto s^{-m} \exp(-S / 2s^2)\, p(s)`, with
:math:`(m, S) = (J_t, \lVert b_t\rVert^2)` or :math:`(n, \text{weighted RSS})`
(:func:`draw_scale`):

* ``InverseGamma(a, b, on="sigma2")``: conjugate, :math:`s^2 \sim IG(a + m/2, b + S/2)`.
* ``HalfCauchy(A)``: the scale mixture of Wand et al. (2011),
  :math:`s^2 \mid a \sim IG(1/2, 1/a)`, :math:`a \sim IG(1/2, 1/A^2)`, which makes both
  :math:`s^2 \mid a, \cdot` and :math:`a \mid s^2` inverse-gamma; the auxiliary :math:`a` is part
  of the state.
* Every other prior on a positive scale (``HalfNormal``, ``Exponential``, ``HalfStudentT``,
  ``InverseGamma`` on the sd, ``TruncatedNormal``, ``Uniform``, ``Flat``): a univariate slice
  sampler (Neal 2003) on the probability scale of the inverse-gamma part, with a stepping-out
  slice on :math:`\log s` as fallback (:func:`draw_scale_slice`).

Mixing when tau is small
------------------------
The centred Gibbs sampler, which alternates :math:`b \mid \tau` and :math:`\tau \mid b`, is slow
when the data say little about each group (small :math:`\tau` relative to the noise): :math:`b`
is then shrunk to about :math:`\pm\tau`, so :math:`\tau \mid b` can barely move, and the chain
creeps. The non-centred sampler (:math:`b = \tau\eta`, :math:`\eta \sim N(0, I)`) has the
opposite weakness: it is slow when the groups are well identified. Two remedies are built in
(``strategy``):

``"collapsed"`` (default): draw the block :math:`(\tau_t, b_t)` from its conditional given
    :math:`\beta`, the other terms and :math:`\sigma`: first :math:`\tau_t` with :math:`b_t`
    *integrated out*, then :math:`b_t \mid \tau_t` (:func:`draw_tau_collapsed`; partially
    collapsed Gibbs, Liu 1994, van Dyk and Park 2008). :math:`\tau_t` is then no longer tied to
    the current :math:`b_t` at all, which removes the centred sampler's problem at its root.
    The marginal likelihood of :math:`\tau_t` is cheap because :math:`Z_t^\top\Omega Z_t` is
    diagonal (every row belongs to one level): :math:`O(J_t)` per evaluation. It is
    slice-sampled on :math:`\log\tau_t`.

``"asis"``: the ancillarity-sufficiency interweaving strategy of Yu and Meng (2011): draw
    :math:`\tau_t` once given the sufficient augmentation :math:`b_t` (centred,
    :func:`draw_scale`) and once given the ancillary augmentation :math:`\eta_t = b_t/\tau_t`
    (non-centred, :func:`interweave`), then map back :math:`b_t = \tau_t\eta_t`. Applied to each
    :math:`\tau_t` in turn (their component-wise interweaving). Each half is a draw from a full
    conditional of the *same* joint posterior in a different parametrization, so the
    combination keeps the posterior invariant; Yu and Meng bound its rate of convergence by the
    geometric mean of the two halves' rates times the maximal correlation between the two
    augmentations, so it is typically better than either half. In the
    non-centred half, with :math:`r = y - X\beta - \sum_{s \ne t} Z_s b_s` and
    :math:`c = Z_t\eta_t`, the likelihood is Gaussian in :math:`\tau_t`:

    .. math::

        p(\tau_t \mid \eta_t, \cdot) \propto
        \exp\left(-\frac{A\tau_t^2 - 2B\tau_t}{2\sigma^2}\right) p(\tau_t), \qquad
        A = \eta_t^\top Z_t^\top\Omega Z_t\,\eta_t, \qquad B = c^\top\Omega r,

    both from the sufficient statistics: a normal truncated to :math:`\tau_t > 0` under
    ``HalfNormal`` (drawn exactly), slice-sampled on :math:`\log\tau_t` otherwise.

``"centred"`` and ``"noncentred"`` run one half of ASIS alone, for comparisons of mixing.

On radon (``benchmarks/bench_hierarchical.py``) the collapsed update gives about three times
the effective sample size of ASIS for :math:`\tau`, at a somewhat higher cost per sweep; both
are far ahead of the centred sampler when :math:`\tau` is small (``tests/test_hierarchical.py``).

Slice sampling needs a width; each chain tunes its own during warmup (2.5 times the sd of its
log scales), then keeps it fixed, so the kept draws come from one fixed Markov kernel.

Where the time goes, and the fast path
--------------------------------------
On radon (4 chains, 1000 + 1000: about 1.2 ms per sweep, 2.4 s per fit) the time is spent in
Python around small arrays: the slice updates of :math:`\tau` and :math:`\sigma` (the
stepping-out and shrinkage loops and their log densities, about 70% of a sweep) and
:func:`draw_theta` (about 20%).
``hierarchical_gibbs(..., fast=True)`` runs the same collapsed sweep transcribed with numba
(:mod:`reference._fast_hierarchical`), each chain in one compiled call on its own generator with
the same variates in the same order, so that the draws agree with this module's to about 1e-15
and the slice samplers spend the same evaluations (``tests/test_fast_paths.py``). This module
stays the documented reference; the other strategies, and priors without a closed form in
:func:`conditional_log_prior`, run here.

References
----------
Liu, J. S. (1994). The collapsed Gibbs sampler in Bayesian computations with applications to a
gene regulation problem. *J. Amer. Statist. Assoc.* 89(427), 958-966.

Neal, R. M. (2003). Slice sampling. *Annals of Statistics* 31(3), 705-767.

Wand, M. P., Ormerod, J. T., Padoan, S. A. and Fruhwirth, R. (2011). Mean field variational
Bayes for elaborate distributions. *Bayesian Analysis* 6(4), 847-900 (the half-Cauchy as an
inverse-gamma scale mixture).

van Dyk, D. A. and Park, T. (2008). Partially collapsed Gibbs samplers: theory and methods.
*J. Amer. Statist. Assoc.* 103(482), 790-796.

Yu, Y. and Meng, X.-L. (2011). To center or not to center: that is not the question. An
ancillarity-sufficiency interweaving strategy (ASIS) for boosting MCMC efficiency.
*J. Comput. Graph. Statist.* 20(3), 531-570.

Examples
--------
Varying intercepts, ``y ~ x + (1|g)``:

>>> from reference import datasets, priors
>>> d = datasets.hierarchical_synthetic()
>>> X = np.column_stack([np.ones_like(d["x"]), d["x"]])
>>> term = group_term("1|g", None, d["g"])
>>> dt = hierarchical_gibbs(X, d["y"], [term], names=["Intercept", "x"], beta_mean=0.0,
...                         beta_cov=100.0, tau_priors={"1|g": priors.HalfNormal(1.0)},
...                         sigma_prior=priors.HalfNormal(1.0), draws=200, tune=100, chains=2)
>>> sorted(dt.posterior.data_vars)
['1|g', '1|g_sigma', 'Intercept', 'sigma', 'x']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import linalg, special

from reference import priors
from reference._validation import as_design, integer, spd_matrix, vector
from reference.design import GroupTerm, SufficientStats, sufficient_stats
from reference.sampling import ChainRNG, Kernel, Run, sample, to_datatree

__all__ = [
    "STRATEGIES",
    "SliceWidths",
    "HierarchicalInfo",
    "HierarchicalState",
    "Shrinkage",
    "conditional_log_prior",
    "draw_half_cauchy_aux",
    "draw_scale",
    "draw_scale_slice",
    "draw_tau_collapsed",
    "draw_tau_noncentred",
    "draw_theta",
    "draw_variance_half_cauchy",
    "draw_variance_inverse_gamma",
    "group_term",
    "hierarchical_gibbs",
    "hierarchical_kernel",
    "interweave",
    "residual_ss",
    "shrinkage",
    "slice_log_scale",
]

#: how each group scale is updated (see the module docstring)
STRATEGIES = ("collapsed", "asis", "centred", "noncentred")

#: stepping-out limit of the slice sampler (Neal 2003, the "m" of figure 3)
SLICE_MAX_STEPS = 50
#: initial slice width on the log scale
SLICE_WIDTH = 1.0


class HierarchicalState(NamedTuple):
    """State of all chains: every array has a leading chain axis C.

    ``theta`` (C, D) stacks the coefficients and the group effects; ``tau`` (C, T) and
    ``tau_aux`` (C, T) are the group scales and their half-Cauchy auxiliaries (1 where unused);
    ``sigma`` (C,) and ``sigma_aux`` (C,) likewise for the noise.
    """

    theta: np.ndarray
    tau: np.ndarray
    tau_aux: np.ndarray
    sigma: np.ndarray
    sigma_aux: np.ndarray


class HierarchicalInfo(NamedTuple):
    """Per-sweep diagnostics: log-density evaluations spent by slice steps, per chain."""

    slice_evals: np.ndarray


class SliceWidths(NamedTuple):
    """Slice widths on the log scale, (C, T + 1): one per chain for every group scale and for
    sigma (last column), with the running moments of the log scales that tune them."""

    width: np.ndarray
    count: int
    mean: np.ndarray
    m2: np.ndarray


def _adapt_widths(params: SliceWidths, state: HierarchicalState, i: int, tune: int
                  ) -> SliceWidths:
    """Warmup tuning of the slice widths: 2.5 times the sd of each log scale over the chain's
    own warmup draws after the first fifth (Welford's running mean and sum of squares), about
    the typical width of a slice of a Gaussian. Each chain tunes from its own draws only, so a
    chain does not depend on how many others run."""
    if i < tune // 5:
        return params
    x = np.log(np.column_stack([state.tau, state.sigma]))       # (C, T + 1)
    n = params.count + 1
    delta = x - params.mean
    mean = params.mean + delta / n
    m2 = params.m2 + delta * (x - mean)
    width = params.width
    if n >= 20:
        width = np.clip(2.5 * np.sqrt(m2 / (n - 1)), 1e-3, 10.0)
    return SliceWidths(width, n, mean, m2)


# --------------------------------------------------------------------------------------------
# Building group terms from data
# --------------------------------------------------------------------------------------------
def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating):
        return bool(np.isnan(v))
    return type(v).__name__ in ("NAType", "NaTType")  # pandas' missing markers


def group_term(name: str, column_values, group_values, *, levels: Sequence | None = None
               ) -> GroupTerm:
    """Build a :class:`~reference.design.GroupTerm` from a predictor and a grouping column.

    Parameters
    ----------
    name : str
        Bambi's term name, ``"1|g"`` for varying intercepts or ``"x|g"`` for varying slopes.
    column_values : array_like (n,) or None
        The predictor multiplied by the group effect; ``None`` means ones (only for ``"1|g"``).
    group_values : array_like (n,)
        Group label of every row (strings, integers, a pandas column). Labels are compared as
        strings; missing values (NaN, None, pandas NA) are an error.
    levels : sequence, optional
        All group labels, in order. Default: the sorted distinct labels seen (Bambi's order). Give
        it to include a level with no rows; its effect is then drawn from the prior.

    Returns
    -------
    GroupTerm
    """
    if not isinstance(name, str) or name.count("|") != 1 or not all(name.split("|")):
        raise ValueError(f"a group term name looks like '1|g' or 'x|g'; received {name!r}.")
    raw = list(np.asarray(group_values, dtype=object).ravel())
    missing = [i for i, v in enumerate(raw) if _is_missing(v)]
    if missing:
        raise ValueError(f"grouping column of {name!r} has {len(missing)} missing value(s) "
                         f"(NaN/None), the first at row {missing[0]}; drop or fill them first.")
    labels = [str(v) for v in raw]
    if levels is None:
        level_list = sorted(set(labels))
    else:
        level_list = [str(v) for v in levels]
        if len(set(level_list)) != len(level_list):
            raise ValueError(f"levels of {name!r} must be distinct; received {level_list}.")
        unknown = sorted(set(labels) - set(level_list))
        if unknown:
            raise ValueError(f"grouping column of {name!r} holds label(s) {unknown[:5]} that are "
                             f"not in the given levels {level_list[:10]}.")
    index = {lab: j for j, lab in enumerate(level_list)}
    codes = np.array([index[lab] for lab in labels], dtype=np.int64)
    if column_values is None:
        if name.split("|")[0] != "1":
            raise ValueError(f"column_values is needed for the varying slope {name!r} "
                             "(None means ones, which only fits '1|g').")
        column = np.ones(len(codes))
    else:
        column = np.asarray(column_values, dtype=float).ravel()
        if column.shape != codes.shape:
            raise ValueError(f"{name!r}: column_values has {column.size} values but the grouping "
                             f"column has {codes.size}; they must match.")
        if not np.all(np.isfinite(column)):
            raise ValueError(f"{name!r}: column_values contains NaN or inf; every value must be "
                             "finite.")
    return GroupTerm(name, column, codes, tuple(level_list))


# --------------------------------------------------------------------------------------------
# Full conditionals
# --------------------------------------------------------------------------------------------
def _solve_lower(L: np.ndarray, b: np.ndarray, transpose: bool) -> np.ndarray:
    """Solve ``L x = b`` (or ``L' x = b``) for a stack of lower-triangular ``L`` (C, K, K) and
    right-hand sides ``b`` (C, K), all chains in one batched call."""
    A = np.swapaxes(L, -1, -2) if transpose else L
    return np.linalg.solve(A, b[..., None])[..., 0]


def draw_theta(rng: ChainRNG, stats: SufficientStats, beta_precision: np.ndarray,
               beta_shift: np.ndarray, tau: np.ndarray, sigma: np.ndarray,
               plan: ThetaPlan | None = None) -> np.ndarray:
    r"""Draw :math:`\theta = (\beta, b_1, \dots, b_T)` from its Gaussian full conditional.

    .. math::

        \theta \mid \tau, \sigma, y \sim N(Q^{-1} r,\; Q^{-1}), \qquad
        Q = \frac{W^\top\Omega W}{\sigma^2} + \mathrm{blockdiag}\left(V^{-1},
        \tau_1^{-2} I_{J_1}, \dots, \tau_T^{-2} I_{J_T}\right), \qquad
        r = \frac{W^\top\Omega y}{\sigma^2} + \begin{pmatrix} V^{-1} m \\ 0 \end{pmatrix}.

    **Block elimination.** Every row belongs to one level of a term, so
    :math:`Z_t^\top\Omega Z_t` is diagonal and so is the block :math:`Q_{ee}` of the term with the
    most levels, :math:`Q_{ee} = \mathrm{diag}(d)`. Splitting :math:`\theta` into that block
    (e) and the rest (k), the joint Gaussian factors as

    .. math::

        \theta_k \sim N(S^{-1}\tilde r,\; S^{-1}), \quad
        S = Q_{kk} - Q_{ke}\,\mathrm{diag}(d)^{-1} Q_{ek}, \quad
        \tilde r = r_k - Q_{ke}\,\mathrm{diag}(d)^{-1} r_e,

        \theta_e \mid \theta_k \sim N\left(\mathrm{diag}(d)^{-1}(r_e - Q_{ek}\theta_k),\;
        \mathrm{diag}(d)^{-1}\right),

    (the marginal precision of :math:`\theta_k` is the Schur complement S), so only the small
    dense :math:`S` (size :math:`p` for one group term) is factored, never the
    :math:`(p + J) \times (p + J)` matrix. With the Cholesky factor :math:`S = LL^\top` and
    :math:`z \sim N(0, I)`, :math:`\theta_k = L^{-\top}(L^{-1}\tilde r + z)` has mean
    :math:`S^{-1}\tilde r` and covariance :math:`(LL^\top)^{-1} = S^{-1}`. Nothing is inverted.

    Parameters
    ----------
    rng : ChainRNG
    stats : SufficientStats
        :math:`W^\top\Omega W`, :math:`W^\top\Omega y` and the block slices.
    beta_precision, beta_shift : ndarray (p, p), (p,)
        :math:`V^{-1}` and :math:`V^{-1} m` (zeros for a flat prior).
    tau : ndarray (C, T)
        Group scales.
    sigma : ndarray (C,)
        Noise sd.
    plan : ThetaPlan, optional
        The split and blocks of the statistics, from :func:`theta_plan` (built if not given;
        the kernel builds it once).

    Returns
    -------
    ndarray (C, D)
    """
    plan = theta_plan(stats) if plan is None else plan
    p = stats.p
    inv_s2 = (1.0 / np.square(sigma))[:, None]                       # (C, 1)
    # step 1: the Schur complement S and the reduced linear term r~, (C, K, K) and (C, K)
    S = plan.WtW_kk[None] * inv_s2[:, :, None]
    S[:, :p, :p] += beta_precision
    if plan.kept_groups.size:   # prior precision 1 / tau^2 of group effects kept in k
        S[:, plan.kept_groups, plan.kept_groups] += 1.0 / np.square(tau[:, plan.kept_terms])
    r_k = plan.Wty_k * inv_s2
    r_k[:, :p] += beta_shift
    if plan.eliminated is not None:
        d = plan.lam_e * inv_s2 + 1.0 / np.square(tau[:, [plan.eliminated]])    # (C, J)
        r_e = plan.Wty_e * inv_s2                                               # (C, J)
        S -= np.square(inv_s2)[:, :, None] * ((plan.WtW_ke[None] / d[:, None, :])
                                              @ plan.WtW_ke.T)
        r_k -= inv_s2 * ((r_e / d) @ plan.WtW_ke.T)
    # step 2: theta_k = L^-T (L^-1 r~ + z)
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise ValueError("the conditional precision of (beta, b) is not positive definite; with "
                         "a flat prior on beta, X must have full column rank.") from None
    z = rng.normal(stats.WtW.shape[0])
    theta = np.empty_like(z)
    theta[:, plan.k] = _solve_lower(L, _solve_lower(L, r_k, False) + z[:, plan.k], True)
    # step 3: theta_e | theta_k, independent coordinates
    if plan.eliminated is not None:
        e = plan.e
        mean_e = (r_e - inv_s2 * (theta[:, plan.k] @ plan.WtW_ke)) / d
        theta[:, e] = mean_e + z[:, e] / np.sqrt(d)
    return theta


@dataclass(frozen=True)
class ThetaPlan:
    """What :func:`draw_theta` precomputes once per data set: the split of theta into the
    eliminated block ``e`` (the group term with most levels, index ``eliminated``) and the rest
    ``k``, the blocks of :math:`W^\\top\\Omega W` and :math:`W^\\top\\Omega y` it reads, and
    for each group effect kept in ``k`` its position there and its term."""

    k: np.ndarray
    e: slice
    eliminated: int | None
    WtW_kk: np.ndarray
    WtW_ke: np.ndarray
    lam_e: np.ndarray
    Wty_k: np.ndarray
    Wty_e: np.ndarray
    kept_groups: np.ndarray
    kept_terms: np.ndarray


def theta_plan(stats: SufficientStats) -> ThetaPlan:
    """Build the :class:`ThetaPlan` of ``stats`` (see :func:`draw_theta`)."""
    p, D = stats.p, stats.WtW.shape[0]
    group_blocks = stats.blocks[1:]
    if group_blocks:
        t_e = max(range(len(group_blocks)),
                  key=lambda t: group_blocks[t].stop - group_blocks[t].start)
        e = group_blocks[t_e]
        off = stats.WtW[e, e] - np.diag(np.diag(stats.WtW[e, e]))
        if np.any(off != 0):  # pragma: no cover - impossible for a GroupTerm's indicators
            raise ValueError("Z_t' Omega Z_t must be diagonal for block elimination.")
    else:
        t_e, e = None, slice(D, D)
    k = np.r_[0:e.start, e.stop:D]
    term_of = np.full(D, -1)
    for t, blk in enumerate(group_blocks):
        term_of[blk] = t
    kept_groups = np.flatnonzero(k >= p)
    return ThetaPlan(k=k, e=e, eliminated=t_e, WtW_kk=stats.WtW[np.ix_(k, k)],
                     WtW_ke=stats.WtW[k, e], lam_e=np.diag(stats.WtW)[e],
                     Wty_k=stats.Wty[k], Wty_e=stats.Wty[e], kept_groups=kept_groups,
                     kept_terms=term_of[k[kept_groups]])


def draw_variance_inverse_gamma(rng: ChainRNG, prior: priors.InverseGamma, m, ss) -> np.ndarray:
    r"""Conjugate scale update under :math:`s^2 \sim IG(a, b)` (``InverseGamma(on="sigma2")``).

    The likelihood :math:`s^{-m}\exp(-S/2s^2)` is an inverse-gamma kernel in :math:`s^2`, so

    .. math::

        s^2 \mid \cdot \sim IG\left(a + \frac m2,\; b + \frac S2\right).

    Drawn as :math:`s^2 = (b + S/2) / G` with :math:`G \sim \mathrm{Gamma}(a + m/2, 1)`.
    Returns :math:`s`, shape (C,).
    """
    shape = prior.alpha + 0.5 * np.asarray(m, dtype=float)
    rate = prior.beta + 0.5 * np.asarray(ss, dtype=float)
    return np.sqrt(rate / rng.gamma(shape))


def draw_variance_half_cauchy(rng: ChainRNG, prior: priors.HalfCauchy, m, ss, aux) -> np.ndarray:
    r"""Scale update under :math:`s \sim \text{Half-Cauchy}(A)` given its auxiliary :math:`a`.

    Wand et al. (2011): :math:`s^2 \mid a \sim IG(1/2, 1/a)` and :math:`a \sim IG(1/2, 1/A^2)`
    give :math:`s \sim \text{Half-Cauchy}(A)` marginally. Given :math:`a`, the prior of
    :math:`s^2` is inverse-gamma, so with the likelihood :math:`s^{-m}\exp(-S/2s^2)`

    .. math::

        s^2 \mid a, \cdot \sim IG\left(\frac{m + 1}{2},\; \frac S2 + \frac 1a\right).

    Returns :math:`s`, shape (C,).
    """
    shape = 0.5 * (np.asarray(m, dtype=float) + 1.0)
    rate = 0.5 * np.asarray(ss, dtype=float) + 1.0 / aux
    return np.sqrt(rate / rng.gamma(shape))


def draw_half_cauchy_aux(rng: ChainRNG, prior: priors.HalfCauchy, scale) -> np.ndarray:
    r"""The half-Cauchy auxiliary given its scale (Wand et al. 2011).

    .. math::

        p(a \mid s) \propto a^{-1/2} e^{-1/(a s^2)} \cdot a^{-3/2} e^{-1/(a A^2)}
        \quad\Longrightarrow\quad a \mid s \sim IG\left(1,\; \frac{1}{s^2} + \frac{1}{A^2}\right).
    """
    rate = 1.0 / np.square(scale) + 1.0 / prior.beta**2
    return rate / rng.exponential()


def conditional_log_prior(prior: priors.Prior, s: np.ndarray) -> np.ndarray:
    r"""Log prior density of a positive scale :math:`s`, up to an additive constant.

    Closed forms are written out for speed (they are evaluated many times per slice step);
    the test suite checks them against :meth:`reference.priors.Prior.logpdf`.

    ============================  =====================================================
    prior                         log density + const
    ============================  =====================================================
    HalfNormal(sd)                :math:`-s^2 / 2\mathrm{sd}^2`
    HalfCauchy(A)                 :math:`-\log(1 + s^2/A^2)`
    HalfStudentT(nu, sd)          :math:`-\frac{\nu+1}{2}\log(1 + s^2/\nu\mathrm{sd}^2)`
    Exponential(lam)              :math:`-\lambda s`
    InverseGamma(a, b, "sigma")   :math:`-(a+1)\log s - b/s`
    InverseGamma(a, b, "sigma2")  :math:`-(2a+1)\log s - b/s^2` (Jacobian :math:`2s` included)
    TruncatedNormal(mu, sd, 0)    :math:`-(s - \mu)^2 / 2\mathrm{sd}^2`
    Uniform(l, u)                 0 on :math:`(l, u)`, :math:`-\infty` outside
    Flat                          0
    ============================  =====================================================
    """
    s = np.asarray(s, dtype=float)
    if isinstance(prior, priors.HalfNormal):
        return -0.5 * np.square(s / prior.sigma)
    if isinstance(prior, priors.HalfCauchy):
        return -np.log1p(np.square(s / prior.beta))
    if isinstance(prior, priors.HalfStudentT):
        return -0.5 * (prior.nu + 1.0) * np.log1p(np.square(s / prior.sigma) / prior.nu)
    if isinstance(prior, priors.Exponential):
        return -prior.lam * s
    if isinstance(prior, priors.InverseGamma):
        if prior.on == "sigma":
            return -(prior.alpha + 1.0) * np.log(s) - prior.beta / s
        return -(2.0 * prior.alpha + 1.0) * np.log(s) - prior.beta / np.square(s)
    if isinstance(prior, priors.TruncatedNormal):
        return -0.5 * np.square((s - prior.mu) / prior.sigma)
    if isinstance(prior, priors.Uniform):
        return np.where((s > prior.lower) & (s < prior.upper), 0.0, -np.inf)
    if isinstance(prior, priors.Flat):
        return np.zeros_like(s)
    return prior.logpdf(s)  # any other positive prior: its own (slower) density


def _uniform_for(rng: ChainRNG, active: np.ndarray) -> np.ndarray:
    """Uniform draws for the active chains only (0.5 elsewhere), so that each chain's random
    stream does not depend on how long the other chains' slice loops run."""
    out = np.full(active.shape, 0.5)
    for c in np.flatnonzero(active):
        out[c] = rng.generators[c].random()
    return out


def _shrink(rng: ChainRNG, log_target, x0, log_y, left, right, U, evals, batch: int = 3):
    """Neal's shrinkage procedure (figure 5) for all chains at once.

    Speculative evaluation: the next ``batch`` candidates of every chain are generated up front,
    each in the interval shrunk as if all earlier ones were rejected, and evaluated in one call;
    the first accepted one is kept. This gives exactly the point the one-at-a-time procedure
    gives (the same uniforms, the same shrinking), with fewer calls. ``U`` holds pre-drawn
    uniforms; once they are used up, each chain still searching draws its own.
    """
    x = x0.copy()
    todo = np.ones(x0.shape[0], dtype=bool)
    used = 0
    for _ in range(100):
        # step 1: the next `batch` candidates, shrinking as if each were rejected
        lo, hi, cands = left, right, []
        for _ in range(batch):
            draw = U[:, used] if used < U.shape[1] else _uniform_for(rng, todo)
            used += 1
            cand = lo + draw * (hi - lo)
            cands.append(cand)
            lo, hi = np.where(cand < x0, cand, lo), np.where(cand >= x0, cand, hi)
        cands = np.stack(cands)                                 # (batch, C)
        # step 2: one call; keep the first candidate on the slice
        on_slice = log_target(cands) > log_y[None]
        evals += batch * todo
        found = todo & on_slice.any(axis=0)
        first = np.argmax(on_slice, axis=0)
        x = np.where(found, cands[first, np.arange(x0.shape[0])], x)
        todo &= ~found
        if not todo.any():
            return x, evals
        left, right = lo, hi
    raise RuntimeError("slice sampler failed to find a point on the slice after 300 shrinkages; "
                       "the log density is probably not finite at the current point.")


def slice_log_scale(rng: ChainRNG, log_target: Callable[[np.ndarray], np.ndarray],
                    u0: np.ndarray, width=SLICE_WIDTH, max_steps: int = SLICE_MAX_STEPS,
                    n_shrink: int = 6, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    r"""One univariate slice-sampling update per chain (Neal 2003, stepping out and shrinkage).

    For a log density :math:`\ell(u)` (here :math:`u = \log s`, Jacobian included):

    1. draw the level :math:`\log y = \ell(u_0) - E`, :math:`E \sim \mathrm{Exp}(1)`;
    2. place an interval of width :math:`w` at random around :math:`u_0` and step it out, by
       :math:`w` at a time, until both ends are below the level (at most ``max_steps`` steps,
       split at random between the two ends, Neal's figure 3);
    3. draw uniformly from the interval, accept the first point above the level, and shrink
       the interval towards :math:`u_0` after every rejection (Neal's figure 5).

    The update leaves :math:`\ell` invariant for any width :math:`w` (a scalar or one per
    chain); a width near the typical size of the slice (about 2.5 posterior sds) needs the
    fewest evaluations, which is what the kernel's warmup tunes.

    Vectorization: all chains advance together; both ends are stepped out in the same call,
    ``batch`` steps ahead (the steps beyond the first end found off the slice are discarded,
    so the interval is the one the step-by-step procedure finds), and the shrinkage evaluates
    several candidates per call (see ``_shrink``). So ``log_target`` must accept arrays shaped
    (..., C). Each chain takes one block of ``3 + n_shrink`` uniforms from its own stream per
    update, and further ones, if needed, from its own stream: no chain's random numbers depend
    on the others.

    Returns
    -------
    u : ndarray (C,)
        New points.
    evals : ndarray (C,)
        Log-density points evaluated for each chain (speculative ones included).
    """
    U = rng.uniform((3 + n_shrink,))
    width = np.broadcast_to(np.asarray(width, dtype=float), u0.shape)
    # step 1 and the start of step 2: the level, and an interval around u0
    left = u0 - width * U[:, 1]
    ends = np.stack([left, left + width])                      # (2, C): left and right end
    f = log_target(np.concatenate([u0[None], ends]))           # (3, C)
    log_y = f[0] + np.log1p(-U[:, 0])                          # l(u0) - Exp(1)
    evals = np.full(u0.shape[0], 3, dtype=np.int64)
    # step 2: step both ends out while they are on the slice, `batch` steps per call
    steps = np.floor(max_steps * U[:, 2])
    steps = np.stack([steps, max_steps - 1 - steps])           # steps left per end, (2, C)
    direction = np.stack([-width, width])
    ahead = np.arange(1, batch + 1)[:, None, None]             # (batch, 1, 1)
    grow = (steps > 0) & (f[1:] > log_y)
    while grow.any():
        on_slice = log_target(ends + ahead * direction) > log_y    # (batch, 2, C)
        # the step-by-step procedure stops at the first point off the slice, or out of steps
        first_off = np.where(on_slice.all(axis=0), batch + 1, np.argmin(on_slice, axis=0) + 1)
        taken = np.where(grow, np.minimum(np.minimum(first_off, batch), steps), 0)
        ends = ends + taken * direction
        steps = steps - taken
        evals += batch * grow.sum(axis=0)
        grow &= (first_off > batch) & (steps > 0)
    # step 3: shrinkage
    return _shrink(rng, log_target, u0, log_y, ends[0], ends[1], U[:, 3:], evals)


def draw_scale_slice(rng: ChainRNG, prior: priors.Prior, m, ss, scale: np.ndarray,
                     width: float = SLICE_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    r"""Scale update under a non-conjugate prior, by slice sampling (Neal 2003).

    The target is :math:`p(s \mid \cdot) \propto s^{-m}\exp(-S/2s^2)\,p(s)`. In
    :math:`v = s^2` it is :math:`q(v)\,p(\sqrt v)`, where
    :math:`q = IG\left(\frac{m-1}{2}, \frac S2\right)` is the density the likelihood alone
    would give (the Jacobian :math:`ds/dv = 1/2\sqrt v` included). The slice sampler may run on
    any one-to-one transform of the variable, so it runs on the probability scale of q,
    :math:`P = F_q(v)`, whose density on (0, 1) is just the prior :math:`p(\sqrt{F_q^{-1}(P)})`:
    nearly flat whenever the data dominate the prior. The whole interval (0, 1) is the initial
    bracket (no stepping out), and the first point drawn is nearly always on the slice.
    :math:`F_q` comes from the regularized incomplete gamma function: with
    :math:`G = S/2v \sim \mathrm{Gamma}((m-1)/2)`, :math:`P = \mathrm{gammainc}((m-1)/2, G)`.

    When :math:`m < 2` or :math:`S = 0` (q improper) or the current point lies where
    :math:`F_q` rounds to 0 or 1, the update of that chain (each chain decides for itself) runs
    instead on :math:`u = \log s` with stepping out (:func:`slice_log_scale`), target
    :math:`\ell(u) = -m u - \frac S2 e^{-2u} + \log p(e^u) + u`.

    Returns (new scale, evaluations).
    """
    m, ss = np.broadcast_arrays(np.asarray(m, dtype=float), np.asarray(ss, dtype=float))
    m, ss = np.broadcast_to(m, scale.shape), np.broadcast_to(ss, scale.shape)
    width = np.broadcast_to(np.asarray(width, dtype=float), scale.shape)
    shape, rate = 0.5 * (m - 1.0), 0.5 * ss
    with np.errstate(invalid="ignore", divide="ignore"):
        p0 = special.gammainc(shape, rate / np.square(scale))
    # each chain picks its own path, so that no chain depends on the others
    on_prob = (shape > 0) & (rate > 0) & (p0 > 0) & (p0 < 1)
    if on_prob.all():
        return _scale_on_probability(rng, prior, shape, rate, scale, p0)
    if not on_prob.any():
        return _scale_on_log(rng, prior, m, ss, scale, width)
    new, evals = np.empty_like(scale), np.empty(scale.shape, dtype=np.int64)
    for mask, path in ((on_prob, True), (~on_prob, False)):
        sub = rng.subset(mask)
        if path:
            new[mask], evals[mask] = _scale_on_probability(sub, prior, shape[mask], rate[mask],
                                                           scale[mask], p0[mask])
        else:
            new[mask], evals[mask] = _scale_on_log(sub, prior, m[mask], ss[mask], scale[mask],
                                                   width[mask])
    return new, evals


def _scale_on_probability(rng: ChainRNG, prior, shape, rate, scale, p0):
    """:func:`draw_scale_slice` on the probability scale of q."""

    def to_scale(prob):                                # s = sqrt(F_q^-1(P))
        return np.sqrt(rate / special.gammaincinv(shape, prob))

    def log_weight(prob):
        s = to_scale(prob)
        with np.errstate(invalid="ignore"):
            lp = conditional_log_prior(prior, s)
        return np.where(np.isfinite(s) & (s > 0), lp, -np.inf)

    U = rng.uniform((5,))
    log_y = conditional_log_prior(prior, scale) + np.log1p(-U[:, 0])
    zeros, ones = np.zeros_like(p0), np.ones_like(p0)
    prob, evals = _shrink(rng, log_weight, p0, log_y, zeros, ones, U[:, 1:],
                          np.ones(p0.shape, dtype=np.int64), batch=2)
    return to_scale(prob), evals


def _scale_on_log(rng: ChainRNG, prior, m, ss, scale, width):
    """:func:`draw_scale_slice` on log s with stepping out (the fallback)."""

    def log_target(u):
        s = np.exp(u)
        return -m * u - 0.5 * ss / np.square(s) + conditional_log_prior(prior, s) + u

    u, evals = slice_log_scale(rng, log_target, np.log(scale), width)
    return np.exp(u), evals


def draw_scale(rng: ChainRNG, prior: priors.Prior, m, ss, scale: np.ndarray, aux: np.ndarray,
               width: float = SLICE_WIDTH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Draw a scale :math:`s` from :math:`p(s \mid \cdot) \propto s^{-m}\exp(-S/2s^2)\,p(s)`.

    Used for :math:`\tau_t \mid b_t` (:math:`m = J_t`, :math:`S = \lVert b_t\rVert^2`: the
    centred half of ASIS) and for :math:`\sigma \mid \theta` (:math:`m = n`, :math:`S` the
    weighted residual sum of squares). Dispatches on the prior: inverse-gamma on :math:`s^2`
    (:func:`draw_variance_inverse_gamma`), half-Cauchy (:func:`draw_variance_half_cauchy`, then
    :func:`draw_half_cauchy_aux`), anything else (:func:`draw_scale_slice`).

    Returns
    -------
    scale, aux, evals : ndarray (C,)
        New scale, new half-Cauchy auxiliary (unchanged for other priors), slice evaluations.
    """
    zero = np.zeros(scale.shape, dtype=np.int64)
    if isinstance(prior, priors.Constant):
        return scale, aux, zero
    if isinstance(prior, priors.InverseGamma) and prior.on == "sigma2":
        return draw_variance_inverse_gamma(rng, prior, m, ss), aux, zero
    if isinstance(prior, priors.HalfCauchy):
        scale = draw_variance_half_cauchy(rng, prior, m, ss, aux)
        return scale, draw_half_cauchy_aux(rng, prior, scale), zero
    scale, evals = draw_scale_slice(rng, prior, m, ss, scale, width=width)
    return scale, aux, evals


def _positive_normal(rng: ChainRNG, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    r"""Draw :math:`N(\mu, s^2)` truncated to :math:`(0, \infty)` by inversion in log space.

    With :math:`Z = (X - \mu)/s > -\mu/s` and :math:`P(Z > z) = \Phi(-z)`, set
    :math:`\Phi(-Z) = U\,\Phi(\mu/s)`, i.e. :math:`Z = -\Phi^{-1}(\exp(\log U + \log\Phi(\mu/s)))`
    (``ndtri_exp`` and ``log_ndtr`` keep the far tail accurate).
    """
    log_p = np.log(rng.uniform()) + special.log_ndtr(mean / sd)
    x = mean - sd * special.ndtri_exp(log_p)
    return np.maximum(x, np.finfo(float).tiny)


def draw_tau_noncentred(rng: ChainRNG, prior: priors.Prior, quad, cross, sigma2, tau,
                        width: float = SLICE_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw :math:`\tau_t` given :math:`\eta_t = b_t/\tau_t` and everything else (the AA half).

    .. math::

        p(\tau \mid \eta, \cdot) \propto
        \exp\left(-\frac{A\tau^2 - 2B\tau}{2\sigma^2}\right) p(\tau),

    with ``quad`` :math:`= A` and ``cross`` :math:`= B` (see the module docstring).

    * ``HalfNormal(s)``: :math:`\tau \sim N(\mu, v)` truncated to :math:`\tau > 0`, with
      :math:`v^{-1} = A/\sigma^2 + 1/s^2` and :math:`\mu = v B/\sigma^2`.
    * otherwise: slice sampling on :math:`u = \log\tau` with
      :math:`\ell(u) = -(A e^{2u} - 2B e^u)/2\sigma^2 + \log p(e^u \mid a) + u`.

    Returns (new tau, slice evaluations), each (C,).
    """
    if isinstance(prior, priors.HalfNormal):
        var = 1.0 / (quad / sigma2 + 1.0 / prior.sigma**2)
        tau = _positive_normal(rng, var * cross / sigma2, np.sqrt(var))
        return tau, np.zeros(tau.shape, dtype=np.int64)

    def log_target(u):
        t = np.exp(u)
        return (-(quad * t * t - 2.0 * cross * t) / (2.0 * sigma2)
                + conditional_log_prior(prior, t) + u)

    u, evals = slice_log_scale(rng, log_target, np.log(tau), width)
    return np.exp(u), evals


def interweave(rng: ChainRNG, stats: SufficientStats, theta: np.ndarray, t: int,
               prior: priors.Prior, tau: np.ndarray, sigma: np.ndarray,
               width: float = SLICE_WIDTH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The ancillary (non-centred) half of ASIS for group term ``t``.

    1. move to the non-centred coordinates :math:`\eta_t = b_t / \tau_t`;
    2. form :math:`A = \eta_t^\top (Z_t^\top\Omega Z_t)\eta_t` and
       :math:`B = \eta_t^\top Z_t^\top\Omega(y - W\theta) + A\tau_t`, both from the sufficient
       statistics (:math:`Z_t^\top\Omega(y - W\theta + Z_t b_t)` is the residual without term t);
    3. draw :math:`\tau_t^{new}` with :func:`draw_tau_noncentred`;
    4. map back, :math:`b_t = \tau_t^{new}\eta_t`. This rescaling is what lets :math:`b` and
       :math:`\tau` move together along the funnel.

    Parameters
    ----------
    theta : ndarray (C, D)
    t : int
        Index of the group term (block ``stats.blocks[t + 1]`` of theta).
    tau, sigma : ndarray (C,)
        This term's current scale and the noise sd.

    Returns
    -------
    b_t, tau_t, evals
        New group effects (C, J_t), new scale (C,) and slice evaluations (C,).
    """
    blk = stats.blocks[t + 1]
    b = theta[:, blk]
    # step 1: non-centred coordinates
    eta = b / tau[:, None]
    # step 2: the Gaussian likelihood of tau, A tau^2 - 2 B tau
    ZtZ = stats.WtW[blk, blk]
    quad = np.sum((eta @ ZtZ) * eta, axis=1)
    resid_t = stats.Wty[blk] - theta @ stats.WtW[:, blk]  # Z_t' Omega (y - W theta), (C, J_t)
    cross = np.einsum("cj,cj->c", eta, resid_t) + quad * tau
    # step 3: tau | eta, rest
    tau_new, evals = draw_tau_noncentred(rng, prior, quad, cross, np.square(sigma), tau, width)
    # step 4: back to the centred coordinates
    return tau_new[:, None] * eta, tau_new, evals


def draw_tau_collapsed(rng: ChainRNG, stats: SufficientStats, theta: np.ndarray, t: int,
                       prior: priors.Prior, tau: np.ndarray, sigma: np.ndarray,
                       width: float = SLICE_WIDTH
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Draw :math:`(\tau_t, b_t)` jointly given :math:`\beta`, the other terms and :math:`\sigma`.

    The partially collapsed update (Liu 1994; van Dyk and Park 2008): first
    :math:`\tau_t \mid \beta, b_{-t}, \sigma, y` with :math:`b_t` integrated out, then
    :math:`b_t \mid \tau_t, \beta, b_{-t}, \sigma, y`. Together they are one draw of the block
    :math:`(\tau_t, b_t)` from its conditional, so the old :math:`b_t` plays no part and
    :math:`\tau_t` is not tied to it as in the centred sampler.

    Every row belongs to one level, so :math:`M = Z_t^\top\Omega Z_t` is diagonal,
    :math:`M = \mathrm{diag}(\lambda_j)` (:math:`\lambda_j = \sum_{i \in j} w_i z_i^2`, zero for
    a level without rows). With :math:`u = Z_t^\top\Omega(y - X\beta - \sum_{s \ne t} Z_s b_s)`
    the levels decouple, :math:`u_j \mid \tau \sim N(0, \lambda_j\sigma^2 + \lambda_j^2\tau^2)`,
    which gives (up to a constant)

    .. math::

        \log p(\tau \mid \beta, b_{-t}, \sigma, y) = \log p(\tau) + \sum_j \left[
        -\tfrac12 \log\left(1 + \frac{\lambda_j\tau^2}{\sigma^2}\right)
        + \frac{u_j^2\,\tau^2}{2\sigma^2(\sigma^2 + \lambda_j\tau^2)} \right],

    slice-sampled on :math:`\log\tau` (:func:`slice_log_scale`); then, level by level,

    .. math::

        b_{t,j} \mid \tau, \cdot \sim N\left(\frac{u_j/\sigma^2}{\lambda_j/\sigma^2 +
        1/\tau^2},\; \frac{1}{\lambda_j/\sigma^2 + 1/\tau^2}\right).

    Returns
    -------
    b_t, tau_t, evals
        New group effects (C, J_t), new scale (C,) and slice evaluations (C,).
    """
    blk = stats.blocks[t + 1]
    b = theta[:, blk]
    lam = np.diag(stats.WtW[blk, blk])                         # (J,)
    # step 1: u = Z_t' Omega (y - W theta) + M b_t, the residual without term t
    u = stats.Wty[blk] - theta @ stats.WtW[:, blk] + b * lam   # (C, J)
    s2 = np.square(sigma)[:, None]
    lam_s2 = lam / s2                                          # lambda_j / sigma^2
    half_c = 0.5 * np.square(u) / np.square(s2)                # u_j^2 / 2 sigma^4

    def log_target(v):                                         # v = log tau
        t2 = np.exp(2.0 * v)
        a = t2[..., None] * lam_s2                             # lambda_j tau^2 / sigma^2
        loglik = np.sum(half_c / (1.0 + a), axis=-1) * t2 - 0.5 * np.sum(np.log1p(a), axis=-1)
        return loglik + conditional_log_prior(prior, np.sqrt(t2)) + v

    # step 2: tau | beta, b_{-t}, sigma, y by slice sampling on log tau
    v, evals = slice_log_scale(rng, log_target, np.log(tau), width)
    tau_new = np.exp(v)
    # step 3: b_t | tau, rest, independently per level
    prec = lam / s2 + 1.0 / np.square(tau_new)[:, None]
    b_new = (u / s2) / prec + rng.normal(lam.shape) / np.sqrt(prec)
    return b_new, tau_new, evals


def residual_ss(stats: SufficientStats, theta_hat: np.ndarray, ss_min: float,
                theta: np.ndarray) -> np.ndarray:
    r"""Weighted residual sum of squares :math:`(y - W\theta)^\top\Omega(y - W\theta)`, (C,).

    Expanded about a weighted least-squares solution :math:`\hat\theta`
    (:math:`W^\top\Omega(y - W\hat\theta) = 0`, which exists even when :math:`W^\top\Omega W` is
    singular, as it is with an intercept and a full set of group indicators):

    .. math::

        S(\theta) = S_{\min} + (\theta - \hat\theta)^\top W^\top\Omega W\,(\theta - \hat\theta),

    so no significant digits are lost subtracting :math:`2\theta^\top W^\top\Omega y` from
    :math:`y^\top\Omega y` when the fit is close.
    """
    d = theta - theta_hat
    return ss_min + np.sum((d @ stats.WtW) * d, axis=1)


# --------------------------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Setup:
    """Everything the sweep needs, computed once from the data."""

    stats: SufficientStats
    names: tuple
    terms: tuple
    beta_precision: np.ndarray
    beta_shift: np.ndarray
    tau_priors: tuple
    sigma_prior: priors.Prior | None
    sigma_value: float
    theta_hat: np.ndarray
    ss_min: float
    scale0: float
    strategy: str
    plan: ThetaPlan


def _scale_prior(label: str, prior) -> priors.Prior:
    if not isinstance(prior, priors.Prior):
        raise TypeError(f"the prior of {label!r} must be a reference.priors Prior; "
                        f"received {prior!r}.")
    ok = (prior.support == "positive" or isinstance(prior, priors.Flat | priors.Constant)
          or (isinstance(prior, priors.Uniform) and prior.lower >= 0))
    if not ok:
        raise ValueError(f"the prior of {label!r} must live on positive values (HalfNormal, "
                         "HalfCauchy, HalfStudentT, Exponential, InverseGamma, TruncatedNormal, "
                         f"Uniform with lower >= 0, Flat, Constant); received {prior}.")
    if isinstance(prior, priors.Constant) and not (np.isfinite(prior.value) and prior.value > 0):
        raise ValueError(f"a Constant {label!r} must be a finite number > 0; "
                         f"received {prior.value!r}.")
    return prior


def _tau_priors(tau_priors: Mapping, terms) -> tuple:
    if not isinstance(tau_priors, Mapping):
        raise TypeError(f"tau_priors must be a dict term name -> Prior; received {tau_priors!r}.")
    valid = [g.name for g in terms]
    out = []
    for name in valid:
        keys = [k for k in (name, f"{name}_sigma") if k in tau_priors]
        if len(keys) != 1:
            raise ValueError(f"tau_priors needs exactly one prior for {name!r} (key {name!r} or "
                             f"{name + '_sigma'!r}); received keys {sorted(tau_priors)}.")
        out.append(_scale_prior(f"{name}_sigma", tau_priors[keys[0]]))
    unknown = sorted(k for k in tau_priors if k.removesuffix("_sigma") not in valid)
    if unknown:
        raise ValueError(f"tau_priors names unknown term(s) {unknown}; valid names: {valid}.")
    return tuple(out)


def _sigma_setting(sigma_prior) -> tuple[priors.Prior | None, float]:
    """``(prior, value)`` of the noise sd: ``(None, 1.0)`` when ``sigma_prior`` is None (the
    weights carry the known precisions), ``(None, v)`` for ``Constant(v)``, else
    ``(prior, nan)``."""
    if sigma_prior is None:
        return None, 1.0
    prior = _scale_prior("sigma", sigma_prior)
    if isinstance(prior, priors.Constant):
        return None, float(prior.value)
    return prior, np.nan


def least_squares_point(stats: SufficientStats, X, y, terms, weights
                        ) -> tuple[np.ndarray, float]:
    r"""Weighted least squares :math:`\hat\theta` and its residual sum of squares, the point
    about which :func:`residual_ss` expands :math:`\|y - W\theta\|^2_\Omega`."""
    p = X.shape[1]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    theta_hat = linalg.lstsq(stats.WtW, stats.Wty, cond=None)[0]
    fitted = X @ theta_hat[:p]
    for t, g in enumerate(terms):
        fitted += g.matrix() @ theta_hat[stats.blocks[t + 1]]
    return theta_hat, float(np.sum(w * np.square(y - fitted)))


def _setup(X, y, groups, names, beta_mean, beta_cov, tau_priors, sigma_prior, weights,
           strategy) -> _Setup:
    X, y = as_design(X, y)
    n, p = X.shape
    if isinstance(names, str) or len(list(names)) != p:
        raise ValueError(f"names must hold {p} strings, one per column of X; received {names!r}.")
    names = tuple(str(k) for k in names)
    terms = tuple(groups)
    for g in terms:
        if not isinstance(g, GroupTerm):
            raise TypeError(f"groups must hold GroupTerm objects (see group_term); received {g!r}.")
    all_names = list(names) + [g.name for g in terms]
    if len(set(all_names)) != len(all_names) or "sigma" in all_names:
        raise ValueError(f"coefficient and group term names must be distinct and not 'sigma'; "
                         f"received {all_names}.")
    dims: dict = {}
    for g in terms:
        if dims.setdefault(g.group, g.levels) != g.levels:
            raise ValueError(f"group terms on {g.group!r} must share the same levels.")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; received {strategy!r}.")
    stats = sufficient_stats(X, y, terms, weights)
    # beta ~ N(m, V): precision V^-1 and shift V^-1 m through a Cholesky factor (flat if None)
    m = vector("beta_mean", beta_mean, p)
    if beta_cov is None:
        beta_precision, beta_shift = np.zeros((p, p)), np.zeros(p)
    else:
        V = spd_matrix("beta_cov", beta_cov, p)
        factor = linalg.cho_factor(V, lower=True)
        beta_precision = linalg.cho_solve(factor, np.eye(p))
        beta_shift = linalg.cho_solve(factor, m)
    taus = _tau_priors(tau_priors, terms)
    sig_prior, sig_value = _sigma_setting(sigma_prior)
    theta_hat, ss_min = least_squares_point(stats, X, y, terms, weights)
    scale0 = float(np.std(y)) if np.std(y) > 0 else 1.0
    return _Setup(stats, names, terms, beta_precision, beta_shift, taus, sig_prior, sig_value,
                  theta_hat, ss_min, scale0, strategy, theta_plan(stats))


def _init_scale(rng: ChainRNG, prior: priors.Prior, center: float) -> np.ndarray:
    """Dispersed starting scales ``center * exp(N(0, 1))``; drawn from the prior where that
    point lies outside the prior's support (a Uniform prior, say)."""
    if isinstance(prior, priors.Constant):
        return np.full(rng.chains, float(prior.value))
    s = center * np.exp(rng.normal())
    bad = ~np.isfinite(conditional_log_prior(prior, s))
    if bad.any():
        s[bad] = [float(prior.rvs(rng.generators[c])) for c in np.flatnonzero(bad)]
    return s


def _sweep(rng: ChainRNG, state: HierarchicalState, setup: _Setup, widths: np.ndarray
           ) -> tuple[HierarchicalState, HierarchicalInfo]:
    stats = setup.stats
    sigma = state.sigma
    # step 1: theta = (beta, b) | tau, sigma, y, jointly
    theta = draw_theta(rng, stats, setup.beta_precision, setup.beta_shift, state.tau, sigma,
                       setup.plan)
    tau, tau_aux = state.tau.copy(), state.tau_aux.copy()
    evals = np.zeros(rng.chains, dtype=np.int64)
    # step 2: each group scale (and, for some strategies, its effects again)
    for t, prior in enumerate(setup.tau_priors):
        if isinstance(prior, priors.Constant):
            continue
        blk = stats.blocks[t + 1]
        if setup.strategy == "collapsed":  # (tau_t, b_t) | beta, b_{-t}, sigma
            theta[:, blk], tau[:, t], e = draw_tau_collapsed(rng, stats, theta, t, prior,
                                                             tau[:, t], sigma, widths[:, t])
            evals += e
        if setup.strategy in ("asis", "centred"):  # centred half: tau_t | b_t (and a_t)
            ss_b = np.sum(np.square(theta[:, blk]), axis=1)
            tau[:, t], tau_aux[:, t], e = draw_scale(rng, prior, blk.stop - blk.start, ss_b,
                                                     tau[:, t], tau_aux[:, t], widths[:, t])
            evals += e
        if setup.strategy in ("asis", "noncentred"):  # non-centred half: tau_t | eta_t, rest
            theta[:, blk], tau[:, t], e = interweave(rng, stats, theta, t, prior, tau[:, t],
                                                     sigma, widths[:, t])
            evals += e
            if isinstance(prior, priors.HalfCauchy):
                # that draw integrated the auxiliary out; draw it afresh given the new tau, so
                # that (tau_t, a_t) is one block draw
                tau_aux[:, t] = draw_half_cauchy_aux(rng, prior, tau[:, t])
    # step 3: sigma | theta, y
    sigma_aux = state.sigma_aux
    if setup.sigma_prior is not None:
        ss = residual_ss(stats, setup.theta_hat, setup.ss_min, theta)
        sigma, sigma_aux, e = draw_scale(rng, setup.sigma_prior, stats.n, ss, sigma, sigma_aux,
                                         widths[:, -1])
        evals += e
    return HierarchicalState(theta, tau, tau_aux, sigma, sigma_aux), HierarchicalInfo(evals)


def hierarchical_kernel(X, y, groups: Sequence[GroupTerm], *, names: Sequence[str], beta_mean,
                        beta_cov, tau_priors: Mapping[str, priors.Prior],
                        sigma_prior: priors.Prior | None, weights=None,
                        strategy: str = "collapsed") -> Kernel:
    r"""Blocked Gibbs kernel for the hierarchical Gaussian model of the module docstring.

    Parameters
    ----------
    X : array_like (n, p)
        Common-effect design (a column of ones for ``Intercept``).
    y : array_like (n,)
        Response.
    groups : sequence of GroupTerm
        The group terms, e.g. from :func:`group_term`; may be empty.
    names : sequence of str
        Names of the columns of X, as Bambi names the coefficients.
    beta_mean : float or array_like (p,)
        Prior mean :math:`m` of :math:`\beta`.
    beta_cov : float, array_like (p,) or (p, p), or None
        Prior covariance :math:`V` (scalar: :math:`vI`; vector: diagonal); ``None`` is flat.
    tau_priors : dict
        One prior per group term, keyed by the term (``"1|g"``) or its scale (``"1|g_sigma"``).
        ``Constant(v)`` fixes :math:`\tau` at ``v`` (then it is not in the posterior).
    sigma_prior : Prior or None
        Prior on the noise sd; ``Constant(v)`` fixes it at ``v``, ``None`` at 1 (then the
        weights are the known per-row precisions).
    weights : array_like (n,), optional
        Relative precisions :math:`w_i` (``1/se_i**2`` for known standard errors).
    strategy : {"collapsed", "asis", "centred", "noncentred"}
        How the group scales are updated (module docstring); ``"collapsed"`` by default.

    Returns
    -------
    Kernel
        For :func:`reference.sampling.run` / :func:`reference.sampling.sample`.
    """
    setup = _setup(X, y, groups, names, beta_mean, beta_cov, tau_priors, sigma_prior, weights,
                   strategy)
    return _kernel_from_setup(setup)


def _kernel_from_setup(setup: _Setup) -> Kernel:
    """The :class:`~reference.sampling.Kernel` of :func:`hierarchical_kernel` for a setup."""
    D, T = setup.stats.WtW.shape[0], len(setup.terms)

    def init(rng: ChainRNG) -> HierarchicalState:
        tau = np.stack([_init_scale(rng, pr, setup.scale0) for pr in setup.tau_priors], axis=1
                       ) if T else np.zeros((rng.chains, 0))
        tau_aux = np.stack([np.full(rng.chains, pr.beta**2 if isinstance(pr, priors.HalfCauchy)
                                    else 1.0) for pr in setup.tau_priors], axis=1
                           ) if T else np.zeros((rng.chains, 0))
        if setup.sigma_prior is None:
            sigma = np.full(rng.chains, setup.sigma_value)
        else:
            sigma = _init_scale(rng, setup.sigma_prior, setup.scale0)
        sig_aux = np.full(rng.chains, setup.sigma_prior.beta**2
                          if isinstance(setup.sigma_prior, priors.HalfCauchy) else 1.0)
        # theta is drawn first in every sweep, so its starting value is never used
        return HierarchicalState(np.zeros((rng.chains, D)), tau, tau_aux, sigma, sig_aux)

    def step(rng, state, params: SliceWidths):
        return _sweep(rng, state, setup, params.width)

    def adapt_init(state: HierarchicalState) -> SliceWidths:
        shape = (state.sigma.shape[0], T + 1)
        return SliceWidths(np.full(shape, SLICE_WIDTH), 0, np.zeros(shape), np.zeros(shape))

    def adapt_update(params, state, info, i, tune):
        return _adapt_widths(params, state, i, tune)

    def positions(state: HierarchicalState) -> dict:
        out = {name: state.theta[:, j].copy() for j, name in enumerate(setup.names)}
        for t, g in enumerate(setup.terms):
            out[g.name] = state.theta[:, setup.stats.blocks[t + 1]].copy()
            if not isinstance(setup.tau_priors[t], priors.Constant):
                out[f"{g.name}_sigma"] = state.tau[:, t].copy()
        if setup.sigma_prior is not None:
            out["sigma"] = state.sigma.copy()
        return out

    dims = {g.name: [f"{g.group}__factor_dim"] for g in setup.terms}
    coords = {f"{g.group}__factor_dim": list(g.levels) for g in setup.terms}
    return Kernel(init=init, step=step, positions=positions, adapt_init=adapt_init,
                  adapt_update=adapt_update, dims=dims, coords=coords)


def hierarchical_gibbs(X, y, groups: Sequence[GroupTerm], *, names: Sequence[str], beta_mean,
                       beta_cov, tau_priors: Mapping[str, priors.Prior],
                       sigma_prior: priors.Prior | None, weights=None,
                       strategy: str = "collapsed",
                       draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0,
                       thin: int = 1, observed_data: dict | None = None, fast: bool = False):
    """Run :func:`hierarchical_kernel` and return an ArviZ ``DataTree``.

    Arguments as :func:`hierarchical_kernel`, plus the run settings of
    :func:`reference.sampling.run`. The posterior holds the coefficients as scalars, each group
    term as a vector over ``<group>__factor_dim`` (coords: the level labels), the ``_sigma``
    scales and ``sigma``, as Bambi 0.21 names them.

    ``fast=True`` runs the same sweeps compiled with numba (:mod:`reference._fast_hierarchical`)
    for the ``"collapsed"`` strategy when every scale prior has a closed form in
    :func:`conditional_log_prior`; the draws are those of the numpy kernel for the same seed, up
    to rounding. Otherwise, or when numba cannot be imported (a warning says so), the numpy
    kernel runs. The posterior's ``sampler_path`` attribute says which ran.
    """
    setup = _setup(X, y, groups, names, beta_mean, beta_cov, tau_priors, sigma_prior, weights,
                   strategy)
    kernel = _kernel_from_setup(setup)
    attrs = {"algorithm": f"blocked Gibbs sampler, {strategy} scale updates "
                          "(reference.hierarchical)", "strategy": strategy}
    fast_module = _fast_module(setup) if fast else None
    if fast_module is None:
        attrs["sampler_path"] = "numpy"
        return sample(kernel, observed_data=observed_data, attrs=attrs, draws=draws, tune=tune,
                      chains=chains, seed=seed, thin=thin)
    attrs["sampler_path"] = "numba"
    out = _run_fast(fast_module, kernel, setup, draws=draws, tune=tune, chains=chains,
                    seed=seed, thin=thin)
    return to_datatree(out, observed_data=observed_data, attrs=attrs, seed=seed)


def _fast_module(setup: _Setup):
    """:mod:`reference._fast_hierarchical` when it can run this model, else None (with a
    warning when numba cannot be imported)."""
    try:
        from reference import _fast_hierarchical
    except Exception as exc:  # numba absent or broken: the numpy kernel gives the same draws
        import warnings

        warnings.warn(f"fast=True needs numba, which could not be imported ({exc!r}); running "
                      "the numpy kernel instead (same draws, slower).", RuntimeWarning,
                      stacklevel=3)
        return None
    return None if _fast_hierarchical.unsupported(setup) else _fast_hierarchical


def _run_fast(fast_module, kernel: Kernel, setup: _Setup, *, draws: int, tune: int,
              chains: int, seed: int, thin: int) -> Run:
    """Run the compiled chains from the kernel's own initial state and random streams; returns
    what :func:`reference.sampling.run` returns."""
    draws = integer("draws", draws, 1)
    tune = integer("tune", tune, 0)
    thin = integer("thin", thin, 1)
    rng = ChainRNG(seed, chains)
    state = kernel.init(rng)
    out = fast_module.run_chains(rng.generators, state, setup, tune=tune, draws=draws,
                                 thin=thin)
    theta = out["theta"]
    posterior = {name: theta[:, :, j] for j, name in enumerate(setup.names)}
    for t, g in enumerate(setup.terms):
        posterior[g.name] = theta[:, :, setup.stats.blocks[t + 1]]
        if not isinstance(setup.tau_priors[t], priors.Constant):
            posterior[f"{g.name}_sigma"] = out["tau"][:, :, t]
    if setup.sigma_prior is not None:
        posterior["sigma"] = out["sigma"]
    params = SliceWidths(out["width"], out["count"], out["mean"], out["m2"])
    return Run(posterior, {"slice_evals": out["slice_evals"]}, params, dict(kernel.dims),
               dict(kernel.coords))


# --------------------------------------------------------------------------------------------
# Shrinkage
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shrinkage:
    """Partial-pooling group estimates beside the no-pooling least-squares ones.

    Attributes
    ----------
    levels : tuple of str
    n_obs : ndarray (J,) of int
        Rows per level (0 for a level absent from the data).
    effect, effect_sd : ndarray (J,)
        Posterior mean and sd of :math:`b_j`.
    partial : ndarray (J,)
        Posterior mean of the group's intercept :math:`\\alpha_j = \\sum_{k \\in G}\\beta_k
        x_{kj} + b_j`, where G are the columns of X constant within every group (the intercept
        and group-level predictors). NaN for an absent level when a group-level predictor other
        than a constant is involved (its value for that level is unknown).
    no_pooling : ndarray (J,)
        The level's coefficient in the weighted least-squares fit of y on the within-group
        columns of X and one indicator per level (no pooling); NaN for an absent level.
    """

    levels: tuple
    n_obs: np.ndarray
    effect: np.ndarray
    effect_sd: np.ndarray
    partial: np.ndarray
    no_pooling: np.ndarray


def shrinkage(posterior, X, y, term: GroupTerm, *, names: Sequence[str], weights=None
              ) -> Shrinkage:
    r"""Compare each group's partial-pooling estimate with its no-pooling estimate.

    Parameters
    ----------
    posterior : mapping
        Draws by name shaped (chain, draw, ...): a :class:`reference.sampling.Run`'s
        ``posterior`` dict or a DataTree's ``posterior`` group.
    X, y, names, weights
        The data the model was fitted to.
    term : GroupTerm
        A varying-intercept term ``"1|g"``.

    Notes
    -----
    The no-pooling fit is :math:`y_i = \alpha_{g[i]} + x_{i,\text{within}}^\top\gamma +
    \varepsilon_i` by weighted least squares, where the within-group columns are those of X not
    constant within every group (a column constant within groups is collinear with the
    indicators). A level with a single row is estimated (exactly fitted); an absent one is NaN.
    """
    if term.name.split("|")[0] != "1":
        raise ValueError(f"shrinkage compares varying intercepts; received the term {term.name!r}.")
    X, y = as_design(X, y)
    names = list(names)
    if len(names) != X.shape[1]:
        raise ValueError(f"names must hold {X.shape[1]} strings; received {names}.")
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    J, codes = term.n_levels, np.asarray(term.codes)
    n_obs = np.bincount(codes, minlength=J)
    present = n_obs > 0
    # columns of X that are constant within every group (the intercept, group-level predictors)
    group_level = []
    for k in range(X.shape[1]):
        lo = np.full(J, np.inf)
        hi = np.full(J, -np.inf)
        np.minimum.at(lo, codes, X[:, k])
        np.maximum.at(hi, codes, X[:, k])
        if np.allclose(lo[present], hi[present]):
            group_level.append(k)
    # partial pooling: posterior mean of alpha_j = sum_k beta_k x_kj + b_j
    b = np.asarray(posterior[term.name], dtype=float)
    b = b.reshape(-1, b.shape[-1])
    alpha = b.copy()
    for k in group_level:
        xk = np.zeros(J)
        xk[codes] = X[:, k]
        if not np.allclose(X[:, k], X[0, k]):  # a value per group: unknown for absent levels
            xk[~present] = np.nan
        else:
            xk[:] = X[0, k]
        beta_k = np.asarray(posterior[names[k]], dtype=float).reshape(-1)
        alpha = alpha + beta_k[:, None] * xk[None, :]
    # no pooling: least squares on within-group columns and one indicator per present level
    within = [k for k in range(X.shape[1]) if k not in group_level]
    idx = np.flatnonzero(present)
    ind = np.zeros((len(y), len(idx)))
    ind[np.arange(len(y)), np.searchsorted(idx, codes)] = 1.0
    A = np.column_stack([ind, X[:, within]]) * np.sqrt(w)[:, None]
    coef, _, rank, _ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    no_pool = np.full(J, np.nan)
    if rank == A.shape[1]:
        no_pool[idx] = coef[: len(idx)]
    return Shrinkage(term.levels, n_obs, b.mean(axis=0), b.std(axis=0, ddof=1),
                     alpha.mean(axis=0), no_pool)
