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
            "packages": versions, "source_hash": fp["source"], "git_commit": commit, "seed": result.settings["seed"],
            "data_hash": result.spec.data_hash(),
            "wall_times": {k: round(v, 3) for k, v in result.wall_times.items()},
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])}


def _summarize(x: np.ndarray) -> dict:
    import arviz_stats

    flat = x.reshape(-1)
    return {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)),
            "q05": float(np.quantile(flat, 0.05)), "q95": float(np.quantile(flat, 0.95)),
            "mcse_mean": float(arviz_stats.mcse(x, method="mean")),
            "ess_bulk": float(arviz_stats.ess(x, method="bulk")),
            "r_hat": float(arviz_stats.rhat(x)) if x.shape[0] > 1 else None}


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
            "parameters": {label: _summarize(x) for label, _, x in scalar_elements(spec, post)},
            "evidence": {r["method"]: {"log_evidence": r["log_evidence"], "se": r["se"],
                                       "note": r["note"]}
                         for r in result.evidence if r["backend"] == b},
            "wall_time": round(result.wall_times[b], 3),
        }
    return {
        "case": spec.name, "description": spec.description, "formula": spec.formula,
        "priors": spec.prior_table(), "settings": result.settings,
        "exact": exact, "backends": backends, "comparisons": result.checks,
        "evidence": {"estimates": result.evidence, "checks": result.evidence_checks,
                     "rule": "|estimate - exact| <= 3 se + 0.05 nats"},
        "equivalence": result.equivalence,
        "rule": {"alpha": result.settings.get("alpha", 0.01), "procedure": "Holm",
                 "margin_sd": 0.05, "r_hat_max": 1.01, "ess_bulk_min": 400,
                 "z": "difference / combined MCSE; quantiles: (p - fraction of draws below "
                      "the reference quantile) / sqrt(p(1-p)/ESS)"},
        "verdict": result.verdict, "provenance": provenance(result),
    }


def _exact(m, q):
    from comparisons.agreement import exact_value

    return exact_value(m, q)


def _collapsed(checks: list[dict]) -> list[dict]:
    """One row per backend, parameter (group levels pooled) and quantity: the largest |z|."""
    best: dict = {}
    for c in checks:
        key = (c["backend"], c.get("other", "exact"), c["parameter"].split("[", 1)[0],
               c["quantity"])
        if key not in best or abs(c["z"]) > abs(best[key]["z"]):
            n_levels = best.get(key, {}).get("n", 0) + 1
            best[key] = {**c, "parameter": key[2], "n": n_levels}
        else:
            best[key]["n"] += 1
    return list(best.values())


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}.agree{background:#2e7d32;color:#fff;border-radius:4px;padding:1px 6px}
.disagree{background:#c62828;color:#fff;border-radius:4px;padding:1px 6px}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px}img{max-width:100%}"""


def _badge(v: str) -> str:
    return f'<span class="{v}">{v}</span>'


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>{body}</body></html>")


def case_html(result: CaseResult, summ: dict, cache=None) -> str:
    """The self-contained HTML page of one case (every figure an embedded PNG).

    ``cache`` (a :class:`comparisons.cache.Cache`) keeps the prior-sensitivity refits.
    """
    from models.bambi_model import bambi_code
    from models.pymc_model import pymc_code
    from models.reference_model import describe

    spec = result.spec
    e = html.escape
    rows = "".join(
        f"<tr><td style='text-align:left'>{e(c['backend'])} vs {e(c.get('other', 'exact'))}</td>"
        f"<td style='text-align:left'>"
        f"{e(c['parameter'])}{' (' + str(c['n']) + ' levels, worst shown)' if c['n'] > 1 else ''}"
        f"</td><td>{c['quantity']}</td><td>{c['estimate']:.4g}</td>"
        f"<td>{c['target']:.4g}</td><td>{c['mcse']:.3g}</td><td>{c['z']:+.2f}</td>"
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
    return _page(spec.name, f"""
<p><a href="../index.html">&larr; all cases</a></p>
<h1>{e(spec.name)} {_badge(result.verdict)}</h1>
<p>{e(spec.description)}</p>
<p>Formula <code>{e(spec.formula)}</code>; settings {e(json.dumps(result.settings))};
wall times {e(times)}.</p>
{''.join(f"<p>Backend <b>{e(b)}</b> is unsupported for this case: {e(why)}</p>"
         for b, why in result.settings.get('unsupported', {}).items())}
<h2>Priors</h2><table><tr><th>parameter</th><th>prior</th></tr>{priors}</table>
<h2>Equivalence of the three models</h2><p>{_badge('agree' if eq.get('passed') else 'disagree')
                                               if eq else ''}
 {eq_txt if eq else 'not run: no PyMC or Bambi backend in this run'}</p>
<h2>Exact answer</h2><p>{exact_txt}</p>
<h2>Marginal densities</h2>{_figure(plots.density_plot, "densities", result)}
<h2>Verdicts</h2>
<p>{len(result.checks)} checks: each backend against the exact answer and against every other
backend, z = difference / combined MCSE (arviz); a quantile is compared on the probability
scale, where its null variance p(1-p)/ESS is known. A check disagrees when Holm's procedure rejects
it at a {_percent(result.settings.get("alpha", 0.01))} family-wise level (this case's share of
the report's 1% budget) <em>and</em> the difference exceeds 0.05 posterior sd; it is
inconclusive when a backend mixed poorly (R-hat &gt; 1.01, bulk ESS &lt; 400, divergences).</p>
{_figure(plots.z_plot, "z-scores", _collapsed(result.checks))}
<table><tr><th>comparison</th><th>parameter</th><th>quantity</th><th>estimate</th><th>target</th>
<th>MCSE</th><th>z</th><th>verdict</th></tr>{rows}</table>
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
<h2>The model, three ways</h2>
<h3>Reference</h3><pre>{e(describe(spec))}</pre>
<h3>PyMC</h3><pre>{e(pymc_code(spec))}</pre>
<h3>Bambi</h3><pre>{e(bambi_code(spec))}</pre>
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
        refits = plots.sensitivity_refits(result.spec, draws=s["draws"], tune=s.get("tune"),
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
        rows += (f"<tr><td style='text-align:left'>{e(r['method'])}</td><td>{e(r['backend'])}"
                 f"</td><td>{val}</td><td>{se}</td><td>{badge}</td>"
                 f"<td style='text-align:left'>{e(r['note'])}</td></tr>")
    img = _figure(plots.evidence_plot, "evidence", result.evidence)
    return (f"<p>Each estimate agrees when it lies within 3 of its standard errors plus 0.05 "
            f"nats of the exact value; Laplace is a baseline and is not judged.</p>{img}"
            f"<table><tr><th>method</th><th>backend</th><th>log evidence</th><th>SE</th>"
            f"<th>verdict</th><th>note</th></tr>{rows}</table>")


def write_case(result: CaseResult, out: Path, *, cache=None) -> dict:
    """Write ``out/<case>/summary.json``, ``report.html`` and ``report.md``; return the summary.

    ``cache`` (a :class:`comparisons.cache.Cache`) keeps the prior-sensitivity refits.
    """
    summ = summary(result)
    folder = Path(out) / result.spec.name
    atomic_write(folder / "summary.json", json.dumps(summ, indent=1, default=_json_default))
    atomic_write(folder / "report.html", case_html(result, summ, cache=cache))
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
    for c in bad[:20]:
        lines.append(f"- {c['backend']} vs {c.get('other')}: {c['parameter']} {c['quantity']} "
                     f"z = {c['z']:+.2f} ({c['verdict']}{'; ' + c['reason'] if c.get('reason') else ''})")
    ev = summ.get("evidence", {}).get("estimates", [])
    if ev:
        lines += ["", "## Evidence", "", "| method | backend | log evidence | SE |", "|---|---|---|---|"]
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
        f"</td><td style='text-align:left'>{e(s['formula'])}</td><td>{_badge(s['verdict'])}</td>"
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
