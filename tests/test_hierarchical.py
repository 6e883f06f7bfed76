"""Tests of the hierarchical Gibbs sampler (reference/hierarchical.py).

Every statistical assertion is |z| < Z_MAX with z in Monte Carlo standard errors (arviz MCSE
through comparisons.agreement), against

* the deterministic quadrature over the scales of reference/quadrature.py (``ScaleQuadrature``):
  mean, sd, 5% and 95% quantiles of the coefficients, the group scales, sigma and several group
  effects (one of them a level with a single row, one a level with no rows), and a posterior
  correlation;
* the closed form of reference/conjugate.py when the scales are fixed (then the model is
  Gaussian with known noise on the augmented design [X, Z] with a block prior);
* exact one-dimensional densities, one full conditional at a time.

Each check that matters has a companion test that injects a bug (monkeypatching one full
conditional or the design) and shows that the check then fails. Seeds are fixed once (SEED)
and never tuned.
"""

from __future__ import annotations

import dataclasses

import arviz_stats
import numpy as np
import pytest
from scipy import integrate, special, stats

import reference.hierarchical as H
from comparisons.agreement import check_against_exact, check_correlation
from reference import datasets
from reference import priors as P
from reference.conjugate import GaussianKnownNoise
from reference.design import sufficient_stats
from reference.quadrature import ScaleQuadrature
from reference.sampling import ChainRNG

SEED = 20261121
#: single checks outside the posterior-vs-quadrature families: two-sided false-alarm rate 5e-4
Z_MAX = 3.5
#: The posterior-vs-quadrature tests make 6 families of 33 checks each (198 z-scores). At
#: |z| < 3.5 per check that file would raise a false alarm about 9% of the time, so each family
#: is judged with the suite's own verdict rule (comparisons.verdicts.holm) at a family-wise
#: budget of 1% / 6 per test: about 1% for the whole file.
FAMILY_ALPHA = 0.01 / 6
NAMES = ["Intercept", "x"]
BETA_SD = 10.0
LEVELS_SHOWN = ["g0", "g3", "solo", "ghost"]

#: prior sets: (prior on 1|g_sigma, prior on sigma), chosen to run every update path
PRIOR_SETS = {
    # collapsed/AA slice and truncated normal for tau; probability-scale slice for sigma
    "halfnormal": (P.HalfNormal(1.0), P.HalfNormal(2.0)),
    # half-Cauchy mixture for tau; conjugate inverse-gamma for sigma
    "halfcauchy-ig": (P.HalfCauchy(1.0), P.InverseGamma(3.0, 3.0, on="sigma2")),
    # conjugate inverse-gamma for tau (centred half); slice for an exponential sigma prior
    "ig-exponential": (P.InverseGamma(3.0, 1.0, on="sigma2"), P.Exponential(1.0)),
}


# --------------------------------------------------------------------------------------------
# Data, references and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    """y = 1 + 0.5 x + b_g + e with 8 groups of 12 rows, plus a group "solo" with one row and a
    level "ghost" with no rows at all (its effect is drawn from the prior)."""
    d = datasets.hierarchical_synthetic(seed=1, groups=8, per_group=12)
    x = np.append(d["x"], 0.3)
    g = np.append(d["g"], "solo")
    y = np.append(d["y"], 1.7)
    X = np.column_stack([np.ones_like(x), x])
    term = H.group_term("1|g", None, g, levels=sorted(set(g)) + ["ghost"])
    return X, y, g, term


_QUADRATURES: dict = {}


def quadrature(data, prior_set) -> ScaleQuadrature:
    if prior_set not in _QUADRATURES:
        X, y, _, term = data
        tau_prior, sigma_prior = PRIOR_SETS[prior_set]
        _QUADRATURES[prior_set] = ScaleQuadrature(
            X, y, [term], names=NAMES, beta_mean=0.0, beta_cov=BETA_SD**2,
            tau_priors={"1|g": tau_prior}, sigma_prior=sigma_prior)
    return _QUADRATURES[prior_set]


def fit(data, prior_set, strategy, draws=1500, tune=300, term=None):
    X, y, _, default_term = data
    tau_prior, sigma_prior = PRIOR_SETS[prior_set]
    return H.hierarchical_gibbs(
        X, y, [term or default_term], names=NAMES, beta_mean=0.0, beta_cov=BETA_SD**2,
        tau_priors={"1|g": tau_prior}, sigma_prior=sigma_prior, strategy=strategy,
        draws=draws, tune=tune, chains=4, seed=SEED)


def posterior_checks(dt, q) -> list:
    """mean/sd/q05/q95 of Intercept, x, the scales and four group effects; one correlation."""
    post = dt.posterior
    checks = []
    for name in ["Intercept", "x", "1|g_sigma", "sigma"]:
        checks += check_against_exact(name, post[name].values, q.marginal(name))
    for level in LEVELS_SHOWN:
        draws = post["1|g"].sel(g__factor_dim=level).values
        checks += check_against_exact(f"1|g[{level}]", draws, q.marginal("1|g", level))
    checks.append(check_correlation(
        ("Intercept", "1|g[g0]"), post["Intercept"].values,
        post["1|g"].sel(g__factor_dim="g0").values, q.corr("Intercept", "1|g[g0]")))
    return checks


def fails(checks) -> list:
    """Checks Holm's procedure rejects at FAMILY_ALPHA (the family is one test's checks)."""
    from comparisons.verdicts import holm

    z = np.array([c.z if np.isfinite(c.z) else np.inf for c in checks])
    rejected = holm(2 * stats.norm.sf(np.abs(z)), FAMILY_ALPHA)
    return [c for c, r in zip(checks, rejected, strict=True) if r]


def assert_agree(checks):
    bad = fails(checks)
    assert not bad, "\n".join(
        f"{c.parameter} {c.quantity}: estimate {c.estimate:.5g}, exact {c.target:.5g}, "
        f"mcse {c.mcse:.3g}, z {c.z:.2f}" for c in bad)


class Grid1D:
    """An exact 1-D distribution on (lo, hi) from an unnormalized log density, by the trapezoid
    rule on a fine geometric grid: mean(), std(), ppf() as check_against_exact needs."""

    def __init__(self, logpdf, lo, hi, n=400_001):
        self.x = np.geomspace(lo, hi, n)
        lp = logpdf(self.x)
        dens = np.exp(lp - lp.max())
        self.cdf = integrate.cumulative_trapezoid(dens, self.x, initial=0.0)
        total = self.cdf[-1]
        self.cdf /= total
        self.dens = dens / total
        self._mean = integrate.trapezoid(self.x * self.dens, self.x)
        self._var = integrate.trapezoid((self.x - self._mean) ** 2 * self.dens, self.x)

    def mean(self):
        return self._mean

    def std(self):
        return np.sqrt(self._var)

    def ppf(self, q):
        return np.interp(q, self.cdf, self.x)


def as_chains(x):
    """Independent draws (one per chain of a vectorized run) as (4, N/4) for arviz's MCSE."""
    return np.asarray(x).reshape(4, -1)


# --------------------------------------------------------------------------------------------
# Full posterior against the quadrature
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prior_set, strategy", [
    ("halfnormal", "collapsed"), ("halfnormal", "asis"), ("halfcauchy-ig", "collapsed"),
    ("halfcauchy-ig", "asis"), ("ig-exponential", "asis"), ("ig-exponential", "centred"),
])
def test_matches_quadrature(data, prior_set, strategy):
    assert_agree(posterior_checks(fit(data, prior_set, strategy), quadrature(data, prior_set)))


def test_shuffled_group_codes_fail(data, monkeypatch):
    """The kernel sees a wrong row -> level mapping (a bug in building Z)."""
    real = H.sufficient_stats
    rng = np.random.default_rng(SEED)

    def shuffled(X, y, groups, weights):
        groups = [dataclasses.replace(g, codes=rng.permutation(g.codes)) for g in groups]
        return real(X, y, groups, weights)

    monkeypatch.setattr(H, "sufficient_stats", shuffled)
    checks = posterior_checks(fit(data, "halfnormal", "collapsed"), quadrature(data, "halfnormal"))
    assert fails(checks)


@pytest.mark.parametrize("prior_set, strategy", [("halfcauchy-ig", "collapsed"),
                                                 ("ig-exponential", "asis")])
def test_inverse_gamma_shape_off_by_one_fails(data, monkeypatch, prior_set, strategy):
    """IG(a + m/2 + 1, ...) instead of IG(a + m/2, ...): on sigma (first case), on tau (second)."""
    real = H.draw_variance_inverse_gamma
    monkeypatch.setattr(H, "draw_variance_inverse_gamma",
                        lambda rng, prior, m, ss: real(rng, prior, np.asarray(m) + 2, ss))
    checks = posterior_checks(fit(data, prior_set, strategy), quadrature(data, prior_set))
    assert fails(checks)


def test_hierarchical_seed_form_eight_schools():
    r"""The seed's :math:`\theta_j \sim N(\mu, \tau^2)`, :math:`\mu \sim N(0, 5^2)`,
    :math:`\tau \sim \text{Half-Cauchy}(5)`, :math:`y_j \sim N(\theta_j, se_j^2)` is
    ``y ~ 1 + (1|school)`` with Intercept = mu, theta_j = Intercept + b_j, known noise."""
    from comparisons.datasets import eight_schools

    df = eight_schools()
    X, y, w = np.ones((8, 1)), df["y"].to_numpy(), 1.0 / df["se"].to_numpy() ** 2
    term = H.group_term("1|school", None, df["school"])
    spec = dict(names=["Intercept"], beta_mean=0.0, beta_cov=25.0,
                tau_priors={"1|school": P.HalfCauchy(5.0)}, weights=w)
    q = ScaleQuadrature(X, y, [term], sigma=1.0, **spec)
    dt = H.hierarchical_gibbs(X, y, [term], sigma_prior=None, draws=2000, tune=300, seed=SEED,
                              **spec)
    post = dt.posterior
    assert "sigma" not in post
    checks = []
    for name in ["Intercept", "1|school_sigma"]:
        checks += check_against_exact(name, post[name].values, q.marginal(name))
    for school in ["A", "C", "G"]:
        b = post["1|school"].sel(school__factor_dim=school).values
        checks += check_against_exact(f"b[{school}]", b, q.marginal("1|school", school))
        # theta_j = mu + b_j: mean and sd from the quadrature's means and covariances
        theta = post["Intercept"].values + b
        key = f"1|school[{school}]"
        exact_sd = np.sqrt(q.cov("Intercept", "Intercept") + q.cov(key, key)
                           + 2 * q.cov("Intercept", key))
        exact = stats.norm(q.marginal("Intercept").mean() + q.marginal(key).mean(), exact_sd)
        checks += check_against_exact(f"theta[{school}]", theta, exact, ("mean", "sd"))
    assert_agree(checks)


def test_two_terms_on_one_grouping_match_quadrature():
    """Varying intercepts and slopes, (1|g) + (x|g), independent terms, known sigma."""
    d = datasets.hierarchical_synthetic(seed=3, groups=6, per_group=8)
    rng = np.random.default_rng(SEED)
    codes = np.array([int(s[1:]) for s in d["g"]])
    y = d["y"] + 0.4 * rng.standard_normal(6)[codes] * d["x"]
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    terms = [H.group_term("1|g", None, d["g"]), H.group_term("x|g", d["x"], d["g"])]
    spec = dict(names=NAMES, beta_mean=0.0, beta_cov=BETA_SD**2,
                tau_priors={"1|g": P.HalfNormal(1.0), "x|g": P.HalfNormal(1.0)})
    q = ScaleQuadrature(X, y, terms, sigma=1.0, **spec)
    dt = H.hierarchical_gibbs(X, y, terms, sigma_prior=P.Constant(1.0), draws=1500, tune=300,
                              seed=SEED, **spec)
    post = dt.posterior
    checks = []
    for name in ["Intercept", "x", "1|g_sigma", "x|g_sigma"]:
        checks += check_against_exact(name, post[name].values, q.marginal(name))
    for name in ["1|g", "x|g"]:
        checks += check_against_exact(f"{name}[g2]", post[name].sel(g__factor_dim="g2").values,
                                      q.marginal(name, "g2"))
    assert_agree(checks)


# --------------------------------------------------------------------------------------------
# Fixed scales: the exact conjugate special case
# --------------------------------------------------------------------------------------------
def test_fixed_scales_match_the_augmented_conjugate_posterior():
    """tau and sigma fixed: theta = (beta, b) is GaussianKnownNoise on [X, Z] with prior
    blockdiag(V, tau^2 I); two groupings, a slope term and row weights included."""
    d = datasets.hierarchical_synthetic(seed=4, groups=5, per_group=6)
    rng = np.random.default_rng(SEED)
    h = rng.integers(0, 3, d["y"].size)
    w = rng.uniform(0.5, 2.0, d["y"].size)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    terms = [H.group_term("1|g", None, d["g"]), H.group_term("x|g", d["x"], d["g"]),
             H.group_term("1|h", None, h)]
    taus = {"1|g": 0.8, "x|g": 0.3, "1|h": 1.5}
    sigma, V = 0.9, np.array([[4.0, 1.0], [1.0, 2.0]])
    dt = H.hierarchical_gibbs(
        X, d["y"], terms, names=NAMES, beta_mean=[0.5, -0.2], beta_cov=V,
        tau_priors={k: P.Constant(v) for k, v in taus.items()}, sigma_prior=P.Constant(sigma),
        weights=w, draws=1000, tune=50, seed=SEED)
    post = dt.posterior
    assert set(post.data_vars) == {"Intercept", "x", "1|g", "x|g", "1|h"}
    W = np.column_stack([X] + [t.matrix().toarray() for t in terms])
    prior_cov = np.zeros((W.shape[1],) * 2)
    prior_cov[:2, :2] = V
    sizes = [t.n_levels for t in terms]
    diag = np.concatenate([np.full(k, taus[t.name] ** 2)
                           for k, t in zip(sizes, terms, strict=True)])
    prior_cov[2:, 2:] = np.diag(diag)
    root = np.sqrt(w)
    exact = GaussianKnownNoise(root[:, None] * W, root * d["y"], sigma**2,
                               np.r_[0.5, -0.2, np.zeros(sum(sizes))], prior_cov)
    marg = exact.marginals()
    draws = np.concatenate([post["Intercept"].values[..., None], post["x"].values[..., None],
                            post["1|g"].values, post["x|g"].values, post["1|h"].values], axis=-1)
    checks = []
    for j in [0, 1, 2, 6, 8, 12, 13]:
        checks += check_against_exact(f"theta[{j}]", draws[..., j], marg[j])
    for i, j in [(0, 1), (0, 2), (6, 2)]:
        checks.append(check_correlation((f"theta[{i}]", f"theta[{j}]"), draws[..., i],
                                        draws[..., j], exact.corr[i, j]))
    assert_agree(checks)


# --------------------------------------------------------------------------------------------
# One full conditional at a time
# --------------------------------------------------------------------------------------------
def _stats(n_terms: int):
    """Sufficient statistics with 0, 1 or 3 group terms (two groupings, a slope, weights)."""
    d = datasets.hierarchical_synthetic(seed=5, groups=4, per_group=5)
    rng = np.random.default_rng(SEED)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    h = rng.integers(0, 3, d["y"].size)
    terms = [H.group_term("1|g", None, d["g"]), H.group_term("x|g", d["x"], d["g"]),
             H.group_term("1|h", None, h)]
    return sufficient_stats(X, d["y"], terms[:n_terms], rng.uniform(0.5, 2.0, d["y"].size))


def _dense_conditional(stats, prec, shift, tau, sigma):
    """The dense reference: Q = W'W / s^2 + blockdiag(V^-1, I / tau^2), mean Q^-1 r."""
    D, p = stats.WtW.shape[0], stats.p
    Q = stats.WtW / sigma**2
    Q[:p, :p] += prec
    if len(stats.blocks) > 1:
        Q[p:, p:] += np.diag(np.concatenate(
            [np.full(b.stop - b.start, 1 / t**2)
             for b, t in zip(stats.blocks[1:], tau, strict=True)]))
    cov = np.linalg.solve(Q, np.eye(D))
    return cov @ (stats.Wty / sigma**2 + np.r_[shift, np.zeros(D - p)]), cov


@pytest.mark.parametrize("n_terms", [0, 1, 3])
def test_draw_theta_matches_its_gaussian_conditional(n_terms):
    """4000 chains in one call: mean and every covariance entry against the dense formula."""
    stats = _stats(n_terms)
    C = 4000
    tau = np.tile([0.7, 0.3, 1.2][:n_terms], (C, 1))
    V, m = np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([0.5, -1.0])
    prec = np.linalg.solve(V, np.eye(2))
    theta = H.draw_theta(ChainRNG(SEED, C), stats, prec, prec @ m, tau, np.full(C, 0.9))
    mean, cov = _dense_conditional(stats, prec, prec @ m, tau[0], 0.9)
    z_mean = (theta.mean(0) - mean) / np.sqrt(np.diag(cov) / C)
    assert np.all(np.abs(z_mean) < Z_MAX)
    centred = theta - mean
    emp = centred.T @ centred / C
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / C)
    assert np.all(np.abs(emp - cov) / se < 4.5)  # up to 15^2 entries: a wider per-entry bound


def test_draw_theta_with_transposed_cholesky_fails(monkeypatch):
    """The classic bug: L^-1 z (covariance (L'L)^-1) instead of L^-T z."""
    stats = _stats(3)
    C = 4000
    tau = np.tile([0.7, 0.3, 1.2], (C, 1))
    real = H._solve_lower
    monkeypatch.setattr(H, "_solve_lower", lambda L, b, transpose: real(L, b, False))
    prec = np.eye(2) / 4.0
    theta = H.draw_theta(ChainRNG(SEED, C), stats, prec, np.zeros(2), tau, np.full(C, 0.9))
    _, cov = _dense_conditional(stats, prec, np.zeros(2), tau[0], 0.9)
    sd_ratio = theta.std(0) / np.sqrt(np.diag(cov))
    assert np.max(np.abs(sd_ratio - 1)) > 0.1


SCALE_CASES = [
    # (prior, m, S): conjugate, mixture, probability-scale slice, log-scale slice (m = 1)
    (P.InverseGamma(2.0, 1.5, on="sigma2"), 7, 5.0),
    (P.HalfCauchy(0.5), 6, 9.0),
    (P.HalfNormal(1.0), 40, 30.0),
    (P.Exponential(2.0), 5, 2.0),
    (P.Uniform(0.2, 1.3), 8, 6.0),
    (P.HalfStudentT(3.0, 1.0), 1, 0.4),
]


@pytest.mark.parametrize("prior, m, S", SCALE_CASES, ids=lambda v: str(v))
def test_draw_scale_matches_its_conditional(prior, m, S):
    r"""p(s | .) proportional to s^-m exp(-S / 2 s^2) p(s): 4000 chains, 30 updates each."""
    C = 4000
    rng = ChainRNG(SEED, C)
    scale = np.exp(np.random.default_rng(SEED).uniform(np.log(0.3), np.log(1.2), C))
    aux = np.ones(C)
    ss = np.full(C, S)
    for _ in range(30):
        scale, aux, _ = H.draw_scale(rng, prior, m, ss, scale, aux, width=1.0)
    exact = Grid1D(lambda s: -m * np.log(s) - S / (2 * s**2) + prior.logpdf(s), 1e-4, 1e3)
    assert_agree(check_against_exact(str(prior), as_chains(scale), exact))


def test_scale_update_of_a_chain_does_not_depend_on_the_others():
    """Each chain picks the probability scale or the log-scale fallback for itself: a chain with
    S = 0 (q improper) takes the fallback and leaves the others' paths and draws unchanged."""
    prior, m = P.HalfNormal(1.0), 20
    ss, scale = np.array([3.0, 0.0, 5.0]), np.array([0.5, 0.7, 0.9])
    together = H.draw_scale_slice(ChainRNG(SEED, 3), prior, m, ss, scale, width=np.ones(3))
    for c in range(3):
        alone = H.draw_scale_slice(ChainRNG(SEED, 3).subset(np.arange(3) == c), prior, m,
                                   ss[[c]], scale[[c]], width=np.ones(1))
        assert together[0][c] == alone[0][0] and together[1][c] == alone[1][0]


def test_slice_without_jacobian_fails(monkeypatch):
    """Dropping the Jacobian ds/du = s from the log-scale slice target is detected."""
    prior, m, S = P.HalfStudentT(3.0, 1.0), 1, 0.4
    real = H.slice_log_scale
    monkeypatch.setattr(H, "slice_log_scale", lambda rng, f, u0, width, *a, **k: real(
        rng, lambda u: f(u) - u, u0, width, *a, **k))
    C = 4000
    rng = ChainRNG(SEED, C)
    scale = np.full(C, 0.6)
    for _ in range(12):
        scale, _, _ = H.draw_scale(rng, prior, m, np.full(C, S), scale, np.ones(C), width=1.0)
    exact = Grid1D(lambda s: -m * np.log(s) - S / (2 * s**2) + prior.logpdf(s), 1e-4, 1e3)
    assert fails(check_against_exact("tau", as_chains(scale), exact))


@pytest.mark.parametrize("mean_over_sd", [1.5, -30.0])
def test_noncentred_halfnormal_draw_is_a_truncated_normal(mean_over_sd):
    r"""tau | eta ~ N(mu, v) truncated to tau > 0, also far in the tail (mu / sd = -30)."""
    C, sigma2, s0 = 4000, 0.5, 1.0
    var = 0.04
    quad = sigma2 * (1 / var - 1 / s0**2)               # so that the posterior variance is var
    mu = mean_over_sd * np.sqrt(var)
    cross = mu * sigma2 / var                           # so that the posterior mean is mu
    tau, _ = H.draw_tau_noncentred(ChainRNG(SEED, C), P.HalfNormal(s0), np.full(C, quad),
                                   np.full(C, cross), np.full(C, sigma2), np.full(C, 0.5))
    exact = stats.truncnorm(-mu / np.sqrt(var), np.inf, mu, np.sqrt(var))
    assert np.all(tau > 0)
    assert_agree(check_against_exact("tau", as_chains(tau), exact))


@pytest.mark.parametrize("prior", [P.HalfNormal(0.8), P.HalfCauchy(0.5)], ids=str)
def test_collapsed_tau_draw_matches_the_marginal_likelihood(prior):
    r"""tau | beta, sigma, y with b integrated out, checked against the n-dimensional Gaussian
    y - X beta ~ N(0, sigma^2 W^-1 + tau^2 Z Z') computed here on a grid of tau."""
    d = datasets.hierarchical_synthetic(seed=6, groups=4, per_group=3, tau=0.6)
    X, y = np.ones((12, 1)), d["y"]
    w = np.random.default_rng(SEED).uniform(0.5, 2.0, 12)
    term = H.group_term("1|g", None, d["g"])
    stats = sufficient_stats(X, y, [term], w)
    beta, sigma = 0.9, 0.7
    Z = term.matrix().toarray()
    r = y - beta

    def log_post(tau):
        S = sigma**2 * np.diag(1 / w)[None] + tau[:, None, None] ** 2 * (Z @ Z.T)[None]
        _, logdet = np.linalg.slogdet(S)
        solved = np.linalg.solve(S, np.broadcast_to(r, (len(tau), 12))[..., None])[..., 0]
        quad = solved @ r
        return -0.5 * logdet - 0.5 * quad + prior.logpdf(tau)

    exact = Grid1D(log_post, 1e-3, 1e2, n=40_001)
    C = 4000
    rng = ChainRNG(SEED, C)
    theta = np.zeros((C, 5))
    theta[:, 0] = beta
    tau = np.full(C, 0.5)
    for _ in range(10):
        theta[:, 1:], tau, _ = H.draw_tau_collapsed(rng, stats, theta, 0, prior, tau,
                                                    np.full(C, sigma), width=1.0)
    assert_agree(check_against_exact("tau", as_chains(tau), exact))


@pytest.mark.parametrize("prior", [
    P.HalfNormal(1.3), P.HalfCauchy(0.7), P.HalfStudentT(4.0, 2.0), P.Exponential(1.5),
    P.InverseGamma(2.0, 3.0, on="sigma"), P.InverseGamma(2.0, 3.0, on="sigma2"),
    P.TruncatedNormal(1.0, 2.0, 0.0), P.Uniform(0.5, 3.0), P.Flat()], ids=str)
def test_conditional_log_prior_matches_logpdf(prior):
    s = np.array([0.6, 0.9, 1.4, 2.5])
    diff = H.conditional_log_prior(prior, s) - prior.logpdf(s)
    np.testing.assert_allclose(diff, diff[0], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Mixing when tau is small
# --------------------------------------------------------------------------------------------
def test_interweaving_and_collapsing_mix_better_than_centred_when_tau_is_small():
    """True tau = 0.05 with noise sd 1: the centred sampler's tau sticks; ESS of tau side by
    side from one seed (1000 draws x 4 chains each)."""
    d = datasets.hierarchical_synthetic(seed=2, groups=8, per_group=12, tau=0.05)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    term = H.group_term("1|g", None, d["g"])
    ess = {}
    for strategy in ["centred", "asis", "collapsed"]:
        dt = H.hierarchical_gibbs(X, d["y"], [term], names=NAMES, beta_mean=0.0,
                                  beta_cov=BETA_SD**2, tau_priors={"1|g": P.HalfNormal(1.0)},
                                  sigma_prior=P.HalfNormal(2.0), strategy=strategy,
                                  draws=1000, tune=200, seed=SEED)
        ess[strategy] = float(arviz_stats.ess(dt.posterior["1|g_sigma"].values))
    assert ess["asis"] > 4 * ess["centred"], ess
    assert ess["collapsed"] > 4 * ess["centred"], ess


# --------------------------------------------------------------------------------------------
# Output format, reproducibility
# --------------------------------------------------------------------------------------------
def test_posterior_names_dims_and_coords_follow_bambi(data):
    """As Bambi 0.21 names them for ``y ~ x + (1|g)`` (checked with model.backend.model)."""
    dt = fit(data, "halfnormal", "collapsed", draws=20, tune=5)
    post = dt.posterior
    assert set(post.data_vars) == {"Intercept", "x", "1|g", "1|g_sigma", "sigma"}
    assert post["Intercept"].dims == ("chain", "draw")
    assert post["1|g"].dims == ("chain", "draw", "g__factor_dim")
    assert list(post["g__factor_dim"].values) == [f"g{j}" for j in range(8)] + ["solo", "ghost"]
    assert post.attrs["strategy"] == "collapsed"
    assert "sample_stats" in dt.children


def test_chains_do_not_depend_on_how_many_run(data):
    X, y, _, term = data
    kw = dict(names=NAMES, beta_mean=0.0, beta_cov=BETA_SD**2,
              tau_priors={"1|g": P.HalfStudentT(3.0, 1.0)}, sigma_prior=P.HalfNormal(2.0),
              draws=30, tune=10, seed=SEED)
    two = H.hierarchical_gibbs(X, y, [term], chains=2, **kw).posterior
    three = H.hierarchical_gibbs(X, y, [term], chains=3, **kw).posterior
    for name in ["x", "1|g_sigma", "sigma"]:
        np.testing.assert_array_equal(two[name].values, three[name].values[:2])


# --------------------------------------------------------------------------------------------
# Shrinkage
# --------------------------------------------------------------------------------------------
def test_shrinkage_against_quadrature_and_least_squares(data):
    X, y, g, term = data
    dt = fit(data, "halfnormal", "collapsed")
    out = H.shrinkage(dt.posterior, X, y, term, names=NAMES)
    q = quadrature(data, "halfnormal")
    assert out.levels == term.levels
    assert out.n_obs.tolist() == [12] * 8 + [1, 0]
    # no pooling: least squares on x and one indicator per level; "solo" is fitted exactly
    slope = np.polyfit(X[:96, 1] - np.array([X[:96, 1][g[:96] == lev].mean() for lev in g[:96]]),
                       y[:96] - np.array([y[:96][g[:96] == lev].mean() for lev in g[:96]]), 1)[0]
    assert out.no_pooling[8] == pytest.approx(y[-1] - slope * X[-1, 1], rel=1e-9)
    assert np.isnan(out.no_pooling[9])
    # partial pooling: posterior mean of Intercept + b_j, within MCSE of the quadrature
    post = dt.posterior
    for level in ["g0", "solo", "ghost"]:
        j = term.levels.index(level)
        alpha = post["Intercept"].values + post["1|g"].sel(g__factor_dim=level).values
        key = f"1|g[{level}]"
        exact_mean = q.marginal("Intercept").mean() + q.marginal(key).mean()
        sd = np.sqrt(q.cov("Intercept", "Intercept") + q.cov(key, key)
                     + 2 * q.cov("Intercept", key))
        assert alpha.mean() == pytest.approx(out.partial[j], rel=1e-12)
        z = (out.partial[j] - exact_mean) / (sd / np.sqrt(arviz_stats.ess(alpha)))
        assert abs(z) < Z_MAX
    # shrinkage: the partial estimate of every observed group lies between its no-pooling
    # estimate and the common intercept
    common = post["Intercept"].values.mean()
    seen = out.n_obs > 0
    lo = np.minimum(out.no_pooling[seen], common)
    hi = np.maximum(out.no_pooling[seen], common)
    assert np.all((out.partial[seen] > lo) & (out.partial[seen] < hi))


def test_shrinkage_treats_group_level_predictors_as_part_of_the_group_intercept():
    """A county-level predictor (like radon's uranium) is collinear with the indicators: it is
    left out of the no-pooling fit and added to the partial-pooling group intercept."""
    d = datasets.hierarchical_synthetic(seed=7, groups=5, per_group=4)
    codes = np.array([int(s[1:]) for s in d["g"]])
    u = np.array([0.3, -0.5, 1.0, 0.2, -1.1])[codes]
    X = np.column_stack([np.ones_like(d["x"]), d["x"], u])
    term = H.group_term("1|g", None, d["g"])
    names = ["Intercept", "x", "u"]
    rng = np.random.default_rng(SEED)
    post = {"Intercept": rng.normal(size=(2, 50)), "x": rng.normal(size=(2, 50)),
            "u": rng.normal(size=(2, 50)), "1|g": rng.normal(size=(2, 50, 5))}
    out = H.shrinkage(post, X, d["y"], term, names=names)
    expected = (post["Intercept"][..., None] + post["u"][..., None] * np.array(
        [0.3, -0.5, 1.0, 0.2, -1.1]) + post["1|g"]).reshape(-1, 5).mean(0)
    np.testing.assert_allclose(out.partial, expected, rtol=1e-12)
    A = np.column_stack([np.eye(5)[codes], d["x"]])
    np.testing.assert_allclose(out.no_pooling, np.linalg.lstsq(A, d["y"], rcond=None)[0][:5],
                               rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    np.array([1.0, np.nan, 2.0]), ["a", None, "b"], np.array(["a", np.nan, "b"], dtype=object)])
def test_group_term_rejects_missing_group_labels(values):
    with pytest.raises(ValueError, match=r"1\|g.*missing value.*row 1"):
        H.group_term("1|g", None, values)


def test_group_term_labels_levels_and_columns():
    term = H.group_term("1|g", None, np.array([3, 1, 3, 10]))
    assert term.levels == ("1", "10", "3")  # Bambi's order: sorted labels
    assert term.codes.tolist() == [2, 0, 2, 1]
    term = H.group_term("x|g", [0.5, 1.0], ["a", "a"], levels=["a", "b"])
    assert term.levels == ("a", "b") and term.column.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="not in the given levels"):
        H.group_term("1|g", None, ["a", "c"], levels=["a", "b"])
    with pytest.raises(ValueError, match="column_values is needed"):
        H.group_term("x|g", None, ["a", "b"])
    with pytest.raises(ValueError, match="looks like '1|g'"):
        H.group_term("g", None, ["a", "b"])
    with pytest.raises(ValueError, match="has 3 values but the grouping column has 2"):
        H.group_term("x|g", [1.0, 2.0, 3.0], ["a", "b"])


def _kwargs(**over):
    kw = dict(names=NAMES, beta_mean=0.0, beta_cov=100.0, tau_priors={"1|g": P.HalfNormal(1.0)},
              sigma_prior=P.HalfNormal(1.0))
    kw.update(over)
    return kw


@pytest.mark.parametrize("over, err, match", [
    (dict(names=["Intercept"]), ValueError, "names must hold 2 strings"),
    (dict(tau_priors={}), ValueError, r"needs exactly one prior for '1\|g'"),
    (dict(tau_priors={"1|g": P.HalfNormal(1.0), "1|h": P.HalfNormal(1.0)}), ValueError,
     r"unknown term\(s\) \['1\|h'\]"),
    (dict(tau_priors={"1|g": P.Normal(0.0, 1.0)}), ValueError, "must live on positive values"),
    (dict(sigma_prior=P.Normal(0.0, 1.0)), ValueError, "'sigma' must live on positive"),
    (dict(tau_priors={"1|g": 1.0}), TypeError, "must be a reference.priors Prior"),
    (dict(strategy="pooled"), ValueError, "strategy must be one of"),
    (dict(beta_cov=-1.0), ValueError, "positive definite"),
    (dict(weights=np.zeros(97)), ValueError, "weights must be 97 finite positive values"),
])
def test_bad_arguments(data, over, err, match):
    X, y, _, term = data
    with pytest.raises(err, match=match):
        H.hierarchical_kernel(X, y, [term], **_kwargs(**over))


def test_bad_groups(data):
    X, y, _, term = data
    with pytest.raises(TypeError, match="GroupTerm"):
        H.hierarchical_kernel(X, y, ["1|g"], **_kwargs())
    with pytest.raises(ValueError, match="has 96 rows but y has 97"):
        H.hierarchical_kernel(X, y, [dataclasses.replace(term, codes=term.codes[:-1],
                                                         column=term.column[:-1])], **_kwargs())
    with pytest.raises(ValueError, match="share the same levels"):
        other = H.group_term("x|g", X[:, 1], term.levels[0:1] * 97)
        H.hierarchical_kernel(X, y, [term, other],
                              **_kwargs(tau_priors={"1|g": P.HalfNormal(), "x|g": P.HalfNormal()}))
    with pytest.raises(ValueError, match="varying intercepts"):
        H.shrinkage({}, X, y, H.group_term("x|g", X[:, 1], ["a"] * 97), names=NAMES)


def test_special_function_tail_inputs_stay_finite():
    """The probability-scale slice falls back to log scale where F_q rounds to 0 or 1."""
    C = 8
    rng = ChainRNG(SEED, C)
    scale = np.full(C, 1e-3)  # far below where the likelihood puts sigma
    new, _ = H.draw_scale_slice(rng, P.HalfNormal(1.0), 500, np.full(C, 500.0), scale)
    assert np.all(np.isfinite(new)) and np.all(new > 0)
    assert special.gammainc(249.5, 250.0 / 1e-6) == 1.0  # the case that needs the fallback
