"""Reports: ``summary.json`` and a self-contained ``report.html`` per case, and an index.

Every file is written atomically (to a temporary file in the same folder, then renamed), so an
interrupted run never leaves a half-written report behind.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from comparisons.agreement import QUANTITIES
from comparisons.harness import Z_MAX, CaseResult

PACKAGES = ("numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "bambi", "formulae",
            "arviz", "arviz-base", "arviz-stats", "nutpie", "matplotlib")
COLORS = {"reference": "#4c72b0", "pymc": "#dd8452", "bambi": "#55a868", "exact": "black"}


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
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "git_commit": commit, "seed": result.settings["seed"],
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
    spec = result.spec
    exact_params = {}
    for n in spec.parameters:
        m = result.exact.marginal(n)
        exact_params[n] = {q: _exact(m, q) for q in QUANTITIES}
    try:
        log_ev = result.exact.log_evidence()
    except ValueError:
        log_ev = None
    backends = {}
    for b, dt in result.posteriors.items():
        post = dt["posterior"]
        backends[b] = {
            "inference_library": post.attrs.get("inference_library"),
            "parameters": {n: _summarize(np.asarray(post[n].values, float))
                           for n in spec.parameters},
            "wall_time": round(result.wall_times[b], 3),
        }
    return {
        "case": spec.name, "description": spec.description, "formula": spec.formula,
        "priors": spec.prior_table(), "settings": result.settings,
        "exact": {"method": result.exact.kind, "parameters": exact_params,
                  "log_evidence": log_ev},
        "backends": backends, "comparisons": result.checks,
        "tolerance": {"z_max": Z_MAX, "rule": "|z| < z_max, z = (estimate - exact) / MCSE"},
        "verdict": result.verdict, "provenance": provenance(result),
    }


def _exact(m, q):
    from comparisons.agreement import exact_value

    return exact_value(m, q)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def density_plot(result: CaseResult) -> str:
    """Marginal posterior densities of every parameter, each backend over the exact density."""
    import matplotlib.pyplot as plt
    from scipy import stats

    names = result.spec.parameters
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, n in zip(axes[0], names, strict=True):
        m = result.exact.marginal(n)
        lo, hi = m.ppf(0.001), m.ppf(0.999)
        grid = np.linspace(lo, hi, 300)
        for b, dt in result.posteriors.items():
            x = np.asarray(dt["posterior"][n].values).ravel()
            ax.plot(grid, stats.gaussian_kde(x)(grid), color=COLORS.get(b), lw=1.6, label=b)
        ax.plot(grid, m.pdf(grid), color="black", ls="--", lw=1.2, label="exact")
        ax.set_title(n)
        ax.set_yticks([])
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle("Marginal posterior densities (dashed: exact)", y=1.02)
    return _png(fig)


def z_plot(result: CaseResult) -> str:
    """Every check's z-score with the agreement band."""
    import matplotlib.pyplot as plt

    rows = result.checks
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(rows) + 1))
    ys = np.arange(len(rows))
    zs = [r["z"] for r in rows]
    cols = [COLORS.get(r["backend"]) for r in rows]
    ax.axvspan(-Z_MAX, Z_MAX, color="#e8f3e8")
    ax.scatter(zs, ys, c=cols, s=14)
    ax.set_yticks(ys, [f'{r["backend"]}: {r["parameter"]} {r["quantity"]}' for r in rows],
                  fontsize=7)
    ax.set_xlabel("z = (estimate - exact) / MCSE")
    ax.invert_yaxis()
    return _png(fig)


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


def case_html(result: CaseResult, summ: dict) -> str:
    from models.bambi_model import bambi_code
    from models.pymc_model import pymc_code

    spec = result.spec
    e = html.escape
    rows = "".join(
        f"<tr><td style='text-align:left'>{e(c['backend'])}</td><td style='text-align:left'>"
        f"{e(c['parameter'])}</td><td>{c['quantity']}</td><td>{c['estimate']:.4f}</td>"
        f"<td>{c['target']:.4f}</td><td>{c['mcse']:.4f}</td><td>{c['z']:+.2f}</td>"
        f"<td>{_badge(c['verdict'])}</td></tr>" for c in result.checks)
    priors = "".join(f"<tr><td style='text-align:left'>{e(k)}</td><td style='text-align:left'>"
                     f"{e(v)}</td></tr>" for k, v in spec.prior_table().items())
    ev = summ["exact"]["log_evidence"]
    ev_txt = f"{ev:.4f}" if ev is not None else "undefined (improper prior)"
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.wall_times.items())
    return _page(spec.name, f"""
<p><a href="../index.html">&larr; all cases</a></p>
<h1>{e(spec.name)} {_badge(result.verdict)}</h1>
<p>{e(spec.description)}</p>
<p>Formula <code>{e(spec.formula)}</code>; settings {e(json.dumps(result.settings))};
wall times {e(times)}.</p>
<h2>Priors</h2><table><tr><th>parameter</th><th>prior</th></tr>{priors}</table>
<h2>Exact answer</h2><p>{e(result.exact.kind)}; log evidence {ev_txt}.</p>
<h2>Marginal densities</h2><img alt="densities" src="data:image/png;base64,{density_plot(result)}">
<h2>Verdicts</h2>
<p>A check agrees when |z| &lt; {Z_MAX:g}, z = (estimate &minus; exact) / MCSE (arviz).</p>
<img alt="z-scores" src="data:image/png;base64,{z_plot(result)}">
<table><tr><th>backend</th><th>parameter</th><th>quantity</th><th>estimate</th><th>exact</th>
<th>MCSE</th><th>z</th><th>verdict</th></tr>{rows}</table>
<h2>The model in PyMC</h2><pre>{e(pymc_code(spec))}</pre>
<h2>The model in Bambi</h2><pre>{e(bambi_code(spec))}</pre>
<h2>Provenance</h2><pre>{e(json.dumps(summ['provenance'], indent=1))}</pre>
""")


def write_case(result: CaseResult, out: Path) -> dict:
    """Write ``out/<case>/summary.json`` and ``out/<case>/report.html``; return the summary."""
    summ = summary(result)
    folder = Path(out) / result.spec.name
    atomic_write(folder / "summary.json", json.dumps(summ, indent=1, default=_json_default))
    atomic_write(folder / "report.html", case_html(result, summ))
    return summ


def write_index(summaries: list[dict], out: Path) -> Path:
    e = html.escape
    rows = "".join(
        f"<tr><td style='text-align:left'><a href='{e(s['case'])}/report.html'>{e(s['case'])}</a>"
        f"</td><td style='text-align:left'>{e(s['formula'])}</td><td>{_badge(s['verdict'])}</td>"
        f"<td>{len(s['comparisons'])}</td><td>{max(abs(c['z']) for c in s['comparisons']):.2f}"
        f"</td></tr>" for s in summaries)
    body = (f"<h1>bayes-crosscheck report</h1><table><tr><th>case</th><th>formula</th>"
            f"<th>verdict</th><th>checks</th><th>max |z|</th></tr>{rows}</table>")
    path = Path(out) / "index.html"
    atomic_write(path, _page("bayes-crosscheck report", body))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
