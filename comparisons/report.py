"""Reports: ``summary.json`` and a self-contained ``report.html`` per case, and an index.

Every file is written atomically (to a temporary file in the same folder, then renamed), so an
interrupted run never leaves a half-written report behind.
"""

from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from comparisons import plots
from comparisons.agreement import QUANTITIES
from comparisons.harness import CaseResult


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def provenance(result: CaseResult) -> dict:
    from comparisons.cache import environment_fingerprint

    fp = environment_fingerprint()
    versions = {**fp["packages"], "arviz": _version("arviz")}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "source_hash": fp["source"], "git_commit": commit,
            "seed": result.settings["seed"],
            "data_hash": result.spec.data_hash(),
            "wall_times": {k: round(v, 3) for k, v in result.wall_times.items()},
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])}


def _summarize(x: np.ndarray, diag: dict | None = None) -> dict:
    """Mean, sd, 5%/95% quantiles, MCSE of the mean, bulk ESS and R-hat of draws ``x``;
    ``diag`` (the element's :func:`comparisons.verdicts.diagnostics` entry) saves recomputing
    ESS and R-hat."""
    import arviz_stats

    flat = x.reshape(-1)
    if diag is None:
        diag = {"ess_bulk": float(arviz_stats.ess(x, method="bulk")),
                "r_hat": float(arviz_stats.rhat(x)) if x.shape[0] > 1 else float("nan")}
    r_hat = diag["r_hat"]
    return {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)),
            "q05": float(np.quantile(flat, 0.05)), "q95": float(np.quantile(flat, 0.95)),
            "mcse_mean": float(arviz_stats.mcse(x, method="mean")),
            "ess_bulk": float(diag["ess_bulk"]),
            "r_hat": None if x.shape[0] < 2 or not np.isfinite(r_hat) else float(r_hat)}


def summary(result: CaseResult) -> dict:
    """The JSON summary of one case."""
    from comparisons.harness import scalar_elements

    spec = result.spec
    exact = None
    if result.exact is not None:
        ref_post = next(iter(result.posteriors.values()))["posterior"]
        params = {label: {q: _exact(result.exact.marginal(label.split("[", 1)[0], level), q)
                          for q in QUANTITIES}
                  for label, level, _ in scalar_elements(spec, ref_post)}
        try:
            log_ev = result.exact.log_evidence()
        except ValueError:
            log_ev = None
        exact = {"method": result.exact.kind, "parameters": params, "log_evidence": log_ev,
                 "log_evidence_error": getattr(result.exact, "log_evidence_error", None)}
    backends = {}
    for b, dt in result.posteriors.items():
        post = dt["posterior"]
        backends[b] = {
            "inference_library": post.attrs.get("inference_library"),
            "algorithm": post.attrs.get("algorithm"),
            "parameters": {label: _summarize(x, result.diagnostics.get(b, {}).get(
                               "parameters", {}).get(label))
                           for label, _, x in scalar_elements(spec, post)},
            "evidence": {r["method"]: {"log_evidence": r["log_evidence"], "se": r["se"],
                                       "note": r["note"]}
                         for r in result.evidence if r["backend"] == b},
            "wall_time": round(result.wall_times[b], 3),
        }
    from comparisons.verdicts import detectable, explain

    all_checks = result.checks + result.evidence_checks
    for b, diag in result.diagnostics.items():
        backends[b]["divergences"] = diag["divergences"]
    return {
        "case": spec.name, "description": spec.description, "formula": spec.formula,
        "priors": spec.prior_table(), "settings": result.settings,
        "exact": exact, "backends": backends, "comparisons": result.checks,
        "evidence": {"estimates": result.evidence, "checks": result.evidence_checks,
                     "rule": "|estimate - exact| <= 3 se + 0.05 nats"},
        "equivalence": result.equivalence,
        "rule": {"alpha": result.settings.get("alpha", 0.01), "procedure": "Holm",
                 "margin_sd": 0.05, "r_hat_max": 1.01, "ess_bulk_min": 400,
                 "diff_sd": DIFF_TEXT, "z": Z_TEXT},
        "detectable": detectable(result.diagnostics, len(result.checks),
                                 result.settings.get("alpha", 0.01)),
        "verdict": result.verdict,
        "verdict_reason": explain(all_checks, result.diagnostics),
        "provenance": provenance(result),
    }


#: how every row's z is formed, said once on the page, in JSON and on the command line
Z_TEXT = ("z = difference / combined MCSE for mean, sd and corr; q05 and q95 are compared on "
          "the probability scale: z = (p - fraction of draws below the target) / "
          "sqrt(p(1-p)/ESS)")
DIFF_TEXT = "(estimate - target) / posterior sd; for corr, in correlation units"


def format_row(c: dict) -> str:
    """One check as a line: estimate, target, difference in posterior sd and z."""
    unit = "" if c["quantity"] == "corr" else " sd"
    z = c["z"]
    return (f"{c['parameter']} {c['quantity']} ({c['backend']} vs {c.get('other', 'exact')}): "
            f"estimate {c['estimate']:.4g}, target {c['target']:.4g}, difference "
            f"{c.get('diff_sd', float('nan')):+.2f}{unit}, z = {z:+.1f}"
            f"{' (probability scale)' if c.get('z_scale') == 'probability' else ''}"
            f" -> {c['verdict']}{': ' + c['reason'] if c.get('reason') else ''}")


def worst_rows(checks: list[dict], n: int = 5) -> list[dict]:
    """The ``n`` checks most worth reading: disagreements, then inconclusive ones, by |z|."""
    rank = {"disagree": 0, "inconclusive": 1, "agree": 2}

    def key(c):
        z = abs(c["z"]) if np.isfinite(c["z"]) else np.inf
        return (rank.get(c["verdict"], 3), -z)
    return sorted(checks, key=key)[:n]


def detectable_text(det: dict, backend: str | None = None) -> str:
    """The smallest detectable shift of a mean, as a sentence (the weakest backend's, or
    ``backend``'s)."""
    rows = det.get("backends", {})
    if backend is not None:
        rows = {backend: rows[backend]} if backend in rows else {}
    if not rows:
        return ""
    b, r = max(rows.items(), key=lambda kv: kv[1]["mean_shift_sd"])
    return (f"smallest detectable difference: a shift of {r['mean_shift_sd']:.3g} posterior sd "
            f"in a mean ({b}: smallest bulk ESS {r['ess_bulk_min']:.0f}, at "
            f"{r['parameter']}; |z| threshold {det['z_threshold']:.2f}, margin "
            f"{det['margin_sd']} sd, detected {det['power']:.0%} of the time)")


def _exact(m, q):
    from comparisons.agreement import exact_value

    return exact_value(m, q)


def _collapsed(checks: list[dict]) -> list[dict]:
    """One row per backend, parameter (group levels pooled; all correlations pooled) and
    quantity: the largest |z|."""
    best: dict = {}
    for c in checks:
        name = "corr" if c["quantity"] == "corr" else c["parameter"].split("[", 1)[0]
        key = (c["backend"], c.get("other", "exact"), name, c["quantity"])
        if key not in best or abs(c["z"]) > abs(best[key]["z"]):
            n_levels = best.get(key, {}).get("n", 0) + 1
            best[key] = {**c, "parameter": key[2], "n": n_levels}
        else:
            best[key]["n"] += 1
    return list(best.values())


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}.agree{background:#2e7d32;color:#fff;border-radius:4px;padding:1px 6px}
.disagree{background:#c62828;color:#fff;border-radius:4px;padding:1px 6px}
.inconclusive{background:#f9a825;color:#222;border-radius:4px;padding:1px 6px}
.box{border-left:6px solid #2e7d32;background:#f4faf4;padding:8px 14px;margin:1em 0}
.box.disagree-box{border-color:#c62828;background:#fdf3f3}
.box.inconclusive-box{border-color:#f9a825;background:#fffaf0}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px}img{max-width:100%}"""


def _badge(v: str) -> str:
    return f'<span class="{v}">{v}</span>'


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>{body}</body></html>")


def verdict_box(summ: dict) -> str:
    """The verdict explained in a sentence or two, at the top of a case page."""
    e = html.escape
    v = summ["verdict"]
    n = len(summ["comparisons"]) + len(summ.get("evidence", {}).get("checks", []))
    if v == "agree":
        text = f"All {n} checks agree."
    elif v == "inconclusive":
        text = ("<b>Inconclusive</b> is not agreement: some checks could not be judged because "
                "the draws they use mixed poorly (R-hat above 1.01, bulk ESS below 400, or "
                f"divergent transitions), so nothing is claimed about them. Why: "
                f"{e(summ.get('verdict_reason', ''))}. Run longer chains or fix the sampler's "
                "mixing, then run again.")
    else:
        text = (f"<b>Disagree</b>: {e(summ.get('verdict_reason', ''))}; the worst rows are "
                "listed under Verdicts.")
    det = detectable_text(summ.get("detectable", {}))
    return (f'<div class="box {v}-box"><p>{_badge(v)} {text}</p>'
            f'{f"<p>This run&#39;s {e(det)}.</p>" if det else ""}</div>')


def case_html(result: CaseResult, summ: dict, cache=None, *, index_link: bool = False) -> str:
    """The self-contained HTML page of one case (every figure an embedded PNG).

    ``cache`` (a :class:`comparisons.cache.Cache`) keeps the prior-sensitivity refits;
    ``index_link`` adds a link to ``../index.html`` (only ``crosscheck report`` writes one).
    """
    from models.bambi_model import bambi_script
    from models.pymc_model import pymc_script
    from models.reference_model import describe

    spec = result.spec
    e = html.escape
    rows = "".join(
        f"<tr><td style='text-align:left'>{e(c['backend'])} vs {e(c.get('other', 'exact'))}</td>"
        f"<td style='text-align:left'>"
        f"{e(c['parameter'])}{' (' + str(c['n']) + ' checks, worst shown)' if c['n'] > 1 else ''}"
        f"</td><td>{c['quantity']}</td><td>{c['estimate']:.4g}</td>"
        f"<td>{c['target']:.4g}</td><td>{c.get('diff_sd', float('nan')):+.3f}</td>"
        f"<td>{c['mcse']:.3g}</td><td>{c['z']:+.2f}"
        f"{'<sup>p</sup>' if c.get('z_scale') == 'probability' else ''}</td>"
        f"<td>{_badge(c['verdict'])} {e(c.get('reason', ''))}</td></tr>"
        for c in _collapsed(result.checks))
    priors = "".join(f"<tr><td style='text-align:left'>{e(k)}</td><td style='text-align:left'>"
                     f"{e(v)}</td></tr>" for k, v in spec.prior_table().items())
    ex = summ["exact"]
    if ex is None:
        exact_txt = "No exact answer for this case."
    else:
        ev = ex["log_evidence"]
        exact_txt = (f"{e(ex['method'])}; log evidence "
                     f"{f'{ev:.4f}' if ev is not None else 'undefined (improper prior)'}.")
    eq = result.equivalence or {}
    eq_txt = e(eq.get("message", "not run"))
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.wall_times.items())
    back = '<p><a href="../index.html">&larr; all cases</a></p>' if index_link else ""
    return _page(spec.name, f"""
{back}
<h1>{e(spec.name)} {_badge(result.verdict)}</h1>
{verdict_box(summ)}
<p>{e(spec.description)}</p>
<p>Formula <code>{e(spec.formula)}</code>; settings {e(json.dumps(result.settings))};
wall times {e(times)}.</p>
{''.join(f"<p>Backend <b>{e(b)}</b> is unsupported for this case: {e(why)}</p>"
         for b, why in result.settings.get('unsupported', {}).items())}
<h2>The model, three ways</h2>
<p>The same model as the reference describes it, as explicit PyMC and as a Bambi formula.
Both code blocks run as printed (the data load offline, from the suite's own case).</p>
<h3>Reference</h3><pre>{e(describe(spec))}</pre>
<h3>PyMC</h3><pre>{e(pymc_script(spec))}</pre>
<h3>Bambi</h3><pre>{e(bambi_script(spec))}</pre>
<h2>Priors</h2><table><tr><th>parameter</th><th>prior</th></tr>{priors}</table>
<h2>Equivalence of the three models</h2><p>{_badge('agree' if eq.get('passed') else 'disagree')
                                               if eq else ''}
 {eq_txt if eq else 'not run: no PyMC or Bambi backend in this run'}</p>
<h2>Exact answer</h2><p>{exact_txt}</p>
<h2>Marginal densities</h2>{_figure(plots.density_plot, "densities", result)}
<h2>Verdicts</h2>
<p>{len(result.checks)} checks: each backend against the exact answer and against every other
backend. Each row gives the estimate, its target, their difference in posterior sds
(correlation units for corr) and z. {e(Z_TEXT)} (marked <sup>p</sup>). A check disagrees when
Holm's procedure rejects it at a {_percent(result.settings.get("alpha", 0.01))} family-wise
level (this case's share of the report's 1% budget) <em>and</em> the difference exceeds 0.05
posterior sd; it is inconclusive when any draws it uses mixed poorly (R-hat &gt; 1.01, bulk ESS
&lt; 400, divergences; both parameters of a correlation).</p>
{_figure(plots.z_plot, "z-scores", _collapsed(result.checks))}
<table><tr><th>comparison</th><th>parameter</th><th>quantity</th><th>estimate</th><th>target</th>
<th>difference (sd)</th><th>MCSE</th><th>z</th><th>verdict</th></tr>{rows}</table>
<h2>Intervals across backends</h2>{_figure(plots.forest_plot, "forest", result)}
<h2>Chains</h2>{_chains_html(result)}
<h2>Posterior predictive</h2>
{_figure(plots.regression_lines_plot, "regression lines", result)}
{_figure(plots.predictive_variance_plot, "predictive variance", result)}
{_figure(plots.ppc_plot, "ppc", result, result.settings.get("seed", 0))}
{_figure(plots.shrinkage_plot, "shrinkage", result)}
{_sensitivity_html(result, cache)}
<h2>Evidence</h2>{_evidence_html(result)}
{_figure(plots.evidence_curve_plot, "evidence curve", result)}
<h2>Provenance</h2><pre>{e(json.dumps(summ['provenance'], indent=1))}</pre>
""")


def _figure(fn, alt: str, *args) -> str:
    """A figure as an <img> with its title, or a note saying why it is missing; never a lost
    report. Nothing when the figure does not apply to the case (``fn`` returned None)."""
    try:
        fig = fn(*args)
        png = None if fig is None else plots.png_base64(fig)
    except Exception as err:  # a broken figure must not take the whole report down
        import matplotlib.pyplot as plt

        plt.close("all")
        return f"<p><em>{html.escape(alt)} failed: {html.escape(str(err))}</em></p>"
    if png is None:
        return ""
    return (f'<h3>{html.escape(alt)}</h3><img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{png}">')


def _chains_html(result: CaseResult) -> str:
    out = (_figure(plots.trace_rank_plots, "trace and rank", result)
           + _figure(plots.autocorr_plot, "autocorrelation", result))
    return out or "<p>Every backend drew independent samples (closed form): no chains.</p>"


def _sensitivity_html(result: CaseResult, cache=None) -> str:
    """Reference refits with every prior scale halved and doubled, beside the original."""
    if "reference" not in result.posteriors:
        return ""
    s = result.settings
    seed = s.get("backend_seeds", {}).get("reference", s["seed"])
    try:
        # a density plot needs no more than the default 1000 draws per chain, even where a case
        # samples longer to pass the diagnostics gate (radon-intercepts: 2000)
        refits = plots.sensitivity_refits(result.spec, draws=min(s["draws"], 1000),
                                          tune=min(s.get("tune") or 1000, 1000),
                                          chains=s["chains"], seed=seed, cache=cache)
    except Exception as err:
        return f"<p><em>prior sensitivity failed: {html.escape(str(err))}</em></p>"
    return ("<h2>Prior sensitivity</h2><p>The reference posterior refitted with the scale of "
            "every prior (coefficients, group sds, sigma) halved and doubled.</p>"
            + _figure(plots.prior_sensitivity_plot, "prior sensitivity", result, refits))


def _evidence_html(result: CaseResult) -> str:
    e = html.escape
    if not result.evidence:
        return "<p>No evidence estimates.</p>"
    verdict = {(c["method"], c["backend"]): c for c in result.evidence_checks}
    rows = ""
    for r in result.evidence:
        c = verdict.get((r["method"], r["backend"]))
        val = "&mdash;" if r["log_evidence"] is None else f"{r['log_evidence']:.4f}"
        se = "&mdash;" if r["se"] is None else f"{r['se']:.4f}"
        badge = _badge(c["verdict"]) if c else ""
        note = "; ".join(x for x in (r["note"], c.get("reason", "") if c else "") if x)
        rows += (f"<tr><td style='text-align:left'>{e(r['method'])}</td><td>{e(r['backend'])}"
                 f"</td><td>{val}</td><td>{se}</td><td>{badge}</td>"
                 f"<td style='text-align:left'>{e(note)}</td></tr>")
    img = _figure(plots.evidence_plot, "evidence", result.evidence)
    return (f"<p>Each estimate agrees when it lies within 3 of its standard errors plus 0.05 "
            f"nats of the exact value; an estimate from draws that mixed poorly is "
            f"inconclusive; Laplace is a baseline and is not judged.</p>{img}"
            f"<table><tr><th>method</th><th>backend</th><th>log evidence</th><th>SE</th>"
            f"<th>verdict</th><th>note</th></tr>{rows}</table>")


def write_case(result: CaseResult, out: Path, *, cache=None, index_link: bool = False,
               log_likelihood: bool = False, extra: dict | None = None) -> dict:
    """Write ``out/<case>/``: ``summary.json``, ``report.html``, ``report.md`` and each
    backend's posterior as ``<backend>.nc`` (ArviZ netCDF; see :mod:`comparisons.posteriors`).

    ``cache`` (a :class:`comparisons.cache.Cache`) keeps the prior-sensitivity refits;
    ``index_link`` links the page to ``../index.html``; ``log_likelihood`` adds pointwise
    log likelihoods to the netCDF files; ``extra`` adds fields to the summary. Returns the
    summary.
    """
    from comparisons import posteriors

    summ = {**summary(result), **(extra or {})}
    folder = Path(out) / result.spec.name
    paths = posteriors.write(result.posteriors, folder, result.spec,
                             include_log_likelihood=log_likelihood)
    summ["posteriors"] = {b: p.name for b, p in paths.items()}
    atomic_write(folder / "summary.json", json.dumps(summ, indent=1, default=_json_default))
    atomic_write(folder / "report.html", case_html(result, summ, cache=cache,
                                                   index_link=index_link))
    atomic_write(folder / "report.md", case_markdown(summ))
    return summ


def case_markdown(summ: dict) -> str:
    """The case's verdict and key numbers as Markdown, beside the HTML page."""
    lines = [f"# {summ['case']}: {summ['verdict']}", "", summ["description"], "",
             f"Formula `{summ['formula']}`.", "", "## Posterior summaries", "",
             "| backend | parameter | mean | sd | q05 | q95 | ESS bulk | R-hat |",
             "|---|---|---|---|---|---|---|---|"]
    for b, info in summ["backends"].items():
        for name, p in list(info["parameters"].items())[:12]:
            rhat = "" if p["r_hat"] is None else f"{p['r_hat']:.3f}"
            lines.append(f"| {b} | {name} | {p['mean']:.4g} | {p['sd']:.4g} | {p['q05']:.4g} | "
                         f"{p['q95']:.4g} | {p['ess_bulk']:.0f} | {rhat} |")
    bad = [c for c in summ["comparisons"] if c["verdict"] != "agree"]
    lines += ["", f"## Checks: {len(summ['comparisons'])}, not agreeing: {len(bad)}", ""]
    if summ.get("verdict_reason"):
        lines += [f"Why: {summ['verdict_reason']}.", ""]
    det = detectable_text(summ.get("detectable", {}))
    if det:
        lines += [f"This run's {det}.", ""]
    lines += [f"{Z_TEXT}.", ""]
    for c in worst_rows(bad, 20):
        lines.append(f"- {format_row(c)}")
    ev = summ.get("evidence", {}).get("estimates", [])
    if ev:
        lines += ["", "## Evidence", "", "| method | backend | log evidence | SE |",
                  "|---|---|---|---|"]
        for r in ev:
            val = "-" if r["log_evidence"] is None else f"{r['log_evidence']:.4f}"
            se = "-" if r["se"] is None else f"{r['se']:.4f}"
            lines.append(f"| {r['method']} | {r['backend']} | {val} | {se} |")
    return "\n".join(lines) + "\n"


def _percent(alpha: float) -> str:
    """0.01 -> '1%', 0.000909 -> '0.091%'."""
    return f"{100 * float(alpha):.2g}%"


def write_index(summaries: list[dict], out: Path, bayes_factors: list | None = None) -> Path:
    e = html.escape
    rows = "".join(
        f"<tr><td style='text-align:left'><a href='{e(s['case'])}/report.html'>{e(s['case'])}</a>"
        f"</td><td style='text-align:left'>{e(s['formula'])}</td><td>{_badge(s['verdict'])}"
        f"{'<br><small>' + e(s['verdict_reason']) + '</small>' if s.get('verdict_reason') else ''}"
        f"</td>"
        f"<td>{len(s['comparisons'])}</td>"
        f"<td>{max((abs(c['z']) for c in s['comparisons']), default=float('nan')):.2f}"
        f"</td></tr>" for s in summaries)
    alphas = [s.get("rule", {}).get("alpha", 0.01) for s in summaries]
    budget = (f"<p>False-alarm budget: 1% for the whole report, shared by its {len(summaries)} "
              f"cases ({_percent(max(alphas, default=0.01))} each; Holm's procedure within a "
              "case, the union bound across cases).</p>")
    body = (f"<h1>bayes-crosscheck report</h1>{budget}<table><tr><th>case</th><th>formula</th>"
            f"<th>verdict</th><th>checks</th><th>max |z|</th></tr>{rows}</table>")
    if bayes_factors:
        bf = "".join(
            f"<tr><td style='text-align:left'>{e(r['comparison'])}</td><td style='text-align:left'>"
            f"<code>{e(r['model_a'])}</code> vs <code>{e(r['model_b'])}</code></td>"
            f"<td>{r['exact']['log_bf']:.3f}</td><td>{r['bridge']['log_bf']:.3f} &plusmn; "
            f"{r['bridge']['se']:.3f}</td></tr>" for r in bayes_factors)
        body += ("<h2>Bayes factors</h2><p>log BF of the first specification against the second;"
                 " exact by quadrature, and bridge sampling on reference draws (&plusmn; 1 SE)."
                 f"</p><table><tr><th>comparison</th><th>models</th><th>exact log BF</th>"
                 f"<th>bridge log BF</th></tr>{bf}</table>")
        atomic_write(Path(out) / "bayes_factors.json", json.dumps(bayes_factors, indent=1))
    path = Path(out) / "index.html"
    atomic_write(path, _page("bayes-crosscheck report", body))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
