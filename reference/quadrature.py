r"""Deterministic gold standard for (hierarchical) Gaussian regression: quadrature over the scales.

The model (see :mod:`reference.design`) is

.. math::

    y = X\beta + \sum_t Z_t b_t + \varepsilon, \qquad
    \beta \sim N(m, V), \qquad b_{t,j} \sim N(0, \tau_t^2), \qquad
    \varepsilon_i \sim N(0, \sigma^2 / w_i),

with a few unknown *scales* :math:`\phi = (\tau_1, \dots, \tau_T, \sigma)`; a scale with a
``Constant`` prior (or ``sigma=`` given) is held fixed. Given :math:`\phi` the model is linear
and Gaussian in :math:`\theta = (\beta, b_1, \dots, b_T)`, so both :math:`\theta \mid y, \phi`
and :math:`p(y \mid \phi)` are closed form; only the low-dimensional :math:`\phi` is integrated
numerically.

Conditional on the scales
-------------------------
Write :math:`W = [X, Z_1, \dots]`, :math:`\Omega = \mathrm{diag}(w)`, :math:`H = W^\top\Omega W`,
the prior mean :math:`m_0 = (m, 0)` and the residual :math:`r = y - W m_0`. Standardize the
coefficients, :math:`\theta = m_0 + T u` with :math:`u \sim N(0, I)` a priori and
:math:`T = \mathrm{blockdiag}(L_V, \tau_1 I, \dots, \tau_T I)`, :math:`L_V L_V^\top = V`. Then

.. math::

    P_u = I + T^\top H T / \sigma^2, \qquad g = T^\top W^\top \Omega r / \sigma^2,
    \qquad L L^\top = P_u, \qquad v = L^{-1} g,

and :math:`\theta \mid y, \phi \sim N(m_0 + T L^{-\top} v,\; T P_u^{-1} T^\top)`. The marginal
covariance of :math:`y` is :math:`S = \sigma^2\Omega^{-1} + W T T^\top W^\top`; the matrix
determinant lemma gives :math:`|S| = \sigma^{2n} |\Omega|^{-1} |P_u|` and the Woodbury identity
gives :math:`r^\top S^{-1} r = r^\top\Omega r / \sigma^2 - \|v\|^2`, so

.. math::

    \log p(y \mid \phi) = -\tfrac n2 \log 2\pi + \tfrac12 \sum_i \log w_i - n \log\sigma
        - \sum_k \log L_{kk} - \tfrac12\left(r^\top\Omega r/\sigma^2 - \|v\|^2\right).

One Cholesky factorization of the bordered matrix
:math:`\begin{pmatrix} P_u & g \\ g^\top & r^\top\Omega r/\sigma^2 + 1 \end{pmatrix}` delivers
:math:`L`, :math:`v` (its last row) and :math:`r^\top S^{-1} r` (its last diagonal entry squared,
minus 1). Everything is formed from the sufficient statistics :math:`H`, :math:`W^\top\Omega y`
and :math:`y^\top\Omega y` (:func:`reference.design.sufficient_stats`), so a grid point costs one
Cholesky factorization of a :math:`(p + J + 1)` matrix whatever the number of rows. The
standardized form keeps :math:`P_u` well conditioned as :math:`\tau \to 0` (it tends to
:math:`I`), which is where heavy-tailed priors such as ``HalfCauchy`` put posterior mass.

Block elimination when all group terms share one factor
-------------------------------------------------------
A dense factorization costs :math:`O((p + J)^3)` per grid point, where :math:`J` counts the
effects of all terms. When every term uses the same grouping factor (``(1|g)`` and ``(x|g)``,
i.e. ``(x|g)`` in a formula), each row touches the effects of a single level, so the effects of
different levels never meet in :math:`H`: ordered level by level, the effects block of
:math:`P_u` is block diagonal, one :math:`k \times k` block :math:`D_j` per level (:math:`k`
terms, :math:`J` levels). Order the unknowns as :math:`(u_{b,1}, \dots, u_{b,J}, u_\beta)` (a
symmetric permutation, which changes neither determinants nor quadratic forms) and write

.. math::

    P_u = \begin{pmatrix} D & B^\top \\ B & A \end{pmatrix}, \qquad
    D = \mathrm{blockdiag}(D_1, \dots, D_J), \qquad B = (B_1, \dots, B_J), \qquad
    g = (g_1, \dots, g_J, g_\beta),

with :math:`B_j` the :math:`p \times k` coupling of the coefficients with level :math:`j`. The
Cholesky factor of the bordered matrix is then, block by block (Golub and Van Loan 2013,
section 4.2; the Schur complement of :math:`D`),

.. math::

    L_j L_j^\top = D_j, \quad C_j = B_j L_j^{-\top}, \quad v_j = L_j^{-1} g_j, \quad
    S = A - \sum_j C_j C_j^\top = L_S L_S^\top, \quad
    v_\beta = L_S^{-1}\Big(g_\beta - \sum_j C_j v_j\Big),

    L = \begin{pmatrix} L_D & 0 \\ C & L_S \end{pmatrix}, \qquad
    \log|L| = \sum_j \log|L_j| + \log|L_S|, \qquad
    \|v\|^2 = \sum_j \|v_j\|^2 + \|v_\beta\|^2,

which is all the log evidence needs. The conditional mean :math:`a = P_u^{-1} g = L^{-\top} v`
follows by back substitution, :math:`a_\beta = L_S^{-\top} v_\beta` and
:math:`a_j = L_j^{-\top}(v_j - C_j^\top a_\beta)`. For the variances,
:math:`P_u^{-1} = L^{-\top} L^{-1}` with

.. math::

    L^{-1} = \begin{pmatrix} L_D^{-1} & 0 \\ -L_S^{-1} C L_D^{-1} & L_S^{-1} \end{pmatrix},

so the column of :math:`L^{-1}` belonging to effect :math:`(j, t)` is :math:`E_j e_t` in the rows
of level :math:`j` (:math:`E_j = L_j^{-1}`) and :math:`-M_j e_t` in the coefficient rows
(:math:`M_j = L_S^{-1} C_j E_j`), and

.. math::

    \mathrm{Var}(u_{jt}) = \|E_j e_t\|^2 + \|M_j e_t\|^2, \qquad
    \mathrm{Cov}(u_\beta) = L_S^{-\top} L_S^{-1};

a covariance is the dot product of two such columns (the level parts meet only within one
level). Each grid point costs :math:`O(J k^3 + J k p^2 + p^3)`. Nothing is lost in stability:
:math:`P_u \succeq I` implies :math:`D_j \succeq I` and :math:`S \succeq I`. The :math:`J` small
factorizations of all grid points in a batch run as a few array operations per matrix entry
(the blocks are stored entry first, ``D[a, b]`` an array over points and levels). Crossed or
nested factors keep the dense factorization; ``fast=False`` forces it.

Integrating over the scales
---------------------------
Each free scale is mapped to the real line, :math:`\eta = \log\phi` (or
:math:`\eta = \mathrm{logit}((\phi - a)/(b - a))` for a ``Uniform(a, b)`` prior), and the
unnormalized log posterior :math:`f(\eta) = \log p(y\mid\phi) + \sum_k \log p_k(\phi_k)
+ \log|d\phi/d\eta|` is integrated on a tensor grid, in the spirit of the grid exploration of
INLA (Rue, Martino and Chopin 2009, section 3.1):

1. find the mode :math:`\hat\eta` of :math:`f` (L-BFGS-B) and its curvature (finite-difference
   Hessian), whose inverse gives a standard deviation :math:`s_k` per axis;
2. stretch each axis, :math:`\eta_k = \hat\eta_k + s_k A \sinh(z_k / A)` with :math:`A = 3`: near
   the mode a unit step in :math:`z` is one standard deviation, in the tails the step grows
   exponentially, so the long one-sided tails of a log scale (the posterior of
   :math:`\log\tau` decays only like :math:`\tau` as :math:`\tau \to 0`) cost a few nodes. The map
   is analytic, which keeps the trapezoid rule in :math:`z` exponentially convergent
   (Trefethen and Weideman 2014, section 13);
3. lay a unit-spaced grid in :math:`z`, move each face of the box outward until :math:`f` on it
   is ``tail`` (25) below the maximum, then inward to the last slice that is, so the neglected
   mass is about :math:`e^{-25}`;
4. apply the trapezoid rule and estimate, axis by axis, its error as the change of every result
   when that axis uses only every other node (Richardson-style comparison of nested grids).
   Halve the spacing of each axis whose change exceeds ``rtol / D`` (only the new nodes are
   evaluated) and repeat until the summed change is below ``rtol``: nats for the log evidence,
   posterior standard deviations for the means and standard deviations (``sqrt(rtol)`` for the
   scale quantiles, whose sinc-series CDF converges at half the exponential rate). As
   the rule converges geometrically this change, which is the error of a grid twice as coarse,
   bounds the error of the reported grid with a wide margin.

The marginal of a coefficient is the mixture :math:`\sum_g \omega_g N(\mu_g, s_g^2)` of the
conditional posteriors over the grid nodes :math:`g` with normalized trapezoid weights
:math:`\omega_g`; its quantiles are found by safeguarded Newton iterations on the mixture CDF.
The marginal of a scale is its grid density on the :math:`z` axis, represented by its cardinal
(sinc) series, whose integral is closed form through the sine integral (Stenger 1993), so its
quantiles converge as fast as the trapezoid rule.

References
----------
.. [1] Rue, H., Martino, S. and Chopin, N. (2009). Approximate Bayesian inference for latent
   Gaussian models by using integrated nested Laplace approximations. *JRSS B* 71(2), 319-392.
.. [2] Trefethen, L. N. and Weideman, J. A. C. (2014). The exponentially convergent trapezoidal
   rule. *SIAM Review* 56(3), 385-458.
.. [3] Gelman, A. et al. (2013). *Bayesian Data Analysis*, 3rd ed., section 5.4 (the hierarchical
   normal model computed on a grid over :math:`\tau`).
.. [4] Rasmussen, C. E. and Williams, C. K. I. (2006). *Gaussian Processes for Machine
   Learning*, appendix A.3 (matrix determinant lemma and Woodbury identity).
.. [5] Stenger, F. (1993). *Numerical Methods Based on Sinc and Analytic Functions*. Springer.
.. [6] Golub, G. H. and Van Loan, C. F. (2013). *Matrix Computations*, 4th ed. Johns Hopkins
   University Press, sections 3.2 and 4.2 (block LU and Cholesky, Schur complements).

Examples
--------
Linear regression with unknown noise: a one-dimensional grid over :math:`\sigma`.

>>> from reference.priors import HalfNormal
>>> quad = ScaleQuadrature([[1, 0], [1, 1], [1, 2], [1, 3]], [1, 2, 4, 3.5],
...                        names=["Intercept", "x"], beta_mean=0.0, beta_cov=10.0,
...                        sigma_prior=HalfNormal(2.0))
>>> quad.converged, quad.scale_names
(True, ['sigma'])
>>> bool(quad.error["log_evidence"] < 1e-6)
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import linalg, optimize, special

from reference._validation import positive_scalar, spd_matrix, vector
from reference.design import GroupTerm, sufficient_stats
from reference.priors import Constant, Flat, Prior, Uniform

__all__ = ["GaussianMixture", "GridMarginal", "ScaleQuadrature"]

LOG_2PI = np.log(2.0 * np.pi)
#: stretch of the sinh map: within about A standard deviations of the mode a grid step is one sd
_STRETCH = 3.0


# --------------------------------------------------------------------------------------------
# Marginal distributions returned to the user
# --------------------------------------------------------------------------------------------
class GaussianMixture:
    r"""Finite mixture :math:`\sum_g \omega_g N(\mu_g, s_g^2)`: the marginal of one coefficient.

    ``mean()``, ``var()`` and ``std()`` are exact for the mixture
    (:math:`E = \sum\omega\mu`, :math:`\mathrm{Var} = \sum\omega(s^2 + \mu^2) - E^2`).
    ``ppf`` solves ``cdf(x) = q`` by Halley steps safeguarded by bisection, to about 1e-12
    standard deviations. Components with weight below 1e-16 of the largest are dropped (their
    total weight is below 1e-16 times their number).

    Sums over the components use ``np.einsum``, not ``@``: a multithreaded BLAS dot product
    of two long vectors was measured 100 times slower than einsum when other processes keep
    the cores busy.
    """

    def __init__(self, weights, means, sds):
        w = np.asarray(weights, dtype=float)
        means, sds = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
        keep = w > 1e-16 * w.max()
        if not keep.all():
            w, means, sds = w[keep], means[keep], sds[keep]
        self.weights, self.means, self.sds = w / w.sum(), means, sds
        self._mean = float(np.einsum("g,g->", self.weights, self.means))
        second = np.einsum("g,g->", self.weights, self.sds**2 + self.means**2)
        self._var = float(max(second - self._mean**2, 0.0))
        # for the root finding: 1 / s_g and the density factor omega_g / (sqrt(2 pi) s_g)
        self._inv_sd = 1.0 / self.sds
        self._dens_coef = self.weights * self._inv_sd / np.sqrt(2 * np.pi)

    def mean(self) -> float:
        return self._mean

    def var(self) -> float:
        return self._var

    def std(self) -> float:
        return float(np.sqrt(self._var))

    def _over_components(self, x, term) -> np.ndarray:
        """``sum_g term(z_g) * c_g`` at every point x, a few points at a time (bounded memory)."""
        x = np.asarray(x, dtype=float)
        flat = x.ravel()
        out = np.empty(flat.shape)
        step = max(1, int(4e6 // len(self.means)))
        for a in range(0, len(flat), step):
            z = (flat[a:a + step, None] - self.means) * self._inv_sd
            out[a:a + step] = term(z)
        return out.reshape(x.shape)[()]

    def pdf(self, x):
        return self._over_components(
            x, lambda z: np.einsum("xg,g->x", np.exp(-0.5 * z * z), self._dens_coef))

    def cdf(self, x):
        return self._over_components(
            x, lambda z: np.einsum("xg,g->x", special.ndtr(z), self.weights))

    def _cdf_derivatives(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CDF, density and the density's derivative at the points ``x`` (1-D)."""
        z = (x[:, None] - self.means) * self._inv_sd
        dens = np.exp(-0.5 * z * z)
        dens *= self._dens_coef
        return (np.einsum("xg,g->x", special.ndtr(z), self.weights), dens.sum(axis=1),
                -np.einsum("xg,xg,g->x", dens, z, self._inv_sd))

    def ppf(self, q):
        r"""Quantiles: the root of :math:`F(x) - q` by Halley's method.

        With the Newton step :math:`\delta_N = (F(x) - q) / f(x)`, Halley's step
        :math:`\delta_N / (1 - \delta_N f'(x) / (2 f(x)))` converges cubically, so from the
        normal approximation two steps usually reach 1e-12 sds; iterations stop when
        :math:`|\delta_N|` is below that. Where the Halley or the Newton step leaves the bracket
        known to hold the root (or is undefined, where the density underflows), the iteration
        bisects instead.
        """
        q = np.asarray(q, dtype=float)
        if np.any(~((q > 0) & (q < 1))):
            raise ValueError(f"ppf needs probabilities strictly between 0 and 1; received {q}.")
        qf = q.ravel()
        # bracket: every component is below q at lo and above it at hi
        lo = np.full(qf.shape, np.min(self.means - 40 * self.sds))
        hi = np.full(qf.shape, np.max(self.means + 40 * self.sds))
        x = np.clip(self.mean() + self.std() * special.ndtri(qf), lo, hi)
        tol = 1e-12 * max(self.std(), np.finfo(float).tiny)
        for _ in range(200):
            F, f, df = self._cdf_derivatives(x)
            F -= qf
            lo, hi = np.where(F < 0, x, lo), np.where(F >= 0, x, hi)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                newton = F / f
                step = newton / (1.0 - 0.5 * newton * (df / f))
            if np.all(np.abs(newton) < tol):
                break
            # Halley where both it and the Newton step stay inside the bracket (the local
            # model holds; far in a tail Halley's step would crawl), bisection elsewhere
            trial = x - step
            ok = np.isfinite(trial) & (trial >= lo) & (trial <= hi) \
                & (x - newton >= lo) & (x - newton <= hi)
            x = np.where(ok, trial, 0.5 * (lo + hi))
        return x.reshape(q.shape)[()]


class GridMarginal:
    r"""Marginal posterior of one scale :math:`\phi = h(z)`, from its weights on a uniform z grid.

    The density of :math:`z` is represented by its cardinal (sinc) series through the grid
    nodes, :math:`p(z) = \sum_i p_i \,\mathrm{sinc}((z - z_i)/h)`, whose indefinite integral is
    closed form through the sine integral :math:`\mathrm{Si}`:

    .. math::

        F(z) = \sum_i \omega_i \left(\tfrac12 + \tfrac1\pi \mathrm{Si}(\pi (z - z_i) / h)\right),
        \qquad \omega_i = h\, p_i .

    For a density that is analytic in a strip and decays at both ends this converges as fast
    as the trapezoid rule itself (Stenger 1993, section 4.5), so quantiles are as accurate as
    the moments. ``ppf`` solves :math:`F(z) = q` with Brent's method; ``mean()`` and ``std()``
    are the trapezoid sums over the grid.

    References
    ----------
    Stenger, F. (1993). *Numerical Methods Based on Sinc and Analytic Functions*. Springer.
    """

    def __init__(self, name, axis_map, nodes, node_weights, mean, std):
        self.name = name
        self._map = axis_map
        self._z = np.asarray(nodes, dtype=float)
        w = np.asarray(node_weights, dtype=float)
        self._w = w / w.sum()
        self._h = self._z[1] - self._z[0] if len(self._z) > 1 else 1.0
        self._mean, self._std = float(mean), float(std)

    def _cdf_z(self, z):
        t = np.pi * (np.asarray(z, dtype=float)[..., None] - self._z) / self._h
        return np.clip((0.5 + special.sici(t)[0] / np.pi) @ self._w, 0.0, 1.0)

    def mean(self) -> float:
        return self._mean

    def std(self) -> float:
        return self._std

    def var(self) -> float:
        return self._std**2

    def cdf(self, x):
        return self._cdf_z(self._map.to_z(np.asarray(x, dtype=float)))[()]

    def pdf(self, x):
        """Density of the scale itself: the z density divided by :math:`|d\\phi/dz|`."""
        z = self._map.to_z(np.asarray(x, dtype=float))
        dens_z = np.sinc((z[..., None] - self._z) / self._h) @ self._w / self._h
        with np.errstate(invalid="ignore"):
            out = np.maximum(dens_z, 0.0) * np.exp(-self._map.log_jacobian(z))
        return np.where(np.isfinite(z), out, 0.0)[()]

    def ppf(self, q):
        q = np.asarray(q, dtype=float)
        if np.any(~((q > 0) & (q < 1))):
            raise ValueError(f"ppf needs probabilities strictly between 0 and 1; received {q}.")
        lo, hi = self._z[0] - self._h, self._z[-1] + self._h
        F_lo, F_hi = float(self._cdf_z(lo)), float(self._cdf_z(hi))
        out = []
        for p in q.ravel():
            if p <= F_lo or p >= F_hi:  # beyond the grid, where the mass is below e^-tail
                z = lo if p <= F_lo else hi
            else:
                z = optimize.brentq(lambda e, p=p: float(self._cdf_z(e)) - p, lo, hi,
                                    xtol=1e-14, rtol=1e-15)
            out.append(float(self._map.to_scale(z)))
        return np.reshape(out, q.shape)[()]


# --------------------------------------------------------------------------------------------
# Scales: map from the real line, prior
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _AxisMap:
    r"""The map of a grid coordinate :math:`z` to a scale :math:`\phi`, through :math:`\eta`.

    :math:`\eta = c + s A \sinh(z / A)` (the stretch around the mode ``c`` with sd ``s``), then
    :math:`\phi = e^\eta`, or :math:`\phi = a + (b - a)\,\mathrm{expit}(\eta)` when the prior
    lives on the interval ``(lower, upper)``. With ``center=0, sd=1`` and no stretch
    (``stretch=None``) the map is :math:`\eta \mapsto \phi` alone.
    """

    lower: float = 0.0
    upper: float | None = None
    center: float = 0.0
    sd: float = 1.0
    stretch: float | None = None

    def eta(self, z):
        z = np.asarray(z, dtype=float)
        if self.stretch is None:
            return self.center + self.sd * z
        return self.center + self.sd * self.stretch * np.sinh(z / self.stretch)

    def to_scale(self, z):
        eta = self.eta(z)
        if self.upper is None:
            return np.exp(eta)
        return self.lower + (self.upper - self.lower) * special.expit(eta)

    def to_z(self, phi):
        phi = np.asarray(phi, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.upper is None:
                eta = np.where(phi > 0, np.log(np.where(phi > 0, phi, 1.0)), -np.inf)
            else:
                u = (phi - self.lower) / (self.upper - self.lower)
                eta = np.where(u <= 0, -np.inf, np.where(u >= 1, np.inf, special.logit(u)))
            x = (eta - self.center) / self.sd
            return x if self.stretch is None else self.stretch * np.arcsinh(x / self.stretch)

    def log_jacobian(self, z):
        r""":math:`\log|d\phi/dz|`."""
        z = np.asarray(z, dtype=float)
        eta = self.eta(z)
        if self.upper is None:
            out = eta
        else:
            out = np.log(self.upper - self.lower) + special.log_expit(eta) + special.log_expit(-eta)
        if self.stretch is not None:
            a = np.abs(z / self.stretch)  # log cosh, stable for large arguments
            out = out + np.log(self.sd) + a + np.log1p(np.exp(-2 * a)) - np.log(2.0)
        elif self.sd != 1.0:
            out = out + np.log(self.sd)
        return out

    def stretched(self, center: float, sd: float) -> _AxisMap:
        return _AxisMap(self.lower, self.upper, float(center), float(sd), _STRETCH)


def _scale_map(name: str, prior: Prior) -> _AxisMap:
    """The real-line map of a free scale, or a clear error if its prior cannot be used."""
    if isinstance(prior, Flat):
        raise ValueError(
            f"{name}: a Flat prior is improper, so the evidence and the grid integral are "
            "undefined; use a proper prior on the positive half-line (HalfNormal, HalfCauchy, ...)."
        )
    if isinstance(prior, Uniform):
        if prior.lower < 0:
            raise ValueError(f"{name} is a scale and must be positive, but its prior {prior} "
                             "puts mass below 0; use Uniform(lower >= 0, upper).")
        return _AxisMap(prior.lower, prior.upper)
    if prior.support != "positive":
        raise ValueError(
            f"{name} is a scale: its prior must live on (0, inf), but {prior} has support "
            f"{prior.support!r}; use HalfNormal, HalfCauchy, HalfStudentT, Exponential, "
            "InverseGamma, TruncatedNormal or Uniform(0, upper)."
        )
    return _AxisMap()


# --------------------------------------------------------------------------------------------
# The conditional Gaussian model, vectorized over grid points
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _LevelBlocks:
    r"""``K`` and ``k0`` cut into per-level blocks, when every group term shares one factor.

    With :math:`k` terms on one factor of :math:`J` levels, the effect of term :math:`t` at
    level :math:`j` is theta component ``p + t * J + j``. Entry-first layout: ``Kbb[a, b, j]``
    couples terms ``a`` and ``b`` at level ``j``, ``Kbx[t, i, j]`` couples term ``t`` at level
    ``j`` with coefficient ``i``, ``kb[t, j]`` is the matching entry of ``k0``; ``Kxx`` and
    ``kx`` are the coefficient blocks. The small-matrix indices come first so that each entry of
    the J small blocks is one contiguous array over (grid point, level), and the block algebra
    is a handful of array operations per entry (see :func:`_small_cholesky`).
    """

    Kbb: np.ndarray  # (k, k, J)
    Kbx: np.ndarray  # (k, p, J)
    Kxx: np.ndarray  # (p, p)
    kb: np.ndarray   # (k, J)
    kx: np.ndarray   # (p,)

    @property
    def n_terms(self) -> int:
        return self.Kbb.shape[0]

    @property
    def n_levels(self) -> int:
        return self.Kbb.shape[2]


@dataclass(frozen=True)
class _Conditional:
    """Quantities that do not depend on the scales, formed once from the sufficient statistics.

    ``K = T0' H T0`` and ``k0 = T0' W' Omega r`` with ``T0 = blockdiag(L_V, I)``; the scales
    enter only through ``diag(s) = diag(1_p, tau of each level)`` and ``sigma``. ``blocks``
    holds the per-level blocks used by block elimination, or None for the dense path.
    """

    K: np.ndarray
    k0: np.ndarray
    rr: float  # r' Omega r
    m0: np.ndarray
    LV: np.ndarray
    const: float  # -n/2 log 2pi + 1/2 sum log w
    n: int
    p: int
    term_of_level: np.ndarray  # (J,) index of the group term of each level column
    blocks: _LevelBlocks | None = None


def _one_factor(groups) -> bool:
    """Whether every group term uses the same grouping factor (identical codes per row)."""
    return len(groups) > 0 and all(
        g.n_levels == groups[0].n_levels and np.array_equal(g.codes, groups[0].codes)
        for g in groups)


def _level_blocks(K: np.ndarray, k0: np.ndarray, p: int, n_terms: int) -> _LevelBlocks:
    """Gather the per-level blocks of ``K`` and ``k0`` (theta ordered term by term)."""
    J = (len(k0) - p) // n_terms
    col = p + np.arange(n_terms)[:, None] * J + np.arange(J)      # (k, J): theta index of b_tj
    return _LevelBlocks(Kbb=K[col[:, None, :], col[None, :, :]],
                        Kbx=K[col[:, None, :], np.arange(p)[None, :, None]],
                        Kxx=K[:p, :p], kb=k0[col], kx=k0[:p])


def _build_conditional(X, y, groups, weights, beta_mean, beta_cov,
                       blocks: bool = False) -> _Conditional:
    """Scale-free quantities; with ``blocks`` (one grouping factor only) the level blocks too."""
    st = sufficient_stats(X, y, groups, weights)
    p, d = st.p, st.WtW.shape[0]
    m0 = np.concatenate([beta_mean, np.zeros(d - p)])
    LV = linalg.cholesky(beta_cov, lower=True)
    T0 = np.eye(d)
    T0[:p, :p] = LV
    g0 = st.Wty - st.WtW @ m0                                 # W' Omega (y - W m0)
    rr = float(st.yty - 2 * m0 @ st.Wty + m0 @ st.WtW @ m0)   # (y - W m0)' Omega (y - W m0)
    K = T0.T @ st.WtW @ T0
    K = 0.5 * (K + K.T)
    k0 = T0.T @ g0
    term_of_level = np.concatenate(
        [np.full(b.stop - b.start, t, dtype=int) for t, b in enumerate(st.blocks[1:])]
        + [np.zeros(0, dtype=int)])
    const = -0.5 * st.n * LOG_2PI + 0.5 * st.log_weights_sum
    level_blocks = _level_blocks(K, k0, p, len(groups)) if blocks else None
    return _Conditional(K, k0, rr, m0, LV, const, st.n, p, term_of_level, level_blocks)


def _chunk_size(d: int) -> int:
    """Grid points per batch so that the stacked (d, d) matrices take about 32 MB."""
    return max(1, int(4e6 // (d * d)))


def _cholesky_stack(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Cholesky; a matrix that is numerically not positive definite is flagged."""
    try:
        return np.linalg.cholesky(M), np.ones(len(M), dtype=bool)
    except np.linalg.LinAlgError:
        L = np.zeros_like(M)
        ok = np.ones(len(M), dtype=bool)
        for i, m in enumerate(M):
            try:
                L[i] = np.linalg.cholesky(m)
            except np.linalg.LinAlgError:
                L[i] = np.eye(len(m))
                ok[i] = False
        return L, ok


def _fill_precision(c: _Conditional, tau: np.ndarray, sigma: np.ndarray, out: np.ndarray):
    r"""Write :math:`P_u = I + \mathrm{diag}(u) K \mathrm{diag}(u)` into ``out[:, :d, :d]``.

    :math:`u = s / \sigma` with :math:`s = (1_p, \tau_{t(j)})`, the diagonal of
    :math:`T T_0^{-1}`. Returns ``s`` and ``u`` (G, d).
    """
    G, d, p = len(sigma), len(c.k0), c.p
    s = np.concatenate([np.ones((G, p)), tau[:, c.term_of_level]], axis=1)
    u = s / sigma[:, None]
    P = out[:, :d, :d]                           # a view
    np.multiply(c.K[None], u[:, :, None], out=P)
    P *= u[:, None, :]
    P[:, np.arange(d), np.arange(d)] += 1.0
    return s, u


def _conditional_batch(c: _Conditional, tau: np.ndarray, sigma: np.ndarray, moments: bool):
    r"""Log evidence :math:`\log p(y \mid \phi)` and, optionally, conditional moments of theta.

    Block elimination (:func:`_block_conditional_batch`) when ``c.blocks`` is set, one dense
    factorization (:func:`_dense_conditional_batch`) otherwise; both return the same values.
    """
    if c.blocks is not None:
        return _block_conditional_batch(c, tau, sigma, moments)
    return _dense_conditional_batch(c, tau, sigma, moments)


def _dense_conditional_batch(c: _Conditional, tau: np.ndarray, sigma: np.ndarray,
                             moments: bool):
    r"""Log evidence and conditional moments from one Cholesky factorization per point.

    Parameters
    ----------
    c : _Conditional
        Scale-free quantities.
    tau : ndarray (G, T)
        Group scales at G points.
    sigma : ndarray (G,)
        Noise scale at the same points.
    moments : bool
        Also return the conditional means (G, d) and variances (G, d) of theta.

    Returns
    -------
    lp : ndarray (G,)
        :math:`\log p(y\mid\phi)` (-inf where the factorization failed); then ``mean``, ``var``.
    """
    G, d, p = len(sigma), len(c.k0), c.p
    # step 1: one Cholesky factorization of the bordered standardized precision
    #         [[P_u, g], [g', r'Omega r / sigma^2 + 1]]
    A = np.empty((G, d + 1, d + 1))
    s, u = _fill_precision(c, tau, sigma, A)
    g = u * c.k0[None] / sigma[:, None]          # T' W' Omega r / sigma^2
    A[:, d, :d] = g
    A[:, :d, d] = g
    A[:, d, d] = c.rr / sigma**2 + 1.0
    Lb, ok = _cholesky_stack(A)
    L, v = Lb[:, :d, :d], Lb[:, d, :d]
    # step 2: log evidence, determinant lemma and Woodbury: r'S^-1 r = Lb[d, d]^2 - 1
    logdet_L = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    quad = Lb[:, d, d] ** 2 - 1.0
    lp = c.const - c.n * np.log(sigma) - logdet_L - 0.5 * quad
    lp = np.where(ok, lp, -np.inf)
    if not moments:
        return lp
    # step 3: theta | y, phi ~ N(m0 + T L^-T v, T L^-T L^-1 T'), T = T0 diag(s)
    Linv = np.linalg.solve(L, np.broadcast_to(np.eye(d), L.shape))   # triangular solve
    a = np.einsum("gji,gj->gi", Linv, v)                             # L^-T v = P_u^-1 g
    R = _cov_factor(c, s, Linv)
    mean = c.m0[None] + np.concatenate([a[:, :p] @ c.LV.T, s[:, p:] * a[:, p:]], axis=1)
    var = np.einsum("gik,gik->gi", R, R)
    return lp, mean, var


def _cov_factor(c: _Conditional, s: np.ndarray, Linv: np.ndarray) -> np.ndarray:
    """R = T0 diag(s) L^-T, so that the conditional covariance of theta is R R'."""
    R = s[:, :, None] * np.swapaxes(Linv, 1, 2)
    R[:, :c.p, :] = np.einsum("ij,gjk->gik", c.LV, R[:, :c.p, :])
    return R


def _conditional_cov(c: _Conditional, tau, sigma, rows) -> np.ndarray:
    """Conditional covariance matrix of the theta components ``rows`` at each point (G, r, r)."""
    if c.blocks is not None:
        return _block_conditional_cov(c, tau, sigma, rows)
    return _dense_conditional_cov(c, tau, sigma, rows)


def _dense_conditional_cov(c: _Conditional, tau, sigma, rows) -> np.ndarray:
    r"""Conditional covariance matrix of the theta components ``rows`` at each point (G, k, k).

    Only the columns :math:`L^{-1} e_j` for the beta block and for ``rows`` are needed. They come
    from one Cholesky factorization of :math:`\begin{pmatrix} P_u & E \\ E^\top & 2I
    \end{pmatrix}`, whose lower-left block is :math:`(L^{-1}E)^\top`; the Schur complement
    :math:`2I - E^\top P_u^{-1} E` is positive definite because :math:`P_u \succeq I`.
    """
    G, d, p = len(sigma), len(c.k0), c.p
    rows = np.asarray(rows, dtype=int)
    cols = np.unique(np.concatenate([np.arange(p), rows]))
    k = len(cols)
    A = np.zeros((G, d + k, d + k))
    s, _ = _fill_precision(c, tau, sigma, A)
    A[:, d + np.arange(k), cols] = 1.0                                 # E' = selected rows of I
    A[:, cols, d + np.arange(k)] = 1.0
    A[:, d + np.arange(k), d + np.arange(k)] = 2.0
    Linv_E = np.swapaxes(_cholesky_stack(A)[0][:, d:, :d], 1, 2)       # (G, d, k) = L^-1 E
    # rows of R = T0 diag(s) L^-T: a group level j gives s_j (L^-1 e_j)'; beta rows mix by L_V
    R = np.empty((G, len(rows), d))
    for r, j in enumerate(rows):
        if j < p:
            beta_cols = np.searchsorted(cols, np.arange(p))
            R[:, r] = np.einsum("b,gkb->gk", c.LV[j], Linv_E[:, :, beta_cols])
        else:
            R[:, r] = s[:, j, None] * Linv_E[:, :, np.searchsorted(cols, j)]
    return np.einsum("gak,gbk->gab", R, R)


# --------------------------------------------------------------------------------------------
# Block elimination when every group term shares one grouping factor
# --------------------------------------------------------------------------------------------
# Small (k, k) matrices for all (grid point, level) pairs are stored entry first: M[a, b] is an
# array over the batch. The loops below run over the k (number of terms, a few) rows only.
def _small_cholesky(M: np.ndarray) -> np.ndarray:
    """Cholesky factors of a batch of small SPD matrices, ``M[a, b]`` an array over the batch."""
    k = len(M)
    L = np.zeros_like(M)
    for j in range(k):
        L[j, j] = np.sqrt(M[j, j] - sum(L[j, a] ** 2 for a in range(j)))
        for i in range(j + 1, k):
            L[i, j] = (M[i, j] - sum(L[i, a] * L[j, a] for a in range(j))) / L[j, j]
    return L


def _small_solve_lower(L: np.ndarray, b) -> np.ndarray:
    """Forward substitution: x with L x = b; ``b[i]`` broadcasts against ``L[i, i]``."""
    x = []
    for i in range(len(L)):
        x.append((b[i] - sum(L[i, a] * x[a] for a in range(i))) / L[i, i])
    return np.stack(x)


def _small_solve_upper_t(L: np.ndarray, b) -> np.ndarray:
    """Back substitution: x with L' x = b."""
    k = len(L)
    x = [None] * k
    for i in reversed(range(k)):
        x[i] = (b[i] - sum(L[a, i] * x[a] for a in range(i + 1, k))) / L[i, i]
    return np.stack(x)


class _BlockFactor(NamedTuple):
    r"""Cholesky factor of the permuted bordered matrix, in blocks (see the module docstring).

    ``LD[:, :, g, j]`` is :math:`L_j`, ``Ct[:, :, g, j]`` is :math:`C_j^\top = L_j^{-1}B_j^\top`
    (k, p), ``vb[:, g, j]`` is :math:`v_j`, ``LS[g]`` is :math:`L_S` and ``vx[g]`` is
    :math:`v_\beta`, at grid point g; ``lp`` is :math:`\log p(y \mid \phi)`.
    """

    LD: np.ndarray  # (k, k, G, J)
    Ct: np.ndarray  # (k, p, G, J)
    vb: np.ndarray  # (k, G, J)
    LS: np.ndarray  # (G, p, p)
    vx: np.ndarray  # (G, p)
    lp: np.ndarray  # (G,)


def _block_factor(c: _Conditional, tau: np.ndarray, sigma: np.ndarray) -> _BlockFactor:
    r"""Factor :math:`P_u` and its border by eliminating the group effects level by level.

    Costs :math:`O(J k^3 + J k p^2 + p^3)` per point; ``tau`` is (G, k), ``sigma`` (G,).
    """
    blk, p = c.blocks, c.p
    k = blk.n_terms
    # step 1: the blocks of P_u and g. u_t = tau_t / sigma scales the effects of term t and
    #         1 / sigma the standardized coefficients:
    #         D_j = I + U K_jj U, B_j' = U K_jx / sigma, g_j = U k_j / sigma, U = diag(u)
    u = (tau.T / sigma)[:, :, None]                                 # (k, G, 1)
    D = blk.Kbb[:, :, None, :] * u[:, None] * u[None, :]            # (k, k, G, J)
    for t in range(k):
        D[t, t] += 1.0
    Bt = blk.Kbx[:, :, None, :] * (u / sigma[:, None])[:, None]     # (k, p, G, J)
    gb = u * blk.kb[:, None, :] / sigma[:, None]                    # (k, G, J)
    # step 2: factor every level block, L_j L_j' = D_j; C_j' = L_j^-1 B_j', v_j = L_j^-1 g_j
    LD = _small_cholesky(D)
    Ct = _small_solve_lower(LD, Bt)
    vb = _small_solve_lower(LD, gb)
    # step 3: Schur complement onto the coefficients, S = A - sum_j C_j C_j', L_S L_S' = S,
    #         and v_beta = L_S^-1 (g_beta - sum_j C_j v_j)
    A = np.eye(p) + blk.Kxx / (sigma**2)[:, None, None]
    S = A - np.einsum("tagj,tbgj->gab", Ct, Ct)
    LS, ok = _cholesky_stack(S)
    rhs = blk.kx / (sigma**2)[:, None] - np.einsum("tagj,tgj->ga", Ct, vb)
    vx = np.linalg.solve(LS, rhs[:, :, None])[:, :, 0]
    # step 4: log evidence; log|L| and ||v||^2 are sums over the blocks
    logdet_L = sum(np.log(LD[t, t]).sum(axis=1) for t in range(k)) \
        + np.log(np.diagonal(LS, axis1=1, axis2=2)).sum(axis=1)
    quad = c.rr / sigma**2 - (vb**2).sum(axis=(0, 2)) - (vx**2).sum(axis=1)
    lp = c.const - c.n * np.log(sigma) - logdet_L - 0.5 * quad
    lp = np.where(ok & np.isfinite(lp), lp, -np.inf)
    return _BlockFactor(LD, Ct, vb, LS, vx, lp)


def _block_inverse_columns(f: _BlockFactor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The nonzero pieces of the columns of :math:`L^{-1}` (permuted order).

    Returns :math:`L_S^{-1}` (G, p, p), :math:`E_j = L_j^{-1}` (k, k, G, J) and
    :math:`M_j = L_S^{-1} C_j E_j` (p, k, G, J): the column of effect :math:`(j, t)` is
    :math:`E_j e_t` in the rows of level j and :math:`-M_j e_t` in the coefficient rows.
    """
    k, p = f.LD.shape[0], f.LS.shape[1]
    LS_inv = np.linalg.solve(f.LS, np.broadcast_to(np.eye(p), f.LS.shape))
    E = _small_solve_lower(f.LD, np.eye(k)[:, :, None, None])
    CE = np.einsum("tbgj,tsgj->bsgj", f.Ct, E)             # C_j E_j
    M = np.einsum("grb,bsgj->rsgj", LS_inv, CE)
    return LS_inv, E, M


def _block_conditional_batch(c: _Conditional, tau: np.ndarray, sigma: np.ndarray,
                             moments: bool):
    """:func:`_dense_conditional_batch` by block elimination: same arguments, same results."""
    f = _block_factor(c, tau, sigma)
    if not moments:
        return f.lp
    G, p, J, k = len(sigma), c.p, c.blocks.n_levels, c.blocks.n_terms
    # step 5: conditional mean of u, back substitution a = L^-T v:
    #         a_beta = L_S^-T v_beta, a_j = L_j^-T (v_j - C_j' a_beta)
    LS_inv, E, M = _block_inverse_columns(f)
    ax = np.einsum("gji,gj->gi", LS_inv, f.vx)
    ab = _small_solve_upper_t(f.LD, f.vb - np.einsum("tagj,ga->tgj", f.Ct, ax))
    # step 6: conditional variances, the squared norms of the columns of L^-1:
    #         Var(u_jt) = ||E_j e_t||^2 + ||M_j e_t||^2, Cov(u_beta) = L_S^-T L_S^-1
    var_u = (E**2).sum(axis=0) + (M**2).sum(axis=0)                         # (k, G, J)
    R_beta = LS_inv @ c.LV.T                                                # L_S^-1 L_V'
    # step 7: back to theta = m0 + T0 diag(s) u, effects ordered term by term
    scale = tau.T[:, :, None]                                               # (k, G, 1)
    mean = np.concatenate([c.m0[:p] + ax @ c.LV.T,
                           (scale * ab).transpose(1, 0, 2).reshape(G, k * J)], axis=1)
    var = np.concatenate([(R_beta**2).sum(axis=1),
                          (scale**2 * var_u).transpose(1, 0, 2).reshape(G, k * J)], axis=1)
    return f.lp, mean, var


def _block_conditional_cov(c: _Conditional, tau, sigma, rows) -> np.ndarray:
    r"""Conditional covariance of the theta components ``rows`` by block elimination (G, r, r).

    Each component is a combination of the columns of :math:`L^{-1}` (see
    :func:`_block_inverse_columns`): a coefficient :math:`\beta_i` has the coefficient-row part
    :math:`L_S^{-1} L_V^\top e_i`; an effect :math:`b_{tj}` has :math:`-\tau_t M_j e_t` there
    and :math:`\tau_t E_j e_t` in the rows of level j. Covariances are dot products of these
    vectors; the level parts meet only for two effects of the same level.
    """
    G, p, J = len(sigma), c.p, c.blocks.n_levels
    k = c.blocks.n_terms
    LS_inv, E, M = _block_inverse_columns(_block_factor(c, tau, sigma))
    R_beta = LS_inv @ c.LV.T
    rx = np.zeros((G, len(rows), p))    # coefficient-row parts
    rb = np.zeros((G, len(rows), k))    # level-row parts
    level = np.full(len(rows), -1)
    for r, i in enumerate(rows):
        if i < p:
            rx[:, r] = R_beta[:, :, i]
        else:
            t, level[r] = divmod(i - p, J)
            rx[:, r] = -tau[:, t, None] * M[:, t, :, level[r]].T
            rb[:, r] = tau[:, t, None] * E[:, t, :, level[r]].T
    same = (level[:, None] == level[None, :]) & (level[:, None] >= 0)
    return rx @ np.swapaxes(rx, 1, 2) + same * (rb @ np.swapaxes(rb, 1, 2))


def _trapezoid_log_weights(axes) -> np.ndarray:
    """Log trapezoid weights of a tensor grid (half weight at both ends of every axis)."""
    logs = []
    for a in axes:
        w = np.full(len(a), a[1] - a[0] if len(a) > 1 else 1.0)
        w[[0, -1]] *= 0.5
        logs.append(np.log(w))
    return sum(np.ix_(*logs)) if logs else np.zeros(())


# --------------------------------------------------------------------------------------------
# The quadrature
# --------------------------------------------------------------------------------------------
class ScaleQuadrature:
    r"""Posterior of a (hierarchical) Gaussian regression by quadrature over its scales.

    Parameters
    ----------
    X : array_like (n, p)
        Fixed-effects design (include the column of ones for ``Intercept``).
    y : array_like (n,)
        Response.
    groups : sequence of :class:`reference.design.GroupTerm`
        Varying-effect terms ``1|g``, ``x|g``, ...; empty for a plain regression.
    names : sequence of str
        Bambi names of the columns of ``X`` (``"Intercept"``, ``"x"``, ...).
    beta_mean : float or array_like (p,), default 0
        Prior mean :math:`m` of :math:`\beta`.
    beta_cov : float, array_like (p,) or (p, p)
        Prior covariance :math:`V` (scalar: :math:`vI`; vector: diagonal). ``None`` (a flat
        prior) is rejected: the evidence would be undefined.
    tau_priors : dict[str, Prior]
        Prior of the standard deviation of every group term, keyed by term name (``"1|g"``);
        ``Constant`` fixes it.
    sigma_prior : Prior or None
        Prior of the noise scale :math:`\sigma` (``Constant`` fixes it). Give exactly one of
        ``sigma_prior`` and ``sigma``.
    sigma : float or None
        Known noise scale. With known per-row standard deviations :math:`s_i` (eight schools)
        use ``sigma=1`` and ``weights = 1 / s**2``.
    weights : array_like (n,), optional
        Row precisions relative to :math:`\sigma^{-2}`; ones by default.
    rtol : float, default 1e-6
        Refine until the estimated grid error is below ``rtol``: nats for the log evidence,
        posterior sds for every mean and sd; scale quantiles, whose sinc-series CDF converges
        at about half the exponential rate of the moments, to ``sqrt(rtol)`` sds. The estimate
        is the error of a grid twice as coarse, so the reported grid is usually far more
        accurate. To check Monte Carlo output (errors of about 1e-2 sd), ``rtol=1e-3`` is
        ample: on the radon (intercepts; intercepts and slopes) and sleepstudy posteriors it
        moved means and sds by at most 1e-10 sd and scale quantiles by at most 2e-6 sd from
        the answers at ``rtol`` 1e-6 to 1e-8, with an eighth of the grid for three scales.
    tail : float, default 25
        The grid box extends until the log posterior on its faces is ``tail`` below its maximum.
    max_points : int, default 2_000_000
        Refinement stops (with a ``RuntimeWarning`` and ``converged = False``) before a grid
        would exceed this many points.
    fast : bool, default True
        Eliminate the group effects level by level (see the module docstring) when every group
        term shares one grouping factor; ``False`` always uses the dense factorization. Both
        give the same results to rounding error.

    Attributes
    ----------
    scale_names : list of str
        The free scales integrated over (``"1|g_sigma"``, ..., ``"sigma"``), in grid order.
    fixed_scales : dict
        Scales held fixed, name -> value.
    error : dict
        Estimated grid error: ``log_evidence`` (nats) and the largest error of a ``mean``, an
        ``sd`` and a scale ``quantile`` (in posterior sds), each summed over the axes of the
        grid. It is the change seen when each axis is coarsened to every other node, so it
        bounds the error of the reported grid with a wide margin.
    converged : bool
        Whether every entry of ``error`` is below ``rtol`` (``sqrt(rtol)`` for ``quantile``).
    mode : dict
        Posterior mode of the free scales on the log (or logit) scale, mapped back.
    grid_shape : tuple of int
        Nodes per free scale in the final grid; ``n_evaluations`` counts conditional evaluations.
    method : str
        ``"block"`` (block elimination by level) or ``"dense"`` (one factorization of the
        whole bordered matrix per grid point).

    Notes
    -----
    The box search looks only at the faces of the box around the mode: a second, separate mode
    of the scales' posterior beyond the faces would be missed.
    """

    def __init__(self, X, y, groups=(), *, names, beta_mean=0.0, beta_cov, tau_priors=None,
                 sigma_prior: Prior | None = None, sigma: float | None = None, weights=None,
                 rtol: float = 1e-6, tail: float = 25.0, max_points: int = 2_000_000,
                 fast: bool = True):
        groups = tuple(groups)
        for g in groups:
            if not isinstance(g, GroupTerm):
                raise TypeError(f"groups must hold GroupTerm objects; received {type(g).__name__}.")
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        p = X.shape[1] if X.ndim == 2 else 0
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != p:
            raise ValueError(f"names must give one name per column of X ({p}); received "
                             f"{len(names)}: {names}.")
        term_names = [g.name for g in groups]
        all_names = names + term_names
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"coefficient and group-term names must be unique; received "
                             f"{all_names}.")
        if beta_cov is None or isinstance(beta_cov, Flat):
            raise ValueError("a flat prior on the coefficients is not supported (the evidence "
                             "is undefined); give beta_cov as a scalar, a vector or a matrix.")
        self.rtol = positive_scalar("rtol", rtol)
        self.tail = positive_scalar("tail", tail)
        self.max_points = int(positive_scalar("max_points", max_points))
        beta_mean = vector("beta_mean", beta_mean, p)
        beta_cov = spd_matrix("beta_cov", beta_cov, p)

        # --- the scales: which are free, which are fixed --------------------------------------
        tau_priors = dict(tau_priors or {})
        missing = [t for t in term_names if t not in tau_priors]
        extra = [k for k in tau_priors if k not in term_names]
        if missing or extra:
            raise ValueError(f"tau_priors needs one prior per group term {term_names}; "
                             f"missing {missing}, unknown {extra}.")
        if (sigma is None) == (sigma_prior is None):
            raise ValueError("give exactly one of sigma (known noise scale) and sigma_prior "
                             f"(unknown noise scale); received sigma={sigma!r}, "
                             f"sigma_prior={sigma_prior!r}.")
        specs = [(f"{t}_sigma", tau_priors[t]) for t in term_names]
        specs.append(("sigma", sigma_prior if sigma is None else Constant(sigma)))
        self._fixed, self._free = {}, []
        for k, (name, prior) in enumerate(specs):
            if not isinstance(prior, Prior):
                raise TypeError(f"the prior of {name} must be a reference.priors.Prior; "
                                f"received {prior!r}.")
            if isinstance(prior, Constant):
                self._fixed[name] = (k, positive_scalar(f"the fixed value of {name}", prior.value))
            else:
                self._free.append((k, name, prior, _scale_map(name, prior)))
        self.scale_names = [name for _, name, _, _ in self._free]
        self.fixed_scales = {name: v for name, (_, v) in self._fixed.items()}

        # --- theta bookkeeping: names and levels ----------------------------------------------
        self.groups = groups
        self.names = names
        self._coef_index = {nm: j for j, nm in enumerate(names)}
        self._term_offset, start = {}, p
        for g in groups:
            self._term_offset[g.name] = start
            start += g.n_levels
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False; received {fast!r}.")
        blocks = fast and _one_factor(groups)
        self.method = "block" if blocks else "dense"
        self._cond = _build_conditional(X, y, groups, weights, beta_mean, beta_cov, blocks)
        self.n_evaluations = 0
        self._coef_cov = None  # posterior covariance of the coefficients, once asked for
        self._integrate()

    # ----------------------------------------------------------------------------------------
    # The log posterior, vectorized over points
    # ----------------------------------------------------------------------------------------
    def _scales(self, z: np.ndarray, maps) -> tuple[np.ndarray, np.ndarray]:
        """(tau (G, T), sigma (G,)) at points ``z`` (G, D), fixed scales filled in."""
        G, T = len(z), len(self.groups)
        phi = np.empty((G, T + 1))
        for k, value in self._fixed.values():
            phi[:, k] = value
        for col, (k, _, _, _) in enumerate(self._free):
            phi[:, k] = maps[col].to_scale(z[:, col])
        return phi[:, :T], phi[:, T]

    def _batch_size(self, d: int) -> int:
        """Grid points per batch: about 32 MB of stacked (d, d) matrices, or 8 MB of level
        blocks (the block algebra streams through its arrays entry by entry, so smaller batches
        stay in cache)."""
        blk = self._cond.blocks
        if blk is None:
            return _chunk_size(d)
        k, J, p = blk.n_terms, blk.n_levels, self._cond.p
        return max(1, int(1e6 // (J * (3 * k * k + 3 * k * p) + 2 * p * p)))

    def _evaluate(self, z: np.ndarray, maps, moments: bool = False):
        r"""Unnormalized log posterior of the grid coordinates ``z`` (G, D) under ``maps``.

        :math:`\log p(y\mid\phi) + \sum_k [\log p_k(\phi_k) + \log|d\phi_k/dz_k|]`, and optionally
        the conditional means and variances of theta, one row per theta component (d, G).
        """
        z = np.atleast_2d(np.asarray(z, dtype=float))
        G, d = len(z), len(self._cond.k0)
        lp = np.empty(G)
        mu = np.empty((d, G)) if moments else None
        var = np.empty((d, G)) if moments else None
        step = self._batch_size(d + 1)
        for a in range(0, G, step):
            sl = slice(a, min(a + step, G))
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                tau, sigma = self._scales(z[sl], maps)
                prior = np.zeros(sl.stop - sl.start)
                for col, (_, _, pr, _) in enumerate(self._free):
                    phi = maps[col].to_scale(z[sl, col])
                    prior += pr.logpdf(phi) + maps[col].log_jacobian(z[sl, col])
                out = _conditional_batch(self._cond, tau, sigma, moments)
            if moments:
                lp[sl], mu[:, sl], var[:, sl] = out[0], out[1].T, out[2].T
            else:
                lp[sl] = out
            lp[sl] += prior
        lp[~np.isfinite(lp)] = -np.inf
        self.n_evaluations += G
        return (lp, mu, var) if moments else lp

    # ----------------------------------------------------------------------------------------
    # Steps 1-3: mode, stretch, box
    # ----------------------------------------------------------------------------------------
    def _mode(self) -> tuple[np.ndarray, np.ndarray]:
        """Mode of the log posterior in eta and a standard deviation per axis from its Hessian."""
        D, maps = len(self._free), [m for _, _, _, m in self._free]
        # step 1a: the best of a few decades around the data's scale
        scale = max(self._cond.rr / self._cond.n, 1e-300) ** 0.5
        cands = [np.log(scale) + np.log(10.0) * np.arange(-3.0, 1.01, 0.5) if m.upper is None
                 else np.arange(-4.0, 4.01, 1.0) for m in maps]
        mesh = np.stack(np.meshgrid(*cands, indexing="ij"), axis=-1).reshape(-1, D)
        lp = self._evaluate(mesh, maps)
        if not np.isfinite(lp).any():
            raise ValueError("the log posterior of the scales is -inf at every starting point; "
                             "check the priors and the data.")
        start = mesh[np.argmax(lp)]
        # step 1b: L-BFGS-B on the negative log posterior
        res = optimize.minimize(lambda e: -float(self._evaluate(e[None], maps)[0]), start,
                                method="L-BFGS-B", bounds=[(s - 40, s + 40) for s in start])
        mode = res.x if res.fun <= -lp.max() else start
        # step 1c: central finite-difference Hessian; sd_k = sqrt(diag(H^-1)) by Cholesky
        h = 1e-2
        E = np.eye(D) * h
        pts = [mode + si * E[i] + sj * E[j] for i in range(D) for j in range(i, D)
               for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
        vals = self._evaluate(np.array(pts), maps).reshape(-1, 4)
        H, k = np.empty((D, D)), 0
        for i in range(D):
            for j in range(i, D):
                f_pp, f_pm, f_mp, f_mm = vals[k]
                H[i, j] = H[j, i] = -(f_pp - f_pm - f_mp + f_mm) / (4 * h * h)
                k += 1
        try:
            LH = linalg.cholesky(H, lower=True)
            sd = np.sqrt(np.diag(linalg.cho_solve((LH, True), np.eye(D))))
        except (linalg.LinAlgError, ValueError):
            sd = np.ones(D)  # no usable curvature: unit spacing, the box search does the rest
        sd = np.where(np.isfinite(sd), sd, 1.0)
        return mode, np.clip(sd, 1e-3, 3.0)

    def _box(self, maps) -> tuple[list, np.ndarray]:
        """Unit-spaced z nodes per axis whose faces lie ``tail`` below the maximum, and f there."""
        D = len(maps)
        lo, hi = np.full(D, -6), np.full(D, 6)
        lp = self._slab(maps, lo, hi)
        reach = 80.0  # eta may move at most this far from the mode (a factor e^80 in scale)
        while True:
            top, grew = lp.max(), False
            for k in range(D):
                for side in (0, -1):
                    face = np.take(lp, side, axis=k)
                    if face.max() <= top - self.tail:
                        continue
                    grew = True
                    # evaluate only the new slab of two slices and attach it
                    new_lo, new_hi = lo.copy(), hi.copy()
                    if side == 0:
                        new_lo[k], new_hi[k] = lo[k] - 2, lo[k] - 1
                        lp = np.concatenate([self._slab(maps, new_lo, new_hi), lp], axis=k)
                        lo[k] -= 2
                    else:
                        new_lo[k], new_hi[k] = hi[k] + 1, hi[k] + 2
                        lp = np.concatenate([lp, self._slab(maps, new_lo, new_hi)], axis=k)
                        hi[k] += 2
                    edge = maps[k].eta(np.array([lo[k], hi[k]], float)) - maps[k].center
                    if np.abs(edge).max() > reach:
                        raise ValueError(
                            f"the posterior of {self.scale_names[k]} does not decay within a "
                            f"factor e^{reach:g} of its mode; the prior may be too heavy-tailed "
                            "for the data (or the posterior improper).")
            if not grew:
                break
        # trim every axis to the outermost slices that are still in the tail
        top, cut = lp.max(), []
        for k in range(D):
            slice_max = np.moveaxis(lp, k, 0).reshape(lp.shape[k], -1).max(axis=1)
            above = np.flatnonzero(slice_max > top - self.tail)
            first, last = max(above[0] - 1, 0), min(above[-1] + 1, lp.shape[k] - 1)
            cut.append(slice(first, last + 1))
            lo[k], hi[k] = lo[k] + first, lo[k] + last
        return [np.arange(lo[k], hi[k] + 1, dtype=float) for k in range(D)], lp[tuple(cut)]

    def _slab(self, maps, lo, hi) -> np.ndarray:
        axes = [np.arange(lo[k], hi[k] + 1, dtype=float) for k in range(len(maps))]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        return self._evaluate(pts.reshape(-1, len(maps)), maps).reshape(pts.shape[:-1])

    # ----------------------------------------------------------------------------------------
    # Step 4: trapezoid rule, error estimate, refinement
    # ----------------------------------------------------------------------------------------
    def _integrate(self):
        D = len(self._free)
        self.mode = {}
        if D == 0:
            # nothing to integrate: a single conditional Gaussian
            self._maps, self._z = [], []
            lp, mu, var = self._evaluate(np.zeros((1, 0)), [], moments=True)
            self._lp, self._idx = lp.reshape(()), np.zeros((1, 0), dtype=int)
            self._mu, self._var = [mu], [var]
            self._result = self._estimates((), keep=True)
            self._keep_mixture()
            self.error = {"log_evidence": 0.0, "mean": 0.0, "sd": 0.0, "quantile": 0.0}
            self.converged, self.grid_shape = True, ()
            return
        mode, sd = self._mode()
        self._maps = [m.stretched(c, s) for (_, _, _, m), c, s in zip(self._free, mode, sd,
                                                                        strict=True)]
        self.mode = {name: float(m.to_scale(0.0)) for name, m in zip(self.scale_names,
                                                                      self._maps, strict=True)}
        self._z, self._lp = self._box(self._maps)
        # conditional moments, one block of rows per call of _add_moments (never concatenated)
        self._idx, self._mu, self._var = np.zeros((0, D), int), [], []
        self._add_moments(np.argwhere(np.ones(self._lp.shape, dtype=bool)))
        self.converged = False
        while True:
            full = self._estimates((1,) * D)
            per_axis = [_differences(full, self._estimates(tuple(2 if j == k else 1
                                                                 for j in range(D))))
                        for k in range(D)]
            self.error = {q: float(sum(e[q] for e in per_axis)) for q in per_axis[0]}
            if self._within(self.error, 1.0):
                self.converged = True
                break
            refine = [k for k in range(D) if not self._within(per_axis[k], 1.0 / D)] \
                or list(range(D))
            shape = [2 * n - 1 if k in refine else n for k, n in enumerate(self._lp.shape)]
            if int(np.prod(shape)) > self.max_points:
                warnings.warn(
                    f"quadrature over {self.scale_names} stopped at {self._lp.shape} nodes "
                    f"before reaching rtol={self.rtol:g} (the next grid would have "
                    f"{int(np.prod(shape))} points > max_points={self.max_points}); estimated "
                    f"error {self.error}.", RuntimeWarning, stacklevel=3)
                break
            for k in refine:
                self._refine(k)
        self._result = self._estimates((1,) * D, keep=True)
        self._keep_mixture()
        self.grid_shape = self._lp.shape

    def _keep_mixture(self):
        """Store the final mixture theta entry by theta entry, so a marginal reads contiguous rows.

        Nodes whose weight is below 1e-16 of the largest are dropped here once (as
        :class:`GaussianMixture` would drop them); the working moments are then released.
        """
        w = self._result["mix_w"]                      # every stored node is on the final grid
        keep = w > 1e-16 * w.max()
        self._mix_w = w[keep] / w[keep].sum()
        self._mix_idx = self._idx[keep]
        mean, var = np.concatenate(self._mu, axis=1), np.concatenate(self._var, axis=1)
        self._mix_mean = mean if keep.all() else mean[:, keep]         # (d, nodes)
        self._mix_sd = np.sqrt(var if keep.all() else var[:, keep])
        del self._mu, self._var

    def _within(self, error: dict, share: float) -> bool:
        """Whether ``error`` is below ``share`` times the tolerances (sqrt(rtol) for quantiles)."""
        return (max(error["log_evidence"], error["mean"], error["sd"]) < share * self.rtol
                and error["quantile"] < share * np.sqrt(self.rtol))

    def _grid_points(self, idx) -> np.ndarray:
        return np.stack([self._z[k][idx[:, k]] for k in range(len(self._z))], axis=1)

    def _add_moments(self, idx):
        """Conditional moments at grid indices ``idx`` whose weight is not negligible (> e^-35)."""
        idx = idx[self._lp[tuple(idx.T)] > self._lp.max() - (self.tail + 10.0)]
        if len(idx):
            _, mu, var = self._evaluate(self._grid_points(idx), self._maps, moments=True)
            self._idx = np.concatenate([self._idx, idx])
            self._mu.append(mu)     # (d, nodes of this block)
            self._var.append(var)

    def _refine(self, k: int):
        """Halve the spacing of axis k: old nodes keep their values, only new ones are evaluated."""
        z = self._z[k]
        self._z[k] = np.linspace(z[0], z[-1], 2 * len(z) - 1)
        shape = list(self._lp.shape)
        shape[k] = len(self._z[k])
        lp = np.full(shape, np.nan)
        even = [slice(None)] * len(shape)
        even[k] = slice(None, None, 2)
        lp[tuple(even)] = self._lp
        new = np.argwhere(np.isnan(lp))
        lp[tuple(new.T)] = self._evaluate(self._grid_points(new), self._maps)
        self._lp = lp
        self._idx = self._idx.copy()
        self._idx[:, k] *= 2
        self._add_moments(new)

    def _estimates(self, step: tuple, keep: bool = False) -> dict:
        """Results on the grid that uses every ``step[k]``-th node of axis k.

        Log evidence, mean and sd of every theta component and scale, 5% and 95% quantiles of
        the scales. With ``keep`` the mixture weights and scale marginals are returned as well.
        """
        D = len(step)
        axes = [z[::s] for z, s in zip(self._z, step, strict=True)]
        lp = self._lp[tuple(slice(None, None, s) for s in step)]
        log_w = _trapezoid_log_weights(axes) + lp
        log_z = float(special.logsumexp(log_w))
        dense_w = np.exp(log_w - log_z)
        # mixture over the nodes of this grid that carry conditional moments
        on = np.all(self._idx % np.array(step, dtype=int) == 0, axis=1) if D else np.ones(1, bool)
        sub = tuple((self._idx[on] // np.array(step, dtype=int)).T) if D else ()
        lw = np.atleast_1d(log_w[sub])
        mix_w = np.exp(lw - special.logsumexp(lw))
        # mixture moments, block by block; weights of all stored nodes, zero off this grid
        w_all = np.zeros(len(self._idx))
        w_all[on] = mix_w
        th_mean, second, start = 0.0, 0.0, 0
        for mu, var in zip(self._mu, self._var, strict=True):
            w = w_all[start:start + mu.shape[1]]
            th_mean = th_mean + mu @ w
            second = second + var @ w + np.einsum("dg,dg,g->d", mu, mu, w)
            start += mu.shape[1]
        th_sd = np.sqrt(np.maximum(second - th_mean**2, 0.0))
        marginals = [self._scale_marginal(k, axes, dense_w) for k in range(D)]
        out = {"log_evidence": log_z, "theta_mean": th_mean, "theta_sd": th_sd,
               "scale_mean": np.array([m.mean() for m in marginals]),
               "scale_sd": np.array([m.std() for m in marginals]),
               "scale_q": np.array([m.ppf([0.05, 0.95]) for m in marginals]).reshape(-1, 2)}
        if keep:
            out.update(mix_w=mix_w, marginals=marginals)
        return out

    def _scale_marginal(self, k: int, axes, dense_w) -> GridMarginal:
        m, z = self._maps[k], axes[k]
        phi = m.to_scale(z)
        # marginal weight of each node of axis k, then the density per unit z
        node_w = dense_w.sum(axis=tuple(i for i in range(dense_w.ndim) if i != k))
        mean = float(node_w @ phi)
        sd = float(np.sqrt(max(node_w @ phi**2 - mean**2, 0.0)))
        return GridMarginal(self.scale_names[k], m, z, node_w, mean, sd)

    # ----------------------------------------------------------------------------------------
    # Public results
    # ----------------------------------------------------------------------------------------
    def log_evidence(self) -> float:
        r"""Log marginal likelihood :math:`\log p(y)`; its grid error: ``log_evidence_error``."""
        return self._result["log_evidence"]

    @property
    def log_evidence_error(self) -> float:
        return float(self.error["log_evidence"])

    def parameter_names(self) -> list[str]:
        """Coefficients, group terms and scales (free and fixed) of this model."""
        return self.names + list(self._term_offset) + self.scale_names + list(self.fixed_scales)

    def _theta_index(self, name, level=None) -> int:
        """Index into theta of a coefficient or group level (``"1|g"`` + level, or ``"1|g[a]"``)."""
        if not isinstance(name, str):
            raise TypeError(f"a parameter name must be a string; received {name!r}.")
        if level is None and name.endswith("]") and "[" in name:
            base, label = name[:-1].split("[", 1)
            if base in self._term_offset:
                name, level = base, label
        if name in self._coef_index:
            if level is not None:
                raise ValueError(f"{name!r} is a coefficient, not a group term; do not pass "
                                 f"level (received {level!r}).")
            return self._coef_index[name]
        if name in self._term_offset:
            term = next(g for g in self.groups if g.name == name)
            labels = [str(v) for v in term.levels]
            shown = f"{labels[:10]}{' ...' if len(labels) > 10 else ''}"
            if level is None:
                raise ValueError(f"{name!r} has {term.n_levels} levels; pass level= one of "
                                 f"{shown} or an integer index.")
            if str(level) in labels:
                j = labels.index(str(level))
            elif isinstance(level, int | np.integer) and 0 <= level < term.n_levels:
                j = int(level)
            else:
                raise ValueError(f"{name!r} has no level {level!r}; valid labels are {shown} "
                                 f"or an index in [0, {term.n_levels}).")
            return self._term_offset[name] + j
        raise ValueError(f"unknown parameter {name!r}; valid names for this model: "
                         f"{self.parameter_names()}.")

    def marginal(self, name: str, level=None):
        """Marginal posterior of a coefficient, a group level or a free scale.

        Returns a :class:`GaussianMixture` for coefficients and group levels (``"1|g"`` with
        ``level`` a label or an index, or ``"1|g[label]"``) and a :class:`GridMarginal` for
        scales; both have ``mean()``, ``std()``, ``cdf(x)`` and ``ppf(q)``.
        """
        if isinstance(name, str) and name in self.scale_names:
            if level is not None:
                raise ValueError(f"{name!r} is a scale; do not pass level (received {level!r}).")
            return self._result["marginals"][self.scale_names.index(name)]
        if isinstance(name, str) and name in self.fixed_scales:
            raise ValueError(f"{name!r} is fixed at {self.fixed_scales[name]:g}: there is no "
                             "scale to integrate and no posterior marginal; free scales: "
                             f"{self.scale_names}.")
        j = self._theta_index(name, level)
        return GaussianMixture(self._mix_w, self._mix_mean[j], self._mix_sd[j])

    def _posterior_cov(self, rows) -> np.ndarray:
        r"""Posterior covariance matrix of the theta components ``rows``.

        :math:`E[\mathrm{Cov}(\theta \mid \phi)] + \mathrm{Cov}(E[\theta \mid \phi])` over the
        mixture nodes; the conditional covariances are recomputed there, skipping nodes whose
        normalized weight is below 1e-16. The covariance of all coefficients is computed in one
        pass the first time any is asked for, and kept.
        """
        rows = [int(r) for r in rows]
        if all(r < self._cond.p for r in rows):
            if self._coef_cov is None:
                self._coef_cov = self._mixture_cov(list(range(self._cond.p)))
            return self._coef_cov[np.ix_(rows, rows)]
        return self._mixture_cov(rows)

    def _mixture_cov(self, rows: list) -> np.ndarray:
        """:meth:`_posterior_cov` of ``rows``, summed over the mixture nodes."""
        sel = self._mix_w > 1e-16
        idx, w, mu = self._mix_idx[sel], self._mix_w[sel], self._mix_mean[rows][:, sel].T
        within = np.zeros((len(rows), len(rows)))
        step = self._batch_size(len(self._cond.k0) + len(rows) + self._cond.p)
        for a in range(0, len(w), step):
            sl = slice(a, min(a + step, len(w)))
            z = self._grid_points(idx[sl]) if self._z else np.zeros((1, 0))
            tau, sigma = self._scales(z, self._maps)
            within += np.einsum("g,gab->ab", w[sl], _conditional_cov(self._cond, tau, sigma, rows))
        mean = w @ mu
        return within + (mu * w[:, None]).T @ mu - np.outer(mean, mean)

    def cov(self, name_a, name_b) -> float:
        """Posterior covariance of two coefficients or group levels (keys of :meth:`summary`)."""
        rows = [self._theta_index(name_a), self._theta_index(name_b)]
        return float(self._posterior_cov(rows)[0, 1])

    def corr(self, name_a, name_b) -> float:
        """Posterior correlation of two coefficients or group levels."""
        C = self._posterior_cov([self._theta_index(name_a), self._theta_index(name_b)])
        return float(C[0, 1] / np.sqrt(C[0, 0] * C[1, 1]))

    def summary(self) -> dict:
        """``name -> {mean, sd, q05, q95}`` for every coefficient, group level and free scale.

        Group levels are keyed ``"1|g[label]"``.
        """
        keys = list(self.names)
        for g in self.groups:
            keys += [f"{g.name}[{label}]" for label in g.levels]
        out = {}
        for key in keys + self.scale_names:
            m = self.marginal(key)
            q05, q95 = m.ppf([0.05, 0.95])
            out[key] = {"mean": m.mean(), "sd": m.std(), "q05": float(q05), "q95": float(q95)}
        return out


def _differences(fine: dict, coarse: dict) -> dict:
    """Changes between two grids: nats for the evidence, posterior sds for everything else."""
    th_sd = np.maximum(fine["theta_sd"], np.finfo(float).tiny)
    sc_sd = np.maximum(fine["scale_sd"], np.finfo(float).tiny)

    def worst(a, b, sd):
        return float(np.max(np.abs(a - b) / sd, initial=0.0))

    return {
        "log_evidence": abs(fine["log_evidence"] - coarse["log_evidence"]),
        "mean": max(worst(fine["theta_mean"], coarse["theta_mean"], th_sd),
                    worst(fine["scale_mean"], coarse["scale_mean"], sc_sd)),
        "sd": max(worst(fine["theta_sd"], coarse["theta_sd"], th_sd),
                  worst(fine["scale_sd"], coarse["scale_sd"], sc_sd)),
        "quantile": worst(fine["scale_q"], coarse["scale_q"], sc_sd[:, None]),
    }
