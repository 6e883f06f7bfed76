r"""Evidence for a case from every backend, each estimate with its error bar.

The unnormalized log posterior is written once, from the model description, in the centred
parametrization on the unconstrained scale:

.. math::

    \log q(\beta, b, \log\tau, \log\sigma) = \log p(y \mid \beta, b, \sigma) + \log p(\beta)
    + \sum_t \sum_j \log N(b_{t,j} \mid 0, \tau_t^2) + \sum_t [\log p(\tau_t) + \log\tau_t]
    + \log p(\sigma) + \log\sigma,

with every prior fully normalized, so its integral is the evidence whatever backend produced the
draws (the evidence does not depend on the parametrization). The likelihood uses the sufficient
statistics of :func:`reference.design.sufficient_stats`, so thousands of draws are evaluated in
a few matrix products. Estimators (:mod:`reference.evidence`):

* bridge sampling with a normal and a warp-III proposal, on each backend's draws;
* Laplace, around the mode of the same density (no error bar); for hierarchical models over
  the log scales with the coefficients integrated exactly
  (:func:`reference.evidence.laplace_scales`);
* Chib (1995) on the reference draws: Gibbs with an inverse-gamma noise conditional, and
  hierarchical Gibbs (reduced runs with the scales fixed in turn); and
  Chib-Jeliazkov (2001) on random-walk Metropolis output;
* PyMC's SMC, with the spread across chains as its error (``evidence = ["smc"]`` in a case).

A Flat prior makes the evidence undefined: that is reported, not computed.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.design import sufficient_stats
from reference.priors import InverseGamma, Normal

LOG_2PI = np.log(2 * np.pi)


class LogPosterior:
    """``log q`` on the unconstrained scale for ``spec``, vectorized over (m, d) points.

    ``names`` lists the coordinates: every coefficient column, every group effect
    ``1|g[level]``, then ``log(1|g_sigma)`` and ``log(sigma)`` for the unknown scales.
    """

    def __init__(self, spec: ModelSpec):
        from models.reference_model import _arrays, _coef_priors

        self.spec = spec
        a = _arrays(spec)
        d = spec.design()
        self.p = d.X.shape[1]
        self.groups = a["groups"]
        self.stats = sufficient_stats(d.X, d.y, self.groups, a["weights"])
        self.coef_priors = _coef_priors(spec)
        self.tau_priors = [spec.priors[g.name].sigma for g in d.groups
                           if isinstance(spec.priors[g.name], GroupPrior)]
        self.known_sigma = (spec.known_sigma if spec.known_sigma is not None
                            else 1.0 if isinstance(spec.sigma, NoiseColumn) else None)
        self.names = list(a["names"])
        for g in self.groups:
            self.names += [f"{g.name}[{lv}]" for lv in g.levels]
        self.names += [f"log({g.name}_sigma)" for g in self.groups]
        if self.known_sigma is None:
            self.names.append("log(sigma)")
        self.dim = len(self.names)
        self.n = self.stats.n

    # --- draws from a backend, as (chain, draw, d) on this scale --------------------------
    def from_posterior(self, dt) -> np.ndarray:
        post = dt["posterior"]
        parts = []
        d = self.spec.design()
        for t in d.common:
            x = np.asarray(post[t.name].values, dtype=float)
            parts.append(x[..., None] if t.levels is None else x)
        for g in self.groups:
            parts.append(np.asarray(post[g.name].values, dtype=float))
        for g in self.groups:
            parts.append(np.log(np.asarray(post[f"{g.name}_sigma"].values, float))[..., None])
        if self.known_sigma is None:
            parts.append(np.log(np.asarray(post["sigma"].values, dtype=float))[..., None])
        return np.concatenate(parts, axis=-1)

    # --- the density ------------------------------------------------------------------------
    def __call__(self, points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=float))
        s = self.stats
        k = s.WtW.shape[0]
        theta = x[:, :k]
        pos = k
        log_tau = x[:, pos:pos + len(self.groups)]
        pos += len(self.groups)
        log_sigma = x[:, pos] if self.known_sigma is None else np.full(len(x), 0.0)
        sigma = np.exp(log_sigma) if self.known_sigma is None else np.full(len(x),
                                                                           self.known_sigma)
        # likelihood from sufficient statistics: ||y - W theta||^2_Omega
        ssr = s.yty - 2 * theta @ s.Wty + np.einsum("mi,ij,mj->m", theta, s.WtW, theta)
        out = (-0.5 * self.n * LOG_2PI + 0.5 * s.log_weights_sum - self.n * np.log(sigma)
               - 0.5 * ssr / sigma**2)
        # coefficient priors (NIG: sd in units of sigma)
        beta = theta[:, :self.p]
        for j, prior in enumerate(self.coef_priors):
            if self.spec.coef_scale_by_sigma:
                z = (beta[:, j] - prior.mu) / (prior.sigma * sigma)
                out += -0.5 * LOG_2PI - np.log(prior.sigma * sigma) - 0.5 * z * z
            else:
                out += prior.logpdf(beta[:, j])
        # group effects given their sds, and the sds' priors with the log-Jacobian
        for t, prior in enumerate(self.tau_priors):
            b = theta[:, s.blocks[t + 1]]
            tau = np.exp(log_tau[:, t])
            out += (-0.5 * b.shape[1] * LOG_2PI - b.shape[1] * log_tau[:, t]
                    - 0.5 * np.sum(b * b, axis=1) / tau**2)
            out += prior.logpdf(tau) + log_tau[:, t]
        if self.known_sigma is None:
            out += _sigma_logpdf(self.spec.sigma, sigma) + log_sigma
        return np.where(np.isnan(out), -np.inf, out)


def _sigma_logpdf(prior, sigma):
    return prior.logpdf(sigma)


def defined(spec: ModelSpec) -> bool:
    """The evidence is defined only when every prior is proper."""
    return not spec.has_flat_prior


def estimates(spec: ModelSpec, posteriors: dict, exact=None, *, seed: int = 0,
              smc: dict | None = None) -> list[dict]:
    """Every applicable estimate as dicts ``{method, backend, log_evidence, se, note}``."""
    from reference import evidence as ev

    out = []
    if not defined(spec):
        return [{"method": "all", "backend": "-", "log_evidence": None, "se": None,
                 "note": "the evidence is undefined: a Flat prior is improper"}]
    if exact is not None:
        try:
            out.append({"method": "exact", "backend": "reference",
                        "log_evidence": float(exact.log_evidence()),
                        "se": float(getattr(exact, "log_evidence_error", 0.0) or 0.0),
                        "note": exact.kind})
        except ValueError as err:
            out.append({"method": "exact", "backend": "reference", "log_evidence": None,
                        "se": None, "note": str(err)})
    logq = LogPosterior(spec)
    for backend, dt in posteriors.items():
        draws = logq.from_posterior(dt)
        for proposal in ("normal", "warp3"):
            out.append(_safe(lambda p=proposal, d=draws: ev.bridge_sampling(
                d, logq, proposal=p, seed=seed), f"bridge-{proposal}", backend))
    ref = posteriors.get("reference")
    if ref is not None:
        draws = logq.from_posterior(ref)
        if logq.groups:  # the centred funnel has no mode: Laplace over the log scales only
            out.append(_safe(_laplace_scales(spec, logq, draws), "laplace", "reference"))
            if out[-1]["log_evidence"] is not None:
                out[-1]["note"] = "over the log scales, coefficients integrated exactly"
        else:
            x0 = draws.reshape(-1, logq.dim).mean(axis=0)
            out.append(_safe(lambda: ev.laplace(logq, x0), "laplace", "reference"))
        algo = ref["posterior"].attrs.get("algorithm")
        chib = _chib(spec, ref)
        if chib is not None:
            out.append(_safe(chib, "chib", "reference"))
        if algo == "mh" and "proposal_cov" in ref["posterior"].attrs:
            cov = np.asarray(_attr_array(ref["posterior"].attrs["proposal_cov"]))
            out.append(_safe(lambda: _chib_jeliazkov_chains(logq, draws, cov, seed),
                             "chib-jeliazkov", "reference"))
    if smc is not None:
        out.append(smc)
    return out


def _laplace_scales(spec: ModelSpec, logq: LogPosterior, draws: np.ndarray):
    """:func:`reference.evidence.laplace_scales`, started at the draws' median log scales."""
    from models.reference_model import _arrays
    from reference import evidence as ev

    a = _arrays(spec)
    weights = a["weights"]
    if spec.known_sigma is not None:  # as fit_reference: a known constant sd as weights
        weights = np.full(len(a["y"]), 1.0 / spec.known_sigma**2)
    # the unconstrained draws end with log(tau_t) for each group term, then log(sigma)
    n_scales = len(logq.groups) + (logq.known_sigma is None)
    x0 = np.median(draws.reshape(-1, logq.dim)[:, -n_scales:], axis=0)
    return lambda: ev.laplace_scales(
        a["X"], a["y"], a["groups"], names=a["names"], beta_mean=a["beta_mean"],
        beta_cov=a["beta_cov"], tau_priors=a["tau_priors"],
        sigma_prior=None if spec.sigma_is_known else spec.sigma, weights=weights, x0=x0)


def _chib_jeliazkov_chains(logq, draws, cov, seed):
    """Chib-Jeliazkov per chain (each chain froze its own proposal after warmup), combined by
    inverse-variance weights."""
    from reference import evidence as ev

    covs = cov if cov.ndim == 3 else np.broadcast_to(cov, (draws.shape[0], *cov.shape))
    per = [ev.chib_jeliazkov(logq, draws[c], covs[c], seed=seed + c) for c in range(len(covs))]
    w = np.array([1 / e.se**2 for e in per])
    value = float(np.sum(w * [e.log_evidence for e in per]) / w.sum())
    return ev.EvidenceEstimate("chib-jeliazkov", value, float(1 / np.sqrt(w.sum())),
                               {"per_chain": [e.log_evidence for e in per]})


def _attr_array(v):
    if isinstance(v, str):
        import json

        return json.loads(v)
    return v


def _chib(spec: ModelSpec, dt):
    """Chib (1995) when sigma^2 has an inverse-gamma conditional (or sigma is known)."""
    from models.reference_model import _arrays
    from reference import evidence as ev

    d = spec.design()
    if d.groups:
        return _chib_hierarchical(spec, dt)
    if not all(isinstance(spec.priors[t], Normal) for t in d.terms):
        return None
    a = _arrays(spec)
    post = dt["posterior"]
    beta = np.column_stack([np.asarray(post[t.name].values).reshape(-1, 1 if t.levels is None
                                                                    else len(t.levels))
                            for t in d.common])
    if spec.known_sigma is not None:
        return lambda: ev.chib_linear_gibbs(a["X"], a["y"], beta, beta_mean=a["beta_mean"],
                                            beta_cov=a["beta_cov"],
                                            noise_var=spec.known_sigma**2)
    if isinstance(spec.sigma, InverseGamma) and spec.sigma.on == "sigma2":
        s2 = np.asarray(post["sigma"].values).reshape(-1) ** 2
        return lambda: ev.chib_linear_gibbs(a["X"], a["y"], beta, s2, beta_mean=a["beta_mean"],
                                            beta_cov=a["beta_cov"], a=spec.sigma.alpha,
                                            b=spec.sigma.beta, nig=spec.coef_scale_by_sigma)
    return None


def _chib_hierarchical(spec: ModelSpec, dt):
    """Chib (1995) for hierarchical Gibbs output: Rao-Blackwellized scale ordinates, with
    reduced runs of the reference sampler (:func:`reference.evidence.chib_hierarchical`)."""
    from models.reference_model import _arrays
    from reference import evidence as ev

    if "hierarchical" not in str(dt["posterior"].attrs.get("algorithm", "")):
        return None
    a = _arrays(spec)
    if a["beta_cov"] is None:
        return None
    weights = a["weights"]
    if spec.known_sigma is not None:  # as fit_reference: a known constant sd as weights
        weights = np.full(len(a["y"]), 1.0 / spec.known_sigma**2)
    seed = int(dt["posterior"].attrs.get("seed", 0) or 0)
    return lambda: ev.chib_hierarchical(
        a["X"], a["y"], a["groups"], names=a["names"], beta_mean=a["beta_mean"],
        beta_cov=a["beta_cov"], tau_priors=a["tau_priors"],
        sigma_prior=None if spec.sigma_is_known else spec.sigma, weights=weights,
        posterior=dt, chains=int(dt["posterior"].sizes["chain"]), seed=seed + 1)


def _safe(fn, method: str, backend: str) -> dict:
    """Run one estimator; a failure is reported (it makes the check inconclusive), not raised."""
    try:
        e = fn()
    except (ValueError, FloatingPointError, np.linalg.LinAlgError, RuntimeError) as err:
        return {"method": method, "backend": backend, "log_evidence": None, "se": None,
                "note": f"failed: {err}"}
    return {"method": method, "backend": backend, "log_evidence": float(e.log_evidence),
            "se": None if e.se is None else float(e.se), "note": ""}


def smc_estimate(spec: ModelSpec, *, draws: int = 1000, chains: int = 4, seed: int = 0,
                 marginal: bool | None = None) -> dict:
    """PyMC's SMC log marginal likelihood; the error is the spread across chains / sqrt(C),
    widened to a t interval for the few chains (Student's t with C - 1 degrees of freedom).

    ``marginal`` (default: whenever possible) runs SMC on
    :func:`models.pymc_model.marginal_pymc_code`, the same model with its varying intercepts
    integrated out in closed form: the evidence is the same, and SMC then tempers a handful
    of parameters instead of one per group. In 90 dimensions (radon) PyMC's SMC came out
    2 to 5 nats low at 2000 to 8000 particles with a chain spread of 0.02 to 0.3, so the
    high-dimensional run is kept only where no closed-form marginal exists. The kernel is
    :class:`models.smc_kernel.RepeatedMH`.
    """
    import pymc as pm

    from models.pymc_model import build_marginal_pymc_model, build_pymc_model, marginalizable
    from models.smc_kernel import REPEATS, RepeatedMH

    if marginal is None:
        marginal = marginalizable(spec) is None
    model = build_marginal_pymc_model(spec) if marginal else build_pymc_model(spec)
    # a Dask worker is a daemonic process, which may not start the processes of parallel
    # chains; the chains are seeded one by one either way, so the result is the same
    import multiprocessing

    cores = 1 if multiprocessing.current_process().daemon else min(chains, 2)
    idata = pm.sample_smc(draws=draws, kernel=RepeatedMH, chains=chains, cores=cores,
                          random_seed=seed, model=model, progressbar=False,
                          compute_convergence_checks=False)
    lml = idata["sample_stats"]["log_marginal_likelihood"].values
    per_chain = []
    for row in np.asarray(lml, dtype=object).reshape(chains, -1):
        # object dtype over (chain, stage), NaN until the last stage; entries may be lists
        vals = [float(v) for v in np.hstack([np.ravel(np.asarray(r, dtype=float)) for r in row])
                if np.isfinite(v)]
        per_chain.append(vals[-1])
    per_chain = np.asarray(per_chain)
    how = "group effects integrated out, " if marginal else ""
    # the spread of C chains is a (C - 1)-degree-of-freedom estimate: scale it so that +-1.96 se
    # is the t interval (4 chains: x1.62); the plain spread covered +-2 se in 25 of 30 runs
    c = len(per_chain)
    t_factor = stats.t.ppf(0.975, c - 1) / stats.norm.ppf(0.975)
    return {"method": "smc", "backend": "pymc", "log_evidence": float(per_chain.mean()),
            "se": float(t_factor * per_chain.std(ddof=1) / np.sqrt(c)),
            "note": f"{how}{chains} chains x {draws} particles, random-walk kernel x"
                    f"{REPEATS}"}


#: estimators that work from a backend's MCMC draws, so their checks are gated by its diagnostics
FROM_DRAWS = ("bridge-normal", "bridge-warp3", "chib", "chib-jeliazkov")


def evidence_checks(rows: list[dict], diags: dict | None = None, *, slack: float = 0.05
                    ) -> list[dict]:
    """Each estimate against the exact value: |difference| <= 3 se + ``slack`` nats agrees.

    An estimator that failed, or gives no error bar, is inconclusive for its check; so is an
    estimate from draws (bridge sampling, Chib, Chib-Jeliazkov) whose backend mixed poorly by
    ``diags`` (backend -> :func:`comparisons.verdicts.diagnostics`; every parameter counts, as
    the estimators use the whole joint draw). The deterministic Laplace baseline is reported
    but never judged.
    """
    from comparisons.verdicts import gate

    exact = next((r for r in rows if r["method"] == "exact" and r["log_evidence"] is not None),
                 None)
    checks = []
    if exact is None:
        return checks
    for r in rows:
        if r["method"] in ("exact", "laplace", "all"):
            continue
        if r["log_evidence"] is None or r["se"] is None or not np.isfinite(r["se"]):
            checks.append({**r, "exact": exact["log_evidence"], "verdict": "inconclusive",
                           "reason": f"{r['method']} gave no estimate with an error bar"})
            continue
        diff = r["log_evidence"] - exact["log_evidence"]
        tol = 3 * float(np.hypot(r["se"], exact["se"] or 0.0)) + slack
        row = {**r, "exact": exact["log_evidence"], "difference": diff, "tolerance": tol}
        reason = (gate({"backend": r["backend"], "uses": None}, diags or {})
                  if r["method"] in FROM_DRAWS else "")
        if reason:
            row["verdict"], row["reason"] = "inconclusive", reason
        else:
            row["verdict"] = "agree" if abs(diff) <= tol else "disagree"
            row["reason"] = ""
        checks.append(row)
    return checks


def bayes_factor(a: dict, b: dict) -> dict:
    """log BF(a : b) = log p(y | a) - log p(y | b), with the errors added in quadrature."""
    lbf = a["log_evidence"] - b["log_evidence"]
    se = float(np.hypot(a.get("se") or 0.0, b.get("se") or 0.0))
    return {"log_bf": float(lbf), "se": se, "bf": float(np.exp(np.clip(lbf, -700, 700)))}


#: (label, case, alternative formula): Bayes factors of two specifications of one data set
BAYES_FACTORS = [
    ("slope vs none (tutorial)", "tutorial", "y ~ 1"),
    ("varying intercepts vs pooled (radon)", "radon-intercepts", "log.radon ~ basement + uranium"),
]


def alternative(spec: ModelSpec, formula: str) -> ModelSpec:
    """``spec`` with another formula, keeping the priors of the terms both have."""
    import dataclasses

    from formulae import design_matrices

    dm = design_matrices(formula, spec.design().data)
    keep = set(dm.common.terms) | (set(dm.group.terms) if dm.group is not None else set())
    return dataclasses.replace(spec, name=f"{spec.name} ({formula})", formula=formula,
                               priors={k: v for k, v in spec.priors.items() if k in keep})


def bayes_factors(seed: int = 0) -> list[dict]:
    """log BF between the specifications in :data:`BAYES_FACTORS`: exact (quadrature) and
    bridge sampling on reference draws, with the errors added in quadrature."""
    from comparisons.cases import get_case
    from models.reference_model import exact_answer, fit_reference
    from reference import evidence as ev

    rows = []
    for label, case, formula in BAYES_FACTORS:
        specs = [get_case(case)]
        specs.append(alternative(specs[0], formula))
        exact, bridge = [], []
        for sp in specs:
            ex = exact_answer(sp)
            exact.append({"log_evidence": ex.log_evidence(), "se": ex.log_evidence_error})
            logq = LogPosterior(sp)
            draws = logq.from_posterior(fit_reference(sp, seed=seed))
            b = ev.bridge_sampling(draws, logq, proposal="warp3", seed=seed)
            bridge.append({"log_evidence": b.log_evidence, "se": b.se})
        rows.append({"comparison": label, "model_a": specs[0].formula, "model_b": formula,
                     "exact": bayes_factor(*exact), "bridge": bayes_factor(*bridge)})
    return rows


__all__ = ["BAYES_FACTORS", "LogPosterior", "alternative", "bayes_factor", "bayes_factors",
           "estimates", "evidence_checks", "smc_estimate"]
