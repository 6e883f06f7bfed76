"""Evidence of whole cases: every estimator against the exact value (closed form or quadrature).

Rule (issue acceptance): conjugate cases within 3 SE and 0.1 nats of the closed form;
hierarchical cases within 3 SE + 0.05 nats of the quadrature.
"""

import numpy as np
import pytest

from comparisons.cases import get_case
from comparisons.evidence import LogPosterior, estimates, evidence_checks, smc_estimate
from models.reference_model import exact_answer, fit_reference

SEED = 20261121


@pytest.mark.parametrize("case", ["three-point", "tutorial-nig", "nig-synthetic", "tutorial",
                                  "blog-mh", "eight-schools", "radon-intercepts"])
def test_every_estimator_agrees_with_the_exact_evidence(case):
    spec = get_case(case)
    exact = exact_answer(spec)
    rows = estimates(spec, {"reference": fit_reference(spec, seed=SEED)}, exact, seed=SEED)
    checks = evidence_checks(rows)
    assert {c["method"] for c in checks} >= {"bridge-normal", "bridge-warp3"}
    assert all(c["verdict"] == "agree" for c in checks), checks
    if exact.__class__.__name__ == "ExactPosterior":  # conjugate: also within 0.1 nats
        assert all(abs(c["difference"]) < 0.1 for c in checks)


def test_three_point_evidence_is_the_known_answer():
    assert exact_answer(get_case("three-point")).log_evidence() == pytest.approx(-5.4775, abs=1e-4)


def test_smc_on_eight_schools():
    spec = get_case("eight-schools")
    exact = exact_answer(spec).log_evidence()
    smc = smc_estimate(spec, seed=SEED)
    assert abs(smc["log_evidence"] - exact) <= 3 * smc["se"] + 0.05, (smc, exact)


def test_log_posterior_integrates_to_the_evidence():
    """Its normalizing constant is the closed-form evidence (importance sampling check in 2-D)."""
    spec = get_case("three-point")
    logq = LogPosterior(spec)
    post = exact_answer(spec).post
    rng = np.random.default_rng(SEED)
    x = post.mean + rng.standard_normal((200_000, 2)) @ np.linalg.cholesky(4 * post.cov).T
    from scipy import stats

    logw = logq(x) - stats.multivariate_normal(post.mean, 4 * post.cov).logpdf(x)
    est = np.log(np.mean(np.exp(logw - logw.max()))) + logw.max()
    se = np.std(np.exp(logw - logw.max())) / np.sqrt(len(x)) / np.mean(np.exp(logw - logw.max()))
    assert abs(est - post.log_evidence()) < 4 * se


def test_a_wrong_prior_scale_moves_the_estimate_beyond_its_error():
    """Failure demonstration: draws from the right posterior, log density with the slope's prior
    sd doubled: bridge sampling reports a value the rule rejects."""
    import dataclasses

    from reference.priors import Normal

    spec = get_case("three-point")
    wrong = dataclasses.replace(spec, priors={**spec.priors, "x": Normal(0.0, 3.0)})
    rows = estimates(wrong, {"reference": fit_reference(spec, seed=SEED)}, exact_answer(spec),
                     seed=SEED)
    assert any(c["verdict"] == "disagree" for c in evidence_checks(rows))


def test_flat_prior_evidence_is_reported_undefined():
    import dataclasses

    from reference.priors import Flat

    spec = get_case("three-point")
    flat = dataclasses.replace(spec, priors={"Intercept": Flat(), "x": Flat()})
    rows = estimates(flat, {}, None)
    assert rows[0]["log_evidence"] is None and "undefined" in rows[0]["note"]


def _marginal_vs_mvnormal(spec, build):
    """log p(y | beta, tau, sigma) of the marginal PyMC model against the dense multivariate
    normal with covariance D + tau^2 Z Z', at two random points; the largest difference."""
    from scipy import stats

    model = build(spec)
    d = spec.design()
    g = d.groups[0]
    Z = np.eye(len(g.levels))[g.codes]
    logp = model.compile_fn(model.datalogp, point_fn=True)
    rng = np.random.default_rng(SEED)
    worst = 0.0
    for _ in range(2):
        point = {k: v + 0.3 * rng.standard_normal(np.shape(v))
                 for k, v in model.initial_point().items()}
        beta = np.array([float(point[n]) for n in d.column_names()])
        tau = float(np.exp(point[f"{g.name}_sigma_log__"]))
        sd = d.noise_sd if "sigma_log__" not in point else np.full(len(d.y),
                                                                    np.exp(point["sigma_log__"]))
        cov = np.diag(sd**2) + tau**2 * Z @ Z.T
        ref = stats.multivariate_normal(d.X @ beta, cov).logpdf(d.y)
        worst = max(worst, abs(float(logp(point)) - ref))
    return worst


@pytest.mark.parametrize("case", ["eight-schools", "radon-intercepts"])
def test_marginal_pymc_model_is_the_integrated_likelihood(case):
    from models.pymc_model import build_marginal_pymc_model

    assert _marginal_vs_mvnormal(get_case(case), build_marginal_pymc_model) < 1e-8


def test_marginal_model_check_fails_without_the_determinant(monkeypatch):
    """Failure demonstration: the same check catches a marginal model missing its log-det."""
    import models.pymc_model as pmod

    real = pmod.marginal_pymc_code
    monkeypatch.setattr(pmod, "marginal_pymc_code",
                        lambda spec: real(spec).replace("logdet + quad", "quad"))
    assert _marginal_vs_mvnormal(get_case("eight-schools"), pmod.build_marginal_pymc_model) > 1


def test_marginal_model_refuses_what_it_cannot_integrate():
    from models.pymc_model import marginal_pymc_code, marginalizable

    assert marginalizable(get_case("radon-intercepts")) is None
    with pytest.raises(ValueError, match=r"radon-slopes.*exactly one varying-intercept term"):
        marginal_pymc_code(get_case("radon-slopes"))


@pytest.mark.slow
def test_smc_on_radon_varying_intercepts():
    """90 parameters: SMC on the marginal model within 3 SE + 0.05 nats of the quadrature
    (about 1 to 2 minutes on two cores)."""
    spec = get_case("radon-intercepts")
    exact = exact_answer(spec).log_evidence()
    smc = smc_estimate(spec, seed=SEED)
    assert "integrated out" in smc["note"]
    assert abs(smc["log_evidence"] - exact) <= 3 * smc["se"] + 0.05, (smc, exact)


def _eight_schools_laplace_by_hand(jacobian: bool = True) -> float:
    """Laplace over u = log tau for eight schools, written independently: y ~ N(0, diag(se^2 +
    tau^2) + 5^2 11') after integrating mu ~ N(0, 5^2) and the school effects; tau ~
    HalfCauchy(5). Mode by a 1-D search, curvature by central differences."""
    from scipy import optimize, stats

    d = get_case("eight-schools").design()
    y, se = d.y, d.noise_sd

    def log_q(u):
        tau = np.exp(u)
        cov = np.diag(se**2 + tau**2) + 25.0 * np.ones((len(y), len(y)))
        return (stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y)
                + stats.halfcauchy(scale=5).logpdf(tau) + (u if jacobian else 0.0))

    u = optimize.minimize_scalar(lambda v: -log_q(v), bounds=(-5, 5), method="bounded",
                                 options={"xatol": 1e-10}).x
    h = 1e-3
    a = -(log_q(u + h) - 2 * log_q(u) + log_q(u - h)) / h**2
    return float(log_q(u) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(a))


def _laplace_scales_of(case):
    from models.reference_model import _arrays
    from reference.evidence import laplace_scales

    spec = get_case(case)
    a = _arrays(spec)
    return laplace_scales(a["X"], a["y"], a["groups"], names=a["names"],
                          beta_mean=a["beta_mean"], beta_cov=a["beta_cov"],
                          tau_priors=a["tau_priors"],
                          sigma_prior=None if spec.sigma_is_known else spec.sigma,
                          weights=a["weights"]).log_evidence


def test_laplace_over_the_scales_matches_an_independent_computation():
    """The integrated-Laplace baseline equals the same approximation written out by hand
    (to finite-difference accuracy); without the log-Jacobian the hand version differs."""
    est = _laplace_scales_of("eight-schools")
    assert est == pytest.approx(_eight_schools_laplace_by_hand(), abs=1e-4)
    assert abs(est - _eight_schools_laplace_by_hand(jacobian=False)) > 0.1


def test_laplace_over_the_scales_refuses_a_model_without_groups():
    from models.reference_model import _arrays
    from reference.evidence import laplace_scales

    a = _arrays(get_case("tutorial"))
    with pytest.raises(ValueError, match="groups is empty"):
        laplace_scales(a["X"], a["y"], [], names=a["names"], beta_mean=a["beta_mean"],
                       beta_cov=a["beta_cov"], tau_priors={}, sigma_prior=None)


def test_marginal_model_keeps_coefficients_whose_names_look_like_generated_ones():
    """A predictor named like a generated variable (``u_offset``, ``r``) keeps its prior line in
    the marginal model, and the model still equals the dense multivariate normal."""
    import dataclasses

    from models.pymc_model import build_marginal_pymc_model

    spec = get_case("radon-intercepts")
    data = spec.data.rename(columns={"uranium": "u_offset", "basement": "r"})
    priors = {{"uranium": "u_offset", "basement": "r"}.get(k, k): v
              for k, v in spec.priors.items()}
    renamed = dataclasses.replace(spec, data=data, priors=priors,
                                  formula="log.radon ~ r + u_offset + (1|county)")
    assert _marginal_vs_mvnormal(renamed, build_marginal_pymc_model) < 1e-8


@pytest.mark.slow
def test_smc_error_bar_coverage_on_eight_schools():
    """+-2 se of SMC (4 chains, t-widened spread) covers the quadrature value in 30 seeds as
    often as a 95% interval should: at least the 0.1% binomial quantile (about 3 minutes)."""
    from scipy import stats

    spec = get_case("eight-schools")
    exact = exact_answer(spec).log_evidence()
    z = []
    for k in range(30):
        r = smc_estimate(spec, seed=5000 + k)
        z.append((r["log_evidence"] - exact) / r["se"])
    covered = int(np.sum(np.abs(z) <= 2))
    print(f"SMC +-2 se coverage: {covered} / 30; z = {np.round(z, 2).tolist()}")
    assert covered >= stats.binom.ppf(0.001, 30, 2 * stats.norm.cdf(2) - 1)
