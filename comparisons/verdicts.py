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
3. **Diagnostics.** A check is *inconclusive* when any draws it uses come from a run with
   divergent transitions, or from a parameter with :math:`\hat R > 1.01` or bulk ESS below
   400 (both parameters of a correlation; every parameter for an evidence estimate from the
   draws): a poorly mixed run never counts as agreement (Vehtari et al. 2021 for the
   thresholds). The reason names the diagnostic, its value and the parameter. A NaN or
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


def _healthy(diag: dict | None, labels=None) -> tuple[bool, str]:
    """Whether the draws of ``labels`` (every parameter when None) mixed well; else the reason,
    naming the diagnostic, its value and the parameter (the worst one when several fail)."""
    if diag is None:
        return True, ""
    if diag["divergences"] > 0:
        return False, f"{diag['divergences']} divergent transitions"
    params = diag["parameters"]
    rows = [(k, params[k]) for k in (params if labels is None else labels) if k in params]
    reasons = []
    rhat = [(d["r_hat"], k) for k, d in rows if np.isfinite(d["r_hat"]) and d["r_hat"] > RHAT_MAX]
    if rhat:
        value, name = max(rhat)
        reasons.append(f"R-hat {value:.3f} > {RHAT_MAX} ({name})")
    # NaN too: an ESS that cannot be computed is not enough
    low = [(d["ess_bulk"] if np.isfinite(d["ess_bulk"]) else -1.0, k) for k, d in rows
           if not d["ess_bulk"] >= ESS_MIN]
    if low:
        value, name = min(low)
        shown = "NaN" if value < 0 else f"{value:.0f}"
        reasons.append(f"bulk ESS {shown} < {ESS_MIN} ({name})")
    return not reasons, ", ".join(reasons)


def gate(row: dict, diags: dict) -> str:
    """The reason ``row`` cannot be judged from its draws ("" when it can): the diagnostics of
    its ``backend`` and ``other`` over the parameters in ``row["uses"]`` (every parameter when
    that is None; ``[row["parameter"]]`` when absent)."""
    labels = row["uses"] if "uses" in row else [row["parameter"]]
    reasons = []
    for b in (row["backend"], row.get("other")):
        ok, why = _healthy(diags.get(b), labels)
        if not ok:
            reasons.append(f"{b}: {why}")
    return "; ".join(reasons)


def decide(checks: list[dict], diags: dict, alpha: float = ALPHA, margin: float = MARGIN) -> list:
    """Fill ``p_value``, ``tolerance``, ``margin`` and ``verdict`` into every check (in place).

    ``checks`` rows carry ``backend`` (and ``other``, another backend or "exact"),
    ``parameter``, ``quantity``, ``estimate``, ``target``, ``z``, ``scale`` (the posterior sd
    the margin is relative to) and ``uses`` (the parameters whose draws the check uses; a
    correlation uses two). ``diags`` maps backend -> :func:`diagnostics` output.
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
        reason = gate(c, diags)
        finite = np.isfinite(c["estimate"]) and np.isfinite(c["target"])
        if not finite:  # NaN or infinite draws (or target) are a failure, never agreement
            c["verdict"], c["reason"] = "disagree", "non-finite estimate or target"
        elif reason:
            c["verdict"], c["reason"] = "inconclusive", reason
        elif rej and abs(c["estimate"] - c["target"]) > limit:
            c["verdict"], c["reason"] = "disagree", ""
        else:
            c["verdict"], c["reason"] = "agree", ""
    return checks


#: the detection probability the smallest detectable difference is quoted at
POWER = 0.95


def detectable(diags: dict, n_checks: int, alpha: float = ALPHA, margin: float = MARGIN,
               power: float = POWER) -> dict:
    r"""The smallest shift of a posterior mean each backend's run can detect, in posterior sds.

    A lone deviating check must pass Holm's first threshold :math:`z^* =
    \Phi^{-1}(1 - \alpha / 2m)` over the case's :math:`m` checks and the margin. The mean's MCSE
    is :math:`\mathrm{sd}/\sqrt{\mathrm{ESS}}`, so against an exact answer a shift of

    .. math::

        \delta = \max\Big(\varepsilon, \frac{z^* + \Phi^{-1}(\text{power})}
        {\sqrt{\mathrm{ESS}_{\min}}}\Big)

    posterior sds is detected with probability ``power`` (95%), with
    :math:`\mathrm{ESS}_{\min}` the smallest bulk ESS of the backend's parameters. (The
    calibration study measured 0.08 sd for Gibbs on the tutorial case, where this gives 0.08.)
    """
    z_star = float(stats.norm.isf(alpha / (2 * max(int(n_checks), 1))))
    z_power = float(stats.norm.ppf(power))
    out = {"z_threshold": z_star, "power": power, "margin_sd": margin, "backends": {}}
    for b, diag in diags.items():
        params = diag["parameters"]
        ess = {k: d["ess_bulk"] for k, d in params.items()}
        name = min(ess, key=lambda k: ess[k] if np.isfinite(ess[k]) else -1.0) if ess else None
        e = ess.get(name, float("nan"))
        shift = max(margin, (z_star + z_power) / np.sqrt(e)) if e and e > 0 else float("inf")
        out["backends"][b] = {"ess_bulk_min": float(e), "parameter": name,
                              "mean_shift_sd": float(shift)}
    return out


def explain(checks: list[dict], diags: dict | None = None, limit: int = 3) -> str:
    """Why a case is not "agree", in a few words: the number of disagreements, else what made
    its checks inconclusive (diagnostic, value, parameter). With ``diags`` the worst
    diagnostics of each backend involved are named once; else the most frequent reasons."""
    from collections import Counter

    bad = [c for c in checks if c["verdict"] == "disagree"]
    if bad:
        return f"{len(bad)} check(s) disagree"
    unsure = [c for c in checks if c["verdict"] == "inconclusive"]
    if not unsure:
        return ""
    if diags:
        involved = dict.fromkeys(b for c in unsure for b in (c["backend"], c.get("other"))
                                 if b in diags)
        named = [f"{b}: {why}" for b in involved for ok, why in [_healthy(diags[b])] if not ok]
        if named:
            return "; ".join(named)
    reasons = Counter(c.get("reason", "") for c in unsure)
    shown = [r for r, _ in reasons.most_common(limit)]
    more = len(reasons) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def overall(checks: list[dict]) -> str:
    """disagree if any check disagrees, else inconclusive if any is, else agree."""
    verdicts = {c["verdict"] for c in checks}
    if "disagree" in verdicts:
        return "disagree"
    if "inconclusive" in verdicts or not checks:
        return "inconclusive"
    return "agree"
