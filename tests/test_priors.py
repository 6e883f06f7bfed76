"""The prior vocabulary: normalized densities that match scipy, and draws that follow them."""

import numpy as np
import pytest
from scipy import integrate, stats

from reference.priors import (
    PRIORS,
    Constant,
    Exponential,
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    Normal,
    StudentT,
    TruncatedNormal,
    Uniform,
)

PROPER = [Normal(1.0, 2.0), StudentT(3.0, 1.0, 2.0), HalfNormal(2.0), HalfCauchy(3.0),
          HalfStudentT(3.0, 2.0), Exponential(2.0), InverseGamma(3.0, 2.0, on="sigma"),
          InverseGamma(3.0, 2.0, on="sigma2"), Uniform(0.5, 4.0),
          TruncatedNormal(10.0, 30.0, 0.0)]
SCIPY = {  # the same densities from scipy.stats, on the parameter's own scale
    "Normal": stats.norm(1, 2), "StudentT": stats.t(3, 1, 2), "HalfNormal": stats.halfnorm(0, 2),
    "HalfCauchy": stats.halfcauchy(0, 3), "HalfStudentT": None, "Exponential": stats.expon(0, 0.5),
    "Uniform": stats.uniform(0.5, 3.5), "TruncatedNormal": stats.truncnorm(-1 / 3, np.inf, 10, 30),
}


@pytest.mark.parametrize("prior", PROPER, ids=str)
def test_density_integrates_to_one(prior):
    lo = -np.inf if prior.support == "real" else 0.0
    total = sum(integrate.quad(lambda x: np.exp(prior.logpdf(x)), a, b, limit=200)[0]
                for a, b in [(lo, 1.0), (1.0, np.inf)])
    assert total == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("prior", PROPER, ids=str)
def test_density_matches_scipy(prior):
    x = np.linspace(0.05, 6.0, 25)
    ref = SCIPY.get(prior.name)
    if prior.name == "InverseGamma":
        ig = stats.invgamma(3.0, scale=2.0)
        expect = ig.logpdf(x) if prior.on == "sigma" else ig.logpdf(x**2) + np.log(2 * x)
    elif prior.name == "HalfStudentT":
        expect = np.log(2) + stats.t.logpdf(x, 3, 0, 2)
    else:
        expect = ref.logpdf(x)
    np.testing.assert_allclose(prior.logpdf(x), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prior", PROPER, ids=str)
def test_draws_follow_the_density(prior):
    """Kolmogorov-Smirnov against the density's own CDF (by quadrature); false-alarm 1e-4."""
    rng = np.random.default_rng(20261121)
    draws = np.sort(prior.rvs(rng, 2000))
    lo = -np.inf if prior.support == "real" else 0.0
    pts = draws[::100]
    cdf = np.array([integrate.quad(lambda x: np.exp(prior.logpdf(x)), lo, p, limit=200)[0]
                    for p in pts])
    ecdf = (np.arange(0, 2000, 100) + 1) / 2000
    # two-sided KS critical value at level 1e-4 for n = 2000: sqrt(-log(0.5e-4) / (2n))
    assert np.max(np.abs(cdf - ecdf)) < np.sqrt(-np.log(0.5e-4) / 4000)


def test_outside_support_is_minus_infinity():
    for p in PROPER:
        if p.support != "real":
            assert p.logpdf(-1.0) == -np.inf
    assert Uniform(0.5, 4.0).logpdf(4.5) == -np.inf


def test_rescaling_scales_the_distribution():
    assert HalfNormal(2.0).rescaled(0.5) == HalfNormal(1.0)
    assert Exponential(2.0).rescaled(2.0) == Exponential(1.0)  # scale 1/lam doubles
    assert InverseGamma(3.0, 2.0, on="sigma2").rescaled(2.0).beta == 8.0
    assert Flat().rescaled(2.0) == Flat() and Constant(1.0).rescaled(3.0) == Constant(1.0)


def test_flat_is_improper():
    assert not Flat().proper and all(p.proper for p in PROPER)
    with pytest.raises(ValueError, match="improper"):
        Flat().rvs(np.random.default_rng(0), 3)


@pytest.mark.parametrize("build, match", [
    (lambda: Normal(0.0, -1.0), "Normal sigma must be a finite number > 0; received -1"),
    (lambda: HalfCauchy(0.0), "HalfCauchy beta"),
    (lambda: InverseGamma(1.0, 1.0, on="tau"), "'on' must be 'sigma' or 'sigma2'"),
    (lambda: Uniform(2.0, 1.0), "lower < upper"),
    (lambda: Exponential(np.nan), "Exponential lam"),
])
def test_bad_parameters(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_vocabulary():
    assert set(PRIORS) == {"Normal", "StudentT", "TruncatedNormal", "HalfNormal", "HalfCauchy",
                           "HalfStudentT", "Exponential", "InverseGamma", "Uniform", "Flat",
                           "Constant"}
