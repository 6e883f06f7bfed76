"""Closed forms against the derivation seed's worked example and independent dense formulas."""

import numpy as np
import pytest
from scipy import stats

from reference.conjugate import (
    GaussianKnownNoise,
    NormalInverseGamma,
    SqrtInvGamma,
    empirical_bayes,
    ols,
    ridge,
)

X3 = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
Y3 = np.array([1.0, 2.0, 4.0])


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)


# --- the known answer (derivation seed, reconstructed in shared/seeds/README.md) -------------
def test_known_answer_posterior():
    post = GaussianKnownNoise(X3, Y3, noise_var=1.0, prior_mean=0.0, prior_cov=1.0)
    np.testing.assert_allclose(post.mean, [0.8000, 1.2667], atol=1e-4)
    np.testing.assert_allclose(post.cov, [[0.4, -0.2], [-0.2, 0.2667]], atol=1e-4)
    np.testing.assert_allclose(ols(X3, Y3), [0.8333, 1.5], atol=1e-4)
    assert post.log_evidence() == pytest.approx(-5.4775, abs=1e-4)


def test_known_answer_predictive_split():
    pred = GaussianKnownNoise(X3, Y3, 1.0).predictive([[1.0, 1.0], [1.0, 10.0]])
    np.testing.assert_allclose(pred.mean, [2.0667, 13.467], atol=1e-3)
    np.testing.assert_allclose(pred.var, [1.2667, 24.067], atol=1e-3)
    np.testing.assert_allclose(pred.noise_var, [1.0, 1.0])
    np.testing.assert_allclose(pred.epistemic_var, [0.2667, 23.067], atol=1e-3)
    # extrapolation: epistemic variance at x = 10 is ~23 times the noise
    assert pred.epistemic_var[1] / pred.noise_var[1] == pytest.approx(23.07, abs=0.01)


def test_evidence_is_the_gaussian_marginal_of_y():
    # log N(y | 0, I + X X'), with det(I + X X') = 15
    S = np.eye(3) + X3 @ X3.T
    assert np.linalg.det(S) == pytest.approx(15.0)
    direct = stats.multivariate_normal(np.zeros(3), S).logpdf(Y3)
    assert GaussianKnownNoise(X3, Y3, 1.0).log_evidence() == pytest.approx(direct, rel=1e-12)


def test_ridge_equivalence(rng):
    X = rng.normal(size=(30, 4))
    y = rng.normal(size=30)
    noise_var, prior_var = 0.7, 2.5
    post = GaussianKnownNoise(X, y, noise_var, 0.0, prior_var)
    np.testing.assert_allclose(post.mean, ridge(X, y, noise_var / prior_var), rtol=1e-10)


# --- both numerical paths against dense textbook formulas ------------------------------------
@pytest.mark.parametrize("n, p", [(40, 5), (5, 12)], ids=["p-space", "n-space (Woodbury)"])
def test_gaussian_posterior_matches_dense_formulas(rng, n, p):
    X = rng.normal(size=(n, p))
    y = rng.normal(size=n)
    m0 = rng.normal(size=p)
    A = rng.normal(size=(p, p))
    V0 = A @ A.T + p * np.eye(p)
    s2 = 0.6
    post = GaussianKnownNoise(X, y, s2, m0, V0)
    Vn = np.linalg.inv(np.linalg.inv(V0) + X.T @ X / s2)
    mn = Vn @ (np.linalg.solve(V0, m0) + X.T @ y / s2)
    np.testing.assert_allclose(post.cov, Vn, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(post.mean, mn, rtol=1e-8)
    direct = stats.multivariate_normal(X @ m0, s2 * np.eye(n) + X @ V0 @ X.T).logpdf(y)
    assert post.log_evidence() == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("n, p", [(40, 3), (4, 9)], ids=["p-space", "n-space (Woodbury)"])
def test_nig_matches_dense_formulas(rng, n, p):
    X = rng.normal(size=(n, p))
    y = rng.normal(size=n)
    m0, V0, a0, b0 = rng.normal(size=p), np.diag(rng.uniform(0.5, 2, p)), 3.0, 2.0
    post = NormalInverseGamma(X, y, m0, V0, a0, b0)
    Ln = np.linalg.inv(V0) + X.T @ X
    mn = np.linalg.solve(Ln, np.linalg.solve(V0, m0) + X.T @ y)
    bn = b0 + 0.5 * (y @ y + m0 @ np.linalg.solve(V0, m0) - mn @ Ln @ mn)
    np.testing.assert_allclose(post.mean, mn, rtol=1e-8)
    np.testing.assert_allclose(post.cov_unscaled, np.linalg.inv(Ln), rtol=1e-8, atol=1e-12)
    assert post.a_n == a0 + n / 2
    assert post.b_n == pytest.approx(bn, rel=1e-10)
    # evidence: y is multivariate Student-t with 2 a0 dof, scale (b0 / a0)(I + X V0 X')
    direct = stats.multivariate_t(X @ m0, b0 / a0 * (np.eye(n) + X @ V0 @ X.T), df=2 * a0).logpdf(y)
    assert post.log_evidence() == pytest.approx(direct, rel=1e-10)


def test_nig_marginals_are_the_normal_inverse_gamma_mixture(rng):
    """Student-t marginals, sd and correlation of beta equal the integral over sigma^2 of
    N(m_n, sigma^2 L^-1) times InvGamma(a_n, b_n), computed by numerical quadrature."""
    from scipy import integrate

    X = np.column_stack([np.ones(25), rng.normal(size=25)])
    y = X @ [1.0, -0.5] + rng.normal(size=25)
    post = NormalInverseGamma(X, y, 0.0, 4.0, 2.0, 1.0)
    ig = post.sigma2()
    Linv = post.cov_unscaled
    for j, m in enumerate(post.marginals()):
        for b in m.ppf([0.05, 0.5, 0.95]):
            def integrand(s2, b=b, j=j):
                return stats.norm.cdf(b, post.mean[j], np.sqrt(s2 * Linv[j, j])) * ig.pdf(s2)
            mixture_cdf = integrate.quad(integrand, 0, np.inf, limit=200)[0]
            assert mixture_cdf == pytest.approx(m.cdf(b), abs=1e-8)
    # Var(beta) = E[sigma^2] L^-1 (law of total variance), so sd and correlation follow
    np.testing.assert_allclose(post.cov, ig.mean() * Linv, rtol=1e-12)
    np.testing.assert_allclose(post.sd, [m.std() for m in post.marginals()], rtol=1e-12)
    assert post.corr[0, 1] == pytest.approx(Linv[0, 1] / np.sqrt(Linv[0, 0] * Linv[1, 1]))
    # predictive: t with variance E[sigma^2](1 + x' L^-1 x), split into noise and epistemic parts
    pred = post.predictive([[1.0, 3.0]])
    x = np.array([1.0, 3.0])
    assert pred.dist.var()[0] == pytest.approx(pred.var[0], rel=1e-10)
    assert pred.noise_var[0] == pytest.approx(ig.mean())
    assert pred.epistemic_var[0] == pytest.approx(ig.mean() * x @ Linv @ x)


def test_nig_draws_follow_the_exact_posterior(rng):
    """The iid sampler used for plots: mean, sd and quantiles within Monte Carlo error."""
    from comparisons.agreement import check_against_exact

    X = np.column_stack([np.ones(25), rng.normal(size=25)])
    y = X @ [1.0, -0.5] + rng.normal(size=25)
    post = NormalInverseGamma(X, y, 0.0, 4.0, 2.0, 1.0)
    beta, s2 = post.sample(rng, 4000)
    checks = check_against_exact("sigma", np.sqrt(s2)[None], post.sigma())
    for j, m in enumerate(post.marginals()):
        checks += check_against_exact(f"b{j}", beta[None, :, j], m)
    assert max(abs(c.z) for c in checks) < 3.5, checks


def test_sqrt_inv_gamma_moments_by_integration():
    from scipy import integrate

    d = SqrtInvGamma(4.5, 2.0)
    m1 = integrate.quad(lambda s: s * d.pdf(s), 0, np.inf)[0]
    m2 = integrate.quad(lambda s: s * s * d.pdf(s), 0, np.inf)[0]
    assert integrate.quad(d.pdf, 0, np.inf)[0] == pytest.approx(1.0, abs=1e-10)
    assert d.mean() == pytest.approx(m1, rel=1e-8)
    assert d.var() == pytest.approx(m2 - m1**2, rel=1e-7)
    assert d.cdf(d.ppf(0.3)) == pytest.approx(0.3)


def test_flat_prior_gives_ols(rng):
    X = np.column_stack([np.ones(20), rng.normal(size=20)])
    y = rng.normal(size=20)
    post = GaussianKnownNoise(X, y, 2.0, prior_cov=None)
    np.testing.assert_allclose(post.mean, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-10)
    np.testing.assert_allclose(post.cov, 2.0 * np.linalg.inv(X.T @ X), rtol=1e-10)
    with pytest.raises(ValueError, match="evidence is undefined"):
        post.log_evidence()
    nig = NormalInverseGamma(X, y, prior_cov=None, a0=1.0, b0=1.0)
    assert nig.a_n == 1.0 + (20 - 2) / 2


def test_empirical_bayes_maximizes_the_evidence(rng):
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.8 * rng.normal(size=60)
    alpha, beta, best = empirical_bayes(X, y)
    for da in (0.9, 1.1):
        for db in (0.9, 1.1):
            other = GaussianKnownNoise(X, y, 1 / (beta * db), 0.0, 1 / (alpha * da)).log_evidence()
            assert other < best
    # MacKay's fixed point at the optimum: gamma = alpha m'm, N - gamma = beta ||y - X m||^2
    post = GaussianKnownNoise(X, y, 1 / beta, 0.0, 1 / alpha)
    lam = np.linalg.eigvalsh(beta * X.T @ X)
    gamma = np.sum(lam / (lam + alpha))
    assert alpha * post.mean @ post.mean == pytest.approx(gamma, rel=1e-3)
    assert beta * np.sum((y - X @ post.mean) ** 2) == pytest.approx(60 - gamma, rel=1e-3)


# --- bad input: one-line errors, never a raw LinAlgError -------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"X": [[1.0, np.nan], [1.0, 1.0]], "y": [1.0, 2.0]}, r"X contains 1 non-finite .*NaN"),
        ({"X": [[1.0, 0.0], [1.0, 1.0]], "y": [1.0, np.inf]}, r"y contains 1 non-finite .*inf"),
        ({"X": [[1.0, 0.0], [1.0, 1.0]], "y": [1.0, 2.0, 3.0]}, "X has 2 rows but y has 3"),
        ({"X": np.empty((0, 2)), "y": []}, "the data are empty"),
        ({"X": [[1.0, 0.0]], "y": [1.0], "noise_var": 0.0},
         r"noise_var must be .* > 0; received 0"),
        ({"X": [[1.0, 0.0]], "y": [1.0], "noise_var": -1.0}, r"received -1"),
        ({"X": [[1.0, 0.0]], "y": [1.0], "prior_cov": [[1.0, 2.0], [2.0, 1.0]]},
         "prior_cov must be positive definite; its smallest eigenvalue is -1"),
        ({"X": [[1.0, 0.0]], "y": [1.0], "prior_cov": [1.0, -2.0]}, "prior_cov must be positive"),
        ({"X": [[1.0, 0.0]], "y": [1.0], "prior_cov": None},
         r"flat prior .* X \(1 rows, 2 columns\) has rank 1"),
    ],
)
def test_gaussian_bad_input(kwargs, match):
    kwargs = {"noise_var": 1.0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        GaussianKnownNoise(**kwargs)


def test_p_greater_than_n_flat_prior_is_a_clear_error(rng):
    with pytest.raises(ValueError, match="has rank 3; give every coefficient a proper prior"):
        GaussianKnownNoise(rng.normal(size=(3, 6)), rng.normal(size=3), 1.0, prior_cov=None)


@pytest.mark.parametrize("a0, b0, match", [(0.0, 1.0, "a0"), (1.0, -2.0, "b0"),
                                           (np.nan, 1.0, "a0"), ("x", 1.0, "a0")])
def test_nig_bad_hyperparameters(a0, b0, match):
    with pytest.raises((ValueError, TypeError), match=match):
        NormalInverseGamma(X3, Y3, a0=a0, b0=b0)
