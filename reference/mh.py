r"""Adaptive random-walk Metropolis for any log density over named scalar parameters.

**The algorithm** (Metropolis et al. 1953; Hastings 1970). To draw from a density
:math:`\pi(u)` on :math:`\mathbb{R}^d` known up to a constant, propose from the current point
:math:`u` a symmetric Gaussian step

.. math::

    u' = u + \lambda L z, \qquad z \sim N(0, I_d), \qquad LL^\top = S,

and accept it with probability :math:`\alpha = \min\{1, \pi(u')/\pi(u)\}`; otherwise stay. The
proposal is symmetric, so the Hastings ratio of proposal densities is 1, and the chain leaves
:math:`\pi` invariant. In logs: accept when :math:`\log U < \log\pi(u') - \log\pi(u)` with
:math:`U \sim \mathrm{Uniform}(0, 1)`. A proposal where the log density is NaN is treated as
having log density :math:`-\infty` (rejected) and counted in ``sample_stats["n_nan"]``.

**Positive parameters on the log scale.** A parameter :math:`\theta > 0` is sampled as
:math:`u = \log\theta`. By the change-of-variables formula the density of :math:`u` is
:math:`p(\theta)\,|d\theta/du| = p(e^u)\,e^u`, so the target on the unconstrained scale is

.. math::

    \log\pi(u) = \log p(\theta(u)) + \sum_{j\ \text{positive}} u_j .

Forgetting the Jacobian term :math:`u_j` makes the chain target :math:`p(\theta)/\theta` instead
(the tests show that this is detected).

**One iteration = ``steps`` proposals** (default d). Under optimal scaling the random-walk
chain of a d-dimensional target moves like a diffusion whose speed falls as 1/d (Roberts, Gelman
and Gilks 1997), so it needs O(d) proposals per effectively independent draw: with the exact
posterior covariance as the proposal shape, the 5-d ``nig-synthetic`` posterior gives a bulk
ESS of about 180 from 4 x 1000 single-proposal draws. An iteration therefore makes ``steps``
successive Metropolis proposals and keeps the last state; with ``steps = d`` the ESS per kept
draw no longer falls with d (about 1000 from 4 x 1000 draws on the 5-d and 14-d test posteriors).
``sample_stats`` records per iteration the mean acceptance probability ``accept_prob``, the
counts ``n_accepted`` and ``n_nan``, and ``step_size``.

**Default starting points.** Each chain draws a point with every unconstrained coordinate in
Uniform(-2, 2), climbs to its mode by damped Newton steps with finite-difference derivatives
(:func:`find_mode`), and starts from an overdispersed draw of the Laplace approximation there,
:math:`N(\hat u, 2^2 A^{-1})` with :math:`A = -\nabla^2\log\pi(\hat u)` (Gelman and Rubin 1992
recommend starting points overdispersed relative to the posterior, found this way). Without
this the warmup spends itself on the transient: a regression on unstandardized predictors
(Boston, 14 parameters, posterior sds from 0.004 to 5) is hundreds of posterior sds away from a
Uniform(-2, 2) point in some coordinates.

**Warmup adaptation** (per chain; the kernel is frozen after warmup, Andrieu and Thoms 2008).
The proposal is :math:`N(u, \lambda^2 S)` with shape S and scale :math:`\lambda`.

1. *Initial shape*: the Laplace covariance :math:`(-\nabla^2\log\pi(u_0))^{-1}` at the chain's
   starting point, if positive definite, else the identity (:func:`laplace_shape`). Using the
   local curvature as the proposal covariance is the standard advice for near-Gaussian targets
   (Gelman, Roberts and Gilks 1996; BDA3, sec. 12.2).
2. *Schedule* (:func:`warmup_schedule`, Stan's windowed adaptation; Stan Development Team,
   Reference Manual, "HMC algorithm parameters"): a scale-only initial buffer (75 iterations),
   then covariance windows of 25, 50, 100, ... iterations, each twice the previous, the last
   stretched to the terminal buffer (100 iterations, scale only). Each window's estimate uses
   only its own draws (earlier windows enter only as the shrinkage target), so transients do
   not inflate the shape.
3. *Shape* (adaptive Metropolis, Haario, Saksman and Tamminen 2001): within a window, Welford's
   running mean and covariance of the chain's draws. At the window's end its covariance is
   *adopted* only if the chain moved in at least d + 1 of the window's iterations (distinct
   draws spanning every direction); otherwise S is kept. An adopted estimate from n distinct
   draws is regularized (:func:`regularize_cov`) on the correlation scale, so that parameters
   in different units (variances 1e6 apart) are treated alike: its correlation is shrunk toward
   the correlation of the shape in use (initially the Laplace shape; toward the identity if
   the shape is the identity, i.e. toward the diagonal) with weight :math:`d / (n + d)`, and its
   eigenvalues are floored at :math:`10^{-4}` of the largest.

   *The failure this prevents.* The first version of this module used a window's raw
   covariance (plus a :math:`10^{-8}` jitter) as soon as the window held max(20, 5d) draws.
   From a start where the chain barely moved, that estimate is (near) singular; the chain then
   proposes only inside its span, so later estimates stay singular and the jitter never
   restores the lost directions. On the 5-d ``nig-synthetic`` posterior the frozen proposals
   had smallest/largest eigenvalue between 7e-8 and 2e-5 in 11 of 12 chains, with R-hat 2.1
   to 3.2 and bulk ESS 4 to 5 (three seeds; 4 x 1000 draws).
   Haario et al. (2001) add :math:`\epsilon I` to the covariance, and Roberts and Rosenthal
   (2009) mix the adapted proposal with a fixed :math:`N(0, 0.1^2 I_d / d)`; both guards use
   an absolute scale, which is wrong by orders of magnitude when posterior sds range from 0.004
   to 5, hence the shrinkage on the correlation scale here.
4. *Scale*: :math:`\lambda = \tfrac{2.38}{\sqrt d}\, e^{\ell}`. The factor
   :math:`2.38/\sqrt d` is optimal for Gaussian targets when S is the target covariance
   (Roberts, Gelman and Gilks 1997; Roberts and Rosenthal 2001). :math:`\ell` corrects for
   non-Gaussian targets and imperfect S by Robbins-Monro (Robbins and Monro 1951; Andrieu and
   Thoms 2008, Algorithm 4): :math:`\ell \leftarrow \ell + \gamma_k(\bar\alpha_k - \alpha^*)`
   with gain :math:`\gamma_k = (k + 1)^{-0.6}`, where :math:`\bar\alpha_k` is the mean
   acceptance probability of the iteration's proposals. :math:`\ell` and k restart at 0 when a
   window's estimate is adopted. The frozen :math:`\ell` is the average of its iterates over
   the second half of the terminal buffer, where S no longer moves (Polyak and Juditsky 1992).
5. *Target acceptance* :math:`\alpha^*`: 0.44 for d = 1 and 0.234 for d >= 5 (the limits of
   Roberts, Gelman and Gilks 1997 and Roberts and Rosenthal 2001), linear in d in between.

The step size :math:`\lambda` of every chain is stored in ``sample_stats["step_size"]`` and the
frozen :math:`\lambda^2 S` (the proposal covariance on the unconstrained scale) in the posterior
attribute ``proposal_cov``.

References
----------
.. [1] Metropolis, N., Rosenbluth, A. W., Rosenbluth, M. N., Teller, A. H. and Teller, E. (1953).
   Equation of state calculations by fast computing machines. *J. Chem. Phys.* 21, 1087-1092.
.. [2] Hastings, W. K. (1970). Monte Carlo sampling methods using Markov chains and their
   applications. *Biometrika* 57, 97-109.
.. [3] Haario, H., Saksman, E. and Tamminen, J. (2001). An adaptive Metropolis algorithm.
   *Bernoulli* 7, 223-242.
.. [4] Roberts, G. O., Gelman, A. and Gilks, W. R. (1997). Weak convergence and optimal scaling of
   random walk Metropolis algorithms. *Ann. Appl. Probab.* 7, 110-120.
.. [5] Roberts, G. O. and Rosenthal, J. S. (2001). Optimal scaling for various Metropolis-Hastings
   algorithms. *Statist. Sci.* 16, 351-367.
.. [6] Robbins, H. and Monro, S. (1951). A stochastic approximation method. *Ann. Math. Statist.*
   22, 400-407.
.. [7] Andrieu, C. and Thoms, J. (2008). A tutorial on adaptive MCMC. *Stat. Comput.* 18, 343-373.
.. [8] Polyak, B. T. and Juditsky, A. B. (1992). Acceleration of stochastic approximation by
   averaging. *SIAM J. Control Optim.* 30, 838-855.
.. [9] Roberts, G. O. and Rosenthal, J. S. (2009). Examples of adaptive MCMC. *J. Comput. Graph.
   Statist.* 18, 349-367.
.. [10] Stan Development Team. Stan Reference Manual, "HMC algorithm parameters" (automatic
   parameter tuning: windowed adaptation of the metric). https://mc-stan.org/docs/
.. [11] Gelman, A. and Rubin, D. B. (1992). Inference from iterative simulation using multiple
   sequences. *Statist. Sci.* 7, 457-472.
.. [12] Gelman, A., Roberts, G. O. and Gilks, W. R. (1996). Efficient Metropolis jumping rules.
   In *Bayesian Statistics 5*, 599-607. Oxford University Press.
.. [13] Gelman, A., Carlin, J. B., Stern, H. S., Dunson, D. B., Vehtari, A. and Rubin, D. B.
   (2013). *Bayesian Data Analysis*, 3rd ed. (BDA3), sec. 12.2. CRC Press.
.. [14] Nocedal, J. and Wright, S. J. (2006). *Numerical Optimization*, 2nd ed., secs. 3.4
   (modified Newton) and 8.1 (finite differences). Springer.
.. [15] Ledoit, O. and Wolf, M. (2004). A well-conditioned estimator for large-dimensional
   covariance matrices. *J. Multivariate Anal.* 88, 365-411.

Examples
--------
A standard normal on ``a`` and an exponential on ``b``:

>>> def logdensity(v):
...     return -0.5 * v["a"] ** 2 - v["b"]
>>> dt = random_walk_metropolis(logdensity, {"a": "real", "b": "positive"}, draws=200,
...                             tune=200, chains=2, seed=1)
>>> dict(dt.posterior.sizes)
{'chain': 2, 'draw': 200}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from reference import datasets, sampling
from reference._validation import integer
from reference.logdensity import blog_logdensity

__all__ = [
    "RWMInfo",
    "RWMParams",
    "RWMState",
    "WarmupSchedule",
    "blog_seed",
    "constrain",
    "curvature",
    "find_mode",
    "laplace_shape",
    "mh_accept",
    "random_walk_metropolis",
    "regularize_cov",
    "rwm_kernel",
    "target_acceptance",
    "warmup_schedule",
]

#: kinds of parameter support the sampler understands
KINDS = ("real", "positive")
#: Robbins-Monro gain exponent, in (1/2, 1] as stochastic approximation requires
GAIN_EXPONENT = 0.6
#: warmup schedule (Stan's defaults): a scale-only initial buffer, covariance windows starting
#: at BASE_WINDOW iterations and doubling, and a scale-only terminal buffer
INIT_BUFFER = 75
BASE_WINDOW = 25
TERM_BUFFER = 100
#: warmups shorter than this adapt the scale only (too short for any covariance window)
MIN_TUNE_FOR_WINDOWS = 20
#: smallest eigenvalue of the regularized correlation matrix, relative to its largest
EIG_FLOOR = 1e-4
#: Newton iterations of the default start's mode search, and its tolerance (nats of predicted gain)
MODE_MAX_ITER = 50
MODE_TOL = 1e-3
#: the default start is drawn from N(mode, OVERDISPERSION^2 x Laplace covariance)
OVERDISPERSION = 2.0
#: default initial points: each unconstrained coordinate ~ Uniform(-INIT_RADIUS, INIT_RADIUS)
INIT_RADIUS = 2.0
#: redraws per chain when a default initial point has a non-finite log density
INIT_TRIES = 100


class RWMState(NamedTuple):
    """Positions on the unconstrained scale (C, d) and their cached log target (C,)."""

    position: np.ndarray
    logdensity: np.ndarray


class RWMInfo(NamedTuple):
    """Per-chain record of one iteration (``steps`` proposals); stored in ``sample_stats``."""

    accept_prob: np.ndarray  # mean of min(1, pi(u') / pi(u)) over the iteration's proposals, (C,)
    n_accepted: np.ndarray  # accepted proposals in the iteration, (C,)
    n_nan: np.ndarray  # proposals whose log density was NaN, (C,)
    step_size: np.ndarray  # lambda, the scale multiplying chol(S), (C,)


class RWMParams(NamedTuple):
    r"""Tuning parameters and warmup accumulators, per chain.

    ``chol`` (C, d, d) is the Cholesky factor of the proposal shape S; ``log_scale`` (C,) is
    the Robbins-Monro correction :math:`\ell`; ``rm_count`` (C,) its iteration counter;
    ``installed`` (C,) whether some window's estimate of S is in use; ``count`` (iterations),
    ``mean`` (C, d) and ``m2`` (C, d, d) the current window's Welford accumulators; ``avg_sum``
    and ``avg_count`` (C,) the running sum and count of :math:`\ell` for the final average;
    ``moved`` (C,) the iterations of the current window in which the chain moved; ``steps``
    the Metropolis proposals per iteration.
    """

    chol: np.ndarray
    log_scale: np.ndarray
    rm_count: np.ndarray
    installed: np.ndarray
    count: int
    mean: np.ndarray
    m2: np.ndarray
    avg_sum: np.ndarray
    avg_count: np.ndarray
    target_accept: float
    moved: np.ndarray | int = 0
    steps: int = 1

    @property
    def step_size(self) -> np.ndarray:
        """:math:`\\lambda = (2.38/\\sqrt d) e^{\\ell}` of every chain, (C,)."""
        d = self.chol.shape[-1]
        return 2.38 / np.sqrt(d) * np.exp(self.log_scale)

    @property
    def proposal_cov(self) -> np.ndarray:
        """:math:`\\lambda^2 S` of every chain, (C, d, d), on the unconstrained scale."""
        return self.step_size[:, None, None] ** 2 * (self.chol @ np.swapaxes(self.chol, -1, -2))


class WarmupSchedule(NamedTuple):
    """Iteration ranges of the warmup phases (see the module docstring).

    ``windows`` holds ``(start, end)`` of each covariance window, half-open; the initial buffer
    is ``[0, windows[0][0])`` and the terminal buffer ``[windows[-1][1], tune)``; ``average_from``
    is the first iteration whose log scale enters the final average.
    """

    windows: tuple[tuple[int, int], ...]
    average_from: int


def target_acceptance(d: int) -> float:
    """Target acceptance rate: 0.44 for d = 1, 0.234 for d >= 5, linear in d in between."""
    if d >= 5:
        return 0.234
    return 0.44 + (0.234 - 0.44) * (d - 1) / 4


def constrain(u: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Map unconstrained coordinates to the natural scale, with the log-Jacobian.

    :math:`\theta_j = e^{u_j}` for positive parameters and :math:`\theta_j = u_j` otherwise;
    :math:`\log|\det d\theta/du| = \sum_{j\ \text{positive}} u_j`.

    Parameters
    ----------
    u : ndarray (C, d)
    positive : ndarray of bool (d,)

    Returns
    -------
    theta : ndarray (C, d)
    log_jacobian : ndarray (C,)
    """
    with np.errstate(over="ignore"):  # exp overflows to inf; the log density then rejects
        theta = np.where(positive, np.exp(np.where(positive, u, 0.0)), u)
    return theta, u[:, positive].sum(axis=1)


def mh_accept(log_ratio: np.ndarray, log_u: np.ndarray) -> np.ndarray:
    r"""The Metropolis test: accept when :math:`\log U < \log\pi(u') - \log\pi(u)`.

    This happens with probability :math:`\min(1, \pi(u')/\pi(u))`. A ratio of :math:`-\infty`
    (proposal outside the support) is never accepted, since :math:`\log U > -\infty` a.s.
    """
    return log_u < log_ratio


def warmup_schedule(tune: int) -> WarmupSchedule:
    r"""The warmup phases for ``tune`` iterations, following Stan's windowed adaptation.

    An initial buffer of ``INIT_BUFFER`` iterations adapts the scale only (the chain leaves its
    starting point); then covariance windows of ``BASE_WINDOW`` iterations, each twice as long
    as the one before, the last stretched to end where the terminal buffer of ``TERM_BUFFER``
    iterations begins; the terminal buffer adapts the scale only, for the last proposal shape.
    The defaults are Stan's (75, 25, 50), with a terminal buffer of 100 instead of 50, since
    Robbins-Monro on the scale restarts there. If the three do not fit in ``tune``, they become
    15%, 75% and 10% of it (as in Stan); below ``MIN_TUNE_FOR_WINDOWS`` iterations there is no
    window at all. The final log scale averages its iterates over the second half of the
    terminal buffer.

    Examples
    --------
    >>> warmup_schedule(1000).windows
    ((75, 100), (100, 150), (150, 250), (250, 450), (450, 900))
    """
    if tune < MIN_TUNE_FOR_WINDOWS:
        return WarmupSchedule((), tune - max(1, tune // 10))
    init, base, term = INIT_BUFFER, BASE_WINDOW, TERM_BUFFER
    if init + base + term > tune:
        init, term = int(0.15 * tune), int(0.1 * tune)
        base = tune - init - term
    end_slow = tune - term
    windows = []
    start, size = init, base
    while start < end_slow:
        end = start + size
        if end + 2 * size > end_slow:  # the next, doubled window would not fit: stretch this one
            end = end_slow
        windows.append((start, end))
        start, size = end, 2 * size
    return WarmupSchedule(tuple(windows), tune - max(1, term // 2))


def regularize_cov(cov, n, target=None) -> np.ndarray:
    r"""Regularize a covariance estimated from ``n`` distinct warmup draws.

    Work on the correlation scale, so that the result does not depend on the parameters' units
    (a posterior can legitimately have variances 1e6 apart, as Boston's coefficients do):
    with :math:`D = \mathrm{diag}(\hat\Sigma)` and :math:`R = D^{-1/2}\hat\Sigma D^{-1/2}`,

    1. shrink the correlation toward a target correlation :math:`T` (that of ``target``; the
       identity by default, which shrinks the covariance toward its own diagonal):
       :math:`R_\delta = (1 - \delta) R + \delta T` with :math:`\delta = d / (n + d)`, heavy
       when the window holds few distinct draws and vanishing as they accumulate (linear
       shrinkage toward a structured target, Ledoit and Wolf 2004);
    2. floor the eigenvalues of :math:`R_\delta` at ``EIG_FLOOR`` (1e-4) times the largest
       (:math:`R_\delta = V \Lambda V^\top`, :math:`\Lambda \leftarrow \max(\Lambda,
       10^{-4}\lambda_{\max})`), a last guard on the condition number of the correlation;
    3. return :math:`D^{1/2} R_\delta D^{1/2}`: the variances are kept.

    A window whose draws collapsed onto a subspace has a singular R; after step 1 every
    direction keeps at least :math:`\delta\,\lambda_{\min}(T)` of the correlation scale, so the
    chain can move in the lost directions again and the next window can measure them.

    Parameters
    ----------
    cov : array_like (..., d, d)
        Sample covariances with positive, finite variances.
    n : float or array_like (...)
        Number of distinct draws behind each estimate (>= 1; ``np.inf`` for no shrinkage).
    target : array_like (..., d, d), optional
        A positive definite matrix whose correlation is the shrinkage target; default the
        identity.

    Returns
    -------
    ndarray (..., d, d)
    """
    cov = np.asarray(cov, dtype=float)
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"cov must be a stack of square matrices (..., d, d); received shape "
                         f"{cov.shape}.")
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    if not np.all(np.isfinite(cov)) or not np.all(var > 0):
        raise ValueError("cov must be finite with positive variances on the diagonal; received "
                         f"variances {var.tolist()}.")
    n = np.asarray(n, dtype=float)
    if not np.all(n >= 1):
        raise ValueError(f"n (distinct draws) must be >= 1; received {n.tolist()}.")
    d = cov.shape[-1]
    sd = np.sqrt(var)
    corr = cov / (sd[..., :, None] * sd[..., None, :])
    # step 1: shrink the correlation toward the target's correlation (default the identity,
    # i.e. the covariance toward its own diagonal)
    if target is None:
        target_corr = np.eye(d)
    else:
        target = np.asarray(target, dtype=float)
        target_sd = np.sqrt(np.diagonal(target, axis1=-2, axis2=-1))
        target_corr = target / (target_sd[..., :, None] * target_sd[..., None, :])
    delta = (d / (n + d))[..., None, None]
    corr = (1.0 - delta) * corr + delta * target_corr
    # step 2: floor the eigenvalues relative to the largest
    w, V = np.linalg.eigh(corr)
    w = np.maximum(w, EIG_FLOOR * w[..., -1:])
    corr = (V * w[..., None, :]) @ np.swapaxes(V, -1, -2)
    corr = 0.5 * (corr + np.swapaxes(corr, -1, -2))  # exact symmetry for the Cholesky factor
    # step 3: back to the parameters' scales
    return sd[..., :, None] * corr * sd[..., None, :]


def curvature(log_target: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
              h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Value, gradient and Hessian of every chain's log target by central differences.

    With steps :math:`h_j` along the axes (per chain),

    .. math::

        g_j &= \frac{f(u + h_j e_j) - f(u - h_j e_j)}{2 h_j}, \qquad
        H_{jj} = \frac{f(u + h_j e_j) - 2 f(u) + f(u - h_j e_j)}{h_j^2}, \\
        H_{jk} &= \frac{f(u{+}h_j e_j{+}h_k e_k) - f(u{+}h_j e_j{-}h_k e_k)
                        - f(u{-}h_j e_j{+}h_k e_k) + f(u{-}h_j e_j{-}h_k e_k)}{4 h_j h_k}.

    Every stencil point is evaluated for all chains in one call, row c at chain c's own point,
    so a log density whose row c belongs to chain c (each chain its own target) is respected:
    :math:`2d^2 + 1` calls in all.

    Parameters
    ----------
    log_target : callable ``ndarray (C, d) -> ndarray (C,)``
    u, h : ndarray (C, d)
        Points and step sizes.

    Returns
    -------
    f0 (C,), grad (C, d), hess (C, d, d); non-finite where a stencil value is not finite.
    """
    d = u.shape[1]
    f0 = log_target(u)
    steps = h[:, :, None] * np.eye(d)  # steps[c, j] = h[c, j] e_j
    grad = np.empty_like(u)
    hess = np.empty(u.shape + (d,))
    with np.errstate(invalid="ignore"):  # -inf - -inf at stencil points outside the support
        for j in range(d):
            fp, fm = log_target(u + steps[:, j]), log_target(u - steps[:, j])
            grad[:, j] = (fp - fm) / (2.0 * h[:, j])
            hess[:, j, j] = (fp - 2.0 * f0 + fm) / h[:, j] ** 2
            for k in range(j):
                pp = log_target(u + steps[:, j] + steps[:, k])
                pm = log_target(u + steps[:, j] - steps[:, k])
                mp = log_target(u - steps[:, j] + steps[:, k])
                mm = log_target(u - steps[:, j] - steps[:, k])
                hess[:, j, k] = hess[:, k, j] = (pp - pm - mp + mm) / (4.0 * h[:, j] * h[:, k])
    return f0, grad, hess


def _modified_inverse(neg_hess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A^-1, positive_definite)`` per chain, for A the modified ``neg_hess``.

    Modified Newton (Nocedal and Wright 2006, sec. 3.4), made unit-free: scale the symmetric
    part of ``neg_hess`` by its diagonal, :math:`\\tilde A = D^{-1/2} A D^{-1/2}` with
    :math:`D = |\\mathrm{diag}\\,A|`, replace the eigenvalues of :math:`\\tilde A` by their absolute
    values floored at 1e-8 of the largest, and scale back. Then :math:`A^{-1} g` is an ascent
    direction, and a Hessian whose ill-conditioning comes only from the parameters' units
    (posterior sds 1e4 apart) is left as it is.
    """
    A = 0.5 * (neg_hess + np.swapaxes(neg_hess, -1, -2))
    scale = np.sqrt(np.abs(np.diagonal(A, axis1=-2, axis2=-1)))
    scale = np.where(scale > 0, scale, 1.0)
    w, V = np.linalg.eigh(A / (scale[..., :, None] * scale[..., None, :]))
    pd = np.all(w > 0, axis=-1)
    w = np.abs(w)
    w = np.maximum(w, 1e-8 * w.max(axis=-1, keepdims=True))
    inv = (V / w[..., None, :]) @ np.swapaxes(V, -1, -2)
    return inv / (scale[..., :, None] * scale[..., None, :]), pd


def find_mode(log_target: Callable[[np.ndarray], np.ndarray], u: np.ndarray, *,
              max_iter: int = MODE_MAX_ITER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Damped Newton ascent on every chain's log target, from its own starting point.

    Iterate :math:`u \leftarrow u + t A^{-1} g`, with g and the Hessian H from
    :func:`curvature`, A the modified :math:`-H` (eigenvalues made positive), and t the first of
    1, 1/2, 1/4, ... that increases the log target (backtracking). Stop a chain when the
    predicted gain :math:`\tfrac12 g^\top A^{-1} g` is below ``MODE_TOL`` nats (then it sits
    within a small fraction of a posterior sd of the mode), when no step increases the log
    target, or when a derivative is not finite. Finite-difference steps are
    :math:`10^{-4}` times the posterior sd implied by the last A (Nocedal and Wright 2006,
    sec. 8.1: :math:`\epsilon^{1/4}` for second differences), starting from :math:`10^{-4}`.

    Returns
    -------
    u : ndarray (C, d)
        The last points (the start, for chains whose very first derivatives were not finite).
    cov : ndarray (C, d, d)
        :math:`A^{-1}` at the last point where the derivatives were finite (else the identity):
        at a mode, the covariance of the Laplace approximation.
    converged : ndarray of bool (C,)
        Whether the predicted gain fell below ``MODE_TOL``.
    """
    u = u.copy()
    cov = np.broadcast_to(np.eye(u.shape[1]), u.shape + (u.shape[1],)).copy()
    h = np.full(u.shape, 1e-4)
    active = np.ones(u.shape[0], dtype=bool)
    converged = np.zeros(u.shape[0], dtype=bool)
    for _ in range(max_iter):
        f0, g, H = curvature(log_target, u, h)
        ok = active & np.isfinite(f0) & np.all(np.isfinite(g), axis=1) & np.all(
            np.isfinite(H), axis=(1, 2))
        active &= ok
        if not active.any():
            break
        A_inv, _ = _modified_inverse(np.where(ok[:, None, None], -H, np.eye(u.shape[1])))
        cov = np.where(ok[:, None, None], A_inv, cov)
        direction = np.einsum("cij,cj->ci", A_inv, np.where(ok[:, None], g, 0.0))
        gain = 0.5 * np.einsum("ci,ci->c", g * ok[:, None], direction)
        converged |= active & (gain < MODE_TOL)
        active &= ~converged
        # backtracking: halve t until the log target increases (chains still searching)
        t = np.ones(u.shape[0])
        moving = active.copy()
        for _ in range(40):
            trial = u + t[:, None] * direction
            better = moving & (log_target(trial) > f0)
            u = np.where(better[:, None], trial, u)
            moving &= ~better
            t = np.where(moving, 0.5 * t, t)
            if not moving.any():
                break
        active &= ~moving  # no step improved: stop there
        # next finite-difference steps: 1e-4 posterior sd (from the modified Hessian), widened
        # far from the mode, where |log pi| is large and rounding would swamp the differences
        # of a short step: by sqrt(1 + 2 gain), the distance to the mode in sds for a Gaussian
        sd = np.sqrt(np.diagonal(A_inv, axis1=1, axis2=2))
        h = np.where(ok[:, None], 1e-4 * sd * np.sqrt(1.0 + 2.0 * np.abs(gain))[:, None], h)
        if not active.any():
            break
    return u, cov, converged


def laplace_shape(log_target: Callable[[np.ndarray], np.ndarray],
                  u: np.ndarray) -> np.ndarray:
    r"""Initial proposal shapes: the Laplace covariance :math:`(-\nabla^2 \log\pi(u))^{-1}` at each
    chain's starting point u, where it is positive definite (regularized by
    :func:`regularize_cov` with no shrinkage), and the identity elsewhere. Returns the Cholesky
    factors (C, d, d)."""
    chains, d = u.shape
    _, _, H = curvature(log_target, u, np.full(u.shape, 1e-4))
    chol = np.broadcast_to(np.eye(d), (chains, d, d)).copy()
    finite = np.all(np.isfinite(H), axis=(1, 2))
    if finite.any():
        # h = 1e-4 posterior sd (a second pass, now that the sds are known)
        cov, pd = _modified_inverse(np.where(finite[:, None, None], -H, np.eye(d)))
        h = 1e-4 * np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        _, _, H2 = curvature(log_target, u, h)
        finite &= pd & np.all(np.isfinite(H2), axis=(1, 2))
        cov, pd = _modified_inverse(np.where(finite[:, None, None], -H2, np.eye(d)))
        use = finite & pd
        if use.any():
            chol[use] = np.linalg.cholesky(regularize_cov(cov[use], np.inf))
    return chol


def _check_params(params) -> tuple[tuple[str, ...], np.ndarray]:
    if not isinstance(params, Mapping) or not params:
        raise TypeError("params must be a non-empty dict name -> 'real' | 'positive'; "
                        f"received {params!r}.")
    for k, kind in params.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"parameter names must be non-empty strings; received {k!r}.")
        if kind not in KINDS:
            raise ValueError(f"parameter {k!r} has kind {kind!r}; allowed kinds are {KINDS}.")
    names = tuple(params)
    return names, np.array([params[k] == "positive" for k in names])


def rwm_kernel(logdensity: Callable[[dict], np.ndarray], params: Mapping[str, str],
               init: Mapping | None = None, steps: int | None = None) -> sampling.Kernel:
    r"""Adaptive random-walk Metropolis as a :class:`reference.sampling.Kernel`.

    Parameters
    ----------
    logdensity : callable ``{name: ndarray (C,)} -> ndarray (C,)``
        Log density on the natural scale, up to a constant, vectorized across chains. NaN is
        treated as :math:`-\infty`; :math:`+\infty` is an error.
    params : dict name -> ``"real"`` or ``"positive"``
        The scalar parameters and their support; positive ones are sampled on the log scale.
    init : dict name -> float or ndarray (C,), optional
        Initial values on the natural scale: a number starts every chain there, an array gives
        each chain its own. Default: every unconstrained coordinate drawn from
        Uniform(-2, 2) (so a positive parameter starts in (e^-2, e^2)), redrawn up to 100
        times per chain while the log density is not finite; from there each chain climbs to
        its mode (:func:`find_mode`) and starts at a draw from N(mode, 2^2 x the Laplace
        covariance), or at the mode if the search did not converge or the draw has no finite
        density. Every starting point must have a finite log density. Either way the initial
        proposal shape is :func:`laplace_shape` at the starting point.
    steps : int, optional
        Metropolis proposals per iteration (per kept draw, and per warmup iteration). Default d,
        the number of parameters (see "One iteration" in the module docstring).

    Returns
    -------
    Kernel
        State :class:`RWMState`, info :class:`RWMInfo`, params :class:`RWMParams`.
    """
    if not callable(logdensity):
        raise TypeError(f"logdensity must be callable; received {logdensity!r}.")
    names, positive = _check_params(params)
    d = len(names)
    target_accept = target_acceptance(d)
    steps = d if steps is None else integer("steps", steps, 1)
    if init is not None:
        if not isinstance(init, Mapping) or set(init) != set(names):
            got = sorted(init) if isinstance(init, Mapping) else init
            raise ValueError(f"init must be a dict with exactly the keys {list(names)}; "
                             f"received {got!r}.")

    def log_target(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log pi(u) = log p(theta(u)) + log-Jacobian, (C,); and which evaluations were NaN."""
        theta, log_jac = constrain(u, positive)
        lp = np.asarray(logdensity({k: theta[:, j] for j, k in enumerate(names)}), dtype=float)
        if lp.shape != (u.shape[0],):
            raise ValueError(f"logdensity must return an array of shape ({u.shape[0]},) (one "
                             f"value per chain); it returned shape {lp.shape}.")
        if np.any(lp == np.inf):
            raise ValueError("logdensity returned +inf; a log density must be finite or -inf.")
        is_nan = np.isnan(lp)
        return np.where(is_nan, -np.inf, lp + log_jac), is_nan

    def user_init(chains: int) -> np.ndarray:
        u = np.empty((chains, d))
        for j, k in enumerate(names):
            v = np.asarray(init[k], dtype=float)
            if v.ndim > 1 or (v.ndim == 1 and v.shape != (chains,)):
                raise ValueError(f"init[{k!r}] must be a number or have shape ({chains},); "
                                 f"received shape {v.shape}.")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"init[{k!r}] must be finite; received {v}.")
            if positive[j]:
                if np.any(v <= 0):
                    raise ValueError(f"init[{k!r}] must be > 0 (a positive parameter); "
                                     f"received {v}.")
                v = np.log(v)
            u[:, j] = v
        return u

    def target_only(u: np.ndarray) -> np.ndarray:
        return log_target(u)[0]

    def init_fn(rng: sampling.ChainRNG) -> RWMState:
        if init is not None:
            u = user_init(rng.chains)
            lp, _ = log_target(u)
        else:
            # step 1: dispersed points, Uniform(-2, 2) on the unconstrained scale, redrawn per
            # chain (from that chain's own generator) while the log density is not finite
            u = INIT_RADIUS * (2.0 * rng.uniform((d,)) - 1.0)
            lp, _ = log_target(u)
            for _ in range(INIT_TRIES):
                bad = np.flatnonzero(~np.isfinite(lp))
                if bad.size == 0:
                    break
                for c in bad:
                    u[c] = rng.generators[c].uniform(-INIT_RADIUS, INIT_RADIUS, d)
                lp[bad] = log_target(u)[0][bad]
        bad = np.flatnonzero(~np.isfinite(lp))
        if bad.size:
            theta = constrain(u[bad[:1]], positive)[0][0]
            point = {k: float(v) for k, v in zip(names, theta, strict=True)}
            where = "the given init" if init is not None else "every default initial point tried"
            raise ValueError(
                f"the log density is not finite at {where} for chain(s) {bad.tolist()} "
                f"(chain {bad[0]} at {point}); pass an init where it is finite."
            )
        if init is None:
            # step 2: each chain climbs to its mode by damped Newton, then starts at an
            # overdispersed draw from the Laplace approximation there, N(mode, 2^2 A^-1)
            # (Gelman and Rubin 1992); where that draw has no finite density, at the mode
            with np.errstate(all="ignore"):  # trial points far out may overflow
                mode, cov, converged = find_mode(target_only, u)
            z = rng.normal((d,))
            start = mode + OVERDISPERSION * np.einsum("cij,cj->ci", np.linalg.cholesky(cov), z)
            lp_start, lp_mode = target_only(start), target_only(mode)
            use_draw = converged & np.isfinite(lp_start)
            u = np.where(use_draw[:, None], start, mode)
            lp = np.where(use_draw, lp_start, lp_mode)
        return RWMState(u, lp)

    def step(rng: sampling.ChainRNG, state: RWMState, p: RWMParams) -> tuple[RWMState, RWMInfo]:
        scale = p.step_size
        chains = state.position.shape[0]
        z = rng.normal((p.steps, d))  # (C, steps, d)
        log_u = np.log(rng.uniform((p.steps,)))  # (C, steps)
        position, lp = state.position, state.logdensity
        accept_sum = np.zeros(chains)
        n_accepted = np.zeros(chains, dtype=np.int64)
        n_nan = np.zeros(chains, dtype=np.int64)
        for s in range(p.steps):
            # step 1: propose u' = u + lambda L z
            proposal = position + scale[:, None] * np.einsum("cij,cj->ci", p.chol, z[:, s])
            # step 2: log target at the proposal (NaN -> -inf, counted)
            lp_prop, is_nan = log_target(proposal)
            # step 3: Metropolis test on the log ratio (the proposal is symmetric)
            log_ratio = lp_prop - lp
            accepted = mh_accept(log_ratio, log_u[:, s])
            position = np.where(accepted[:, None], proposal, position)
            lp = np.where(accepted, lp_prop, lp)
            accept_sum += np.exp(np.minimum(log_ratio, 0.0))
            n_accepted += accepted
            n_nan += is_nan
        return RWMState(position, lp), RWMInfo(accept_sum / p.steps, n_accepted, n_nan, scale)

    def positions(state: RWMState) -> dict:
        theta = constrain(state.position, positive)[0]
        return {k: theta[:, j] for j, k in enumerate(names)}

    def initial_shape(u: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # stencil points may leave the support
            return laplace_shape(target_only, u)

    def adapt_init(state: RWMState) -> RWMParams:
        chains = state.position.shape[0]
        return RWMParams(
            chol=initial_shape(state.position),
            log_scale=np.zeros(chains), rm_count=np.zeros(chains, dtype=np.int64),
            installed=np.zeros(chains, dtype=bool), count=0, mean=np.zeros((chains, d)),
            m2=np.zeros((chains, d, d)), avg_sum=np.zeros(chains),
            avg_count=np.zeros(chains, dtype=np.int64), target_accept=target_accept,
            moved=np.zeros(chains, dtype=np.int64), steps=steps,
        )

    schedules: dict[int, WarmupSchedule] = {}

    def adapt_update(p: RWMParams, state: RWMState, info: RWMInfo, i: int,
                     tune: int) -> RWMParams:
        schedule = schedules.setdefault(tune, warmup_schedule(tune))
        # step 1: Robbins-Monro on the log scale toward the target acceptance
        gain = (p.rm_count + 1.0) ** -GAIN_EXPONENT
        log_scale = p.log_scale + gain * (info.accept_prob - p.target_accept)
        rm_count = p.rm_count + 1
        chol, installed = p.chol, p.installed
        count, mean, m2, moved = p.count, p.mean, p.m2, p.moved
        window = next((w for w in schedule.windows if w[0] <= i < w[1]), None)
        if window is not None:
            # step 2: Welford's update of the window's running mean and covariance, and a count
            # of the iterations in which the chain moved (distinct draws)
            count += 1
            delta = state.position - mean
            mean = mean + delta / count
            m2 = m2 + np.einsum("ci,cj->cij", delta, state.position - mean)
            moved = moved + (info.n_accepted > 0)
            if i == window[1] - 1:
                # step 3: at the window's end, adopt its regularized covariance in the chains
                # that moved at least d + 1 times (enough distinct draws to span every
                # direction), restart the scale at 2.38 / sqrt(d), and empty the accumulators
                cov = m2 / max(count - 1, 1)
                var = np.diagonal(cov, axis1=1, axis2=2)
                usable = (moved >= d + 1) & np.all(var > 0, axis=1) & np.all(
                    np.isfinite(cov), axis=(1, 2))
                if usable.any():
                    new_chol = chol.copy()
                    shape = chol[usable] @ np.swapaxes(chol[usable], -1, -2)
                    new_chol[usable] = np.linalg.cholesky(
                        regularize_cov(cov[usable], moved[usable], target=shape))
                    chol = new_chol
                    log_scale = np.where(usable, 0.0, log_scale)
                    rm_count = np.where(usable, 0, rm_count)
                    installed = installed | usable
                count, mean, m2 = 0, np.zeros_like(mean), np.zeros_like(m2)
                moved = np.zeros_like(moved)
        # step 4: average the log scale over the end of warmup (from its last restart, if
        # later) and freeze the average at the end of warmup (Polyak and Juditsky 1992)
        avg_sum, avg_count = p.avg_sum, p.avg_count
        if i >= schedule.average_from:
            restarted = rm_count == 0
            avg_sum = np.where(restarted, 0.0, avg_sum) + log_scale
            avg_count = np.where(restarted, 0, avg_count) + 1
            if i == tune - 1:
                log_scale = avg_sum / avg_count
        return RWMParams(chol, log_scale, rm_count, installed, count, mean, m2, avg_sum,
                         avg_count, p.target_accept, moved, p.steps)

    return sampling.Kernel(init=init_fn, step=step, positions=positions, adapt_init=adapt_init,
                           adapt_update=adapt_update)


def random_walk_metropolis(logdensity: Callable[[dict], np.ndarray],
                           params: Mapping[str, str] | None = None, *, draws: int = 1000,
                           tune: int = 1000, chains: int = 4, seed: int = 0, thin: int = 1,
                           init: Mapping | None = None, steps: int | None = None,
                           observed_data: dict | None = None):
    """Sample ``logdensity`` by adaptive random-walk Metropolis (see the module docstring).

    Parameters
    ----------
    logdensity, init, steps
        As in :func:`rwm_kernel`.
    params : dict name -> ``"real"`` | ``"positive"``, optional
        Default: ``logdensity.params`` (as the objects of :mod:`reference.logdensity` provide).
    draws, tune, chains, seed, thin
        As in :func:`reference.sampling.run`; adaptation happens only during the ``tune``
        warmup iterations.
    observed_data : dict, optional
        Stored in the ``observed_data`` group.

    Returns
    -------
    DataTree
        ``posterior`` (one scalar variable per parameter, natural scale), ``sample_stats``
        (``accept_prob``, ``n_accepted``, ``n_nan``, ``step_size``), and posterior attributes
        naming the algorithm, the target acceptance and the frozen ``proposal_cov`` (JSON,
        per chain, over the unconstrained coordinates listed in ``unconstrained``).
    """
    if params is None:
        params = getattr(logdensity, "params", None)
        if params is None:
            raise TypeError("params is required (dict name -> 'real' | 'positive') unless "
                            "logdensity has a .params attribute.")
    kernel = rwm_kernel(logdensity, params, init, steps)
    out = sampling.run(kernel, draws=draws, tune=tune, chains=chains, seed=seed, thin=thin)
    names, positive = _check_params(params)
    attrs = {
        "algorithm": "adaptive random-walk Metropolis",
        "references": "Metropolis et al. 1953; Hastings 1970; Haario, Saksman and Tamminen "
                      "2001; Roberts, Gelman and Gilks 1997; Andrieu and Thoms 2008; Roberts "
                      "and Rosenthal 2009; Stan Reference Manual (windowed adaptation)",
        "target_accept": out.params.target_accept,
        "tune": tune,
        "steps_per_draw": out.params.steps,
        "unconstrained": json.dumps([f"log({k})" if pos else k
                                     for k, pos in zip(names, positive, strict=True)]),
        "proposal_cov": json.dumps(out.params.proposal_cov.tolist()),
    }
    return sampling.to_datatree(out, observed_data=observed_data, attrs=attrs, seed=seed)


def blog_seed(*, draws: int = 2000, tune: int = 1000, chains: int = 4, seed: int = 0):
    """The blog seed's posterior by random-walk Metropolis: ``y ~ 0 + x`` on
    :func:`reference.datasets.blog_mh`, slope ``x`` ~ N(5, 3^2), ``sigma`` ~ N(10, 30^2) on
    sigma > 0 (:func:`reference.logdensity.blog_logdensity`). The maximum-likelihood fit is
    :func:`reference.mle.blog_mle`.
    """
    data = datasets.blog_mh()
    return random_walk_metropolis(blog_logdensity(data), draws=draws, tune=tune, chains=chains,
                                  seed=seed, observed_data={"y": data["y"]})
