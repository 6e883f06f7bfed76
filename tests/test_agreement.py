"""The z statistics of :mod:`comparisons.agreement` under a correct sampler, and their power.

The verdict rule compares |z| with Holm thresholds near 3.5 to 4.5, so z must be close to
standard normal far into its tails, not only in its sd.
"""

import numpy as np
import pytest
from scipy import stats

from comparisons.agreement import check_against_exact

SEED = 20261121
REPS = 1500


@pytest.fixture(scope="module")
def null_z():
    """z of every quantity for REPS sets of iid N(0, 1) draws shaped (4 chains, 1000)."""
    rng = np.random.default_rng(SEED)
    out = {}
    for _ in range(REPS):
        for c in check_against_exact("x", rng.standard_normal((4, 1000)), stats.norm()):
            out.setdefault(c.quantity, []).append(c.z)
    return {q: np.asarray(z) for q, z in out.items()}


@pytest.mark.parametrize("quantity", ["q05", "q95"])
def test_quantile_z_is_standard_normal_into_the_tails(null_z, quantity):
    z = null_z[quantity]
    # rms 1 within 4 standard errors of an rms over REPS normal values (sd 1/sqrt(2 REPS))
    assert abs(np.sqrt(np.mean(z**2)) - 1) < 4 / np.sqrt(2 * REPS)
    # tail beyond 3: at most the 99.9% binomial quantile at the normal's 0.27%
    assert np.sum(np.abs(z) > 3) <= stats.binom.ppf(0.999, REPS, 2 * stats.norm.sf(3))
    # and beyond 3.5, where Holm's thresholds start (arviz's quantile MCSE gave 7 of 3000 here,
    # against 1.4 expected; this statistic 1)
    assert np.sum(np.abs(z) > 3.5) <= stats.binom.ppf(0.999, REPS, 2 * stats.norm.sf(3.5))


def test_quantile_z_detects_a_shifted_quantile():
    """Failure demonstration: draws shifted by 0.2 sd put both quantiles beyond |z| = 3.5."""
    x = np.random.default_rng(SEED).standard_normal((4, 1000)) + 0.2
    z = {c.quantity: c.z for c in check_against_exact("x", x, stats.norm())}
    assert z["q05"] > 3.5 and z["q95"] > 3.5


def test_quantile_z_detects_a_wrong_spread():
    """Draws with sd 1.15 instead of 1 move the 5% quantile down and the 95% quantile up."""
    x = 1.15 * np.random.default_rng(SEED).standard_normal((4, 1000))
    z = {c.quantity: c.z for c in check_against_exact("x", x, stats.norm())}
    assert z["q05"] < -3.5 and z["q95"] > 3.5


def test_quantile_mcse_is_in_parameter_units():
    """The stored MCSE is sqrt(p (1 - p) / ESS) / f(q): about 0.034 for N(0, 1) at 4000 draws."""
    x = np.random.default_rng(SEED).standard_normal((4, 1000))
    c = {c.quantity: c for c in check_against_exact("x", x, stats.norm())}
    expect = np.sqrt(0.05 * 0.95 / 4000) / stats.norm.pdf(stats.norm.ppf(0.05))
    assert c["q05"].mcse == pytest.approx(expect, rel=0.1)


def test_quantiles_between_backends_are_calibrated_and_detect_a_shift():
    """Two correct backends (no exact answer: compared at the pooled quantile): z close to
    standard normal; a 0.25-sd shift of one backend is detected."""
    from comparisons.agreement import quantile_z_between

    rng = np.random.default_rng(SEED)
    z = np.array([quantile_z_between(rng.standard_normal((4, 1000)),
                                     rng.standard_normal((4, 1000)), p)
                  for _ in range(400) for p in (0.05, 0.95)])
    assert abs(np.sqrt(np.mean(z**2)) - 1) < 4 / np.sqrt(2 * len(z))
    assert np.sum(np.abs(z) > 3.5) <= stats.binom.ppf(0.999, len(z), 2 * stats.norm.sf(3.5))
    shifted = quantile_z_between(rng.standard_normal((4, 1000)) + 0.25,
                                 rng.standard_normal((4, 1000)), 0.05)
    assert shifted > 3.5


def _ar1_pair(rng, rho: float, phi: float, shape=(4, 1000)) -> tuple[np.ndarray, np.ndarray]:
    """Two AR(1) chains (autocorrelation ``phi``) with stationary N(0, 1) marginals and
    cross-correlation ``rho``: a stand-in for MCMC draws with a known correlation."""
    e = rng.standard_normal((*shape, 2))
    e[..., 1] = rho * e[..., 0] + np.sqrt(1 - rho**2) * e[..., 1]
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * e[:, t]
    return x[..., 0], x[..., 1]


@pytest.mark.parametrize("rho, phi", [(0.0, 0.0), (-0.6, 0.0), (0.9, 0.5)])
def test_correlation_z_is_standard_normal(rho, phi):
    """Correct draws, independent or autocorrelated (phi = 0.5), with the exact correlation as
    target: z of the sample correlation over its delta-method MCSE has rms 1 and normal tails."""
    from comparisons.agreement import check_correlation

    rng = np.random.default_rng(SEED)
    z = np.array([check_correlation(("a", "b"), *_ar1_pair(rng, rho, phi), rho).z
                  for _ in range(400)])
    assert abs(np.sqrt(np.mean(z**2)) - 1) < 4 / np.sqrt(2 * len(z))
    assert np.sum(np.abs(z) > 3) <= stats.binom.ppf(0.999, len(z), 2 * stats.norm.sf(3))


def test_correlation_is_the_sample_correlation_and_detects_a_wrong_one():
    """The estimate is the draws' own correlation (never a moment standardized by the exact sds,
    which a stuck chain pushed to -61.6), and a correlation of 0.5 where 0.6 is exact is caught."""
    from comparisons.agreement import check_correlation

    rng = np.random.default_rng(SEED)
    a, b = _ar1_pair(rng, 0.5, 0.3)
    c = check_correlation(("a", "b"), 3 + 10 * a, -2 + 0.1 * b, 0.6)
    assert c.estimate == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert c.z < -3.5
    stuck = np.concatenate([a[:3], np.full((1, 1000), 8.0)])  # one chain far away, not moving
    c = check_correlation(("a", "b"), stuck, np.concatenate([b[:3], np.full((1, 1000), -8.0)]),
                          0.5)
    assert -1 <= c.estimate <= 1
