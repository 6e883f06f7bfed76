r"""numba transcription of the collapsed hierarchical Gibbs sweep (the fast path).

:func:`reference.hierarchical.hierarchical_gibbs` with ``fast=True`` runs this instead of the
numpy kernel for the default ``strategy="collapsed"`` when every scale prior has a closed-form
log density in :func:`reference.hierarchical.conditional_log_prior`. The algorithm is the numpy
one, step for step, and its maths is documented there:

1. :func:`reference.hierarchical.draw_theta` (block elimination, Cholesky of the Schur
   complement);
2. for each group term, :func:`reference.hierarchical.draw_tau_collapsed` (slice sampling of
   :math:`\log\tau_t` with the group effects integrated out, :func:`slice_log_scale` and
   ``_shrink`` with their look-ahead batches, then :math:`b_t \mid \tau_t`);
3. :math:`\sigma` by :func:`reference.hierarchical.draw_scale` (conjugate inverse gamma,
   half-Cauchy mixture, or :func:`reference.hierarchical.draw_scale_slice` on the probability
   scale with ``scipy.special.gammainc``/``gammaincinv``, bound in :mod:`reference._numba`);
4. during warmup, each chain's slice widths (``_adapt_widths``).

Each chain runs all its sweeps in one compiled call, drawing from its own
``numpy.random.Generator`` exactly the variates, in the order, that the numpy sweep draws for
that chain: D normals for theta; per term 9 uniforms for the slice update (more, in blocks, only
when its shrinkage needs them) then :math:`J_t` normals; then the gamma (and exponential) or the
5 uniforms of sigma's update. So both paths give the same draws for the same seed up to
rounding (see :mod:`reference._numba`).
"""

from __future__ import annotations

import math

import numpy as np

from reference import priors
from reference._numba import cholesky_into, gammainc, gammaincinv, jit

# prior codes of conditional_log_prior
HALF_NORMAL, HALF_CAUCHY, HALF_STUDENT_T, EXPONENTIAL = 0, 1, 2, 3
INV_GAMMA_SD, INV_GAMMA_VAR, TRUNC_NORMAL, UNIFORM, FLAT, CONSTANT = 4, 5, 6, 7, 8, 9
# what the log target of a slice update is
COLLAPSED_TAU, LOG_SCALE, PROBABILITY = 0, 1, 2
# how sigma is updated
SIGMA_FIXED, SIGMA_IG, SIGMA_HALF_CAUCHY, SIGMA_SLICE = 0, 1, 2, 3


def prior_code(prior) -> tuple[int, float, float] | None:
    """``(code, a, b)`` of a scale prior for the compiled code, in the order
    :func:`reference.hierarchical.conditional_log_prior` tests the types; None when the prior
    has no closed form there (the numpy path then runs)."""
    if isinstance(prior, priors.Constant):
        return CONSTANT, float(prior.value), 0.0
    if isinstance(prior, priors.HalfNormal):
        return HALF_NORMAL, float(prior.sigma), 0.0
    if isinstance(prior, priors.HalfCauchy):
        return HALF_CAUCHY, float(prior.beta), 0.0
    if isinstance(prior, priors.HalfStudentT):
        return HALF_STUDENT_T, float(prior.nu), float(prior.sigma)
    if isinstance(prior, priors.Exponential):
        return EXPONENTIAL, float(prior.lam), 0.0
    if isinstance(prior, priors.InverseGamma):
        code = INV_GAMMA_SD if prior.on == "sigma" else INV_GAMMA_VAR
        return code, float(prior.alpha), float(prior.beta)
    if isinstance(prior, priors.TruncatedNormal):
        return TRUNC_NORMAL, float(prior.mu), float(prior.sigma)
    if isinstance(prior, priors.Uniform):
        return UNIFORM, float(prior.lower), float(prior.upper)
    if isinstance(prior, priors.Flat):
        return FLAT, 0.0, 0.0
    return None


def unsupported(setup) -> str | None:
    """Why the fast path cannot run this model (None when it can)."""
    if setup.strategy != "collapsed":
        return f"strategy {setup.strategy!r} (the fast path runs 'collapsed')"
    for prior in (*setup.tau_priors, setup.sigma_prior):
        if prior is not None and prior_code(prior) is None:
            return f"prior {prior} has no closed-form log density in conditional_log_prior"
    return None


# --------------------------------------------------------------------------------------------
# Compiled pieces, each mirroring one numpy function
# --------------------------------------------------------------------------------------------
@jit
def _log_prior(code, a, b, s):
    """conditional_log_prior for one scale."""
    if code == HALF_NORMAL:
        x = s / a
        return -0.5 * (x * x)
    if code == HALF_CAUCHY:
        x = s / a
        return -math.log1p(x * x)
    if code == HALF_STUDENT_T:
        x = s / b
        return -0.5 * (a + 1.0) * math.log1p((x * x) / a)
    if code == EXPONENTIAL:
        return -a * s
    if code == INV_GAMMA_SD:
        return -(a + 1.0) * math.log(s) - b / s
    if code == INV_GAMMA_VAR:
        return -(2.0 * a + 1.0) * math.log(s) - b / (s * s)
    if code == TRUNC_NORMAL:
        x = (s - a) / b
        return -0.5 * (x * x)
    if code == UNIFORM:
        return 0.0 if (s > a and s < b) else -math.inf
    return 0.0  # Flat


@jit
def _target(which, x, code, pa, pb, lam_s2, half_c, m, ss, shape, rate):
    """The log densities the slice updates target: the collapsed log tau
    (draw_tau_collapsed), log s (draw_scale_slice's fallback) and the probability scale
    (draw_scale_slice)."""
    if which == COLLAPSED_TAU:
        t2 = math.exp(2.0 * x)
        s1 = 0.0
        s2 = 0.0
        for j in range(lam_s2.shape[0]):
            a = t2 * lam_s2[j]
            s1 += half_c[j] / (1.0 + a)
            s2 += math.log1p(a)
        return s1 * t2 - 0.5 * s2 + _log_prior(code, pa, pb, math.sqrt(t2)) + x
    if which == LOG_SCALE:
        s = math.exp(x)
        return -m * x - 0.5 * ss / (s * s) + _log_prior(code, pa, pb, s) + x
    s = math.sqrt(rate / gammaincinv(shape, x))
    if math.isfinite(s) and s > 0:
        return _log_prior(code, pa, pb, s)
    return -math.inf


@jit
def _shrink(gen, x0, log_y, left, right, U, n_pre, batch, evals, which, code, pa, pb, lam_s2,
            half_c, m, ss, shape, rate):
    """Neal's shrinkage as hierarchical._shrink does it for one chain: candidates in batches,
    pre-drawn uniforms first, then fresh ones (a whole batch at a time)."""
    cands = np.empty(batch)
    used = 0
    for _ in range(100):
        lo = left
        hi = right
        for k in range(batch):
            if used < n_pre:
                draw = U[used]
            else:
                draw = gen.random()
            used += 1
            cand = lo + draw * (hi - lo)
            cands[k] = cand
            if cand < x0:
                lo = cand
            if cand >= x0:
                hi = cand
        evals += batch
        for k in range(batch):
            if _target(which, cands[k], code, pa, pb, lam_s2, half_c, m, ss, shape,
                       rate) > log_y:
                return cands[k], evals
        left = lo
        right = hi
    raise RuntimeError("slice sampler failed to find a point on the slice after 300 "
                       "shrinkages; the log density is probably not finite at the current point.")


@jit
def _slice_log_scale(gen, u0, width, which, code, pa, pb, lam_s2, half_c, m, ss):
    """slice_log_scale for one chain: stepping out two steps per look-ahead, then shrinkage."""
    max_steps, n_shrink, batch = 50, 6, 2
    U = np.empty(3 + n_shrink)
    for k in range(3 + n_shrink):
        U[k] = gen.random()
    left = u0 - width * U[1]
    ends = np.array([left, left + width])
    direction = np.array([-width, width])
    f0 = _target(which, u0, code, pa, pb, lam_s2, half_c, m, ss, 0.0, 0.0)
    log_y = f0 + math.log1p(-U[0])
    evals = np.int64(3)
    steps0 = math.floor(max_steps * U[2])
    steps = np.array([steps0, max_steps - 1 - steps0])
    grow = np.empty(2, dtype=np.bool_)
    for e in range(2):
        f = _target(which, ends[e], code, pa, pb, lam_s2, half_c, m, ss, 0.0, 0.0)
        grow[e] = steps[e] > 0 and f > log_y
    while grow[0] or grow[1]:
        for e in range(2):
            if not grow[e]:
                continue
            first_off = batch + 1
            for ahead in range(1, batch + 1):
                point = ends[e] + ahead * direction[e]
                if not (_target(which, point, code, pa, pb, lam_s2, half_c, m, ss, 0.0,
                                0.0) > log_y):
                    first_off = ahead
                    break
            taken = min(min(float(first_off), float(batch)), steps[e])
            ends[e] = ends[e] + taken * direction[e]
            steps[e] = steps[e] - taken
            evals += batch
            grow[e] = first_off > batch and steps[e] > 0
    return _shrink(gen, u0, log_y, ends[0], ends[1], U[3:], np.int64(n_shrink), np.int64(3),
                   np.int64(evals), which, code, pa, pb, lam_s2, half_c, m, ss, 0.0, 0.0)


@jit
def _draw_scale(gen, kind, code, pa, pb, m, ss, scale, aux, width, dummy):
    """draw_scale for sigma: returns (scale, aux, evals)."""
    if kind == SIGMA_IG:
        shape = pa + 0.5 * m
        rate = pb + 0.5 * ss
        return math.sqrt(rate / gen.standard_gamma(shape)), aux, np.int64(0)
    if kind == SIGMA_HALF_CAUCHY:
        shape = 0.5 * (m + 1.0)
        rate = 0.5 * ss + 1.0 / aux
        scale = math.sqrt(rate / gen.standard_gamma(shape))
        rate_aux = 1.0 / (scale * scale) + 1.0 / (pa * pa)
        return scale, rate_aux / gen.standard_exponential(), np.int64(0)
    # draw_scale_slice: the probability scale of the inverse-gamma part when it is proper
    shape = 0.5 * (m - 1.0)
    rate = 0.5 * ss
    if shape > 0 and rate > 0:
        p0 = gammainc(shape, rate / (scale * scale))
        if p0 > 0 and p0 < 1:
            U = np.empty(5)
            for k in range(5):
                U[k] = gen.random()
            log_y = _log_prior(code, pa, pb, scale) + math.log1p(-U[0])
            prob, evals = _shrink(gen, p0, log_y, 0.0, 1.0, U[1:], np.int64(4), np.int64(2),
                                  np.int64(1), np.int64(PROBABILITY), code, pa, pb, dummy, dummy,
                                  m, ss, shape, rate)
            return math.sqrt(rate / gammaincinv(shape, prob)), aux, evals
    u, evals = _slice_log_scale(gen, math.log(scale), width, np.int64(LOG_SCALE), code, pa, pb,
                                dummy, dummy, m, ss)
    return math.exp(u), aux, evals


@jit
def _chain(gen, tau, sigma, sigma_aux, WtW, Wty, p, beta_precision, beta_shift,
           term_start, term_stop, tau_code, tau_pa, tau_pb,
           k_idx, e_start, e_stop, eliminated, WtW_kk, WtW_ke, lam_e, Wty_k, Wty_e,
           kept_groups, kept_terms, sig_kind, sig_code, sig_pa, sig_pb, n, theta_hat, ss_min,
           tune, draws, thin, out_theta, out_tau, out_sigma, out_evals, width, ad_mean, ad_m2):
    """Run one chain for ``tune + draws * thin`` sweeps (hierarchical._sweep with the collapsed
    strategy, and the driver's warmup adaptation). Returns the adaptation count."""
    D = WtW.shape[0]
    T = tau.shape[0]
    K = k_idx.shape[0]
    J_e = e_stop - e_start
    theta = np.empty(D)
    z = np.empty(D)
    S = np.empty((K, K))
    L = np.zeros((K, K))
    r_k = np.empty(K)
    r_e = np.empty(J_e)
    d_e = np.empty(J_e)
    w = np.empty(K)
    th_k = np.empty(K)
    dummy = np.empty(0)
    x = np.empty(T + 1)
    count = 0
    kept = 0
    total = tune + draws * thin
    for i in range(total):
        evals = np.int64(0)
        # step 1: theta | tau, sigma, y (draw_theta)
        inv_s2 = 1.0 / (sigma * sigma)
        for a in range(K):
            for b in range(K):
                S[a, b] = WtW_kk[a, b] * inv_s2
        for a in range(p):
            for b in range(p):
                S[a, b] += beta_precision[a, b]
        for g in range(kept_groups.shape[0]):
            tg = tau[kept_terms[g]]
            S[kept_groups[g], kept_groups[g]] += 1.0 / (tg * tg)
        for a in range(K):
            r_k[a] = Wty_k[a] * inv_s2
        for a in range(p):
            r_k[a] += beta_shift[a]
        if eliminated >= 0:
            te = tau[eliminated]
            for j in range(J_e):
                d_e[j] = lam_e[j] * inv_s2 + 1.0 / (te * te)
                r_e[j] = Wty_e[j] * inv_s2
            c2 = inv_s2 * inv_s2
            for a in range(K):
                for b in range(K):
                    acc = 0.0
                    for j in range(J_e):
                        acc += (WtW_ke[a, j] / d_e[j]) * WtW_ke[b, j]
                    S[a, b] -= c2 * acc
                acc = 0.0
                for j in range(J_e):
                    acc += (r_e[j] / d_e[j]) * WtW_ke[a, j]
                r_k[a] -= inv_s2 * acc
        if not cholesky_into(S, L):
            raise ValueError("the conditional precision of (beta, b) is not positive definite; "
                             "with a flat prior on beta, X must have full column rank.")
        for a in range(D):
            z[a] = gen.standard_normal()
        for a in range(K):                       # w = L^-1 r~ + z_k
            acc = r_k[a]
            for b in range(a):
                acc -= L[a, b] * w[b]
            w[a] = acc / L[a, a]
        for a in range(K):
            w[a] += z[k_idx[a]]
        for a in range(K - 1, -1, -1):           # theta_k = L^-T w
            acc = w[a]
            for b in range(a + 1, K):
                acc -= L[b, a] * th_k[b]
            th_k[a] = acc / L[a, a]
        for a in range(K):
            theta[k_idx[a]] = th_k[a]
        if eliminated >= 0:                      # theta_e | theta_k
            for j in range(J_e):
                acc = 0.0
                for a in range(K):
                    acc += th_k[a] * WtW_ke[a, j]
                mean_e = (r_e[j] - inv_s2 * acc) / d_e[j]
                theta[e_start + j] = mean_e + z[e_start + j] / math.sqrt(d_e[j])
        # step 2: (tau_t, b_t) | beta, b_{-t}, sigma (draw_tau_collapsed)
        s2 = sigma * sigma
        for t in range(T):
            if tau_code[t] == CONSTANT:
                continue
            start, stop = term_start[t], term_stop[t]
            J = stop - start
            lam = np.empty(J)
            u = np.empty(J)
            for j in range(J):
                lam[j] = WtW[start + j, start + j]
                acc = 0.0
                for a in range(D):
                    acc += theta[a] * WtW[a, start + j]
                u[j] = Wty[start + j] - acc + theta[start + j] * lam[j]
            lam_s2 = np.empty(J)
            half_c = np.empty(J)
            for j in range(J):
                lam_s2[j] = lam[j] / s2
                half_c[j] = 0.5 * (u[j] * u[j]) / (s2 * s2)
            v, ev = _slice_log_scale(gen, math.log(tau[t]), width[t], np.int64(COLLAPSED_TAU),
                                     tau_code[t], tau_pa[t], tau_pb[t], lam_s2, half_c, 0.0,
                                     0.0)
            evals += ev
            tau[t] = math.exp(v)
            inv_t2 = 1.0 / (tau[t] * tau[t])
            for j in range(J):
                prec = lam[j] / s2 + inv_t2
                theta[start + j] = (u[j] / s2) / prec + gen.standard_normal() / math.sqrt(prec)
        # step 3: sigma | theta, y (residual_ss, draw_scale)
        if sig_kind != SIGMA_FIXED:
            ss = 0.0
            for a in range(D):
                row = 0.0
                for b in range(D):
                    row += (theta[b] - theta_hat[b]) * WtW[b, a]
                ss += row * (theta[a] - theta_hat[a])
            ss = ss_min + ss
            sigma, sigma_aux, ev = _draw_scale(gen, sig_kind, sig_code, sig_pa, sig_pb,
                                               float(n), ss, sigma, sigma_aux, width[T], dummy)
            evals += ev
        # warmup: the slice widths (_adapt_widths)
        if i < tune and i >= tune // 5:
            count += 1
            for t in range(T):
                x[t] = math.log(tau[t])
            x[T] = math.log(sigma)
            for t in range(T + 1):
                delta = x[t] - ad_mean[t]
                ad_mean[t] = ad_mean[t] + delta / count
                ad_m2[t] = ad_m2[t] + delta * (x[t] - ad_mean[t])
            if count >= 20:
                for t in range(T + 1):
                    width[t] = min(max(2.5 * math.sqrt(ad_m2[t] / (count - 1)), 1e-3), 10.0)
        if i >= tune and (i - tune) % thin == thin - 1:
            for a in range(D):
                out_theta[kept, a] = theta[a]
            for t in range(T):
                out_tau[kept, t] = tau[t]
            out_sigma[kept] = sigma
            out_evals[kept] = evals
            kept += 1
    return count


def run_chains(generators, state, setup, *, tune: int, draws: int, thin: int) -> dict:
    """Run every chain from ``state`` (a :class:`reference.hierarchical.HierarchicalState`) with
    its own generator. Returns the kept ``theta`` (C, draws, D), ``tau`` (C, draws, T),
    ``sigma`` and ``slice_evals`` (C, draws), and the final slice widths and their moments."""
    stats, plan = setup.stats, setup.plan
    C, D = state.theta.shape
    T = len(setup.terms)
    codes = [prior_code(pr) for pr in setup.tau_priors]
    tau_code = np.array([c[0] for c in codes], dtype=np.int64)
    tau_pa = np.array([c[1] for c in codes], dtype=float)
    tau_pb = np.array([c[2] for c in codes], dtype=float)
    blocks = stats.blocks[1:]
    term_start = np.array([b.start for b in blocks], dtype=np.int64)
    term_stop = np.array([b.stop for b in blocks], dtype=np.int64)
    sig = setup.sigma_prior
    if sig is None:
        sig_kind, sig_code, sig_pa, sig_pb = SIGMA_FIXED, FLAT, 0.0, 0.0
    elif isinstance(sig, priors.InverseGamma) and sig.on == "sigma2":
        sig_kind, sig_code, sig_pa, sig_pb = SIGMA_IG, INV_GAMMA_VAR, float(sig.alpha), float(
            sig.beta)
    elif isinstance(sig, priors.HalfCauchy):
        sig_kind, sig_code, sig_pa, sig_pb = SIGMA_HALF_CAUCHY, HALF_CAUCHY, float(sig.beta), 0.0
    else:
        sig_kind = SIGMA_SLICE
        sig_code, sig_pa, sig_pb = prior_code(sig)
    eliminated = -1 if plan.eliminated is None else int(plan.eliminated)
    out = {"theta": np.empty((C, draws, D)), "tau": np.empty((C, draws, T)),
           "sigma": np.empty((C, draws)), "slice_evals": np.empty((C, draws), dtype=np.int64)}
    width = np.full((C, T + 1), 1.0)
    mean = np.zeros((C, T + 1))
    m2 = np.zeros((C, T + 1))
    count = 0
    f = np.ascontiguousarray
    for c, gen in enumerate(generators):
        count = _chain(
            gen, state.tau[c].astype(float).copy(), float(state.sigma[c]),
            float(state.sigma_aux[c]), f(stats.WtW), f(stats.Wty), int(stats.p),
            f(setup.beta_precision), f(setup.beta_shift), term_start, term_stop, tau_code,
            tau_pa, tau_pb, np.asarray(plan.k, dtype=np.int64), int(plan.e.start),
            int(plan.e.stop), eliminated, f(plan.WtW_kk), f(plan.WtW_ke), f(plan.lam_e),
            f(plan.Wty_k), f(plan.Wty_e), np.asarray(plan.kept_groups, dtype=np.int64),
            np.asarray(plan.kept_terms, dtype=np.int64), sig_kind, sig_code, sig_pa, sig_pb,
            int(stats.n), f(setup.theta_hat), float(setup.ss_min), int(tune), int(draws),
            int(thin), out["theta"][c], out["tau"][c], out["sigma"][c], out["slice_evals"][c],
            width[c], mean[c], m2[c])
    out.update(width=width, count=count, mean=mean, m2=m2)
    return out
