r"""Gibbs sampler for Gaussian linear regression, working from the sufficient statistics only.

Model
-----
.. math::

    y = X\beta + \varepsilon, \qquad \varepsilon \sim N(0, \sigma^2 I_n),

with one of two priors on the coefficients,

* semi-conjugate (``nig=False``): :math:`\beta \sim N(m_0, V_0)`, independent of :math:`\sigma`;
* Normal-Inverse-Gamma scaling (``nig=True``):
  :math:`\beta \mid \sigma^2 \sim N(m_0, \sigma^2 V_0)`,

and a prior on the noise that decides how :math:`\sigma` is updated:

* ``InverseGamma(a, b, on="sigma2")``: an exact inverse-gamma conditional (:func:`draw_sigma2`);
* ``HalfCauchy(s)``: the inverse-gamma scale mixture with an auxiliary variable
  (:func:`draw_mixing`, then :func:`draw_sigma2`);
* ``HalfNormal``, ``HalfStudentT``, ``Exponential``, ``InverseGamma(on="sigma")``,
  ``TruncatedNormal``, ``Uniform``: one slice-sampling update of :math:`\log\sigma`
  (:func:`slice_log_sigma`);
* a number or ``Constant(value)``: none, :math:`\sigma` is known.

A ``Flat`` prior on the coefficients is written ``beta_cov=None`` (then :math:`X^\top X` must be
invertible).

One sweep
---------
1. :math:`\beta \mid \sigma^2, y` is Gaussian (:func:`draw_beta`).
2. (half-Cauchy only) the auxiliary variable :math:`a \mid \sigma^2` (:func:`draw_mixing`).
3. :math:`\sigma^2 \mid \beta, (a), y` exactly, or :math:`\log\sigma` by one slice-sampling
   update that leaves its full conditional invariant.

Each conditional reads the latest value of the others (systematic-scan Gibbs; Geman and Geman
1984, Gelfand and Smith 1990).

Cost of a sweep
---------------
Every conditional depends on the data only through :math:`X^\top X`, :math:`X^\top y` and the
residual sum of squares

.. math::

    \mathrm{SSR}(\beta) = \|y - X\beta\|^2
      = y^\top y - 2\beta^\top X^\top y + \beta^\top X^\top X \beta ,

so the data are read once (:meth:`GibbsData.from_arrays`) and a sweep costs
:math:`O(C p^3)` for C chains, whatever the number of rows n. To avoid the cancellation of
:math:`y^\top y` against :math:`2\beta^\top X^\top y` when the fit is good, the SSR is expanded
around a reference point :math:`b_0` close to the least-squares fit (exact algebra for any
:math:`b_0`, with :math:`d = \beta - b_0`):

.. math::

    \mathrm{SSR}(\beta) = \|y - X b_0\|^2 - 2 d^\top X^\top (y - X b_0) + d^\top X^\top X d .

All chains advance together: the state carries a leading chain axis C, and the factorizations are
batched, ``np.linalg.cholesky`` on a (C, p, p) stack.

Where the time goes, and the fast path
--------------------------------------
At small p the arithmetic of a sweep is a few dozen flops per chain; what costs is Python:
about 20 numpy calls per sweep, each a microsecond or more, and one call per chain to each
chain's own random stream (on the tutorial case, p = 2, 4 chains: about 170 us per sweep, so
0.35 s for PyMC's 1000 + 1000 iterations). ``linear_gibbs(..., fast=True)`` runs the same sweep
transcribed loop by loop with numba (:mod:`reference._fast_gibbs`): every chain runs all its
sweeps in one compiled call, drawing the same variates from the same per-chain generator in the
same order, so for the same seed both paths give the same draws up to rounding (about 1e-15;
``tests/test_fast_paths.py``). This module stays the documented reference; the fast path covers
the exact-conditional noise priors (known, ``InverseGamma`` on sigma^2, ``HalfCauchy``) and the
slice-sampled ones run here.

References
----------
.. [1] Geman, S. and Geman, D. (1984). Stochastic relaxation, Gibbs distributions, and the
   Bayesian restoration of images. *IEEE Trans. PAMI* 6(6), 721-741.
.. [2] Gelfand, A. E. and Smith, A. F. M. (1990). Sampling-based approaches to calculating
   marginal densities. *JASA* 85(410), 398-409.
.. [3] Wand, M. P., Ormerod, J. T., Padoan, S. A. and Fruhwirth, R. (2011). Mean field
   variational Bayes for elaborate distributions. *Bayesian Analysis* 6(4), 847-900
   (Result 5: the half-Cauchy as a scale mixture of inverse-gammas).
.. [4] Makalic, E. and Schmidt, D. F. (2016). A simple sampler for the horseshoe estimator.
   *IEEE Signal Processing Letters* 23(1), 179-182.
.. [5] Neal, R. M. (2003). Slice sampling. *Annals of Statistics* 31(3), 705-767.

Examples
--------
>>> from reference.datasets import tutorial
>>> from reference.priors import HalfCauchy
>>> d = tutorial()
>>> X = np.column_stack([np.ones_like(d["x"]), d["x"]])
>>> dt = linear_gibbs(X, d["y"], names=["Intercept", "x"], beta_cov=20.0**2,
...                   sigma_prior=HalfCauchy(10), draws=200, tune=50, seed=1)
>>> sorted(dt.posterior.data_vars)
['Intercept', 'sigma', 'x']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference import priors as P
from reference import sampling
from reference._validation import as_design, integer, positive_scalar, spd_matrix, vector

__all__ = [
    "BetaPrior",
    "GibbsData",
    "GibbsState",
    "draw_beta",
    "draw_mixing",
    "draw_sigma2",
    "gaussian_from_precision",
    "gibbs_kernel",
    "linear_gibbs",
    "residual_terms",
    "slice_log_sigma",
]

#: priors on sigma updated by slice sampling on log sigma
SLICE_PRIORS = (P.HalfNormal, P.HalfStudentT, P.Exponential, P.InverseGamma, P.TruncatedNormal,
                P.Uniform)


# --------------------------------------------------------------------------------------------
# Data and prior, precomputed once
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GibbsData:
    r"""The sufficient statistics of a Gaussian linear model: nothing here has length n.

    Attributes
    ----------
    XtX : ndarray (p, p)
        :math:`X^\top X`.
    Xty : ndarray (p,)
        :math:`X^\top y`.
    yty : float
        :math:`y^\top y`.
    n : int
        Number of rows.
    center : ndarray (p,)
        Reference point :math:`b_0` of the SSR expansion (near the least-squares fit).
    rss_center : float
        :math:`\|y - X b_0\|^2`.
    Xt_resid_center : ndarray (p,)
        :math:`X^\top (y - X b_0)`.
    """

    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    center: np.ndarray
    rss_center: float
    Xt_resid_center: np.ndarray

    @property
    def p(self) -> int:
        return self.Xty.shape[0]

    @staticmethod
    def _reference_point(XtX: np.ndarray, Xty: np.ndarray) -> np.ndarray:
        """A ridge-regularized least-squares fit, defined even when X'X is singular."""
        p = XtX.shape[0]
        jitter = 1e-10 * max(np.trace(XtX) / p, 1e-300)
        return np.linalg.solve(XtX + jitter * np.eye(p), Xty)

    @classmethod
    def from_arrays(cls, X, y) -> GibbsData:
        """Read the data once: :math:`X^\\top X`, :math:`X^\\top y`, :math:`y^\\top y` and the
        residual of the reference point, computed exactly from the rows (one pass, O(n p^2))."""
        X, y = as_design(X, y)
        XtX = X.T @ X
        Xty = X.T @ y
        b0 = cls._reference_point(XtX, Xty)
        resid = y - X @ b0
        return cls(XtX, Xty, float(y @ y), X.shape[0], b0, float(resid @ resid), X.T @ resid)

    @classmethod
    def from_stats(cls, XtX, Xty, yty: float, n: int) -> GibbsData:
        """Build from precomputed statistics (for example :func:`reference.design.sufficient_stats`,
        ``WtW``, ``Wty``, ``yty``, ``n``). The reference residual is then found from the
        statistics themselves, so it carries their rounding."""
        Xty = np.asarray(Xty, dtype=float)
        if Xty.ndim != 1 or Xty.size == 0:
            raise ValueError(f"Xty must be a non-empty 1-D array; received shape {Xty.shape}.")
        p = Xty.shape[0]
        XtX = np.asarray(XtX, dtype=float)
        if XtX.shape != (p, p) or not np.all(np.isfinite(XtX)):
            raise ValueError(
                f"XtX must be a finite ({p}, {p}) matrix to match Xty; received shape {XtX.shape}."
            )
        if not np.all(np.isfinite(Xty)):
            raise ValueError("Xty contains NaN or inf; every value must be finite.")
        yty = float(yty)
        if not np.isfinite(yty) or yty < 0:
            raise ValueError(f"yty must be a finite number >= 0; received {yty!r}.")
        n = integer("n", n, 1)
        b0 = cls._reference_point(XtX, Xty)
        Xtr = Xty - XtX @ b0
        rss = max(yty - 2.0 * b0 @ Xty + b0 @ XtX @ b0, 0.0)
        return cls(XtX, Xty, yty, n, b0, float(rss), Xtr)


@dataclass(frozen=True)
class BetaPrior:
    r"""Gaussian prior on the coefficients in precision form.

    ``precision`` is :math:`V_0^{-1}` (all zeros for a flat prior) and ``precision_mean`` is
    :math:`V_0^{-1} m_0`. With ``nig=True`` the covariance is :math:`\sigma^2 V_0`.
    """

    mean: np.ndarray
    precision: np.ndarray
    precision_mean: np.ndarray
    proper: bool
    nig: bool

    @classmethod
    def build(cls, p: int, mean, cov, nig: bool) -> BetaPrior:
        m0 = vector("beta_mean", mean, p)
        if cov is None:  # flat prior
            return cls(m0, np.zeros((p, p)), np.zeros(p), False, bool(nig))
        V0 = spd_matrix("beta_cov", cov, p)
        # V0^-1 through its Cholesky factor (a one-off p x p computation)
        L0 = np.linalg.cholesky(V0)
        L0inv = np.linalg.solve(L0, np.eye(p))
        P0 = L0inv.T @ L0inv
        P0 = 0.5 * (P0 + P0.T)
        return cls(m0, P0, P0 @ m0, True, bool(nig))


class GibbsState(NamedTuple):
    """State of all C chains: ``beta`` (C, p), ``sigma2`` (C,), ``mixing`` (C,), the half-Cauchy
    auxiliary variable (unused by the other noise priors)."""

    beta: np.ndarray
    sigma2: np.ndarray
    mixing: np.ndarray


class LinearSetup(NamedTuple):
    """What a kernel is built from: the statistics, the coefficients' prior, the noise kind
    (``"known"``, ``"ig"``, ``"halfcauchy"`` or ``"slice"``) with its parameter, and the names."""

    data: GibbsData
    prior: BetaPrior
    kind: str
    noise: object
    names: list


class GibbsInfo(NamedTuple):
    """Nothing to report: every update is an exact draw from its conditional."""


class SliceInfo(NamedTuple):
    """``n_evals`` (C,): log-density evaluations used by the slice update of each chain."""

    n_evals: np.ndarray


class SliceParams(NamedTuple):
    """Per-chain width (C,) of the initial slice interval on log sigma, and the running moments
    (count, mean (C,), sum of squared deviations (C,)) of each chain's log sigma used to tune it."""

    width: np.ndarray
    count: int
    mean: np.ndarray
    m2: np.ndarray


# --------------------------------------------------------------------------------------------
# Full conditionals, one function each
# --------------------------------------------------------------------------------------------
def gaussian_from_precision(Q: np.ndarray, r: np.ndarray, z: np.ndarray) -> np.ndarray:
    r"""Draw from :math:`N(Q^{-1} r, Q^{-1})` given standard normals ``z``, batched over chains.

    With the Cholesky factor :math:`Q = L L^\top` (L lower triangular),

    .. math::

        \beta = L^{-\top}\left(L^{-1} r + z\right)

    has mean :math:`L^{-\top} L^{-1} r = Q^{-1} r` and covariance
    :math:`L^{-\top} L^{-1} = (L L^\top)^{-1} = Q^{-1}`. (Using :math:`L^{-1} z` instead would give
    covariance :math:`(L^\top L)^{-1}`, a classic bug.) No matrix is inverted.

    Parameters
    ----------
    Q : ndarray (C, p, p)
        Precision matrices.
    r : ndarray (C, p)
        Linear terms.
    z : ndarray (C, p)
        Independent standard normals.
    """
    # step 1: batched Cholesky factor, Q = L L'
    L = np.linalg.cholesky(Q)
    # step 2: w = L^-1 r. (numpy has no batched triangular solve and scipy's loops over the batch
    # in Python; np.linalg.solve on the triangular factor is batched in C and costs O(p^3) too.)
    w = np.linalg.solve(L, r[..., None])
    # step 3: beta = L^-T (w + z)
    return np.linalg.solve(np.swapaxes(L, -1, -2), w + z[..., None])[..., 0]


def draw_beta(rng: sampling.ChainRNG, data: GibbsData, prior: BetaPrior,
              sigma2: np.ndarray) -> np.ndarray:
    r"""Draw :math:`\beta \mid \sigma^2, y` for every chain, shape (C, p).

    Completing the square in :math:`\beta` (with :math:`s = \sigma^2` under the
    Normal-Inverse-Gamma scaling and :math:`s = 1` otherwise):

    .. math::

        \beta \mid \sigma^2, y \sim N(Q^{-1} r,\; Q^{-1}), \qquad
        Q = V_0^{-1}/s + X^\top X / \sigma^2, \qquad
        r = V_0^{-1} m_0 / s + X^\top y / \sigma^2 .

    A flat prior has :math:`V_0^{-1} = 0`. The draw is :func:`gaussian_from_precision`.
    """
    inv_s2 = 1.0 / np.asarray(sigma2, dtype=float)[:, None]  # (C, 1)
    if prior.nig:
        Q = inv_s2[..., None] * prior.precision + inv_s2[..., None] * data.XtX
        r = inv_s2 * prior.precision_mean + inv_s2 * data.Xty
    else:  # the prior's terms do not change: add them as they are
        Q = prior.precision + inv_s2[..., None] * data.XtX
        r = prior.precision_mean + inv_s2 * data.Xty
    return gaussian_from_precision(Q, r, rng.normal((data.p,)))


def residual_terms(data: GibbsData, prior: BetaPrior, beta: np.ndarray):
    r"""The terms through which :math:`\beta` and y enter the full conditional of :math:`\sigma^2`.

    As a function of :math:`\sigma^2`,

    .. math::

        p(y \mid \beta, \sigma^2)\, p(\beta \mid \sigma^2) \propto
        (\sigma^2)^{-k/2} \exp\!\left(-\frac{q}{2\sigma^2}\right),

    with :math:`k = n` and :math:`q = \mathrm{SSR}(\beta)` for the semi-conjugate prior, and
    :math:`k = n + p`, :math:`q = \mathrm{SSR}(\beta) + (\beta - m_0)^\top V_0^{-1}(\beta - m_0)`
    under the Normal-Inverse-Gamma scaling with a proper prior. The SSR is computed from the
    sufficient statistics around the reference point (module docstring).

    Returns
    -------
    k : float
    q : ndarray (C,)
    """
    d = beta - data.center
    ssr = (data.rss_center - 2.0 * (d @ data.Xt_resid_center)
           + np.einsum("ci,ij,cj->c", d, data.XtX, d))
    ssr = np.maximum(ssr, 0.0)  # rounding can leave a tiny negative value at a perfect fit
    if prior.nig and prior.proper:
        e = beta - prior.mean
        return float(data.n + data.p), ssr + np.sum((e @ prior.precision) * e, axis=-1)
    return float(data.n), ssr


def draw_sigma2(rng: sampling.ChainRNG, shape: float, scale, k: float, q) -> np.ndarray:
    r"""Draw :math:`\sigma^2` from its inverse-gamma full conditional, shape (C,).

    With an :math:`\mathrm{InvGamma}(\alpha, b)` prior on :math:`\sigma^2` (or, for the half-Cauchy,
    the mixture's :math:`\mathrm{InvGamma}(1/2, 1/a)`) and the terms :math:`k, q` of
    :func:`residual_terms`, conjugacy gives

    .. math::

        \sigma^2 \mid \beta, y \sim \mathrm{InvGamma}\left(\alpha + \tfrac{k}{2},\;
        b + \tfrac{q}{2}\right),

    drawn as :math:`(b + q/2) / G` with :math:`G \sim \mathrm{Gamma}(\alpha + k/2, 1)`.
    """
    return (scale + 0.5 * q) / rng.gamma(shape + 0.5 * k)


def draw_mixing(rng: sampling.ChainRNG, sigma2: np.ndarray, s: float) -> np.ndarray:
    r"""Draw the half-Cauchy auxiliary variable :math:`a \mid \sigma^2`, shape (C,).

    Wand et al. (2011, Result 5): if :math:`\sigma^2 \mid a \sim \mathrm{InvGamma}(1/2, 1/a)` and
    :math:`a \sim \mathrm{InvGamma}(1/2, 1/s^2)`, then :math:`\sigma \sim \mathrm{HalfCauchy}(s)`.
    Multiplying the two densities,
    :math:`a^{-1/2} e^{-1/(a\sigma^2)} \cdot a^{-3/2} e^{-1/(a s^2)}`, gives

    .. math::

        a \mid \sigma^2 \sim \mathrm{InvGamma}\left(1,\; \frac{1}{s^2} + \frac{1}{\sigma^2}\right),

    drawn as :math:`(1/s^2 + 1/\sigma^2) / E` with
    :math:`E \sim \mathrm{Exp}(1) = \mathrm{Gamma}(1)`.
    """
    return (1.0 / s**2 + 1.0 / sigma2) / rng.exponential()


def log_sigma_conditional(u: np.ndarray, prior: P.Prior, k: float, q: np.ndarray) -> np.ndarray:
    r"""Unnormalized log full conditional of :math:`u = \log\sigma`.

    .. math::

        \log p(u \mid \beta, y) = \log p_\sigma(e^u) + u - k u - \tfrac{q}{2} e^{-2u}
        + \text{const},

    the prior density on the :math:`\sigma` scale, the Jacobian :math:`d\sigma/du = e^u`, and the
    terms of :func:`residual_terms` with :math:`(\sigma^2)^{-k/2} = e^{-ku}`.
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        val = prior.logpdf(np.exp(u)) + (1.0 - k) * u - 0.5 * q * np.exp(-2.0 * u)
    return np.where(np.isnan(val), -np.inf, val)


def slice_log_sigma(rng: sampling.ChainRNG, u0: np.ndarray, prior: P.Prior, k: float,
                    q: np.ndarray, width, max_steps: int = 32, n_shrink: int = 16):
    r"""One slice-sampling update of :math:`u = \log\sigma` per chain (Neal 2003).

    Leaves the density :func:`log_sigma_conditional` invariant. For every chain:

    1. *height*: :math:`\log h = f(u_0) - E`, :math:`E \sim \mathrm{Exp}(1)` (a uniform height
       under the density, on the log scale);
    2. *stepping out* (Neal 2003, Fig. 3): place an interval of length ``width`` at random around
       :math:`u_0` and extend it by ``width`` on either side until both ends lie outside the slice
       :math:`\{u : f(u) > \log h\}`, with at most ``max_steps`` steps in all, split at random
       between the two sides;
    3. *shrinkage* (Neal 2003, Fig. 5): draw uniformly from the interval; accept a point in the
       slice, otherwise move the end on the rejected point's side to it and draw again.

    ``width`` is a scalar or one width per chain (C,). All chains are updated together with
    masks. Each chain takes a fixed block of ``3 +
    n_shrink`` uniforms per update from its own stream; only when some chain needs more than
    ``n_shrink`` shrinkage draws is a further block taken.

    Returns
    -------
    u : ndarray (C,)
        The new points.
    n_evals : ndarray (C,) of int
        Log-density evaluations used by each chain.
    """
    f = log_sigma_conditional
    U = rng.uniform((3 + n_shrink,))
    C = u0.shape[0]
    n_evals = np.ones(C, dtype=int)

    # step 1: slice height
    log_h = f(u0, prior, k, q) - (-np.log1p(-U[:, 0]))  # -log(1 - U) ~ Exp(1)

    # step 2: stepping out
    left = u0 - width * U[:, 1]
    right = left + width
    steps_left = np.floor(max_steps * U[:, 2]).astype(int)
    steps_right = (max_steps - 1) - steps_left
    active = steps_left > 0
    while active.any():
        inside = f(left, prior, k, q) > log_h
        n_evals += active
        active &= inside
        left = np.where(active, left - width, left)
        steps_left -= active
        active &= steps_left > 0
    active = steps_right > 0
    while active.any():
        inside = f(right, prior, k, q) > log_h
        n_evals += active
        active &= inside
        right = np.where(active, right + width, right)
        steps_right -= active
        active &= steps_right > 0

    # step 3: shrinkage
    u = u0.copy()
    todo = np.ones(C, dtype=bool)
    j = 0
    while todo.any():
        if j == n_shrink:  # rare: take another block of uniforms
            U = np.concatenate([U[:, :3], rng.uniform((n_shrink,))], axis=1)
            j = 0
        proposal = left + U[:, 3 + j] * (right - left)
        j += 1
        accept = todo & (f(proposal, prior, k, q) > log_h)
        n_evals += todo
        u = np.where(accept, proposal, u)
        rejected = todo & ~accept
        left = np.where(rejected & (proposal < u0), proposal, left)
        right = np.where(rejected & (proposal >= u0), proposal, right)
        todo = rejected
    return u, n_evals


# --------------------------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------------------------
def _noise_kind(sigma_prior) -> tuple[str, object]:
    """Classify the noise prior as ("known", sigma2), ("ig", prior), ("halfcauchy", s) or
    ("slice", prior)."""
    if isinstance(sigma_prior, P.Constant):
        return "known", positive_scalar("known sigma (Constant value)", sigma_prior.value) ** 2
    if isinstance(sigma_prior, int | float | np.floating | np.integer) and not isinstance(
            sigma_prior, bool):
        return "known", positive_scalar("known sigma", sigma_prior) ** 2
    if not isinstance(sigma_prior, P.Prior):
        raise TypeError(
            "sigma_prior must be a prior from reference.priors or a positive number (known "
            f"sigma); received {sigma_prior!r} ({type(sigma_prior).__name__})."
        )
    if isinstance(sigma_prior, P.InverseGamma) and sigma_prior.on == "sigma2":
        return "ig", sigma_prior
    if isinstance(sigma_prior, P.HalfCauchy):
        return "halfcauchy", float(sigma_prior.beta)
    if isinstance(sigma_prior, SLICE_PRIORS):
        if isinstance(sigma_prior, P.Uniform) and sigma_prior.upper <= 0:
            raise ValueError(f"a Uniform prior on sigma needs upper > 0; received {sigma_prior}.")
        return "slice", sigma_prior
    allowed = ("InverseGamma, HalfCauchy, HalfNormal, HalfStudentT, Exponential, "
               "TruncatedNormal, Uniform, Constant or a number")
    raise ValueError(
        f"sigma_prior {sigma_prior} is not supported for the noise sd (it needs a prior on "
        f"sigma > 0); allowed: {allowed}."
    )


def _check_names(names, p: int, with_sigma: bool) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of {p} coefficient names; received {names!r}.")
    names = list(names)
    if len(names) != p:
        raise ValueError(f"names has {len(names)} entries but X has {p} columns; they must match.")
    if not all(isinstance(nm, str) and nm for nm in names):
        raise TypeError(f"names must be non-empty strings; received {names!r}.")
    if len(set(names)) != p:
        dup = sorted({nm for nm in names if names.count(nm) > 1})
        raise ValueError(f"names must be unique; received duplicates {dup}.")
    if with_sigma and "sigma" in names:
        raise ValueError("'sigma' is the noise sd and cannot also name a coefficient.")
    return names


def _build_kernel(X, y, *, names, beta_mean, beta_cov, sigma_prior, nig):
    """:func:`gibbs_kernel` and the :class:`LinearSetup` it was built from."""
    data = X if isinstance(X, GibbsData) else None
    if data is not None:
        if y is not None:
            raise ValueError("pass either GibbsData alone or X and y, not GibbsData and y.")
    else:
        if y is None:
            raise ValueError("y is missing: pass X and y, or a GibbsData.")
        data = GibbsData.from_arrays(X, y)
    kind, noise = _noise_kind(sigma_prior)
    names = _check_names(names, data.p, with_sigma=kind != "known")
    prior = BetaPrior.build(data.p, beta_mean, beta_cov, nig)
    if not prior.proper:
        eig = np.linalg.eigvalsh(data.XtX)
        if eig[0] <= 1e-12 * max(eig[-1], 0.0):
            raise ValueError(
                f"a flat prior on the coefficients (beta_cov=None) needs X'X to be invertible, "
                f"but it is singular for these {data.p} columns; give a proper beta_cov."
            )

    # a rough noise variance, to start the chains at dispersed but sensible values
    dof = data.n - data.p if data.n > data.p else data.n
    s2_hat = data.rss_center / dof if data.rss_center > 0 else max(data.yty / data.n, 1.0)

    def init(rng: sampling.ChainRNG) -> GibbsState:
        C = rng.chains
        if kind == "known":
            sigma2 = np.full(C, noise)
        else:
            sigma2 = s2_hat * np.exp(rng.normal())  # dispersed by a factor e^{+-1}
        return GibbsState(np.broadcast_to(data.center, (C, data.p)).copy(), sigma2, sigma2.copy())

    def step(rng: sampling.ChainRNG, state: GibbsState, params):
        # step 1: coefficients given the noise
        beta = draw_beta(rng, data, prior, state.sigma2)
        if kind == "known":
            return GibbsState(beta, state.sigma2, state.mixing), GibbsInfo()
        # step 2: the noise given the coefficients
        k, q = residual_terms(data, prior, beta)
        if kind == "ig":
            sigma2 = draw_sigma2(rng, noise.alpha, noise.beta, k, q)
            return GibbsState(beta, sigma2, state.mixing), GibbsInfo()
        if kind == "halfcauchy":
            mixing = draw_mixing(rng, state.sigma2, noise)
            sigma2 = draw_sigma2(rng, 0.5, 1.0 / mixing, k, q)
            return GibbsState(beta, sigma2, mixing), GibbsInfo()
        u, n_evals = slice_log_sigma(rng, 0.5 * np.log(state.sigma2), noise, k, q, params.width)
        return GibbsState(beta, np.exp(2.0 * u), state.mixing), SliceInfo(n_evals)

    def positions(state: GibbsState) -> dict:
        out = {nm: state.beta[:, j] for j, nm in enumerate(names)}
        if kind != "known":
            out["sigma"] = np.sqrt(state.sigma2)
        return out

    adapt_init = adapt_update = None
    if kind == "slice":
        def adapt_init(state: GibbsState) -> SliceParams:
            C = state.sigma2.shape[0]
            return SliceParams(width=np.ones(C), count=0, mean=np.zeros(C), m2=np.zeros(C))

        def adapt_update(params: SliceParams, state: GibbsState, info, i: int,
                         tune: int) -> SliceParams:
            # Each chain's width becomes 3 x the sd of its own log sigma over the second half of
            # warmup (Welford's running update), so a chain never depends on the others.
            if i < tune // 2:
                return params
            u = 0.5 * np.log(state.sigma2)
            count = params.count + 1
            delta = u - params.mean
            mean = params.mean + delta / count
            m2 = params.m2 + delta * (u - mean)
            width = params.width
            if count >= 10:
                width = np.where(m2 > 0, 3.0 * np.sqrt(m2 / (count - 1)), width)
            return SliceParams(width, count, mean, m2)

    kernel = sampling.Kernel(init=init, step=step, positions=positions, adapt_init=adapt_init,
                             adapt_update=adapt_update)
    return kernel, LinearSetup(data, prior, kind, noise, names)


def gibbs_kernel(X, y=None, *, names, beta_mean=0.0, beta_cov, sigma_prior,
                 nig: bool = False) -> sampling.Kernel:
    r"""The Gibbs sampler of the module docstring as a :class:`reference.sampling.Kernel`.

    Parameters
    ----------
    X : array_like (n, p) or GibbsData
        Design matrix (include a column of ones for an intercept), or precomputed statistics
        (then ``y`` must be omitted). The kernel keeps only the statistics, never the rows.
    y : array_like (n,)
        Response.
    names : sequence of str
        One name per column, as Bambi names them (``"Intercept"``, ``"x"``, ...).
    beta_mean : float or array_like (p,)
        Prior mean :math:`m_0`.
    beta_cov : float, array_like (p,) or (p, p), or None
        Prior covariance :math:`V_0` (a scalar is :math:`vI`, a vector the diagonal); ``None`` is
        a flat prior. Under ``nig=True`` it is in units of :math:`\sigma^2`.
    sigma_prior : Prior or float
        Prior on the noise sd (see the module table); a number or ``Constant`` fixes it.
    nig : bool
        Scale the coefficients' prior covariance by :math:`\sigma^2`.

    Returns
    -------
    Kernel
        Positions: one scalar per coefficient name, and ``sigma`` unless it is known.
    """
    return _build_kernel(X, y, names=names, beta_mean=beta_mean, beta_cov=beta_cov,
                         sigma_prior=sigma_prior, nig=nig)[0]


def linear_gibbs(X, y=None, *, names, beta_mean=0.0, beta_cov, sigma_prior, nig: bool = False,
                 draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0,
                 thin: int = 1, observed_data: dict | None = None, fast: bool = False):
    """Fit the linear regression by Gibbs sampling and return an ArviZ ``DataTree``.

    Arguments are those of :func:`gibbs_kernel` and :func:`reference.sampling.run`. The posterior
    holds one scalar variable per coefficient name plus ``sigma`` (unless sigma is known); the
    half-Cauchy's auxiliary variable is not reported.

    ``fast=True`` runs the same sweeps compiled with numba (:mod:`reference._fast_gibbs`) when the
    noise has an exact conditional (known, ``InverseGamma`` on sigma^2, ``HalfCauchy``); the
    draws are those of the numpy kernel for the same seed, up to rounding. Otherwise, or when
    numba cannot be imported (a warning says so), the numpy kernel runs. The posterior's
    ``sampler_path`` attribute says which ran.
    """
    kernel, setup = _build_kernel(X, y, names=names, beta_mean=beta_mean, beta_cov=beta_cov,
                                  sigma_prior=sigma_prior, nig=nig)
    attrs = {
        "algorithm": "Gibbs sampler (sufficient statistics), "
                     + ("Normal-Inverse-Gamma" if nig else "semi-conjugate") + " prior",
        "sigma_prior": str(sigma_prior),
        "references": "Gelfand and Smith 1990; Wand et al. 2011; Neal 2003",
    }
    fast_module = _fast_module() if fast and setup.kind != "slice" else None
    if fast_module is None:
        attrs["sampler_path"] = "numpy"
        return sampling.sample(kernel, observed_data=observed_data, attrs=attrs, draws=draws,
                               tune=tune, chains=chains, seed=seed, thin=thin)
    attrs["sampler_path"] = "numba"
    out = _run_fast(fast_module, kernel, setup, draws=draws, tune=tune, chains=chains,
                    seed=seed, thin=thin)
    return sampling.to_datatree(out, observed_data=observed_data, attrs=attrs, seed=seed)


def _fast_module():
    """:mod:`reference._fast_gibbs`, or None (with a warning) when numba cannot be imported."""
    try:
        from reference import _fast_gibbs
    except Exception as exc:  # numba absent or broken: the numpy kernel gives the same draws
        import warnings

        warnings.warn(f"fast=True needs numba, which could not be imported ({exc!r}); running "
                      "the numpy kernel instead (same draws, slower).", RuntimeWarning,
                      stacklevel=3)
        return None
    return _fast_gibbs


def _run_fast(fast_module, kernel: sampling.Kernel, setup: LinearSetup, *, draws: int,
              tune: int, chains: int, seed: int, thin: int) -> sampling.Run:
    """Run the compiled chains from the kernel's own initial state and random streams, and
    return what :func:`reference.sampling.run` returns."""
    draws = integer("draws", draws, 1)
    tune = integer("tune", tune, 0)
    thin = integer("thin", thin, 1)
    rng = sampling.ChainRNG(seed, chains)
    state = kernel.init(rng)
    beta, sigma2 = fast_module.run_chains(rng.generators, state, setup.data, setup.prior,
                                          setup.kind, setup.noise, tune=tune, draws=draws,
                                          thin=thin)
    posterior = {nm: beta[:, :, j] for j, nm in enumerate(setup.names)}
    if setup.kind != "known":
        posterior["sigma"] = np.sqrt(sigma2)
    return sampling.Run(posterior, {}, None, {}, {})
