"""The report figures: what each one draws, on which cases it applies, and its numbers.

CaseResults are built cheaply from the reference backend alone (closed form, Gibbs or
hierarchical Gibbs, a second or less each); where a plot overlays backends, the reference
DataTree is reused under the name ``pymc``, so no PyMC model is compiled here.
"""

from __future__ import annotations

import base64

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from scipy import stats

from comparisons import plots
from comparisons.agreement import check_against_exact
from comparisons.cases import get_case
from comparisons.harness import CaseResult
from models.reference_model import exact_answer, fit_reference
from models.spec import GroupPrior, ModelSpec
from reference.priors import HalfCauchy, InverseGamma, Normal

SEED = 20261121
DRAWS, CHAINS = 400, 2
Z_MAX = 3.5
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(spec: ModelSpec, *, exact: bool = True, twin: bool = True) -> CaseResult:
    """A CaseResult with the reference fit, and the same DataTree again as ``pymc``."""
    dt = fit_reference(spec, draws=DRAWS, tune=DRAWS, chains=CHAINS, seed=SEED)
    r = CaseResult(spec, {"draws": DRAWS, "tune": DRAWS, "chains": CHAINS, "seed": SEED,
                          "backends": ["reference"]})
    r.posteriors["reference"] = dt
    r.wall_times["reference"] = 0.0
    if twin:
        r.posteriors["pymc"] = dt
        r.wall_times["pymc"] = 0.0
    r.exact = exact_answer(spec) if exact else None
    return r


def _categorical_spec() -> ModelSpec:
    data = pd.DataFrame({"g": list("aabbbccc"), "y": [0.1, 0.4, 1.2, 0.9, 1.5, 2.2, 1.8, 2.5]})
    return ModelSpec("categorical", data, "y ~ C(g)",
                     {"Intercept": Normal(0, 5), "C(g)": Normal(0, 5)}, 0.5)


@pytest.fixture(scope="module")
def three_point():
    return _result(get_case("three-point"))


@pytest.fixture(scope="module")
def tutorial():
    return _result(get_case("tutorial"))


@pytest.fixture(scope="module")
def schools():
    return _result(get_case("eight-schools"))


@pytest.fixture(scope="module")
def radon():
    return _result(get_case("radon-intercepts"), exact=False)


@pytest.fixture(scope="module")
def categorical():
    return _result(_categorical_spec())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- png ------------------------------------------------------------------------------------
def test_png_base64_gives_a_png_and_closes_the_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    raw = base64.b64decode(plots.png_base64(fig))
    assert raw.startswith(PNG_MAGIC) and len(raw) > 1000
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(TypeError, match="needs a matplotlib Figure; received None"):
        plots.png_base64(None)


# --- applicability --------------------------------------------------------------------------
ALWAYS = {"density_plot", "forest_plot", "ppc_plot"}


@pytest.mark.parametrize("fixture, expected", [
    ("three_point", ALWAYS | {"regression_lines_plot", "predictive_variance_plot",
                              "evidence_curve_plot"}),
    ("tutorial", ALWAYS | {"trace_rank_plots", "autocorr_plot", "regression_lines_plot"}),
    ("schools", ALWAYS | {"trace_rank_plots", "autocorr_plot", "shrinkage_plot"}),
    ("categorical", ALWAYS | {"evidence_curve_plot"}),
])
def test_each_plot_applies_where_it_should_and_returns_none_elsewhere(fixture, expected, request):
    result = request.getfixturevalue(fixture)
    every = {"density_plot", "forest_plot", "trace_rank_plots", "autocorr_plot",
             "regression_lines_plot", "predictive_variance_plot", "shrinkage_plot", "ppc_plot",
             "evidence_curve_plot"}
    drawn = set()
    for name in every:
        fig = getattr(plots, name)(result)
        if fig is not None:
            drawn.add(name)
            raw = base64.b64decode(plots.png_base64(fig))
            assert raw.startswith(PNG_MAGIC)
    assert drawn == expected


# --- forest ---------------------------------------------------------------------------------
def _forest_parts(fig):
    """(row labels, {colour: [twig lines]}) of an arviz-plots forest figure."""
    label_ax, forest_ax = fig.axes[0], fig.axes[-1]
    labels = [t.get_text() for ax in fig.axes[:-1] for t in ax.texts if t.get_text()]
    lines = {}
    for ln in forest_ax.get_lines():
        lines.setdefault(matplotlib.colors.to_hex(ln.get_color()), []).append(ln)
    return labels, lines, label_ax, forest_ax


def _assert_exact_twigs(fig, result, names):
    """The black 90% twigs sit at the exact 5% and 95% quantiles (to 1% of a posterior sd)."""
    _, lines, _, _ = _forest_parts(fig)
    black = sorted(lines["#000000"], key=lambda ln: -ln.get_ydata()[0])
    twigs = [ln for ln in black if ln.get_linewidth() == min(b.get_linewidth() for b in black)]
    assert len(twigs) == len(names)
    for ln, n in zip(twigs, names, strict=True):
        m = result.exact.marginal(n)
        np.testing.assert_allclose(sorted(ln.get_xdata()), m.ppf([0.05, 0.95]),
                                   atol=0.01 * m.std())


def test_forest_overlays_backends_and_marks_the_exact_interval(tutorial):
    fig = plots.forest_plot(tutorial)
    labels, lines, _, forest_ax = _forest_parts(fig)
    assert labels == ["Intercept", "x", "sigma"]
    # reference, pymc and exact: a twig and a trunk per parameter each
    assert {c: len(v) for c, v in lines.items()} == {"#4c72b0": 6, "#dd8452": 6, "#000000": 6}
    assert [t.get_text() for t in forest_ax.get_legend().get_texts()] == [
        "reference", "pymc", "exact"]
    _assert_exact_twigs(fig, tutorial, ["Intercept", "x", "sigma"])


def test_forest_exact_check_fails_when_the_exact_interval_is_misplaced(tutorial, monkeypatch):
    fig = plots.forest_plot(tutorial)
    real = tutorial.exact.marginal

    class Shifted:  # the exact marginal moved by half a posterior sd
        def __init__(self, m):
            self.m = m

        def ppf(self, q):
            return self.m.ppf(q) + 0.5 * self.m.std()

        def std(self):
            return self.m.std()

    monkeypatch.setattr(tutorial.exact, "marginal", lambda n, level=None: Shifted(real(n)))
    with pytest.raises(AssertionError):
        _assert_exact_twigs(fig, tutorial, ["Intercept", "x", "sigma"])


def test_forest_shows_small_group_vectors_and_leaves_long_ones_to_the_shrinkage_plot(
        schools, radon):
    fig = plots.forest_plot(schools)
    labels, lines, _, _ = _forest_parts(fig)
    assert labels == ["Intercept", "1|school", "1|school_sigma", *"ABCDEFGH"]
    assert len(lines["#000000"]) == 2 * 10  # exact: Intercept, 8 schools, tau
    labels, lines, _, _ = _forest_parts(plots.forest_plot(radon))
    assert labels == ["Intercept", "basement", "uranium", "1|county_sigma", "sigma"]
    assert "#000000" not in lines  # no exact answer was computed for this result


def test_forest_standardizes_when_scales_differ_by_more_than_50(categorical):
    fig = plots.forest_plot(categorical)
    assert "standardized" not in fig._suptitle.get_text()
    # the same case with the intercept's draws blown up a thousandfold: standardized
    dt = categorical.posteriors["reference"].copy()
    post = dt["posterior"].to_dataset()
    post["Intercept"] = post["Intercept"] * 1000
    dt["posterior"] = post
    wide = CaseResult(categorical.spec, categorical.settings, posteriors={"reference": dt})
    fig = plots.forest_plot(wide)
    assert fig._suptitle.get_text().endswith("standardized")
    assert fig.axes[-1].get_xlabel() == "(value - reference mean) / reference sd"


def _label_gap(fig) -> float:
    """Blank width between the right end of the widest row label and the intervals' axis, as
    a fraction of the figure width."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    label_ax, forest_ax = fig.axes[0], fig.axes[-1]
    right = max(t.get_window_extent(renderer).x1 for t in label_ax.texts if t.get_text())
    return (forest_ax.get_window_extent(renderer).x0 - right) / fig.bbox.width


def test_forest_leaves_no_blank_gap_where_a_long_vector_is_left_out(radon, schools):
    """radon's 85 county effects are left out of the forest: the column arviz-plots reserves
    for labels must shrink to the parameter names, not leave a blank band before the
    intervals; eight schools (two label columns) stays tight too."""
    fig = plots.forest_plot(radon)
    assert _label_gap(fig) < 0.04
    assert "not shown: 1|county (85 levels, see the shrinkage plot)" in fig._suptitle.get_text()
    assert _label_gap(plots.forest_plot(schools)) < 0.04


def test_forest_gap_check_fails_with_the_fixed_label_share(radon, monkeypatch):
    monkeypatch.setattr(plots, "_fit_label_column", lambda fig, label_ax, forest_ax: None)
    assert _label_gap(plots.forest_plot(radon)) > 0.04


# --- trace, rank, autocorrelation -----------------------------------------------------------
def test_trace_and_rank_rows_are_parameter_by_backend(tutorial):
    fig = plots.trace_rank_plots(tutorial)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    expected = [f"{n} · {b}" for n in ("Intercept", "x", "sigma") for b in ("reference", "pymc")]
    assert titles[0::2] == expected and titles[1::2] == expected   # trace, rank per row
    assert fig.axes[-2].get_xlabel() == "Draw" and fig.axes[-1].get_xlabel() == "Fractional ranks"
    assert fig.axes[0].get_xlabel() == ""   # the label is kept on the bottom row only
    assert len(fig.axes[0].get_lines()) == CHAINS


def test_diagnostics_keep_the_parameters_with_the_lowest_ess(tutorial, monkeypatch):
    import arviz_stats

    monkeypatch.setattr(plots, "MAX_DIAGNOSTIC_PARAMS", 2)
    ess = {n: float(arviz_stats.ess(plots._draws(tutorial.posteriors["reference"], n),
                                    method="bulk")) for n in ("Intercept", "x", "sigma")}
    worst = [n for n in ("Intercept", "x", "sigma") if n in sorted(ess, key=ess.get)[:2]]
    fig = plots.autocorr_plot(tutorial)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{n} · {b}" for n in worst for b in ("reference", "pymc")]
    assert "2 of 3 with the lowest bulk ESS" in fig._suptitle.get_text()


def test_closed_form_draws_get_no_convergence_plots(three_point):
    assert plots.trace_rank_plots(three_point) is None
    assert plots.autocorr_plot(three_point) is None


# --- regression lines -----------------------------------------------------------------------
def test_regression_lines_draw_data_mean_line_lines_and_both_bands(tutorial):
    from matplotlib.collections import LineCollection

    fig = plots.regression_lines_plot(tutorial)
    assert [ax.get_title() for ax in fig.axes] == ["reference", "pymc"]
    ax = fig.axes[0]
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2
    (line,) = ax.get_lines()
    dt = tutorial.posteriors["reference"]
    a = dt["posterior"]["Intercept"].values.mean()
    b = dt["posterior"]["x"].values.mean()
    np.testing.assert_allclose(line.get_ydata(), a + b * line.get_xdata(), rtol=1e-6)
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 30      # thin posterior lines, as in the tutorial
    assert len(ax.collections[-1].get_offsets()) == 200  # the data points


def _band_edges(poly, n: int):
    """(x, lower, upper) of a fill_between polygon over ``n`` grid points."""
    v = poly.get_paths()[0].vertices
    return v[1:n + 1, 0], v[1:n + 1, 1], v[n + 2:2 * n + 2, 1][::-1]


def _bands(fig):
    """(predictive, mean) band polygons of the first panel."""
    return [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]


def _band_z(result):
    """z-scores of the 5% and 95% edges of both bands at x = 0, 1, 2 against the exact
    predictive N(m(x), 1 + x'Vx) and the exact mean N(m(x), x'Vx); MCSE of a quantile of n
    independent draws: sqrt(p (1 - p) / n) / density at the quantile (conservative for the
    predictive band, whose noise is integrated out)."""
    pred_poly, mean_poly = _bands(plots.regression_lines_plot(result))
    n_draws = DRAWS * CHAINS
    zs = []
    for poly, noise in ((pred_poly, 1.0), (mean_poly, 0.0)):
        x, lo, hi = _band_edges(poly, 100)
        for x0 in (0.0, 1.0, 2.0):
            i = int(np.argmin(np.abs(x - x0)))
            row = np.array([1.0, x[i]])
            post = result.exact.post
            dist = stats.norm(row @ post.mean, np.sqrt(noise + row @ post.cov @ row))
            for p, edge in ((0.05, lo[i]), (0.95, hi[i])):
                mcse = np.sqrt(p * (1 - p) / n_draws) / dist.pdf(dist.ppf(p))
                zs.append((edge - dist.ppf(p)) / mcse)
    return np.array(zs)


def test_regression_bands_are_the_exact_90_percent_bands(three_point):
    zs = _band_z(three_point)
    assert np.max(np.abs(zs)) < Z_MAX, zs


def test_regression_band_check_fails_when_the_noise_is_left_out(three_point, monkeypatch):
    monkeypatch.setattr(plots, "_noise_sd", lambda spec, dt: np.full((1, 1), 1e-6))
    assert np.max(np.abs(_band_z(three_point)[:6])) > Z_MAX


#: the largest second difference of a band edge over the grid, relative to the band's
#: narrowest width: 5e-3 is half a pixel on a band 100 pixels wide, so nothing visible; the
#: exact edges of three-point's bands have 2.6e-4
KINK_MAX = 5e-3


def _kinkiness(fig) -> list[float]:
    out = []
    for poly in _bands(fig):
        _, lo, hi = _band_edges(poly, 100)
        width = np.min(hi - lo)
        out += [np.max(np.abs(np.diff(lo, 2))) / width, np.max(np.abs(np.diff(hi, 2))) / width]
    return out


@pytest.mark.parametrize("fixture", ["three_point", "tutorial"])
def test_regression_band_edges_are_smooth(fixture, request):
    kinks = _kinkiness(plots.regression_lines_plot(request.getfixturevalue(fixture)))
    assert max(kinks) < KINK_MAX, kinks


def test_smoothness_check_fails_on_simulated_noise_and_sample_quantiles(three_point,
                                                                         monkeypatch):
    """The earlier bands: the predictive band from one simulated noise draw per draw and grid
    point, the band of the mean from plain sample quantiles. Both are visibly jagged."""
    rng = np.random.default_rng(SEED)

    def simulated(mu, sd, probs):
        return np.quantile(mu + sd * rng.standard_normal(mu.shape), probs, axis=0)

    with monkeypatch.context() as m:
        m.setattr(plots, "mixture_quantiles", simulated)
        assert _kinkiness(plots.regression_lines_plot(three_point))[0] > KINK_MAX
    monkeypatch.setattr(plots, "harrell_davis_quantiles",
                        lambda x, probs: np.quantile(x, probs, axis=0))
    assert max(_kinkiness(plots.regression_lines_plot(three_point))[2:]) > KINK_MAX


def test_band_quantile_helpers_match_exact_quantiles_and_reject_bad_input():
    rng = np.random.default_rng(SEED)
    # a mixture of one normal is that normal: its quantiles are exact
    q = plots.mixture_quantiles(np.full((1, 3), 2.0), np.full((1, 3), 0.5), [0.05, 0.95])
    np.testing.assert_allclose(q, [[2 + 0.5 * stats.norm.ppf(0.05)] * 3,
                                   [2 + 0.5 * stats.norm.ppf(0.95)] * 3], atol=1e-8)
    # Harrell-Davis on 4000 normal draws: within its Monte Carlo error of the exact quantile
    x = rng.standard_normal((4000, 1))
    hd = plots.harrell_davis_quantiles(x, [0.05, 0.5, 0.95])[:, 0]
    mcse = np.sqrt(np.array([0.05, 0.5, 0.95]) * [0.95, 0.5, 0.05] / 4000) / stats.norm.pdf(
        stats.norm.ppf([0.05, 0.5, 0.95]))
    assert np.max(np.abs((hd - stats.norm.ppf([0.05, 0.5, 0.95])) / mcse)) < Z_MAX
    with pytest.raises(ValueError, match="probs must lie strictly between 0 and 1"):
        plots.harrell_davis_quantiles(x, [1.0])
    with pytest.raises(ValueError, match="at least 2 draws"):
        plots.harrell_davis_quantiles(x[:1], [0.5])
    with pytest.raises(ValueError, match="positive noise sds"):
        plots.mixture_quantiles(np.zeros((2, 2)), 0.0, [0.5])


# --- predictive variance --------------------------------------------------------------------
def test_predictive_variance_stacks_noise_and_exact_epistemic_parts(three_point):
    fig = plots.predictive_variance_plot(three_point)
    ax = fig.axes[0]
    noise, epistemic = [c for c in ax.collections if isinstance(c, PolyCollection)][:2]
    lo, hi = ax.get_xlim()
    assert lo < 0 and hi >= 10   # from below the data (x in [0, 2]) to x = 10 and beyond
    x, bottom, top = _band_edges(noise, 200)
    np.testing.assert_allclose(bottom, 0.0)
    np.testing.assert_allclose(top, 1.0)          # the known noise variance
    x, bottom, top = _band_edges(epistemic, 200)
    V = three_point.exact.post.cov
    np.testing.assert_allclose(bottom, 1.0)
    np.testing.assert_allclose(top - bottom, V[0, 0] + 2 * V[0, 1] * x + V[1, 1] * x**2,
                               rtol=1e-12)
    # at x = 10 the derivation seed's numbers: 0.4 - 4 + 26.67 = 23.07 epistemic, plus noise 1
    assert 1 + V[0, 0] + 20 * V[0, 1] + 100 * V[1, 1] == pytest.approx(24.0667, abs=1e-4)


def test_predictive_variance_rejects_an_x_max_inside_the_data(three_point):
    with pytest.raises(ValueError, match=r"x_max must exceed the largest x \(2\)"):
        plots.predictive_variance_plot(three_point, x_max=1.0)


# --- shrinkage ------------------------------------------------------------------------------
def _shrinkage_points(fig):
    ax = fig.axes[0]
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    return ax, by_label


NO_POOL = "no pooling (least squares per group)"
COMPLETE = "complete pooling (least squares)"


def test_shrinkage_plots_every_school_beside_its_no_pooling_estimate(schools):
    from reference.design import GroupTerm
    from reference.hierarchical import shrinkage

    fig = plots.shrinkage_plot(schools)
    ax, lines = _shrinkage_points(fig)
    d = schools.spec.design()
    nopool = lines[NO_POOL].get_ydata()
    # one row per school: the no-pooling estimate is the school's own y
    np.testing.assert_allclose(np.sort(nopool), np.sort(d.y))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(
        np.asarray(d.groups[0].levels)[np.argsort(d.y, kind="stable")])
    partial = lines["reference: partial pooling, 90% interval"].get_ydata()
    assert len(partial) == 8
    g = d.groups[0]
    sh = shrinkage(schools.posteriors["reference"]["posterior"], d.X, d.y,
                   GroupTerm(g.name, g.column, g.codes, tuple(g.levels)),
                   names=d.column_names(), weights=1 / d.noise_sd**2)
    np.testing.assert_allclose(partial, sh.partial[np.argsort(d.y, kind="stable")], rtol=1e-10)
    # complete pooling: one line at the precision-weighted mean of the schools' estimates
    w = 1 / d.noise_sd**2
    (hline,) = [ln for ln in ax.get_lines() if ln.get_label() == COMPLETE]
    assert hline.get_ydata()[0] == pytest.approx(np.sum(w * d.y) / np.sum(w), rel=1e-10)


def _radon_shrinkage_by_hand(radon):
    """No pooling, from the within-county (Frisch-Waugh-Lovell) form: the basement slope from
    county-demeaned data, then alpha_j = mean_j(y) - slope * mean_j(basement); complete
    pooling, from ordinary least squares of y on 1, basement, uranium:
    alpha_j = b0 + b_uranium * uranium_j. Both sorted by the no-pooling estimate."""
    d = radon.spec.design()
    g = d.groups[0]
    names = d.column_names()
    basement, uranium = d.X[:, names.index("basement")], d.X[:, names.index("uranium")]
    n = np.bincount(g.codes)
    ybar, bbar = np.bincount(g.codes, d.y) / n, np.bincount(g.codes, basement) / n
    ubar = np.bincount(g.codes, uranium) / n
    yt, bt = d.y - ybar[g.codes], basement - bbar[g.codes]
    slope = np.sum(bt * yt) / np.sum(bt * bt)
    no_pool = ybar - slope * bbar
    ols, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(d.y), basement, uranium]), d.y,
                              rcond=None)
    complete = ols[0] + ols[2] * ubar
    order = np.argsort(no_pool, kind="stable")
    return no_pool[order], complete[order]


def test_shrinkage_with_85_counties_is_per_county_least_squares_and_complete_pooling(radon):
    from reference.design import GroupTerm
    from reference.hierarchical import shrinkage

    fig = plots.shrinkage_plot(radon)
    ax, lines = _shrinkage_points(fig)
    no_pool, complete = _radon_shrinkage_by_hand(radon)
    np.testing.assert_allclose(lines[NO_POOL].get_ydata(), no_pool, rtol=1e-8)
    np.testing.assert_allclose(lines[COMPLETE].get_ydata(), complete, rtol=1e-8)
    # uranium is a county-level predictor, so complete pooling differs between counties
    assert np.ptp(lines[COMPLETE].get_ydata()) > 0.1
    d = radon.spec.design()
    g = d.groups[0]
    sh = shrinkage(radon.posteriors["reference"]["posterior"], d.X, d.y,
                   GroupTerm(g.name, g.column, g.codes, tuple(g.levels)), names=d.column_names())
    order = np.argsort(sh.no_pooling, kind="stable")
    np.testing.assert_allclose(lines["reference: partial pooling, 90% interval"].get_ydata(),
                               sh.partial[order], rtol=1e-10)
    # with 85 counties the second backend is drawn as means only
    assert len(lines["pymc: partial pooling, mean"].get_ydata()) == 85
    assert "85 levels" in ax.get_xlabel()


def test_shrinkage_check_fails_with_residual_means_under_the_model_slopes(radon, monkeypatch):
    """The earlier "no pooling" estimate: each county's mean of y minus the common terms at
    their hierarchical posterior means. It is not least squares per county (the slope comes
    from the partially pooled model, and uranium is taken out too), and the check sees it."""
    import reference.hierarchical as hier

    real = hier.shrinkage

    def residual_means(posterior, X, y, term, *, names, weights=None):
        sh = real(posterior, X, y, term, names=names, weights=weights)
        fit = sum(X[:, k] * float(np.mean(posterior[n])) for k, n in enumerate(names)
                  if n != "Intercept")
        codes = np.asarray(term.codes)
        means = np.bincount(codes, y - fit) / np.bincount(codes)
        return sh.__class__(*[means if f == "no_pooling" else getattr(sh, f)
                              for f in sh.__dataclass_fields__])

    monkeypatch.setattr(hier, "shrinkage", residual_means)
    no_pool, _ = _radon_shrinkage_by_hand(radon)
    fig = plots.shrinkage_plot(radon)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(np.sort(_shrinkage_points(fig)[1][NO_POOL].get_ydata()),
                                   np.sort(no_pool), rtol=1e-3)


def test_complete_pooling_check_fails_with_the_hierarchical_population_mean(radon,
                                                                            monkeypatch):
    """The earlier grey line: the hierarchical posterior's population-level part, not least
    squares ignoring the counties."""
    post = radon.posteriors["reference"]["posterior"]

    def population_part(X, y, codes, J, *, weights=None):
        u = np.bincount(codes, X[:, 2]) / np.bincount(codes)
        return float(post["Intercept"].mean()) + float(post["uranium"].mean()) * u

    monkeypatch.setattr(plots, "complete_pooling", population_part)
    _, complete = _radon_shrinkage_by_hand(radon)
    fig = plots.shrinkage_plot(radon)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(_shrinkage_points(fig)[1][COMPLETE].get_ydata(), complete,
                                   rtol=1e-3)


# --- posterior predictive check -------------------------------------------------------------
def test_replicated_data_follow_the_exact_predictive(three_point):
    """Mean and sd of y_rep at each data row against the exact predictive, in MCSE units."""
    n = DRAWS * CHAINS
    y_rep = plots.replicate_data(three_point.spec, three_point.posteriors["reference"], n=n,
                                 seed=SEED)
    assert y_rep.shape == (n, 3)
    d = three_point.spec.design()
    pred = three_point.exact.post.predictive(d.X)
    zs = []
    for i in range(3):
        dist = stats.norm(pred.mean[i], np.sqrt(pred.var[i]))
        for c in check_against_exact(f"y_rep[{i}]", y_rep[None, :, i], dist):
            zs.append(c.z)
    assert max(abs(z) for z in zs) < Z_MAX, zs


def test_replicated_data_check_fails_without_the_noise(three_point, monkeypatch):
    monkeypatch.setattr(plots, "_noise_sd", lambda spec, dt: np.zeros((1, 1)))
    y_rep = plots.replicate_data(three_point.spec, three_point.posteriors["reference"],
                                 n=DRAWS * CHAINS, seed=SEED)
    d = three_point.spec.design()
    pred = three_point.exact.post.predictive(d.X)
    dist = stats.norm(pred.mean[0], np.sqrt(pred.var[0]))
    sd_check = next(c for c in check_against_exact("y_rep[0]", y_rep[None, :, 0], dist)
                    if c.quantity == "sd")
    assert abs(sd_check.z) > Z_MAX


def test_ppc_plot_overlays_50_replicated_densities(tutorial, schools):
    for result in (tutorial, schools):
        fig = plots.ppc_plot(result, SEED)
        ax = fig.axes[0]
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert labels.count("50 replicated data sets") == 1
        assert len(ax.get_lines()) == 50 + 2  # replicates, observed density, rug
        assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="n must be a positive number"):
        plots.replicate_data(tutorial.spec, tutorial.posteriors["reference"], n=0)


# --- prior sensitivity ----------------------------------------------------------------------
def test_rescale_priors_scales_every_prior_but_a_known_sigma():
    tut = plots.rescale_priors(get_case("tutorial"), 0.5)
    assert tut.priors["Intercept"] == Normal(0, 10) and tut.sigma == HalfCauchy(5)
    sch = plots.rescale_priors(get_case("eight-schools"), 2)
    assert sch.priors["1|school"] == GroupPrior(HalfCauchy(10)) and sch.sigma == get_case(
        "eight-schools").sigma
    three = plots.rescale_priors(get_case("three-point"), 2)
    assert three.sigma == 1.0 and three.priors["x"] == Normal(0, 2)
    nig = plots.rescale_priors(get_case("tutorial-nig"), 2)
    assert nig.sigma == InverseGamma(2, 4, on="sigma2")   # sigma^2 scales by 4
    with pytest.raises(ValueError, match="factor must be a finite positive number"):
        plots.rescale_priors(tut, 0)


def test_sensitivity_refits_sample_the_rescaled_posterior(three_point):
    refits = plots.sensitivity_refits(three_point.spec, draws=DRAWS, chains=CHAINS, seed=SEED)
    assert set(refits) == {"x0.5", "x2"}
    for key, f in plots.SENSITIVITY_FACTORS.items():
        exact = exact_answer(plots.rescale_priors(three_point.spec, f))
        for n in ("Intercept", "x"):
            for c in check_against_exact(n, refits[key]["posterior"][n].values,
                                         exact.marginal(n)):
                assert abs(c.z) < Z_MAX, (key, c)
    # halving the prior scale visibly tightens the posterior of the slope
    sd = {k: float(refits[k]["posterior"]["x"].std()) for k in refits}
    assert sd["x0.5"] < 0.9 * three_point.exact.marginal("x").std() < sd["x2"]


def test_prior_sensitivity_plot_has_three_curves_per_parameter(tutorial):
    spec = tutorial.spec
    refits = {k: fit_reference(plots.rescale_priors(spec, f), draws=200, tune=200, chains=2,
                               seed=SEED) for k, f in plots.SENSITIVITY_FACTORS.items()}
    fig = plots.prior_sensitivity_plot(tutorial, refits)
    shown = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["Intercept", "x", "sigma"]
    for ax in shown:
        assert [ln.get_label() for ln in ax.get_lines()] == [
            "prior scale x0.5", "prior scale x1", "prior scale x2"]
    # sigma is about 0.5 +- 0.03: its panel spans the draws, not zero to the draws (which
    # squeezed the density into a spike at the right edge)
    sigma_grid = shown[2].get_lines()[0].get_xdata()
    both = np.concatenate([plots._flat(f, "sigma") for f in (tutorial.posteriors["reference"],
                                                               *refits.values())])
    assert sigma_grid[0] == pytest.approx(np.quantile(both, 0.002))
    # a scale whose mass reaches toward zero is drawn from zero (reflected kernel)
    assert plots._density_grid(0.01, 0.3, 0.0, 5)[0] == 0.0
    assert plots._density_grid(0.70, 0.82, 0.0, 5)[0] == 0.70
    assert plots._density_grid(-2.0, 2.0, None, 5)[0] == -2.0
    with pytest.raises(ValueError, match="refits is empty"):
        plots.prior_sensitivity_plot(tutorial, {})
    bad = {"x2": refits["x2"].copy()}
    bad["x2"]["posterior"] = bad["x2"]["posterior"].to_dataset().drop_vars("sigma")
    with pytest.raises(ValueError, match=r"refit 'x2' lacks \['sigma'\]"):
        plots.prior_sensitivity_plot(tutorial, bad)


# --- evidence -------------------------------------------------------------------------------
def test_evidence_plot_rows_error_bars_and_exact_line():
    assert plots.evidence_plot([]) is None
    est = [{"method": "smc", "backend": "pymc", "log_evidence": -5.49, "se": 0.02},
           {"method": "bridge", "backend": "reference", "log_evidence": -5.47, "se": 0.01},
           {"method": "laplace", "backend": "reference", "log_evidence": -5.3, "se": None},
           {"method": "exact", "backend": "reference", "log_evidence": -5.4775, "se": 0.0},
           {"method": "laplace", "backend": "pymc", "log_evidence": None, "se": None}]
    fig = plots.evidence_plot(est)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "smc (pymc)", "bridge (reference)", "laplace (reference)"]
    bars = [c for c in ax.containers]
    assert len(bars) == 2  # no bar for the estimate without an SE
    seg = bars[0].lines[2][0].get_segments()[0]
    np.testing.assert_allclose(seg[:, 0], [-5.49 - 0.04, -5.49 + 0.04])
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert vlines[0].get_xdata()[0] == -5.4775
    # the x range holds the exact value and the bars; the Laplace baseline without an SE,
    # 0.18 nats off, is an arrow at the edge with its value, so the bars stay readable
    lo, hi = ax.get_xlim()
    assert lo < -5.49 - 0.04 and hi > -5.47 + 0.02 and hi < -5.3
    (note,) = ax.texts
    assert note.get_text() == "-5.30" and note.xy == (hi, 2)
    assert plots.evidence_plot([{"method": "laplace", "backend": "reference",
                                 "log_evidence": None, "se": None}]) is None
    with pytest.raises(ValueError, match=r"lacks \['log_evidence'\]"):
        plots.evidence_plot([{"method": "smc", "backend": "pymc", "se": 0.1}])


def test_sensitivity_refits_are_cached_and_reused(three_point, tmp_path, monkeypatch):
    from comparisons.cache import Cache
    from models import reference_model

    store = Cache(tmp_path)
    first = plots.sensitivity_refits(three_point.spec, draws=100, chains=2, seed=SEED,
                                     cache=store)

    def refuse(*args, **kwargs):
        raise AssertionError("refitted although the refit was cached")

    monkeypatch.setattr(reference_model, "fit_reference", refuse)
    again = plots.sensitivity_refits(three_point.spec, draws=100, chains=2, seed=SEED,
                                     cache=store)
    for k in first:
        np.testing.assert_array_equal(again[k]["posterior"]["x"].values,
                                      first[k]["posterior"]["x"].values)
    with pytest.raises(AssertionError, match="refitted"):  # other settings: a new entry
        plots.sensitivity_refits(three_point.spec, draws=101, chains=2, seed=SEED, cache=store)


# --- densities, z-scores, evidence curve ----------------------------------------------------
def test_density_plot_overlays_backends_over_the_exact_density(tutorial):
    fig = plots.density_plot(tutorial)
    shown = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["Intercept", "x", "sigma"]
    for ax, n in zip(shown, ["Intercept", "x", "sigma"], strict=True):
        ref, pymc, exact = ax.get_lines()
        assert (ref.get_label(), pymc.get_label(), exact.get_label()) == (
            "reference", "pymc", "exact")
        m = tutorial.exact.marginal(n)
        np.testing.assert_allclose(exact.get_ydata(), m.pdf(exact.get_xdata()), rtol=1e-12)
        # the kernel estimate is near the exact density where the mass is (reflected for sigma)
        grid, kde = ref.get_xdata(), ref.get_ydata()
        core = (grid > m.ppf(0.1)) & (grid < m.ppf(0.9))
        assert np.max(np.abs(kde[core] - m.pdf(grid[core]))) < 0.15 * m.pdf(grid).max()
    assert shown[2].get_lines()[0].get_xdata().min() >= 0.0


def test_z_plot_places_each_check_and_returns_none_without_checks():
    rows = [{"backend": "reference", "parameter": "x", "quantity": "mean", "z": 0.5,
             "tolerance": 3.0},
            {"backend": "pymc", "other": "reference", "parameter": "x", "quantity": "sd",
             "z": -4.2, "tolerance": 2.8}]
    fig = plots.z_plot(rows)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[-1].get_offsets(), [[0.5, 0], [-4.2, 1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "reference vs exact: x mean", "pymc vs reference: x sd"]
    assert plots.z_plot([]) is None


def test_evidence_curve_peaks_at_the_type_2_maximum(three_point, schools):
    from reference.conjugate import GaussianKnownNoise

    fig = plots.evidence_curve_plot(three_point)
    ax = fig.axes[0]
    curve, best = ax.get_lines()
    d = three_point.spec.design()
    tau = best.get_xdata()[0]
    # the exact evidence at the marked scale is the curve's maximum
    logz = GaussianKnownNoise(d.X, d.y, noise_var=1.0, prior_mean=np.zeros(2),
                              prior_cov=tau**2 * np.eye(2)).log_evidence()
    assert logz >= curve.get_ydata().max() - 1e-9
    assert f"log evidence {logz:.3f}" in ax.get_legend().get_texts()[0].get_text()
    # a case with group terms (no single coefficient prior scale) gets no curve
    assert plots.evidence_curve_plot(schools) is None
