"""Random-walk Metropolis, the regression log densities and the blog seed's MLE.

Statistical checks compare Monte Carlo estimates with exact answers in units of their arviz
MCSE: |z| < Z_MAX = 3.5 (a two-sided false-alarm rate of 4.7e-4 per quantity for a standard
normal z; the file makes 113 such comparisons, 57 of them on the 14-parameter Boston posterior,
so about 5% for the file as a whole). With 4 x 1000 draws the z's come out a little wider than
standard normal (sd 1.12 over 12 Boston runs on seeds not used here; a Gibbs sampler checked
against the same quadrature gives 1.18), so the Boston family alone exceeded 3.5 on 4 of 16
other seeds. Every check that matters has a companion test that injects a bug from here
(monkeypatch) and shows the check failing.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from comparisons.agreement import check_against_exact, check_correlation
from reference import conjugate, datasets, mh, priors, sampling
from reference.logdensity import (
    GaussianLikelihood,
    blog_logdensity,
    nig_logdensity,
    regression_logdensity,
)
from reference.mle import blog_mle, regression_mle

SEED = 20261121
Z_MAX = 3.5
NAMES = ("Intercept", "x")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def three_point_design():
    data = datasets.three_point()
    X = np.column_stack([np.ones(3), data["x"]])
    return X, data["y"]


def blog_design():
    data = datasets.blog_mh()
    return data["x"][:, None], data["y"]


def exact_checks(dt, exact: dict) -> list:
    """mean, sd, q05, q95 of every parameter in ``exact`` (name -> distribution)."""
    out = []
    for name, dist in exact.items():
        out += check_against_exact(name, dt.posterior[name].values, dist)
    return out


def corr_check(dt, names, rho):
    a, b = (dt.posterior[k].values for k in names)
    return check_correlation(tuple(names), a, b, rho)


def assert_all_within(checks):
    bad = [c for c in checks if not abs(c.z) < Z_MAX]
    assert not bad, "\n".join(f"{c.parameter} {c.quantity}: estimate {c.estimate:.4g}, "
                              f"exact {c.target:.4g}, z = {c.z:.2f}" for c in bad)


def max_abs_z(checks) -> float:
    return max(abs(c.z) if np.isfinite(c.z) else np.inf for c in checks)


class GridMarginal:
    """A 1-D marginal tabulated on equal cells (midpoint rule): mean(), std() and ppf()."""

    def __init__(self, centers, mass):
        self.centers = centers
        self.p = mass / mass.sum()
        h = centers[1] - centers[0]
        self.edges = np.concatenate([[centers[0] - h / 2], centers + h / 2])
        self.cdf = np.concatenate([[0.0], np.cumsum(self.p)])

    def mean(self):
        return float(self.p @ self.centers)

    def std(self):
        return float(np.sqrt(self.p @ (self.centers - self.mean()) ** 2))

    def ppf(self, q):
        # the density is constant on each cell, so the CDF is linear between edges
        return float(np.interp(q, self.cdf, self.edges))


@pytest.fixture(scope="module")
def blog_grid():
    """The blog posterior by brute force on a 3000 x 3000 grid over (slope, sd).

    Written from the post's own formulas (untruncated N(10, 30^2) on sd, which on sd > 0
    differs from the truncated prior by a constant) and residuals computed row by row, so it
    shares no code with the sampler's log density.
    """
    x, y = datasets.blog_mh()["x"], datasets.blog_mh()["y"]
    slope = np.linspace(-10.0, 16.0, 3000)
    sd = np.linspace(60.0 / 3000 / 2, 60.0 - 60.0 / 3000 / 2, 3000)  # cell centres in (0, 60)
    ssr = ((y[None, :] - slope[:, None] * x[None, :]) ** 2).sum(axis=1)
    logpost = (stats.norm.logpdf(slope, 5, 3)[:, None] + stats.norm.logpdf(sd, 10, 30)[None, :]
               - len(y) * np.log(sd)[None, :] - ssr[:, None] / (2 * sd[None, :] ** 2))
    w = np.exp(logpost - logpost.max())
    m_slope, m_sd = GridMarginal(slope, w.sum(axis=1)), GridMarginal(sd, w.sum(axis=0))
    w /= w.sum()
    cov = float(np.einsum("ij,i,j->", w, slope - m_slope.mean(), sd - m_sd.mean()))
    return {"x": m_slope, "sigma": m_sd, "corr": cov / (m_slope.std() * m_sd.std())}


# --------------------------------------------------------------------------------------------
# the log densities
# --------------------------------------------------------------------------------------------
def test_regression_logdensity_is_log_posterior_plus_log_evidence():
    # ld(beta) - log N(beta | m_n, V_n) is the log evidence, for every beta
    X, y = three_point_design()
    ld = regression_logdensity(X, y, NAMES, priors.Normal(0, 1), 1.0)
    exact = conjugate.GaussianKnownNoise(X, y, noise_var=1.0)
    beta = np.random.default_rng(SEED).normal(size=(5, 2)) * 2
    log_post = stats.multivariate_normal(exact.mean, exact.cov).logpdf(beta)
    got = ld({"Intercept": beta[:, 0], "x": beta[:, 1]}) - log_post
    np.testing.assert_allclose(got, exact.log_evidence(), rtol=1e-10)
    assert ld.params == {"Intercept": "real", "x": "real"}


def test_nig_logdensity_is_log_posterior_plus_log_evidence():
    X, y = three_point_design()
    ld = nig_logdensity(X, y, NAMES, a0=3.0, b0=2.0)
    exact = conjugate.NormalInverseGamma(X, y, a0=3.0, b0=2.0)
    rng = np.random.default_rng(SEED)
    beta, sigma = rng.normal(size=(5, 2)), rng.uniform(0.3, 3.0, 5)
    # exact posterior density of (beta, sigma): N(m_n, sigma^2 Lambda_n^-1) IG(sigma^2) 2 sigma
    log_post = np.array([
        stats.multivariate_normal(exact.mean, s**2 * exact.cov_unscaled).logpdf(b)
        + exact.sigma2().logpdf(s**2) + np.log(2 * s) for b, s in zip(beta, sigma, strict=True)
    ])
    got = ld({"Intercept": beta[:, 0], "x": beta[:, 1], "sigma": sigma}) - log_post
    np.testing.assert_allclose(got, exact.log_evidence(), rtol=1e-10)
    assert ld({"Intercept": beta[:2, 0], "x": beta[:2, 1], "sigma": np.array([-1.0, 0.0])}).max() \
        == -np.inf


def test_regression_logdensity_matches_direct_sum_with_row_scales():
    rng = np.random.default_rng(SEED)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = 1e6 + X @ [0.5, 2.0] + rng.normal(size=n)  # large offset: no cancellation in Q
    s = rng.uniform(0.5, 2.0, n)
    pri = {"Intercept": priors.Normal(1e6, 10.0), "x": priors.StudentT(3, 0, 2)}
    ld = regression_logdensity(X, y, NAMES, pri, priors.HalfCauchy(2.0), noise_sd=s)
    beta = np.array([[1e6 + 0.4, 2.1], [1e6 + 0.6, 1.9], [1e6, 0.0]])
    sigma = np.array([0.9, 1.2, 3.0])
    direct = np.array([
        stats.norm.logpdf(y, X @ b, sg * s).sum() + pri["Intercept"].logpdf(b[0])
        + pri["x"].logpdf(b[1]) + priors.HalfCauchy(2.0).logpdf(sg)
        for b, sg in zip(beta, sigma, strict=True)
    ])
    got = ld({"Intercept": beta[:, 0], "x": beta[:, 1], "sigma": sigma})
    # both sides carry roundoff of order eps * 1e6 * |residual| * n / s^2 ~ 1e-8; expanding
    # y'y - 2 b'X'y + b'X'X b instead would lose eps * y'y ~ 1e-2
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6)
    # known per-row sds: sigma fixed at 1, so "sigma" is not a parameter
    known = regression_logdensity(X, y, NAMES, pri, priors.Constant(1.0), noise_sd=s)
    assert "sigma" not in known.params
    np.testing.assert_allclose(
        known({"Intercept": beta[:, 0], "x": beta[:, 1]}),
        [stats.norm.logpdf(y, X @ b, s).sum() + pri["Intercept"].logpdf(b[0])
         + pri["x"].logpdf(b[1]) for b in beta], rtol=0, atol=1e-6)


def test_likelihood_handles_more_columns_than_rows():
    rng = np.random.default_rng(SEED)
    X, y = rng.normal(size=(3, 5)), rng.normal(size=3)
    lik = GaussianLikelihood(X, y)
    beta = rng.normal(size=(4, 5))
    direct = [stats.norm.logpdf(y, X @ b, 0.7).sum() for b in beta]
    np.testing.assert_allclose(lik(beta, 0.7), direct, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"names": ["x"]}, ValueError, "names must be 2 non-empty strings"),
        ({"names": ["x", "x"]}, ValueError, "names must be unique"),
        ({"names": ["sigma", "x"]}, ValueError, "'sigma' is reserved"),
        ({"coef_priors": [priors.Normal()]}, ValueError, "must hold 2 priors"),
        ({"coef_priors": {"x": priors.Normal()}}, ValueError, r"missing \['Intercept'\]"),
        ({"coef_priors": priors.Constant(1.0)}, ValueError, "Constant prior on coefficient"),
        ({"coef_priors": "normal"}, TypeError, "coef_priors must be a Prior"),
        ({"sigma_prior": priors.Normal(0, 1)}, ValueError, "prior on sigma must live on positive"),
        ({"sigma_prior": -1.0}, ValueError, "known sigma must be a finite number > 0"),
        ({"sigma_prior": "1"}, TypeError, "sigma_prior must be a Prior"),
        ({"noise_sd": [1.0, 1.0]}, ValueError, "noise_sd must hold 3 finite values > 0"),
    ],
)
def test_regression_logdensity_rejects_bad_input(kwargs, error, match):
    X, y = three_point_design()
    args = {"names": NAMES, "coef_priors": priors.Normal(), "sigma_prior": priors.HalfNormal(),
            **kwargs}
    noise_sd = args.pop("noise_sd", None)
    with pytest.raises(error, match=match):
        regression_logdensity(X, y, args["names"], args["coef_priors"], args["sigma_prior"],
                              noise_sd=noise_sd)


def test_logdensity_names_the_missing_parameter():
    X, y = three_point_design()
    ld = regression_logdensity(X, y, NAMES, priors.Normal(), priors.HalfNormal())
    with pytest.raises(KeyError, match=r"\['sigma'\] are missing"):
        ld({"Intercept": np.zeros(2), "x": np.zeros(2)})


# --------------------------------------------------------------------------------------------
# MH against closed forms
# --------------------------------------------------------------------------------------------
def known_noise_run():
    X, y = three_point_design()
    ld = regression_logdensity(X, y, NAMES, priors.Normal(0, 1), 1.0)
    return random_walk(ld)


def random_walk(ld, **kw):
    return mh.random_walk_metropolis(ld, **{"draws": 5000, "tune": 1000, "seed": SEED, **kw})


def known_noise_checks(dt) -> list:
    X, y = three_point_design()
    exact = conjugate.GaussianKnownNoise(X, y, noise_var=1.0)
    checks = exact_checks(dt, dict(zip(NAMES, exact.marginals(), strict=True)))
    checks.append(corr_check(dt, NAMES, exact.corr[0, 1]))
    return checks


def test_known_noise_matches_closed_form():
    assert_all_within(known_noise_checks(known_noise_run()))


def test_normal_inverse_gamma_matches_closed_form():
    X, y = three_point_design()
    exact = conjugate.NormalInverseGamma(X, y, a0=3.0, b0=2.0)
    dt = random_walk(nig_logdensity(X, y, NAMES, a0=3.0, b0=2.0), draws=8000)
    marginals = {**dict(zip(NAMES, exact.marginals(), strict=True)), "sigma": exact.sigma()}
    checks = exact_checks(dt, marginals)
    checks.append(corr_check(dt, NAMES, exact.corr[0, 1]))
    assert_all_within(checks)


@pytest.fixture(scope="module")
def blog_run():
    return mh.blog_seed(draws=5000, tune=1000, seed=SEED)


def blog_checks(dt, grid) -> list:
    checks = exact_checks(dt, {"x": grid["x"], "sigma": grid["sigma"]})
    checks.append(corr_check(dt, ("x", "sigma"), grid["corr"]))
    return checks


def test_blog_posterior_matches_grid_integration(blog_run, blog_grid):
    assert_all_within(blog_checks(blog_run, blog_grid))
    assert blog_run.observed_data["y"].shape == (10,)


def test_blog_grid_is_converged(blog_grid):
    # the grid's own error is far below the Monte Carlo error (MCSE of the slope mean ~0.006)
    exact_slope_cond_sd = 5.0 / np.sqrt((datasets.blog_mh()["x"] ** 2).sum())
    assert 0.5 * exact_slope_cond_sd < blog_grid["x"].std() < 2 * exact_slope_cond_sd
    assert blog_grid["sigma"].ppf(0.999) < 30.0  # the sd grid (to 60) holds the whole mass


# --------------------------------------------------------------------------------------------
# failure injection: the checks above detect broken samplers
# --------------------------------------------------------------------------------------------
def test_dropping_the_log_jacobian_breaks_the_sigma_check(monkeypatch, blog_grid):
    original = mh.constrain

    def without_jacobian(u, positive):
        theta, log_jac = original(u, positive)
        return theta, np.zeros_like(log_jac)

    monkeypatch.setattr(mh, "constrain", without_jacobian)
    dt = mh.blog_seed(draws=5000, tune=1000, seed=SEED)
    sigma_checks = [c for c in blog_checks(dt, blog_grid) if c.parameter == "sigma"]
    assert max_abs_z(sigma_checks) > Z_MAX


def test_reversed_acceptance_breaks_the_checks(monkeypatch):
    # accepting when log u > log ratio favours moves downhill: the chains run off to |x| of
    # order 1e100, so the z's are huge or NaN (NaN counts as a failed check)
    monkeypatch.setattr(mh, "mh_accept", lambda log_ratio, log_u: log_u > log_ratio)
    with np.errstate(all="ignore"):
        assert max_abs_z(known_noise_checks(known_noise_run())) > Z_MAX


# --------------------------------------------------------------------------------------------
# adaptation
# --------------------------------------------------------------------------------------------
def gaussian_logdensity(cov, names):
    chol = np.linalg.cholesky(cov)

    def logdensity(v):
        x = np.stack([v[k] for k in names], axis=-1)
        z = np.linalg.solve(chol, x.T)
        return -0.5 * np.sum(z * z, axis=0)

    return logdensity


CORRELATED_2D = np.array([[100.0, 0.9 * 10 * 0.1], [0.9 * 10 * 0.1, 0.01]])  # sds 10, 0.1


# Band for the mean acceptance of the kept draws (4 chains x 2000): |mean - target| < 0.05.
# The frozen scale comes out of a stochastic approximation, so the chain's acceptance differs
# from the target by the leftover jitter of the scale plus the noise of a finite run. Over 20
# seeds not used here the pooled acceptance had sd 0.013 (d = 1), 0.012 (blog, d = 2) and 0.011
# (d = 6), with worst deviations 0.032, 0.025 and 0.026: 0.05 is about 4 sd.
ACCEPT_BAND = 0.05


@pytest.mark.parametrize(
    ("d", "target"),
    [(1, 0.44), (2, 0.44 - 0.206 / 4), (6, 0.234)],
)
def test_acceptance_after_warmup_is_near_target(d, target):
    names = [f"t{j}" for j in range(d)]
    rng = np.random.default_rng(SEED)
    A = rng.normal(size=(d, d))
    cov = A @ A.T + 0.5 * np.eye(d)
    dt = mh.random_walk_metropolis(gaussian_logdensity(cov, names), {k: "real" for k in names},
                                   draws=2000, tune=1000, seed=SEED)
    assert dt.posterior.attrs["target_accept"] == pytest.approx(target)
    assert abs(float(dt.sample_stats.accept_prob.mean()) - target) < ACCEPT_BAND
    # the Metropolis decision agrees with its probability on average (d proposals an iteration)
    assert dt.posterior.attrs["steps_per_draw"] == d
    accepted_fraction = float(dt.sample_stats.n_accepted.mean()) / d
    assert abs(accepted_fraction - float(dt.sample_stats.accept_prob.mean())) < 0.02


def test_blog_acceptance_is_near_target(blog_run):
    assert abs(float(blog_run.sample_stats.accept_prob.mean())
               - mh.target_acceptance(2)) < ACCEPT_BAND


def test_target_acceptance_interpolates():
    assert [mh.target_acceptance(d) for d in (1, 3, 5, 50)] == pytest.approx(
        [0.44, 0.337, 0.234, 0.234])


def identity_shapes(log_target, u):
    """Stand-in for :func:`mh.laplace_shape`: the uninformed initial shape S = I."""
    return np.broadcast_to(np.eye(u.shape[1]), (u.shape[0], u.shape[1], u.shape[1])).copy()


def test_proposal_adapts_during_warmup_only(monkeypatch):
    # the windows must learn the shape on their own: start from S = I, not the Laplace shape
    monkeypatch.setattr(mh, "laplace_shape", identity_shapes)
    names = ["a", "b"]
    kernel = mh.rwm_kernel(gaussian_logdensity(CORRELATED_2D, names), {"a": "real", "b": "real"})
    seen = []

    def recording_step(rng, state, params):
        seen.append(params)
        return kernel.step(rng, state, params)

    spy = sampling.Kernel(kernel.init, recording_step, kernel.positions, kernel.adapt_init,
                          kernel.adapt_update)
    tune = 1000
    out = sampling.run(spy, draws=300, tune=tune, chains=4, seed=SEED)
    warm, kept = seen[:tune], seen[tune:]
    # after warmup every step sees the very params object the last warmup update returned
    assert all(p is out.params for p in kept)
    np.testing.assert_array_equal(out.sample_stats["step_size"],
                                  np.broadcast_to(out.params.step_size[:, None], (4, 300)))
    # during warmup the scale and the shape moved
    assert len({float(p.step_size[0]) for p in warm}) > tune // 2
    assert not np.allclose(warm[0].chol, out.params.chol)
    # and the shape learned the target, from a start (identity) whose variances are off by
    # factors 100 and 1/100 and which has no correlation: relative variances within a factor
    # 1.5 and correlation within 0.1 of 0.9 in every chain (the last window's 450 draws,
    # regularized; on 5 other seeds the chains' ratios lay in 0.95-1.05 and their correlations
    # in 0.88-0.92)
    S = out.params.chol @ np.swapaxes(out.params.chol, -1, -2)
    ratio = np.diagonal(S, axis1=1, axis2=2) / np.diag(CORRELATED_2D)
    ratio /= ratio.mean(axis=1, keepdims=True)  # the overall scale belongs to the step size
    assert np.all((ratio > 1 / 1.5) & (ratio < 1.5))
    corr = S[:, 0, 1] / np.sqrt(S[:, 0, 0] * S[:, 1, 1])
    assert np.all(np.abs(corr - 0.9) < 0.1)


def test_no_tuning_keeps_initial_proposal():
    dt = mh.random_walk_metropolis(lambda v: -0.5 * v["a"] ** 2, {"a": "real"}, draws=20,
                                   tune=0, seed=SEED)
    np.testing.assert_allclose(dt.sample_stats.step_size, 2.38)


def test_warmup_schedule_follows_stan_windows():
    assert mh.warmup_schedule(1000) == mh.WarmupSchedule(
        ((75, 100), (100, 150), (150, 250), (250, 450), (450, 900)), 950)
    # too short for the defaults: 15% / 75% / 10%, one window
    assert mh.warmup_schedule(100) == mh.WarmupSchedule(((15, 90),), 95)
    # below 20 iterations: scale only, averaged over the last tenth
    assert mh.warmup_schedule(10) == mh.WarmupSchedule((), 9)
    for tune in (20, 150, 224, 225, 1000, 5000):
        windows = mh.warmup_schedule(tune).windows
        assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
        assert windows[0][0] > 0 and windows[-1][1] < tune


SHAPE_SD = np.array([10.0, 1.0, 0.1, 1.0, 1.0])
SHAPE_CORR = 0.5 * np.eye(5) + 0.5  # equicorrelated 0.5
SHAPE = SHAPE_CORR * np.outer(SHAPE_SD, SHAPE_SD)  # a target shape, sds 10 to 0.1


def collapsed_cov(rng, n=30):
    """A sample covariance of n draws that moved along only 2 of 5 directions (the old failure):
    draws z @ B with z ~ N(0, I_2) and B a fixed 2 x 5 matrix, plus noise of relative size 1e-5.
    """
    B = rng.normal(size=(2, 5)) * SHAPE_SD
    draws = rng.normal(size=(n, 2)) @ B + 1e-5 * SHAPE_SD * rng.normal(size=(n, 5))
    return np.cov(draws.T)


def corr_eigs(cov):
    sd = np.sqrt(np.diag(cov))
    return np.linalg.eigvalsh(cov / np.outer(sd, sd))


def test_regularization_repairs_a_collapsed_direction():
    rng = np.random.default_rng(SEED)
    n, d = 30, 5
    cov = collapsed_cov(rng, n)
    assert corr_eigs(cov)[:3].max() < 1e-8  # three directions lost
    # the old guard, cov + 1e-8 x mean variance x I, leaves them lost
    jittered = cov + 1e-8 * np.trace(cov) / d * np.eye(d)
    assert corr_eigs(jittered).min() < 1e-6
    # shrinkage toward the diagonal gives every correlation eigenvalue at least d / (n + d)
    fixed = mh.regularize_cov(cov, n)
    assert corr_eigs(fixed).min() >= d / (n + d) - 1e-12
    np.testing.assert_allclose(np.diag(fixed), np.diag(cov), rtol=1e-10)  # variances kept
    np.testing.assert_allclose(fixed, fixed.T)
    np.linalg.cholesky(fixed)
    # toward a target shape: the correlation is the weighted mix of the two, and the lost
    # directions take at least d / (n + d) of the target's smallest eigenvalue (0.5)
    w = d / (n + d)
    to_target = mh.regularize_cov(cov, n, target=SHAPE)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(to_target / np.outer(sd, sd),
                               (1 - w) * cov / np.outer(sd, sd) + w * SHAPE_CORR, rtol=1e-9)
    assert corr_eigs(to_target).min() >= w * 0.5 - 1e-12


def test_eigenvalue_floor_is_relative_to_the_largest():
    corr = np.array([[1.0, 1.0 - 1e-9], [1.0 - 1e-9, 1.0]])  # eigenvalues 2 and 1e-9
    fixed = mh.regularize_cov(corr, np.inf)  # no shrinkage: only the floor acts
    w = np.linalg.eigvalsh(fixed)
    assert w[0] == pytest.approx(mh.EIG_FLOOR * w[1], rel=1e-6)


def test_regularization_is_unit_free_and_light_on_good_estimates():
    rng = np.random.default_rng(SEED)
    cov = np.cov(rng.multivariate_normal(np.zeros(5), SHAPE, size=5000).T)
    # rescaling the parameters rescales the result: nothing depends on units, so a shape
    # whose eigenvalues are 1e13 apart only because of units is kept as it is
    D = np.diag([1e3, 1.0, 1e-3, 2.0, 0.5])
    np.testing.assert_allclose(mh.regularize_cov(D @ cov @ D, 5000),
                               D @ mh.regularize_cov(cov, 5000) @ D, rtol=1e-9)
    w = np.linalg.eigvalsh(D @ cov @ D)
    assert w[0] / w[-1] < 1e-9
    # 5000 distinct draws: correlations shrink by the factor 1 - 5/5005 only
    fixed = mh.regularize_cov(cov, 5000)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(fixed[off], cov[off] * (1 - 5 / 5005), rtol=1e-9)


@pytest.mark.parametrize(
    ("cov", "n", "match"),
    [
        (np.ones(3), 10, "square matrices"),
        (np.diag([1.0, 0.0]), 10, "positive variances"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), 10, "finite"),
        (np.eye(2), 0, "n .distinct draws. must be >= 1"),
    ],
)
def test_regularization_rejects_bad_input(cov, n, match):
    with pytest.raises(ValueError, match=match):
        mh.regularize_cov(cov, n)


def test_window_is_adopted_only_if_the_chain_moved():
    d, tune = 3, 200
    kernel = mh.rwm_kernel(gaussian_logdensity(np.eye(d), ["a", "b", "c"]),
                           {"a": "real", "b": "real", "c": "real"}, init={k: 0.0 for k in "abc"})
    state = kernel.init(sampling.ChainRNG(SEED, 2))
    p0 = p = kernel.adapt_init(state)
    start, end = mh.warmup_schedule(tune).windows[0]
    # chain 0 moves every iteration; chain 1 moves in only d of the window's iterations
    rng = np.random.default_rng(SEED)
    path0 = rng.normal(size=(end - start, d)) * [5.0, 1.0, 0.2]
    path1 = np.minimum(np.arange(end - start), d)[:, None] * np.ones(d)
    for i in range(end):
        k = max(i - start, 0)
        position = np.stack([path0[k], path1[k]])
        moved = np.array([d, int(start <= i < start + d)])
        info = mh.RWMInfo(np.full(2, 0.234), moved, np.zeros(2, int), p.step_size)
        p = kernel.adapt_update(p, mh.RWMState(position, np.zeros(2)), info, i, tune)
    assert p.installed.tolist() == [True, False]
    # chain 0 adopted its window's covariance, regularized toward its initial shape
    S0 = p0.chol[0] @ p0.chol[0].T
    expected = mh.regularize_cov(np.cov(path0.T), end - start, target=S0)
    np.testing.assert_allclose(p.chol[0] @ p.chol[0].T, expected, rtol=1e-9)
    # adoption restarts the scale at 2.38 / sqrt(d) (log scale 0, Robbins-Monro count 0)
    assert p.log_scale[0] == 0.0 and p.rm_count.tolist() == [0, end]
    # chain 1 (d moves: fewer than d + 1 distinct draws) kept its initial shape
    np.testing.assert_array_equal(p.chol[1], p0.chol[1])


def test_mode_search_and_laplace_shape_follow_each_chains_own_target():
    # two chains, two different Gaussian targets (row c belongs to chain c), badly scaled
    cov = np.array([[4e4, 0.99 * 200 * 0.02], [0.99 * 200 * 0.02, 4e-4]])  # sds 200, 0.02
    prec = np.linalg.inv(cov)
    means = np.array([[300.0, -0.5], [-50.0, 0.7]])

    def log_target(u):
        r = u - means
        return -0.5 * np.einsum("ci,ij,cj->c", r, prec, r)

    mode, laplace_cov, converged = mh.find_mode(log_target, np.zeros((2, 2)))
    assert converged.all()
    # predicted gain < 1e-3 nats: within 0.05 posterior sd of the mode
    assert np.all(np.abs(mode - means) < 0.05 * np.sqrt(np.diag(cov)))
    np.testing.assert_allclose(laplace_cov, np.stack([cov, cov]), rtol=1e-4)
    chol = mh.laplace_shape(log_target, mode)
    np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), np.stack([cov, cov]),
                               rtol=1e-4)


def test_laplace_shape_falls_back_to_identity():
    # chain 0 sits at a maximum; chain 1 where the curvature is upward (not a mode)
    def log_target(u):
        return np.where(np.arange(2) == 0, -0.5 * u[:, 0] ** 2, 0.5 * u[:, 0] ** 2)

    chol = mh.laplace_shape(log_target, np.zeros((2, 1)))
    np.testing.assert_allclose(chol[:, 0, 0], [1.0, 1.0], rtol=1e-6)
    chol = mh.laplace_shape(lambda u: -2.0 * u[:, 0] ** 2, np.zeros((2, 1)))
    np.testing.assert_allclose(chol[:, 0, 0], 0.5, rtol=1e-6)  # curvature 4: sd 1/2


def test_default_start_is_drawn_around_the_mode():
    # a correlated, badly scaled Gaussian centred far from the Uniform(-2, 2) starting box
    mean = np.array([1000.0, -5.0])
    prec = np.linalg.inv(CORRELATED_2D)

    def logdensity(v):
        r = np.stack([v["a"], v["b"]], axis=-1) - mean
        return -0.5 * np.einsum("ci,ij,cj->c", r, prec, r)

    kernel = mh.rwm_kernel(logdensity, {"a": "real", "b": "real"})
    state = kernel.init(sampling.ChainRNG(SEED, 4))
    # starts are N(mode, 2^2 cov): squared Mahalanobis distance / 4 ~ chi2(2), < 18.4 with
    # probability 1 - 1e-4 per chain
    r = state.position - mean
    assert np.all(np.einsum("ci,ij,cj->c", r, prec, r) / 4 < 18.4)
    assert len({tuple(u) for u in state.position}) == 4  # every chain its own start
    # and the initial shape is the Laplace covariance, which here is the target's
    S = kernel.adapt_init(state).chol @ np.swapaxes(kernel.adapt_init(state).chol, -1, -2)
    np.testing.assert_allclose(S, np.broadcast_to(CORRELATED_2D, (4, 2, 2)), rtol=1e-4)


def test_steps_per_iteration():
    ld = blog_logdensity()
    dt = mh.random_walk_metropolis(ld, draws=50, tune=50, seed=SEED, steps=1)
    assert dt.posterior.attrs["steps_per_draw"] == 1
    assert int(dt.sample_stats.n_accepted.max()) <= 1
    with pytest.raises(ValueError, match="steps must be >= 1"):
        mh.random_walk_metropolis(ld, draws=10, tune=10, steps=0)
    with pytest.raises(TypeError, match="steps must be an integer"):
        mh.random_walk_metropolis(ld, draws=10, tune=10, steps=1.5)


# --------------------------------------------------------------------------------------------
# mixing with the default settings on regressions of 5 and 14 parameters
# --------------------------------------------------------------------------------------------
# The verdict rule of comparisons.verdicts: R-hat <= 1.01 and bulk ESS >= 400 (Vehtari et al.
# 2021). Before the warmup fix the 5-d case gave R-hat 2.7 and bulk ESS 5 at this seed.
RHAT_MAX = 1.01
ESS_MIN = 400


def nig_synthetic():
    """``nig-synthetic``: 4 coefficients and sigma, Normal-Inverse-Gamma prior; closed form."""
    from comparisons.cases import get_case
    from models.reference_model import _arrays

    spec = get_case("nig-synthetic")
    a = _arrays(spec)
    X, y, names, m0, V0 = a["X"], a["y"], list(a["names"]), a["beta_mean"], a["beta_cov"]
    ld = nig_logdensity(X, y, names, prior_mean=m0, prior_cov=V0, a0=spec.sigma.alpha,
                        b0=spec.sigma.beta)
    exact = conjugate.NormalInverseGamma(X, y, m0, V0, spec.sigma.alpha, spec.sigma.beta)
    marginals = {**dict(zip(names, exact.marginals(), strict=True)), "sigma": exact.sigma()}
    i, j = 0, 1  # Intercept and x1, the most correlated pair (0.36)
    pair = ((names[i], names[j]), exact.corr[i, j])
    return ld, marginals, pair


def boston():
    """``boston``: 13 coefficients (Normal priors) and sigma (HalfNormal); quadrature."""
    from comparisons.cases import get_case
    from models.reference_model import _arrays, exact_answer

    spec = get_case("boston")
    a = _arrays(spec)
    ld = regression_logdensity(a["X"], a["y"], a["names"], a["coef_priors"], spec.sigma)
    exact = exact_answer(spec)
    marginals = {k: exact.marginal(k) for k in [*a["names"], "sigma"]}
    pair = ("tax", "rad")  # the most correlated pair (-0.79)
    return ld, marginals, (pair, exact.corr(*pair))


def mixing(dt, names) -> tuple[float, float]:
    """(largest R-hat, smallest bulk ESS) over the parameters."""
    import arviz_stats

    x = [dt.posterior[k].values for k in names]
    return (max(float(arviz_stats.rhat(v)) for v in x),
            min(float(arviz_stats.ess(v, method="bulk")) for v in x))


@pytest.fixture(scope="module", params=["nig-synthetic", "boston"])
def regression_case(request):
    """MH as the reference backend runs it (models.reference_model.MH_THIN: every 5th draw).
    Unthinned, the 14-d boston chains gave sd z-scores averaging -0.26 to -0.82 over three
    seeds (arviz's MCSE of a sd is too small on such chains, and the seed fixed here gave
    z = -4.0 on rm's sd); thinned by 5, 70 sd z-scores over five seeds had mean -0.01 and rms
    0.89, none beyond 3.5."""
    from models.reference_model import MH_THIN

    ld, marginals, pair = {"nig-synthetic": nig_synthetic, "boston": boston}[request.param]()
    dt = mh.random_walk_metropolis(ld, draws=1000, tune=1000, chains=4, seed=SEED,
                                   thin=MH_THIN)
    return dt, marginals, pair


def test_regression_cases_mix_with_default_settings(regression_case):
    dt, marginals, _ = regression_case
    rhat, ess = mixing(dt, marginals)
    assert rhat < RHAT_MAX and ess >= ESS_MIN, f"R-hat {rhat:.3f}, bulk ESS {ess:.0f}"


def test_regression_cases_match_the_exact_posterior(regression_case):
    dt, marginals, pair = regression_case
    assert_all_within(exact_checks(dt, marginals) + [corr_check(dt, *pair)])


def collapsing_regularization(cov, n, target=None):
    """Injected bug: keep only the window's leading direction (plus the old 1e-8 jitter), as
    the old warmup froze proposals with eigenvalue ratios of 1e-7 to 1e-9."""
    w, V = np.linalg.eigh(cov)
    top = w[..., -1:, None, None] * V[..., :, -1:] @ np.swapaxes(V[..., :, -1:], -1, -2)
    return top[..., 0, :, :] + 1e-8 * w[..., -1:, None] * np.eye(cov.shape[-1])


def test_mixing_check_fails_when_the_proposal_collapses(monkeypatch):
    monkeypatch.setattr(mh, "regularize_cov", collapsing_regularization)
    ld, marginals, _ = nig_synthetic()
    dt = mh.random_walk_metropolis(ld, draws=1000, tune=1000, chains=4, seed=SEED)
    rhat, ess = mixing(dt, marginals)
    assert not (rhat < RHAT_MAX and ess >= ESS_MIN)


# --------------------------------------------------------------------------------------------
# NaN, bad input, reproducibility
# --------------------------------------------------------------------------------------------
def nan_above_one(v):
    a = v["a"]
    return np.where(a <= 1.0, -0.5 * a**2, np.nan)


def test_nan_log_density_is_counted_and_rejected():
    dt = mh.random_walk_metropolis(nan_above_one, {"a": "real"}, draws=4000, tune=1000,
                                   seed=SEED, init={"a": 0.0})
    ss = dt.sample_stats
    assert int(ss.n_nan.sum()) > 100
    # d = 1: one proposal per iteration, so a NaN proposal in an iteration was not accepted
    assert int(ss.n_accepted.max()) == 1
    assert not bool(((ss.n_accepted == 1) & (ss.n_nan == 1)).any())
    assert float(dt.posterior["a"].max()) <= 1.0
    # NaN acts as -inf: the target is N(0, 1) truncated to a <= 1
    assert_all_within(check_against_exact("a", dt.posterior["a"].values,
                                          stats.truncnorm(-np.inf, 1.0)))


@pytest.mark.parametrize(
    ("logdensity", "params", "init", "error", "match"),
    [
        (nan_above_one, {"a": "real"}, {"a": 2.0}, ValueError, "not finite at the given init"),
        (lambda v: np.full(v["a"].shape, -np.inf), {"a": "real"}, None, ValueError,
         "every default initial point tried"),
        (lambda v: -v["s"], {"s": "positive"}, {"s": -1.0}, ValueError, "must be > 0"),
        (lambda v: -v["a"] ** 2, {"a": "real"}, {"b": 0.0}, ValueError, "exactly the keys"),
        (lambda v: -v["a"] ** 2, {"a": "real"}, {"a": [0.0, 1.0]}, ValueError, r"shape \(4,\)"),
        (lambda v: -v["a"] ** 2, {"a": "integer"}, None, ValueError, "allowed kinds"),
        (lambda v: -v["a"] ** 2, {}, None, TypeError, "non-empty dict"),
        (lambda v: 0.0, {"a": "real"}, None, ValueError, r"return an array of shape \(4,\)"),
        (lambda v: np.full(v["a"].shape, np.inf), {"a": "real"}, None, ValueError,
         r"returned \+inf"),
        ("not callable", {"a": "real"}, None, TypeError, "logdensity must be callable"),
    ],
)
def test_bad_input_is_rejected(logdensity, params, init, error, match):
    with pytest.raises(error, match=match):
        mh.random_walk_metropolis(logdensity, params, draws=10, tune=10, init=init)


def test_params_default_to_the_logdensity_attribute():
    with pytest.raises(TypeError, match="params is required"):
        mh.random_walk_metropolis(lambda v: -v["a"] ** 2, draws=10, tune=10)


def test_same_seed_same_draws_and_chains_are_independent_streams():
    ld = blog_logdensity()
    a = mh.random_walk_metropolis(ld, draws=100, tune=100, seed=SEED)
    b = mh.random_walk_metropolis(ld, draws=100, tune=100, seed=SEED)
    c = mh.random_walk_metropolis(ld, draws=100, tune=100, seed=SEED + 1)
    two = mh.random_walk_metropolis(ld, draws=100, tune=100, seed=SEED, chains=2)
    np.testing.assert_array_equal(a.posterior["x"], b.posterior["x"])
    assert not np.array_equal(a.posterior["x"].values, c.posterior["x"].values)
    # chain c depends only on its own stream and its own adaptation
    np.testing.assert_array_equal(a.posterior["sigma"].values[:2], two.posterior["sigma"].values)


def test_thinning_and_user_init():
    dt = mh.random_walk_metropolis(blog_logdensity(), draws=50, tune=50, thin=3, seed=SEED,
                                   init={"x": np.array([2.5, 3.0, 3.5, 2.0]), "sigma": 5.0})
    assert dict(dt.posterior.sizes) == {"chain": 4, "draw": 50}
    assert set(dt.sample_stats.data_vars) == {"accept_prob", "n_accepted", "n_nan", "step_size"}


# --------------------------------------------------------------------------------------------
# maximum likelihood
# --------------------------------------------------------------------------------------------
def closed_form_mle(X, y):
    beta = conjugate.ols(X, y)
    sigma = np.sqrt(np.sum((y - X @ beta) ** 2) / len(y))
    return beta, sigma, -0.5 * len(y) * (np.log(2 * np.pi * sigma**2) + 1)


def test_blog_mle_matches_least_squares():
    X, y = blog_design()
    beta, sigma, loglik = closed_form_mle(X, y)
    fit = blog_mle()
    assert fit.converged
    assert fit.estimates["x"] == pytest.approx(beta[0], rel=1e-6)
    assert fit.estimates["sigma"] == pytest.approx(sigma, rel=1e-6)
    assert fit.max_loglik == pytest.approx(loglik, rel=1e-10)


def test_mle_with_intercept_and_weights():
    X, y = three_point_design()
    beta, sigma, loglik = closed_form_mle(X, y)
    fit = regression_mle(X, y, NAMES)
    np.testing.assert_allclose([fit.estimates[k] for k in NAMES], beta, rtol=1e-6)
    assert fit.estimates["sigma"] == pytest.approx(sigma, rel=1e-6)
    assert fit.max_loglik == pytest.approx(loglik, rel=1e-10)
    # known relative row scales: weighted least squares
    s = np.array([1.0, 2.0, 0.5])
    wfit = regression_mle(X, y, NAMES, noise_sd=s)
    wbeta, *_ = np.linalg.lstsq(X / s[:, None], y / s, rcond=None)
    np.testing.assert_allclose([wfit.estimates[k] for k in NAMES], wbeta, rtol=1e-6)


def test_mle_rejects_bad_start():
    X, y = blog_design()
    with pytest.raises(ValueError, match="x0 must be 2 finite numbers"):
        regression_mle(X, y, ["x"], x0=[1.0, -1.0])
