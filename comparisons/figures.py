"""Figures of a case page beyond the densities: arviz-plots where it has the plot, else matplotlib.

Each function takes a :class:`~comparisons.harness.CaseResult` and returns a matplotlib figure,
or None when the figure does not apply to the case.
"""

from __future__ import annotations

import numpy as np

from comparisons.harness import CaseResult


def _scalar_vars(result: CaseResult) -> list[str]:
    dims = result.spec.dims()
    return [n for n in result.spec.parameters if n not in dims]


def _pc_figure(pc):
    """The matplotlib figure an arviz-plots call just drew (it opens a new one per call)."""
    import matplotlib.pyplot as plt

    return plt.gcf()


def forest(result: CaseResult):
    """90% intervals of every scalar parameter, all backends overlaid (arviz-plots)."""
    import arviz as az

    names = _scalar_vars(result)
    pc = az.plot_forest({b: dt for b, dt in result.posteriors.items()}, var_names=names,
                        ci_probs=(0.5, 0.9), combined=True, backend="matplotlib")
    return _pc_figure(pc)


def trace_rank(result: CaseResult, backend: str):
    """Trace and marginal of each scalar parameter for one backend (arviz-plots)."""
    import arviz as az

    pc = az.plot_trace_dist(result.posteriors[backend], var_names=_scalar_vars(result),
                            backend="matplotlib")
    return _pc_figure(pc)


def rank(result: CaseResult, backend: str):
    import arviz as az

    pc = az.plot_rank(result.posteriors[backend], var_names=_scalar_vars(result),
                      backend="matplotlib")
    return _pc_figure(pc)


def autocorr(result: CaseResult, backend: str):
    import arviz as az

    pc = az.plot_autocorr(result.posteriors[backend], var_names=_scalar_vars(result),
                          backend="matplotlib", max_lag=50)
    return _pc_figure(pc)


def _single_predictor(result: CaseResult):
    d = result.spec.design()
    cols = [t for t in d.common if t.name != "Intercept"]
    if d.groups or len(cols) != 1 or cols[0].levels is not None:
        return None
    return cols[0].name


def regression_lines(result: CaseResult):
    """Data, posterior mean line, 90% band of the mean and 90% predictive band, per backend
    (the PyMC GLM tutorial's figure)."""
    import matplotlib.pyplot as plt

    from comparisons.report import _color

    name = _single_predictor(result)
    if name is None:
        return None
    d = result.spec.design()
    x = d.X[:, [t.name for t in d.common].index(name)]
    grid = np.linspace(x.min(), x.max(), 100)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, d.y, "x", color="grey", alpha=0.6, label="data")
    rng = np.random.default_rng(0)
    for b, dt in result.posteriors.items():
        post = dt["posterior"]
        slope = np.ravel(post[name].values)
        icpt = np.ravel(post["Intercept"].values) if "Intercept" in post else 0.0 * slope
        mu = icpt[:, None] + slope[:, None] * grid[None, :]
        sig = (np.ravel(post["sigma"].values) if "sigma" in post
               else np.full(len(slope), result.spec.known_sigma or 1.0))
        ypred = mu + sig[:, None] * rng.standard_normal(mu.shape)
        c = _color(b)
        ax.plot(grid, mu.mean(0), color=c, label=f"{b}: mean")
        ax.fill_between(grid, *np.quantile(mu, [0.05, 0.95], axis=0), color=c, alpha=0.3)
        ax.fill_between(grid, *np.quantile(ypred, [0.05, 0.95], axis=0), color=c, alpha=0.08)
    ax.set_xlabel(name)
    ax.set_ylabel(d.response)
    ax.set_title("Posterior regression lines: 90% band of the mean (dark), 90% predictive (light)")
    ax.legend(frameon=False, fontsize=8)
    return fig


def predictive_variance(result: CaseResult):
    """Noise and epistemic parts of the predictive variance, inside the data and far beyond it
    (the derivation seed's figure): closed form, known noise, one predictor."""
    import matplotlib.pyplot as plt

    from reference.conjugate import GaussianKnownNoise

    exact = result.exact
    if exact is None or not isinstance(getattr(exact, "post", None), GaussianKnownNoise):
        return None
    name = _single_predictor(result)
    if name is None:
        return None
    d = result.spec.design()
    j = [t.name for t in d.common].index(name)
    x = d.X[:, j]
    grid = np.linspace(x.min() - 2, max(12.0, x.max() * 5), 200)
    rows = np.zeros((len(grid), d.X.shape[1]))
    rows[:, j] = grid
    if "Intercept" in [t.name for t in d.common]:
        rows[:, [t.name for t in d.common].index("Intercept")] = 1.0
    pred = exact.post.predictive(rows)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.stackplot(grid, pred.noise_var, pred.epistemic_var, labels=["noise", "epistemic"],
                 colors=["#c6dbef", "#fd8d3c"])
    for xi in x:
        ax.axvline(xi, color="k", lw=0.6, ls=":")
    ax.set_xlabel(f"{name} (dotted: the data)")
    ax.set_ylabel("predictive variance")
    ax.set_title("Predictive variance: noise plus epistemic, growing under extrapolation")
    ax.legend(loc="upper left", frameon=False)
    return fig


def shrinkage(result: CaseResult):
    """Group estimates (intercept + effect, 90% intervals) against no-pooling means per group
    (the hierarchical seed's shrinkage figure)."""
    import matplotlib.pyplot as plt

    d = result.spec.design()
    term = next((g for g in d.groups if g.expr == "1"), None)
    if term is None or "reference" not in result.posteriors:
        return None
    post = result.posteriors["reference"]["posterior"]
    eff = post[term.name].values.reshape(-1, len(term.levels))
    base = np.ravel(post["Intercept"].values)[:, None] if "Intercept" in post else 0.0
    est = base + eff
    fixed = np.zeros(len(d.y))
    for t in d.common:
        if t.name != "Intercept" and t.levels is None:
            fixed += d.X[:, t.columns.start] * float(post[t.name].values.mean())
    resid = d.y - fixed
    raw = np.array([resid[term.codes == j].mean() if np.any(term.codes == j) else np.nan
                    for j in range(len(term.levels))])
    order = np.argsort(raw)
    fig, ax = plt.subplots(figsize=(7, 0.12 * len(order) + 2.5))
    ys = np.arange(len(order))
    lo, hi = np.quantile(est, [0.05, 0.95], axis=0)
    ax.hlines(ys, lo[order], hi[order], color="#4c72b0", alpha=0.6)
    ax.plot(est.mean(0)[order], ys, "o", color="#4c72b0", ms=3, label="partial pooling (90%)")
    ax.plot(raw[order], ys, "x", color="#c44e52", ms=4, label="no pooling (group mean)")
    ax.axvline(float(np.mean(base)), color="grey", ls="--", label="pooled intercept")
    ax.set_yticks([])
    ax.set_xlabel(f"{d.response} level per {term.group} (after the common slopes)")
    ax.set_title("Shrinkage: group estimates pulled toward the pooled mean")
    ax.legend(frameon=False, fontsize=8)
    return fig


def ppc(result: CaseResult, n_rep: int = 50):
    """Observed y against replicated data from the reference posterior."""
    import matplotlib.pyplot as plt
    from scipy import stats

    if "reference" not in result.posteriors:
        return None
    d = result.spec.design()
    post = result.posteriors["reference"]["posterior"]
    rng = np.random.default_rng(1)
    S = post.sizes["chain"] * post.sizes["draw"]
    idx = rng.choice(S, n_rep, replace=False)
    mu = np.zeros((n_rep, len(d.y)))
    for t in d.common:
        v = post[t.name].values.reshape(S, -1)[idx]
        mu += v @ d.X[:, t.columns].T
    for g in d.groups:
        b = post[g.name].values.reshape(S, -1)[idx]
        mu += b[:, g.codes] * g.column
    if "sigma" in post:
        sd = np.ravel(post["sigma"].values)[idx][:, None]
    elif d.noise_sd is not None:
        sd = d.noise_sd[None, :]
    else:
        sd = result.spec.known_sigma
    yrep = mu + sd * rng.standard_normal(mu.shape)
    lo, hi = np.quantile(np.concatenate([d.y, yrep.ravel()]), [0.005, 0.995])
    grid = np.linspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in yrep:
        if np.std(r) > 0 and len(r) > 2:
            ax.plot(grid, stats.gaussian_kde(r)(grid), color="#4c72b0", alpha=0.15, lw=0.8)
    if len(d.y) > 2:
        ax.plot(grid, stats.gaussian_kde(d.y)(grid), color="black", lw=2, label="observed")
    ax.set_title(f"Posterior predictive check: observed y (black) and {n_rep} replications")
    ax.set_xlabel(d.response)
    ax.set_yticks([])
    return fig


def sensitivity(result: CaseResult, refits: dict):
    """Main posteriors under every prior scale halved and doubled, beside the original."""
    import matplotlib.pyplot as plt

    if not refits or "reference" not in result.posteriors:
        return None
    names = _scalar_vars(result)
    runs = {"x1 (as specified)": result.posteriors["reference"], **refits}
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, n in zip(axes[0], names, strict=True):
        for k, (label, dt) in enumerate(runs.items()):
            x = np.ravel(dt["posterior"][n].values)
            q = np.quantile(x, [0.05, 0.5, 0.95])
            ax.plot([q[0], q[2]], [k, k], lw=2)
            ax.plot(q[1], k, "o")
        ax.set_yticks(range(len(runs)), list(runs) if n == names[0] else [""] * len(runs))
        ax.set_title(n)
    fig.suptitle("Prior sensitivity: medians and 90% intervals with every prior scale x0.5 / x2",
                 y=1.04)
    return fig


def sensitivity_refits(spec, *, draws: int = 1000, chains: int = 4, seed: int = 0) -> dict:
    """Reference refits with every prior scale (coefficients, group sds, sigma) halved, doubled."""
    import dataclasses

    from models.reference_model import fit_reference
    from models.spec import GroupPrior
    from reference.priors import Prior

    out = {}
    for factor in (0.5, 2.0):
        priors = {k: (GroupPrior(p.sigma.rescaled(factor)) if isinstance(p, GroupPrior)
                      else p.rescaled(factor)) for k, p in spec.priors.items()}
        sigma = spec.sigma.rescaled(factor) if isinstance(spec.sigma, Prior) else spec.sigma
        s = dataclasses.replace(spec, priors=priors, sigma=sigma)
        out[f"x{factor:g}"] = fit_reference(s, draws=draws, chains=chains, seed=seed)
    return out


def evidence_curve(result: CaseResult):
    """Empirical Bayes: the exact log evidence against a common prior sd of the coefficients,
    with its maximizer (type-II maximum likelihood); known-noise cases without group terms."""
    import matplotlib.pyplot as plt

    from reference.evidence import evidence_curve as curve

    spec = result.spec
    d = spec.design()
    if d.groups or spec.known_sigma is None:
        return None
    scales = np.geomspace(0.05, 100.0, 60)
    c = curve(d.X, d.y, scales, noise_var=spec.known_sigma**2)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(c.scales, c.log_evidence, color="#4c72b0")
    ax.axvline(c.best_scale, color="#c44e52", ls="--",
               label=f"type-II ML: prior sd {c.best_scale:.3g}, log evidence "
                     f"{c.best_log_evidence:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("prior sd of every coefficient")
    ax.set_ylabel("log evidence")
    ax.set_title("Empirical Bayes: the evidence as a function of the prior scale")
    ax.legend(frameon=False, fontsize=8)
    return fig
