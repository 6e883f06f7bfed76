r"""Closed-form posteriors for Gaussian linear regression: the suite's ground truth.

Two conjugate models are covered, both for :math:`y = X\beta + \varepsilon`, with ``X`` of shape
(n, p).

**Gaussian prior, known noise** (:class:`GaussianKnownNoise`)

.. math::

    \beta \sim N(m_0, V_0), \qquad y \mid \beta \sim N(X\beta, s^2 I_n).

Completing the square in :math:`\beta` gives the posterior :math:`N(m_n, V_n)` with

.. math::

    V_n^{-1} = V_0^{-1} + X^\top X / s^2, \qquad
    m_n = V_n \left(V_0^{-1} m_0 + X^\top y / s^2\right).

**Normal-Inverse-Gamma prior** (:class:`NormalInverseGamma`)

.. math::

    \sigma^2 \sim \mathrm{InvGamma}(a_0, b_0), \qquad
    \beta \mid \sigma^2 \sim N(m_0, \sigma^2 V_0), \qquad
    y \mid \beta, \sigma^2 \sim N(X\beta, \sigma^2 I_n).

The posterior is again Normal-Inverse-Gamma with :math:`\Lambda_n = V_0^{-1} + X^\top X`,
:math:`m_n = \Lambda_n^{-1}(V_0^{-1} m_0 + X^\top y)`, :math:`a_n = a_0 + n/2` and
:math:`b_n = b_0 + \tfrac12 (y - X m_0)^\top (I_n + X V_0 X^\top)^{-1} (y - X m_0)`.

Numerics
--------
Every solve goes through a Cholesky factor; no matrix is ever inverted explicitly. When the
number of coefficients exceeds the number of rows (p > n) the work is done in the n-dimensional
data space through the Woodbury identity

.. math::

    V_n = V_0 - V_0 X^\top S^{-1} X V_0, \qquad S = s^2 I_n + X V_0 X^\top,

and the matrix determinant lemma :math:`|S| = s^{2n} |V_0| |V_n^{-1}|` links the two spaces.
A flat prior on :math:`\beta` (``prior_cov=None``) gives the least-squares answer when
:math:`X^\top X` is invertible and a clear error when it is not; its evidence is undefined.

References
----------
.. [1] Bishop, C. M. (2006). *Pattern Recognition and Machine Learning*, sections 3.3-3.5.
.. [2] Murphy, K. P. (2007). Conjugate Bayesian analysis of the Gaussian distribution.
.. [3] O'Hagan, A. and Forster, J. (2004). *Kendall's Advanced Theory of Statistics 2B*, ch. 11.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize, special, stats

from reference._validation import as_design, positive_scalar, spd_matrix, vector

__all__ = [
    "GaussianKnownNoise",
    "NormalInverseGamma",
    "Predictive",
    "SqrtInvGamma",
    "empirical_bayes",
    "ols",
    "ridge",
]

LOG_2PI = np.log(2 * np.pi)


# --------------------------------------------------------------------------------------------
# Shared linear algebra
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Update:
    """Result of one Gaussian update with noise variance ``s2``.

    ``logdet_S`` and ``quad`` describe the marginal of ``y``: :math:`\\log|S|` and
    :math:`r^\\top S^{-1} r` with :math:`r = y - X m_0` (``None`` under a flat prior).
    """

    mean: np.ndarray
    cov: np.ndarray
    logdet_S: float | None
    quad: float | None


def _chol(name: str, a: np.ndarray) -> np.ndarray:
    try:
        return linalg.cholesky(a, lower=True)
    except linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite (numerically singular).") from None


def _logdet_chol(L: np.ndarray) -> float:
    return 2.0 * float(np.log(np.diag(L)).sum())


def _gaussian_update(X, y, m0, V0, s2) -> _Update:
    """Posterior of beta for prior N(m0, V0) (or flat when V0 is None) and noise variance s2."""
    n, p = X.shape
    if V0 is None:
        return _flat_update(X, y, s2)
    r = y - X @ m0
    if p <= n:
        # p-space: factor the posterior precision V0^-1 + X'X / s2.
        L0 = _chol("the prior covariance", V0)
        P0 = linalg.cho_solve((L0, True), np.eye(p))
        L = _chol("the posterior precision", P0 + X.T @ X / s2)
        Xr = X.T @ r / s2
        shift = linalg.cho_solve((L, True), Xr)
        mean = m0 + shift
        cov = linalg.cho_solve((L, True), np.eye(p))
        # determinant lemma and Woodbury: |S| = s2^n |V0| |Vn^-1|,
        # r' S^-1 r = r'r / s2 - (X'r / s2)' Vn (X'r / s2)
        logdet_S = n * np.log(s2) + _logdet_chol(L0) + _logdet_chol(L)
        quad = float(r @ r / s2 - Xr @ shift)
    else:
        # n-space (p > n): factor S = s2 I + X V0 X'.
        XV0 = X @ V0
        Ls = _chol("the marginal covariance of y", s2 * np.eye(n) + XV0 @ X.T)
        mean = m0 + XV0.T @ linalg.cho_solve((Ls, True), r)
        cov = V0 - XV0.T @ linalg.cho_solve((Ls, True), XV0)
        logdet_S = _logdet_chol(Ls)
        quad = float(r @ linalg.cho_solve((Ls, True), r))
    return _Update(mean, 0.5 * (cov + cov.T), logdet_S, quad)


def _flat_update(X, y, s2) -> _Update:
    n, p = X.shape
    rank = np.linalg.matrix_rank(X)
    if rank < p:
        raise ValueError(
            f"a flat prior on the coefficients needs X'X to be invertible, but X ({n} rows, "
            f"{p} columns) has rank {rank}; give every coefficient a proper prior instead."
        )
    L = _chol("X'X", X.T @ X / s2)
    mean = linalg.cho_solve((L, True), X.T @ y / s2)
    cov = linalg.cho_solve((L, True), np.eye(p))
    return _Update(mean, 0.5 * (cov + cov.T), None, None)


def ols(X, y) -> np.ndarray:
    """Ordinary least squares :math:`(X^\\top X)^{-1} X^\\top y`, via Cholesky; errors if
    singular."""
    X, y = as_design(X, y)
    return _flat_update(X, y, 1.0).mean


def ridge(X, y, lam: float) -> np.ndarray:
    r"""Ridge estimate :math:`\arg\min_\beta \|y - X\beta\|^2 + \lambda\|\beta\|^2`.

    It equals the posterior mean of :class:`GaussianKnownNoise` with ``prior_mean=0`` and
    ``prior_cov = (noise_var / lam) I``: the penalty is the ratio of noise to prior variance.
    """
    X, y = as_design(X, y)
    lam = positive_scalar("lam", lam)
    L = _chol("X'X + lam I", X.T @ X + lam * np.eye(X.shape[1]))
    return linalg.cho_solve((L, True), X.T @ y)


@dataclass(frozen=True)
class Predictive:
    """Posterior predictive at new rows: ``mean``, and variance split into two parts.

    ``noise_var`` is the irreducible observation noise; ``epistemic_var`` is
    :math:`x^\\top V_n x`, the part due to uncertainty about the coefficients, which grows as
    ``x`` moves away from the data. ``dist`` is the full predictive distribution (frozen scipy).
    """

    mean: np.ndarray
    noise_var: np.ndarray
    epistemic_var: np.ndarray
    dist: object

    @property
    def var(self) -> np.ndarray:
        """Total predictive variance, noise plus epistemic."""
        return self.noise_var + self.epistemic_var


def _new_rows(X_new, p: int) -> np.ndarray:
    Xn = np.asarray(X_new, dtype=float)
    if Xn.ndim == 1:
        Xn = Xn[None, :]
    if Xn.ndim != 2 or Xn.shape[1] != p:
        raise ValueError(f"X_new must have {p} columns; received shape {np.shape(X_new)}.")
    if not np.isfinite(Xn).all():
        raise ValueError("X_new contains NaN or inf; every value must be finite.")
    return Xn


def _prior(prior_mean, prior_cov, p):
    m0 = vector("prior_mean", prior_mean, p)
    V0 = None if prior_cov is None else spd_matrix("prior_cov", prior_cov, p)
    return m0, V0


# --------------------------------------------------------------------------------------------
# Gaussian prior, known noise variance
# --------------------------------------------------------------------------------------------
class GaussianKnownNoise:
    r"""Exact posterior of :math:`\beta` under a Gaussian prior with known noise variance.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Design matrix (include a column of ones for an intercept).
    y : array_like, shape (n,)
        Response.
    noise_var : float
        Known noise variance :math:`s^2 > 0`.
    prior_mean : float or array_like, shape (p,), default 0
        :math:`m_0`.
    prior_cov : float, array_like (p,) or (p, p), or None, default 1
        :math:`V_0`: a scalar means :math:`V_0 = v I`, a vector a diagonal matrix. ``None`` puts
        a flat (improper) prior on :math:`\beta`, giving the least-squares answer.

    Attributes
    ----------
    mean, cov : ndarray
        :math:`m_n` and :math:`V_n`.

    Examples
    --------
    The worked example of the derivation seed:

    >>> X = [[1, 0], [1, 1], [1, 2]]
    >>> post = GaussianKnownNoise(X, [1, 2, 4], noise_var=1.0)
    >>> post.mean.round(4).tolist(), round(post.log_evidence(), 4)
    ([0.8, 1.2667], -5.4775)
    """

    def __init__(self, X, y, noise_var: float, prior_mean=0.0, prior_cov=1.0):
        self.X, self.y = as_design(X, y)
        n, p = self.X.shape
        self.noise_var = positive_scalar("noise_var", noise_var)
        self.prior_mean, self.prior_cov = _prior(prior_mean, prior_cov, p)
        self._u = _gaussian_update(self.X, self.y, self.prior_mean, self.prior_cov, self.noise_var)
        self.mean = self._u.mean
        self.cov = self._u.cov

    @property
    def sd(self) -> np.ndarray:
        """Marginal posterior standard deviations of the coefficients."""
        return np.sqrt(np.diag(self.cov))

    @property
    def corr(self) -> np.ndarray:
        """Posterior correlation matrix of the coefficients."""
        return self.cov / np.outer(self.sd, self.sd)

    def marginals(self) -> list:
        """Exact marginal posterior of each coefficient, as frozen ``scipy.stats.norm``."""
        return [stats.norm(m, s) for m, s in zip(self.mean, self.sd, strict=True)]

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Independent posterior draws, shape (size, p): :math:`m_n + L z` with
        :math:`LL^\\top = V_n`."""
        L = linalg.cholesky(self.cov, lower=True)
        return self.mean + rng.standard_normal((size, len(self.mean))) @ L.T

    def predictive(self, X_new) -> Predictive:
        r"""Predictive of a new observation: :math:`N(x^\top m_n,\; s^2 + x^\top V_n x)`."""
        Xn = _new_rows(X_new, len(self.mean))
        mean = Xn @ self.mean
        epi = np.einsum("ij,jk,ik->i", Xn, self.cov, Xn)
        noise = np.full_like(mean, self.noise_var)
        return Predictive(mean, noise, epi, stats.norm(mean, np.sqrt(noise + epi)))

    def log_evidence(self) -> float:
        r"""Log marginal likelihood :math:`\log N(y \mid X m_0,\; s^2 I + X V_0 X^\top)`.

        Computed from the determinant lemma and Woodbury identity in whichever space is
        smaller. Undefined (raises ``ValueError``) under a flat prior.
        """
        if self._u.logdet_S is None:
            raise ValueError(
                "the evidence is undefined under a flat (improper) prior on the coefficients."
            )
        n = len(self.y)
        return float(-0.5 * (n * LOG_2PI + self._u.logdet_S + self._u.quad))


def empirical_bayes(X, y, *, alpha0: float = 1.0, beta0: float = 1.0):
    r"""Type-II maximum likelihood for the prior precision and noise precision.

    With :math:`\beta \sim N(0, \alpha^{-1} I)` and noise variance :math:`1/\beta_{noise}`,
    maximize :func:`GaussianKnownNoise.log_evidence` over :math:`(\log\alpha, \log\beta)` by
    L-BFGS (MacKay 1992; Bishop 2006, section 3.5).

    Returns
    -------
    alpha, noise_precision : float
        The maximizers.
    log_evidence : float
        The maximized log evidence.
    """
    X, y = as_design(X, y)
    alpha0 = positive_scalar("alpha0", alpha0)
    beta0 = positive_scalar("beta0", beta0)

    def neg(theta):
        a, b = np.exp(theta)
        return -GaussianKnownNoise(X, y, 1.0 / b, 0.0, 1.0 / a).log_evidence()

    res = optimize.minimize(neg, np.log([alpha0, beta0]), method="L-BFGS-B")
    a, b = np.exp(res.x)
    return float(a), float(b), float(-res.fun)


# --------------------------------------------------------------------------------------------
# Normal-Inverse-Gamma prior
# --------------------------------------------------------------------------------------------
class SqrtInvGamma:
    r"""Distribution of :math:`\sigma = \sqrt{\sigma^2}` when
    :math:`\sigma^2 \sim \mathrm{InvGamma}(a, b)`.

    :math:`E[\sigma] = \sqrt{b}\,\Gamma(a - \tfrac12)/\Gamma(a)` (needs :math:`a > 1/2`),
    :math:`E[\sigma^2] = b/(a-1)` (needs :math:`a > 1`); quantiles are square roots of the
    inverse-gamma quantiles because the square root is monotone.
    """

    def __init__(self, a: float, b: float):
        self.a = positive_scalar("a", a)
        self.b = positive_scalar("b", b)
        self._ig = stats.invgamma(self.a, scale=self.b)

    def mean(self) -> float:
        if self.a <= 0.5:
            return np.inf
        log_ratio = special.gammaln(self.a - 0.5) - special.gammaln(self.a)
        return float(np.sqrt(self.b) * np.exp(log_ratio))

    def var(self) -> float:
        if self.a <= 1:
            return np.inf
        return float(self.b / (self.a - 1) - self.mean() ** 2)

    def std(self) -> float:
        return float(np.sqrt(self.var()))

    def ppf(self, q):
        return np.sqrt(self._ig.ppf(q))

    def cdf(self, x):
        return self._ig.cdf(np.square(x))

    def pdf(self, x):
        """Density of sigma: the inverse-gamma density at sigma^2 times the Jacobian 2 sigma."""
        x = np.asarray(x, dtype=float)
        return np.where(x > 0, self._ig.pdf(np.square(x)) * 2 * x, 0.0)

    def rvs(self, size=None, random_state=None):
        return np.sqrt(self._ig.rvs(size=size, random_state=random_state))


class NormalInverseGamma:
    r"""Exact posterior under the conjugate Normal-Inverse-Gamma prior.

    Parameters
    ----------
    X, y : array_like
        Design matrix (n, p) and response (n,).
    prior_mean : float or array_like (p,), default 0
        :math:`m_0`.
    prior_cov : float, array_like (p,) or (p, p), or None, default 1
        :math:`V_0`, the prior covariance of :math:`\beta` *in units of* :math:`\sigma^2`.
        ``None`` gives a flat prior on :math:`\beta`, under which
        :math:`a_n = a_0 + (n - p)/2` and the evidence is undefined.
    a0, b0 : float, default 1
        Shape and scale of the inverse-gamma prior on :math:`\sigma^2`.

    Notes
    -----
    Marginally, :math:`\beta \mid y` is multivariate Student-t with :math:`\nu = 2a_n` degrees
    of freedom, location :math:`m_n` and scale matrix :math:`(b_n/a_n)\Lambda_n^{-1}`; a new
    observation at :math:`x` is Student-t with the same :math:`\nu`, location :math:`x^\top m_n`
    and squared scale :math:`(b_n/a_n)(1 + x^\top\Lambda_n^{-1}x)`. The evidence is

    .. math::

        \log p(y) = -\tfrac n2 \log 2\pi - \tfrac12\log|I_n + X V_0 X^\top|
        + a_0\log b_0 - a_n\log b_n + \log\Gamma(a_n) - \log\Gamma(a_0).
    """

    def __init__(self, X, y, prior_mean=0.0, prior_cov=1.0, a0: float = 1.0, b0: float = 1.0):
        self.X, self.y = as_design(X, y)
        n, p = self.X.shape
        self.prior_mean, self.prior_cov = _prior(prior_mean, prior_cov, p)
        self.a0 = positive_scalar("a0 (inverse-gamma shape)", a0)
        self.b0 = positive_scalar("b0 (inverse-gamma scale)", b0)
        # Conditionally on sigma^2 this is GaussianKnownNoise with noise variance sigma^2 and
        # prior covariance sigma^2 V0; running the update at sigma^2 = 1 gives Lambda_n^-1 and
        # the quadratic form that updates b.
        self._u = _gaussian_update(self.X, self.y, self.prior_mean, self.prior_cov, 1.0)
        self.mean = self._u.mean
        self.cov_unscaled = self._u.cov  # Lambda_n^-1
        if self._u.quad is None:  # flat prior on beta
            resid = self.y - self.X @ self.mean
            self.a_n = self.a0 + 0.5 * (n - p)
            self.b_n = self.b0 + 0.5 * float(resid @ resid)
        else:
            self.a_n = self.a0 + 0.5 * n
            self.b_n = self.b0 + 0.5 * self._u.quad

    @property
    def df(self) -> float:
        """Degrees of freedom :math:`2a_n` of the Student-t marginals."""
        return 2.0 * self.a_n

    @property
    def scale_matrix(self) -> np.ndarray:
        """Scale matrix :math:`(b_n/a_n)\\Lambda_n^{-1}` of the multivariate-t marginal of beta."""
        return (self.b_n / self.a_n) * self.cov_unscaled

    @property
    def cov(self) -> np.ndarray:
        """Posterior covariance of beta, :math:`E[\\sigma^2]\\Lambda_n^{-1}` (needs
        :math:`a_n > 1`)."""
        return self.scale_matrix * self.df / (self.df - 2.0)

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    @property
    def corr(self) -> np.ndarray:
        s = np.sqrt(np.diag(self.cov_unscaled))
        return self.cov_unscaled / np.outer(s, s)

    def marginals(self) -> list:
        """Student-t marginal of each coefficient (frozen ``scipy.stats.t``)."""
        scale = np.sqrt(np.diag(self.scale_matrix))
        return [stats.t(self.df, m, s) for m, s in zip(self.mean, scale, strict=True)]

    def sigma2(self):
        """Posterior of the noise variance, :math:`\\mathrm{InvGamma}(a_n, b_n)`."""
        return stats.invgamma(self.a_n, scale=self.b_n)

    def sigma(self) -> SqrtInvGamma:
        """Posterior of the noise standard deviation."""
        return SqrtInvGamma(self.a_n, self.b_n)

    def sample(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Independent draws ``(beta (size, p), sigma2 (size,))``: sigma^2 first, then beta
        given it."""
        sigma2 = self.b_n / rng.standard_gamma(self.a_n, size)
        L = linalg.cholesky(self.cov_unscaled, lower=True)
        z = rng.standard_normal((size, len(self.mean)))
        return self.mean + np.sqrt(sigma2)[:, None] * (z @ L.T), sigma2

    def predictive(self, X_new) -> Predictive:
        """Student-t predictive; its variance is split into :math:`E[\\sigma^2]` and
        :math:`E[\\sigma^2]x^\\top\\Lambda_n^{-1}x`."""
        Xn = _new_rows(X_new, len(self.mean))
        mean = Xn @ self.mean
        h = np.einsum("ij,jk,ik->i", Xn, self.cov_unscaled, Xn)
        scale = np.sqrt(self.b_n / self.a_n * (1.0 + h))
        e_sigma2 = self.b_n / (self.a_n - 1.0) if self.a_n > 1 else np.inf
        return Predictive(mean, np.full_like(mean, e_sigma2), e_sigma2 * h,
                          stats.t(self.df, mean, scale))

    def log_evidence(self) -> float:
        """Closed-form log marginal likelihood (see the class notes); undefined under a flat
        prior."""
        if self._u.logdet_S is None:
            raise ValueError(
                "the evidence is undefined under a flat (improper) prior on the coefficients."
            )
        n = len(self.y)
        return float(
            -0.5 * n * LOG_2PI
            - 0.5 * self._u.logdet_S
            + self.a0 * np.log(self.b0)
            - self.a_n * np.log(self.b_n)
            + special.gammaln(self.a_n)
            - special.gammaln(self.a0)
        )
