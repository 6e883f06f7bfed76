r"""Agreement of Monte Carlo draws with an exact answer, in units of Monte Carlo standard error.

For a scalar parameter with draws shaped (chain, draw) and an exact posterior, each quantity
:math:`q` (mean, sd, 5% and 95% quantiles) gives

.. math::

    z = \frac{\hat q - q_{\text{exact}}}{\widehat{\mathrm{MCSE}}(\hat q)},

with the MCSE from arviz (``sd / sqrt(ESS)`` for the mean, the ESS-based formulas for sd and
quantiles; Vehtari et al. 2021). Under a correct sampler :math:`z` is close to standard normal,
so :math:`|z| < z_{\max}` holds with a known false-alarm rate per quantity.

A posterior *correlation* :math:`\rho` between two coefficients is estimated by the sample
correlation :math:`r` of the draws, each set standardized by its own mean and sd (never by the
exact ones: a stuck chain must not pass for a correlation). Its MCSE comes from the delta method:
with :math:`\tilde a_t, \tilde b_t` the standardized draws,

.. math::

    r - \rho \approx \frac1n \sum_t \Big[\tilde a_t \tilde b_t
    - \frac{r}{2}\big(\tilde a_t^2 + \tilde b_t^2\big)\Big],

so the MCSE of :math:`r` is the MCSE of the mean of that influence series (arviz, which accounts
for autocorrelation). For independent normal draws its variance is the classical
:math:`(1-\rho^2)^2/n`.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Burkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC. *Bayesian
Analysis* 16(2), 667-718.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["QUANTITIES", "Check", "check_against_exact", "check_correlation",
           "correlation_mcse", "quantile_z_between"]

#: The quantities compared for every scalar parameter, with their arviz MCSE method.
QUANTITIES = {"mean": ("mean", None), "sd": ("sd", None), "q05": ("quantile", 0.05),
              "q95": ("quantile", 0.95)}


@dataclass(frozen=True)
class Check:
    """One comparison of an estimate with a target value, in MCSE units."""

    parameter: str
    quantity: str
    estimate: float
    target: float
    mcse: float
    z: float

    def as_dict(self) -> dict:
        return asdict(self)


def _estimate(x: np.ndarray, quantity: str) -> float:
    flat = x.reshape(-1)
    if not np.all(np.isfinite(flat)):
        return float("nan")
    if quantity == "mean":
        return float(flat.mean())
    if quantity == "sd":
        return float(flat.std(ddof=1))
    return float(np.quantile(flat, QUANTITIES[quantity][1]))


def mcse(x: np.ndarray, quantity: str) -> float:
    """MCSE of ``quantity`` for draws ``x`` shaped (chain, draw), from arviz."""
    import arviz_stats

    method, prob = QUANTITIES[quantity]
    kw = {"prob": prob} if prob is not None else {}
    return float(arviz_stats.mcse(np.asarray(x, dtype=float), method=method, **kw))


def exact_value(dist, quantity: str) -> float:
    """Exact ``quantity`` of a distribution with ``mean()``, ``std()`` and ``ppf()``."""
    if quantity == "mean":
        return float(dist.mean())
    if quantity == "sd":
        return float(dist.std())
    return float(dist.ppf(QUANTITIES[quantity][1]))


def check_against_exact(name: str, x, dist, quantities=tuple(QUANTITIES)) -> list[Check]:
    """Compare draws ``x`` (chain, draw) of one scalar parameter with its exact marginal
    ``dist``."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"draws of {name!r} must be shaped (chain, draw); received {x.shape}.")
    out = []
    for q in quantities:
        est, target = _estimate(x, q), exact_value(dist, q)
        if QUANTITIES[q][1] is not None and np.all(np.isfinite(x)):
            out.append(_quantile_check(name, q, x, est, target, dist))
            continue
        se = mcse(x, q) if np.all(np.isfinite(x)) else float("nan")
        out.append(Check(name, q, est, target, se, _z(est - target, se)))
    return out


def _quantile_check(name: str, q: str, x: np.ndarray, est: float, target: float, dist) -> Check:
    r"""A quantile checked on the probability scale, where the null variance is known.

    Under a correct sampler the indicator :math:`I(x \le q_p)` at the exact quantile has mean
    :math:`p` and variance :math:`p(1-p)`, so

    .. math::

        z = \frac{p - \hat F(q_p)}{\sqrt{p(1-p) / \mathrm{ESS}}},

    with :math:`\hat F(q_p)` the fraction of draws at or below :math:`q_p` and the ESS of the
    indicator from arviz. Its sign is that of :math:`\hat q_p - q_p` (Bahadur: :math:`\hat q_p -
    q_p \approx (p - \hat F(q_p)) / f(q_p)`). Only the ESS is estimated: arviz's quantile MCSE
    also estimates the density at :math:`q_p` from a few dozen order statistics, and that noise
    made :math:`|z| > 3` two to four times as frequent as a normal z under correct samplers
    (``tests/null_z_study.py``). The MCSE stored in parameter units is
    :math:`\sqrt{p(1-p)/\mathrm{ESS}} / f(q_p)` when ``dist`` has a ``pdf``, else arviz's.
    """
    import arviz_stats

    prob = QUANTITIES[q][1]
    ind = (x <= target).astype(float)
    ess = float(arviz_stats.ess(ind, method="mean"))
    se_f = np.sqrt(prob * (1 - prob) / ess) if np.isfinite(ess) and ess > 0 else float("nan")
    z = _z(prob - float(ind.mean()), se_f)
    density = float(dist.pdf(target)) if hasattr(dist, "pdf") else float("nan")
    se = se_f / density if np.isfinite(density) and density > 0 else mcse(x, q)
    return Check(name, q, est, target, float(se), z)


def quantile_z_between(x1: np.ndarray, x2: np.ndarray, prob: float, at: float | None = None
                       ) -> float:
    r"""z for the p-quantiles of two sets of draws, compared on the probability scale.

    At a common point :math:`r` (the exact quantile when known, else the quantile of the pooled
    draws), a correct pair has :math:`F_1(r) = F_2(r) \approx p`, so

    .. math::

        z = \frac{\hat F_2(r) - \hat F_1(r)}{\sqrt{p(1-p)\,(1/\mathrm{ESS}_1 + 1/\mathrm{ESS}_2)}}

    with each ESS that of the indicator :math:`I(x \le r)`. The sign is that of
    :math:`\hat q_1 - \hat q_2`. As in :func:`_quantile_check`, no density is estimated.
    """
    import arviz_stats

    x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
    if not (np.all(np.isfinite(x1)) and np.all(np.isfinite(x2))):
        return float("nan")
    r = float(np.quantile(np.concatenate([x1.ravel(), x2.ravel()]), prob)) if at is None else at
    i1, i2 = (x1 <= r).astype(float), (x2 <= r).astype(float)
    ess1 = float(arviz_stats.ess(i1, method="mean"))
    ess2 = float(arviz_stats.ess(i2, method="mean"))
    if not (np.isfinite(ess1) and np.isfinite(ess2) and ess1 > 0 and ess2 > 0):
        return float("nan")
    se = np.sqrt(prob * (1 - prob) * (1 / ess1 + 1 / ess2))
    return _z(float(i2.mean() - i1.mean()), se)


def _z(diff: float, se: float) -> float:
    """diff / se; a zero or non-finite MCSE gives inf (or 0 for no difference), never an error.

    Draws that ran off to infinity, or a chain stuck at one value, must fail a check loudly.
    """
    if np.isfinite(se) and se > 0:
        return float(diff / se)
    return 0.0 if diff == 0 else float("inf")


def correlation_influence(a, b) -> tuple[float, np.ndarray]:
    """The sample correlation of draws ``a`` and ``b`` (chain, draw) and its influence series.

    ``r - rho`` is to first order the mean of the series, so ``mcse(series, "mean")`` is the
    MCSE of ``r`` (see the module docstring).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan"), np.full(a.shape, np.nan)
    sa, sb = a.std(), b.std()
    if not (sa > 0 and sb > 0):  # a constant set of draws has no correlation
        return float("nan"), np.full(a.shape, np.nan)
    ta, tb = (a - a.mean()) / sa, (b - b.mean()) / sb
    r = float(np.mean(ta * tb))
    return r, ta * tb - 0.5 * r * (ta * ta + tb * tb)


def correlation_mcse(a, b) -> tuple[float, float]:
    """``(r, MCSE of r)`` for draws ``a`` and ``b`` shaped (chain, draw)."""
    r, series = correlation_influence(a, b)
    if not np.isfinite(r):
        return r, float("nan")
    return r, mcse(series, "mean")


def check_correlation(names: tuple[str, str], a, b, rho: float) -> Check:
    """Compare the sample correlation of draws ``a`` and ``b`` with the exact ``rho``."""
    r, se = correlation_mcse(a, b)
    return Check(f"corr({names[0]}, {names[1]})", "corr", r, float(rho), se, _z(r - rho, se))
