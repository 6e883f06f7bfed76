r"""Simulation-based calibration (SBC) with a simultaneous ECDF test of rank uniformity.

The idea (Talts et al. 2018)
----------------------------
Draw a parameter from the prior and data from the model given it,

.. math::

    \tilde\theta \sim p(\theta), \qquad \tilde y \sim p(y \mid \tilde\theta),

then run the sampler on :math:`\tilde y` and keep :math:`L` posterior draws
:math:`\theta_1, \dots, \theta_L`. Because :math:`(\tilde\theta, \tilde y)` is a draw from the joint
distribution, :math:`\tilde\theta` is itself a draw from the exact posterior
:math:`p(\theta \mid \tilde y)`. If the sampler is exact and its L draws are independent, the
rank of each scalar component of :math:`\tilde\theta` among its draws,

.. math::

    r = \#\{\ell : \theta_\ell < \tilde\theta\} \in \{0, 1, \dots, L\},

is uniform on those :math:`L + 1` values (Talts et al. 2018, Theorem 1). Repeating this N times
gives N ranks per parameter, and any departure from uniformity reveals an error somewhere in the
prior draws, the simulator, the likelihood or the sampler. Typical shapes: a U-shaped histogram
means the draws are too narrow (overconfident), a hump means too wide, a slope means bias.

Thinning. MCMC draws are autocorrelated, which makes ranks pile up at the extremes even for a
correct sampler (Talts et al. 2018, section 5). Two options are offered:

* ``thin=k`` (an int) keeps every k-th draw of each chain, a fixed rule chosen by the caller;
* ``thin="ess"`` estimates the bulk effective sample size of every component (rank-normalized,
  split-chain ESS of Vehtari et al. 2021 with Geyer's initial monotone sequence) and thins by
  ``floor(total draws / min ESS)``, so that the kept draws are roughly independent.

In both cases exactly ``L`` draws are then taken at evenly spaced positions from the thinned draws.
Under ``thin="ess"`` the thinning factor is capped so that at least ``L`` draws remain; a
replication where that cap binds (min ESS < L) is counted in ``SBCResult.ess_shortfall``, because
its draws are then not quite independent. Ties between a draw and the true value (possible for
discrete or constant parameters) are broken uniformly at random, as Talts et al. prescribe.

The uniformity test (Säilynoja, Bürkner and Vehtari 2022)
--------------------------------------------------------
The ranks are compared with the discrete uniform through their empirical CDF at K evaluation
points. With integer thresholds :math:`0 < m_1 < \dots < m_{K-1} \le L`, roughly evenly spaced
(:math:`m_i = \mathrm{round}(i (L+1) / K)`), let

.. math::

    z_i = \frac{m_i}{L + 1}, \qquad c_i = \#\{j : r_j < m_i\}, \qquad \hat F(z_i) = c_i / N .

Under uniformity :math:`c_i \sim \mathrm{Binomial}(N, z_i)` *exactly*, because a rank is below
:math:`m_i` with probability :math:`m_i / (L + 1)`. At each point the two-sided binomial tail
probability

.. math::

    \pi_i(c) = \min\{1,\; 2 \min(P(C_i \le c),\, P(C_i \ge c))\},
    \qquad C_i \sim \mathrm{Bin}(N, z_i),

defines a pointwise band :math:`\{c : \pi_i(c) \ge \gamma\}` (an interval of counts). The
*adjusted* level :math:`\gamma` is chosen so that the whole ECDF stays inside all K - 1 pointwise
bands with probability :math:`1 - \alpha`: the bands are then *simultaneous* at level alpha.

The probability of staying inside is computed exactly by the recursion of Säilynoja et al. (2022,
section 2.3, the "optimization" method): the counts form a Markov chain, because given
:math:`c_{i-1}` the remaining :math:`N - c_{i-1}` ranks are uniform on
:math:`\{m_{i-1}, \dots, L\}`, so

.. math::

    c_i - c_{i-1} \mid c_{i-1} \sim
    \mathrm{Binomial}\!\left(N - c_{i-1},\; \frac{m_i - m_{i-1}}{L + 1 - m_{i-1}}\right),

and the probability mass of the counts that remain inside the bands is pushed forward one point at
a time. The coverage only changes at the finitely many values that :math:`\pi_i(c)` takes, so
:math:`\gamma` is found by bisection over those values: it is the largest one whose simultaneous
coverage is still at least :math:`1 - \alpha`. The test is therefore exact and conservative (its
false-alarm rate is at most alpha, and as close to alpha as the discreteness allows); no
simulation is involved. Results are cached per (N, L, K, alpha).

The statistic :math:`T = \min_i \pi_i(c_i)` also gives an exact p-value,
:math:`p = P_0(T \le t_{\mathrm{obs}})`, by the same recursion, and ``p > alpha`` holds exactly when
the ECDF stays inside the simultaneous band, so the verdict and the picture always agree.

Several parameters. One SBC study tests every scalar component of the parameter vector. To give
the whole study a family-wise false-alarm rate of at most alpha, each of the P components is
tested at level alpha / P (Bonferroni); the study passes when every component passes.

References
----------
.. [1] Talts, S., Betancourt, M., Simpson, D., Vehtari, A. and Gelman, A. (2018). Validating
   Bayesian inference algorithms with simulation-based calibration. arXiv:1804.06788.
.. [2] Säilynoja, T., Bürkner, P.-C. and Vehtari, A. (2022). Graphical test for discrete
   uniformity and its applications in goodness-of-fit evaluation and multiple sample comparison.
   *Statistics and Computing* 32, 32.
.. [3] Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
   Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
   MCMC. *Bayesian Analysis* 16(2), 667-718.
.. [4] Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4).

Examples
--------
An exact sampler of a normal mean with known variance passes:

>>> def simulate(rng):
...     mu = rng.normal()
...     return {"mu": mu}, mu + rng.normal(size=5)
>>> def fit(y, seed):
...     rng = np.random.default_rng(seed)
...     post_var = 1.0 / (1.0 + len(y))
...     return {"mu": post_var * y.sum() + np.sqrt(post_var) * rng.normal(size=(1, 99))}
>>> result = sbc(simulate, fit, replications=200, L=99, thin=1, seed=1)
>>> result.passed
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special, stats

from reference._validation import integer

__all__ = [
    "SBCResult",
    "UniformityTest",
    "ecdf_bands",
    "effective_sample_size",
    "evaluation_points",
    "familywise_uniformity_test",
    "rank_of",
    "sbc",
    "uniformity_test",
]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def _level(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a probability in (0, 1); received {value!r}.") from None
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1; received {value!r}.")
    return v


def _default_K(N: int, L: int) -> int:
    """Number of evaluation intervals: one per possible rank, but no more than the sample size."""
    return max(2, min(L + 1, N))


def _check_K(K, N: int, L: int) -> int:
    if K is None:
        return _default_K(N, L)
    K = integer("K", K, 2)
    if K > L + 1:
        raise ValueError(
            f"K must be at most L + 1 = {L + 1} (one evaluation point per possible rank); "
            f"received K={K}."
        )
    return K


def _check_ranks(ranks, L: int) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array; received shape {r.shape}.")
    if not np.issubdtype(r.dtype, np.integer):
        if not (np.all(np.isfinite(r)) and np.all(r == np.round(r))):
            raise ValueError("ranks must be whole numbers; received non-integer values.")
        r = r.astype(np.int64)
    if r.min() < 0 or r.max() > L:
        raise ValueError(
            f"ranks must lie in 0..L = 0..{L}; received values from {r.min()} to {r.max()}."
        )
    return r.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Simultaneous ECDF bands (Säilynoja, Bürkner and Vehtari 2022)
# --------------------------------------------------------------------------------------------
def evaluation_points(L: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds ``m`` and evaluation points ``z = m / (L + 1)`` of the rank ECDF.

    ``m_i = round(i (L + 1) / K)`` for ``i = 1 .. K - 1`` (duplicates removed), so that
    ``c_i = #{ranks < m_i}`` is exactly Binomial(N, z_i) under uniformity. The end point z = 1,
    where the ECDF is always 1, is left out.
    """
    L = integer("L", L, 1)
    K = integer("K", K, 2)
    if K > L + 1:
        raise ValueError(f"K must be at most L + 1 = {L + 1}; received K={K}.")
    m = np.unique(np.round(np.arange(1, K) * (L + 1) / K).astype(np.int64))
    m = m[(m >= 1) & (m <= L)]
    return m, m / (L + 1)


@lru_cache(maxsize=64)
def _tail_probs(N: int, L: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise two-sided binomial tail probabilities ``pi[i, c]`` for c = 0..N, and ``m``."""
    m, z = evaluation_points(L, K)
    c = np.arange(N + 1)[None, :]
    lower_tail = stats.binom.cdf(c, N, z[:, None])        # P(C_i <= c)
    upper_tail = stats.binom.sf(c - 1, N, z[:, None])     # P(C_i >= c)
    pi = np.minimum(1.0, 2.0 * np.minimum(lower_tail, upper_tail))
    pi.setflags(write=False)
    return pi, m


def _binom_pmf(k: np.ndarray, n: np.ndarray, p: float) -> np.ndarray:
    """Binomial pmf for integer arrays, zero outside 0 <= k <= n (0 < p < 1)."""
    ok = (k >= 0) & (k <= n)
    kk, nn = np.where(ok, k, 0), np.where(ok, n, 0)
    logpmf = (special.gammaln(nn + 1) - special.gammaln(kk + 1) - special.gammaln(nn - kk + 1)
              + kk * np.log(p) + (nn - kk) * np.log1p(-p))
    return np.where(ok, np.exp(logpmf), 0.0)


def _prob_inside(N: int, L: int, m: np.ndarray, allowed: np.ndarray) -> float:
    """P(c_i is allowed for every i) under uniform ranks, by the Markov recursion on the counts.

    ``allowed`` is a boolean (len(m), N + 1) mask; each row must be an interval (or empty).
    """
    counts = np.array([0])          # c_0 = 0 with probability 1 (no rank is below 0)
    mass = np.array([1.0])
    prev = 0
    for i, mi in enumerate(m):
        new = np.flatnonzero(allowed[i])
        if new.size == 0:
            return 0.0
        # step 1: probability that a rank still above m_{i-1} falls in [m_{i-1}, m_i)
        p = (mi - prev) / (L + 1 - prev)
        # step 2: c_i = c_{i-1} + Binomial(N - c_{i-1}, p); keep only the allowed c_i
        step = _binom_pmf(new[None, :] - counts[:, None], N - counts[:, None], p)
        mass = mass @ step
        counts, prev = new, mi
    return float(mass.sum())


@lru_cache(maxsize=64)
def _adjusted_band(N: int, L: int, K: int, alpha: float):
    """The adjusted pointwise level gamma and the count bands (lo, hi) at every point.

    gamma is the largest value taken by the pointwise tail probabilities whose simultaneous
    coverage ``P(pi_i(c_i) >= gamma for all i)`` is at least ``1 - alpha`` (bisection over the
    sorted candidates; coverage decreases as gamma grows).
    """
    pi, m = _tail_probs(N, L, K)
    candidates = np.unique(pi)

    def coverage(g):
        return _prob_inside(N, L, m, pi >= g)

    lo_idx, hi_idx = 0, len(candidates) - 1  # coverage(candidates[0]) = 1 (every count allowed)
    if coverage(candidates[hi_idx]) >= 1.0 - alpha:
        lo_idx = hi_idx
    while hi_idx - lo_idx > 1:
        mid = (lo_idx + hi_idx) // 2
        if coverage(candidates[mid]) >= 1.0 - alpha:
            lo_idx = mid
        else:
            hi_idx = mid
    gamma = float(candidates[lo_idx])
    allowed = pi >= gamma
    lo = allowed.argmax(axis=1)
    hi = N - allowed[:, ::-1].argmax(axis=1)
    return gamma, m, lo, hi, coverage(gamma)


def ecdf_bands(n_ranks: int, L: int, alpha: float = 0.01, K: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous (1 - alpha) bands for the ECDF of N uniform ranks on 0..L.

    Parameters
    ----------
    n_ranks : int
        N, the number of ranks (SBC replications).
    L : int
        Number of posterior draws per replication; ranks take values 0..L.
    alpha : float, default 0.01
        Probability that a uniform sample leaves the band somewhere (at most alpha; exact
        recursion, see the module docstring).
    K : int, optional
        Number of evaluation intervals (default ``min(L + 1, N)``); the band is given at the
        K - 1 interior points of :func:`evaluation_points`.

    Returns
    -------
    lower, upper : ndarray
        Band limits for the ECDF values :math:`\\hat F(z_i)` (fractions in [0, 1]).
    """
    N = integer("n_ranks", n_ranks, 1)
    L = integer("L", L, 1)
    alpha = _level("alpha", alpha)
    K = _check_K(K, N, L)
    _, _, lo, hi, _ = _adjusted_band(N, L, K, alpha)
    return lo / N, hi / N


@dataclass(frozen=True)
class UniformityTest:
    """Result of the simultaneous ECDF test for one set of ranks.

    Attributes
    ----------
    passed : bool
        True when the ECDF stays inside the simultaneous band (equivalently ``p_value > alpha``).
    p_value : float
        Exact :math:`P_0(T \\le t_{obs})` for :math:`T = \\min_i \\pi_i(c_i)`.
    statistic : float
        :math:`t_{obs}`, the smallest pointwise tail probability.
    gamma : float
        Adjusted pointwise level of the band.
    coverage : float
        Exact simultaneous coverage of the band under uniformity (at least 1 - alpha).
    alpha : float
        Level of this test (for one parameter of a study, the Bonferroni share).
    N, L, K : int
        Number of ranks, draws per replication, evaluation intervals.
    z, ecdf, lower, upper : ndarray
        Evaluation points, ECDF values and band limits there: the data of the ECDF plot.
    """

    passed: bool
    p_value: float
    statistic: float
    gamma: float
    coverage: float
    alpha: float
    N: int
    L: int
    K: int
    z: np.ndarray
    ecdf: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def outside(self) -> np.ndarray:
        """Boolean mask of the evaluation points where the ECDF leaves the band."""
        return (self.ecdf < self.lower) | (self.ecdf > self.upper)

    def difference(self) -> dict[str, np.ndarray]:
        """ECDF-difference plot data: ``z``, ``ecdf - z`` and the band limits minus ``z``."""
        return {"z": self.z, "ecdf_diff": self.ecdf - self.z,
                "lower_diff": self.lower - self.z, "upper_diff": self.upper - self.z}


def uniformity_test(ranks, L: int, alpha: float = 0.01, K: int | None = None
                    ) -> tuple[bool, UniformityTest]:
    """Test whether ranks on 0..L are uniform, with a simultaneous ECDF band at level alpha.

    Parameters
    ----------
    ranks : array_like of int, shape (N,)
    L : int
        Ranks take values 0..L.
    alpha : float, default 0.01
        False-alarm rate (at most alpha, exactly computed).
    K : int, optional
        Evaluation intervals (default ``min(L + 1, N)``).

    Returns
    -------
    passed : bool
    details : UniformityTest
    """
    L = integer("L", L, 1)
    r = _check_ranks(ranks, L)
    alpha = _level("alpha", alpha)
    N = r.size
    K = _check_K(K, N, L)
    gamma, m, lo, hi, cov = _adjusted_band(N, L, K, alpha)
    pi, _ = _tail_probs(N, L, K)
    # ECDF counts c_i = #{r < m_i}
    counts = np.searchsorted(np.sort(r), m, side="left")
    t_obs = float(pi[np.arange(len(m)), counts].min())
    # exact p-value: P0(T <= t_obs) = 1 - P0(pi_i(c_i) > t_obs for every i)
    p_value = 1.0 - _prob_inside(N, L, m, pi > t_obs)
    p_value = float(min(1.0, max(0.0, p_value)))
    passed = bool(t_obs >= gamma)
    return passed, UniformityTest(
        passed=passed, p_value=p_value, statistic=t_obs, gamma=gamma, coverage=cov,
        alpha=alpha, N=N, L=L, K=K, z=m / (L + 1), ecdf=counts / N, lower=lo / N, upper=hi / N,
    )


def familywise_uniformity_test(ranks: Mapping[str, Any], L: int, alpha: float = 0.01,
                               K: int | None = None) -> tuple[bool, dict[str, UniformityTest]]:
    """Test several parameters' ranks with family-wise level alpha (Bonferroni: alpha / P each).

    Returns
    -------
    passed : bool
        True when every parameter passes its test at level ``alpha / P``.
    details : dict
        One :class:`UniformityTest` per parameter.
    """
    if not isinstance(ranks, Mapping) or len(ranks) == 0:
        raise ValueError("ranks must be a non-empty mapping from parameter name to ranks.")
    alpha = _level("alpha", alpha)
    share = alpha / len(ranks)
    details = {name: uniformity_test(r, L, share, K)[1] for name, r in ranks.items()}
    return all(d.passed for d in details.values()), details


# --------------------------------------------------------------------------------------------
# Effective sample size, for thinning (Vehtari et al. 2021; Geyer 1992)
# --------------------------------------------------------------------------------------------
def effective_sample_size(x) -> float:
    r"""Bulk effective sample size of draws shaped (chain, draw).

    Steps: rank-normalize all draws together (normal scores of the pooled ranks,
    :math:`\Phi^{-1}((r - 3/8)/(S + 1/4))`); split every chain in two halves; estimate the
    autocorrelation :math:`\hat\rho_t = 1 - (W - \bar\gamma_t) / \widehat{\mathrm{var}}^+` from
    the within-chain autocovariances :math:`\gamma_t` (by FFT), the mean within-chain variance W
    and the pooled variance estimate; sum pairs :math:`\hat\rho_{2k} + \hat\rho_{2k+1}` while
    they stay positive and force them to decrease (Geyer's initial monotone sequence);
    :math:`\mathrm{ESS} = MN / (-1 + 2 \sum_k P_k)`.

    Returns NaN for constant draws.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 4:
        raise ValueError(
            f"draws must be shaped (chain, draw) with at least 4 draws; received {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("draws contain NaN or inf; the effective sample size is undefined.")
    if np.ptp(x) == 0:
        return float("nan")
    # step 1: rank-normalize the pooled draws
    S = x.size
    ranks = stats.rankdata(x.ravel(), method="average").reshape(x.shape)
    z = stats.norm.ppf((ranks - 0.375) / (S + 0.25))
    # step 2: split chains into halves (drop the middle draw of an odd-length chain)
    half = x.shape[1] // 2
    z = np.concatenate([z[:, :half], z[:, -half:]], axis=0)
    M, N = z.shape
    # step 3: within-chain autocovariances by FFT (biased estimator, divided by N)
    zc = z - z.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * N)))
    spec = np.fft.rfft(zc, n=nfft, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), n=nfft, axis=1)[:, :N] / N
    W = acov[:, 0].mean() * N / (N - 1)
    var_plus = W * (N - 1) / N + (z.mean(axis=1).var(ddof=1) if M > 1 else 0.0)
    rho = 1.0 - (W - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # step 4: Geyer's initial positive, then monotone, sequence of pair sums
    n_pairs = N // 2
    pairs = rho[: 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]
    first_non_positive = np.flatnonzero(pairs <= 0)
    if first_non_positive.size:
        pairs = pairs[: first_non_positive[0]]
    pairs = np.minimum.accumulate(pairs)
    tau = -1.0 + 2.0 * pairs.sum()
    # the antithetic cap used by Stan and arviz: ESS <= MN log10(MN)
    tau = max(tau, 1.0 / np.log10(M * N))
    return float(M * N / tau)


# --------------------------------------------------------------------------------------------
# The SBC loop (Talts et al. 2018)
# --------------------------------------------------------------------------------------------
def rank_of(true_value: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Number of draws below ``true_value``, ties with it broken uniformly at random."""
    draws = np.asarray(draws)
    below = int(np.count_nonzero(draws < true_value))
    ties = int(np.count_nonzero(draws == true_value))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


@dataclass
class SBCResult:
    """Outcome of an SBC study.

    Attributes
    ----------
    ranks : dict[str, ndarray of int (replications,)]
        Rank of the true value among the L kept draws, per scalar component. A vector
        parameter ``b`` gives components ``b[0]``, ``b[1]``, ... (row-major for higher ranks).
    L : int
        Draws ranked against per replication; ranks lie in 0..L.
    alpha : float
        Family-wise level of the whole study.
    tests : dict[str, UniformityTest]
        Per-component test at the Bonferroni level ``alpha / len(ranks)``.
    passed : bool
        True when every component passes.
    thin : ndarray of int (replications,)
        Thinning factor used in every replication.
    ess_shortfall : int
        Replications whose min ESS was below L (``thin="ess"`` only): their L draws are not
        quite independent.
    seconds : float
        Wall time of the study.
    attrs : dict
        Provenance: method, seed, thinning rule, batch size, K.
    """

    ranks: dict[str, np.ndarray]
    L: int
    alpha: float
    tests: dict[str, UniformityTest]
    passed: bool
    thin: np.ndarray
    ess_shortfall: int = 0
    seconds: float = 0.0
    attrs: dict = field(default_factory=dict)

    @property
    def replications(self) -> int:
        return len(next(iter(self.ranks.values())))

    @property
    def p_values(self) -> dict[str, float]:
        """Unadjusted p-value per component (compare with ``alpha / len(ranks)``)."""
        return {k: t.p_value for k, t in self.tests.items()}

    def ecdf_difference(self) -> dict[str, dict[str, np.ndarray]]:
        """Plot data per component: ``z``, ``ecdf - z`` and the simultaneous band minus ``z``."""
        return {name: t.difference() for name, t in self.tests.items()}

    def summary(self) -> str:
        """A short plain-text table: component, p-value, Bonferroni level, verdict."""
        share = self.alpha / len(self.tests)
        lines = [f"SBC: {self.replications} replications, L={self.L}, family-wise alpha="
                 f"{self.alpha:g} ({share:.2g} per component) -> "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        for name, t in self.tests.items():
            p = f"{t.p_value:.3g}" if t.p_value >= 1e-15 else "<1e-15"
            lines.append(f"  {name:<16} p={p}  {'pass' if t.passed else 'FAIL'}")
        return "\n".join(lines)


def _posterior_arrays(out, names) -> dict[str, np.ndarray]:
    """Pull (chain, draw, ...) arrays of ``names`` from a dict or an ArviZ DataTree."""
    # a DataTree is itself a Mapping (of its groups), so look for the posterior group first
    if hasattr(out, "posterior") and isinstance(out.posterior, Mapping):
        # reference.sampling.Run: raw (chain, draw, ...) arrays
        out = out.posterior
    if hasattr(out, "posterior"):
        post = out.posterior
        available = list(post.data_vars)
        get = lambda k: np.asarray(post[k].values, dtype=float)  # noqa: E731
    elif isinstance(out, Mapping):
        available = list(out)
        get = lambda k: np.asarray(out[k], dtype=float)  # noqa: E731
    else:
        raise TypeError(
            "fit must return a dict of (chain, draw) arrays, a reference.sampling.Run or an "
            f"ArviZ DataTree with a posterior group; received {type(out).__name__}."
        )
    arrays = {}
    for name in names:
        if name not in available:
            raise ValueError(
                f"fit returned no draws of {name!r}; it returned: {sorted(available)}."
            )
        arrays[name] = get(name)
    return arrays


def _components(theta: Mapping[str, Any], arrays: dict[str, np.ndarray]):
    """Yield (component name, true value, draws (chain, draw)) for every scalar component."""
    for name, value in theta.items():
        value = np.asarray(value, dtype=float)
        draws = arrays[name]
        if draws.ndim < 2 or draws.shape[2:] != value.shape:
            raise ValueError(
                f"draws of {name!r} must be shaped (chain, draw{', ' if value.shape else ''}"
                f"{', '.join(map(str, value.shape))}) to match its true value; "
                f"received {draws.shape}."
            )
        if value.ndim == 0:
            yield name, float(value), draws
            continue
        for idx in np.ndindex(value.shape):
            label = f"{name}[{','.join(map(str, idx))}]"
            yield label, float(value[idx]), draws[(slice(None), slice(None), *idx)]


def _keep(draws: np.ndarray, k: int, L: int) -> np.ndarray:
    """Every k-th draw of each chain, pooled chain by chain, then L at evenly spaced positions."""
    pooled = draws[:, ::k].reshape(-1)
    if pooled.size < L:
        raise ValueError(
            f"after thinning by {k} only {pooled.size} draws remain but L={L} are needed; "
            "run longer chains, thin less, or lower L."
        )
    if pooled.size == L:
        return pooled
    return pooled[np.round(np.linspace(0, pooled.size - 1, L)).astype(np.int64)]


def _simulate_once(simulate, rng):
    out = simulate(rng)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("simulate must return a pair (theta_true, data); received "
                        f"{type(out).__name__}.")
    return out


def _sbc_block(simulate, fit, first: int, block, thin, L, batch: int) -> list:
    """Replications ``first, first + 1, ...`` (one per child seed in ``block``): simulate, fit,
    thin and rank; returns ``(thin factor, L, shortfall, ranks)`` per replication."""
    streams = [child.spawn(3) for child in block]
    # step 1: draw theta from the prior and data given theta
    sims = [_simulate_once(simulate, np.random.default_rng(sim_seq)) for sim_seq, _, _ in streams]
    # step 2: run the sampler on the simulated data
    fit_seed = int(streams[0][1].generate_state(1)[0])
    if batch == 1:
        outs = [fit(sims[0][1], fit_seed)]
    else:
        outs = fit([data for _, data in sims], fit_seed)
        if not isinstance(outs, list | tuple) or len(outs) != len(sims):
            raise ValueError(f"with batch={batch}, fit must return a list of {len(sims)} "
                             f"draws (one per data set); received {type(outs).__name__}.")
    # steps 3-4: thin, keep L draws and rank, replication by replication
    out = []
    for j, ((theta, _), draws, (_, _, tie_seq)) in enumerate(zip(sims, outs, streams,
                                                                 strict=True)):
        out.append(_replication(first + j, theta, draws, thin, L,
                                np.random.default_rng(tie_seq)))
        L = out[-1][1]
    return out


def _replication(i, theta, out, thin, L, tie_rng):
    """Thin factor, L and the rank of every component for one replication."""
    if not isinstance(theta, Mapping) or len(theta) == 0:
        raise TypeError("simulate must return (theta_true, data) with theta_true a non-empty "
                        f"dict of parameter values; received {type(theta).__name__}.")
    comps = list(_components(theta, _posterior_arrays(out, list(theta))))
    for label, value, draws in comps:
        if not np.all(np.isfinite(draws)):
            raise ValueError(f"replication {i}: draws of {label!r} contain NaN or inf.")
        if not np.isfinite(value):
            raise ValueError(f"replication {i}: the true value of {label!r} is not finite.")
    chains, n_draws = comps[0][2].shape
    # step 3: choose the thinning factor
    shortfall = False
    if thin == "ess":
        ess = np.nanmin([effective_sample_size(d) for _, _, d in comps] + [np.inf])
        k_ess = int(chains * n_draws // ess) if np.isfinite(ess) else 1
        # the largest factor that still leaves L draws: ceil(n_draws / k) * chains >= L
        k_cap = max(1, (chains * n_draws) // L)
        while k_cap > 1 and -(-n_draws // k_cap) * chains < L:
            k_cap -= 1
        k = max(1, min(k_ess, k_cap))
        shortfall = bool(ess < L)
    else:
        k = thin
    if L is None:
        L = -(-n_draws // k) * chains
    # step 4: rank each true component among its L kept draws (ties at random)
    ranks = {label: rank_of(value, _keep(draws, k, L), tie_rng) for label, value, draws in comps}
    return k, L, shortfall, ranks


def sbc(
    simulate: Callable[[np.random.Generator], tuple[Mapping[str, Any], Any]],
    fit: Callable[[Any, int], Any],
    *,
    replications: int = 200,
    L: int | None = 99,
    thin: int | str = "ess",
    alpha: float = 0.01,
    K: int | None = None,
    seed: int = 0,
    batch: int = 1,
    progress: Callable[[int, int], None] | None = None,
    map: Callable[[Callable, list], list] | None = None,
) -> SBCResult:
    """Run a simulation-based calibration study (Talts et al. 2018).

    Parameters
    ----------
    simulate : callable ``(rng) -> (theta_true, data)``
        Draws the parameters from the prior and the data given them. ``theta_true`` maps each
        parameter name (as the sampler names it) to a float, or to an array for a vector
        parameter.
    fit : callable ``(data, seed) -> draws``
        Runs the sampler; returns a dict of arrays shaped (chain, draw, ...), a
        :class:`reference.sampling.Run`, or an ArviZ DataTree whose posterior group holds every
        name of ``theta_true``. With ``batch > 1`` it receives a *list* of data sets and one seed
        and returns a list of such draws, one per data set.
    replications : int, default 200
        N, the number of simulated data sets (ranks per parameter).
    L : int or None, default 99
        Draws ranked against per replication (ranks lie in 0..L). ``None`` (only with an integer
        ``thin``) takes every kept draw of the first replication, ``ceil(draws / thin) * chains``.
    thin : int or "ess", default "ess"
        Keep every ``thin``-th draw of each chain, or thin by total draws / min bulk ESS (capped
        so that L draws remain); see the module docstring.
    alpha : float, default 0.01
        Family-wise false-alarm rate of the whole study (Bonferroni across components).
    K : int, optional
        Evaluation intervals of the ECDF test (default ``min(L + 1, replications)``).
    seed : int, default 0
        Root seed. Replication i uses ``SeedSequence(seed).spawn(replications)[i]``, split into
        the simulator's generator, the integer seed passed to ``fit`` and the tie-breaking
        stream. (With ``batch > 1`` a block of replications shares the fit seed of its first.)
    batch : int, default 1
        Replications fitted per call of ``fit``: for samplers that run one chain per data set
        in a single vectorized call. The ranks are computed exactly as with ``batch=1``.
    progress : callable ``(done, total)``, optional
        Called after every block of replications (serial runs only).
    map : callable ``(fn, units) -> list``, optional
        Runs ``fn(*unit)`` for every unit (a tuple of arguments) and returns the results in
        order: for instance :meth:`comparisons.parallel.Runner.map`, which runs the blocks of
        replications as Dask tasks. Each replication's randomness comes from its own child of
        ``SeedSequence(seed)``, so the ranks are the same however the blocks are run. Default:
        one after another in this process.

    Returns
    -------
    SBCResult
    """
    replications = integer("replications", replications, 1)
    seed = integer("seed", seed, 0)
    batch = integer("batch", batch, 1)
    alpha = _level("alpha", alpha)
    if isinstance(thin, str):
        if thin != "ess":
            raise ValueError(f"thin must be a positive integer or 'ess'; received {thin!r}.")
        if L is None:
            raise ValueError("thin='ess' needs an explicit L (the number of draws to rank "
                             "against).")
    else:
        thin = integer("thin", thin, 1)
    if L is not None:
        L = integer("L", L, 1)
    if not callable(simulate) or not callable(fit):
        raise TypeError("simulate and fit must both be callables.")

    start = time.perf_counter()
    children = np.random.SeedSequence(seed).spawn(replications)
    blocks = [(first, children[first:first + batch])
              for first in range(0, replications, batch)]
    done: list = []
    if L is None:  # L comes from the first replication: run that block before the others
        done.append(_sbc_block(simulate, fit, *blocks[0], thin, None, batch))
        L = done[0][0][1]
        blocks = blocks[1:]
    units = [(simulate, fit, first, block, thin, L, batch) for first, block in blocks]
    if map is not None:
        done += map(_sbc_block, units)
    else:
        for unit in units:
            done.append(_sbc_block(*unit))
            if progress is not None:
                progress(min(unit[2] + batch, replications), replications)
    ranks: dict[str, list[int]] = {}
    thins = np.zeros(replications, dtype=np.int64)
    shortfall = 0
    i = 0
    for block in done:
        for k, _, short, r in block:
            thins[i] = k
            shortfall += short
            for label, value in r.items():
                ranks.setdefault(label, []).append(value)
            i += 1

    rank_arrays = {name: np.asarray(r, dtype=np.int64) for name, r in ranks.items()}
    lengths = {len(r) for r in rank_arrays.values()}
    if lengths != {replications}:
        raise ValueError("simulate must return the same parameter names in every replication.")
    passed, tests = familywise_uniformity_test(rank_arrays, L, alpha, K)
    attrs = {"method": "SBC (Talts et al. 2018); simultaneous ECDF test, exact recursion "
                       "(Saeilynoja et al. 2022); Bonferroni across components",
             "seed": seed, "thin": thin, "batch": batch, "K": tests[next(iter(tests))].K}
    return SBCResult(ranks=rank_arrays, L=L, alpha=alpha, tests=tests, passed=passed,
                     thin=thins, ess_shortfall=shortfall, seconds=time.perf_counter() - start,
                     attrs=attrs)
