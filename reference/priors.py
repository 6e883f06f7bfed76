r"""Prior distributions for the reference backend: fully normalized log densities and draws.

One vocabulary is shared by every backend: ``Normal``, ``StudentT``, ``HalfNormal``,
``HalfCauchy``, ``HalfStudentT``, ``Exponential``, ``InverseGamma`` (on :math:`\sigma` or on
:math:`\sigma^2`), ``Uniform``, ``Flat`` and ``Constant``. Parameter names and meanings follow
PyMC (``Normal(mu, sigma)``, ``HalfCauchy(beta)``, ``Exponential(lam)``, ...), so a prior reads
the same in a case file, here and in the PyMC model.

Every log density is *fully normalized*, truncation included: a half-distribution is twice its
symmetric parent on :math:`(0, \infty)`. That matters for the evidence, which is only defined for
proper priors; ``Flat`` has no normalizing constant and is flagged by ``proper = False``.

A prior on the variance is evaluated on the standard-deviation scale with its Jacobian:
if :math:`\sigma^2 \sim \mathrm{InvGamma}(a, b)` then
:math:`p(\sigma) = \mathrm{InvGamma}(\sigma^2 \mid a, b)\, 2\sigma`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np
from scipy import special, stats

from reference._validation import positive_scalar

__all__ = [
    "Constant",
    "Exponential",
    "Flat",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "InverseGamma",
    "Normal",
    "Prior",
    "StudentT",
    "TruncatedNormal",
    "Uniform",
    "PRIORS",
]

LOG2 = np.log(2.0)
HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _norm_logpdf(x, mu, sigma):
    """log N(x | mu, sigma^2), written out (scipy.stats' per-call overhead dominates MCMC steps)."""
    z = (np.asarray(x, dtype=float) - mu) / sigma
    return -HALF_LOG_2PI - np.log(sigma) - 0.5 * z * z


def _t_logpdf(x, nu, mu, sigma):
    """log Student-t(x | nu, mu, sigma)."""
    z = (np.asarray(x, dtype=float) - mu) / sigma
    return (special.gammaln(0.5 * (nu + 1)) - special.gammaln(0.5 * nu)
            - 0.5 * np.log(nu * np.pi) - np.log(sigma) - 0.5 * (nu + 1) * np.log1p(z * z / nu))


@dataclass(frozen=True)
class Prior:
    """Base class. Subclasses define ``logpdf``, ``rvs`` and the support."""

    #: "real", "positive" or "interval"
    support: ClassVar[str] = "real"
    #: False for improper priors (Flat), whose evidence is undefined
    proper: ClassVar[bool] = True
    #: names of the parameters that set the prior's scale (halved/doubled in sensitivity runs)
    scale_fields: ClassVar[tuple] = ()

    def logpdf(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def rvs(self, rng: np.random.Generator, size=None):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def rescaled(self, factor: float) -> Prior:
        """The same prior with every scale parameter multiplied by ``factor``."""
        return replace(self, **{k: getattr(self, k) * factor for k in self.scale_fields})

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v!r}"
                         for k, v in self.params().items())
        return f"{self.name}({args})"


def _pos(x):
    """Log-density helper: -inf outside (0, inf)."""
    x = np.asarray(x, dtype=float)
    return x, x > 0


@dataclass(frozen=True)
class Normal(Prior):
    mu: float = 0.0
    sigma: float = 1.0
    scale_fields = ("sigma",)

    def __post_init__(self):
        positive_scalar("Normal sigma", self.sigma)

    def logpdf(self, x):
        return _norm_logpdf(x, self.mu, self.sigma)

    def rvs(self, rng, size=None):
        return self.mu + self.sigma * rng.standard_normal(size)


@dataclass(frozen=True)
class TruncatedNormal(Prior):
    r"""Normal(mu, sigma) truncated to ``(lower, inf)``, normalized by
    :math:`1 - \Phi((l-\mu)/\sigma)`.

    The blog seed's prior on the noise sd, N(10, 30^2) restricted to sd > 0, is
    ``TruncatedNormal(mu=10, sigma=30, lower=0)``.
    """

    mu: float = 0.0
    sigma: float = 1.0
    lower: float = 0.0
    support = "positive"
    scale_fields = ("sigma",)

    def __post_init__(self):
        positive_scalar("TruncatedNormal sigma", self.sigma)
        if self.lower != 0.0:
            raise ValueError(
                f"TruncatedNormal supports lower=0 (a positive parameter); received {self.lower}."
            )

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        log_mass = stats.norm.logsf(self.lower, self.mu, self.sigma)
        return np.where(x > self.lower, _norm_logpdf(x, self.mu, self.sigma) - log_mass, -np.inf)

    def rvs(self, rng, size=None):
        a = (self.lower - self.mu) / self.sigma
        u = rng.uniform(stats.norm.cdf(a), 1.0, size)
        return self.mu + self.sigma * stats.norm.ppf(u)


@dataclass(frozen=True)
class StudentT(Prior):
    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0
    scale_fields = ("sigma",)

    def __post_init__(self):
        positive_scalar("StudentT nu", self.nu)
        positive_scalar("StudentT sigma", self.sigma)

    def logpdf(self, x):
        return _t_logpdf(x, self.nu, self.mu, self.sigma)

    def rvs(self, rng, size=None):
        return self.mu + self.sigma * rng.standard_t(self.nu, size)


@dataclass(frozen=True)
class HalfNormal(Prior):
    sigma: float = 1.0
    support = "positive"
    scale_fields = ("sigma",)

    def __post_init__(self):
        positive_scalar("HalfNormal sigma", self.sigma)

    def logpdf(self, x):
        x, ok = _pos(x)
        return np.where(ok, LOG2 + _norm_logpdf(x, 0.0, self.sigma), -np.inf)

    def rvs(self, rng, size=None):
        return np.abs(self.sigma * rng.standard_normal(size))


@dataclass(frozen=True)
class HalfCauchy(Prior):
    beta: float = 1.0
    support = "positive"
    scale_fields = ("beta",)

    def __post_init__(self):
        positive_scalar("HalfCauchy beta", self.beta)

    def logpdf(self, x):
        x, ok = _pos(x)
        z = x / self.beta
        return np.where(ok, LOG2 - np.log(np.pi * self.beta) - np.log1p(z * z), -np.inf)

    def rvs(self, rng, size=None):
        return np.abs(self.beta * rng.standard_cauchy(size))


@dataclass(frozen=True)
class HalfStudentT(Prior):
    nu: float = 3.0
    sigma: float = 1.0
    support = "positive"
    scale_fields = ("sigma",)

    def __post_init__(self):
        positive_scalar("HalfStudentT nu", self.nu)
        positive_scalar("HalfStudentT sigma", self.sigma)

    def logpdf(self, x):
        x, ok = _pos(x)
        return np.where(ok, LOG2 + _t_logpdf(x, self.nu, 0.0, self.sigma), -np.inf)

    def rvs(self, rng, size=None):
        return np.abs(self.sigma * rng.standard_t(self.nu, size))


@dataclass(frozen=True)
class Exponential(Prior):
    lam: float = 1.0
    support = "positive"

    def __post_init__(self):
        positive_scalar("Exponential lam", self.lam)

    def logpdf(self, x):
        x, ok = _pos(x)
        return np.where(ok, np.log(self.lam) - self.lam * x, -np.inf)

    def rvs(self, rng, size=None):
        return rng.standard_exponential(size) / self.lam

    def rescaled(self, factor: float) -> Prior:
        # the scale of an exponential is 1 / lam
        return replace(self, lam=self.lam / factor)


@dataclass(frozen=True)
class InverseGamma(Prior):
    r"""Inverse-gamma with shape ``alpha`` and scale ``beta``.

    ``on="sigma2"`` (the conjugate choice) places it on the variance of the parameter it is
    attached to, while ``logpdf`` and ``rvs`` still work on the standard-deviation scale;
    ``on="sigma"`` places it on the parameter itself.
    """

    alpha: float = 1.0
    beta: float = 1.0
    on: str = "sigma"
    support = "positive"
    scale_fields = ("beta",)

    def __post_init__(self):
        positive_scalar("InverseGamma alpha", self.alpha)
        positive_scalar("InverseGamma beta", self.beta)
        if self.on not in ("sigma", "sigma2"):
            raise ValueError("InverseGamma 'on' must be 'sigma' or 'sigma2'; received "
                             f"{self.on!r}.")

    def rescaled(self, factor: float) -> Prior:
        # scaling sigma by f scales sigma^2 by f^2
        return replace(self, beta=self.beta * (factor**2 if self.on == "sigma2" else factor))

    def logpdf(self, x):
        x, ok = _pos(x)
        xs = np.where(ok, x, 1.0)
        a, b = self.alpha, self.beta
        if self.on == "sigma":
            lp = a * np.log(b) - special.gammaln(a) - (a + 1) * np.log(xs) - b / xs
        else:  # density of sigma^2 at x^2, times the Jacobian 2x
            v = xs * xs
            lp = (a * np.log(b) - special.gammaln(a) - (a + 1) * np.log(v) - b / v + LOG2
                  + np.log(xs))
        return np.where(ok, lp, -np.inf)

    def rvs(self, rng, size=None):
        draw = self.beta / rng.standard_gamma(self.alpha, size)
        return np.sqrt(draw) if self.on == "sigma2" else draw


@dataclass(frozen=True)
class Uniform(Prior):
    lower: float = 0.0
    upper: float = 1.0
    support = "interval"

    def __post_init__(self):
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.upper > self.lower):
            raise ValueError(
                f"Uniform needs finite lower < upper; received lower={self.lower}, "
                f"upper={self.upper}."
            )

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x > self.lower) & (x < self.upper)
        return np.where(inside, -np.log(self.upper - self.lower), -np.inf)

    def rvs(self, rng, size=None):
        return rng.uniform(self.lower, self.upper, size)

    def rescaled(self, factor: float) -> Prior:
        mid, half = 0.5 * (self.lower + self.upper), 0.5 * (self.upper - self.lower) * factor
        lower = max(mid - half, 0.0) if self.lower >= 0 else mid - half
        return replace(self, lower=lower, upper=mid + half)


@dataclass(frozen=True)
class Flat(Prior):
    """Improper uniform prior on the real line: log density 0, no draws, evidence undefined."""

    proper = False

    def logpdf(self, x):
        return np.zeros_like(np.asarray(x, dtype=float))

    def rvs(self, rng, size=None):
        raise ValueError("a Flat prior is improper and cannot be sampled from.")

    def rescaled(self, factor: float) -> Prior:
        return self


@dataclass(frozen=True)
class Constant(Prior):
    """A parameter fixed at ``value`` (for example known noise ``sigma``)."""

    value: float = 1.0

    def logpdf(self, x):
        return np.where(np.asarray(x, dtype=float) == self.value, 0.0, -np.inf)

    def rvs(self, rng, size=None):
        return np.full(size if size is not None else (), float(self.value))

    def rescaled(self, factor: float) -> Prior:
        return self


#: name -> class, the vocabulary accepted in case files
PRIORS = {cls.__name__: cls for cls in (Normal, StudentT, TruncatedNormal, HalfNormal, HalfCauchy,
                                         HalfStudentT, Exponential, InverseGamma, Uniform, Flat,
                                         Constant)}
