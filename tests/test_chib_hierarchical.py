"""Chib (1995) log evidence of the hierarchical Gaussian model against exact quadrature.

:func:`reference.evidence.chib_hierarchical` is checked on built-in cases whose exact log
evidence comes from :class:`reference.quadrature.ScaleQuadrature` (grid error < 1e-7 nats):
``eight-schools`` (known per-row noise, one HalfCauchy group scale), ``radon-intercepts``
(HalfNormal group scale and sigma, 85 counties, one reduced run), ``sleepstudy`` (two group
scales and sigma, two reduced runs) and a synthetic data set with two rows per group, where the
group scale and sigma are strongly correlated a posteriori (Exponential group scale, conjugate
``InverseGamma(on="sigma2")`` sigma: the closed-form ordinate).

Statistical budget
------------------
* Agreement: ``|estimate - exact| <= Z_MAX * se`` with ``Z_MAX = 3.5`` (two-sided false alarm
  4.7e-4 per comparison if the standard error is right; 4 comparisons), and the standard error
  must be positive and below ``SE_MAX = 0.2`` nats. One seed, 20261121, chosen once.
* Failure demonstrations: the same rule must reject the estimate when a bug is injected from
  here (monkeypatch): the conditional density taken on the variance scale (Jacobian dropped),
  the prior left out of the normalized conditional, the wrong number of levels J_k, and the
  reduced runs skipped. Each runs where the bug moves the answer by several standard errors;
  the shifts seen are printed. (On eight-schools, radon and sleepstudy the scales are nearly
  independent a posteriori, so skipping the reduced runs moves the answer by less than one se
  there: that bug is only visible on the synthetic case.)
* The slow study (``pytest -m slow``) repeats the estimate over 50 seeds and prints the
  coverage of +-2 se intervals.
"""

from __future__ import annotations

import doctest
import time
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import integrate, stats

from comparisons.cases import get_case
from models.reference_model import _arrays, exact_answer
from reference import datasets, evidence
from reference import priors as P
from reference.hierarchical import group_term, hierarchical_gibbs
from reference.quadrature import ScaleQuadrature

SEED = 20261121
Z_MAX = 3.5
SE_MAX = 0.2
TUNE = 500
CHAINS = 4
#: kept draws per chain of the main run and of every reduced run, per case: longer where a
#: failure demonstration needs the power (eight-schools: prior dropped; sleepstudy: wrong J)
DRAWS = {"eight-schools": 8000, "radon-intercepts": 1000, "sleepstudy": 2000, "synthetic": 1000}


@dataclass
class Fitted:
    """A model, its exact log evidence and its main Gibbs run."""

    name: str
    X: np.ndarray
    y: np.ndarray
    groups: list
    model: dict
    exact: float
    posterior: object
    draws: int

    def estimate(self, **kw) -> evidence.EvidenceEstimate:
        run = {"reduced_draws": self.draws, "tune": TUNE, "chains": CHAINS, "seed": SEED}
        run.update(kw)
        return evidence.chib_hierarchical(self.X, self.y, self.groups, posterior=self.posterior,
                                          **self.model, **run)


def _main_run(X, y, groups, model, draws):
    return hierarchical_gibbs(X, y, groups, draws=draws, tune=TUNE, chains=CHAINS, seed=SEED,
                              **model)


def _fit_case(name: str) -> Fitted:
    """A built-in case, set up as ``models.reference_model.fit_reference`` calls the sampler."""
    spec = get_case(name)
    a = _arrays(spec)
    model = {"names": a["names"], "beta_mean": a["beta_mean"], "beta_cov": a["beta_cov"],
             "tau_priors": a["tau_priors"],
             "sigma_prior": None if spec.sigma_is_known else spec.sigma,
             "weights": a["weights"]}
    exact = exact_answer(spec).log_evidence()
    dt = _main_run(a["X"], a["y"], a["groups"], model, DRAWS[name])
    return Fitted(name, a["X"], a["y"], a["groups"], model, exact, dt, DRAWS[name])


def _fit_synthetic() -> Fitted:
    """30 groups of 2 rows: group scale and sigma trade off (posterior correlation about -0.5
    on the log scales), so p(sigma* | tau*, y) differs clearly from p(sigma* | y)."""
    d = datasets.hierarchical_synthetic(groups=30, per_group=2, tau=1.0, sigma=1.0)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    groups = [group_term("1|g", None, d["g"])]
    model = {"names": ["Intercept", "x"], "beta_mean": 0.0, "beta_cov": np.diag([25.0, 25.0]),
             "tau_priors": {"1|g": P.Exponential(1.0)},
             "sigma_prior": P.InverseGamma(2.0, 2.0, on="sigma2"), "weights": None}
    quad = ScaleQuadrature(X, d["y"], groups, **{k: v for k, v in model.items()
                                                 if k != "weights"})
    dt = _main_run(X, d["y"], groups, model, DRAWS["synthetic"])
    return Fitted("synthetic", X, d["y"], groups, model, quad.log_evidence(), dt,
                  DRAWS["synthetic"])


_FITS: dict = {}
_ESTIMATES: dict = {}


def fitted(name: str) -> Fitted:
    if name not in _FITS:
        _FITS[name] = _fit_synthetic() if name == "synthetic" else _fit_case(name)
    return _FITS[name]


def estimate(name: str) -> evidence.EvidenceEstimate:
    if name not in _ESTIMATES:
        _ESTIMATES[name] = fitted(name).estimate()
    return _ESTIMATES[name]


def z_score(est, truth: float) -> float:
    return (est.log_evidence - truth) / est.se


# --------------------------------------------------------------------------------------------
# Agreement with the exact log evidence
# --------------------------------------------------------------------------------------------
FREE_SCALES = {
    "eight-schools": ["1|school_sigma"],
    "radon-intercepts": ["1|county_sigma", "sigma"],
    "sleepstudy": ["1|Subject_sigma", "Days|Subject_sigma", "sigma"],
    "synthetic": ["1|g_sigma", "sigma"],
}


@pytest.mark.parametrize("name", list(FREE_SCALES))
def test_matches_exact_quadrature(name):
    fit = fitted(name)
    t0 = time.perf_counter()
    est = estimate(name)
    elapsed = time.perf_counter() - t0
    z = z_score(est, fit.exact)
    print(f"\n{name}: exact {fit.exact:.4f}, chib {est.log_evidence:.4f} (se {est.se:.4f}), "
          f"error {est.log_evidence - fit.exact:+.4f} nats, z {z:+.2f}, {elapsed:.1f} s")
    assert abs(z) <= Z_MAX
    assert 0 < est.se < SE_MAX
    # one ordinate per free scale, the first from the main run, one reduced run for each other
    ords = est.details["ordinates"]
    assert [o["scale"] for o in ords] == FREE_SCALES[name]
    assert ords[0]["run"] == "main" and all(o["run"].startswith("reduced") for o in ords[1:])
    assert est.details["reduced_runs"] == len(ords) - 1
    assert est.se == pytest.approx(np.sqrt(sum(o["se"] ** 2 for o in ords)))
    # the identity's pieces add up
    d = est.details
    assert est.log_evidence == pytest.approx(d["log_likelihood"] + d["log_prior"]
                                             - d["log_posterior_ordinate"])


def _dense_log_marginal(X, y, groups, beta_mean, beta_cov, weights, tau, sigma) -> float:
    """log N(y | X m, sigma^2 diag(1/w) + X V X' + sum_t tau_t^2 Z_t Z_t'), written out densely
    (independent of the quadrature module's standardized Cholesky form)."""
    n = len(y)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    m = np.broadcast_to(np.asarray(beta_mean, dtype=float), (X.shape[1],))
    V = np.asarray(beta_cov, dtype=float) * (np.eye(X.shape[1]) if np.ndim(beta_cov) == 0 else 1)
    cov = sigma**2 * np.diag(1.0 / w) + X @ V @ X.T
    for g, t in zip(groups, tau, strict=True):
        Z = g.matrix().toarray()
        cov += t**2 * Z @ Z.T
    return float(stats.multivariate_normal.logpdf(y, X @ m, cov))


@pytest.mark.parametrize("name", ["eight-schools", "sleepstudy"])
def test_log_likelihood_at_the_point_is_the_gaussian_marginal(name):
    fit, est = fitted(name), estimate(name)
    point = est.details["point"]
    tau = [point[f"{g.name}_sigma"] for g in fit.groups]
    sigma = point.get("sigma", 1.0)
    dense = _dense_log_marginal(fit.X, fit.y, fit.groups, fit.model["beta_mean"],
                                fit.model["beta_cov"], fit.model["weights"], tau, sigma)
    assert est.details["log_likelihood"] == pytest.approx(dense, abs=1e-8)
    log_prior = sum(fit.model["tau_priors"][g.name].logpdf(point[f"{g.name}_sigma"])
                    for g in fit.groups)
    if fit.model["sigma_prior"] is not None:
        log_prior += fit.model["sigma_prior"].logpdf(sigma)
    assert est.details["log_prior"] == pytest.approx(float(log_prior), abs=1e-12)


def test_no_free_scale_is_exact():
    """Every scale fixed: the identity is log p(y) = log p(y | s), exact, se 0, no draws read."""
    fit = fitted("sleepstudy")
    model = dict(fit.model, tau_priors={"1|Subject": P.Constant(25.0),
                                        "Days|Subject": P.Constant(6.0)},
                 sigma_prior=P.Constant(26.0))
    est = evidence.chib_hierarchical(fit.X, fit.y, fit.groups, posterior={"posterior": {}},
                                     **model)
    dense = _dense_log_marginal(fit.X, fit.y, fit.groups, model["beta_mean"], model["beta_cov"],
                                None, [25.0, 6.0], 26.0)
    assert est.se == 0.0 and est.details["ordinates"] == []
    assert est.log_evidence == pytest.approx(dense, abs=1e-8)


# --------------------------------------------------------------------------------------------
# The normalized full conditional of a scale
# --------------------------------------------------------------------------------------------
NORMALIZER_CASES = [
    (P.HalfNormal(1.0), 919, 300.0), (P.HalfNormal(1.0), 85, 0.01),
    (P.HalfCauchy(5.0), 8, 1e-4), (P.HalfCauchy(5.0), 8, 1e4), (P.HalfCauchy(5.0), 1, 1.0),
    (P.HalfStudentT(3.0, 2.0), 2, 50.0), (P.Exponential(0.5), 5, 0.1),
    (P.InverseGamma(2.0, 1.0, on="sigma"), 10, 30.0),
    (P.InverseGamma(2.0, 1.0, on="sigma2"), 10, 0.3),
    (P.Uniform(0.0, 10.0), 8, 100.0), (P.Uniform(1.0, 3.0), 3, 0.01),
    (P.TruncatedNormal(2.0, 1.0), 4, 10.0),
]


def _quad_log_normalizer(prior, m, S, guess) -> float:
    """log of int p(s) s^-m exp(-S/2s^2) ds by scipy's adaptive quad in u = log s, split at the
    peak and scaled by exp(-guess) to stay in range."""
    def f(u):
        return np.exp(evidence._scale_log_kernel(prior, m, S, np.exp(u)) + u - guess)

    grid = np.linspace(-40.0, 40.0, 80_001)
    peak = grid[np.argmax(f(grid))]
    lo = np.log(prior.lower) if isinstance(prior, P.Uniform) and prior.lower > 0 else -60.0
    hi = np.log(prior.upper) if isinstance(prior, P.Uniform) else 60.0
    total = sum(integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-13, limit=500)[0]
                for a, b in [(lo, peak), (peak, hi)])
    return guess + np.log(total)


@pytest.mark.parametrize(("prior", "m", "S"), NORMALIZER_CASES, ids=lambda v: str(v))
def test_scale_normalizer_matches_adaptive_quadrature(prior, m, S):
    log_z = evidence._scale_log_normalizer(prior, m, np.array([S]))[0]
    assert log_z == pytest.approx(_quad_log_normalizer(prior, m, S, log_z), abs=1e-8)


def test_scale_normalizer_is_vectorized_over_draws(monkeypatch):
    prior, m = P.HalfCauchy(5.0), 8
    S = np.array([[1e-3, 1.0, 3.0], [10.0, 1e3, 0.2]])
    joint = evidence._scale_log_normalizer(prior, m, S)
    one_by_one = [evidence._scale_log_normalizer(prior, m, np.array([s]))[0] for s in S.ravel()]
    assert joint.shape == S.shape
    np.testing.assert_allclose(joint.ravel(), one_by_one, rtol=0, atol=1e-10)
    monkeypatch.setattr(evidence, "_SCALE_CHUNK", 4)  # chunks of 4 draws: the same values
    np.testing.assert_allclose(evidence._scale_log_normalizer(prior, m, S), joint, rtol=0,
                               atol=1e-10)


def test_inverse_gamma_conditional_closed_form():
    """Under InverseGamma(a, b, on="sigma2") the variance is IG(a + m/2, b + S/2); on the sd
    scale the density carries the Jacobian 2s. Checked against scipy and against the
    quadrature path."""
    prior, m, S, s = P.InverseGamma(2.0, 1.5, on="sigma2"), 12, np.array([0.5, 8.0, 40.0]), 1.3
    closed = evidence._scale_conditional_logpdf(prior, m, S, s)
    scipy_form = stats.invgamma.logpdf(s**2, 2.0 + m / 2, scale=1.5 + S / 2) + np.log(2 * s)
    by_quadrature = (evidence._scale_log_kernel(prior, m, S, s)
                     - evidence._scale_log_normalizer(prior, m, S))
    np.testing.assert_allclose(closed, scipy_form, rtol=0, atol=1e-12)
    np.testing.assert_allclose(closed, by_quadrature, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Failure demonstrations: the same rule rejects estimates with an injected bug
# --------------------------------------------------------------------------------------------
def _rejected(name, label, est) -> None:
    fit = fitted(name)
    z = z_score(est, fit.exact)
    shift = est.log_evidence - estimate(name).log_evidence
    print(f"\n{name}, {label}: error {est.log_evidence - fit.exact:+.4f} nats "
          f"(moved {shift:+.4f} by the bug), se {est.se:.4f}, z {z:+.2f}")
    assert abs(z) > Z_MAX


@pytest.mark.parametrize("name", ["eight-schools", "synthetic"])
def test_rejects_density_on_the_variance_scale(monkeypatch, name):
    """The conditional density of tau^2 (or sigma^2) used as that of tau: Jacobian 2s dropped."""
    original = evidence._scale_conditional_logpdf
    monkeypatch.setattr(evidence, "_scale_conditional_logpdf",
                        lambda prior, m, ss, s: original(prior, m, ss, s) - np.log(2 * s))
    _rejected(name, "variance-scale density", fitted(name).estimate())


def test_rejects_prior_left_out_of_the_conditional(monkeypatch):
    """p(tau | b) normalized without the prior factor (the likelihood part alone)."""
    def no_prior(prior, m, ss, s):
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            out = -m * np.log(s) - 0.5 * ss / np.square(s)
        return np.where(np.isnan(out), -np.inf, out)

    monkeypatch.setattr(evidence, "_scale_log_kernel", no_prior)
    _rejected("eight-schools", "prior dropped", fitted("eight-schools").estimate())


def test_rejects_wrong_number_of_levels(monkeypatch):
    """tau^-(J-1) in place of tau^-J in the group scales' conditionals (sigma's m = n kept)."""
    n = len(fitted("sleepstudy").y)
    original = evidence._scale_conditional_logpdf
    monkeypatch.setattr(evidence, "_scale_conditional_logpdf",
                        lambda prior, m, ss, s: original(prior, m if m == n else m - 1, ss, s))
    _rejected("sleepstudy", "J_k - 1", fitted("sleepstudy").estimate())


def test_rejects_skipped_reduced_runs(monkeypatch):
    """The 'reduced' run samples the full posterior: p(sigma* | y) in place of
    p(sigma* | tau*, y)."""
    fit = fitted("synthetic")
    original = evidence.hierarchical_gibbs

    def not_reduced(X, y, groups, *, tau_priors, **kw):
        return original(X, y, groups, tau_priors=fit.model["tau_priors"], **kw)

    monkeypatch.setattr(evidence, "hierarchical_gibbs", not_reduced)
    _rejected("synthetic", "reduced runs skipped", fit.estimate())


def test_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(evidence.chib_hierarchical, "chib_hierarchical",
                            globs=dict(vars(evidence))):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def _call(fit, posterior=None, **changes):
    kw = dict(fit.model, posterior=fit.posterior if posterior is None else posterior,
              reduced_draws=100, tune=0, chains=1, seed=SEED)
    kw.update(changes)
    X, y, groups = kw.pop("X", fit.X), kw.pop("y", fit.y), kw.pop("groups", fit.groups)
    return evidence.chib_hierarchical(X, y, groups, **kw)


def _posterior_dict(fit, drop=(), **replace):
    post = {k: np.asarray(v) for k, v in fit.posterior["posterior"].data_vars.items()
            if k not in drop}
    post.update(replace)
    return {"posterior": post}


@pytest.mark.parametrize(("change", "match"), [
    ({"groups": []}, "at least one group term"),
    ({"posterior": 3.0}, "'posterior' group"),
    ({"names": ["a", "b"]}, "names must hold 1 strings"),
    ({"beta_cov": None}, "improper prior"),
    ({"tau_priors": {"1|school": P.Flat()}}, "Flat"),
    ({"tau_priors": {}}, "tau_priors needs exactly one prior"),
    ({"reduced_draws": 10}, "reduced_draws must be an integer >= 40"),
    ({"chains": 0}, "chains must be an integer >= 1"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_bad_arguments(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _call(fitted("eight-schools"), **change)


def test_bad_posteriors():
    fit = fitted("eight-schools")
    with pytest.raises(ValueError, match=r"no '1\|school_sigma' \(a free scale\)"):
        _call(fit, _posterior_dict(fit, drop=["1|school_sigma"]))
    with pytest.raises(ValueError, match=r"no '1\|school' \(group effects\)"):
        _call(fit, _posterior_dict(fit, drop=["1|school"]))
    b = np.asarray(fit.posterior["posterior"]["1|school"])
    with pytest.raises(ValueError, match="has 7 levels but the group term has 8"):
        _call(fit, _posterior_dict(fit, **{"1|school": b[..., :7]}))
    tau = np.asarray(fit.posterior["posterior"]["1|school_sigma"])
    with pytest.raises(ValueError, match="too few draws"):
        _call(fit, _posterior_dict(fit, **{"1|school_sigma": tau[:, :20]}))
    with pytest.raises(ValueError, match="values <= 0"):
        _call(fit, _posterior_dict(fit, **{"1|school_sigma": -tau}))
    with pytest.raises(ValueError, match=r"must be shaped \(chain, draw\)"):
        _call(fit, _posterior_dict(fit, **{"1|school_sigma": tau.ravel()}))
    with pytest.raises(ValueError, match="NaN or inf"):
        _call(fit, _posterior_dict(fit, **{"1|school": b * np.nan}))
    # sigma free: the main run must hold it
    radon = fitted("radon-intercepts")
    with pytest.raises(ValueError, match="no 'sigma'"):
        _call(radon, _posterior_dict(radon, drop=["sigma"]))


# --------------------------------------------------------------------------------------------
# Slow: coverage of the +-2 se interval over independent runs
# --------------------------------------------------------------------------------------------
N_COVERAGE = 50


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eight-schools", "synthetic"])
def test_coverage_over_seeds(name):
    """50 independent main and reduced runs (4 x 1000 draws): the fraction of +-2 se intervals
    covering the exact value, and sum z^2 against chi-square(50). If the standard errors are
    right the coverage is about 95.4%; fewer than the 0.1% binomial quantile covered, or sum
    z^2 outside the central 99.9% of chi-square(50), fails."""
    base = fitted(name)
    z = []
    for r in range(N_COVERAGE):
        seed = SEED + 1 + r
        dt = hierarchical_gibbs(base.X, base.y, base.groups, draws=1000, tune=TUNE,
                                chains=CHAINS, seed=seed, **base.model)
        est = evidence.chib_hierarchical(base.X, base.y, base.groups, posterior=dt,
                                         reduced_draws=1000, tune=TUNE, chains=CHAINS,
                                         seed=seed, **base.model)
        z.append(z_score(est, base.exact))
    z = np.array(z)
    covered = int(np.sum(np.abs(z) <= 2))
    print(f"\n{name}: +-2 se coverage {covered}/{N_COVERAGE} = {covered / N_COVERAGE:.2f}, "
          f"mean z {z.mean():+.2f}, sd z {z.std(ddof=1):.2f}, sum z^2 {np.sum(z**2):.1f}")
    assert covered >= stats.binom(N_COVERAGE, 0.9545).ppf(0.001)
    lo, hi = stats.chi2(N_COVERAGE).ppf([0.0005, 0.9995])
    assert lo <= np.sum(z**2) <= hi
