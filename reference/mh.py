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

**Warmup adaptation** (per chain; the kernel is frozen after warmup, Andrieu and Thoms 2008).
With d unconstrained coordinates:

1. *Proposal shape* (adaptive Metropolis, Haario, Saksman and Tamminen 2001): :math:`S` is the
   running covariance of the chain's own warmup draws (Welford's update), plus a jitter of
   :math:`10^{-8}` times its mean variance. It is used once the current window holds
   ``max(20, 5 d)`` draws; before that :math:`S = I`. Warmup has two windows,
   ``[0, tune // 2)`` and ``[tune // 2, tune - tune // 5)``: the second forgets the first, so
   the frozen :math:`S` is not inflated by the transient from a dispersed start. During the
   last fifth of warmup :math:`S` is fixed and only the scale adapts.
2. *Proposal scale*: :math:`\lambda = \tfrac{2.38}{\sqrt d}\, e^{\ell}`. The factor
   :math:`2.38/\sqrt d` is optimal for Gaussian targets when :math:`S` is the target covariance
   (Roberts, Gelman and Gilks 1997; Roberts and Rosenthal 2001). :math:`\ell` corrects for
   non-Gaussian targets by Robbins-Monro (Robbins and Monro 1951; Andrieu and Thoms 2008,
   Algorithm 4): :math:`\ell \leftarrow \ell + \gamma_k(\alpha_k - \alpha^*)` with gain
   :math:`\gamma_k = (k + 1)^{-0.6}`, where :math:`\alpha_k` is the acceptance probability of
   the last proposal. :math:`\ell` and k restart at 0 whenever a window's first estimate of
   :math:`S` is installed. The frozen :math:`\ell` is the average of its iterates over the last
   tenth of warmup, where :math:`S` no longer moves (Polyak and Juditsky 1992); this removes
   most of the jitter of the last iterate.
3. *Target acceptance* :math:`\alpha^*`: 0.44 for d = 1 and 0.234 for d >= 5 (the limits of
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
from reference.logdensity import blog_logdensity

__all__ = [
    "RWMInfo",
    "RWMParams",
    "RWMState",
    "blog_seed",
    "constrain",
    "mh_accept",
    "random_walk_metropolis",
    "rwm_kernel",
    "target_acceptance",
]

#: kinds of parameter support the sampler understands
KINDS = ("real", "positive")
#: Robbins-Monro gain exponent, in (1/2, 1] as stochastic approximation requires
GAIN_EXPONENT = 0.6
#: draws a window needs before its covariance estimate is used: max(MIN_WINDOW, 5 d)
MIN_WINDOW = 20
#: default initial points: each unconstrained coordinate ~ Uniform(-INIT_RADIUS, INIT_RADIUS)
INIT_RADIUS = 2.0
#: redraws per chain when a default initial point has a non-finite log density
INIT_TRIES = 100


class RWMState(NamedTuple):
    """Positions on the unconstrained scale (C, d) and their cached log target (C,)."""

    position: np.ndarray
    logdensity: np.ndarray


class RWMInfo(NamedTuple):
    """Per-chain record of one transition; the driver stores every field in ``sample_stats``."""

    accept_prob: np.ndarray  # min(1, pi(u') / pi(u)), (C,)
    is_accepted: np.ndarray  # bool, (C,)
    n_nan: np.ndarray  # 1 if the proposal's log density was NaN, else 0, (C,)
    step_size: np.ndarray  # lambda, the scale multiplying chol(S), (C,)


class RWMParams(NamedTuple):
    r"""Tuning parameters and warmup accumulators, per chain.

    ``chol`` (C, d, d) is the Cholesky factor of the proposal shape S; ``log_scale`` (C,) is
    the Robbins-Monro correction :math:`\ell`; ``rm_count`` (C,) its iteration counter;
    ``installed`` (C,) whether the current window's estimate of S is in use; ``count``,
    ``mean`` (C, d) and ``m2`` (C, d, d) the window's Welford accumulators; ``avg_sum`` and
    ``avg_count`` (C,) the running sum and count of :math:`\ell` for the final average.
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

    @property
    def step_size(self) -> np.ndarray:
        """:math:`\\lambda = (2.38/\\sqrt d) e^{\\ell}` of every chain, (C,)."""
        d = self.chol.shape[-1]
        return 2.38 / np.sqrt(d) * np.exp(self.log_scale)

    @property
    def proposal_cov(self) -> np.ndarray:
        """:math:`\\lambda^2 S` of every chain, (C, d, d), on the unconstrained scale."""
        return self.step_size[:, None, None] ** 2 * (self.chol @ np.swapaxes(self.chol, -1, -2))


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
               init: Mapping | None = None) -> sampling.Kernel:
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
        times per chain while the log density is not finite. Every starting point must have a
        finite log density.

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
    n_min = max(MIN_WINDOW, 5 * d)
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

    def init_fn(rng: sampling.ChainRNG) -> RWMState:
        if init is not None:
            u = user_init(rng.chains)
            lp, _ = log_target(u)
        else:
            # dispersed default: Uniform(-2, 2) on the unconstrained scale, redrawn per chain
            # (from that chain's own generator) while the log density is not finite
            u = INIT_RADIUS * (2.0 * rng.uniform((d,)) - 1.0)
            lp, _ = log_target(u)
            for _ in range(INIT_TRIES):
                bad = np.flatnonzero(~np.isfinite(lp))
                if bad.size == 0:
                    break
                for c in bad:
                    u[c] = rng.generators[c].uniform(-INIT_RADIUS, INIT_RADIUS, d)
                lp[bad], _ = log_target(u[bad])
        bad = np.flatnonzero(~np.isfinite(lp))
        if bad.size:
            theta = constrain(u[bad[:1]], positive)[0][0]
            point = {k: float(v) for k, v in zip(names, theta, strict=True)}
            where = "the given init" if init is not None else "every default initial point tried"
            raise ValueError(
                f"the log density is not finite at {where} for chain(s) {bad.tolist()} "
                f"(chain {bad[0]} at {point}); pass an init where it is finite."
            )
        return RWMState(u, lp)

    def step(rng: sampling.ChainRNG, state: RWMState, p: RWMParams) -> tuple[RWMState, RWMInfo]:
        scale = p.step_size
        # step 1: propose u' = u + lambda L z
        z = rng.normal((d,))
        proposal = state.position + scale[:, None] * np.einsum("cij,cj->ci", p.chol, z)
        # step 2: log target at the proposal (NaN -> -inf, counted)
        lp_prop, is_nan = log_target(proposal)
        # step 3: Metropolis test on the log ratio (the proposal is symmetric)
        log_ratio = lp_prop - state.logdensity
        accepted = mh_accept(log_ratio, np.log(rng.uniform()))
        accept_prob = np.exp(np.minimum(log_ratio, 0.0))
        new = RWMState(np.where(accepted[:, None], proposal, state.position),
                       np.where(accepted, lp_prop, state.logdensity))
        return new, RWMInfo(accept_prob, accepted, is_nan.astype(np.int64), scale)

    def positions(state: RWMState) -> dict:
        theta = constrain(state.position, positive)[0]
        return {k: theta[:, j] for j, k in enumerate(names)}

    def adapt_init(state: RWMState) -> RWMParams:
        chains = state.position.shape[0]
        return RWMParams(
            chol=np.broadcast_to(np.eye(d), (chains, d, d)).copy(),
            log_scale=np.zeros(chains), rm_count=np.zeros(chains, dtype=np.int64),
            installed=np.zeros(chains, dtype=bool), count=0, mean=np.zeros((chains, d)),
            m2=np.zeros((chains, d, d)), avg_sum=np.zeros(chains),
            avg_count=np.zeros(chains, dtype=np.int64), target_accept=target_accept,
        )

    def adapt_update(p: RWMParams, state: RWMState, info: RWMInfo, i: int,
                     tune: int) -> RWMParams:
        # step 1: Robbins-Monro on the log scale toward the target acceptance
        gain = (p.rm_count + 1.0) ** -GAIN_EXPONENT
        log_scale = p.log_scale + gain * (info.accept_prob - p.target_accept)
        rm_count = p.rm_count + 1
        count, mean, m2, installed = p.count, p.mean, p.m2, p.installed
        # step 2: the second window forgets the first (transient from the start)
        if i == tune // 2:
            count, mean, m2 = 0, np.zeros_like(mean), np.zeros_like(m2)
            installed = np.zeros_like(installed)
        chol = p.chol
        in_window = i < tune - tune // 5  # the last fifth of warmup adapts the scale only
        if in_window:
            # step 3: Welford's update of the window's running mean and covariance
            count += 1
            delta = state.position - mean
            mean = mean + delta / count
            m2 = m2 + np.einsum("ci,cj->cij", delta, state.position - mean)
        # step 4: once the window holds n_min draws, use its covariance as the proposal shape
        if in_window and count >= n_min:
            cov = m2 / (count - 1)
            usable = np.all(np.diagonal(cov, axis1=1, axis2=2) > 0, axis=1)
            if usable.any():
                chol = np.where(usable[:, None, None], _jittered_cholesky(cov, usable), chol)
                # a window's first estimate restarts the scale at 2.38 / sqrt(d)
                fresh = usable & ~installed
                log_scale = np.where(fresh, 0.0, log_scale)
                rm_count = np.where(fresh, 0, rm_count)
                installed = installed | usable
        # step 5: average the log scale over the last tenth of warmup (or since its last
        # restart, if later) and freeze the average at the end of warmup
        avg_sum, avg_count = p.avg_sum, p.avg_count
        if i >= tune - max(1, tune // 10):
            restarted = rm_count == 0
            avg_sum = np.where(restarted, 0.0, avg_sum) + log_scale
            avg_count = np.where(restarted, 0, avg_count) + 1
            if i == tune - 1:
                log_scale = avg_sum / avg_count
        return RWMParams(chol, log_scale, rm_count, installed, count, mean, m2, avg_sum,
                         avg_count, p.target_accept)

    return sampling.Kernel(init=init_fn, step=step, positions=positions, adapt_init=adapt_init,
                           adapt_update=adapt_update)


def _jittered_cholesky(cov: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of cov + eps I, eps = 1e-8 x mean variance (raised if needed).

    Chains that are not ``usable`` get the identity (their result is discarded by the caller).
    """
    d = cov.shape[-1]
    eye = np.eye(d)
    cov = np.where(usable[:, None, None], cov, eye)
    mean_var = np.trace(cov, axis1=1, axis2=2) / d
    for jitter in (1e-8, 1e-6, 1e-4):
        try:
            return np.linalg.cholesky(cov + (jitter * mean_var)[:, None, None] * eye)
        except np.linalg.LinAlgError:
            continue
    # a (numerically) degenerate window: fall back to the diagonal
    return np.sqrt(np.diagonal(cov, axis1=1, axis2=2))[:, :, None] * eye


def random_walk_metropolis(logdensity: Callable[[dict], np.ndarray],
                           params: Mapping[str, str] | None = None, *, draws: int = 1000,
                           tune: int = 1000, chains: int = 4, seed: int = 0, thin: int = 1,
                           init: Mapping | None = None, observed_data: dict | None = None):
    """Sample ``logdensity`` by adaptive random-walk Metropolis (see the module docstring).

    Parameters
    ----------
    logdensity, init
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
        (``accept_prob``, ``is_accepted``, ``n_nan``, ``step_size``), and posterior attributes
        naming the algorithm, the target acceptance and the frozen ``proposal_cov`` (JSON,
        per chain, over the unconstrained coordinates listed in ``unconstrained``).
    """
    if params is None:
        params = getattr(logdensity, "params", None)
        if params is None:
            raise TypeError("params is required (dict name -> 'real' | 'positive') unless "
                            "logdensity has a .params attribute.")
    kernel = rwm_kernel(logdensity, params, init)
    out = sampling.run(kernel, draws=draws, tune=tune, chains=chains, seed=seed, thin=thin)
    names, positive = _check_params(params)
    attrs = {
        "algorithm": "adaptive random-walk Metropolis",
        "references": "Metropolis et al. 1953; Hastings 1970; Haario, Saksman and Tamminen "
                      "2001; Roberts, Gelman and Gilks 1997; Andrieu and Thoms 2008",
        "target_accept": out.params.target_accept,
        "tune": tune,
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
