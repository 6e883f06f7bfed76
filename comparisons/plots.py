"""Figures for the case report pages.

Every plot takes a :class:`~comparisons.harness.CaseResult` (and extra inputs where it needs
them; :func:`evidence_plot` and :func:`z_plot` take the estimate and check rows) and returns a
matplotlib ``Figure``, or ``None`` when the plot does not apply to the case
(a regression-line plot for a model with two predictors, a shrinkage plot without group terms,
...). :func:`png_base64` turns a figure into the base64 PNG that the self-contained HTML pages
embed, and closes it.

Plots that arviz-plots has are drawn with it (forest, trace, rank, autocorrelation); the rest
with matplotlib. This is the report's only plotting module. Figures are sized for a page about
900 pixels wide (10 inches at 90 dpi).

Vector parameters
-----------------
Group effects can have many levels (85 counties in the radon data). The forest plot shows every
scalar parameter (the group standard deviations included) and the vector parameters of at most
:data:`MAX_FOREST_LEVELS` levels (eight schools, a categorical predictor); longer vectors are
covered by :func:`shrinkage_plot`. Trace, rank and autocorrelation plots show the scalar
parameters with the lowest bulk effective sample size, at most :data:`MAX_DIAGNOSTIC_PARAMS`.

References
----------
Gelman, A. and Hill, J. (2007). *Data Analysis Using Regression and Multilevel/Hierarchical
Models*, ch. 12 (the partial-pooling plot of :func:`shrinkage_plot`).
Gabry, J., Simpson, D., Vehtari, A., Betancourt, M. and Gelman, A. (2019). Visualization in
Bayesian workflow. *JRSS A* 182(2), 389-402 (posterior predictive density overlays).
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Burkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat. *Bayesian Analysis* 16(2), 667-718 (rank plots).
Harrell, F. E. and Davis, C. E. (1982). A new distribution-free quantile estimator.
*Biometrika* 69(3), 635-640 (the smooth band of the regression mean line).
MacKay, D. J. C. (1992). Bayesian interpolation. *Neural Computation* 4(3), 415-447 (the
evidence as a function of the prior scale).
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import numpy as np

from comparisons.harness import CaseResult
from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.priors import Prior

__all__ = [
    "autocorr_plot", "complete_pooling", "density_plot", "evidence_curve_plot",
    "evidence_plot", "forest_plot", "harrell_davis_quantiles", "mixture_quantiles",
    "png_base64", "ppc_plot", "predictive_variance_plot", "prior_sensitivity_plot",
    "regression_lines_plot", "replicate_data", "rescale_priors", "sensitivity_refits",
    "shrinkage_plot", "trace_rank_plots", "z_plot",
]

#: figure width in inches: 900 pixels at the report's 90 dpi
WIDTH = 10.0
DPI = 90
#: vector parameters with more levels than this are left out of the forest plot
MAX_FOREST_LEVELS = 10
#: trace, rank and autocorrelation plots show at most this many scalar parameters
MAX_DIAGNOSTIC_PARAMS = 5
#: probability of the credible and predictive bands
BAND = 0.90
#: prior scale factors of the sensitivity refits, keyed as in :func:`sensitivity_refits`
SENSITIVITY_FACTORS = {"x0.5": 0.5, "x2": 2.0}
_COLORS = {"reference": "#4c72b0", "pymc": "#dd8452", "bambi": "#55a868", "exact": "black",
           "user": "#8172b3"}
_CYCLE = ("#8172b3", "#c44e52", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def png_base64(fig) -> str:
    """The figure as a base64-encoded PNG (at :data:`DPI`), for a ``data:`` URI; closes it."""
    import matplotlib.pyplot as plt

    if fig is None:
        raise TypeError("png_base64 needs a matplotlib Figure; received None (the plot does not "
                        "apply to this case).")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _color(name: str, i: int = 0) -> str:
    return _COLORS.get(name, _CYCLE[i % len(_CYCLE)])


def _colors(names) -> list[str]:
    return [_color(n, i) for i, n in enumerate(names)]


def _scalar_names(spec: ModelSpec) -> list[str]:
    """Parameters with one value (coefficients, group sds, sigma), in the spec's order."""
    dims = spec.dims()
    return [n for n in spec.parameters if n not in dims]


def _draws(dt, name: str) -> np.ndarray:
    """Draws of ``name`` shaped (chain, draw, ...) as a float array."""
    return np.asarray(dt["posterior"][name].values, dtype=float)


def _flat(dt, name: str) -> np.ndarray:
    """Draws of ``name`` with chain and draw merged: shape (sample, ...)."""
    x = _draws(dt, name)
    return x.reshape(-1, *x.shape[2:])


def _main_backend(result: CaseResult) -> str:
    """The backend the single-posterior plots use: the reference if it ran, else the first."""
    if not result.posteriors:
        raise ValueError(f"case {result.spec.name!r} has no posteriors to plot.")
    return "reference" if "reference" in result.posteriors else next(iter(result.posteriors))


def _is_sampled(dt) -> bool:
    """True for MCMC output; False for independent draws from a closed form."""
    attrs = dt["posterior"].attrs
    return attrs.get("algorithm") != "closed-form"


def _coefficients(spec: ModelSpec, dt) -> np.ndarray:
    """Draws of the common coefficients in the column order of ``spec.design().X``: (S, p)."""
    d = spec.design()
    cols = []
    for t in d.common:
        x = _flat(dt, t.name)
        cols.append(x[:, None] if t.levels is None else x)
    return np.concatenate(cols, axis=1) if cols else np.zeros((_flat(dt, spec.parameters[0])
                                                               .shape[0], 0))


def _linear_predictor(spec: ModelSpec, dt) -> np.ndarray:
    r"""Posterior draws of :math:`\mu = X\beta + \sum_t z_t\, b_{t, g_t[i]}`: shape (S, n)."""
    d = spec.design()
    mu = _coefficients(spec, dt) @ d.X.T
    for g in d.groups:
        b = _flat(dt, g.name)                                  # (S, J)
        mu = mu + b[:, g.codes] * g.column[None, :]
    return mu


def _noise_sd(spec: ModelSpec, dt) -> np.ndarray:
    """Noise sd per draw and row, broadcastable to (S, n)."""
    d = spec.design()
    if isinstance(spec.sigma, NoiseColumn):
        return d.noise_sd[None, :]
    if spec.known_sigma is not None:
        return np.array([[spec.known_sigma]])
    return _flat(dt, "sigma")[:, None]


def _single_predictor(spec: ModelSpec):
    """``(column index, has intercept)`` for ``y ~ x`` or ``y ~ 0 + x``; else None."""
    d = spec.design()
    if d.groups or any(t.levels is not None for t in d.common):
        return None
    names = [t.name for t in d.common]
    slopes = [n for n in names if n != "Intercept"]
    if len(slopes) != 1:
        return None
    return names.index(slopes[0]), "Intercept" in names


def _subsample(n_total: int, n: int) -> np.ndarray:
    """``n`` evenly spaced indices into ``n_total`` draws (all of them when fewer)."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def _is_scale(name: str) -> bool:
    """True for the positive scale parameters: ``sigma`` and the group sds ``..._sigma``."""
    return name == "sigma" or name.endswith("_sigma")


def _kde(x: np.ndarray, grid: np.ndarray, lower: float | None = None) -> np.ndarray:
    """Gaussian kernel density of ``x`` on ``grid``; with ``lower``, reflected at that bound
    (so the density of a positive scale does not leak below zero) and zero below it."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        return np.zeros_like(grid)
    kde = stats.gaussian_kde(x)
    if lower is None:
        return kde(grid)
    return np.where(grid >= lower, kde(grid) + kde(2 * lower - grid), 0.0)


def _density_grid(lo: float, hi: float, lower: float | None, n: int) -> np.ndarray:
    """A grid over [lo, hi] for a density; for a scale (``lower`` = 0) it starts at the bound
    when the mass comes within half the range of it, so a density piled against zero shows
    that, while one far from zero (sigma = 0.76 +- 0.02) is not squeezed into a corner."""
    if lower is not None and lo - lower <= 0.5 * (hi - lo):
        lo = lower
    return np.linspace(lo, hi, n)


# ---------------------------------------------------------------------------------------------
# 1. forest
# ---------------------------------------------------------------------------------------------
def _forest_names(spec: ModelSpec) -> list[str]:
    coords, dims = spec.coords(), spec.dims()
    return [n for n in spec.parameters
            if n not in dims or len(coords[dims[n][0]]) <= MAX_FOREST_LEVELS]


def _exact_quantile_draws(exact, name: str, levels, size: int) -> np.ndarray | None:
    """Exact quantiles at probabilities (i + 1/2) / size: pseudo-draws whose 5% and 95% sample
    quantiles equal the exact ones up to 1/size in probability. None if ``exact`` lacks ``name``.
    """
    q = (np.arange(size) + 0.5) / size
    # the exact ppf (a root search on a mixture cdf) at EXACT_PPF_POINTS probabilities,
    # interpolated between them: 4000 root searches per level took minutes on sleepstudy
    grid = np.linspace(q[0], q[-1], min(size, EXACT_PPF_POINTS))

    def ppf(dist):
        return np.interp(q, grid, np.asarray(dist.ppf(grid), dtype=float))

    try:
        if levels is None:
            return ppf(exact.marginal(name))
        return np.stack([ppf(exact.marginal(name, lv)) for lv in levels], axis=-1)
    except (KeyError, ValueError):
        return None


#: probabilities at which the forest plot's exact rows evaluate the ppf (then interpolated)
EXACT_PPF_POINTS = 201


def forest_plot(result: CaseResult):
    """90% and 50% equal-tailed intervals and medians of every parameter, backends overlaid.

    The exact answer, where there is one, is drawn as a further row in black: pseudo-draws at
    the exact quantiles, so its intervals are the exact ones. When the parameters' posterior
    sds differ by more than a factor of 50 (a regression with predictors on different scales),
    every parameter is shown standardized, ``(value - centre) / scale`` with the exact (else the
    main backend's) mean and sd, so that all intervals are readable on one axis.
    """
    import arviz as az
    from arviz_base import from_dict

    spec = result.spec
    names = _forest_names(spec)
    dims, coords = spec.dims(), spec.coords()
    backends = list(result.posteriors)
    main = _main_backend(result)
    # every model needs the same number of draws, or arviz pads with NaN: one chain of S draws
    size = min(_flat(dt, names[0]).shape[0] for dt in result.posteriors.values())
    arrays = {b: {n: _flat(result.posteriors[b], n)[:size] for n in names} for b in backends}
    if result.exact is not None:
        ex = {n: _exact_quantile_draws(result.exact, n, coords[dims[n][0]] if n in dims
                                       else None, size) for n in names}
        if all(v is not None for v in ex.values()):
            arrays["exact"] = ex
    # standardize when the scales are far apart
    ref = arrays.get("exact", arrays[main])
    centre = {n: ref[n].mean(axis=0) for n in names}
    scale = {n: ref[n].std(axis=0) for n in names}
    sds = np.concatenate([np.atleast_1d(s) for s in scale.values()])
    standardized = bool(np.all(sds > 0) and sds.max() / sds.min() > 50)
    if standardized:
        arrays = {m: {n: (a[n] - centre[n]) / scale[n] for n in names} for m, a in arrays.items()}
    trees = {m: from_dict({"posterior": {n: v[None] for n, v in a.items()}},
                          dims={n: dims[n] for n in names if n in dims},
                          coords={dims[n][0]: coords[dims[n][0]] for n in names if n in dims})
             for m, a in arrays.items()}
    n_rows = sum(len(coords[dims[n][0]]) if n in dims else 1 for n in names)
    height = 0.9 + n_rows * (0.16 * len(trees) + 0.16)
    pc = az.plot_forest(trees, backend="matplotlib", combined=True, ci_kind="eti",
                        ci_probs=(0.5, BAND), point_estimate="median",
                        aes={"color": ["model"]}, color=_colors(trees),
                        figure_kwargs={"figsize": (WIDTH, height), "width_ratios": [1, 3],
                                       "layout": "constrained"})
    fig = pc.viz["figure"].item()
    ax = pc.viz["plot"].sel(column="forest").item()
    _fit_label_column(fig, pc.viz["plot"].sel(column="labels").item(), ax)
    handles = [_line(c) for c in _colors(trees)]
    ax.legend(handles, list(trees), loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              fontsize=9)
    if standardized:
        ax.set_xlabel("(value - exact mean) / exact sd" if "exact" in trees else
                      f"(value - {main} mean) / {main} sd")
        ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    what = "exact in black" if "exact" in trees else "no exact answer"
    left_out = [f"{n} ({len(coords[dims[n][0]])} levels"
                + (", see the shrinkage plot)" if n.startswith("1|") else ")")
                for n in spec.parameters if n in dims and n not in names]
    fig.suptitle(f"Posterior medians, 50% and {BAND:.0%} intervals ({what})"
                 + (", standardized" if standardized else "")
                 + (f"\nnot shown: {', '.join(left_out)}" if left_out else ""))
    return fig


def _fit_label_column(fig, label_ax, forest_ax, pad_px: float = 14.0) -> None:
    """Narrow the label column of an arviz-plots forest to its text.

    arviz-plots gives the labels a fixed share of the width, with one label column per
    labelled dimension. When the vector parameters are left out there is only the column of
    parameter names, and the rest of that share stays empty: a blank gap between the names
    and the intervals. Here the widest label of each column is measured and the grid's width
    ratios are set so the label axis just holds them; the dimension names under the label
    column ("variable", "school__factor_dim") are dropped.
    """
    label_ax.set_xticks([])
    for spine in label_ax.spines.values():
        spine.set_visible(False)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    widths = {}  # x position of a label column -> widest label there, in pixels
    for t in label_ax.texts:
        if t.get_text():
            x = t.get_position()[0]
            widths[x] = max(widths.get(x, 0.0), t.get_window_extent(renderer).width)
    if not widths:
        return
    need = sum(widths.values()) + pad_px * len(widths)
    lab, forest = label_ax.get_window_extent(renderer), forest_ax.get_window_extent(renderer)
    room = forest.x1 - lab.x0 - (forest.x0 - lab.x1)  # both axes' widths; keep the spacing
    forest_ax.get_gridspec().set_width_ratios([need, max(room - need, 0.3 * room)])
    fig.canvas.draw()


def _line(color):
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color=color, lw=2)


# ---------------------------------------------------------------------------------------------
# 2. trace, rank, autocorrelation
# ---------------------------------------------------------------------------------------------
def _diagnostic_dataset(result: CaseResult):
    """Sampled backends' scalar draws stacked along a ``backend`` dimension, or None.

    Only MCMC output is included (independent closed-form draws need no convergence check).
    The parameters kept are the :data:`MAX_DIAGNOSTIC_PARAMS` with the lowest bulk ESS in any
    backend. Chains and draws are cut to the smallest counts among the backends.
    """
    import arviz_stats
    import xarray as xr

    sampled = [b for b, dt in result.posteriors.items() if _is_sampled(dt)]
    if not sampled:
        return None
    names = _scalar_names(result.spec)
    arrays = {b: {n: _draws(result.posteriors[b], n) for n in names} for b in sampled}
    n_chain = min(a[names[0]].shape[0] for a in arrays.values())
    n_draw = min(a[names[0]].shape[1] for a in arrays.values())
    ess = {n: min(float(arviz_stats.ess(arrays[b][n], method="bulk")) for b in sampled)
           for n in names}
    keep = sorted(names, key=lambda n: ess[n])[:MAX_DIAGNOSTIC_PARAMS]
    keep = [n for n in names if n in keep]  # back in the spec's order
    data = {n: (("backend", "chain", "draw"),
                np.stack([arrays[b][n][:n_chain, :n_draw] for b in sampled]))
            for n in keep}
    ds = xr.Dataset(data, coords={"backend": sampled, "chain": np.arange(n_chain),
                                  "draw": np.arange(n_draw)})
    return ds, len(names)


def _one_line_labeller():
    from arviz_base.labels import BaseLabeller

    class OneLine(BaseLabeller):
        """``x · pymc`` instead of a two-line title."""

        def make_label_vert(self, var_name, sel, isel):
            extra = ", ".join(str(v) for v in sel.values())
            return f"{var_name} · {extra}" if extra else str(var_name)

    return OneLine()


def _bottom_xlabels_only(fig, ncols: int) -> None:
    """Keep the x-axis label of the bottom row only (every row repeats it otherwise)."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax in axes[:-ncols]:
        ax.set_xlabel("")


def trace_rank_plots(result: CaseResult):
    """Trace (left) and rank (right) plots of the sampled backends, one row per backend and
    parameter; None when no backend sampled by MCMC.

    Rank plots (Vehtari et al. 2021) show the ECDF of each chain's fractional ranks among all
    the backend's draws minus the uniform ECDF, with a simultaneous envelope; a chain that
    samples a different distribution leaves it.
    """
    import arviz as az
    import arviz_base
    import xarray as xr
    from arviz_plots import PlotCollection

    got = _diagnostic_dataset(result)
    if got is None:
        return None
    ds, n_total = got
    tree = xr.DataTree.from_dict({"posterior": ds})
    n_rows = len(ds.data_vars) * ds.sizes["backend"]
    with arviz_base.rc_context({"plot.max_subplots": 2 * n_rows + 2}):
        pc = PlotCollection.grid(
            ds.expand_dims(column=2).assign_coords(column=["trace", "rank"]),
            cols=["column"], rows=["__variable__", "backend"], backend="matplotlib",
            aes={"color": ["chain"], "overlay": ["chain"]},
            figure_kwargs={"figsize": (WIDTH, 0.6 + 1.45 * n_rows), "layout": "constrained"})
        labeller = _one_line_labeller()
        pc.coords = {"column": "trace"}
        az.plot_trace(tree, plot_collection=pc, labeller=labeller)
        pc.coords = {"column": "rank"}
        az.plot_rank(tree, plot_collection=pc, labeller=labeller)
        pc.coords = None
    fig = pc.viz["figure"].item()
    _bottom_xlabels_only(fig, ncols=2)
    shown = len(ds.data_vars)
    note = "" if shown == n_total else f" ({shown} of {n_total} with the lowest bulk ESS)"
    fig.suptitle(f"Trace and rank plots, chains coloured{note}")
    return fig


def autocorr_plot(result: CaseResult):
    """Autocorrelation of every chain of the sampled backends (rows: parameters, columns:
    backends); None when no backend sampled by MCMC."""
    import arviz as az
    import arviz_base
    import xarray as xr
    from arviz_plots import PlotCollection

    got = _diagnostic_dataset(result)
    if got is None:
        return None
    ds, n_total = got
    tree = xr.DataTree.from_dict({"posterior": ds})
    n_var, n_b = len(ds.data_vars), ds.sizes["backend"]
    with arviz_base.rc_context({"plot.max_subplots": n_var * n_b + 2}):
        pc = PlotCollection.grid(
            ds, cols=["backend"], rows=["__variable__"], backend="matplotlib",
            aes={"color": ["chain"], "overlay": ["chain"]},
            figure_kwargs={"figsize": (WIDTH, 0.4 + 1.6 * n_var), "layout": "constrained",
                           "sharey": True})
        az.plot_autocorr(tree, plot_collection=pc, labeller=_one_line_labeller(),
                         max_lag=min(100, ds.sizes["draw"] - 1))
    fig = pc.viz["figure"].item()
    _bottom_xlabels_only(fig, ncols=n_b)
    note = "" if n_var == n_total else f" ({n_var} of {n_total} with the lowest bulk ESS)"
    fig.suptitle(f"Autocorrelation by chain{note}")
    return fig


# ---------------------------------------------------------------------------------------------
# 3. regression lines
# ---------------------------------------------------------------------------------------------
def harrell_davis_quantiles(x: np.ndarray, probs) -> np.ndarray:
    r"""Harrell-Davis quantile estimates along axis 0 of ``x``: shape (len(probs), ...).

    The estimate of the p-quantile is a weighted mean of all the order statistics,
    :math:`\hat q_p = \sum_{i=1}^{n} w_i\, x_{(i)}` with
    :math:`w_i = I_{i/n}(a, b) - I_{(i-1)/n}(a, b)`, :math:`a = p(n+1)`,
    :math:`b = (1-p)(n+1)` and :math:`I` the regularized incomplete beta function
    (Harrell, F. E. and Davis, C. E. (1982). A new distribution-free quantile estimator.
    *Biometrika* 69(3), 635-640). Unlike the sample quantile, which jumps from one order
    statistic to the next, it moves smoothly when the data do: the quantile of the lines
    :math:`\alpha_s + \beta_s x` across x has no visible kinks.
    """
    from scipy.special import betainc

    x = np.sort(np.asarray(x, dtype=float), axis=0)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"harrell_davis_quantiles needs at least 2 draws; received {n}.")
    edges = np.arange(n + 1) / n
    out = []
    for p in np.atleast_1d(np.asarray(probs, dtype=float)):
        if not 0 < p < 1:
            raise ValueError(f"probs must lie strictly between 0 and 1; received {p}.")
        w = np.diff(betainc(p * (n + 1), (1 - p) * (n + 1), edges))
        out.append(np.tensordot(w, x, axes=(0, 0)))
    return np.stack(out)


def mixture_quantiles(mu: np.ndarray, sd: np.ndarray, probs, *, tol: float = 1e-10
                      ) -> np.ndarray:
    r"""Quantiles of the posterior predictive at every column of ``mu``: shape (len(probs), G).

    The predictive of a new observation at a point is the mixture over the S posterior draws
    :math:`F(q) = \frac1S \sum_s \Phi\big((q - \mu_s) / \sigma_s\big)`, with ``mu`` of shape
    (S, G) and ``sd`` broadcastable to it. Each quantile solves :math:`F(q) = p` by bisection
    (F is increasing), between the smallest :math:`\mu_s - 10\sigma_s` and the largest
    :math:`\mu_s + 10\sigma_s`, to ``tol`` times that bracket. This is the exact predictive
    of the draws, with the noise integrated out rather than simulated, so the band it gives
    is smooth in x.
    """
    from scipy.special import ndtr

    mu = np.asarray(mu, dtype=float)
    sd = np.broadcast_to(np.asarray(sd, dtype=float), mu.shape)
    if np.any(sd <= 0):
        raise ValueError("mixture_quantiles needs positive noise sds; received a value <= 0.")
    lo0 = (mu - 10 * sd).min(axis=0)
    hi0 = (mu + 10 * sd).max(axis=0)
    out = []
    for p in np.atleast_1d(np.asarray(probs, dtype=float)):
        lo, hi = lo0.copy(), hi0.copy()
        # halve the bracket until it is tol of its first width: log2(1/tol) steps
        for _ in range(int(np.ceil(np.log2(1.0 / tol)))):
            mid = 0.5 * (lo + hi)
            below = ndtr((mid[None, :] - mu) / sd).mean(axis=0) < p
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out.append(0.5 * (lo + hi))
    return np.stack(out)


def regression_lines_plot(result: CaseResult, *, n_grid: int = 100, n_lines: int = 30):
    r"""Data, posterior regression lines, the 90% band of the mean line and the 90% posterior
    predictive band (the PyMC GLM tutorial's figure), one panel per backend.

    For ``y ~ x`` and ``y ~ 0 + x`` only (None otherwise). On a grid of x the line is
    :math:`\mu_s(x) = \alpha_s + \beta_s x` for every draw s; ``n_lines`` of them are drawn
    thin, as in the tutorial. The band of the mean is the 5-95% range of :math:`\mu_s(x)` by
    :func:`harrell_davis_quantiles`; the predictive band holds the 5% and 95% quantiles of
    the predictive mixture :math:`\frac1S \sum_s N(\mu_s(x), \sigma_s^2)`
    (:func:`mixture_quantiles`): the noise is integrated out analytically, not simulated, so
    neither band's edges are jagged. With per-row known noise there is no noise level between
    the rows, so only the band of the mean is drawn.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    spec = result.spec
    single = _single_predictor(spec)
    if single is None:
        return None
    k, intercept = single
    d = spec.design()
    x, y = d.X[:, k], d.y
    pad = 0.05 * (np.ptp(x) or 1.0)
    grid = np.linspace(x.min() - pad, x.max() + pad, n_grid)
    probs = [(1 - BAND) / 2, (1 + BAND) / 2]
    backends = list(result.posteriors)
    fig, axes = plt.subplots(1, len(backends), figsize=(WIDTH, 3.8), sharey=True, squeeze=False)
    for i, (ax, b) in enumerate(zip(axes[0], backends, strict=True)):
        dt = result.posteriors[b]
        idx = _subsample(_flat(dt, d.common[k].name).shape[0], 4000)
        slope = _flat(dt, d.common[k].name)[idx]
        alpha = _flat(dt, "Intercept")[idx] if intercept else np.zeros_like(slope)
        mu = alpha[:, None] + slope[:, None] * grid[None, :]          # (S, grid)
        color = _color(b, i)
        if not isinstance(spec.sigma, NoiseColumn):
            sd = _noise_sd(spec, dt)
            sd = sd[idx] if sd.shape[0] > 1 else sd
            ax.fill_between(grid, *mixture_quantiles(mu, sd, probs), color=color,
                            alpha=0.15, lw=0, label=f"{BAND:.0%} predictive")
        ax.fill_between(grid, *harrell_davis_quantiles(mu, probs), color=color, alpha=0.4,
                        lw=0, label=f"{BAND:.0%} band of the mean")
        some = mu[_subsample(mu.shape[0], n_lines)]
        ax.add_collection(LineCollection([np.column_stack([grid, m]) for m in some],
                                         colors="0.35", linewidths=0.5, alpha=0.35,
                                         label=f"{len(some)} posterior lines"))
        ax.plot(grid, mu.mean(axis=0), color=color, lw=1.8, label="posterior mean")
        ax.scatter(x, y, s=10, color="0.25", zorder=3, label="data")
        ax.set_title(b)
        ax.set_xlabel(d.common[k].name)
    axes[0][0].set_ylabel(d.response)
    fig.suptitle(f"Posterior regression lines with {BAND:.0%} bands")
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(labels), frameon=False, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# 4. predictive variance
# ---------------------------------------------------------------------------------------------
def predictive_variance_plot(result: CaseResult, *, x_max: float | None = None,
                             n_grid: int = 200):
    r"""Posterior predictive variance across x, split into noise and epistemic parts.

    For known-noise Gaussian models with one predictor (the derivation seed), where the
    predictive of a new observation at x is :math:`N(x^\top m_n,\; s^2 + x^\top V_n x)`: the
    noise :math:`s^2` is constant, while the epistemic part :math:`x^\top V_n x` grows
    quadratically away from the data. The grid runs from below the data to ``x_max`` (default:
    six data spans beyond the largest x, and at least 10). None for other cases.
    """
    import matplotlib.pyplot as plt

    from reference.conjugate import GaussianKnownNoise

    spec = result.spec
    single = _single_predictor(spec)
    post = getattr(result.exact, "post", None)
    if single is None or spec.known_sigma is None or not isinstance(post, GaussianKnownNoise):
        return None
    k, intercept = single
    d = spec.design()
    x = d.X[:, k]
    span = np.ptp(x) or 1.0
    lo = x.min() - 3 * span
    hi = max(x.max() + 6 * span, 10.0) if x_max is None else float(x_max)
    if not hi > x.max():
        raise ValueError(f"x_max must exceed the largest x ({x.max():g}); received {x_max}.")
    grid = np.linspace(lo, hi, n_grid)
    X_new = np.zeros((n_grid, d.X.shape[1]))
    X_new[:, k] = grid
    if intercept:
        X_new[:, [t.name for t in d.common].index("Intercept")] = 1.0
    pred = post.predictive(X_new)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    ax.stackplot(grid, pred.noise_var, pred.epistemic_var, colors=["#9ecae1", "#fdae6b"],
                 labels=[f"noise $s^2$ = {post.noise_var:g}",
                         r"epistemic $x^\top V_n x$"])
    ax.axvspan(x.min(), x.max(), color="0.5", alpha=0.12, lw=0, label="range of the data")
    ax.plot(x, np.zeros_like(x), "|", color="black", ms=12, mew=1.5, label="data x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, None)
    ax.set_xlabel(d.common[k].name)
    ax.set_ylabel("predictive variance")
    ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.set_title("Predictive variance of a new observation: noise plus epistemic (exact)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# 5. shrinkage
# ---------------------------------------------------------------------------------------------
def _group_level_columns(X: np.ndarray, codes: np.ndarray, J: int) -> list[int]:
    """Columns of X constant within every group (the intercept, group-level predictors)."""
    present = np.bincount(codes, minlength=J) > 0
    out = []
    for k in range(X.shape[1]):
        lo, hi = np.full(J, np.inf), np.full(J, -np.inf)
        np.minimum.at(lo, codes, X[:, k])
        np.maximum.at(hi, codes, X[:, k])
        if np.allclose(lo[present], hi[present]):
            out.append(k)
    return out


def _group_intercepts(spec: ModelSpec, dt, g) -> tuple[np.ndarray, np.ndarray]:
    r"""Draws of :math:`\alpha_j = \sum_{k \in G} \beta_k x_{kj} + b_j` and of its population
    part :math:`\sum_{k \in G} \beta_k x_{kj}` (G: columns constant within groups), as in
    :func:`reference.hierarchical.shrinkage`; shape (S, J), NaN for absent levels."""
    d = spec.design()
    J = len(g.levels)
    beta = _coefficients(spec, dt)
    pop = np.zeros((beta.shape[0], J))
    for k in _group_level_columns(d.X, g.codes, J):
        xk = np.full(J, np.nan)
        xk[g.codes] = d.X[:, k]
        if np.allclose(d.X[:, k], d.X[0, k]):   # a constant column: known for every level
            xk[:] = d.X[0, k]
        pop = pop + beta[:, [k]] * xk[None, :]
    return pop + _flat(dt, g.name), pop


def complete_pooling(X: np.ndarray, y: np.ndarray, codes: np.ndarray, J: int, *,
                     weights=None) -> np.ndarray:
    r"""Complete-pooling estimate of each group's intercept: shape (J,), NaN where unknown.

    The complete-pooling model ignores the groups: :math:`y = X\beta + \varepsilon`, fitted by
    (weighted) least squares. Group j's intercept under it is the part of :math:`x^\top
    \hat\beta` constant within the group, :math:`\sum_{k \in G} \hat\beta_k x_{kj}` over the
    columns G of X that are constant within every group (the intercept and group-level
    predictors such as uranium): one value for all groups when G holds only the intercept.
    """
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    beta, *_ = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)
    out = np.zeros(J)
    for k in _group_level_columns(X, codes, J):
        xk = np.full(J, np.nan)
        xk[codes] = X[:, k]
        if np.allclose(X[:, k], X[0, k]):   # a constant column: known for every level
            xk[:] = X[0, k]
        out = out + beta[k] * xk
    return out


def shrinkage_plot(result: CaseResult):
    r"""Partial pooling of the group intercepts between no pooling and complete pooling
    (Gelman and Hill 2007, ch. 12).

    For every varying-intercept term ``1|g``, each group j has three estimates of its
    intercept :math:`\alpha_j` (the intercept, plus the group-level predictors, plus the
    group effect :math:`b_j`):

    * **no pooling** (open circles): least squares with one free intercept per group,
      :math:`y_i = \alpha_{g[i]} + x_{i,w}^\top\gamma + \varepsilon_i`, where
      :math:`x_w` are the columns of X that vary within groups (basement in the radon data).
      By the Frisch-Waugh-Lovell theorem, :math:`\hat\alpha_j = \bar y_j - \bar x_{w,j}^\top
      \hat\gamma` with :math:`\hat\gamma` the within-group slope: the group mean of y after
      removing the least-squares fit of the within-group columns -- not the hierarchical
      model's slope. With no within-group columns it is the group's (weighted) mean of y; a
      group with one row is fitted exactly (the school's own estimate in eight schools).
      Computed by :func:`reference.hierarchical.shrinkage` (weights :math:`1/s_i^2` with known
      per-row noise).
    * **partial pooling** (filled, with 90% intervals): the posterior mean of
      :math:`\alpha_j` under the hierarchical model, per backend (with more than 20 groups only
      the main backend's intervals are drawn).
    * **complete pooling** (grey line, or grey ticks with a group-level predictor): least
      squares ignoring the groups (:func:`complete_pooling`).

    Groups are sorted by the no-pooling estimate; shrinkage shows as filled points pulled from
    the circles toward the grey line, most for groups with few rows. None when the model has
    no varying intercept.
    """
    import matplotlib.pyplot as plt

    from reference.design import GroupTerm
    from reference.hierarchical import shrinkage

    spec = result.spec
    d = spec.design()
    terms = [g for g in d.groups if g.expr == "1"]
    if not terms:
        return None
    main = _main_backend(result)
    backends = list(result.posteriors)
    weights = None if d.noise_sd is None else 1.0 / d.noise_sd**2
    fig, axes = plt.subplots(len(terms), 1, figsize=(WIDTH, 4.4 * len(terms)), squeeze=False)
    lo_q, hi_q = (1 - BAND) / 2, (1 + BAND) / 2
    for ax, g in zip(axes[:, 0], terms, strict=True):
        J = len(g.levels)
        many = J > 20
        term = GroupTerm(g.name, g.column, g.codes, tuple(g.levels))
        sh = shrinkage(result.posteriors[main]["posterior"], d.X, d.y, term,
                       names=d.column_names(), weights=weights)
        order = np.argsort(np.where(np.isnan(sh.no_pooling), np.inf, sh.no_pooling),
                           kind="stable")
        pos = np.arange(J)
        width = 0.5 if J <= 20 else 0.6
        offsets = (np.arange(len(backends)) - (len(backends) - 1) / 2) * width / max(
            len(backends), 1)
        for i, b in enumerate(backends):
            alpha = _group_intercepts(spec, result.posteriors[b], g)[0][:, order]
            color = _color(b, i)
            if b == main or not many:
                lo, hi = np.quantile(alpha, [lo_q, hi_q], axis=0)
                ax.vlines(pos + offsets[i], lo, hi, color=color, lw=1.0 if many else 1.5,
                          alpha=0.7)
            what = f"{BAND:.0%} interval" if b == main or not many else "mean"
            ax.plot(pos + offsets[i], alpha.mean(axis=0), "o", color=color,
                    ms=3 if many else 5, label=f"{b}: partial pooling, {what}")
        pooled = complete_pooling(d.X, d.y, g.codes, J, weights=weights)[order]
        label = "complete pooling (least squares)"
        finite = pooled[np.isfinite(pooled)]
        if finite.size and np.ptp(finite) <= 1e-12 * max(1.0, abs(finite[0])):
            ax.axhline(finite[0], color="0.45", lw=1.2, zorder=1, label=label)
        else:  # group-level predictors: a complete-pooling value per group
            ax.plot(pos, pooled, "_", color="0.35", ms=9 if many else 14, mew=1.5, zorder=1,
                    label=label)
        ax.plot(pos, sh.no_pooling[order], "o", mfc="white", mec="black", ms=4 if many else 6,
                zorder=4, label="no pooling (least squares per group)")
        ax.set_xlim(-0.7, J - 0.3)
        if J <= 30:
            ax.set_xticks(pos, [str(g.levels[j]) for j in order], fontsize=8,
                          rotation=0 if J <= 12 else 90)
        else:
            ax.set_xticks([])
        ax.set_xlabel(f"{g.group} ({J} levels, sorted by the no-pooling estimate)")
        ax.set_ylabel(f"intercept of {g.group}")
        ax.set_title(f"Shrinkage of {g.name}: partial pooling between no pooling and complete "
                     "pooling", pad=36)
        # above the axes, under the title: inside it would hide groups
        ax.legend(frameon=False, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# 6. posterior predictive check
# ---------------------------------------------------------------------------------------------
def replicate_data(spec: ModelSpec, dt, *, n: int = 50, seed: int = 0) -> np.ndarray:
    r"""``n`` replicated data sets :math:`y^{rep}_s = \mu(\theta_s) + \sigma_s \varepsilon_s`
    from ``n`` evenly spaced posterior draws: shape (n, rows). The noise sd is the draw's
    ``sigma``, the known constant or the known per-row column."""
    if n < 1:
        raise ValueError(f"n must be a positive number of replicated data sets; received {n}.")
    mu = _linear_predictor(spec, dt)
    idx = _subsample(mu.shape[0], n)
    sd = _noise_sd(spec, dt)
    sd = sd[idx] if sd.shape[0] > 1 else sd
    rng = np.random.default_rng(seed)
    return mu[idx] + sd * rng.standard_normal((len(idx), mu.shape[1]))


def ppc_plot(result: CaseResult, seed: int = 0, *, n: int = 50):
    """Posterior predictive check: the density of the observed y over the densities of ``n``
    data sets replicated from the reference posterior (Gabry et al. 2019), and the observed
    mean and sd against their replicated distributions."""
    import matplotlib.pyplot as plt

    spec = result.spec
    d = spec.design()
    main = _main_backend(result)
    y_rep = replicate_data(spec, result.posteriors[main], n=n, seed=seed)
    y = d.y
    lo = min(y.min(), np.quantile(y_rep, 0.005))
    hi = max(y.max(), np.quantile(y_rep, 0.995))
    pad = 0.05 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 300)
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 3.4), width_ratios=[2.2, 1, 1])
    ax = axes[0]
    for i, r in enumerate(y_rep):
        ax.plot(grid, _kde(r, grid), color=_color(main), alpha=0.25, lw=0.8,
                label=f"{len(y_rep)} replicated data sets" if i == 0 else None)
    ax.plot(grid, _kde(y, grid), color="black", lw=2, label="observed")
    ax.plot(y, np.zeros_like(y), "|", color="black", ms=8)
    ax.set_xlabel(d.response)
    ax.set_yticks([])
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Densities ({main} posterior)")
    for ax, stat, label in ((axes[1], np.mean, "mean"), (axes[2], np.std, "sd")):
        rep = stat(y_rep, axis=1)
        obs = stat(y)
        ax.hist(rep, bins=15, color=_color(main), alpha=0.6)
        ax.axvline(obs, color="black", lw=2)
        p = float(np.mean(rep >= obs))
        ax.set_title(f"{label}: P(rep >= obs) = {p:.2f}", fontsize=9)
        ax.set_yticks([])
    fig.suptitle("Posterior predictive check", y=1.02)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# 7. prior sensitivity
# ---------------------------------------------------------------------------------------------
def rescale_priors(spec: ModelSpec, factor: float) -> ModelSpec:
    """``spec`` with the scale of every prior multiplied by ``factor``.

    Coefficient priors, the sd priors of group terms and the prior on sigma (when sigma is
    unknown) are rescaled with :meth:`reference.priors.Prior.rescaled`; a known sigma, a noise
    column and priors without a scale (Flat, Constant) stay as they are.
    """
    factor = float(factor)
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite positive number; received {factor}.")
    priors = {k: GroupPrior(p.sigma.rescaled(factor)) if isinstance(p, GroupPrior)
              else p.rescaled(factor) for k, p in spec.priors.items()}
    sigma = spec.sigma.rescaled(factor) if isinstance(spec.sigma, Prior) else spec.sigma
    return replace(spec, priors=priors, sigma=sigma)


def sensitivity_refits(spec: ModelSpec, draws: int = 1000, chains: int = 4, seed: int = 0, *,
                       tune: int | None = None, cache=None) -> dict:
    """Refit the reference backend with every prior scale halved and doubled.

    Returns ``{"x0.5": DataTree, "x2": DataTree}`` (see :func:`rescale_priors`); ``tune``
    defaults to ``draws``. With a :class:`comparisons.cache.Cache`, each refit is stored and
    reused like any other fit: its key hashes the rescaled spec, the settings and the model
    code, so a rerun of the report refits nothing unless one of those changed.
    """
    from comparisons.cache import make_key
    from comparisons.harness import fingerprint
    from models.reference_model import fit_reference

    tune = draws if tune is None else tune
    out = {}
    for label, f in SENSITIVITY_FACTORS.items():
        rescaled = rescale_priors(spec, f)
        run = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
        key = make_key(kind="fit", spec=fingerprint(rescaled), backend="reference",
                       source=("reference", "models"), **run)
        dt = cache.load_fit(key) if cache is not None else None
        if dt is None:
            dt = fit_reference(rescaled, **run)
            if cache is not None:
                cache.save_fit(key, dt, about={"case": spec.name, "backend": "reference",
                                               "prior_scales": label, **run})
        out[label] = dt
    return out


def prior_sensitivity_plot(result: CaseResult, refits: dict):
    """Marginal posteriors of the scalar parameters under prior scales x0.5, x1 and x2.

    ``refits`` is the output of :func:`sensitivity_refits` (any ``{label: DataTree}`` works);
    the x1 curve is the reference posterior of ``result`` (else its first backend).
    """
    import matplotlib.pyplot as plt

    if not refits:
        raise ValueError("refits is empty; pass the output of sensitivity_refits(spec, ...).")
    spec = result.spec
    main = _main_backend(result)
    fits = {"x1": result.posteriors[main], **refits}
    labels = sorted(fits, key=lambda k: SENSITIVITY_FACTORS.get(k, 1.0 if k == "x1" else np.inf))
    names = _scalar_names(spec)
    for k, dt in refits.items():
        missing = [n for n in names if n not in dt["posterior"]]
        if missing:
            raise ValueError(f"refit {k!r} lacks {missing}; every refit must have "
                             f"{names}.")
    ncol = min(4, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, 2.6 * nrow), squeeze=False)
    styles = {"x0.5": ("#2c7fb8", "--"), "x1": ("black", "-"), "x2": ("#d95f0e", ":")}
    for ax, n in zip(axes.ravel(), names, strict=False):  # spare axes are hidden
        xs = {k: _flat(fits[k], n) for k in labels}
        lo, hi = np.quantile(np.concatenate(list(xs.values())), [0.002, 0.998])
        lower = 0.0 if _is_scale(n) else None
        grid = _density_grid(lo, hi, lower, 250)
        for i, k in enumerate(labels):
            color, ls = styles.get(k, (_CYCLE[i % len(_CYCLE)], "-"))
            ax.plot(grid, _kde(xs[k], grid, lower), color=color, ls=ls, lw=1.6,
                    label=f"prior scale {k}")
        ax.set_title(n, fontsize=10)
        ax.set_yticks([])
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    fig.suptitle("Prior sensitivity: every prior scale halved and doubled")
    fig.tight_layout()
    handles, texts = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(texts),
               frameon=False, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# 8. evidence
# ---------------------------------------------------------------------------------------------
def evidence_plot(estimates: list[dict], exact: float | None = None):
    """Log evidence estimates with +-2 SE bars, one row per method and backend.

    Each estimate is a dict with ``method``, ``backend``, ``log_evidence`` and ``se`` (None
    when the method gives no error estimate: no bar). Estimates whose ``log_evidence`` is None
    (a method that failed) are left out. An entry with ``method == "exact"`` or ``exact=``
    gives the exact value, drawn as a vertical line. None when nothing is left to draw.
    """
    import matplotlib.pyplot as plt

    if not estimates:
        return None
    for e in estimates:
        missing = [k for k in ("method", "backend", "log_evidence") if k not in e]
        if missing:
            raise ValueError(f"an evidence estimate lacks {missing}; each needs method, backend,"
                             f" log_evidence and se; received {e}.")
    if exact is None:
        exact = next((e["log_evidence"] for e in estimates if e["method"] == "exact"), None)
    rows = [e for e in estimates if e["method"] != "exact" and e["log_evidence"] is not None]
    if not rows and exact is None:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 0.9 + 0.38 * max(len(rows), 1)))
    ys = np.arange(len(rows))
    backends = list(dict.fromkeys(e["backend"] for e in rows))
    lo, hi = _evidence_xlim(rows, exact)
    off_scale = False
    for y, e in zip(ys, rows, strict=True):
        se = e.get("se")
        value = float(e["log_evidence"])
        color = _color(e["backend"], backends.index(e["backend"]))
        if se is not None and np.isfinite(se):
            ax.errorbar(value, y, xerr=2 * se, fmt="o", color=color, capsize=3)
        elif lo <= value <= hi:
            ax.plot(value, y, "D", color=color, mfc="white")
        else:  # far off (a Laplace baseline): an arrow at the edge with its value
            off_scale = True
            edge, marker, ha = (lo, "<", "left") if value < lo else (hi, ">", "right")
            ax.plot(edge, y, marker, color=color, ms=9, clip_on=False)
            ax.annotate(f"{value:.2f}", (edge, y), xytext=(12 if value < lo else -12, 0),
                        textcoords="offset points", ha=ha, va="center", fontsize=8,
                        color=color)
    ax.set_xlim(lo, hi)
    ax.ticklabel_format(axis="x", useOffset=False)  # -1082.8, not 0.2 with "-1.082e3" aside
    if exact is not None:
        ax.axvline(exact, color="black", ls="--", lw=1.2, label=f"exact {exact:.4f}")
        ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_yticks(ys, [f"{e['method']} ({e['backend']})" for e in rows], fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("log evidence (bars: +-2 SE; open diamond: no SE"
                  + ("; arrow: off the scale, value printed)" if off_scale else ")"))
    ax.set_title("Log marginal likelihood")
    fig.tight_layout()
    return fig


def _evidence_xlim(rows: list[dict], exact: float | None) -> tuple[float, float]:
    """x range of the evidence plot: the exact value and every estimate with its +-2 SE bar,
    padded; estimates without an SE widen it only when no estimate has one. A Laplace
    baseline 100 nats off would otherwise shrink every error bar to a dot."""
    ends = [] if exact is None else [float(exact)]
    for e in rows:
        se = e.get("se")
        if se is not None and np.isfinite(se):
            ends += [e["log_evidence"] - 2 * se, e["log_evidence"] + 2 * se]
    if len(ends) < 2 or all(e.get("se") is None for e in rows):
        ends += [float(e["log_evidence"]) for e in rows]
    lo, hi = min(ends), max(ends)
    pad = 0.15 * max(hi - lo, 0.02)
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------------------
# 9. marginal densities and agreement z-scores
# ---------------------------------------------------------------------------------------------
def density_plot(result: CaseResult):
    """Marginal posterior density of every scalar parameter, all backends overlaid, over the
    exact density (dashed black) where there is one.

    Kernel density estimates; for the scales (``sigma``, group sds) the kernel is reflected at
    zero so no density leaks below it. At most four panels per row.
    """
    import matplotlib.pyplot as plt

    names = _scalar_names(result.spec)
    backends = list(result.posteriors)
    ncol = min(4, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, 2.6 * nrow), squeeze=False)
    for ax, n in zip(axes.ravel(), names, strict=False):  # spare axes are hidden
        m = None
        if result.exact is not None:
            try:
                m = result.exact.marginal(n)
            except (KeyError, ValueError):
                m = None
        xs = {b: _flat(result.posteriors[b], n) for b in backends}
        if m is not None:
            lo, hi = float(m.ppf(0.001)), float(m.ppf(0.999))
        else:
            lo, hi = np.quantile(np.concatenate(list(xs.values())), [0.001, 0.999])
        lower = 0.0 if _is_scale(n) else None
        grid = _density_grid(lo, hi, lower, 300)
        for i, b in enumerate(backends):
            ax.plot(grid, _kde(xs[b], grid, lower), color=_color(b, i), lw=1.6, label=b)
        if m is not None:
            with np.errstate(invalid="ignore"):  # a quadrature marginal's pdf at the bound 0
                dens = m.pdf(grid)
            ax.plot(grid, dens, color="black", ls="--", lw=1.2, label="exact")
        ax.set_title(n, fontsize=10)
        ax.set_yticks([])
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle("Marginal posterior densities" + (" (dashed: exact)" if result.exact
                                                   is not None else ""))
    fig.tight_layout()
    return fig


#: the most rows a z-score plot shows (the largest |z|); more make an unreadable, slow figure
MAX_Z_ROWS = 60


def z_plot(rows: list[dict]):
    """The checks' z-scores, one row per check (the :data:`MAX_Z_ROWS` largest |z| when there
    are more), over the band of the smallest threshold in ``rows``; None without checks.

    Each row is a check dict with ``backend``, ``other`` (default "exact"), ``parameter``,
    ``quantity``, ``z`` and ``tolerance``.
    """
    import matplotlib.pyplot as plt

    if not rows:
        return None
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    n_all = len(rows)
    t = min(r["tolerance"] for r in rows)
    if n_all > MAX_Z_ROWS:
        keep = sorted(range(n_all), key=lambda i: -abs(np.nan_to_num(rows[i]["z"], nan=np.inf)))
        rows = [rows[i] for i in sorted(keep[:MAX_Z_ROWS])]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.2 * len(rows) + 1.0))
    ys = np.arange(len(rows))
    zs = np.array([r["z"] for r in rows], dtype=float)
    ax.axvspan(-t, t, color="#e8f3e8")
    ax.scatter(zs, ys, c=[_color(r["backend"], backends.index(r["backend"])) for r in rows],
               s=14)
    ax.set_yticks(ys, [f'{r["backend"]} vs {r.get("other", "exact")}: {r["parameter"]} '
                       f'{r["quantity"]}' for r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("z: difference / combined MCSE; q05, q95 on the probability scale "
                  "(shaded: the smallest Holm threshold)")
    if n_all > len(rows):
        ax.set_title(f"the {len(rows)} of {n_all} checks with the largest |z|", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# 10. empirical Bayes
# ---------------------------------------------------------------------------------------------
def evidence_curve_plot(result: CaseResult):
    """Empirical Bayes (the derivation seed): the exact log evidence against a common prior sd
    of the coefficients, with its type-II maximum-likelihood scale
    (:func:`reference.evidence.evidence_curve`). Known-noise cases without group terms only;
    None otherwise."""
    import matplotlib.pyplot as plt

    from reference.evidence import evidence_curve

    spec = result.spec
    d = spec.design()
    if d.groups or spec.known_sigma is None:
        return None
    c = evidence_curve(d.X, d.y, np.geomspace(0.05, 100.0, 60), noise_var=spec.known_sigma**2)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    ax.plot(c.scales, c.log_evidence, color=_color("reference"))
    ax.axvline(c.best_scale, color="#c44e52", ls="--",
               label=f"type-II ML: prior sd {c.best_scale:.3g}, log evidence "
                     f"{c.best_log_evidence:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("prior sd of every coefficient")
    ax.set_ylabel("log evidence")
    ax.set_title("Empirical Bayes: the evidence as a function of the prior scale")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig
