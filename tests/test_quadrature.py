"""The quadrature gold standard for (hierarchical) Gaussian regression.

Every check compares with something computed independently of ``reference.quadrature``:

* closed forms from ``reference.conjugate`` when no scale is free (to 1e-8);
* ``scipy.integrate.quad`` over the single free scale, with the conditional posterior from
  ``GaussianKnownNoise`` (a different parameterization, p-space algebra) and, for eight schools,
  the marginal ``y ~ N(0, diag(s^2 + tau^2) + v 11')`` written out directly;
* simple importance sampling from the prior of the scales with the Gaussian evidence computed in
  the n-dimensional data space, within its own Monte Carlo error (|z| < 3.5);
* for block elimination (one grouping factor), the dense factorization, to 1e-10, besides the
  closed forms above.

Each family of checks has a companion test that injects a bug (monkeypatch) and shows the check
fails.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import integrate, linalg, special, stats

import reference.quadrature as quadrature
from reference import datasets
from reference.conjugate import GaussianKnownNoise
from reference.design import GroupTerm
from reference.priors import (
    Constant,
    Flat,
    HalfCauchy,
    HalfNormal,
    InverseGamma,
    Normal,
    Uniform,
)
from reference.quadrature import ScaleQuadrature

SEED = 20261121
Z_MAX = 3.5
EIGHT_Y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
EIGHT_SD = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])


# --------------------------------------------------------------------------------------------
# Data and independent references
# --------------------------------------------------------------------------------------------
def _tutorial(n=40):
    d = datasets.tutorial(size=n)
    return np.column_stack([np.ones(n), d["x"]]), d["y"]


def _hierarchical():
    d = datasets.hierarchical_synthetic()
    levels, codes = np.unique(d["g"], return_inverse=True)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    group = GroupTerm("1|g", np.ones_like(d["x"]), codes, tuple(levels))
    return X, d["y"], group


def _eight_schools(prior):
    school = GroupTerm("1|school", np.ones(8), np.arange(8), tuple(f"s{j}" for j in range(8)))
    return ScaleQuadrature(np.ones((8, 1)), EIGHT_Y, [school], names=["Intercept"],
                           beta_mean=0.0, beta_cov=25.0, tau_priors={"1|school": prior},
                           sigma=1.0, weights=1 / EIGHT_SD**2)


class OneScaleReference:
    """Posterior over one scale by adaptive quadrature (``scipy.integrate.quad`` / ``quad_vec``).

    ``conditional(phi)`` returns ``(log p(y | phi), mean, cov)`` of theta given the scale.
    """

    def __init__(self, conditional, prior, upper, breaks=()):
        self._cache = {}
        self.cond_fn, self.prior, self.upper, self.breaks = conditional, prior, upper, breaks
        self.shift = max(conditional(b)[0] + float(prior.logpdf(b)) for b in breaks)
        self.Z = self._int(lambda s: 1.0)

    def cond(self, s):
        if s not in self._cache:
            self._cache[s] = self.cond_fn(s)
        return self._cache[s]

    def density(self, s):
        return np.exp(self.cond(s)[0] + float(self.prior.logpdf(s)) - self.shift)

    def _int(self, g, upper=None):
        top = self.upper if upper is None else upper
        edges = [0.0, *[b for b in self.breaks if b < top], top]
        total = 0.0
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            total = total + integrate.quad_vec(lambda s: self.density(s) * np.asarray(g(s)),
                                               lo, hi, epsabs=0, epsrel=1e-12, limit=400)[0]
        return total

    def log_evidence(self):
        return float(np.log(self.Z) + self.shift)

    def expect(self, g):
        """E[g(phi) | y] for a scalar or vector function g."""
        return self._int(g) / self.Z

    def scale_cdf(self, x):
        return self._int(lambda s: 1.0, upper=x) / self.Z

    def theta_cdf(self, j, x):
        return self.expect(lambda s: stats.norm.cdf(x, self.cond(s)[1][j],
                                                    np.sqrt(self.cond(s)[2][j, j])))


# --------------------------------------------------------------------------------------------
# 1. Exactness when no scale is free
# --------------------------------------------------------------------------------------------
V_FULL = np.array([[4.0, 1.0], [1.0, 2.0]])


def _known_sigma_pair(weights=None):
    X, y = _tutorial()
    w = np.ones(len(y)) if weights is None else weights
    quad = ScaleQuadrature(X, y, names=["Intercept", "x"], beta_mean=[0.5, -1.0],
                           beta_cov=V_FULL, sigma=0.7, weights=weights)
    # rows rescaled by sqrt(w): unit weights, noise variance sigma^2; the evidence of the
    # original data differs by the Jacobian 1/2 sum log w
    r = np.sqrt(w)
    exact = GaussianKnownNoise(X * r[:, None], y * r, 0.49, [0.5, -1.0], V_FULL)
    return quad, exact, 0.5 * np.log(w).sum()


def _assert_matches_gaussian(quad, exact, names, log_jac=0.0, tol=1e-8):
    assert quad.log_evidence() == pytest.approx(exact.log_evidence() + log_jac, abs=tol)
    for j, name in enumerate(names):
        m = quad.marginal(name)
        assert m.mean() == pytest.approx(exact.mean[j], abs=tol * exact.sd[j])
        assert m.std() == pytest.approx(exact.sd[j], rel=tol)
        for q in (0.05, 0.95):
            target = stats.norm.ppf(q, exact.mean[j], exact.sd[j])
            assert m.ppf(q) == pytest.approx(target, abs=tol * exact.sd[j])
    for a in range(len(names)):
        for b in range(a + 1, min(len(names), a + 3)):
            assert quad.corr(names[a], names[b]) == pytest.approx(exact.corr[a, b], abs=tol)
            assert quad.cov(names[a], names[b]) == pytest.approx(exact.cov[a, b],
                                                                abs=tol * exact.sd[a] * exact.sd[b])


def test_known_sigma_without_groups_is_gaussian_known_noise():
    quad, exact, _ = _known_sigma_pair()
    assert quad.scale_names == [] and quad.fixed_scales == {"sigma": 0.7}
    assert quad.error["log_evidence"] == 0.0 and quad.converged
    _assert_matches_gaussian(quad, exact, ["Intercept", "x"])


def test_known_sigma_with_row_weights_is_gaussian_known_noise():
    w = np.random.default_rng(SEED).uniform(0.3, 3.0, 40)
    quad, exact, log_jac = _known_sigma_pair(w)
    _assert_matches_gaussian(quad, exact, ["Intercept", "x"], log_jac)


def test_exactness_check_catches_a_dropped_weight_term(monkeypatch):
    """Bug: forget the 1/2 sum log w of the row weights in the evidence."""
    original = quadrature._build_conditional

    def buggy(*args):
        c = original(*args)
        return c.__class__(**{**c.__dict__, "const": -0.5 * c.n * quadrature.LOG_2PI})

    monkeypatch.setattr(quadrature, "_build_conditional", buggy)
    w = np.random.default_rng(SEED).uniform(0.3, 3.0, 40)
    quad, exact, log_jac = _known_sigma_pair(w)
    with pytest.raises(AssertionError):
        _assert_matches_gaussian(quad, exact, ["Intercept", "x"], log_jac)


def test_exactness_check_catches_a_transposed_covariance_factor(monkeypatch):
    """Bug (the numpyro one of STYLE.md 3): covariance from L^-1 instead of L^-T."""
    def buggy(c, s, Linv):
        R = s[:, :, None] * Linv
        R[:, :c.p, :] = np.einsum("ij,gjk->gik", c.LV, R[:, :c.p, :])
        return R

    monkeypatch.setattr(quadrature, "_cov_factor", buggy)
    quad, exact, _ = _known_sigma_pair()
    with pytest.raises(AssertionError):
        _assert_matches_gaussian(quad, exact, ["Intercept", "x"])


def _fixed_tau_pair(tau=0.7, sigma=1.0, fast=True):
    X, y, g = _hierarchical()
    V = np.array([[9.0, 0.5], [0.5, 4.0]])
    quad = ScaleQuadrature(X, y, [g], names=["Intercept", "x"], beta_mean=[0.3, 0.0],
                           beta_cov=V, tau_priors={"1|g": Constant(tau)}, sigma=sigma, fast=fast)
    W = np.column_stack([X, g.matrix().toarray()])
    cov = linalg.block_diag(V, tau**2 * np.eye(g.n_levels))
    exact = GaussianKnownNoise(W, y, sigma**2, np.r_[0.3, 0.0, np.zeros(g.n_levels)], cov)
    names = ["Intercept", "x"] + [f"1|g[{lab}]" for lab in g.levels]
    return quad, exact, names


def _fixed_taus_two_terms(fast=True):
    """Varying intercepts and slopes with fixed taus, one level without rows (block path k = 2)."""
    X, y, g = _hierarchical()
    levels = (*g.levels, "g_empty")
    terms = [GroupTerm("1|g", np.ones(len(y)), g.codes, levels),
             GroupTerm("x|g", X[:, 1], g.codes, levels)]
    taus, V = (0.7, 0.4), np.array([[9.0, 0.5], [0.5, 4.0]])
    quad = ScaleQuadrature(X, y, terms, names=["Intercept", "x"], beta_mean=[0.3, 0.0],
                           beta_cov=V, tau_priors={"1|g": Constant(taus[0]),
                                                   "x|g": Constant(taus[1])},
                           sigma=0.9, fast=fast)
    W = np.column_stack([X] + [t.matrix().toarray() for t in terms])
    prior_var = np.concatenate([np.full(len(levels), tau**2) for tau in taus])
    exact = GaussianKnownNoise(W, y, 0.81, np.r_[0.3, 0.0, np.zeros(2 * len(levels))],
                               linalg.block_diag(V, np.diag(prior_var)))
    names = ["Intercept", "x"] + [f"{t.name}[{lab}]" for t in terms for lab in levels]
    return quad, exact, names


@pytest.mark.parametrize("fast", [True, False], ids=["block", "dense"])
def test_fixed_tau_is_gaussian_known_noise_on_the_augmented_design(fast):
    quad, exact, names = _fixed_tau_pair(fast=fast)
    assert quad.method == ("block" if fast else "dense")
    assert quad.scale_names == [] and set(quad.fixed_scales) == {"1|g_sigma", "sigma"}
    _assert_matches_gaussian(quad, exact, names)
    # level by label, by index and by "term[label]" agree
    assert quad.marginal("1|g", 3).mean() == quad.marginal("1|g", "g3").mean() \
        == quad.marginal("1|g[g3]").mean()


@pytest.mark.parametrize("fast", [True, False], ids=["block", "dense"])
def test_fixed_taus_of_two_terms_are_gaussian_known_noise(fast):
    """Intercept and slope effects per level (k = 2 blocks) and a level without rows."""
    quad, exact, names = _fixed_taus_two_terms(fast)
    assert quad.method == ("block" if fast else "dense")
    _assert_matches_gaussian(quad, exact, names)
    # the empty level keeps its prior: mean 0, sd tau
    assert quad.marginal("x|g[g_empty]").std() == pytest.approx(0.4, rel=1e-12)
    # covariances within a level (intercept with slope), across levels and with a coefficient
    for a, b in [("1|g[g3]", "x|g[g3]"), ("1|g[g3]", "x|g[g5]"), ("x", "x|g[g2]")]:
        i, j = names.index(a), names.index(b)
        assert quad.cov(a, b) == pytest.approx(exact.cov[i, j],
                                               abs=1e-8 * exact.sd[i] * exact.sd[j])


def test_fixed_tau_check_catches_a_wrong_level_scale_dense(monkeypatch):
    """Bug: group effects scaled by tau^2 instead of tau (dense factorization)."""
    original = quadrature._fill_precision

    def buggy(c, tau, sigma, out):
        return original(c, tau**2, sigma, out)

    monkeypatch.setattr(quadrature, "_fill_precision", buggy)
    quad, exact, names = _fixed_tau_pair(fast=False)
    with pytest.raises(AssertionError):
        _assert_matches_gaussian(quad, exact, names)


def test_fixed_tau_check_catches_a_wrong_level_scale_block(monkeypatch):
    """Bug: group effects scaled by tau^2 instead of tau (block elimination)."""
    original = quadrature._block_conditional_batch

    def buggy(c, tau, sigma, moments):
        return original(c, tau**2, sigma, moments)

    monkeypatch.setattr(quadrature, "_block_conditional_batch", buggy)
    quad, exact, names = _fixed_tau_pair(fast=True)
    with pytest.raises(AssertionError):
        _assert_matches_gaussian(quad, exact, names)


def test_exactness_check_catches_transposed_level_inverses(monkeypatch):
    """Bug (STYLE.md 3 again, in blocks): the level parts of L^-1 taken as E_j' for E_j."""
    original = quadrature._block_inverse_columns

    def buggy(f):
        LS_inv, E, M = original(f)
        return LS_inv, np.swapaxes(E, 0, 1), M

    monkeypatch.setattr(quadrature, "_block_inverse_columns", buggy)
    quad, exact, names = _fixed_taus_two_terms(fast=True)
    with pytest.raises(AssertionError):
        _assert_matches_gaussian(quad, exact, names)


# --------------------------------------------------------------------------------------------
# 2. One free scale against scipy.integrate.quad
# --------------------------------------------------------------------------------------------
SIGMA_PRIOR = HalfCauchy(1.0)


def _unknown_sigma_case(prior=SIGMA_PRIOR, **kw):
    X, y = _tutorial()
    quad = ScaleQuadrature(X, y, names=["Intercept", "x"], beta_mean=0.0, beta_cov=[25.0, 4.0],
                           sigma_prior=prior, **kw)

    def conditional(s):
        g = GaussianKnownNoise(X, y, s * s, 0.0, [25.0, 4.0])
        return g.log_evidence(), g.mean, g.cov

    return quad, OneScaleReference(conditional, prior, upper=5.0, breaks=(0.3, 0.5, 0.8))


@pytest.fixture(scope="module")
def unknown_sigma():
    return _unknown_sigma_case()


def _assert_one_scale(quad, ref, scale, thetas, rtol=1e-6):
    """Evidence, moments and quantiles of the scale and of coefficients, against quad.

    A quantile x_q is checked through the reference CDF: F(x_q) - q is about f(x_q) (x_q - x*),
    and f * sd < 1 for these unimodal marginals, so |F(x_q) - q| < rtol means well under rtol sds.
    """
    assert quad.log_evidence() == pytest.approx(ref.log_evidence(), abs=rtol)
    m = quad.marginal(scale)
    mean, second = ref.expect(lambda s: [s, s * s])
    sd = np.sqrt(second - mean**2)
    assert m.mean() == pytest.approx(mean, abs=rtol * sd)
    assert m.std() == pytest.approx(sd, rel=rtol)
    for q in (0.05, 0.5, 0.95):
        assert ref.scale_cdf(float(m.ppf(q))) == pytest.approx(q, abs=rtol)
    for j, name in thetas:
        t = quad.marginal(name)
        mu, second = ref.expect(lambda s, j=j: [ref.cond(s)[1][j],
                                                ref.cond(s)[2][j, j] + ref.cond(s)[1][j] ** 2])
        sd_t = np.sqrt(second - mu**2)
        assert t.mean() == pytest.approx(mu, abs=rtol * sd_t)
        assert t.std() == pytest.approx(sd_t, rel=rtol)
        for q in (0.05, 0.95):
            assert ref.theta_cdf(j, t.ppf(q)) == pytest.approx(q, abs=rtol)


def _reference_cov(ref, i, j):
    """Cov(theta_i, theta_j) = E[Cov | phi] + Cov(E[theta_i | phi], E[theta_j | phi])."""
    c = ref.cond
    e_ij, m_i, m_j = ref.expect(lambda s: [c(s)[2][i, j] + c(s)[1][i] * c(s)[1][j],
                                           c(s)[1][i], c(s)[1][j]])
    return e_ij - m_i * m_j


def test_unknown_sigma_matches_one_dimensional_quad(unknown_sigma):
    quad, ref = unknown_sigma
    assert quad.scale_names == ["sigma"] and quad.converged
    assert max(quad.error.values()) < 1e-3
    _assert_one_scale(quad, ref, "sigma", [(0, "Intercept"), (1, "x")])
    cov = _reference_cov(ref, 0, 1)
    assert quad.cov("Intercept", "x") == pytest.approx(cov, rel=1e-6)
    sd0, sd1 = quad.marginal("Intercept").std(), quad.marginal("x").std()
    assert quad.corr("Intercept", "x") == pytest.approx(cov / (sd0 * sd1), abs=1e-6)


@pytest.mark.parametrize("prior", [HalfNormal(1.0), InverseGamma(2.0, 0.5, on="sigma2"),
                                   Uniform(0.0, 2.0)], ids=str)
def test_other_sigma_priors_match_quad(prior):
    """Half-normal, inverse-gamma on sigma^2 and the bounded (logit-mapped) uniform."""
    quad, ref = _unknown_sigma_case(prior)
    ref.upper = 2.0 if isinstance(prior, Uniform) else ref.upper
    _assert_one_scale(quad, ref, "sigma", [(1, "x")])


def test_one_scale_check_catches_a_missing_jacobian(monkeypatch):
    """Bug: integrate over log sigma without the Jacobian d sigma / d log sigma."""
    original = quadrature._AxisMap.log_jacobian

    def buggy(self, z):
        return original(self, z) - self.eta(z)

    monkeypatch.setattr(quadrature._AxisMap, "log_jacobian", buggy)
    quad, ref = _unknown_sigma_case()
    with pytest.raises(AssertionError):
        _assert_one_scale(quad, ref, "sigma", [(1, "x")])


# --------------------------------------------------------------------------------------------
# 3. Eight schools: heavy-tailed HalfCauchy prior, mass near tau = 0
# --------------------------------------------------------------------------------------------
def _eight_schools_reference(prior, upper=np.inf):
    """Marginal y ~ N(0, diag(s^2 + tau^2) + 25 11'), and theta | tau via GaussianKnownNoise."""
    W = np.column_stack([np.ones(8), np.eye(8)])

    def conditional(tau):
        g = GaussianKnownNoise(W / EIGHT_SD[:, None], EIGHT_Y / EIGHT_SD, 1.0, 0.0,
                               np.r_[25.0, np.full(8, tau * tau)])
        log_ml = stats.multivariate_normal(np.zeros(8), np.diag(EIGHT_SD**2 + tau**2) + 25.0
                                           ).logpdf(EIGHT_Y)
        return log_ml, g.mean, g.cov

    return OneScaleReference(conditional, prior, upper=upper, breaks=(0.5, 3.0, 10.0, 40.0))


@pytest.fixture(scope="module")
def eight_schools():
    prior = HalfCauchy(5.0)
    return _eight_schools(prior), _eight_schools_reference(prior)


def test_eight_schools_matches_quad_over_tau(eight_schools):
    quad, ref = eight_schools
    _assert_one_scale(quad, ref, "1|school_sigma", [(0, "Intercept"), (1, "1|school[s0]")])
    assert quad.cov("Intercept", "1|school[s0]") == pytest.approx(_reference_cov(ref, 0, 1),
                                                                  rel=1e-6)


def test_eight_schools_grid_reaches_tau_near_zero(eight_schools):
    """The posterior of tau has a long tail towards 0: the CDF at tiny tau must be right."""
    quad, ref = eight_schools
    tau = quad.marginal("1|school_sigma")
    for x in (1e-3, 1e-2, 0.1):
        assert tau.cdf(x) == pytest.approx(ref.scale_cdf(x), rel=1e-6, abs=1e-12)
    assert tau.cdf(1e-3) > 1e-5  # the tail does carry mass
    # the density of the scale itself, from the sinc series, against the quad density
    for x in (0.05, 2.0, 15.0):
        assert tau.pdf(x) == pytest.approx(ref.density(x) / ref.Z, rel=1e-5)


def test_eight_schools_uniform_prior_on_tau():
    prior = Uniform(0.0, 30.0)
    _assert_one_scale(_eight_schools(prior), _eight_schools_reference(prior, upper=30.0),
                      "1|school_sigma", [(0, "Intercept")])


def test_tail_check_catches_a_grid_cut_at_tau_one(monkeypatch):
    """Bug: a box that stops searching before reaching the tail towards tau = 0."""
    original = quadrature.ScaleQuadrature._box

    def buggy(self, maps):
        z, lp = original(self, maps)
        keep = maps[0].eta(z[0]) > -1.0  # tau > e^-1 only
        return [z[0][keep]], lp[keep]

    monkeypatch.setattr(quadrature.ScaleQuadrature, "_box", buggy)
    prior = HalfCauchy(5.0)
    quad = _eight_schools(prior)
    ref = _eight_schools_reference(prior)
    with pytest.raises(AssertionError):
        _assert_one_scale(quad, ref, "1|school_sigma", [(0, "Intercept")])


# --------------------------------------------------------------------------------------------
# 4. Two free scales against importance sampling from the prior
# --------------------------------------------------------------------------------------------
TAU_PRIOR, NOISE_PRIOR = HalfNormal(1.0), HalfNormal(2.0)
N_IS = 10_000


def _hier_quad(**kw):
    X, y, g = _hierarchical()
    return ScaleQuadrature(X, y, [g], names=["Intercept", "x"], beta_mean=0.0, beta_cov=25.0,
                           tau_priors={"1|g": TAU_PRIOR}, sigma_prior=NOISE_PRIOR, **kw)


def importance_draws(X, y, groups, tau_priors, sigma_prior, beta_var, size, seed):
    """Scales drawn from their prior, each with log p(y | phi) and theta | y, phi in n-space.

    Independent of the quadrature's algebra: the evidence is the density of
    y ~ N(0, sigma^2 I + W V0 W') through a Cholesky factor of that (n, n) matrix, and
    E[theta | phi] = V0 W' S^-1 y, Var = V0 - V0 W' S^-1 W V0.
    """
    rng = np.random.default_rng(seed)
    scales = {f"{g.name}_sigma": tau_priors[g.name].rvs(rng, size) for g in groups}
    scales["sigma"] = sigma_prior.rvs(rng, size)
    W = np.column_stack([X] + [g.matrix().toarray() for g in groups])
    n, d = W.shape
    p = X.shape[1]
    loglik, mean, var = np.empty(size), np.empty((size, d)), np.empty((size, d))
    cross = np.empty(size)  # E[theta_0 theta_1 | phi]
    for a in range(0, size, 500):
        sl = slice(a, a + 500)
        G = len(scales["sigma"][sl])
        prior_var = np.concatenate(
            [np.full((G, p), beta_var)]
            + [np.repeat(scales[f"{g.name}_sigma"][sl, None] ** 2, g.n_levels, axis=1)
               for g in groups], axis=1)
        WV = W[None] * prior_var[:, None, :]                       # W V0, (G, n, d)
        S = WV @ W.T + scales["sigma"][sl, None, None] ** 2 * np.eye(n)
        L = np.linalg.cholesky(S)
        rhs = np.concatenate([np.broadcast_to(y[:, None], (G, n, 1)), WV], axis=2)
        sol = np.linalg.solve(L, rhs)                              # L^-1 [y, W V0]
        alpha, B = sol[:, :, 0], sol[:, :, 1:]
        loglik[sl] = (-0.5 * n * np.log(2 * np.pi) - np.log(np.diagonal(L, 0, 1, 2)).sum(1)
                      - 0.5 * (alpha**2).sum(1))
        mean[sl] = np.einsum("gnd,gn->gd", B, alpha)
        var[sl] = prior_var - (B**2).sum(1)
        cross[sl] = -np.einsum("gn,gn->g", B[:, :, 0], B[:, :, 1]) + mean[sl, 0] * mean[sl, 1]
    return {"scales": scales, "loglik": loglik, "mean": mean, "var": var, "cross": cross}


@pytest.fixture(scope="module")
def prior_draws():
    X, y, g = _hierarchical()
    return importance_draws(X, y, [g], {"1|g": TAU_PRIOR}, NOISE_PRIOR, 25.0, N_IS, SEED)


def _is_z_scores(quad, draws, thetas=((0, "Intercept"), (1, "x"), (2, "1|g[g0]"),
                                      (9, "1|g[g7]"))) -> dict:
    """z = (IS estimate - quadrature) / IS standard error, for evidence, moments, quantiles.

    Means of the scales and of theta (Rao-Blackwellized over theta | phi), second moments,
    the probabilities below the quadrature's 5% and 95% quantiles, and E[theta_0 theta_1].
    """
    lw = draws["loglik"]
    w = np.exp(lw - lw.max())
    ess = w.sum() ** 2 / (w**2).sum()
    assert ess > 300, f"importance sampling too weak to test anything (ESS {ess:.0f})"
    z = {}
    # evidence: mean of the likelihood over prior draws
    Z_hat, Z_se = w.mean(), w.std(ddof=1) / np.sqrt(len(w))
    z["evidence"] = (Z_hat - np.exp(quad.log_evidence() - lw.max())) / Z_se

    def ratio(name, f, target):
        est = w @ f / w.sum()
        se = np.sqrt(np.sum(w**2 * (f - est) ** 2)) / w.sum()  # delta method
        z[name] = (est - target) / se

    for scale, x in draws["scales"].items():
        m = quad.marginal(scale)
        ratio(f"E[{scale}]", x, m.mean())
        ratio(f"E[{scale}^2]", x**2, m.std() ** 2 + m.mean() ** 2)
        for q in (0.05, 0.95):
            ratio(f"P({scale} < q{q})", (x < m.ppf(q)).astype(float), q)
    for j, name in thetas:
        m = quad.marginal(name)
        mu, v = draws["mean"][:, j], draws["var"][:, j]
        ratio(f"E[{name}]", mu, m.mean())
        ratio(f"E[{name}^2]", v + mu**2, m.std() ** 2 + m.mean() ** 2)
        for q in (0.05, 0.95):
            ratio(f"P({name} < q{q})", special.ndtr((m.ppf(q) - mu) / np.sqrt(v)), q)
    a, b = quad.names[:2]
    ratio(f"E[{a} * {b}]", draws["cross"],
          quad.cov(a, b) + quad.marginal(a).mean() * quad.marginal(b).mean())
    return z


@pytest.fixture(scope="module")
def hierarchical():
    return _hier_quad()


@pytest.mark.parametrize("fast", [True, False], ids=["block", "dense"])
def test_two_scales_agree_with_prior_importance_sampling(hierarchical, prior_draws, fast):
    quad = hierarchical if fast else _hier_quad(fast=False)
    assert quad.method == ("block" if fast else "dense")
    assert quad.scale_names == ["1|g_sigma", "sigma"] and quad.converged
    z = _is_z_scores(quad, prior_draws)
    worst = max(z, key=lambda k: abs(z[k]))
    assert abs(z[worst]) < Z_MAX, f"{worst}: z = {z[worst]:.2f}"


def test_importance_sampling_check_catches_a_doubled_jacobian(prior_draws, monkeypatch):
    """Bug: the Jacobian of the log map counted twice (a missing one makes tau improper)."""
    original = quadrature._AxisMap.log_jacobian
    monkeypatch.setattr(quadrature._AxisMap, "log_jacobian",
                        lambda self, z: original(self, z) + self.eta(z))
    z = _is_z_scores(_hier_quad(), prior_draws)
    assert max(abs(v) for v in z.values()) > Z_MAX


def test_importance_sampling_check_catches_an_overdispersed_conditional(prior_draws, monkeypatch):
    """Bug: conditional variances of theta 5% too large (the mixture sd, quantiles move)."""
    original = quadrature._conditional_batch

    def buggy(c, tau, sigma, moments):
        out = original(c, tau, sigma, moments)
        return (out[0], out[1], 1.05 * out[2]) if moments else out

    monkeypatch.setattr(quadrature, "_conditional_batch", buggy)
    z = _is_z_scores(_hier_quad(), prior_draws)
    assert max(abs(v) for v in z.values()) > Z_MAX


def test_grid_error_estimate_is_honest(hierarchical):
    """A much finer answer moves by less than the error the coarse grid reports."""
    coarse, fine = _hier_quad(rtol=1e-3), hierarchical
    _assert_within_reported_error(coarse, fine)
    assert fine.grid_shape != coarse.grid_shape


def _assert_within_reported_error(coarse, fine):
    err = coarse.error
    assert abs(coarse.log_evidence() - fine.log_evidence()) <= err["log_evidence"]
    for name in ["Intercept", "x", "1|g[g0]", "1|g_sigma", "sigma"]:
        c, f = coarse.marginal(name), fine.marginal(name)
        assert abs(c.mean() - f.mean()) <= err["mean"] * f.std()
        assert abs(c.std() - f.std()) <= err["sd"] * f.std()
    for name in ["1|g_sigma", "sigma"]:
        c, f = coarse.marginal(name), fine.marginal(name)
        assert np.all(np.abs(c.ppf([0.05, 0.95]) - f.ppf([0.05, 0.95]))
                      <= err["quantile"] * f.std())


def test_honesty_check_catches_an_error_estimate_that_lies(hierarchical, monkeypatch):
    """Bug: an error estimate a thousand times too small."""
    original = quadrature._differences
    def lying(fine, coarse):
        return {k: v / 1000 for k, v in original(fine, coarse).items()}

    monkeypatch.setattr(quadrature, "_differences", lying)
    with pytest.raises(AssertionError):
        _assert_within_reported_error(_hier_quad(rtol=1e-3), hierarchical)


def test_summary_lists_every_parameter(hierarchical):
    s = hierarchical.summary()
    assert list(s) == ["Intercept", "x"] + [f"1|g[g{j}]" for j in range(8)] + ["1|g_sigma",
                                                                                 "sigma"]
    for name, row in s.items():
        assert set(row) == {"mean", "sd", "q05", "q95"}
        assert row["q05"] < row["mean"] < row["q95"] and row["sd"] > 0, name


def _three_scale_case():
    """Varying intercepts and slopes, 6 groups of 8: three free scales (1|s, x|s, sigma)."""
    rng = np.random.default_rng(SEED)
    J, per = 6, 8
    codes = np.repeat(np.arange(J), per)
    x = np.tile(np.arange(per, dtype=float), J)
    y = (1.0 + 0.5 * x + rng.normal(0, 0.8, J)[codes] + rng.normal(0, 0.2, J)[codes] * x
         + rng.normal(0, 1.0, J * per))
    levels = tuple(f"s{j}" for j in range(J))
    groups = [GroupTerm("1|s", np.ones_like(x), codes, levels), GroupTerm("x|s", x, codes, levels)]
    priors = {"1|s": HalfNormal(2.0), "x|s": HalfNormal(1.0)}
    return np.column_stack([np.ones_like(x), x]), y, groups, priors, HalfNormal(2.0)


def _three_scale_quad(rtol):
    X, y, groups, priors, sigma_prior = _three_scale_case()
    return ScaleQuadrature(X, y, groups, names=["Intercept", "x"], beta_mean=0.0,
                           beta_cov=100.0, tau_priors=priors, sigma_prior=sigma_prior, rtol=rtol)


def test_three_scales_varying_intercept_and_slope():
    """Three free scales run, converge and give a coherent summary."""
    quad = _three_scale_quad(rtol=1e-3)
    assert quad.scale_names == ["1|s_sigma", "x|s_sigma", "sigma"] and quad.converged
    s = quad.summary()
    assert len(s) == 2 + 2 * 6 + 3
    assert all(row["q05"] < row["q95"] for row in s.values())


@pytest.mark.slow
def test_three_scales_agree_with_prior_importance_sampling():
    X, y, groups, priors, sigma_prior = _three_scale_case()
    draws = importance_draws(X, y, groups, priors, sigma_prior, 100.0, 400_000, SEED)
    z = _is_z_scores(_three_scale_quad(rtol=1e-6), draws,
                     thetas=((0, "Intercept"), (1, "x"), (2, "1|s[s0]"), (8, "x|s[s0]")))
    worst = max(z, key=lambda k: abs(z[k]))
    assert abs(z[worst]) < Z_MAX, f"{worst}: z = {z[worst]:.2f}"


# --------------------------------------------------------------------------------------------
# 5. Block elimination against the dense factorization
# --------------------------------------------------------------------------------------------
AGREE = 1e-10
#: rounding moves the mode found by L-BFGS-B, hence the grid, by about 1e-7; that moves the
#: answers by a small fraction of the grid's own error, which must therefore be well below AGREE
#: (rtol = 1e-3 bounds the error of a grid twice as coarse; the reported one is far finer)
GRID_RTOL = 1e-3


def _one_factor_model(n_terms=2, empty_level=False, known_sigma=False):
    """Keyword arguments of a model whose group terms all share the factor g."""
    X, y, g = _hierarchical()
    levels = (*g.levels, "g_empty") if empty_level else g.levels
    columns = {"1|g": np.ones(len(y)), "x|g": X[:, 1]}
    terms = [GroupTerm(name, col, g.codes, levels) for name, col in list(columns.items())[:n_terms]]
    kw = dict(X=X, y=y, groups=terms, names=["Intercept", "x"], beta_mean=[0.2, 0.0],
              beta_cov=[[9.0, 0.5], [0.5, 4.0]],
              tau_priors={t.name: HalfNormal(1.0) for t in terms})
    if known_sigma:
        w = np.random.default_rng(SEED).uniform(0.3, 3.0, len(y))
        kw.update(sigma=1.2, weights=w)
    else:
        kw.update(sigma_prior=HalfNormal(2.0))
    return kw


ONE_FACTOR_MODELS = {
    "one term": dict(n_terms=1),
    "two terms": dict(n_terms=2),
    "a level without rows": dict(n_terms=2, empty_level=True, known_sigma=True),
    "known sigma with weights": dict(n_terms=2, known_sigma=True),
}


def _assert_same_posterior(a, b, tol=AGREE):
    """Evidence, every marginal's mean, sd and 5%/95% quantiles, and covariances.

    The covariances of both coefficients, the first, second and last level and, with two
    terms, the second term at the third level with the first term there.
    """
    assert a.grid_shape == b.grid_shape and a.n_evaluations == b.n_evaluations
    assert a.log_evidence() == pytest.approx(b.log_evidence(), rel=tol)
    sa, sb = a.summary(), b.summary()
    assert list(sa) == list(sb)
    for name in sa:
        sd = sb[name]["sd"]
        for q in ("mean", "sd", "q05", "q95"):
            assert sa[name][q] == pytest.approx(sb[name][q], abs=tol * sd), (name, q)
    levels = [k for k in sa if "[" in k]
    keys = ["Intercept", "x", levels[0], levels[1], levels[2], levels[len(levels) // 2 + 2],
            levels[-1]]
    rows = [a._theta_index(k) for k in keys]
    sd = np.array([sb[k]["sd"] for k in keys])
    cov_a, cov_b = a._posterior_cov(rows), b._posterior_cov(rows)
    assert np.all(np.abs(cov_a - cov_b) < tol * np.outer(sd, sd))


@pytest.fixture(scope="module")
def dense_fits():
    """Dense-path fits of the one-factor models, built once (name -> ScaleQuadrature)."""
    return {name: _build(_one_factor_model(**model), rtol=GRID_RTOL, fast=False)
            for name, model in ONE_FACTOR_MODELS.items()}


@pytest.mark.parametrize("name", list(ONE_FACTOR_MODELS))
def test_block_elimination_matches_the_dense_factorization(name, dense_fits):
    block = _build(_one_factor_model(**ONE_FACTOR_MODELS[name]), rtol=GRID_RTOL)
    assert (block.method, dense_fits[name].method) == ("block", "dense")
    _assert_same_posterior(block, dense_fits[name])


def test_agreement_check_catches_a_wrong_back_substitution(monkeypatch):
    """Bug: the level means from L_j^-1 (forward) instead of L_j^-T (back substitution)."""
    dense = _fixed_taus_two_terms(fast=False)[0]
    monkeypatch.setattr(quadrature, "_small_solve_upper_t", quadrature._small_solve_lower)
    with pytest.raises(AssertionError):
        _assert_same_posterior(_fixed_taus_two_terms(fast=True)[0], dense)


def _conditionals(**model):
    """The block and dense scale-free quantities of one model."""
    kw = _one_factor_model(**model)
    args = (kw["X"], kw["y"], kw["groups"], kw.get("weights"), np.array(kw["beta_mean"]),
            np.array(kw["beta_cov"]))
    return (quadrature._build_conditional(*args, blocks=True),
            quadrature._build_conditional(*args, blocks=False))


@pytest.mark.parametrize("model", list(ONE_FACTOR_MODELS.values()), ids=list(ONE_FACTOR_MODELS))
def test_block_conditionals_match_dense_at_extreme_scales(model):
    """log p(y | phi), conditional means, variances and covariances from tau = 1e-8 to 1e4.

    Far out, P_u is ill conditioned and neither factorization is exact: moments are compared
    to the accuracy a backward-stable solver promises, 10 eps cond(P_u), or 1e-10 if larger
    (on one such point the block result was the closer of the two to exact rational arithmetic).
    """
    block, dense = _conditionals(**model)
    rng = np.random.default_rng(SEED)
    k, d = len(block.blocks.Kbb), len(block.k0)
    tau = np.exp(rng.uniform(np.log(1e-8), np.log(1e4), (200, k)))
    sigma = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), 200))
    P = np.empty((200, d, d))
    quadrature._fill_precision(dense, tau, sigma, P)
    tol = np.maximum(AGREE, 10 * np.finfo(float).eps * np.linalg.cond(P))[:, None]
    lp_b, mu_b, var_b = quadrature._conditional_batch(block, tau, sigma, moments=True)
    lp_d, mu_d, var_d = quadrature._conditional_batch(dense, tau, sigma, moments=True)
    np.testing.assert_allclose(lp_b, lp_d, rtol=AGREE)
    assert np.all(np.abs(var_b / var_d - 1) < tol)
    assert np.all(np.abs(mu_b - mu_d) / np.sqrt(var_d) < tol)
    # coefficients, levels, and with two terms the slope of the intercept's level
    rows = [0, 1, 2, d - 1, 3] + ([2 + (d - 2) // k] if k > 1 else [])
    cov_b = quadrature._conditional_cov(block, tau, sigma, rows)
    cov_d = quadrature._conditional_cov(dense, tau, sigma, rows)
    sd = np.sqrt(np.einsum("gii->gi", cov_d))
    assert np.all(np.abs(cov_b - cov_d) / (sd[:, :, None] * sd[:, None, :]) < tol[:, :, None])
    assert np.median(tol) < 1e-9   # most points are not extreme: the test has teeth


def test_crossed_factors_and_plain_regression_use_the_dense_path():
    X, y, g = _hierarchical()
    h = GroupTerm("1|h", np.ones(len(y)), np.arange(len(y)) % 5, tuple("abcde"))
    crossed = ScaleQuadrature(X, y, [g, h], names=["Intercept", "x"], beta_cov=25.0,
                              tau_priors={"1|g": Constant(0.5), "1|h": Constant(0.3)},
                              sigma=1.0)
    plain, _, _ = _known_sigma_pair()
    assert crossed.method == "dense" and plain.method == "dense"
    assert _fixed_tau_pair(fast=True)[0].method == "block"


def test_mixture_quantiles_of_a_bimodal_mixture():
    """Halley steps that leave the bracket fall back to bisection: the root is still found."""
    m = quadrature.GaussianMixture([0.3, 0.7], [-10.0, 10.0], [1.0, 0.5])
    q = np.array([0.01, 0.29, 0.3, 0.31, 0.5, 0.99])
    x = m.ppf(q)
    np.testing.assert_allclose(m.cdf(x), q, atol=1e-12)
    assert m.mean() == pytest.approx(4.0) and m.var() == pytest.approx(
        0.3 * 101 + 0.7 * 100.25 - 16.0)


# --------------------------------------------------------------------------------------------
# 6. Mechanics and bad input
# --------------------------------------------------------------------------------------------
def test_module_docstring_example_runs():
    assert doctest.testmod(quadrature, raise_on_error=False).failed == 0


def test_refinement_budget_warns_and_reports(monkeypatch):
    X, y = _tutorial()
    with pytest.warns(RuntimeWarning, match="before reaching rtol"):
        quad = ScaleQuadrature(X, y, names=["Intercept", "x"], beta_cov=10.0,
                               sigma_prior=HalfNormal(1.0), rtol=1e-14, max_points=40)
    assert not quad.converged and quad.error["log_evidence"] > 0


def test_mixture_and_grid_marginals_are_consistent(unknown_sigma):
    quad, _ = unknown_sigma
    for name in ("x", "sigma"):
        m = quad.marginal(name)
        q = np.array([0.01, 0.3, 0.77])
        np.testing.assert_allclose(m.cdf(m.ppf(q)), q, atol=1e-10)
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            m.ppf(1.0)
    # the mixture density integrates to one
    m = quad.marginal("x")
    grid = np.linspace(m.mean() - 12 * m.std(), m.mean() + 12 * m.std(), 4001)
    assert integrate.trapezoid(m.pdf(grid), grid) == pytest.approx(1.0, abs=1e-9)


@pytest.fixture(scope="module")
def hier_args():
    X, y, g = _hierarchical()
    return dict(X=X, y=y, groups=[g], names=["Intercept", "x"], beta_cov=25.0,
                tau_priors={"1|g": HalfNormal(1.0)}, sigma_prior=HalfNormal(2.0))


def _build(args, **changes):
    kw = {**args, **changes}
    return ScaleQuadrature(kw.pop("X"), kw.pop("y"), kw.pop("groups"), **kw)


@pytest.mark.parametrize("changes, error, match", [
    ({"tau_priors": {}}, ValueError, r"missing \['1\|g'\]"),
    ({"tau_priors": {"1|g": HalfNormal(1.0), "1|h": HalfNormal(1.0)}}, ValueError,
     r"unknown \['1\|h'\]"),
    ({"sigma": 1.0}, ValueError, "exactly one of sigma"),
    ({"sigma_prior": None}, ValueError, "exactly one of sigma"),
    ({"sigma_prior": Flat()}, ValueError, "Flat prior is improper"),
    ({"sigma_prior": Normal(0, 1)}, ValueError, "must live on \\(0, inf\\)"),
    ({"tau_priors": {"1|g": Uniform(-1.0, 1.0)}}, ValueError, "must be positive"),
    ({"tau_priors": {"1|g": 0.5}}, TypeError, "must be a reference.priors.Prior"),
    ({"tau_priors": {"1|g": Constant(0.0)}}, ValueError, "fixed value of 1\\|g_sigma"),
    ({"beta_cov": None}, ValueError, "flat prior on the coefficients"),
    ({"names": ["Intercept"]}, ValueError, "one name per column of X"),
    ({"names": ["Intercept", "1|g"]}, ValueError, "must be unique"),
    ({"groups": ["g"]}, TypeError, "GroupTerm"),
    ({"rtol": 0.0}, ValueError, "rtol must be a finite number > 0"),
    ({"fast": "yes"}, TypeError, "fast must be True or False"),
    ({"weights": np.zeros(96)}, ValueError, "weights must be 96 finite positive"),
])
def test_bad_input_is_rejected_with_a_clear_message(hier_args, changes, error, match):
    with pytest.raises(error, match=match):
        _build(hier_args, **changes)


def test_bad_names_in_queries(hierarchical):
    quad = hierarchical
    with pytest.raises(ValueError, match="unknown parameter 'slope'; valid names"):
        quad.marginal("slope")
    with pytest.raises(ValueError, match="has 8 levels; pass level="):
        quad.marginal("1|g")
    with pytest.raises(ValueError, match="no level 'g9'"):
        quad.marginal("1|g", "g9")
    with pytest.raises(ValueError, match="is a coefficient"):
        quad.marginal("x", 0)
    with pytest.raises(ValueError, match="is a scale"):
        quad.marginal("sigma", 0)
    with pytest.raises(TypeError, match="must be a string"):
        quad.corr(0, "x")


def test_a_fixed_scale_has_no_marginal():
    quad, _, _ = _fixed_tau_pair()
    with pytest.raises(ValueError, match="fixed at 0.7: there is no scale to integrate"):
        quad.marginal("1|g_sigma")
