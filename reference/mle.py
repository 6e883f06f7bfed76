r"""Maximum likelihood for Gaussian linear regression by Nelder-Mead, as in the blog seed.

The blog post maximizes the Gaussian log likelihood of ``y ~ 0 + x`` over (slope, sd) with
``scipy.optimize.minimize(..., method="Nelder-Mead")`` (Nelder and Mead 1965), a derivative-free
simplex search. Here the same search runs over :math:`(\beta, \log\sigma)`: on the log scale the
problem is unconstrained, so the simplex can never step to :math:`\sigma \le 0`.

The answer is known in closed form, which is what the tests check:

.. math::

    \hat\beta = (X^\top X)^{-1} X^\top y \ \text{(least squares)}, \qquad
    \hat\sigma^2 = \frac{\|y - X\hat\beta\|^2}{n}, \qquad
    \max \log L = -\tfrac n2\left(\log 2\pi\hat\sigma^2 + 1\right).

(:math:`\hat\sigma^2` divides by n, not n - p: it is the maximum-likelihood estimate, biased
downward.) With known per-row scales ``noise_sd`` the least squares are weighted.

References
----------
.. [1] Nelder, J. A. and Mead, R. (1965). A simplex method for function minimization. *The
   Computer Journal* 7, 308-313.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from reference import datasets
from reference.logdensity import GaussianLikelihood, _check_names

__all__ = ["MLEResult", "blog_mle", "regression_mle"]


@dataclass(frozen=True)
class MLEResult:
    """Maximum-likelihood estimates.

    Attributes
    ----------
    estimates : dict name -> float
        Coefficients by name and ``"sigma"`` (natural scale).
    max_loglik : float
        The log likelihood at the estimates.
    converged : bool
        Whether Nelder-Mead met its tolerances.
    n_iter : int
        Simplex iterations used.
    message : str
        The optimizer's message.
    """

    estimates: dict
    max_loglik: float
    converged: bool
    n_iter: int
    message: str


def regression_mle(X, y, names, *, x0=None, noise_sd=None, xatol: float = 1e-10,
                   fatol: float = 1e-12) -> MLEResult:
    r"""Maximize :math:`\log p(y \mid \beta, \sigma)` over :math:`(\beta, \log\sigma)`, Nelder-Mead.

    Parameters
    ----------
    X : array_like (n, p)
        Design matrix.
    y : array_like (n,)
        Response.
    names : sequence of str
        Coefficient names (length p).
    x0 : array_like (p + 1,), optional
        Start ``(beta..., sigma)`` on the natural scale. Default: :math:`\beta = 0` and
        :math:`\sigma` = the sd of y (1 if y is constant).
    noise_sd : array_like (n,), optional
        Known relative noise scales, as in :class:`reference.logdensity.GaussianLikelihood`.
    xatol, fatol : float
        Nelder-Mead's absolute tolerances on the simplex and on the objective.

    Returns
    -------
    MLEResult
        A ``RuntimeWarning`` is issued if the simplex did not converge.
    """
    lik = GaussianLikelihood(X, y, noise_sd)
    names = _check_names(names, lik.p)
    p = lik.p
    if x0 is None:
        sd_y = float(np.std(np.asarray(y, dtype=float)))
        start = np.concatenate([np.zeros(p), [np.log(sd_y) if sd_y > 0 else 0.0]])
    else:
        x0 = np.asarray(x0, dtype=float)
        if x0.shape != (p + 1,) or not np.all(np.isfinite(x0)) or x0[-1] <= 0:
            raise ValueError(f"x0 must be {p + 1} finite numbers (coefficients, then sigma > 0); "
                             f"received {x0.tolist() if x0.ndim else x0}.")
        start = np.concatenate([x0[:p], [np.log(x0[-1])]])

    def negative_loglik(theta: np.ndarray) -> float:
        # theta = (beta, log sigma)
        return -float(lik(theta[None, :p], np.exp(theta[p]))[0])

    res = optimize.minimize(negative_loglik, start, method="Nelder-Mead",
                            options={"xatol": xatol, "fatol": fatol,
                                     "maxiter": 2000 * (p + 1), "maxfev": 4000 * (p + 1),
                                     "adaptive": p + 1 > 3})
    if not res.success:
        warnings.warn(f"Nelder-Mead did not converge: {res.message}", RuntimeWarning,
                      stacklevel=2)
    estimates = {k: float(v) for k, v in zip(names, res.x[:p], strict=True)}
    estimates["sigma"] = float(np.exp(res.x[p]))
    return MLEResult(estimates, float(-res.fun), bool(res.success), int(res.nit),
                     str(res.message))


def blog_mle(data: dict | None = None) -> MLEResult:
    """The blog seed's maximum likelihood: ``y ~ 0 + x`` started, as in the post, at
    slope 1 and sd 1. ``data`` defaults to :func:`reference.datasets.blog_mh`."""
    data = datasets.blog_mh() if data is None else data
    return regression_mle(np.asarray(data["x"], float)[:, None], data["y"], ["x"], x0=[1.0, 1.0])
