r"""Unnormalized log posteriors of Gaussian linear regression, vectorized across chains.

These are the targets that general-purpose samplers (:mod:`reference.mh`) and optimizers
(:mod:`reference.mle`) work on. Each is a callable object taking a dictionary of parameter values
``{name: ndarray (C,)}``, one entry per scalar parameter and one value per chain, and returning
the log posterior density, up to the constant :math:`-\log p(y)`, as an array of shape (C,).
Values are on the *natural* scale (``sigma`` itself, not its logarithm); a sampler that works on
another scale adds the Jacobian itself.

The model is

.. math::

    y_i \mid \beta, \sigma \sim N(x_i^\top \beta,\; \sigma^2 s_i^2), \qquad i = 1, \dots, n,

with known relative scales :math:`s_i` (all ones unless ``noise_sd`` is given). Writing
:math:`w_i = 1/s_i^2`, :math:`\Omega = \mathrm{diag}(w)` and
:math:`Q(\beta) = (y - X\beta)^\top \Omega (y - X\beta)`, the log likelihood is

.. math::

    \log p(y \mid \beta, \sigma) = -\tfrac n2 \log 2\pi + \tfrac12 \sum_i \log w_i
    - n \log\sigma - \frac{Q(\beta)}{2\sigma^2}.

**Cost independent of n.** Let :math:`\hat\beta` be any weighted least-squares solution, so that
:math:`X^\top\Omega(y - X\hat\beta) = 0`. Expanding about it,

.. math::

    Q(\beta) = Q_{\min} + (\beta - \hat\beta)^\top X^\top\Omega X\, (\beta - \hat\beta),
    \qquad Q_{\min} = Q(\hat\beta),

an identity that holds even when :math:`X^\top\Omega X` is singular (p > n). :math:`X^\top\Omega X`,
:math:`\hat\beta` and :math:`Q_{\min}` are computed once from the data, so one evaluation costs
:math:`O(Cp^2)` whatever n is. This is the same information as :math:`X^\top\Omega X`,
:math:`X^\top\Omega y` and :math:`y^\top\Omega y`, arranged so that the residual sum of squares is
never obtained by subtracting two large numbers (:math:`y^\top\Omega y - 2\beta^\top X^\top\Omega y
+ \dots` loses every significant digit when the fit is close).

Two prior families are provided:

* :func:`regression_logdensity`: independent priors from :mod:`reference.priors` on every
  coefficient and on :math:`\sigma` (or a known :math:`\sigma`), as Bambi and PyMC write them.
* :func:`nig_logdensity`: the conjugate Normal-Inverse-Gamma prior, whose coefficient prior scale
  is :math:`\sigma`, so it cannot be written as independent priors.

:func:`blog_logdensity` is the blog seed's model (slope only, no intercept).

Examples
--------
>>> from reference import priors
>>> ld = regression_logdensity([[1.0], [2.0]], [2.1, 3.9], ["x"], priors.Normal(0, 10),
...                            priors.HalfNormal(5))
>>> ld.params
{'x': 'real', 'sigma': 'positive'}
>>> ld({"x": np.array([2.0, 0.0]), "sigma": np.array([0.5, 0.5])}).shape
(2,)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import linalg

from reference import datasets, priors
from reference._validation import as_design, positive_scalar, spd_matrix, vector
from reference.design import sufficient_stats

__all__ = [
    "BLOG_PRIORS",
    "GaussianLikelihood",
    "NIGLogDensity",
    "RegressionLogDensity",
    "blog_logdensity",
    "nig_logdensity",
    "regression_logdensity",
]

LOG_2PI = np.log(2.0 * np.pi)

#: The blog seed's priors: slope ~ N(5, 3^2), noise sd ~ N(10, 30^2) restricted to sd > 0.
BLOG_PRIORS = {"x": priors.Normal(5.0, 3.0), "sigma": priors.TruncatedNormal(10.0, 30.0, lower=0.0)}


class GaussianLikelihood:
    r"""Gaussian log likelihood :math:`\log p(y \mid \beta, \sigma)` from sufficient statistics.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Design matrix.
    y : array_like, shape (n,)
        Response.
    noise_sd : array_like, shape (n,), optional
        Known relative noise scales :math:`s_i`; row ``i`` has sd :math:`\sigma s_i`. With
        :math:`\sigma` known and equal to 1 these are the rows' known standard deviations.

    Notes
    -----
    See the module docstring for the formula and the expansion about :math:`\hat\beta` that
    makes the cost of one evaluation independent of n.
    """

    def __init__(self, X, y, noise_sd=None):
        X, y = as_design(X, y)
        n, p = X.shape
        if noise_sd is None:
            weights = np.ones(n)
        else:
            sd = np.asarray(noise_sd, dtype=float)
            if sd.shape != (n,) or not np.all(np.isfinite(sd)) or np.any(sd <= 0):
                raise ValueError(
                    f"noise_sd must hold {n} finite values > 0 (one per row); received an array "
                    f"with shape {sd.shape}."
                )
            weights = 1.0 / sd**2
        stats = sufficient_stats(X, y, weights=weights)
        self.n, self.p = n, p
        self.XtWX = stats.WtW
        self.log_weights_sum = stats.log_weights_sum
        # Weighted least squares on the rescaled rows sqrt(w) X, sqrt(w) y; lstsq returns a
        # solution of the normal equations even when X'WX is singular.
        root_w = np.sqrt(weights)
        self.beta_hat = np.linalg.lstsq(root_w[:, None] * X, root_w * y, rcond=None)[0]
        resid = root_w * (y - X @ self.beta_hat)
        self.q_min = float(resid @ resid)

    def quadratic(self, beta: np.ndarray) -> np.ndarray:
        r""":math:`Q(\beta) = Q_{\min} + d^\top X^\top\Omega X d`, :math:`d = \beta - \hat\beta`.

        ``beta`` has shape (C, p); the result (C,).
        """
        d = np.asarray(beta, dtype=float) - self.beta_hat
        return self.q_min + np.einsum("ci,ij,cj->c", d, self.XtWX, d)

    def __call__(self, beta, sigma) -> np.ndarray:
        r"""Log likelihood for ``beta`` (C, p) and ``sigma`` (C,) or scalar; -inf if sigma <= 0."""
        beta = np.atleast_2d(np.asarray(beta, dtype=float))
        sigma = np.asarray(sigma, dtype=float)
        ok = sigma > 0
        safe = np.where(ok, sigma, 1.0)
        ll = (-0.5 * self.n * LOG_2PI + 0.5 * self.log_weights_sum - self.n * np.log(safe)
              - 0.5 * self.quadratic(beta) / safe**2)
        return np.where(ok, ll, -np.inf)


def _stack(values: Mapping, names: Sequence[str]) -> np.ndarray:
    """Stack ``values[name]`` for every name into a (C, len(names)) array, with a clear KeyError."""
    missing = [k for k in names if k not in values]
    if missing:
        raise KeyError(
            f"parameter value(s) {missing} are missing; this log density needs {list(names)}."
        )
    return np.stack([np.atleast_1d(np.asarray(values[k], dtype=float)) for k in names], axis=-1)


def _check_names(names, p: int) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a sequence of {p} strings; received {names!r}.")
    names = tuple(names)
    if len(names) != p or not all(isinstance(k, str) and k for k in names):
        raise ValueError(f"names must be {p} non-empty strings (one per column of X); "
                         f"received {list(names)}.")
    if len(set(names)) != p:
        raise ValueError(f"names must be unique; received {list(names)}.")
    if "sigma" in names:
        raise ValueError("'sigma' is reserved for the noise sd; rename that column.")
    return names


class RegressionLogDensity:
    r"""Log posterior under independent priors: :math:`\sum_j \log p_j(\beta_j) + \log p(\sigma)
    + \log p(y \mid \beta, \sigma)`.

    Built by :func:`regression_logdensity`. Attributes: ``names`` (coefficients), ``params``
    (``{name: "real" | "positive"}``, the support of every sampled parameter, for
    :func:`reference.mh.random_walk_metropolis`), ``likelihood`` (:class:`GaussianLikelihood`),
    ``coef_priors`` and ``sigma_prior`` (``None`` when sigma is known) and ``sigma_value``.
    """

    def __init__(self, likelihood: GaussianLikelihood, names, coef_priors, sigma_prior,
                 sigma_value):
        self.likelihood = likelihood
        self.names = names
        self.coef_priors = coef_priors
        self.sigma_prior = sigma_prior
        self.sigma_value = sigma_value
        # A coefficient with a prior on positive values is sampled on the log scale; any
        # other support (real line, an interval) is sampled as is: the prior's -inf outside
        # an interval makes the sampler reject there.
        self.params = {k: "positive" if pr.support == "positive" else "real"
                       for k, pr in zip(names, coef_priors, strict=True)}
        if sigma_prior is not None:
            self.params["sigma"] = "positive"

    def log_prior(self, values: Mapping) -> np.ndarray:
        """Sum of the fully normalized prior log densities, shape (C,)."""
        beta = _stack(values, self.names)
        lp = sum(pr.logpdf(beta[:, j]) for j, pr in enumerate(self.coef_priors))
        if self.sigma_prior is not None:
            lp = lp + self.sigma_prior.logpdf(_stack(values, ("sigma",))[:, 0])
        return lp

    def __call__(self, values: Mapping) -> np.ndarray:
        """Unnormalized log posterior, shape (C,)."""
        beta = _stack(values, self.names)
        sigma = (self.sigma_value if self.sigma_prior is None
                 else _stack(values, ("sigma",))[:, 0])
        return self.log_prior(values) + self.likelihood(beta, sigma)


def _coef_priors(coef_priors, names) -> tuple:
    """One Prior per coefficient from a Prior, a sequence or a mapping."""
    if isinstance(coef_priors, priors.Prior):
        out = tuple(coef_priors for _ in names)
    elif isinstance(coef_priors, Mapping):
        missing = [k for k in names if k not in coef_priors]
        extra = [k for k in coef_priors if k not in names]
        if missing or extra:
            raise ValueError(f"coef_priors must name exactly the coefficients {list(names)}; "
                             f"missing {missing}, unknown {extra}.")
        out = tuple(coef_priors[k] for k in names)
    elif isinstance(coef_priors, Sequence) and not isinstance(coef_priors, str):
        if len(coef_priors) != len(names):
            raise ValueError(f"coef_priors must hold {len(names)} priors (one per coefficient); "
                             f"received {len(coef_priors)}.")
        out = tuple(coef_priors)
    else:
        raise TypeError("coef_priors must be a Prior, a sequence of Priors or a dict "
                        f"name -> Prior; received {coef_priors!r}.")
    for k, pr in zip(names, out, strict=True):
        if not isinstance(pr, priors.Prior):
            raise TypeError(f"the prior of {k!r} must be a reference.priors Prior; "
                            f"received {pr!r}.")
        if isinstance(pr, priors.Constant):
            raise ValueError(f"a Constant prior on coefficient {k!r} is not supported; drop the "
                             "column and subtract value * column from y instead.")
    return out


def _sigma_prior(sigma_prior):
    """``(prior, None)`` for a free sigma, ``(None, value)`` for a known one."""
    if isinstance(sigma_prior, priors.Constant):
        return None, positive_scalar("the known sigma (Constant value)", sigma_prior.value)
    if isinstance(sigma_prior, priors.Prior):
        on_positive = (sigma_prior.support == "positive" or isinstance(sigma_prior, priors.Flat)
                       or (isinstance(sigma_prior, priors.Uniform) and sigma_prior.lower >= 0))
        if not on_positive:
            raise ValueError(
                f"the prior on sigma must live on positive values (HalfNormal, HalfCauchy, "
                f"Exponential, InverseGamma, TruncatedNormal, Uniform with lower >= 0, Flat); "
                f"received {sigma_prior}."
            )
        return sigma_prior, None
    if isinstance(sigma_prior, bool) or not isinstance(sigma_prior, int | float | np.number):
        raise TypeError("sigma_prior must be a Prior, a Constant or a positive number (known "
                        f"sigma); received {sigma_prior!r}.")
    return None, positive_scalar("the known sigma", sigma_prior)


def regression_logdensity(X, y, names, coef_priors, sigma_prior, *,
                          noise_sd=None) -> RegressionLogDensity:
    r"""Log posterior of a Gaussian linear regression with independent priors.

    .. math::

        \log p(\beta, \sigma \mid y) = \sum_{j=1}^p \log p_j(\beta_j) + \log p(\sigma)
        - \tfrac n2 \log 2\pi + \tfrac12\sum_i \log w_i - n\log\sigma
        - \frac{Q_{\min} + (\beta - \hat\beta)^\top X^\top\Omega X(\beta - \hat\beta)}{2\sigma^2}
        + \text{const},

    where the constant is :math:`-\log p(y)` (see the module docstring for :math:`Q_{\min}` and
    :math:`\hat\beta`). Priors are the fully normalized densities of :mod:`reference.priors`, so
    the value differs from the log posterior density only by the log evidence.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Design matrix; include a column of ones for an intercept.
    y : array_like, shape (n,)
        Response.
    names : sequence of str, length p
        Coefficient names as Bambi gives them (``"Intercept"``, ``"x"``, ...).
    coef_priors : Prior, sequence of Prior or dict name -> Prior
        One prior for every coefficient, or one shared by all.
    sigma_prior : Prior, Constant or float
        Prior on the noise sd :math:`\sigma`; a number or ``Constant(value)`` fixes
        :math:`\sigma` (known noise), and then ``"sigma"`` is not a parameter.
    noise_sd : array_like, shape (n,), optional
        Known relative noise scale of every row (row ``i`` has sd :math:`\sigma s_i`); with
        ``sigma_prior=1.0`` these are known per-row standard deviations.

    Returns
    -------
    RegressionLogDensity
        Callable ``{name: (C,)} -> (C,)``; its ``params`` attribute tells a sampler which
        parameters are real and which positive.
    """
    lik = GaussianLikelihood(X, y, noise_sd)
    names = _check_names(names, lik.p)
    coef = _coef_priors(coef_priors, names)
    prior, value = _sigma_prior(sigma_prior)
    return RegressionLogDensity(lik, names, coef, prior, value)


class NIGLogDensity:
    r"""Log posterior under the Normal-Inverse-Gamma prior; built by :func:`nig_logdensity`.

    Attributes ``names``, ``params`` (coefficients real, ``sigma`` positive) and ``likelihood``
    as in :class:`RegressionLogDensity`.
    """

    def __init__(self, likelihood: GaussianLikelihood, names, prior_mean, prior_cov, a0, b0):
        self.likelihood = likelihood
        self.names = names
        self.prior_mean = prior_mean
        chol = linalg.cholesky(prior_cov, lower=True)
        self.logdet_V0 = 2.0 * float(np.log(np.diag(chol)).sum())
        # whitening matrix L0^-1 (one triangular solve, done once): z = L0^-1 (beta - m0) has
        # |z|^2 = (beta - m0)' V0^-1 (beta - m0), and is then a plain matrix product per call
        self.whiten = linalg.solve_triangular(chol, np.eye(len(names)), lower=True)
        self.sigma_prior = priors.InverseGamma(a0, b0, on="sigma2")
        self.params = {**{k: "real" for k in names}, "sigma": "positive"}

    def log_prior(self, values: Mapping) -> np.ndarray:
        r""":math:`\log N(\beta \mid m_0, \sigma^2 V_0) + \log \mathrm{IG}(\sigma^2 \mid a_0, b_0)
        + \log 2\sigma`, shape (C,)."""
        beta = _stack(values, self.names)
        sigma = _stack(values, ("sigma",))[:, 0]
        ok = sigma > 0
        s = np.where(ok, sigma, 1.0)
        p = len(self.names)
        # Mahalanobis term through the Cholesky factor: z = L0^-1 (beta - m0), |z|^2
        z = (beta - self.prior_mean) @ self.whiten.T
        log_normal = (-0.5 * p * LOG_2PI - p * np.log(s) - 0.5 * self.logdet_V0
                      - 0.5 * np.sum(z * z, axis=1) / s**2)
        return np.where(ok, log_normal + self.sigma_prior.logpdf(s), -np.inf)

    def __call__(self, values: Mapping) -> np.ndarray:
        """Unnormalized log posterior, shape (C,)."""
        beta = _stack(values, self.names)
        sigma = _stack(values, ("sigma",))[:, 0]
        return self.log_prior(values) + self.likelihood(beta, sigma)


def nig_logdensity(X, y, names, *, prior_mean=0.0, prior_cov=1.0, a0: float = 1.0,
                   b0: float = 1.0) -> NIGLogDensity:
    r"""Log posterior under the conjugate Normal-Inverse-Gamma prior, on :math:`(\beta, \sigma)`.

    .. math::

        \sigma^2 \sim \mathrm{InvGamma}(a_0, b_0), \qquad
        \beta \mid \sigma \sim N(m_0, \sigma^2 V_0), \qquad
        y \mid \beta, \sigma \sim N(X\beta, \sigma^2 I_n).

    The density is stated for :math:`\sigma` (not :math:`\sigma^2`), so the inverse-gamma term
    carries the Jacobian :math:`|d\sigma^2/d\sigma| = 2\sigma`:

    .. math::

        \log p(\beta, \sigma \mid y) = -\tfrac p2\log 2\pi - p\log\sigma - \tfrac12\log|V_0|
        - \frac{(\beta - m_0)^\top V_0^{-1}(\beta - m_0)}{2\sigma^2}
        + \log\mathrm{IG}(\sigma^2 \mid a_0, b_0) + \log 2\sigma
        + \log p(y \mid \beta, \sigma) + \text{const}.

    Its exact posterior is :class:`reference.conjugate.NormalInverseGamma` with the same
    arguments, which is what the samplers are tested against.

    Parameters
    ----------
    X, y, names
        As in :func:`regression_logdensity`.
    prior_mean : float or array_like (p,)
        :math:`m_0`.
    prior_cov : float, array_like (p,) or (p, p)
        :math:`V_0`, in units of :math:`\sigma^2`.
    a0, b0 : float
        Shape and scale of the inverse-gamma prior on :math:`\sigma^2`.
    """
    lik = GaussianLikelihood(X, y)
    names = _check_names(names, lik.p)
    m0 = vector("prior_mean", prior_mean, lik.p)
    V0 = spd_matrix("prior_cov", prior_cov, lik.p)
    a0 = positive_scalar("a0 (inverse-gamma shape)", a0)
    b0 = positive_scalar("b0 (inverse-gamma scale)", b0)
    return NIGLogDensity(lik, names, m0, V0, a0, b0)


def blog_logdensity(data: dict | None = None) -> RegressionLogDensity:
    r"""The blog seed's model: ``y ~ 0 + x``, :math:`y_i \sim N(\text{slope}\, x_i, \sigma^2)`,
    slope ~ N(5, 3^2), :math:`\sigma` ~ N(10, 30^2) truncated to :math:`\sigma > 0`.

    ``data`` defaults to :func:`reference.datasets.blog_mh`. The slope is named ``x`` as Bambi
    names it. (The post's own code evaluates an untruncated normal on sd; on sd > 0 that differs
    from the truncated prior only by a constant.)
    """
    data = datasets.blog_mh() if data is None else data
    return regression_logdensity(np.asarray(data["x"], float)[:, None], data["y"], ["x"],
                                 BLOG_PRIORS["x"], BLOG_PRIORS["sigma"])
