r"""Calibrated verdicts: agree, disagree or inconclusive, for every check of a case.

Each check compares one quantity (mean, sd, 5% or 95% quantile, a correlation) of one parameter
between a backend and the exact answer, or between two backends, as

.. math::

    z = \frac{\hat q_a - \hat q_b}{\sqrt{\mathrm{MCSE}_a^2 + \mathrm{MCSE}_b^2}}

(:math:`\mathrm{MCSE}_b = 0` for the exact answer), except that a quantile is compared on the
probability scale, where its null variance is known (:mod:`comparisons.agreement`). Three rules
turn the z-scores into verdicts:

1. **Family-wise false-alarm budget.** Two-sided p-values :math:`p = 2\Phi(-|z|)` go through
   Holm's step-down procedure (Holm 1979) at :math:`\alpha = 0.01` over all checks of the case,
   so a case of correct backends is flagged at most 1% of the time, whatever its size. A report
   of K cases gives each :math:`\alpha / K`, so the whole report keeps 1%.
2. **Equivalence margin.** A rejected check is a disagreement only if the difference also
   exceeds :math:`\varepsilon = 0.05` posterior standard deviations (0.05 in a correlation).
   Long runs have tiny MCSEs; without a margin they would flag differences of no practical size.
3. **Diagnostics.** A check involving a backend whose parameter has :math:`\hat R > 1.01`,
   bulk ESS below 400, or whose run had divergent transitions, is *inconclusive*: a poorly
   mixed run never counts as agreement (Vehtari et al. 2021 for the thresholds). A NaN or
   infinite estimate is a disagreement.

References
----------
Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian Journal
of Statistics* 6(2), 65-70.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 0.01
MARGIN = 0.05
RHAT_MAX = 1.01
ESS_MIN = 400


def holm(p_values, alpha: float = ALPHA) -> np.ndarray:
    """Holm's step-down rejections: sort p ascending, reject while p_(k) <= alpha / (m - k)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    reject = np.zeros(m, dtype=bool)
    for rank, idx in enumerate(np.argsort(p, kind="stable")):
        if p[idx] <= alpha / (m - rank):
            reject[idx] = True
        else:
            break
    return reject


def holm_thresholds(p_values, alpha: float = ALPHA) -> np.ndarray:
    """The |z| each check had to reach under Holm's procedure (for display)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    level = np.empty(m)
    for rank, idx in enumerate(np.argsort(p, kind="stable")):
        level[idx] = alpha / (m - rank)
    return stats.norm.isf(level / 2)


def diagnostics(dt, spec) -> dict:
    """Per scalar element: R-hat, bulk ESS; plus the run's divergence count."""
    import arviz_stats

    from comparisons.harness import scalar_elements

    out = {}
    for label, _, x in scalar_elements(spec, dt["posterior"]):
        x = np.asarray(x, dtype=float)
        rhat = float(arviz_stats.rhat(x)) if x.shape[0] > 1 else float("nan")
        out[label] = {"r_hat": rhat, "ess_bulk": float(arviz_stats.ess(x, method="bulk"))}
    div = 0
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"]:
        div = int(np.asarray(dt["sample_stats"]["diverging"].values).sum())
    return {"parameters": out, "divergences": div}


def _healthy(diag: dict | None, label: str) -> tuple[bool, str]:
    if diag is None:
        return True, ""
    if diag["divergences"] > 0:
        return False, f"{diag['divergences']} divergent transitions"
    d = diag["parameters"].get(label)
    if d is None:
        return True, ""
    if np.isfinite(d["r_hat"]) and d["r_hat"] > RHAT_MAX:
        return False, f"R-hat {d['r_hat']:.3f} > {RHAT_MAX}"
    if not d["ess_bulk"] >= ESS_MIN:  # NaN too: an ESS that cannot be computed is not enough
        return False, f"bulk ESS {d['ess_bulk']:.0f} < {ESS_MIN}"
    return True, ""


def decide(checks: list[dict], diags: dict, alpha: float = ALPHA, margin: float = MARGIN) -> list:
    """Fill ``p_value``, ``tolerance``, ``margin`` and ``verdict`` into every check (in place).

    ``checks`` rows carry ``backend`` (and ``other``, another backend or "exact"),
    ``parameter``, ``quantity``, ``estimate``, ``target``, ``z`` and ``scale`` (the posterior sd
    the margin is relative to). ``diags`` maps backend -> :func:`diagnostics` output.
    """
    if not checks:
        return checks
    z = np.array([c["z"] for c in checks], dtype=float)
    z = np.where(np.isfinite(z), z, np.inf)  # a NaN or infinite z is a failed check
    p = 2 * stats.norm.sf(np.abs(z))
    rejected = holm(p, alpha)
    thresholds = holm_thresholds(p, alpha)
    for c, pv, rej, t in zip(checks, p, rejected, thresholds, strict=True):
        c["p_value"] = float(pv)
        c["tolerance"] = float(t)
        limit = margin if c["quantity"] == "corr" else margin * c.get("scale", np.inf)
        c["margin"] = float(limit)
        reasons = []
        for b in (c["backend"], c.get("other")):
            ok, why = _healthy(diags.get(b), c["parameter"])
            if not ok:
                reasons.append(f"{b}: {why}")
        finite = np.isfinite(c["estimate"]) and np.isfinite(c["target"])
        if not finite:  # NaN or infinite draws (or target) are a failure, never agreement
            c["verdict"], c["reason"] = "disagree", "non-finite estimate or target"
        elif reasons:
            c["verdict"], c["reason"] = "inconclusive", "; ".join(reasons)
        elif rej and abs(c["estimate"] - c["target"]) > limit:
            c["verdict"], c["reason"] = "disagree", ""
        else:
            c["verdict"], c["reason"] = "agree", ""
    return checks


def overall(checks: list[dict]) -> str:
    """disagree if any check disagrees, else inconclusive if any is, else agree."""
    verdicts = {c["verdict"] for c in checks}
    if "disagree" in verdicts:
        return "disagree"
    if "inconclusive" in verdicts or not checks:
        return "inconclusive"
    return "agree"
