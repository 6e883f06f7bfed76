r"""numba transcription of the linear Gibbs sweep of :mod:`reference.gibbs` (the fast path).

:func:`reference.gibbs.linear_gibbs` with ``fast=True`` runs this instead of the numpy kernel
when the noise prior has an exact conditional (``InverseGamma`` on :math:`\sigma^2`,
``HalfCauchy`` through its inverse-gamma mixture, or a known :math:`\sigma`); the slice-sampled
priors run on the numpy path. The algorithm is the numpy one, step for step, and the
documentation of the maths lives there: :func:`reference.gibbs.draw_beta`,
:func:`reference.gibbs.residual_terms`, :func:`reference.gibbs.draw_mixing`,
:func:`reference.gibbs.draw_sigma2`.

The numpy kernel advances all chains together, one sweep at a time; here each chain runs all
its sweeps in one compiled call, drawing from its own ``numpy.random.Generator`` in the order the
numpy sweep does (per sweep: p normals, then the exponential of the mixture, then the gamma), so
both paths give the same draws for the same seed up to rounding (see :mod:`reference._numba`).
"""

from __future__ import annotations

import numpy as np

from reference._numba import cholesky_into, jit

#: noise kinds, as :func:`reference.gibbs._noise_kind` names them
KNOWN, INVERSE_GAMMA, HALF_CAUCHY = 0, 1, 2
KINDS = {"known": KNOWN, "ig": INVERSE_GAMMA, "halfcauchy": HALF_CAUCHY}


@jit
def _chain(gen, beta, sigma2, mixing, XtX, Xty, center, rss_center, Xt_resid_center, n,
           P0, P0m0, m0, nig, nig_proper, kind, ig_shape, ig_scale, inv_hc_s2,
           tune, draws, thin, out_beta, out_sigma2):
    """Run one chain: ``tune + draws * thin`` sweeps; the kept ``beta`` and ``sigma2`` go to
    ``out_beta`` (draws, p) and ``out_sigma2`` (draws,). Returns the final state."""
    p = beta.shape[0]
    Q = np.empty((p, p))
    L = np.zeros((p, p))
    r = np.empty(p)
    w = np.empty(p)
    z = np.empty(p)
    d = np.empty(p)
    kept = 0
    total = tune + draws * thin
    for i in range(total):
        # step 1: beta | sigma^2 ~ N(Q^-1 r, Q^-1)  (gibbs.draw_beta)
        inv_s2 = 1.0 / sigma2
        ips = inv_s2 if nig else 1.0
        for a in range(p):
            r[a] = ips * P0m0[a] + inv_s2 * Xty[a]
            for b in range(p):
                Q[a, b] = ips * P0[a, b] + inv_s2 * XtX[a, b]
        for a in range(p):
            z[a] = gen.standard_normal()
        if not cholesky_into(Q, L):
            raise ValueError("the conditional precision of beta is not positive definite.")
        for a in range(p):                      # w = L^-1 r
            acc = r[a]
            for b in range(a):
                acc -= L[a, b] * w[b]
            w[a] = acc / L[a, a]
        for a in range(p - 1, -1, -1):          # beta = L^-T (w + z)
            acc = w[a] + z[a]
            for b in range(a + 1, p):
                acc -= L[b, a] * beta[b]
            beta[a] = acc / L[a, a]
        if kind != KNOWN:
            # step 2: the residual terms k, q (gibbs.residual_terms)
            for a in range(p):
                d[a] = beta[a] - center[a]
            lin = 0.0
            quad = 0.0
            for a in range(p):
                lin += 2.0 * d[a] * Xt_resid_center[a]
                row = 0.0
                for b in range(p):
                    row += d[b] * XtX[b, a]
                quad += row * d[a]
            q = max(rss_center - lin + quad, 0.0)
            k = float(n)
            if nig_proper:
                k = float(n + p)
                extra = 0.0
                for a in range(p):
                    row = 0.0
                    for b in range(p):
                        row += (beta[b] - m0[b]) * P0[b, a]
                    extra += row * (beta[a] - m0[a])
                q = q + extra
            # step 3: sigma^2 | beta (gibbs.draw_mixing, gibbs.draw_sigma2)
            if kind == HALF_CAUCHY:
                mixing = (inv_hc_s2 + 1.0 / sigma2) / gen.standard_exponential()
                sigma2 = (1.0 / mixing + 0.5 * q) / gen.standard_gamma(0.5 + 0.5 * k)
            else:
                sigma2 = (ig_scale + 0.5 * q) / gen.standard_gamma(ig_shape + 0.5 * k)
        if i >= tune and (i - tune) % thin == thin - 1:
            for a in range(p):
                out_beta[kept, a] = beta[a]
            out_sigma2[kept] = sigma2
            kept += 1
    return sigma2, mixing


def run_chains(generators, state, data, prior, kind: str, noise, *, tune: int, draws: int,
               thin: int):
    """Run every chain from ``state`` (a :class:`reference.gibbs.GibbsState`), each with its own
    generator. Returns ``beta`` (C, draws, p) and ``sigma2`` (C, draws)."""
    C, p = state.beta.shape
    out_beta = np.empty((C, draws, p))
    out_sigma2 = np.empty((C, draws))
    ig_shape = ig_scale = inv_hc_s2 = 0.0
    if kind == "ig":
        ig_shape, ig_scale = float(noise.alpha), float(noise.beta)
    elif kind == "halfcauchy":
        inv_hc_s2 = 1.0 / float(noise) ** 2
    for c, gen in enumerate(generators):
        _chain(gen, state.beta[c].astype(float).copy(), float(state.sigma2[c]),
               float(state.mixing[c]), data.XtX, data.Xty, data.center, float(data.rss_center),
               data.Xt_resid_center, int(data.n), prior.precision, prior.precision_mean,
               prior.mean, bool(prior.nig), bool(prior.nig and prior.proper), KINDS[kind],
               ig_shape, ig_scale, inv_hc_s2, int(tune), int(draws), int(thin),
               out_beta[c], out_sigma2[c])
    return out_beta, out_sigma2
