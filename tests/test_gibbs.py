"""Tests of the sufficient-statistics Gibbs sampler (reference/gibbs.py).

Every statistical assertion is |z| < Z_MAX with z in Monte Carlo standard errors (arviz MCSE
through comparisons.agreement), against

* the exact conditional distributions, one full conditional at a time;
* the closed forms of reference/conjugate.py (Normal-Inverse-Gamma, known noise);
* an exact 1-D integration over sigma written here (semi-conjugate priors have no closed form):
  given sigma the coefficients are Gaussian, so every marginal is a mixture over sigma.

Each check that matters has a companion test that injects a bug (monkeypatching one full
conditional) and shows that the check then fails. Seeds are fixed once (SEED) and never tuned.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from comparisons.agreement import check_against_exact, check_correlation
from reference import gibbs
from reference import priors as P
from reference.conjugate import GaussianKnownNoise, NormalInverseGamma
from reference.sampling import ChainRNG

SEED = 20261121
#: per-quantity two-sided false-alarm rate about 5e-4
Z_MAX = 3.5
NAMES = ["Intercept", "x1", "x2"]


# --------------------------------------------------------------------------------------------
# Data and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    """n = 15 rows, three correlated columns: a posterior where prior and sigma both matter."""
    rng = np.random.default_rng(SEED)
    n = 15
    x1 = rng.normal(size=n)
    x2 = 0.8 * x1 + 0.6 * rng.normal(size=n)
    X = np.column_stack([np.ones(n), x1, x2])
    y = X @ np.array([1.0, 0.5, -0.7]) + 0.8 * rng.normal(size=n)
    return X, y


#: a full (non-diagonal) prior covariance and a non-zero prior mean
M0 = np.array([0.5, 0.0, 0.2])
V0 = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])


def fails(checks) -> list:
    return [c for c in checks if not abs(c.z) < Z_MAX]


def max_abs_z(checks) -> float:
    return max(abs(c.z) for c in checks)


def assert_agree(checks):
    bad = fails(checks)
    assert not bad, "\n".join(
        f"{c.parameter} {c.quantity}: estimate {c.estimate:.5g}, exact {c.target:.5g}, "
        f"mcse {c.mcse:.3g}, z {c.z:.2f}" for c in bad)


def posterior_checks(dt, names, marginals: dict, mean, sd, corr) -> list:
    """mean/sd/q05/q95 of every named marginal, and every coefficient correlation."""
    post = dt.posterior
    checks = []
    for name, dist in marginals.items():
        checks += check_against_exact(name, post[name].values, dist)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            checks.append(check_correlation(
                (names[i], names[j]), post[names[i]].values, post[names[j]].values,
                corr[i, j]))
    return checks


def draws_matrix(dt, names) -> np.ndarray:
    """Coefficient draws (chain, draw, p)."""
    return np.stack([dt.posterior[nm].values for nm in names], axis=-1)


class _Dist:
    """What check_against_exact needs from an exact distribution: mean(), std(), ppf()."""

    def __init__(self, mean, sd, ppf):
        self._mean, self._sd, self._ppf = mean, sd, ppf

    def mean(self):
        return self._mean

    def std(self):
        return self._sd

    def ppf(self, q):
        return self._ppf(q)


# --------------------------------------------------------------------------------------------
# Exact reference for priors without a closed form: 1-D integration over sigma
# --------------------------------------------------------------------------------------------
class SigmaQuadrature:
    r"""Exact posterior by integration over :math:`u = \log\sigma`, written independently of the
    sampler (it works in the n-dimensional data space, the sampler in coefficient space).

    Given sigma, with :math:`c = \sigma^2` under the NIG scaling and :math:`c = 1` otherwise,

    .. math::

        y \mid \sigma \sim N(X m_0,\; S), \quad S = \sigma^2 I + c X V_0 X^\top, \qquad
        \beta \mid \sigma, y \sim N(m_0 + c V_0 X^\top S^{-1} r,\;
                                    c V_0 - c^2 V_0 X^\top S^{-1} X V_0),

    with :math:`r = y - X m_0`, and :math:`p(u \mid y) \propto p_\sigma(e^u)\, e^u\,
    N(y \mid X m_0, S)`. Integrals use Simpson's rule on a fine grid covering every point within
    e^-50 of the mode; sigma's quantiles come from the cumulative integral, the coefficients'
    from the Gaussian-mixture CDF by root finding.
    """

    def __init__(self, X, y, m0, V0, log_prior_sigma, nig=False, points=4001):
        self.X, self.y, self.m0, self.V0, self.nig = X, y, m0, V0, nig
        self.log_prior = log_prior_sigma
        scale = np.sqrt(np.mean((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
        coarse = np.linspace(np.log(scale) - 12, np.log(scale) + 12, 2001)
        lw = self._log_density(coarse)
        keep = coarse[lw > lw.max() - 50]
        pad = coarse[1] - coarse[0]
        self.u = np.linspace(keep.min() - pad, keep.max() + pad, points)
        lw = self._log_density(self.u)
        dens = np.exp(lw - lw.max())
        self.dens = dens / integrate.simpson(dens, x=self.u)
        self.means, self.covs = self._conditionals(self.u)
        self.cdf_sigma = integrate.cumulative_simpson(self.dens, x=self.u, initial=0.0)

    def _S(self, u):
        s2 = np.exp(2 * u)[:, None, None]
        c = s2 if self.nig else np.ones_like(s2)
        n = len(self.y)
        return s2 * np.eye(n) + c * (self.X @ self.V0 @ self.X.T), c

    def _log_density(self, u):
        S, _ = self._S(u)
        L = np.linalg.cholesky(S)
        r = self.y - self.X @ self.m0
        w = np.linalg.solve(L, np.broadcast_to(r, (len(u), len(r)))[..., None])[..., 0]
        log_lik = (-0.5 * np.sum(w**2, axis=-1) - np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
                   - 0.5 * len(r) * np.log(2 * np.pi))
        with np.errstate(divide="ignore"):
            return self.log_prior(np.exp(u)) + u + log_lik

    def _conditionals(self, u):
        S, c = self._S(u)
        XV = self.X @ self.V0  # (n, p)
        r = self.y - self.X @ self.m0
        Sinv_r = np.linalg.solve(S, np.broadcast_to(r, (len(u), len(r)))[..., None])[..., 0]
        Sinv_XV = np.linalg.solve(S, np.broadcast_to(XV, (len(u), *XV.shape)))
        means = self.m0 + c[:, :, 0] * (Sinv_r @ XV)
        covs = c * self.V0 - c**2 * (XV.T @ Sinv_XV)
        return means, covs

    def _integral(self, f):
        return integrate.simpson(self.dens * f, x=self.u, axis=-1)

    def sigma(self) -> _Dist:
        mean = self._integral(np.exp(self.u))
        sd = np.sqrt(self._integral(np.exp(2 * self.u)) - mean**2)
        return _Dist(mean, sd, lambda q: float(np.exp(np.interp(q, self.cdf_sigma, self.u))))

    def coefficient(self, j) -> _Dist:
        m, v = self.means[:, j], self.covs[:, j, j]
        mean = self._integral(m)
        sd = np.sqrt(self._integral(v + m**2) - mean**2)

        def ppf(q):
            cdf = lambda x: self._integral(stats.norm.cdf((x - m) / np.sqrt(v))) - q  # noqa: E731
            return optimize.brentq(cdf, mean - 20 * sd, mean + 20 * sd, xtol=1e-12 * sd)

        return _Dist(mean, sd, ppf)

    def moments(self):
        """Mean, sd and correlation matrix of the coefficients."""
        mean = self._integral(self.means.T)
        second = self._integral(np.moveaxis(self.covs + self.means[:, :, None]
                                            * self.means[:, None, :], 0, -1))
        cov = second - np.outer(mean, mean)
        sd = np.sqrt(np.diag(cov))
        return mean, sd, cov / np.outer(sd, sd)

    def checks(self, dt, names) -> list:
        mean, sd, corr = self.moments()
        marg = {nm: self.coefficient(j) for j, nm in enumerate(names)}
        marg["sigma"] = self.sigma()
        return posterior_checks(dt, names, marg, mean, sd, corr)


def test_quadrature_reference_matches_the_nig_closed_form(small):
    """The integration reproduces NormalInverseGamma to 1e-6, so it can be trusted where no
    closed form exists."""
    X, y = small
    a0, b0 = 3.0, 2.0
    exact = NormalInverseGamma(X, y, M0, V0, a0, b0)
    quad = SigmaQuadrature(X, y, M0, V0, P.InverseGamma(a0, b0, on="sigma2").logpdf, nig=True)
    mean, sd, corr = quad.moments()
    np.testing.assert_allclose(mean, exact.mean, rtol=1e-6)
    np.testing.assert_allclose(sd, exact.sd, rtol=1e-6)
    np.testing.assert_allclose(corr, exact.corr, atol=1e-6)
    for j, dist in enumerate(exact.marginals()):
        np.testing.assert_allclose(quad.coefficient(j).ppf(0.05), dist.ppf(0.05), rtol=1e-6)
    s = quad.sigma()
    np.testing.assert_allclose([s.mean(), s.std(), s.ppf(0.05), s.ppf(0.95)],
                               [exact.sigma().mean(), exact.sigma().std(), exact.sigma().ppf(0.05),
                                exact.sigma().ppf(0.95)], rtol=1e-5)


# --------------------------------------------------------------------------------------------
# 1. Each full conditional on its own
# --------------------------------------------------------------------------------------------
def _beta_conditional_checks(X, y, nig: bool) -> list:
    """Draw beta | sigma^2 for 4000 chains in one batched call, half of them at sigma^2 = 0.3 and
    half at 2.0, and compare each half with the exact Gaussian conditional."""
    data = gibbs.GibbsData.from_arrays(X, y)
    prior = gibbs.BetaPrior.build(3, M0, V0, nig)
    levels = np.array([0.3, 2.0])
    sigma2 = np.tile(levels, 2000)
    beta = gibbs.draw_beta(ChainRNG(SEED, sigma2.size), data, prior, sigma2)
    checks = []
    for g, s2 in enumerate(levels):
        exact = GaussianKnownNoise(X, y, noise_var=s2, prior_mean=M0,
                                   prior_cov=V0 * (s2 if nig else 1.0))
        b = beta[g::2].reshape(4, 500, 3)  # independent draws as (chain, draw)
        names = [f"{nm}@{s2}" for nm in NAMES]
        for j, (nm, dist) in enumerate(zip(names, exact.marginals(), strict=True)):
            checks += check_against_exact(nm, b[..., j], dist)
        for i in range(3):
            for j in range(i + 1, 3):
                checks.append(check_correlation((names[i], names[j]), b[..., i], b[..., j],
                                                exact.corr[i, j]))
    return checks


@pytest.mark.parametrize("nig", [False, True], ids=["semi-conjugate", "nig"])
def test_draw_beta_matches_exact_conditional(small, nig):
    """Mean, sd, 5%/95% quantiles and correlations of beta | sigma^2 (batched, two sigma^2)."""
    assert_agree(_beta_conditional_checks(*small, nig))


def test_wrong_cholesky_orientation_fails_the_covariance_check(small, monkeypatch):
    """beta = mean + L^-1 z has covariance (L'L)^-1, not (LL')^-1 = Q^-1: caught by sd/corr."""

    def transposed(Q, r, z):
        L = np.linalg.cholesky(Q)
        mean = np.linalg.solve(np.swapaxes(L, -1, -2), np.linalg.solve(L, r[..., None]))[..., 0]
        return mean + np.linalg.solve(L, z[..., None])[..., 0]  # the bug: L^-1 z

    monkeypatch.setattr(gibbs, "gaussian_from_precision", transposed)
    checks = _beta_conditional_checks(*small, nig=False)
    bad = fails(checks)
    assert bad and {c.quantity for c in bad} & {"sd", "corr", "q05", "q95"}
    assert not any(c.quantity == "mean" for c in bad)  # the mean is right: only spread catches it


@pytest.mark.parametrize("nig", [False, True])
def test_residual_terms_equal_the_direct_sums(small, nig):
    X, y = small
    data = gibbs.GibbsData.from_arrays(X, y)
    prior = gibbs.BetaPrior.build(3, M0, V0, nig)
    beta = np.random.default_rng(SEED).normal(size=(5, 3))
    k, q = gibbs.residual_terms(data, prior, beta)
    ssr = ((y - beta @ X.T) ** 2).sum(axis=1)
    e = beta - M0
    extra = np.einsum("ci,ij,cj->c", e, np.linalg.inv(V0), e) if nig else 0.0
    assert k == len(y) + (3 if nig else 0)
    np.testing.assert_allclose(q, ssr + extra, rtol=1e-12)


def test_ssr_expansion_avoids_cancellation():
    """y with a large offset: y'y - 2b'X'y + b'X'Xb loses every digit, the centred form none."""
    rng = np.random.default_rng(SEED)
    n = 1000
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = 1e7 + 0.5 * X[:, 1] + 1e-3 * rng.normal(size=n)
    data = gibbs.GibbsData.from_arrays(X, y)
    prior = gibbs.BetaPrior.build(2, 0.0, 1e16, False)
    beta = np.array([[1e7 + 1e-5, 0.5]])
    _, q = gibbs.residual_terms(data, prior, beta)
    np.testing.assert_allclose(q, ((y - X @ beta[0]) ** 2).sum(), rtol=1e-6)


def test_draw_sigma2_matches_inverse_gamma(small):
    """sigma^2 | beta ~ IG(a + k/2, b + q/2) for a fixed beta, 4000 independent draws."""
    X, y = small
    data = gibbs.GibbsData.from_arrays(X, y)
    prior = gibbs.BetaPrior.build(3, M0, V0, False)
    beta = np.tile([0.9, 0.4, -0.5], (4000, 1))
    k, q = gibbs.residual_terms(data, prior, beta)
    s2 = gibbs.draw_sigma2(ChainRNG(SEED, 4000), 3.0, 2.0, k, q)
    exact = stats.invgamma(3.0 + k / 2, scale=2.0 + q[0] / 2)
    assert_agree(check_against_exact("sigma2", s2.reshape(4, 1000), exact))


def test_draw_mixing_matches_its_conditional():
    """a | sigma^2 ~ IG(1, 1/s^2 + 1/sigma^2): 1/a is exponential with that rate."""
    s, sigma2 = 2.5, np.full(4000, 0.7)
    a = gibbs.draw_mixing(ChainRNG(SEED, 4000), sigma2, s)
    exact = stats.expon(scale=1.0 / (1 / s**2 + 1 / 0.7))
    assert_agree(check_against_exact("1/a", (1.0 / a).reshape(4, 1000), exact))


def _halfcauchy_prior_chain(s=2.5, chains=1000, draws=250):
    """Alternate the two mixture conditionals with no data (k = q = 0): the stationary law of
    sigma must be HalfCauchy(s). Returns log sigma draws (chain, draw)."""
    rng = ChainRNG(SEED, chains)
    sigma2 = np.full(chains, s**2)
    out = []
    for i in range(50 + draws):
        a = gibbs.draw_mixing(rng, sigma2, s)
        sigma2 = gibbs.draw_sigma2(rng, 0.5, 1.0 / a, 0.0, np.zeros(chains))
        if i >= 50:
            out.append(0.5 * np.log(sigma2))
    return np.stack(out, axis=1)


def _log_halfcauchy(s) -> _Dist:
    # log|Cauchy(0, s)| has mean log s and sd pi/2; quantiles log(s tan(pi q / 2))
    return _Dist(np.log(s), np.pi / 2, lambda q: np.log(s * np.tan(np.pi * q / 2)))


def test_halfcauchy_mixture_gives_halfcauchy_prior():
    assert_agree(check_against_exact("log sigma", _halfcauchy_prior_chain(), _log_halfcauchy(2.5)))


def test_wrong_mixture_scale_is_detected(monkeypatch):
    """a | sigma^2 with rate 1/s instead of 1/s^2: the implied prior is no longer HalfCauchy(s)."""
    orig = gibbs.draw_mixing
    monkeypatch.setattr(gibbs, "draw_mixing", lambda rng, sigma2, s: orig(rng, sigma2, np.sqrt(s)))
    checks = check_against_exact("log sigma", _halfcauchy_prior_chain(), _log_halfcauchy(2.5))
    assert fails(checks)


def _slice_target_checks(prior, k=15.0, q=9.0, chains=1000, draws=150) -> list:
    """Run the slice update alone on the 1-D full conditional of log sigma and compare sigma with
    the exact distribution p(sigma) sigma^-k exp(-q / 2 sigma^2), integrated numerically."""
    rng = ChainRNG(SEED, chains)
    u = np.zeros(chains)
    qv = np.full(chains, q)
    out = []
    for i in range(30 + draws):
        u, n_evals = gibbs.slice_log_sigma(rng, u, prior, k, qv, width=0.5)
        assert np.all(n_evals >= 2)
        if i >= 30:
            out.append(np.exp(u))
    grid = np.linspace(-6, 6, 24001)
    with np.errstate(divide="ignore"):
        lw = prior.logpdf(np.exp(grid)) + (1 - k) * grid - 0.5 * q * np.exp(-2 * grid)
    dens = np.exp(lw - lw.max())
    dens /= integrate.simpson(dens, x=grid)
    cdf = integrate.cumulative_simpson(dens, x=grid, initial=0.0)
    mean = integrate.simpson(dens * np.exp(grid), x=grid)
    sd = np.sqrt(integrate.simpson(dens * np.exp(2 * grid), x=grid) - mean**2)
    exact = _Dist(mean, sd, lambda p: float(np.exp(np.interp(p, cdf, grid))))
    return check_against_exact("sigma", np.stack(out, axis=1), exact)


def test_slice_update_leaves_the_log_sigma_conditional_invariant():
    assert_agree(_slice_target_checks(P.HalfNormal(1.0)))


def test_slice_without_the_jacobian_is_detected(monkeypatch):
    """Dropping the Jacobian e^u of u = log sigma targets the wrong density."""
    orig = gibbs.log_sigma_conditional
    monkeypatch.setattr(gibbs, "log_sigma_conditional",
                        lambda u, prior, k, q: orig(u, prior, k, q) - u)
    assert fails(_slice_target_checks(P.HalfNormal(1.0)))


# --------------------------------------------------------------------------------------------
# 2. Whole sampler against closed forms
# --------------------------------------------------------------------------------------------
A0, B0 = 3.0, 2.0
FIT = dict(draws=2500, tune=100, chains=4, seed=SEED)


def _nig_fit(X, y):
    return gibbs.linear_gibbs(X, y, names=NAMES, beta_mean=M0, beta_cov=V0, nig=True,
                              sigma_prior=P.InverseGamma(A0, B0, on="sigma2"), **FIT)


def _nig_checks(dt, X, y, joint=True) -> list:
    exact = NormalInverseGamma(X, y, M0, V0, A0, B0)
    marg = dict(zip(NAMES, exact.marginals(), strict=True))
    marg["sigma"] = exact.sigma()
    checks = posterior_checks(dt, NAMES, marg, exact.mean, exact.sd, exact.corr)
    if joint:
        checks += _nig_joint_checks(dt, exact)
    return checks


def _nig_joint_checks(dt, exact) -> list:
    r"""A check of the *joint* law of (beta, sigma^2): under the NIG posterior
    :math:`T = (\beta - m_n)^\top \Lambda_n (\beta - m_n) / \sigma^2 \sim \chi^2_p`. Marginal
    checks cannot see a sampler that pairs each beta with the wrong sigma."""
    b = draws_matrix(dt, NAMES) - exact.mean
    Lam_b = np.linalg.solve(exact.cov_unscaled, b[..., None])[..., 0]
    T = np.sum(b * Lam_b, axis=-1) / dt.posterior["sigma"].values ** 2
    return check_against_exact("T", T, stats.chi2(3))


@pytest.fixture(scope="module")
def nig_fit(small):
    return _nig_fit(*small)


def test_nig_matches_closed_form(small, nig_fit):
    assert_agree(_nig_checks(nig_fit, *small))


@pytest.mark.parametrize("sigma", [0.8, P.Constant(0.8)], ids=["float", "Constant"])
def test_known_noise_matches_closed_form(small, sigma):
    X, y = small
    dt = gibbs.linear_gibbs(X, y, names=NAMES, beta_mean=M0, beta_cov=V0, sigma_prior=sigma,
                            **FIT)
    assert "sigma" not in dt.posterior
    exact = GaussianKnownNoise(X, y, 0.64, M0, V0)
    marg = dict(zip(NAMES, exact.marginals(), strict=True))
    assert_agree(posterior_checks(dt, NAMES, marg, exact.mean, exact.sd, exact.corr))


def test_flat_prior_known_noise_is_least_squares(small):
    X, y = small
    dt = gibbs.linear_gibbs(X, y, names=NAMES, beta_cov=None, sigma_prior=0.8, **FIT)
    exact = GaussianKnownNoise(X, y, 0.64, prior_cov=None)
    marg = dict(zip(NAMES, exact.marginals(), strict=True))
    assert_agree(posterior_checks(dt, NAMES, marg, exact.mean, exact.sd, exact.corr))


# --------------------------------------------------------------------------------------------
# 3. Semi-conjugate priors against the integration over sigma
# --------------------------------------------------------------------------------------------
SEMI = {
    "halfcauchy-mixture": (P.HalfCauchy(1.0), False),
    "halfnormal-slice": (P.HalfNormal(1.0), False),
    "ig-sigma2-independent-beta": (P.InverseGamma(A0, B0, on="sigma2"), False),
    "halfnormal-slice-nig": (P.HalfNormal(1.0), True),
}


@pytest.mark.parametrize("case", list(SEMI))
def test_semi_conjugate_matches_quadrature(small, case):
    X, y = small
    prior, nig = SEMI[case]
    dt = gibbs.linear_gibbs(X, y, names=NAMES, beta_mean=M0, beta_cov=V0, sigma_prior=prior,
                            nig=nig, **FIT)
    quad = SigmaQuadrature(X, y, M0, V0, prior.logpdf, nig=nig)
    assert_agree(quad.checks(dt, NAMES))


@pytest.mark.parametrize("prior", [P.Exponential(1.5), P.HalfStudentT(4.0, 1.0),
                                   P.InverseGamma(2.0, 1.0, on="sigma"),
                                   P.TruncatedNormal(0.5, 1.0, 0.0), P.Uniform(0.0, 3.0)],
                         ids=lambda p: p.name)
def test_other_sigma_priors_match_quadrature(small, prior):
    """The remaining slice-sampled priors: sigma's mean, sd and quantiles (the coefficient
    update does not depend on which prior sigma has)."""
    X, y = small
    dt = gibbs.linear_gibbs(X, y, names=NAMES, beta_mean=M0, beta_cov=V0, sigma_prior=prior,
                            draws=1000, tune=100, chains=4, seed=SEED)
    quad = SigmaQuadrature(X, y, M0, V0, prior.logpdf)
    assert_agree(check_against_exact("sigma", dt.posterior["sigma"].values, quad.sigma()))


# --------------------------------------------------------------------------------------------
# 4. Injected bugs in the whole sampler
# --------------------------------------------------------------------------------------------
def test_inverse_gamma_shape_n_instead_of_n_over_2_fails(small, monkeypatch):
    orig = gibbs.draw_sigma2
    monkeypatch.setattr(gibbs, "draw_sigma2",
                        lambda rng, shape, scale, k, q: orig(rng, shape + 0.5 * k, scale, k, q))
    X, y = small
    bad = fails(_nig_checks(_nig_fit(X, y), X, y, joint=False))
    assert {c.parameter for c in bad} >= {"sigma"}
    assert {c.quantity for c in bad if c.parameter == "sigma"} >= {"mean", "q05", "q95"}


def test_stale_sigma2_in_beta_draw_cannot_be_caught(small, monkeypatch):
    """beta_{t+1} drawn with sigma^2_{t-1} (the value before the latest) instead of sigma^2_t.

    This bug leaves the output distribution exact: sigma^2_{t-1} -> beta_{t+1} -> sigma^2_{t+1}
    -> beta_{t+3} ... and sigma^2_t -> beta_{t+2} -> ... are two interleaved, correct Gibbs chains,
    and every reported pair (beta_{t+1}, sigma^2_{t+1}) is drawn from the exact joint posterior
    once the chains are stationary. No check on the draws' distribution (marginal or joint) can
    catch it, and this test shows that they all pass. Only efficiency could differ.
    """
    orig = gibbs.draw_beta
    previous = {}

    def stale(rng, data, prior, sigma2):
        use = previous.get("sigma2", sigma2)
        previous["sigma2"] = sigma2
        return orig(rng, data, prior, use)

    monkeypatch.setattr(gibbs, "draw_beta", stale)
    X, y = small
    assert_agree(_nig_checks(_nig_fit(X, y), X, y))


def test_jacobi_update_is_caught_only_by_the_joint_check(small, monkeypatch):
    """sigma^2_{t+1} drawn from the stale beta_t instead of beta_{t+1}, so both blocks are updated
    from the previous state (a parallel, 'Jacobi' sweep; the same bug as a stale sigma^2 in the
    beta draw when sigma^2 is drawn first).

    Its stationary law is the product of the exact marginals: if beta and sigma^2 are
    independent with the right marginals, beta' ~ p(beta | sigma^2) and
    sigma^2' ~ p(sigma^2 | beta) are again independent with the right marginals. So the mean,
    sd, quantiles and even the coefficient correlations are right, and only a check of the
    dependence between beta and sigma (the chi-square statistic T) can fail.
    """
    orig = gibbs.residual_terms
    previous = {}

    def stale(data, prior, beta):
        use = previous.get("beta", beta)
        previous["beta"] = beta
        return orig(data, prior, use)

    monkeypatch.setattr(gibbs, "residual_terms", stale)
    X, y = small
    dt = _nig_fit(X, y)
    exact = NormalInverseGamma(X, y, M0, V0, A0, B0)
    assert fails(_nig_joint_checks(dt, exact))


# --------------------------------------------------------------------------------------------
# 5. Cost of a sweep does not depend on n
# --------------------------------------------------------------------------------------------
def test_kernel_keeps_no_row_of_the_data():
    """After the kernel is built, X and y can be freed: no reference to them is kept."""
    rng = np.random.default_rng(SEED)
    X = np.column_stack([np.ones(500), rng.normal(size=500)])
    y = X @ [1.0, 2.0] + rng.normal(size=500)
    refs = weakref.ref(X), weakref.ref(y)
    kernel = gibbs.gibbs_kernel(X, y, names=["Intercept", "x"], beta_cov=10.0,  # noqa: F841
                                sigma_prior=P.HalfCauchy(1.0))  # alive: it must not hold X, y
    del X, y
    gc.collect()
    assert refs[0]() is None and refs[1]() is None
    data = gibbs.GibbsData.from_arrays(np.ones((500, 2)) + np.eye(500, 2), np.ones(500))
    assert all(np.size(v) <= 4 for v in vars(data).values())  # nothing of length n


def test_kernel_from_statistics_alone_with_huge_n():
    """Statistics of n = 10^12 rows (never materialized) give a working sampler whose sigma
    concentrates at the implied residual scale."""
    n = 10**12
    XtX = n * np.array([[1.0, 0.5], [0.5, 1.0]])
    beta_true = np.array([1.0, -2.0])
    Xty = XtX @ beta_true
    yty = beta_true @ XtX @ beta_true + n * 0.25  # residual variance 0.25
    data = gibbs.GibbsData.from_stats(XtX, Xty, yty, n)
    dt = gibbs.linear_gibbs(data, names=["Intercept", "x"], beta_cov=10.0,
                            sigma_prior=P.HalfCauchy(1.0), draws=50, tune=10, chains=2,
                            seed=SEED)
    np.testing.assert_allclose(dt.posterior["sigma"].values, 0.5, rtol=1e-4)
    np.testing.assert_allclose(dt.posterior["x"].values, -2.0, atol=1e-4)


def test_statistics_and_arrays_give_the_same_draws(small):
    X, y = small
    kw = dict(names=NAMES, beta_mean=M0, beta_cov=V0, sigma_prior=P.HalfCauchy(1.0), draws=20,
              tune=5, seed=SEED)
    a = gibbs.linear_gibbs(X, y, **kw)
    data = gibbs.GibbsData.from_stats(X.T @ X, X.T @ y, y @ y, len(y))
    b = gibbs.linear_gibbs(data, **kw)
    for nm in [*NAMES, "sigma"]:
        np.testing.assert_allclose(a.posterior[nm].values, b.posterior[nm].values, rtol=1e-6)


@pytest.mark.parametrize("prior", [P.HalfNormal(1.0), P.HalfCauchy(1.0)], ids=lambda p: p.name)
def test_chain_draws_do_not_depend_on_the_number_of_chains(small, prior):
    """Chain c uses only its own stream, and the slice width is tuned per chain."""
    X, y = small
    kw = dict(names=NAMES, beta_cov=V0, sigma_prior=prior, draws=30, tune=20, seed=SEED)
    a = gibbs.linear_gibbs(X, y, chains=2, **kw)
    b = gibbs.linear_gibbs(X, y, chains=3, **kw)
    np.testing.assert_array_equal(a.posterior["sigma"].values, b.posterior["sigma"].values[:2])


# --------------------------------------------------------------------------------------------
# 6. Bad input
# --------------------------------------------------------------------------------------------
def _kernel(small, **over):
    X, y = small
    kw = dict(names=NAMES, beta_cov=1.0, sigma_prior=P.HalfNormal(1.0))
    kw.update(over)
    return gibbs.gibbs_kernel(X, y, **kw)


@pytest.mark.parametrize("over, err, match", [
    (dict(names=["a", "b"]), ValueError, "names has 2 entries but X has 3 columns"),
    (dict(names=["a", "a", "b"]), ValueError, "names must be unique"),
    (dict(names=["a", "sigma", "b"]), ValueError, "'sigma' is the noise sd"),
    (dict(names="abc"), TypeError, "names must be a list"),
    (dict(sigma_prior=P.Normal(0, 1)), ValueError, "not supported for the noise sd"),
    (dict(sigma_prior=P.Flat()), ValueError, "not supported for the noise sd"),
    (dict(sigma_prior="HalfNormal"), TypeError, "sigma_prior must be a prior"),
    (dict(sigma_prior=-1.0), ValueError, "known sigma must be a finite number > 0"),
    (dict(sigma_prior=P.Constant(0.0)), ValueError, "must be a finite number > 0"),
    (dict(beta_cov=[[1.0, 2.0], [2.0, 1.0]]), ValueError, "beta_cov must be a \\(3, 3\\)"),
    (dict(beta_cov=-1.0), ValueError, "beta_cov must be positive definite"),
    (dict(beta_mean=[0.0, 1.0]), ValueError, "beta_mean must be a scalar or have length 3"),
])
def test_bad_arguments(small, over, err, match):
    with pytest.raises(err, match=match):
        _kernel(small, **over)


def test_bad_data(small):
    X, y = small
    with pytest.raises(ValueError, match="X has 15 rows but y has 14"):
        gibbs.gibbs_kernel(X, y[:-1], names=NAMES, beta_cov=1.0, sigma_prior=1.0)
    with pytest.raises(ValueError, match="y is missing"):
        gibbs.gibbs_kernel(X, names=NAMES, beta_cov=1.0, sigma_prior=1.0)
    data = gibbs.GibbsData.from_arrays(X, y)
    with pytest.raises(ValueError, match="not GibbsData and y"):
        gibbs.gibbs_kernel(data, y, names=NAMES, beta_cov=1.0, sigma_prior=1.0)
    with pytest.raises(ValueError, match="XtX must be a finite \\(3, 3\\) matrix"):
        gibbs.GibbsData.from_stats(np.eye(2), np.zeros(3), 1.0, 10)
    with pytest.raises(ValueError, match="yty must be a finite number >= 0"):
        gibbs.GibbsData.from_stats(np.eye(3), np.zeros(3), -1.0, 10)
    flat_singular = np.column_stack([X, X[:, 1]])
    with pytest.raises(ValueError, match="needs X'X to be invertible"):
        gibbs.gibbs_kernel(flat_singular, y, names=[*NAMES, "x3"], beta_cov=None,
                           sigma_prior=1.0)
    with pytest.raises(ValueError, match="draws must be >= 1"):
        gibbs.linear_gibbs(X, y, names=NAMES, beta_cov=1.0, sigma_prior=1.0, draws=0)
