"""Simulation-based calibration: the uniformity test itself, then one SBC study per sampler.

Failure budget. Every statistical assertion below is either exact (a computed probability) or a
test whose false-alarm rate is stated next to it: every uniformity verdict asserted to pass (the
SBC studies of correct samplers, 8 in the fast suite) has a family-wise false-alarm rate of at
most ALPHA = 1% (Bonferroni across parameters inside ``reference.sbc``), the binomial checks of
the band machinery 0.1% each. Seeds are fixed once (SEED) and never tuned. Broken samplers are
injected from the test code (monkeypatch or wrapped functions); the production code has no bug
switches. Run with ``-s`` to see every study's p-values.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import linalg, signal, stats

from reference import priors
from reference import sbc as sbc_module
from reference.conjugate import NormalInverseGamma
from reference.sbc import (
    ecdf_bands,
    effective_sample_size,
    evaluation_points,
    familywise_uniformity_test,
    rank_of,
    sbc,
    uniformity_test,
)

SEED = 20261121
FAST_REPS, SLOW_REPS = 200, 1000
ALPHA = 0.01           # family-wise level of every SBC study
CHECK_BUDGET = 1e-3    # false-alarm rate of each binomial check on the machinery


def _report(label: str, result) -> None:
    """Print the verdicts (run pytest with -s to see them)."""
    print(f"\n[{label}] {result.summary()}\n  thin factors {np.unique(result.thin).tolist()}, "
          f"ESS shortfall {result.ess_shortfall}, {result.seconds:.1f} s")


def _binomial_ok(count: int, trials: int, p: float, budget: float = CHECK_BUDGET) -> bool:
    """Two-sided binomial check: ``count`` is not in either tail of Bin(trials, p) beyond
    budget/2."""
    return (stats.binom.cdf(count, trials, p) > budget / 2
            and stats.binom.sf(count - 1, trials, p) > budget / 2)


def _uniform_rank_sets(rng, sets: int, N: int, L: int) -> np.ndarray:
    return rng.integers(0, L + 1, size=(sets, N))


def _ecdf_counts(rank_sets: np.ndarray, L: int, m: np.ndarray) -> np.ndarray:
    """Counts #{r < m_i} for many rank sets at once, shape (sets, len(m))."""
    sets = rank_sets.shape[0]
    flat = (rank_sets + (L + 1) * np.arange(sets)[:, None]).ravel()
    hist = np.bincount(flat, minlength=sets * (L + 1)).reshape(sets, L + 1)
    return np.cumsum(hist, axis=1)[:, m - 1]


# ============================================================================================
# 1. The simultaneous ECDF band and the uniformity test
# ============================================================================================
def test_band_level_is_exact_and_conservative():
    # The recursion's coverage is >= 1 - alpha and, discreteness aside, close to it.
    for N, L, alpha in [(200, 99, 0.01), (200, 99, 0.05), (1000, 99, 0.01), (50, 20, 0.01)]:
        K = sbc_module._default_K(N, L)
        *_, coverage = sbc_module._adjusted_band(N, L, K, alpha)
        assert 1 - alpha <= coverage < 1 - alpha + 0.005, (N, L, alpha, coverage)


def test_band_false_alarm_rate_matches_exact_level_by_simulation():
    """20 000 uniform rank sets (N=200, L=99): the share leaving the band is the exact level.

    This checks the recursion against brute force. Check budget 0.1% (two-sided binomial).
    """
    N, L, sets = 200, 99, 20_000
    K = sbc_module._default_K(N, L)
    rng = np.random.default_rng(SEED)
    lower, upper = ecdf_bands(N, L, ALPHA)
    m, _ = evaluation_points(L, K)
    ecdf = _ecdf_counts(_uniform_rank_sets(rng, sets, N, L), L, m) / N
    alarms = int(((ecdf < lower) | (ecdf > upper)).any(axis=1).sum())
    level = 1 - sbc_module._adjusted_band(N, L, K, ALPHA)[4]
    assert _binomial_ok(alarms, sets, level), (alarms, sets * level)


def test_uniformity_test_false_alarm_rate_and_p_values():
    """500 uniform rank sets through the public test: alarms ~ Bin(500, <= 1%), p-values valid.

    Budget: 0.1% for each of the two one-sided checks.
    """
    N, L, sets = 200, 99, 500
    rng = np.random.default_rng(SEED + 1)
    results = [uniformity_test(r, L, ALPHA)[1] for r in _uniform_rank_sets(rng, sets, N, L)]
    alarms = sum(not t.passed for t in results)
    assert alarms <= stats.binom.ppf(1 - CHECK_BUDGET, sets, ALPHA)
    # p-values are (conservatively) uniform: P(p <= 0.2) <= 0.2
    small = sum(t.p_value <= 0.2 for t in results)
    assert small <= stats.binom.ppf(1 - CHECK_BUDGET, sets, 0.2)
    assert small >= stats.binom.ppf(CHECK_BUDGET, sets, 0.15)  # not absurdly conservative
    # the verdict and the p-value always agree
    assert all(t.passed == (t.p_value > ALPHA) for t in results)


def _ranks_from(rng, N, L, draw_scale=1.0, draw_shift=0.0):
    """Ranks of theta ~ N(0, 1) among L draws of N(shift, scale^2) (exact when scale=1, shift=0)."""
    theta = rng.standard_normal(N)
    draws = draw_shift + draw_scale * rng.standard_normal((N, L))
    return (draws < theta[:, None]).sum(axis=1)


# Effects chosen large enough that the test's power at N=200 is about 1 (measured 500/500 for
# each); smaller ones (draw sd 0.8 or 1.3, shift 0.3) are caught only 50-90% of the time.
@pytest.mark.parametrize("scale, shift, shape", [(0.6, 0.0, "U (overconfident)"),
                                                 (1.6, 0.0, "hump (underconfident)"),
                                                 (1.0, 0.5, "slope (biased)")])
def test_non_uniform_ranks_fail(scale, shift, shape):
    rng = np.random.default_rng(SEED + 2)
    passed, details = uniformity_test(_ranks_from(rng, 200, 99, scale, shift), 99, ALPHA)
    assert not passed, shape
    assert details.p_value < ALPHA
    assert details.outside.any()


def test_exact_ranks_pass_and_plot_data():
    rng = np.random.default_rng(SEED + 3)
    passed, details = uniformity_test(_ranks_from(rng, 200, 99), 99, ALPHA)
    assert passed and details.p_value > ALPHA and not details.outside.any()
    diff = details.difference()
    assert set(diff) == {"z", "ecdf_diff", "lower_diff", "upper_diff"}
    assert np.all(diff["lower_diff"] <= 0) and np.all(diff["upper_diff"] >= 0)
    assert len(diff["z"]) == details.K - 1 == 99


def test_familywise_uses_bonferroni_share():
    rng = np.random.default_rng(SEED + 4)
    ranks = {"a": _ranks_from(rng, 200, 99), "b": _ranks_from(rng, 200, 99)}
    passed, details = familywise_uniformity_test(ranks, 99, ALPHA)
    assert passed
    assert all(d.alpha == pytest.approx(ALPHA / 2) for d in details.values())


def test_evaluation_points_cover_rank_grid():
    m, z = evaluation_points(99, 100)
    np.testing.assert_array_equal(m, np.arange(1, 100))
    m, z = evaluation_points(99, 20)
    assert len(m) == 19 and np.allclose(z, np.arange(1, 20) / 20)


def test_rank_of_breaks_ties_uniformly():
    """A constant 'parameter' ties with all L=9 draws: ranks must be uniform on 0..9."""
    rng = np.random.default_rng(SEED + 5)
    ranks = np.array([rank_of(1.0, np.ones(9), rng) for _ in range(1000)])
    assert ranks.min() == 0 and ranks.max() == 9
    assert uniformity_test(ranks, 9, ALPHA)[0]
    assert rank_of(0.5, np.array([0.1, 0.2, 0.9]), rng) == 2


def test_effective_sample_size_matches_arviz():
    import arviz_stats

    rng = np.random.default_rng(SEED + 6)
    for phi in (0.0, 0.5, 0.9):
        x = np.zeros((2, 1000))
        e = rng.standard_normal((2, 1000))
        for t in range(1, 1000):
            x[:, t] = phi * x[:, t - 1] + e[:, t]
        ours = effective_sample_size(x)
        theirs = float(arviz_stats.ess(x, method="bulk"))
        assert ours == pytest.approx(theirs, rel=0.02), (phi, ours, theirs)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"ranks must lie in 0..L = 0..9"):
        uniformity_test([0, 3, 10], 9)
    with pytest.raises(ValueError, match=r"ranks must be whole numbers"):
        uniformity_test([0.5, 3], 9)
    with pytest.raises(ValueError, match=r"alpha must lie strictly between 0 and 1"):
        uniformity_test([0, 3], 9, alpha=1.5)
    with pytest.raises(ValueError, match=r"K must be at most L \+ 1 = 10"):
        ecdf_bands(100, 9, K=11)
    with pytest.raises(ValueError, match=r"non-empty mapping"):
        familywise_uniformity_test({}, 9)
    with pytest.raises(ValueError, match=r"thin must be a positive integer or 'ess'"):
        sbc(_nig_simulate, _nig_fit, thin="auto")
    with pytest.raises(ValueError, match=r"thin='ess' needs an explicit L"):
        sbc(_nig_simulate, _nig_fit, thin="ess", L=None)
    with pytest.raises(ValueError, match=r"replications must be >= 1"):
        sbc(_nig_simulate, _nig_fit, replications=0)
    with pytest.raises(ValueError, match=r"fit returned no draws of 'sigma'"):
        sbc(_nig_simulate, lambda y, s: {"Intercept": np.zeros((1, 99)), "x": np.zeros((1, 99))},
            replications=1, thin=1)
    with pytest.raises(ValueError, match=r"only 50 draws remain but L=99"):
        sbc(_nig_simulate, lambda y, s: {k: v[:, :50] for k, v in _nig_fit(y, s).items()},
            replications=1, thin=1)
    with pytest.raises(TypeError, match=r"dict of \(chain, draw\) arrays, a "
                                        r"reference.sampling.Run or an ArviZ"):
        sbc(_nig_simulate, lambda y, s: [1, 2], replications=1, thin=1)


# ============================================================================================
# 2. The exact NIG posterior: iid draws pass; a broken posterior fails
# ============================================================================================
NIG_N = 15
NIG_X = np.column_stack([np.ones(NIG_N), np.linspace(-1.0, 1.0, NIG_N)])
NIG_PRIOR = {"prior_mean": np.array([0.5, -0.5]), "prior_cov": np.array([[1.0, 0.3], [0.3, 0.5]]),
             "a0": 3.0, "b0": 2.0}


def _nig_simulate(rng):
    """sigma^2 ~ IG(a0, b0), beta | sigma^2 ~ N(m0, sigma^2 V0), y ~ N(X beta, sigma^2 I)."""
    sigma2 = NIG_PRIOR["b0"] / rng.standard_gamma(NIG_PRIOR["a0"])
    L0 = linalg.cholesky(NIG_PRIOR["prior_cov"], lower=True)
    beta = NIG_PRIOR["prior_mean"] + np.sqrt(sigma2) * (L0 @ rng.standard_normal(2))
    y = NIG_X @ beta + np.sqrt(sigma2) * rng.standard_normal(NIG_N)
    return {"Intercept": beta[0], "x": beta[1], "sigma": np.sqrt(sigma2)}, y


def _nig_fit(y, seed, draws=99, posterior=NormalInverseGamma):
    post = posterior(NIG_X, y, **NIG_PRIOR)
    beta, sigma2 = post.sample(np.random.default_rng(seed), draws)
    return {"Intercept": beta[None, :, 0], "x": beta[None, :, 1], "sigma": np.sqrt(sigma2)[None]}


class _ShapeNInsteadOfHalfN(NormalInverseGamma):
    """Injected bug: the posterior inverse-gamma shape a0 + n instead of a0 + n/2."""

    def __init__(self, X, y, **kw):
        super().__init__(X, y, **kw)
        self.a_n = self.a0 + len(self.y)


def test_sbc_exact_nig_sampler_passes():
    result = sbc(_nig_simulate, _nig_fit, replications=200, L=99, thin=1, seed=SEED)
    _report("exact NIG", result)
    assert result.passed, result.summary()
    assert set(result.ranks) == {"Intercept", "x", "sigma"}
    assert all(r.shape == (200,) and r.min() >= 0 and r.max() <= 99 for r in result.ranks.values())


def test_sbc_exact_nig_with_wrong_shape_fails():
    result = sbc(_nig_simulate, lambda y, s: _nig_fit(y, s, posterior=_ShapeNInsteadOfHalfN),
                 replications=200, L=99, thin=1, seed=SEED)
    _report("exact NIG, IG shape n", result)
    assert not result.passed
    assert not result.tests["sigma"].passed


@pytest.mark.slow
def test_sbc_exact_nig_slow():
    result = sbc(_nig_simulate, lambda y, s: _nig_fit(y, s, draws=99), replications=SLOW_REPS,
                 L=99, thin=1, seed=SEED)
    _report("exact NIG slow", result)
    assert result.passed, result.summary()


def test_sbc_accepts_a_datatree_and_vector_parameters():
    """fit may return an ArviZ DataTree; a vector parameter is ranked component by component."""
    from reference.sampling import Run, to_datatree

    def simulate(rng):
        theta, y = _nig_simulate(rng)
        return {"beta": np.array([theta["Intercept"], theta["x"]]), "sigma": theta["sigma"]}, y

    def fit(y, seed):
        d = _nig_fit(y, seed)
        post = {"beta": np.stack([d["Intercept"], d["x"]], axis=-1), "sigma": d["sigma"]}
        return to_datatree(Run(post, {}, None, {"beta": ["coef"]}, {}))

    result = sbc(simulate, fit, replications=40, L=99, thin=1, seed=SEED)
    assert set(result.ranks) == {"beta[0]", "beta[1]", "sigma"}
    # the same seeds give the same ranks as the dict route
    plain = sbc(_nig_simulate, _nig_fit, replications=40, L=99, thin=1, seed=SEED)
    np.testing.assert_array_equal(result.ranks["beta[1]"], plain.ranks["x"])


def test_sbc_batch_gives_the_same_ranks():
    """Fitting blocks of data sets in one call changes nothing but the bookkeeping."""

    def quantile_fit(y):  # deterministic 'draws': the exact posterior's (l + 1/2)/L quantiles
        var = 1.0 / (1.0 + y.size)
        q = stats.norm.ppf((np.arange(49) + 0.5) / 49)
        return {"mu": (var * y.sum() + np.sqrt(var) * q)[None]}

    one = sbc(_normal_mean_simulate, lambda y, s: quantile_fit(y), replications=30, L=49, thin=1,
              seed=SEED)
    seven = sbc(_normal_mean_simulate, lambda ys, s: [quantile_fit(y) for y in ys],
                replications=30, L=49, thin=1, seed=SEED, batch=7)
    np.testing.assert_array_equal(one.ranks["mu"], seven.ranks["mu"])
    assert seven.attrs["batch"] == 7 and seven.attrs["seed"] == SEED
    with pytest.raises(ValueError, match=r"with batch=7, fit must return a list of 7 draws"):
        sbc(_normal_mean_simulate, lambda ys, s: [quantile_fit(ys[0])], replications=30, L=49,
            thin=1, batch=7)
    with pytest.raises(TypeError, match=r"simulate must return a pair"):
        sbc(lambda rng: {"mu": 0.0}, lambda y, s: quantile_fit(y), replications=2, thin=1)


# --------------------------------------------------------------------------------------------
# Thinning: an autocorrelated but otherwise exact sampler fails unthinned, passes thinned
# --------------------------------------------------------------------------------------------
def _normal_mean_simulate(rng):
    """mu ~ N(0, 1), y_1..5 ~ N(mu, 1): the posterior is N(sum(y) / 6, 1 / 6)."""
    mu = rng.standard_normal()
    return {"mu": mu}, mu + rng.standard_normal(5)


def _ar1_fit(draws, phi=0.95):
    """AR(1) 'sampler' started at an exact posterior draw: every draw is exact, consecutive
    draws have correlation phi, as in an MCMC chain with ESS about draws (1 - phi) / (1 + phi)."""

    def fit(y, seed):
        rng = np.random.default_rng(seed)
        var = 1.0 / (1.0 + y.size)
        e = np.sqrt(1.0 - phi**2) * rng.standard_normal(draws)
        e[0] = rng.standard_normal()
        u = signal.lfilter([1.0], [1.0, -phi], e)  # u_t = phi u_(t-1) + e_t, stationary N(0, 1)
        return {"mu": (var * y.sum() + np.sqrt(var) * u)[None]}

    return fit


def test_sbc_autocorrelated_draws_fail_unthinned_and_pass_with_ess_thinning():
    # 99 consecutive draws (ESS about 2.5): ranks pile up at both ends
    unthinned = sbc(_normal_mean_simulate, _ar1_fit(draws=99), replications=200, L=99, thin=1,
                    seed=SEED)
    _report("AR(1), unthinned", unthinned)
    assert not unthinned.passed
    # 6000 draws (ESS about 150) thinned by ESS to 49 nearly independent draws
    thinned = sbc(_normal_mean_simulate, _ar1_fit(draws=6000), replications=200, L=49,
                  thin="ess", seed=SEED)
    _report("AR(1), thinned by ESS", thinned)
    assert thinned.ess_shortfall == 0 and thinned.thin.min() > 10
    assert thinned.passed, thinned.summary()


# ============================================================================================
# 3. The MCMC samplers
# ============================================================================================
# Fast versions (in `make test`): 200 replications (100 for the hierarchical sampler), 6 to 16
# rows, one short chain per data set, ranks against L = 49 (29) draws thinned by ESS. Slow
# versions (`make validate`): 1000 replications and longer chains. Each study has a
# family-wise false-alarm rate of 1%.
ROWS = 15
X_LIN = np.column_stack([np.ones(ROWS), np.linspace(-1.0, 1.0, ROWS)])
COEFS = ["Intercept", "x"]


# --------------------------------------------------------------------------------------------
# Gibbs (reference.gibbs): semi-conjugate prior, beta ~ N(m0, V0) independent of sigma^2
# --------------------------------------------------------------------------------------------
GIBBS_M0 = np.array([0.5, -0.5])
GIBBS_V0 = np.array([[1.0, 0.3], [0.3, 0.5]])
GIBBS_SIGMA_PRIORS = {
    "InverseGamma(3, 2) on sigma^2": priors.InverseGamma(3.0, 2.0, on="sigma2"),
    "HalfNormal(1)": priors.HalfNormal(1.0),
    "HalfCauchy(1)": priors.HalfCauchy(1.0),
}


def _gibbs_simulate(sigma_prior=GIBBS_SIGMA_PRIORS["InverseGamma(3, 2) on sigma^2"], nig=False):
    chol_v0 = linalg.cholesky(GIBBS_V0, lower=True)

    def simulate(rng):
        sigma = float(sigma_prior.rvs(rng))
        scale = sigma if nig else 1.0  # NIG: beta | sigma^2 ~ N(m0, sigma^2 V0)
        beta = GIBBS_M0 + scale * (chol_v0 @ rng.standard_normal(2))
        y = X_LIN @ beta + sigma * rng.standard_normal(ROWS)
        return {"Intercept": beta[0], "x": beta[1], "sigma": sigma}, y

    return simulate


def _gibbs_fit(draws, tune, sigma_prior=GIBBS_SIGMA_PRIORS["InverseGamma(3, 2) on sigma^2"],
               nig=False):
    from reference import gibbs, sampling

    def fit(y, seed):
        kernel = gibbs.gibbs_kernel(X_LIN, y, names=COEFS, beta_mean=GIBBS_M0, beta_cov=GIBBS_V0,
                                    sigma_prior=sigma_prior, nig=nig)
        return sampling.run(kernel, draws=draws, tune=tune, chains=1, seed=seed)

    return fit


def _ig_shape_n_instead_of_half_n(monkeypatch):
    """Injected bug: the sigma^2 conditional gets shape alpha + n instead of alpha + n/2."""
    from reference import gibbs

    correct = gibbs.draw_sigma2
    monkeypatch.setattr(gibbs, "draw_sigma2",
                        lambda rng, shape, scale, k, q: correct(rng, shape, scale, 2 * k, q))


def test_sbc_gibbs_passes():
    result = sbc(_gibbs_simulate(), _gibbs_fit(draws=200, tune=50), replications=FAST_REPS,
                 L=49, thin="ess", seed=SEED)
    _report("gibbs", result)
    assert result.passed, result.summary()


def test_sbc_gibbs_with_ig_shape_n_fails(monkeypatch):
    _ig_shape_n_instead_of_half_n(monkeypatch)
    result = sbc(_gibbs_simulate(), _gibbs_fit(draws=200, tune=50), replications=FAST_REPS,
                 L=49, thin="ess", seed=SEED)
    _report("gibbs, IG shape n", result)
    assert not result.passed
    assert not result.tests["sigma"].passed


@pytest.mark.slow
@pytest.mark.parametrize("prior_name", list(GIBBS_SIGMA_PRIORS))
def test_sbc_gibbs_slow(prior_name):
    prior = GIBBS_SIGMA_PRIORS[prior_name]
    result = sbc(_gibbs_simulate(prior), _gibbs_fit(draws=1000, tune=200, sigma_prior=prior),
                 replications=SLOW_REPS, L=99, thin="ess", seed=SEED)
    _report(f"gibbs slow, sigma ~ {prior_name}", result)
    assert result.passed, result.summary()


@pytest.mark.slow
def test_sbc_gibbs_nig_slow():
    prior = GIBBS_SIGMA_PRIORS["InverseGamma(3, 2) on sigma^2"]
    result = sbc(_gibbs_simulate(prior, nig=True),
                 _gibbs_fit(draws=1000, tune=200, sigma_prior=prior, nig=True),
                 replications=SLOW_REPS, L=99, thin="ess", seed=SEED)
    _report("gibbs slow, NIG prior", result)
    assert result.passed, result.summary()


@pytest.mark.slow
def test_sbc_gibbs_with_ig_shape_n_fails_slow(monkeypatch):
    _ig_shape_n_instead_of_half_n(monkeypatch)
    result = sbc(_gibbs_simulate(), _gibbs_fit(draws=1000, tune=200), replications=SLOW_REPS,
                 L=99, thin="ess", seed=SEED)
    _report("gibbs slow, IG shape n", result)
    assert not result.passed


# --------------------------------------------------------------------------------------------
# Random-walk Metropolis (reference.mh) on reference.logdensity.regression_logdensity
# --------------------------------------------------------------------------------------------
# Four rows. Dropping the Jacobian turns the posterior of sigma^2 from about IG(a, .) into
# IG(a + 1/2, .): log sigma^2 shifts by about 1/(2a) against a posterior sd of about 1/sqrt(a),
# about 1/sqrt(2n) posterior sds, so the bug is only visible with little data. Power check
# (seeds 1-10, never SEED; 200 replications, fast settings): with the bug, the study failed
# 10/10 at n = 4 (sigma p-values 1e-11 to 2.5e-6), and also 10/10 at n = 6 with 400
# replications, but at n = 6 with 200 it passed for SEED (p = 0.27) and at n = 15 it is not
# detected at all; the correct sampler passed 10/10 at n = 4.
MH_ROWS = 4
X_MH = np.column_stack([np.ones(MH_ROWS), np.linspace(-1.0, 1.0, MH_ROWS)])
MH_COEF_PRIORS = {"Intercept": priors.Normal(0.5, 1.0), "x": priors.Normal(-0.5, 0.7)}
MH_SIGMA_PRIOR = priors.HalfNormal(1.0)
MH_BATCH = 200  # data sets per vectorized MH run: chain c samples data set c


def _mh_simulate(rng):
    beta = np.array([float(MH_COEF_PRIORS[k].rvs(rng)) for k in COEFS])
    sigma = float(MH_SIGMA_PRIOR.rvs(rng))
    y = X_MH @ beta + sigma * rng.standard_normal(MH_ROWS)
    return {"Intercept": beta[0], "x": beta[1], "sigma": sigma}, y


def _stacked_logdensity(targets):
    """One log density whose chain c is ``targets[c]``: all targets share X and the priors.

    ``regression_logdensity`` depends on y only through the likelihood's least-squares point
    ``beta_hat`` and residual ``q_min``; stacking those along the chain axis lets the
    production ``RegressionLogDensity.__call__`` evaluate every data set in one vectorized call
    (checked against the per-data-set objects in ``test_stacked_logdensity_matches``).
    """
    from reference.logdensity import RegressionLogDensity

    base = targets[0]
    lik = copy.copy(base.likelihood)
    lik.beta_hat = np.stack([t.likelihood.beta_hat for t in targets])
    lik.q_min = np.array([t.likelihood.q_min for t in targets])
    return RegressionLogDensity(lik, base.names, base.coef_priors, base.sigma_prior,
                                base.sigma_value)


def _mh_targets(ys):
    from reference.logdensity import regression_logdensity

    return [regression_logdensity(X_MH, y, COEFS, MH_COEF_PRIORS, MH_SIGMA_PRIOR) for y in ys]


def _mh_fit(draws, tune):
    from reference import mh

    def fit(ys, seed):
        dt = mh.random_walk_metropolis(_stacked_logdensity(_mh_targets(ys)), draws=draws,
                                       tune=tune, chains=len(ys), seed=seed)
        post = {k: dt.posterior[k].values for k in (*COEFS, "sigma")}
        return [{k: v[c:c + 1] for k, v in post.items()} for c in range(len(ys))]

    return fit


def _drop_log_sigma_jacobian(monkeypatch):
    """Injected bug: MH samples log(sigma) but forgets the Jacobian d sigma / d log sigma."""
    from reference import mh

    correct = mh.constrain
    monkeypatch.setattr(mh, "constrain",
                        lambda u, positive: (correct(u, positive)[0], np.zeros(u.shape[0])))


def test_stacked_logdensity_matches():
    rng = np.random.default_rng(SEED + 7)
    ys = [_mh_simulate(rng)[1] for _ in range(5)]
    targets = _mh_targets(ys)
    values = {"Intercept": rng.normal(size=5), "x": rng.normal(size=5),
              "sigma": rng.exponential(size=5)}
    each = [t({k: v[c:c + 1] for k, v in values.items()})[0] for c, t in enumerate(targets)]
    np.testing.assert_allclose(_stacked_logdensity(targets)(values), each, rtol=1e-12)


def test_sbc_mh_passes():
    result = sbc(_mh_simulate, _mh_fit(draws=3000, tune=1000), replications=FAST_REPS, L=49,
                 thin="ess", seed=SEED, batch=MH_BATCH)
    _report("mh", result)
    assert result.passed, result.summary()


def test_sbc_mh_without_jacobian_fails(monkeypatch):
    _drop_log_sigma_jacobian(monkeypatch)
    result = sbc(_mh_simulate, _mh_fit(draws=3000, tune=1000), replications=FAST_REPS, L=49,
                 thin="ess", seed=SEED, batch=MH_BATCH)
    _report("mh, Jacobian dropped", result)
    assert not result.passed
    assert not result.tests["sigma"].passed


@pytest.mark.slow
def test_sbc_mh_slow():
    result = sbc(_mh_simulate, _mh_fit(draws=4000, tune=2000), replications=SLOW_REPS, L=99,
                 thin="ess", seed=SEED, batch=MH_BATCH)
    _report("mh slow", result)
    assert result.passed, result.summary()


# --------------------------------------------------------------------------------------------
# Hierarchical Gibbs (reference.hierarchical): y ~ x + (1|g), 4 groups of 4 rows
# --------------------------------------------------------------------------------------------
GROUPS, PER_GROUP = 4, 4
H_CODES = np.repeat(np.arange(GROUPS), PER_GROUP)
H_X = np.column_stack([np.ones(GROUPS * PER_GROUP), np.linspace(-1.0, 1.0, GROUPS * PER_GROUP)])
H_SCALE_PRIOR = priors.HalfNormal(1.0)
H_FAST_REPS = 100  # one sweep costs ~0.4 ms (not vectorizable across data sets): fewer here


def _h_simulate(rng):
    """beta ~ N(0, I), tau ~ HalfNormal(1), b_j ~ N(0, tau^2), sigma ~ HalfNormal(1)."""
    beta = rng.standard_normal(2)
    tau = float(H_SCALE_PRIOR.rvs(rng))
    b = tau * rng.standard_normal(GROUPS)
    sigma = float(H_SCALE_PRIOR.rvs(rng))
    y = H_X @ beta + b[H_CODES] + sigma * rng.standard_normal(H_CODES.size)
    return {"Intercept": beta[0], "x": beta[1], "1|g": b, "1|g_sigma": tau, "sigma": sigma}, y


def _h_fit(draws, tune, codes=H_CODES):
    from reference import hierarchical, sampling

    def fit(y, seed):
        term = hierarchical.group_term("1|g", None, codes)
        kernel = hierarchical.hierarchical_kernel(
            H_X, y, [term], names=COEFS, beta_mean=0.0, beta_cov=1.0,
            tau_priors={"1|g": H_SCALE_PRIOR}, sigma_prior=H_SCALE_PRIOR)
        return sampling.run(kernel, draws=draws, tune=tune, chains=1, seed=seed)

    return fit


def test_sbc_hierarchical_passes():
    result = sbc(_h_simulate, _h_fit(draws=150, tune=50), replications=H_FAST_REPS, L=29,
                 thin="ess", seed=SEED)
    _report("hierarchical", result)
    assert result.passed, result.summary()


def test_sbc_hierarchical_with_wrong_group_mapping_fails():
    """Injected bug: every row is given to the next group (codes + 1 mod J) when fitting."""
    wrong = (H_CODES + 1) % GROUPS
    result = sbc(_h_simulate, _h_fit(draws=150, tune=50, codes=wrong), replications=H_FAST_REPS,
                 L=29, thin="ess", seed=SEED)
    _report("hierarchical, wrong group mapping", result)
    assert not result.passed


@pytest.mark.slow
def test_sbc_hierarchical_slow():
    result = sbc(_h_simulate, _h_fit(draws=800, tune=200), replications=SLOW_REPS, L=99,
                 thin="ess", seed=SEED)
    _report("hierarchical slow", result)
    assert result.passed, result.summary()
