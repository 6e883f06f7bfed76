r"""Estimators of the log marginal likelihood (log evidence), each with an honest error bar.

The evidence of a model with parameters :math:`\theta`, prior :math:`p(\theta)` and likelihood
:math:`p(y \mid \theta)` is the normalizing constant of the unnormalized posterior
:math:`q(\theta) = p(y \mid \theta)\, p(\theta)`:

.. math::

    p(y) = \int q(\theta)\, d\theta .

Every estimator here works from a function ``log_density`` returning :math:`\log q` (with the
prior and the likelihood *fully normalized*, otherwise the answer is off by the dropped
constants) or, for the linear model, from the model's pieces directly. All return an
:class:`EvidenceEstimate` ``(method, log_evidence, se, details)``; ``se`` is a Monte Carlo
standard error of ``log_evidence`` (``None`` for the deterministic Laplace approximation).

Methods
-------
* :func:`bridge_sampling`: the iterative optimal bridge of Meng and Wong (1996), as laid out by
  Gronau et al. (2017), with a Gaussian proposal or the warp-III transformation (Meng and
  Schilling 2002; Overstall and Forster 2010); error from Fruhwirth-Schnatter (2004).
* :func:`laplace`: Tierney and Kadane (1986).
* :func:`laplace_scales`: Laplace over the log scales of the hierarchical Gaussian model with the
  coefficients integrated exactly, the first step of INLA (Rue, Martino and Chopin 2009).
* :func:`chib_linear_gibbs`: Chib (1995) from Gibbs output of the linear model.
* :func:`chib_hierarchical`: Chib (1995) for the hierarchical Gaussian model, from the output of
  :func:`reference.hierarchical.hierarchical_gibbs` and reduced runs with scales held fixed.
* :func:`chib_jeliazkov`: Chib and Jeliazkov (2001) from random-walk Metropolis output.
* :func:`evidence_curve`: the exact evidence of the Gaussian known-noise model over a grid of
  prior scales and its maximizer (type-II maximum likelihood), from
  :class:`reference.conjugate.GaussianKnownNoise`.

The unconstrained scale
-----------------------
Bridge sampling, Laplace and Chib-Jeliazkov need a density on :math:`\mathbb{R}^d`. A positive
parameter :math:`\sigma` is written :math:`u = \log\sigma` and the caller adds the log-Jacobian
:math:`u` to ``log_density``; the evidence (the integral) is unchanged by the change of
variables. ``log_density`` takes an array of points shaped (m, d) and returns (m,) values, so
that thousands of draws are evaluated in one vectorized call.

Monte Carlo error with dependent draws
--------------------------------------
The variance of a mean of MCMC output is :math:`\mathrm{Var}(h)/\mathrm{ESS}`. The effective
sample size is estimated per chain with Geyer's (1992) initial monotone sequence
(:func:`geyer_ess`), or the variance directly by batch means (:func:`batch_means_variance`;
Flegal, Haran and Jones 2008). Chains are treated as independent, so a sampler stuck in
different modes in different chains is *not* detected here: check R-hat first.

References
----------
.. [1] Meng, X.-L. and Wong, W. H. (1996). Simulating ratios of normalizing constants via a simple
   identity: a theoretical exploration. *Statistica Sinica* 6, 831-860.
.. [2] Meng, X.-L. and Schilling, S. (2002). Warp bridge sampling. *J. Comput. Graph. Statist.*
   11(3), 552-586.
.. [3] Overstall, A. M. and Forster, J. J. (2010). Default Bayesian model determination methods
   for generalised linear mixed models. *Comput. Statist. Data Anal.* 54(12), 3269-3288.
.. [4] Gronau, Q. F., Sarafoglou, A., Matzke, D., Ly, A., Boehm, U., Marsman, M., Leslie, D. S.,
   Forster, J. J., Wagenmakers, E.-J. and Steingroever, H. (2017). A tutorial on bridge
   sampling. *J. Math. Psych.* 81, 80-97.
.. [5] Fruhwirth-Schnatter, S. (2004). Estimating marginal likelihoods for mixture and Markov
   switching models using bridge sampling techniques. *Econometrics Journal* 7, 143-167.
.. [6] Tierney, L. and Kadane, J. B. (1986). Accurate approximations for posterior moments and
   marginal densities. *JASA* 81(393), 82-86.
.. [7] Chib, S. (1995). Marginal likelihood from the Gibbs output. *JASA* 90(432), 1313-1321.
.. [8] Chib, S. and Jeliazkov, I. (2001). Marginal likelihood from the Metropolis-Hastings
   output. *JASA* 96(453), 270-281.
.. [9] Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4),
   473-483.
.. [10] Flegal, J. M., Haran, M. and Jones, G. L. (2008). Markov chain Monte Carlo: can we trust
   the third significant figure? *Statistical Science* 23(2), 250-260.
.. [11] MacKay, D. J. C. (1992). Bayesian interpolation. *Neural Computation* 4(3), 415-447.
.. [12] Rue, H., Martino, S. and Chopin, N. (2009). Approximate Bayesian inference for latent
   Gaussian models by using integrated nested Laplace approximations. *JRSS B* 71(2), 319-392.

Examples
--------
The derivation seed's three-point regression with known noise and prior N(0, I), whose exact
log evidence is -5.4775:

>>> from scipy import stats
>>> from reference.conjugate import GaussianKnownNoise
>>> X, y = np.array([[1.0, 0], [1, 1], [1, 2]]), np.array([1.0, 2, 4])
>>> def log_density(b):  # (m, 2) -> (m,)
...     lik = stats.norm.logpdf(y, b @ X.T, 1.0).sum(axis=1)
...     return lik + stats.norm.logpdf(b).sum(axis=1)
>>> post = GaussianKnownNoise(X, y, noise_var=1.0)
>>> draws = post.sample(np.random.default_rng(1), 4000).reshape(4, 1000, 2)
>>> est = bridge_sampling(draws, log_density, seed=1)
>>> round(post.log_evidence(), 4), abs(est.log_evidence - post.log_evidence()) < 3 * est.se
(-5.4775, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize, special, stats

from reference import priors as P
from reference._validation import as_design, positive_scalar, spd_matrix, vector
from reference.conjugate import GaussianKnownNoise
from reference.design import GroupTerm, sufficient_stats
from reference.gibbs import BetaPrior, GibbsData, residual_terms
from reference.hierarchical import (
    _sigma_setting,
    _tau_priors,
    hierarchical_gibbs,
    least_squares_point,
    residual_ss,
)
from reference.quadrature import _build_conditional, _conditional_batch, _scale_map

__all__ = [
    "EvidenceCurve",
    "EvidenceEstimate",
    "batch_means_variance",
    "bridge_sampling",
    "chib_hierarchical",
    "chib_jeliazkov",
    "chib_linear_gibbs",
    "evidence_curve",
    "geyer_ess",
    "laplace",
    "laplace_scales",
]

LOG_2PI = np.log(2.0 * np.pi)
#: fewest draws in total that any Monte Carlo estimator here accepts
MIN_DRAWS = 100
#: fewest draws per chain: bridge sampling splits every chain in two halves of at least 20
MIN_PER_CHAIN = 40
#: bridge sampling methods
PROPOSALS = ("normal", "warp3")
#: mixed into every seed here, so that the proposal stream differs from the stream
#: ``default_rng(seed)`` or ``SeedSequence(seed).spawn(C)`` a sampler may have used for the
#: draws themselves (reusing those normals would correlate proposals with draws)
_SEED_TAG = 0x45564944


def _rng(seed: int) -> np.random.Generator:
    """The estimators' own random stream for ``seed`` (see ``_SEED_TAG``)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; received {seed!r}.")
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SEED_TAG]))


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvidenceEstimate:
    """An estimate of the log evidence :math:`\\log p(y)`.

    Attributes
    ----------
    method : str
        Which estimator produced it (``"bridge-normal"``, ``"bridge-warp3"``, ``"laplace"``,
        ``"chib"``, ``"chib-jeliazkov"``).
    log_evidence : float
        The estimate, in nats.
    se : float or None
        Its Monte Carlo standard error in nats; ``None`` when the method gives none (Laplace,
        whose error is a deterministic bias), 0 when the estimate is exact.
    details : dict
        Method-specific diagnostics (iterations, effective sample sizes, the point used, ...).
    """

    method: str
    log_evidence: float
    se: float | None
    details: dict = field(default_factory=dict, compare=False)

    def interval(self, k: float = 2.0) -> tuple[float, float]:
        """``log_evidence -+ k * se``; raises when there is no standard error."""
        if self.se is None:
            raise ValueError(f"the {self.method} estimate has no standard error.")
        return self.log_evidence - k * self.se, self.log_evidence + k * self.se

    def __str__(self) -> str:
        se = "n/a" if self.se is None else f"{self.se:.4f}"
        return f"{self.method}: log p(y) = {self.log_evidence:.4f} (se {se})"


@dataclass(frozen=True)
class EvidenceCurve:
    """Log evidence over a grid of prior scales and its maximizer (see :func:`evidence_curve`).

    Attributes
    ----------
    scales, log_evidence : ndarray
        The grid and the exact log evidence at every grid point.
    best_scale, best_log_evidence : float
        The maximizer (refined between the grid points next to the best one) and its value.
    at_boundary : bool
        The best grid point is the first or last one: the maximizer may lie outside the grid.
    """

    scales: np.ndarray
    log_evidence: np.ndarray
    best_scale: float
    best_log_evidence: float
    at_boundary: bool


# --------------------------------------------------------------------------------------------
# Monte Carlo error of means of (possibly dependent) draws
# --------------------------------------------------------------------------------------------
def geyer_ess(x) -> float:
    r"""Effective sample size of draws shaped (chain, draw): the sum of per-chain estimates.

    For one chain :math:`h_1, \dots, h_N` with autocovariances :math:`\hat\gamma_t` (biased
    estimator, divided by N, computed by FFT), Geyer (1992, section 3.3) forms the sums of
    adjacent pairs :math:`\Gamma_m = \hat\gamma_{2m} + \hat\gamma_{2m+1}`, which are positive
    and decreasing for a reversible chain:

    1. *initial positive sequence*: keep :math:`\Gamma_0, \dots, \Gamma_{M}` up to the last one
       before the first :math:`\Gamma_m \le 0`;
    2. *initial monotone sequence*: replace each :math:`\Gamma_m` by
       :math:`\min(\Gamma_0, \dots, \Gamma_m)`;
    3. the asymptotic variance of the mean times N is :math:`\hat\sigma^2 = -\hat\gamma_0 +
       2\sum_m \Gamma_m`, and :math:`\mathrm{ESS} = N\hat\gamma_0 / \hat\sigma^2`.

    The per-chain value is capped at :math:`N\log_{10} N` (antithetic chains can beat
    independent draws, but not by more; the cap used by Stan). Chains are independent, so their
    effective sizes add. A constant chain contributes N (its mean has no error).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 4:
        raise ValueError(f"x must be shaped (chain, draw) with at least 4 draws per chain; "
                         f"received shape {x.shape}.")
    C, N = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    # autocovariances of every chain by FFT, zero-padded to avoid wrap-around
    nfft = 1 << int(np.ceil(np.log2(2 * N)))
    spec = np.fft.rfft(xc, n=nfft, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), n=nfft, axis=1)[:, :N] / N
    gamma0 = acov[:, 0]
    n_pairs = N // 2
    pairs = acov[:, 0:2 * n_pairs:2] + acov[:, 1:2 * n_pairs:2]  # Gamma_m, (C, n_pairs)
    # step 1: initial positive sequence (everything after the first Gamma_m <= 0 is dropped)
    positive_so_far = np.cumprod(pairs > 0, axis=1).astype(bool)
    # step 2: initial monotone sequence
    monotone = np.minimum.accumulate(np.where(positive_so_far, pairs, np.inf), axis=1)
    monotone = np.where(positive_so_far, monotone, 0.0)
    # step 3: asymptotic variance and ESS per chain
    sigma2 = -gamma0 + 2.0 * monotone.sum(axis=1)
    cap = N * np.log10(N)
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = np.where(gamma0 > 0, N * gamma0 / sigma2, N)
    ess = np.where((gamma0 > 0) & (sigma2 <= 0), cap, ess)
    return float(np.minimum(ess, cap).sum())


def batch_means_variance(x) -> float:
    r"""Variance of the grand mean of draws shaped (chain, draw), by non-overlapping batch means.

    Each chain of length N is cut into :math:`B = \lfloor N/b \rfloor` batches of
    :math:`b = \lfloor\sqrt N\rfloor` consecutive draws (the first :math:`N - Bb` draws are
    dropped); with K batch means :math:`\bar h_k` pooled over the chains,

    .. math::

        \widehat{\mathrm{Var}}(\bar h) = \frac{1}{K}\,\frac{1}{K-1}\sum_{k=1}^K
        (\bar h_k - \bar{\bar h})^2 .

    Batches of :math:`\sqrt N` draws give a consistent estimator (Flegal, Haran and Jones 2008).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 4:
        raise ValueError(f"x must be shaped (chain, draw) with at least 4 draws per chain; "
                         f"received shape {x.shape}.")
    C, N = x.shape
    b = int(np.floor(np.sqrt(N)))
    B = N // b
    batches = x[:, N - B * b:].reshape(C, B, b).mean(axis=2).ravel()
    return float(batches.var(ddof=1) / batches.size)


# --------------------------------------------------------------------------------------------
# Input handling shared by the sampling-based estimators
# --------------------------------------------------------------------------------------------
def _check_callable(log_density) -> None:
    if not callable(log_density):
        raise TypeError(f"log_density must be a callable (m, d) -> (m,); received "
                        f"{type(log_density).__name__}.")


def _evaluate(log_density: Callable, points: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """``log_density(points)`` as a float (m,) array; NaN becomes -inf and is counted.

    +inf is always an error: a log density is finite or -inf.
    """
    values = np.asarray(log_density(points), dtype=float)
    m = points.shape[0]
    if values.shape != (m,):
        raise ValueError(f"log_density must return shape ({m},) for points shaped {points.shape} "
                         f"(the {what}); it returned shape {values.shape}.")
    if np.any(values == np.inf):
        raise ValueError(f"log_density returned +inf at {int(np.sum(values == np.inf))} of the "
                         f"{what}; a log density must be finite or -inf.")
    is_nan = np.isnan(values)
    return np.where(is_nan, -np.inf, values), int(is_nan.sum())


def _evaluate_at_draws(log_density: Callable, points: np.ndarray, coords: Sequence[str]):
    """Log density at posterior draws, which must all be finite (they come from the posterior)."""
    values, _ = _evaluate(log_density, points, "posterior draws")
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        at = {c: round(float(v), 6) for c, v in zip(coords, points[i], strict=True)}
        raise ValueError(
            f"log_density is -inf or NaN at {int(bad.sum())} of {len(values)} posterior draws "
            f"(first at {at}); draws of the posterior must have a finite density (is a "
            "transform or a Jacobian missing?)."
        )
    return values


def _coord_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _draw_array(draws, expected_names=None, *, what: str = "draws") -> tuple[np.ndarray, list]:
    """Draws as a float array (chain, draw, d) and the name of every coordinate.

    Accepts an array (chain, draw, d) or a dict name -> array (chain, draw, ...); the dict's
    trailing axes are flattened in C order and concatenated in ``expected_names`` order (dict
    order when not given).
    """
    if isinstance(draws, Mapping):
        if not draws:
            raise ValueError(f"{what} is an empty dict; give name -> array (chain, draw, ...).")
        names = list(draws)
        if expected_names is not None:
            expected = list(expected_names)
            missing = [k for k in expected if k not in draws]
            unexpected = [k for k in names if k not in expected]
            if missing or unexpected:
                raise ValueError(f"the {what} have parameters {names} but {expected} are "
                                 f"expected: missing {missing}, unexpected {unexpected}.")
            names = expected
        arrays, coords = [], []
        for k in names:
            a = np.asarray(draws[k], dtype=float)
            if a.ndim < 2:
                raise ValueError(f"{what}[{k!r}] must be shaped (chain, draw, ...); received "
                                 f"shape {a.shape}.")
            if a.shape[:2] != np.shape(draws[names[0]])[:2]:
                raise ValueError(f"every entry of {what} must share (chain, draw) = "
                                 f"{np.shape(draws[names[0]])[:2]}; {k!r} has {a.shape[:2]}.")
            arrays.append(a.reshape(a.shape[0], a.shape[1], -1))
            coords += _coord_names(k, a.shape[2:])
        x = np.concatenate(arrays, axis=2)
    else:
        if expected_names is not None:
            raise TypeError("expected_names applies to dict draws only; an array has no names.")
        x = np.asarray(draws, dtype=float)
        if x.ndim != 3:
            raise ValueError(f"{what} must be an array (chain, draw, d) or a dict of arrays "
                             f"(chain, draw, ...); received an array with shape {x.shape}.")
        coords = [f"theta[{j}]" for j in range(x.shape[2])]
    C, N, d = x.shape
    if d == 0:
        raise ValueError(f"the {what} have no parameters (shape {x.shape}).")
    if C * N < MIN_DRAWS or N < MIN_PER_CHAIN:
        raise ValueError(f"too few {what}: {C} chain(s) x {N} draws; at least {MIN_DRAWS} in "
                         f"total and {MIN_PER_CHAIN} per chain are needed.")
    bad = ~np.isfinite(x)
    if bad.any():
        c, i, j = np.argwhere(bad)[0]
        raise ValueError(f"the {what} contain {int(bad.sum())} NaN or inf value(s), the first at "
                         f"chain {c}, draw {i} of {coords[j]!r}; every draw must be finite.")
    return x, coords


def _mvn_logpdf_chol(x: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    r""":math:`\log N(x \mid \mu, LL^\top)` for rows of x (m, d), via one triangular solve."""
    z = linalg.solve_triangular(chol, (x - mean).T, lower=True)
    d = mean.shape[0]
    return -0.5 * d * LOG_2PI - np.log(np.diag(chol)).sum() - 0.5 * np.sum(z * z, axis=0)


# --------------------------------------------------------------------------------------------
# Bridge sampling
# --------------------------------------------------------------------------------------------
def bridge_sampling(draws, log_density: Callable[[np.ndarray], np.ndarray], *,
                    proposal: str = "normal", seed: int = 0, max_iter: int = 1000,
                    tol: float = 1e-10, expected_names: Sequence[str] | None = None
                    ) -> EvidenceEstimate:
    r"""Log evidence by bridge sampling with the iterative optimal bridge function.

    **Identity** (Meng and Wong 1996, eq. 2.1). For any proposal density :math:`g` and bridge
    function :math:`h`, with :math:`q` the unnormalized posterior and :math:`p(y) = \int q`,

    .. math::

        p(y) = \frac{E_g[q(\theta)\, h(\theta)]}{E_{\mathrm{post}}[g(\theta)\, h(\theta)]}.

    **Optimal bridge** (Meng and Wong 1996, eq. 4.1; Gronau et al. 2017, eq. 18). With
    :math:`N_1` posterior draws :math:`\theta_i`, :math:`N_2` proposal draws :math:`\tilde\theta_j`,
    :math:`s_k = N_k / (N_1 + N_2)` and the ratios :math:`l_{1i} = q(\theta_i)/g(\theta_i)`,
    :math:`l_{2j} = q(\tilde\theta_j)/g(\tilde\theta_j)`, iterate to a fixed point

    .. math::

        \hat p^{(t+1)} = \frac{\frac{1}{N_2}\sum_j \frac{l_{2j}}{s_1 l_{2j} + s_2 \hat p^{(t)}}}
                              {\frac{1}{N_1}\sum_i \frac{1}{s_1 l_{1i} + s_2 \hat p^{(t)}}} .

    Everything is done on the log scale (the sums by log-sum-exp, :math:`\log(s_1 l + s_2\hat p)`
    by ``logaddexp``), so no ratio ever over- or underflows.

    **Steps** (Gronau et al. 2017, section 4):

    1. split every chain in two halves; the first halves, pooled, give the mean :math:`\mu`
       and covariance :math:`\Sigma = LL^\top` of the proposal (using the same draws for both
       jobs would bias the estimate);
    2. draw :math:`N_2 = N_1` proposal points (``seed``);
    3. evaluate :math:`\log l_1` at the second-half draws and :math:`\log l_2` at the proposal
       points and iterate until the log estimate changes by less than ``tol``.

    **Proposals.** ``"normal"``: :math:`g = N(\mu, \Sigma)`. ``"warp3"`` (warp-III, Meng and
    Schilling 2002, section 3; Overstall and Forster 2010; Gronau et al. 2017, section 5):
    standardize :math:`\eta = L^{-1}(\theta - \mu)` and symmetrize, bridging the warped density

    .. math::

        \tilde q(\eta) = \frac{|L|}{2}\left[q(\mu + L\eta) + q(\mu - L\eta)\right],

    which has the same integral :math:`p(y)` and matches the first two moments *and* the
    symmetry of :math:`g = N(0, I)`, to :math:`N(0, I)`. At a posterior draw this needs
    :math:`q` at the mirrored point :math:`2\mu - \theta_i`; both :math:`\tilde q` and :math:`g`
    are even, so the random sign that turns :math:`\eta_i` into a draw of :math:`\tilde q` does
    not change :math:`l_1` and is omitted. Warp-III costs two density evaluations per point and
    pays off for skewed posteriors.

    **Error** (Fruhwirth-Schnatter 2004, section 3.4; Gronau et al. 2017, eq. 20). With the
    normalized posterior :math:`\pi = q/\hat p`, :math:`f_1 = \pi/(s_1\pi + s_2 g)` and
    :math:`f_2 = g/(s_1\pi + s_2 g)`, the relative mean squared error of :math:`\hat p` is

    .. math::

        \mathrm{RE}^2 \approx \frac{1}{N_2}\frac{\mathrm{Var}_g(f_1)}{E_g(f_1)^2}
        + \frac{1}{\mathrm{ESS}(f_2)}\frac{\mathrm{Var}_{\mathrm{post}}(f_2)}
          {E_{\mathrm{post}}(f_2)^2},

    where the second term uses the effective sample size of :math:`f_2` along the second-half
    chains (:func:`geyer_ess`) in place of :math:`N_1/\rho_{f_2}(0)`. By the delta method the
    standard error of :math:`\log\hat p` is :math:`\mathrm{RE}`.

    Parameters
    ----------
    draws : ndarray (chain, draw, d) or dict name -> ndarray (chain, draw, ...)
        Posterior draws on the *unconstrained* scale (positive parameters on the log scale).
        At least 100 draws in total and 40 per chain; the first halves must outnumber d.
    log_density : callable ``ndarray (m, d) -> ndarray (m,)``
        :math:`\log q` on the same scale, *including* the log-Jacobian of any transform and
        every normalizing constant of prior and likelihood. It must be finite at every draw;
        -inf (or NaN) at a proposal point is allowed (no mass there).
    proposal : {"normal", "warp3"}
    seed : int
        Seed of the proposal draws (mixed with a fixed tag, so reusing the sampler's seed does
        not reproduce the sampler's own normals).
    max_iter : int
        Maximum number of fixed-point iterations; a ``RuntimeWarning`` is issued (and
        ``details["converged"]`` is False) if they run out.
    tol : float
        Convergence threshold on the change of :math:`\log\hat p` between iterations.
    expected_names : sequence of str, optional
        For dict draws: the parameter names the log density expects, in its order. A mismatch
        is an error; without it the dict's own order is used.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``iterations``, ``converged``, ``re2`` (relative MSE), ``ess`` (of
        :math:`f_2`), ``n_posterior`` (:math:`N_1`), ``n_proposal`` (:math:`N_2`),
        ``n_nan`` (proposal or mirrored points where the density was NaN, treated as -inf),
        ``coords`` (the parameter of every column).
    """
    _check_callable(log_density)
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}; received {proposal!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1; received {max_iter!r}.")
    tol = positive_scalar("tol", tol)
    rng = _rng(seed)
    theta, coords = _draw_array(draws, expected_names)
    C, N, d = theta.shape

    # step 1: split every chain; the first halves fit the proposal's mean and covariance
    half = N // 2
    fit = theta[:, :half].reshape(-1, d)
    if fit.shape[0] <= d:
        raise ValueError(f"too few draws to fit a {d}-dimensional proposal: the first halves hold "
                         f"{fit.shape[0]} draws and at least {d + 1} are needed.")
    mu = fit.mean(axis=0)
    cov = np.atleast_2d(np.cov(fit, rowvar=False))
    try:
        L = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise ValueError("the covariance of the first-half draws is singular (a parameter is "
                         "constant or collinear with others); bridge sampling needs it to be "
                         "positive definite.") from None
    log_det_L = float(np.log(np.diag(L)).sum())
    post = theta[:, half:]  # (C, N - half, d), the part used in the iteration
    post_flat = post.reshape(-1, d)
    n1 = post_flat.shape[0]
    n2 = n1

    # step 2: the proposal points (standard normal z; theta = mu + L z)
    z = rng.standard_normal((n2, d))
    log_std_normal_z = -0.5 * d * LOG_2PI - 0.5 * np.sum(z * z, axis=1)

    # step 3: log ratios l1 (posterior draws) and l2 (proposal points)
    q_post = _evaluate_at_draws(log_density, post_flat, coords)
    if proposal == "normal":
        log_g_post = _mvn_logpdf_chol(post_flat, mu, L)
        q_prop, n_nan = _evaluate(log_density, mu + z @ L.T, "proposal points")
        log_l1 = q_post - log_g_post
        log_l2 = q_prop - (log_std_normal_z - log_det_L)  # g(mu + Lz) = N(z; 0, I) / |L|
    else:
        # warp-III: log q~(eta) = log|L| + log((q(mu + L eta) + q(mu - L eta)) / 2)
        eta_post = linalg.solve_triangular(L, (post_flat - mu).T, lower=True).T
        q_mirror, nan_a = _evaluate(log_density, 2.0 * mu - post_flat, "mirrored draws")
        q_plus, nan_b = _evaluate(log_density, mu + z @ L.T, "proposal points")
        q_minus, nan_c = _evaluate(log_density, mu - z @ L.T, "mirrored proposal points")
        n_nan = nan_a + nan_b + nan_c
        log_warp_post = log_det_L + np.logaddexp(q_post, q_mirror) - np.log(2.0)
        log_warp_prop = log_det_L + np.logaddexp(q_plus, q_minus) - np.log(2.0)
        log_l1 = log_warp_post - (-0.5 * d * LOG_2PI - 0.5 * np.sum(eta_post**2, axis=1))
        log_l2 = log_warp_prop - log_std_normal_z

    # step 4: the fixed-point iteration of the optimal bridge, on the log scale
    log_s1, log_s2 = np.log(n1 / (n1 + n2)), np.log(n2 / (n1 + n2))
    log_p = float(np.median(log_l1))  # any start converges; this one is on the right scale
    converged = False
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        numerator = special.logsumexp(log_l2 - np.logaddexp(log_s1 + log_l2, log_s2 + log_p))
        denominator = special.logsumexp(-np.logaddexp(log_s1 + log_l1, log_s2 + log_p))
        new = float(numerator - np.log(n2) - (denominator - np.log(n1)))
        change = abs(new - log_p)
        log_p = new
        if change < tol:
            converged = True
            break
    if not np.isfinite(log_p):
        raise ValueError("bridge sampling failed: the estimate is not finite (the log density "
                         "is -inf at every proposal point?).")
    if not converged:
        warnings.warn(f"bridge sampling did not converge in {max_iter} iterations (last change "
                      f"{change:.2e} > tol {tol:.1e}); raise max_iter.", RuntimeWarning,
                      stacklevel=2)

    # step 5: relative mean squared error (Fruhwirth-Schnatter 2004)
    # f2 at posterior draws: g / (s1 pi + s2 g) = 1 / (s1 l1 / p + s2), bounded by 1 / s2
    f2_post = np.exp(-np.logaddexp(log_s1 + log_l1 - log_p, log_s2))
    # f1 at proposal points: pi / (s1 pi + s2 g) = (l2 / p) / (s1 l2 / p + s2), bounded by 1 / s1
    f1_prop = np.exp(log_l2 - log_p - np.logaddexp(log_s1 + log_l2 - log_p, log_s2))
    ess = geyer_ess(f2_post.reshape(C, N - half))
    re2 = (f1_prop.var(ddof=1) / f1_prop.mean() ** 2 / n2
           + f2_post.var(ddof=1) / f2_post.mean() ** 2 / ess)
    details = {"iterations": iteration, "converged": converged, "re2": float(re2),
               "ess": ess, "n_posterior": n1, "n_proposal": n2, "n_nan": n_nan,
               "coords": coords}
    return EvidenceEstimate(f"bridge-{proposal}", log_p, float(np.sqrt(re2)), details)


# --------------------------------------------------------------------------------------------
# Laplace approximation
# --------------------------------------------------------------------------------------------
#: relative finite-difference step for second derivatives: eps^(1/4) balances truncation and
#: rounding error of a central second difference
_FD_STEP = np.finfo(float).eps ** 0.25
#: rows of stencil points evaluated per call of the log density
_FD_CHUNK = 4096


def _finite_differences(log_density: Callable, x: np.ndarray, h: np.ndarray, hessian: bool):
    r"""Value, gradient and (optionally) Hessian of the log density at x by central differences.

    With steps :math:`h_i` along the axes,

    .. math::

        g_i &= \frac{f(x + h_i e_i) - f(x - h_i e_i)}{2h_i}, \\
        H_{ii} &= \frac{f(x + h_i e_i) - 2 f(x) + f(x - h_i e_i)}{h_i^2}, \\
        H_{ij} &= \frac{f(x{+}h_i e_i{+}h_j e_j) - f(x{+}h_i e_i{-}h_j e_j)
                       - f(x{-}h_i e_i{+}h_j e_j) + f(x{-}h_i e_i{-}h_j e_j)}{4 h_i h_j}.

    All stencil points go through the (vectorized) log density in chunks.
    """
    d = x.size
    steps = np.diag(h)
    points = [x[None, :], x + steps, x - steps]
    iu, ju = np.triu_indices(d, k=1) if hessian else (np.zeros(0, int), np.zeros(0, int))
    for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        points.append(x + si * steps[iu] + sj * steps[ju])
    points = np.concatenate(points)
    values = np.concatenate([_evaluate(log_density, points[k:k + _FD_CHUNK], "stencil points")[0]
                             for k in range(0, points.shape[0], _FD_CHUNK)])
    if not np.all(np.isfinite(values)):
        raise ValueError("log_density is not finite at every finite-difference point around "
                         f"{x.tolist()}; the Laplace approximation needs a smooth log density "
                         "on an open set (use unconstrained coordinates).")
    f0, fp, fm = values[0], values[1:d + 1], values[d + 1:2 * d + 1]
    grad = (fp - fm) / (2.0 * h)
    if not hessian:
        return f0, grad, None
    H = np.diag((fp - 2.0 * f0 + fm) / h**2)
    m = iu.size
    pp, pm, mp, mm = (values[2 * d + 1 + k * m: 2 * d + 1 + (k + 1) * m] for k in range(4))
    off = (pp - pm - mp + mm) / (4.0 * h[iu] * h[ju])
    H[iu, ju] = off
    H[ju, iu] = off
    return f0, grad, H


def laplace(log_density: Callable[[np.ndarray], np.ndarray], x0, *,
            hessian: Callable[[np.ndarray], np.ndarray] | None = None,
            max_newton: int = 20) -> EvidenceEstimate:
    r"""Laplace approximation of the log evidence (Tierney and Kadane 1986).

    Expanding :math:`\log q` to second order about its mode :math:`\hat\theta`, with
    :math:`A = -\nabla^2 \log q(\hat\theta)` positive definite,

    .. math::

        \log p(y) \approx \log q(\hat\theta) + \tfrac d2 \log 2\pi - \tfrac12 \log|A| .

    It is exact for a Gaussian posterior; otherwise its relative error is :math:`O(1/n)`, a
    bias, so no standard error is given (``se=None``). The answer depends on the
    parameterization: use the same unconstrained coordinates (with the Jacobian) as the other
    estimators.

    Steps:

    1. maximize :math:`\log q` from ``x0`` by BFGS (:func:`scipy.optimize.minimize`);
    2. refine by Newton steps :math:`\theta \leftarrow \theta + A^{-1}\nabla\log q` with
       central finite differences, whose steps are :math:`\epsilon^{1/4}` times the posterior
       standard deviation from the previous Hessian, until the predicted gain
       :math:`\tfrac12 \nabla^\top A^{-1}\nabla` is below 1e-10 nats;
    3. :math:`\log|A|` from the Cholesky factor of A (an error if A is not positive definite).

    Parameters
    ----------
    log_density : callable ``ndarray (m, d) -> ndarray (m,)``
        :math:`\log q` on the unconstrained scale (Jacobian included, constants kept).
    x0 : array_like (d,)
        Starting point of the mode search.
    hessian : callable ``ndarray (d,) -> ndarray (d, d)``, optional
        Exact Hessian of ``log_density``; finite differences are used otherwise.
    max_newton : int
        Maximum number of Newton refinement steps.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``mode``, ``neg_hessian`` (A), ``log_density_at_mode``, ``newton_steps``,
        ``gain`` (the last predicted gain, nats).
    """
    _check_callable(log_density)
    if hessian is not None and not callable(hessian):
        raise TypeError(f"hessian must be a callable (d,) -> (d, d) or None; received "
                        f"{type(hessian).__name__}.")
    x = np.atleast_1d(np.asarray(x0, dtype=float))
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"x0 must be a finite 1-D array (d,); received {np.asarray(x0)!r}.")
    d = x.size

    def neg_f(v):
        return -_evaluate(log_density, v[None, :], "optimizer point")[0][0]

    if not np.isfinite(neg_f(x)):
        raise ValueError(f"log_density is not finite at x0 = {x.tolist()}; start where it is.")
    # step 1: BFGS on -log q (gradient by scipy's finite differences)
    res = optimize.minimize(neg_f, x, method="BFGS")
    x = res.x

    def derivatives(v, h):
        f0, g, H = _finite_differences(log_density, v, h, hessian is None)
        if hessian is not None:
            H = np.asarray(hessian(v), dtype=float)
            if H.shape != (d, d) or not np.all(np.isfinite(H)):
                raise ValueError(f"hessian must return a finite ({d}, {d}) matrix; received "
                                 f"shape {H.shape}.")
        A = -0.5 * (H + H.T)
        try:
            chol = linalg.cholesky(A, lower=True)
        except linalg.LinAlgError:
            eig = np.linalg.eigvalsh(A).min()
            raise ValueError(f"the negative Hessian at {v.tolist()} is not positive definite "
                             f"(smallest eigenvalue {eig:.3g}): not at a mode, or the posterior "
                             "is improper or flat there.") from None
        return f0, g, A, chol

    # step 2: Newton refinement, finite-difference steps scaled to the posterior sd
    h = _FD_STEP * np.maximum(1.0, np.abs(x))
    f0, g, A, chol = derivatives(x, h)
    steps = 0
    gain = np.inf
    for steps in range(max_newton + 1):
        sd = np.sqrt(np.diag(linalg.cho_solve((chol, True), np.eye(d))))
        h = _FD_STEP * sd
        f0, g, A, chol = derivatives(x, h)
        delta = linalg.cho_solve((chol, True), g)
        gain = 0.5 * float(g @ delta)
        if gain < 1e-10 or steps == max_newton:
            break
        # a damped step: halve until log q does not decrease
        for _ in range(30):
            if -neg_f(x + delta) >= f0:
                x = x + delta
                break
            delta = 0.5 * delta
        else:
            break
    if gain > 1e-6:
        warnings.warn(f"the Laplace mode search stopped with a predicted gain of {gain:.2e} "
                      "nats; the mode may be inaccurate.", RuntimeWarning, stacklevel=2)
    # step 3: log q(mode) + d/2 log 2 pi - 1/2 log|A|
    log_det_A = 2.0 * float(np.log(np.diag(chol)).sum())
    log_z = float(f0 + 0.5 * d * LOG_2PI - 0.5 * log_det_A)
    details = {"mode": x, "neg_hessian": A, "log_density_at_mode": float(f0),
               "newton_steps": steps, "gain": gain, "optimizer": res.message}
    return EvidenceEstimate("laplace", log_z, None, details)


# --------------------------------------------------------------------------------------------
# Chib (1995): Gibbs output of the linear model
# --------------------------------------------------------------------------------------------
def _chains(a: np.ndarray, last: int) -> np.ndarray:
    """Reshape (S, ...) or (chain, S, ...) draws to (chain, S, ...); ``last`` trailing axes."""
    if a.ndim == last + 1:
        return a[None]
    return a


def chib_linear_gibbs(X, y, beta_draws, sigma2_draws=None, *, beta_mean=0.0, beta_cov,
                      a: float | None = None, b: float | None = None,
                      noise_var: float | None = None, nig: bool = False) -> EvidenceEstimate:
    r"""Log evidence of the Gaussian linear model from Gibbs output (Chib 1995).

    Model: :math:`y \mid \beta, \sigma^2 \sim N(X\beta, \sigma^2 I_n)`,
    :math:`\sigma^2 \sim \mathrm{InvGamma}(a, b)` and either
    :math:`\beta \sim N(m, V)` independently (semi-conjugate, ``nig=False``) or
    :math:`\beta \mid \sigma^2 \sim N(m, \sigma^2 V)` (``nig=True``); or :math:`\sigma^2` known
    (``noise_var``, then ``sigma2_draws``, ``a`` and ``b`` are not used).

    **Basic marginal likelihood identity** (Chib 1995, eq. 3), at any point :math:`\theta^*`:

    .. math::

        \log p(y) = \log p(y \mid \theta^*) + \log p(\theta^*) - \log p(\theta^* \mid y),

    evaluated at the posterior means :math:`\beta^* = \bar\beta`, :math:`\sigma^{2*} =
    \overline{\sigma^2}` (a high-density point, where the estimate is most precise). The
    posterior ordinate is split as

    .. math::

        p(\beta^*, \sigma^{2*} \mid y) = p(\beta^* \mid \sigma^{2*}, y)\; p(\sigma^{2*} \mid y):

    * :math:`p(\beta^* \mid \sigma^{2*}, y)` is the Gaussian full conditional, exact: it is the
      posterior of :class:`reference.conjugate.GaussianKnownNoise` with noise variance
      :math:`\sigma^{2*}` and prior covariance :math:`V` (or :math:`\sigma^{2*} V`);
    * :math:`p(\sigma^{2*} \mid y)` is Rao-Blackwellized over the S draws of :math:`\beta`
      (Chib 1995, eq. 7):

      .. math::

          \hat p(\sigma^{2*} \mid y) = \frac1S \sum_{s=1}^S
          \mathrm{InvGamma}\!\left(\sigma^{2*};\; a + \tfrac k2,\; b + \tfrac{q_s}2\right),

      with :math:`k, q_s` the terms of the inverse-gamma full conditional at
      :math:`\beta^{(s)}` (:func:`reference.gibbs.residual_terms`: :math:`k = n`,
      :math:`q_s = \lVert y - X\beta^{(s)}\rVert^2`, plus :math:`p` and the prior quadratic form
      under ``nig=True``).

    **Standard error** (Chib 1995, section 3): only the Rao-Blackwell average is random. With
    :math:`h_s` its terms, :math:`\mathrm{Var}(\hat p) = \mathrm{Var}(h)/\mathrm{ESS}(h)`
    (Geyer's ESS, :func:`geyer_ess`, in place of Chib's Newey-West window) and by the delta
    method :math:`\mathrm{se}(\log\hat p) = \sqrt{\mathrm{Var}(h)/\mathrm{ESS}(h)}/\bar h`.
    With known noise the identity is exact and ``se = 0``.

    Parameters
    ----------
    X, y : array_like
        Design (n, p) and response (n,).
    beta_draws : array_like (S, p) or (chain, S, p)
        Gibbs draws of the coefficients.
    sigma2_draws : array_like (S,) or (chain, S), or None
        Draws of the noise *variance* paired with ``beta_draws``; None with ``noise_var``.
    beta_mean, beta_cov
        Prior mean and covariance :math:`m, V` (``beta_cov`` scalar, diagonal or matrix; in
        units of :math:`\sigma^2` under ``nig=True``).
    a, b : float
        Inverse-gamma shape and scale of the prior on :math:`\sigma^2`.
    noise_var : float, optional
        Known noise variance.
    nig : bool
        Scale the coefficients' prior covariance by :math:`\sigma^2`.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``beta_star``, ``sigma2_star``, ``log_likelihood``, ``log_prior``,
        ``log_posterior_ordinate``, ``ess`` (of the Rao-Blackwell terms).
    """
    X, y = as_design(X, y)
    n, p = X.shape
    beta = np.asarray(beta_draws, dtype=float)
    if beta.ndim not in (2, 3) or beta.shape[-1] != p:
        raise ValueError(f"beta_draws must be shaped (S, {p}) or (chain, S, {p}); received "
                         f"shape {beta.shape}.")
    beta = _chains(beta, 1)
    C, S, _ = beta.shape
    if C * S < MIN_DRAWS or S < MIN_PER_CHAIN:
        raise ValueError(f"too few draws: {C} chain(s) x {S} draws; at least {MIN_DRAWS} in "
                         f"total and {MIN_PER_CHAIN} per chain are needed.")
    if not np.all(np.isfinite(beta)):
        raise ValueError("beta_draws contain NaN or inf; every draw must be finite.")
    if beta_cov is None:
        raise ValueError("beta_cov is None (a flat prior): the evidence is undefined under an "
                         "improper prior; give a proper prior covariance.")
    prior = BetaPrior.build(p, beta_mean, beta_cov, nig)
    m0 = prior.mean
    V0 = spd_matrix("beta_cov", beta_cov, p)
    beta_star = beta.reshape(-1, p).mean(axis=0)

    if noise_var is not None:
        # known noise: every factor of the identity is exact
        if sigma2_draws is not None or nig:
            raise ValueError("with a known noise_var give no sigma2_draws and nig=False.")
        s2 = positive_scalar("noise_var", noise_var)
        cond = GaussianKnownNoise(X, y, s2, m0, V0)
        log_lik = float(stats.norm.logpdf(y, X @ beta_star, np.sqrt(s2)).sum())
        log_prior = float(stats.multivariate_normal.logpdf(beta_star, m0, V0))
        log_ord = float(stats.multivariate_normal.logpdf(beta_star, cond.mean, cond.cov))
        details = {"beta_star": beta_star, "sigma2_star": s2, "log_likelihood": log_lik,
                   "log_prior": log_prior, "log_posterior_ordinate": log_ord, "ess": None}
        return EvidenceEstimate("chib", log_lik + log_prior - log_ord, 0.0, details)

    if sigma2_draws is None or a is None or b is None:
        raise ValueError("give sigma2_draws, a and b (inverse-gamma prior on sigma^2), or a "
                         "known noise_var.")
    a = positive_scalar("a (inverse-gamma shape)", a)
    b = positive_scalar("b (inverse-gamma scale)", b)
    sigma2 = np.asarray(sigma2_draws, dtype=float)
    if sigma2.shape != beta.shape[:2] and sigma2.shape != (S,):
        raise ValueError(f"sigma2_draws must match beta_draws: shape {beta.shape[:2]} or ({S},); "
                         f"received {sigma2.shape}.")
    sigma2 = sigma2.reshape(C, S)
    if not np.all(np.isfinite(sigma2)) or np.any(sigma2 <= 0):
        raise ValueError("sigma2_draws must be finite and > 0 (variances, not sds or logs).")
    s2_star = float(sigma2.mean())

    # log p(y | theta*) and log p(theta*)
    log_lik = float(stats.norm.logpdf(y, X @ beta_star, np.sqrt(s2_star)).sum())
    prior_cov_star = s2_star * V0 if nig else V0
    log_prior = float(stats.multivariate_normal.logpdf(beta_star, m0, prior_cov_star)
                      + stats.invgamma.logpdf(s2_star, a, scale=b))
    # log p(beta* | sigma2*, y): the exact Gaussian full conditional
    cond = GaussianKnownNoise(X, y, s2_star, m0, prior_cov_star)
    log_beta_ord = float(stats.multivariate_normal.logpdf(beta_star, cond.mean, cond.cov))
    # log p(sigma2* | y): Rao-Blackwell average of the inverse-gamma full conditional
    k, q = residual_terms(GibbsData.from_arrays(X, y), prior, beta.reshape(-1, p))
    log_h = stats.invgamma.logpdf(s2_star, a + 0.5 * k, scale=b + 0.5 * q)
    log_sigma_ord = float(special.logsumexp(log_h) - np.log(C * S))
    # Monte Carlo error of the average, relative to it (delta method on the log)
    rel = np.exp(log_h - log_sigma_ord).reshape(C, S)  # h_s / mean(h), mean 1
    ess = geyer_ess(rel)
    se = float(np.sqrt(rel.var(ddof=1) / ess))
    log_ord = log_beta_ord + log_sigma_ord
    details = {"beta_star": beta_star, "sigma2_star": s2_star, "log_likelihood": log_lik,
               "log_prior": log_prior, "log_posterior_ordinate": log_ord, "ess": ess}
    return EvidenceEstimate("chib", log_lik + log_prior - log_ord, se, details)


# --------------------------------------------------------------------------------------------
# Chib and Jeliazkov (2001): Metropolis-Hastings output
# --------------------------------------------------------------------------------------------
def chib_jeliazkov(log_density: Callable[[np.ndarray], np.ndarray], draws, proposal_cov, *,
                   seed: int = 0, n_proposals: int | None = None, point=None
                   ) -> EvidenceEstimate:
    r"""Log evidence from random-walk Metropolis output (Chib and Jeliazkov 2001, single block).

    For the Metropolis-Hastings kernel with proposal density :math:`q(\theta, \theta')` and
    acceptance probability :math:`\alpha(\theta, \theta') = \min\{1, \pi(\theta')q(\theta',
    \theta) / [\pi(\theta) q(\theta, \theta')]\}`, detailed balance integrated over
    :math:`\theta` gives (Chib and Jeliazkov 2001, eq. 9)

    .. math::

        \pi(\theta^* \mid y) = \frac{E_{\pi}[\alpha(\theta, \theta^*)\, q(\theta, \theta^*)]}
                                    {E_{q(\theta^*, \cdot)}[\alpha(\theta^*, \theta)]} .

    For the random walk :math:`q(\theta, \theta') = N(\theta'; \theta, \Sigma)` is symmetric, so
    :math:`\alpha(\theta, \theta') = \min\{1, q_u(\theta')/q_u(\theta)\}` with the unnormalized
    posterior :math:`q_u` (``log_density``). The numerator averages over the G posterior draws,
    the denominator over J fresh draws :math:`\theta^{(j)} \sim N(\theta^*, \Sigma)`, and then
    (eq. 3)

    .. math::

        \log p(y) = \log q_u(\theta^*) - \log\hat\pi(\theta^* \mid y).

    The identity holds for *any* :math:`\Sigma`, not only the one that produced the draws; the
    sampler's own proposal covariance is the natural choice. :math:`\theta^*` defaults to the
    posterior mean of the draws.

    **Standard error** (Chib and Jeliazkov 2001, section 2.3, delta method). The two averages
    are independent; the numerator's draws are autocorrelated, so its variance comes from batch
    means (:func:`batch_means_variance`), the denominator's from the iid sample variance:

    .. math::

        \mathrm{se}^2(\log\hat\pi) = \frac{\widehat{\mathrm{Var}}(\bar h_1)}{\bar h_1^2}
        + \frac{\mathrm{Var}(h_2)}{J\, \bar h_2^2}.

    Parameters
    ----------
    log_density : callable ``ndarray (m, d) -> ndarray (m,)``
        Unnormalized log posterior :math:`\log q_u` on the unconstrained scale (Jacobian and
        every constant included); finite at every draw.
    draws : array_like (S, d) or (chain, S, d)
        The Metropolis draws on the same scale.
    proposal_cov : array_like (d, d)
        Covariance :math:`\Sigma` of the random-walk proposal.
    seed : int
        Seed of the J proposal draws from :math:`\theta^*`.
    n_proposals : int, optional
        J; default the number of posterior draws.
    point : array_like (d,), optional
        :math:`\theta^*`; default the posterior mean.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``point``, ``log_density_at_point``, ``log_ordinate``,
        ``acceptance_from_point`` (:math:`\bar h_2`), ``n_draws``, ``n_proposals``, ``n_nan``,
        and the two parts of :math:`\mathrm{se}^2`, ``var_numerator`` and ``var_denominator``.
    """
    _check_callable(log_density)
    rng = _rng(seed)
    x = np.asarray(draws, dtype=float)
    if x.ndim == 2:
        x = x[None]
    theta, coords = _draw_array(x)
    C, S, d = theta.shape
    Sigma = spd_matrix("proposal_cov", proposal_cov, d)
    L = linalg.cholesky(Sigma, lower=True)
    G = C * S
    if n_proposals is None:
        J = G
    elif isinstance(n_proposals, bool) or not isinstance(n_proposals, int) or n_proposals < 100:
        raise ValueError(f"n_proposals must be an integer >= 100; received {n_proposals!r}.")
    else:
        J = n_proposals
    flat = theta.reshape(-1, d)
    star = flat.mean(axis=0) if point is None else np.asarray(point, dtype=float)
    if star.shape != (d,) or not np.all(np.isfinite(star)):
        raise ValueError(f"point must be a finite array of shape ({d},); received "
                         f"{np.shape(point)}.")
    lq_draws = _evaluate_at_draws(log_density, flat, coords)
    lq_star = float(_evaluate(log_density, star[None, :], "point")[0][0])
    if not np.isfinite(lq_star):
        raise ValueError(f"log_density is not finite at the point theta* = {star.tolist()}; "
                         "pass a point of high posterior density.")
    # numerator terms h1 = alpha(theta_g, theta*) q(theta_g, theta*), on the log scale
    log_alpha_to_star = np.minimum(0.0, lq_star - lq_draws)
    log_q_to_star = _mvn_logpdf_chol(flat, star, L)  # N(theta*; theta_g, Sigma), symmetric
    log_h1 = log_alpha_to_star + log_q_to_star
    # denominator terms h2 = alpha(theta*, theta_j), theta_j ~ N(theta*, Sigma)
    moves = star + rng.standard_normal((J, d)) @ L.T
    lq_moves, n_nan = _evaluate(log_density, moves, "proposal points")
    h2 = np.exp(np.minimum(0.0, lq_moves - lq_star))  # -inf (outside the support) gives 0
    if not h2.any():
        raise ValueError("no proposal from theta* would be accepted; proposal_cov is far too "
                         "wide for this posterior.")
    log_num = float(special.logsumexp(log_h1) - np.log(G))
    log_den = float(np.log(h2.mean()))
    log_ordinate = log_num - log_den
    # delta-method standard error: batch means for the numerator, iid for the denominator
    rel_h1 = np.exp(log_h1 - log_num).reshape(C, S)  # h1 / mean(h1)
    var_num = batch_means_variance(rel_h1)
    var_den = h2.var(ddof=1) / J / h2.mean() ** 2
    se = float(np.sqrt(var_num + var_den))
    details = {"point": star, "log_density_at_point": lq_star, "log_ordinate": log_ordinate,
               "acceptance_from_point": float(h2.mean()), "n_draws": G, "n_proposals": J,
               "n_nan": n_nan, "var_numerator": float(var_num), "var_denominator": float(var_den)}
    return EvidenceEstimate("chib-jeliazkov", lq_star - log_ordinate, se, details)


# --------------------------------------------------------------------------------------------
# Empirical Bayes: the evidence as a function of the prior scale
# --------------------------------------------------------------------------------------------
def evidence_curve(X, y, scales, *, noise_var: float, prior_mean=0.0) -> EvidenceCurve:
    r"""Exact log evidence of the known-noise model over a grid of prior scales, and its maximizer.

    For :math:`\beta \sim N(m_0, \tau^2 I)` and :math:`y \mid \beta \sim N(X\beta, s^2 I)`,

    .. math::

        \log p(y \mid \tau) = \log N(y \mid X m_0,\; s^2 I + \tau^2 X X^\top),

    computed by :meth:`reference.conjugate.GaussianKnownNoise.log_evidence` at every
    :math:`\tau` in ``scales``. The type-II maximum-likelihood (empirical Bayes) scale
    :math:`\hat\tau = \arg\max_\tau p(y \mid \tau)` (MacKay 1992) is refined by a bounded scalar
    search on :math:`\log\tau` between the grid points next to the best one. Too small a
    :math:`\tau` cannot fit the data, too large a one spreads the prior over values the data
    rule out (the Occam factor), so the curve usually has an interior maximum.

    Parameters
    ----------
    X, y : array_like
        Design (n, p) and response (n,).
    scales : array_like (k,)
        Prior standard deviations :math:`\tau > 0`, increasing, at least 3.
    noise_var : float
        Known noise variance :math:`s^2`.
    prior_mean : float or array_like (p,)
        :math:`m_0`.
    """
    X, y = as_design(X, y)
    noise_var = positive_scalar("noise_var", noise_var)
    tau = np.asarray(scales, dtype=float)
    if tau.ndim != 1 or tau.size < 3:
        raise ValueError(f"scales must be a 1-D grid of at least 3 values; received shape "
                         f"{tau.shape}.")
    if not np.all(np.isfinite(tau)) or np.any(tau <= 0) or np.any(np.diff(tau) <= 0):
        raise ValueError("scales must be finite, > 0 and strictly increasing.")

    def log_ev(t: float) -> float:
        return GaussianKnownNoise(X, y, noise_var, prior_mean, t * t).log_evidence()

    curve = np.array([log_ev(t) for t in tau])
    i = int(np.argmax(curve))
    at_boundary = i in (0, tau.size - 1)
    best, best_val = float(tau[i]), float(curve[i])
    if not at_boundary:
        res = optimize.minimize_scalar(lambda u: -log_ev(np.exp(u)),
                                       bounds=(np.log(tau[i - 1]), np.log(tau[i + 1])),
                                       method="bounded", options={"xatol": 1e-10})
        if -res.fun >= best_val:
            best, best_val = float(np.exp(res.x)), float(-res.fun)
    return EvidenceCurve(tau, curve, best, best_val, at_boundary)


# --------------------------------------------------------------------------------------------
# Chib (1995) for the hierarchical Gaussian model: ordinates of the scales from reduced runs
# --------------------------------------------------------------------------------------------
#: the quadrature of a scale's full conditional stops where its log integrand is this far
#: below the maximum (e^-50 of the peak, far below the 1e-8 accuracy asked of it)
_SCALE_TAIL = 50.0
#: stop halving the trapezoid step once log Z changes by less than this (nats)
_SCALE_RTOL = 1e-11
#: stretch of the sinh map of the quadrature axis (as in :mod:`reference.quadrature`)
_SCALE_STRETCH = 3.0
#: draws per chunk of that quadrature
_SCALE_CHUNK = 2048


def _scale_log_kernel(prior, m: float, ss: np.ndarray, s: np.ndarray) -> np.ndarray:
    r"""Unnormalized log full conditional of a scale, :math:`\log p(s) - m\log s - S/2s^2`.

    ``ss`` (G, 1) or (G,) and ``s`` broadcast against each other. The prior is the prior's own
    normalized ``logpdf`` on the sd scale; its constant cancels in the normalized density.
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = prior.logpdf(s) - m * np.log(s) - 0.5 * ss / np.square(s)
    return np.where(np.isnan(out), -np.inf, out)


def _scale_log_normalizer(prior, m: float, ss) -> np.ndarray:
    r""":math:`\log Z(S) = \log\int_0^\infty p(s)\, s^{-m} e^{-S/2s^2}\, ds` for every S in ``ss``.

    One-dimensional quadrature, vectorized over the G values of S at once:

    1. work on :math:`\eta = \log s` (:math:`\eta = \mathrm{logit}((s - a)/(b - a))` for a
       ``Uniform(a, b)`` prior, so that the integrand stays smooth at the ends), where the
       integrand :math:`\exp\ell(\eta)`, :math:`\ell = \log p(s) - m\log s - S/2s^2 +
       \log|ds/d\eta|`, is smooth, unimodal and decays at both ends;
    2. locate the mode :math:`\hat\eta` on a coarse grid (step 1/4) around the likelihood's
       own mode :math:`\tfrac12\log(S/(m-1))`, refine it by damped Newton steps with
       finite-difference derivatives, and take :math:`s_\eta = (-\ell'')^{-1/2}` there;
    3. integrate over :math:`z` with :math:`\eta = \hat\eta + s_\eta A\sinh(z/A)`, :math:`A = 3`
       (unit steps near the mode, exponentially growing ones in the tails, the map of
       :mod:`reference.quadrature`), by the trapezoid rule on :math:`[-Z, Z]`, where Z is
       widened until the integrand at both ends is :math:`e^{-50}` of its peak;
    4. halve the step (reusing the old nodes) until :math:`\log Z` changes by less than
       1e-11 for every S. The trapezoid rule converges exponentially for a smooth integrand on
       the line, so the last change bounds the error of the previous grid with a wide margin.

    Returns an array shaped like ``ss``. The draws are processed in chunks of
    ``_SCALE_CHUNK`` to bound the memory of the (draws, nodes) arrays.
    """
    ss = np.asarray(ss, dtype=float)
    flat = ss.reshape(-1)
    out = np.empty(flat.shape)
    for a in range(0, flat.size, _SCALE_CHUNK):
        out[a:a + _SCALE_CHUNK] = _scale_log_normalizer_chunk(prior, m, flat[a:a + _SCALE_CHUNK])
    return out.reshape(ss.shape)


def _scale_log_normalizer_chunk(prior, m: float, ss: np.ndarray) -> np.ndarray:
    """:func:`_scale_log_normalizer` for a 1-D array of S values."""
    S = ss.reshape(-1, 1)
    axis = _scale_map("scale", prior)  # eta -> s; rejects a Flat prior
    interval = axis.upper is not None

    def ell(eta):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = _scale_log_kernel(prior, m, S, axis.to_scale(eta)) + axis.log_jacobian(eta)
        return np.where(np.isnan(out), -np.inf, out)

    # step 2: coarse grid, then damped Newton steps on the mode
    if interval:
        coarse = np.broadcast_to(np.arange(-40.0, 40.0001, 0.25), (S.shape[0], 321))
    else:
        center = 0.5 * np.log(np.maximum(S, 1e-300) / max(m - 1.0, 1.0))
        coarse = center + np.arange(-30.0, 40.0001, 0.25)
    values = ell(coarse)
    rows = np.arange(S.shape[0])
    eta = coarse[rows, np.argmax(values, axis=1)][:, None]
    h = 1e-4
    for _ in range(30):
        f0, fp, fm = ell(eta), ell(eta + h), ell(eta - h)
        d1, d2 = (fp - fm) / (2 * h), (fp - 2 * f0 + fm) / h**2
        # Newton where the curvature is negative, else a coarse step uphill
        move = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.25 * np.sign(d1))
        move = np.clip(np.nan_to_num(move), -1.0, 1.0)
        for _ in range(20):  # backtrack until the move does not go downhill
            better = ell(eta + move) >= f0
            if better.all():
                break
            move = np.where(better, move, 0.5 * move)
        eta = np.where(better, eta + move, eta)
        if np.max(np.abs(move)) < 1e-7:
            break
    f0, fp, fm = ell(eta), ell(eta + h), ell(eta - h)
    d2 = (fp - 2 * f0 + fm) / h**2
    sd = np.where(d2 < 0, 1.0 / np.sqrt(np.where(d2 < 0, -d2, 1.0)), 1.0)
    peak = f0

    def log_integrand(z):  # ell(eta(z)) + log(d eta / dz)
        t = z / _SCALE_STRETCH
        return (ell(eta + sd * _SCALE_STRETCH * np.sinh(t))
                + np.log(sd) + np.abs(t) + np.log1p(np.exp(-2 * np.abs(t))) - np.log(2.0))

    # step 3: widen the box until both ends are negligible
    Z = 6.0
    while Z < 18.0:
        ends = log_integrand(np.array([-Z, Z]))
        if np.all(ends < peak - _SCALE_TAIL):
            break
        Z += 2.0
    # step 4: trapezoid rule, halving the step until it no longer matters
    step = 0.5
    nodes = np.arange(-Z, Z + 0.5 * step, step)
    log_sum = special.logsumexp(log_integrand(nodes), axis=1)
    log_z = np.log(step) + log_sum
    while True:
        new = nodes[:-1] + 0.5 * step      # the midpoints: the nodes of the halved grid
        log_sum = np.logaddexp(log_sum, special.logsumexp(log_integrand(new), axis=1))
        step *= 0.5
        nodes = np.sort(np.concatenate([nodes, new]))
        previous, log_z = log_z, np.log(step) + log_sum
        if np.max(np.abs(log_z - previous)) < _SCALE_RTOL:
            break
        if step < 1.0 / 512:  # pragma: no cover - would need a pathological integrand
            raise RuntimeError("the quadrature of a scale's full conditional did not converge "
                               f"(change {np.max(np.abs(log_z - previous)):.1e} nats).")
    return log_z


def _scale_conditional_logpdf(prior, m: float, ss, s: float) -> np.ndarray:
    r"""Normalized :math:`\log p(s \mid m, S)` at the point ``s`` for every S in ``ss``.

    :math:`p(s \mid m, S) \propto p(s)\, s^{-m} \exp(-S / 2s^2)` on the sd scale: the full
    conditional of a group scale (:math:`m = J_t`, :math:`S = \lVert b_t\rVert^2`) or of the
    noise sd (:math:`m = n`, :math:`S` the weighted residual sum of squares). Under
    ``InverseGamma(a, b, on="sigma2")`` it is closed form, :math:`s^2 \sim IG(a + m/2, b + S/2)`,
    which on the sd scale carries the Jacobian :math:`2s`; otherwise the normalizer comes from
    :func:`_scale_log_normalizer`.
    """
    ss = np.asarray(ss, dtype=float)
    if isinstance(prior, P.InverseGamma) and prior.on == "sigma2":
        shape, rate = prior.alpha + 0.5 * m, prior.beta + 0.5 * ss
        return (shape * np.log(rate) - special.gammaln(shape) - (2 * shape + 1) * np.log(s)
                - rate / s**2 + np.log(2.0))
    return _scale_log_kernel(prior, m, ss, s) - _scale_log_normalizer(prior, m, ss)


def _posterior_group(posterior):
    """The ``posterior`` group of a DataTree (or of a mapping of mappings)."""
    try:
        group = posterior["posterior"]
    except (KeyError, TypeError, IndexError):
        raise ValueError("posterior must be the DataTree of hierarchical_gibbs (or a mapping) "
                         f"with a 'posterior' group; received {type(posterior).__name__}."
                         ) from None
    return group


def _posterior_array(group, name: str, ndim: int, what: str) -> np.ndarray:
    """``group[name]`` as a float array with ``ndim`` axes (chain, draw, ...), checked."""
    available = sorted(str(k) for k in getattr(group, "data_vars", group))
    try:
        a = np.asarray(group[name], dtype=float)
    except KeyError:
        raise ValueError(f"the posterior has no {name!r} ({what}); it holds {available}."
                         ) from None
    if a.ndim != ndim:
        axes = "(chain, draw)" if ndim == 2 else "(chain, draw, level)"
        raise ValueError(f"posterior[{name!r}] must be shaped {axes}; received shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"posterior[{name!r}] contains NaN or inf; every draw must be finite.")
    return a


def _ordinate(log_h: np.ndarray, name: str, run: str) -> dict:
    r"""Rao-Blackwell ordinate :math:`\log\bar h` from per-draw log values (chain, draw), with
    its delta-method variance :math:`\mathrm{Var}(h) / (\mathrm{ESS}\,\bar h^2)`."""
    C, S = log_h.shape
    log_ord = float(special.logsumexp(log_h) - np.log(C * S))
    rel = np.exp(log_h - log_ord)  # h / mean(h), mean 1
    ess = geyer_ess(rel)
    var = float(rel.var(ddof=1) / ess)
    return {"scale": name, "run": run, "log_ordinate": log_ord, "se": float(np.sqrt(var)),
            "var": var, "ess": ess, "draws": C * S}


def _proper_hierarchical_model(p: int, groups, beta_mean, beta_cov, tau_priors, sigma_prior, *,
                               who: str, otherwise: str):
    """Validated ``(terms, m0, V0, tau priors, sigma prior, sigma value)`` of a hierarchical
    model whose evidence is defined: at least one group term and a proper coefficient prior."""
    terms = tuple(groups)
    if not terms:
        raise ValueError(f"groups is empty: {who} needs at least one group term ({otherwise}).")
    for g in terms:
        if not isinstance(g, GroupTerm):
            raise TypeError(f"groups must hold GroupTerm objects; received {type(g).__name__}.")
    if beta_cov is None:
        raise ValueError("beta_cov is None (a flat prior): the evidence is undefined under an "
                         "improper prior; give a proper prior covariance.")
    m0 = vector("beta_mean", beta_mean, p)
    V0 = spd_matrix("beta_cov", beta_cov, p)
    return (terms, m0, V0, _tau_priors(tau_priors, terms)) + _sigma_setting(sigma_prior)


def chib_hierarchical(X, y, groups, *, names, beta_mean, beta_cov, tau_priors, sigma_prior,
                      weights=None, posterior, reduced_draws: int = 1000, tune: int = 500,
                      chains: int = 4, seed: int = 0) -> EvidenceEstimate:
    r"""Log evidence of the hierarchical Gaussian model from Gibbs output (Chib 1995).

    The model is that of :mod:`reference.hierarchical`: :math:`y = X\beta + \sum_t Z_t b_t +
    \varepsilon`, :math:`\varepsilon_i \sim N(0, \sigma^2/w_i)`, :math:`\beta \sim N(m, V)`,
    :math:`b_{t,j} \sim N(0, \tau_t^2)` for :math:`j = 1, \dots, J_t`. Its free *scales* are
    :math:`s = (\tau_1, \dots, \tau_T, \sigma)`, leaving out any scale held fixed (a
    ``Constant`` prior, or ``sigma_prior=None``, known :math:`\sigma = 1`); the coefficients
    are :math:`\theta = (\beta, b_1, \dots, b_T)`.

    **Identity** (Chib 1995, eq. 3, with the coefficients integrated out). At any point
    :math:`s^*`,

    .. math::

        \log p(y) = \log p(y \mid s^*) + \log p(s^*) - \log p(s^* \mid y).

    :math:`p(y \mid s^*)` is exact: given the scales the model is linear and Gaussian, so
    :math:`y \mid s \sim N(Wm_0,\; \sigma^2\Omega^{-1} + W D_s W^\top)` with
    :math:`W = [X, Z_1, \dots]`, :math:`m_0 = (m, 0)`, :math:`D_s = \mathrm{blockdiag}(V,
    \tau_1^2 I, \dots)`, computed from one Cholesky factorization of the standardized
    precision (the function the quadrature of :mod:`reference.quadrature` integrates). This is
    Chib's full identity at :math:`(\theta^*, s^*)` with the Gaussian block
    :math:`p(\theta^* \mid s^*, y)` evaluated exactly and cancelled analytically. :math:`p(s^*)`
    is the product of the scales' normalized priors.

    **The ordinate** (Chib 1995, section 2.2) is factored one scale at a time,

    .. math::

        p(s^* \mid y) = p(\tau_1^* \mid y)\, p(\tau_2^* \mid \tau_1^*, y) \cdots
        p(\sigma^* \mid \tau^*, y),

    and each factor is Rao-Blackwellized over the full conditional of its scale, which given
    :math:`\theta` depends on :math:`\theta` alone, on the sd scale (the same scale as the
    prior's ``logpdf``):

    .. math::

        p(\tau_k \mid \theta, y) = \frac{p(\tau_k)\, \tau_k^{-J_k}\,
        e^{-\lVert b_k\rVert^2 / 2\tau_k^2}}{Z(J_k, \lVert b_k\rVert^2)}, \qquad
        p(\sigma \mid \theta, y) = \frac{p(\sigma)\, \sigma^{-n}\, e^{-S_w(\theta)/2\sigma^2}}
        {Z(n, S_w(\theta))},

    with :math:`S_w(\theta) = (y - W\theta)^\top\Omega(y - W\theta)`
    (:func:`reference.hierarchical.residual_ss`) and
    :math:`Z(m, S) = \int_0^\infty p(s)\, s^{-m} e^{-S/2s^2} ds`: closed form under
    ``InverseGamma(on="sigma2")`` (the variance is inverse-gamma), by one-dimensional quadrature
    in :math:`\log s` otherwise (:func:`_scale_log_normalizer`; accurate to about 1e-10
    relative, vectorized over all draws, since the integrand depends on a draw only through
    :math:`S`). Then

    .. math::

        \hat p(\tau_k^* \mid \tau_{<k}^*, y) = \frac1G \sum_{g=1}^G
        p(\tau_k^* \mid \theta^{(g)}, y),

    where the first factor averages over the main run (``posterior``) and factor k > 1 over a
    *reduced run*: :func:`reference.hierarchical.hierarchical_gibbs` with the priors of
    :math:`\tau_1, \dots, \tau_{k-1}` replaced by ``Constant`` at their starred values, whose
    draws come from :math:`p(\theta, \tau_{\ge k}, \sigma \mid \tau_{<k}^*, y)`. The last factor,
    :math:`p(\sigma^* \mid \tau^*, y)`, averages over a run with every group scale fixed. A
    model with K free scales needs K - 1 reduced runs. The identity holds at any
    :math:`s^*`; the estimate is most precise at a point of high posterior density, and
    :math:`s^*` is the posterior median of each scale in the main run.

    **Standard error** (Chib 1995, section 3, with Geyer's ESS in place of the Newey-West
    window). Within each run only the Rao-Blackwell average is random; with :math:`h_g` its
    terms and :math:`\mathrm{ESS}` from :func:`geyer_ess` (per chain, summed), the delta method
    gives :math:`\mathrm{Var}(\log\hat p_k) = \mathrm{Var}(h)/(\mathrm{ESS}\,\bar h^2)`. The runs
    use independent random streams, so the variances add:
    :math:`\mathrm{se}^2 = \sum_k \mathrm{Var}(\log\hat p_k)`. (The dependence of
    :math:`s^*` on the main run is ignored, as usual.) With no free scale the identity is
    exact and ``se = 0``.

    Parameters
    ----------
    X, y, groups, names, beta_mean, beta_cov, tau_priors, sigma_prior, weights
        The model, exactly as given to :func:`reference.hierarchical.hierarchical_gibbs`
        (``beta_cov`` must be proper; a ``Flat`` prior on a free scale is rejected: the evidence
        is undefined).
    posterior : DataTree or mapping
        The main run: anything with a ``["posterior"]`` group holding, per free group scale,
        ``<term>_sigma`` (chain, draw) and the effects ``<term>`` (chain, draw, J); ``sigma``
        when it is free; and, when :math:`\sigma` is the only free scale, every coefficient.
    reduced_draws, tune, chains : int
        Draws kept per chain, warmup sweeps and chains of every reduced run.
    seed : int
        Seed of the reduced runs (run k gets its own stream derived from ``seed`` and k).

    Returns
    -------
    EvidenceEstimate
        ``method="chib"``; ``details``: ``point`` (name -> :math:`s^*`), ``log_likelihood``
        (:math:`\log p(y \mid s^*)`), ``log_prior`` (:math:`\log p(s^*)`),
        ``log_posterior_ordinate``, ``ordinates`` (one dict per scale: ``scale``, ``run``,
        ``log_ordinate``, ``se``, ``var``, ``ess``, ``draws``) and ``reduced_runs``.

    References
    ----------
    Chib, S. (1995). Marginal likelihood from the Gibbs output. *JASA* 90(432), 1313-1321.

    Examples
    --------
    >>> from reference import datasets, priors
    >>> from reference.hierarchical import group_term, hierarchical_gibbs
    >>> d = datasets.hierarchical_synthetic()
    >>> model = dict(names=["Intercept", "x"], beta_mean=0.0, beta_cov=100.0,
    ...              tau_priors={"1|g": priors.HalfNormal(1.0)},
    ...              sigma_prior=priors.HalfNormal(1.0))
    >>> X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    >>> groups = [group_term("1|g", None, d["g"])]
    >>> dt = hierarchical_gibbs(X, d["y"], groups, draws=500, tune=200, chains=2, **model)
    >>> est = chib_hierarchical(X, d["y"], groups, posterior=dt, reduced_draws=500, tune=200,
    ...                         chains=2, **model)
    >>> [o["scale"] for o in est.details["ordinates"]]
    ['1|g_sigma', 'sigma']
    >>> from reference.quadrature import ScaleQuadrature
    >>> exact = ScaleQuadrature(X, d["y"], groups, **model).log_evidence()
    >>> bool(abs(est.log_evidence - exact) < 3.5 * est.se)
    True
    """
    # --- the model, validated as the sampler validates it -------------------------------------
    X, y = as_design(X, y)
    n, p = X.shape
    if isinstance(names, str) or len(list(names)) != p:
        raise ValueError(f"names must hold {p} strings, one per column of X; received {names!r}.")
    names = [str(k) for k in names]
    terms, m0, V0, taus, sig_prior, sig_value = _proper_hierarchical_model(
        p, groups, beta_mean, beta_cov, tau_priors, sigma_prior, who="chib_hierarchical",
        otherwise="use chib_linear_gibbs for a model without group effects")
    for name, pr in [(f"{g.name}_sigma", t) for g, t in zip(terms, taus, strict=True)] + \
            [("sigma", sig_prior)]:
        if pr is not None and isinstance(pr, P.Flat):
            raise ValueError(f"the prior of {name!r} is Flat (improper): the evidence is "
                             "undefined; give a proper prior (HalfNormal, HalfCauchy, ...).")
    for label, value, lo in [("reduced_draws", reduced_draws, MIN_PER_CHAIN), ("tune", tune, 0),
                             ("chains", chains, 1)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
            raise ValueError(f"{label} must be an integer >= {lo}; received {value!r}.")
    if chains * reduced_draws < MIN_DRAWS:
        raise ValueError(f"reduced runs of {chains} chain(s) x {reduced_draws} draws are too "
                         f"short; at least {MIN_DRAWS} draws in total are needed.")
    _rng(seed)  # validates the seed
    stats = sufficient_stats(X, y, terms, weights)

    # the free scales, in the order of the factorization: group scales, then sigma
    free = [(t, f"{g.name}_sigma") for t, (g, pr) in enumerate(zip(terms, taus, strict=True))
            if not isinstance(pr, P.Constant)]
    if sig_prior is not None:
        free.append((None, "sigma"))

    # --- the main run: the point s* and the draws of the first ordinate -----------------------
    group = _posterior_group(posterior)
    point = {}
    for _, name in free:
        draws = _posterior_array(group, name, 2, "a free scale")
        if draws.shape[0] * draws.shape[1] < MIN_DRAWS or draws.shape[1] < MIN_PER_CHAIN:
            raise ValueError(f"too few draws of {name!r}: {draws.shape[0]} chain(s) x "
                             f"{draws.shape[1]}; at least {MIN_DRAWS} in total and "
                             f"{MIN_PER_CHAIN} per chain are needed.")
        if np.any(draws <= 0):
            raise ValueError(f"posterior[{name!r}] has values <= 0; a scale must be positive.")
        point[name] = float(np.median(draws))

    # least-squares expansion point of the weighted residual sum of squares (for sigma)
    theta_hat, ss_min = least_squares_point(stats, X, y, terms, weights)

    def log_h(source, t, name) -> np.ndarray:
        """Per-draw log full-conditional density of scale ``name`` at its starred value."""
        if t is not None:  # tau_t | b_t
            b = _posterior_array(source, terms[t].name, 3, "group effects")
            if b.shape[2] != terms[t].n_levels:
                raise ValueError(f"posterior[{terms[t].name!r}] has {b.shape[2]} levels but the "
                                 f"group term has {terms[t].n_levels}.")
            ss = np.sum(np.square(b), axis=2)
            return _scale_conditional_logpdf(taus[t], terms[t].n_levels, ss, point[name])
        # sigma | theta
        parts = [_posterior_array(source, k, 2, "a coefficient")[..., None] for k in names]
        parts += [_posterior_array(source, g.name, 3, "group effects") for g in terms]
        theta = np.concatenate(parts, axis=2)
        C, S, D = theta.shape
        ss = residual_ss(stats, theta_hat, ss_min, theta.reshape(-1, D)).reshape(C, S)
        return _scale_conditional_logpdf(sig_prior, n, ss, point[name])

    # --- the ordinates: the first from the main run, the others from reduced runs -------------
    ordinates = []
    fixed = dict(zip([g.name for g in terms], taus, strict=True))
    for k, (t, name) in enumerate(free):
        if k == 0:
            source, run = group, "main"
        else:
            t_prev, name_prev = free[k - 1]
            fixed[terms[t_prev].name] = P.Constant(point[name_prev])  # tau_{<k} at s*
            run_seed = int(np.random.SeedSequence([int(seed), _SEED_TAG, k]).generate_state(1)[0])
            dt = hierarchical_gibbs(X, y, terms, names=names, beta_mean=m0, beta_cov=V0,
                                    tau_priors=dict(fixed), sigma_prior=sigma_prior,
                                    weights=weights, draws=reduced_draws, tune=tune,
                                    chains=chains, seed=run_seed)
            held = ", ".join(held_name for _, held_name in free[:k])
            source, run = dt["posterior"], f"reduced ({held} fixed)"
        ordinates.append(_ordinate(log_h(source, t, name), name, run))

    # --- log p(y | s*) (theta integrated out) and log p(s*) -----------------------------------
    tau_star = np.array([[point[f"{g.name}_sigma"] if not isinstance(pr, P.Constant)
                          else float(pr.value) for g, pr in zip(terms, taus, strict=True)]])
    sigma_star = np.array([point["sigma"] if sig_prior is not None else sig_value])
    cond = _build_conditional(X, y, terms, weights, m0, V0, blocks=False)
    log_lik = float(_conditional_batch(cond, tau_star, sigma_star, moments=False)[0])
    prior_of = {f"{g.name}_sigma": pr for g, pr in zip(terms, taus, strict=True)}
    prior_of["sigma"] = sig_prior
    log_prior = float(sum(prior_of[name].logpdf(point[name]) for _, name in free))
    log_ord = float(sum(o["log_ordinate"] for o in ordinates))
    se = float(np.sqrt(sum(o["var"] for o in ordinates)))
    details = {"point": point, "log_likelihood": log_lik, "log_prior": log_prior,
               "log_posterior_ordinate": log_ord, "ordinates": ordinates,
               "reduced_runs": max(len(free) - 1, 0)}
    return EvidenceEstimate("chib", log_lik + log_prior - log_ord, se, details)


# --------------------------------------------------------------------------------------------
# Laplace over the scales of the hierarchical model, coefficients integrated exactly
# --------------------------------------------------------------------------------------------
def laplace_scales(X, y, groups, *, names, beta_mean, beta_cov, tau_priors, sigma_prior,
                   weights=None, x0=None) -> EvidenceEstimate:
    r"""Laplace approximation over the log scales, with the coefficients integrated exactly.

    In the hierarchical Gaussian model of :mod:`reference.hierarchical`, given the scales
    :math:`s = (\tau_1, \dots, \tau_T, \sigma)` the coefficients
    :math:`\theta = (\beta, b)` are Gaussian, so :math:`p(y \mid s)` is exact (one
    Cholesky factorization, :mod:`reference.quadrature`). Only the few scales remain:

    .. math::

        p(y) = \int p(y \mid e^{u}) \prod_k p_k(e^{u_k})\, e^{u_k}\, du,
        \qquad u = \log s,

    and :func:`laplace` (Tierney and Kadane 1986) approximates that K-dimensional integral.
    This is the first step of INLA (Rue, Martino and Chopin 2009). Laplace on the joint
    posterior of :math:`(\theta, u)` is far worse: the centred joint has no mode (the funnel
    :math:`\tau \to 0`), and in non-centred coordinates the joint mode sits far from the mass
    (tens of nats off on radon). No standard error: the error is a bias of order 1/n.

    Parameters
    ----------
    X, y, groups, names, beta_mean, beta_cov, tau_priors, sigma_prior, weights
        As :func:`reference.hierarchical.hierarchical_gibbs`; ``beta_cov`` must be proper.
    x0 : array_like (K,), optional
        Starting log scales (free scales: group scales in order, then sigma); by default
        ``log sd(y)`` for each.

    Returns
    -------
    EvidenceEstimate
        ``method="laplace"``, ``se=None``; ``details`` as :func:`laplace` plus ``scales``
        (the names of the free scales).
    """
    X, y = as_design(X, y)
    n, p = X.shape
    terms, m0, V0, taus, sig_prior, sig_value = _proper_hierarchical_model(
        p, groups, beta_mean, beta_cov, tau_priors, sigma_prior, who="laplace_scales",
        otherwise="use laplace on the model's log density otherwise")
    free = [t for t, pr in enumerate(taus) if not isinstance(pr, P.Constant)]
    labels = [f"{terms[t].name}_sigma" for t in free] + (["sigma"] if sig_prior else [])
    if not labels:
        raise ValueError("every scale is fixed: p(y | s) is then exact and needs no Laplace.")
    cond = _build_conditional(X, y, terms, weights, m0, V0, blocks=False)

    def log_q(u):
        u = np.atleast_2d(u)
        tau = np.empty((len(u), len(terms)))
        for t, pr in enumerate(taus):
            if isinstance(pr, P.Constant):
                tau[:, t] = float(pr.value)
        tau[:, free] = np.exp(u[:, :len(free)])
        sigma = np.exp(u[:, -1]) if sig_prior else np.full(len(u), sig_value)
        with np.errstate(all="ignore"):
            out = _conditional_batch(cond, tau, sigma, moments=False)
            for j, t in enumerate(free):      # priors with the log-Jacobian of u = log s
                out = out + taus[t].logpdf(tau[:, t]) + u[:, j]
            if sig_prior:
                out = out + sig_prior.logpdf(sigma) + u[:, -1]
        return np.where(np.isfinite(out), out, -np.inf)

    if x0 is None:
        x0 = np.full(len(labels), np.log(np.std(y)) if np.std(y) > 0 else 0.0)
    x0 = vector("x0", x0, len(labels))
    est = laplace(log_q, x0)
    return EvidenceEstimate("laplace", est.log_evidence, None, {**est.details, "scales": labels})
