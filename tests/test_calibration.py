"""Is the harness's verdict calibrated? False alarms, detection of injected bugs, power.

The fast tests run a few seeds of each scenario in ``make test``; the study behind
``make validate`` (marked slow) runs 50 seeds of each, measures the power curve and writes
``reports/validation/`` (calibration.json, index.html and figures).
"""

import json
from pathlib import Path

import calibration as C
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
#: design false-alarm rate of one case-run (Holm at 1% per case; see comparisons.verdicts)
ALPHA_RUN = 0.01


def test_correct_samplers_agree_fast():
    """10 runs of correct samplers; the rule allows 1% per run, so >= 2 alarms has P < 0.5%."""
    alarms = sum(C.verdicts(name, 2)["not_agree"] for name in C.CORRECT)
    assert alarms <= stats.binom.ppf(1 - 0.005, 10, ALPHA_RUN)


@pytest.mark.parametrize("bug", list(C.BUGS))
def test_injected_bug_is_detected_fast(bug):
    """Two runs per bug; at a true detection rate of 95% missing both has probability 0.25%."""
    assert C.verdicts(bug, 2)["not_agree"] >= 1


def test_power_extremes_fast():
    rates = C.power_curve([0.0, 0.5], 3)
    assert rates[0.5] == 1.0 and rates[0.0] <= 1 / 3


# ---------------------------------------------------------------------------------------------
# the full study (make validate)
# ---------------------------------------------------------------------------------------------
RUNS = 50             # per injected bug
RUNS_CORRECT = 200    # per correct scenario: 1000 runs for the false-alarm rate
DELTAS = [0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3]


@pytest.mark.slow
def test_calibration_study():
    """The full study; its runs are Dask tasks on a local cluster (CROSSCHECK_SCHEDULER names
    another), with the same counts as a serial run."""
    import os

    from comparisons.parallel import Runner

    out = ROOT / "reports" / "validation"
    with Runner(os.environ.get("CROSSCHECK_SCHEDULER")) as runner:
        correct = {name: C.verdicts(name, RUNS_CORRECT, map=runner.map) for name in C.CORRECT}
        bugs = {name: C.verdicts(name, RUNS, map=runner.map) for name in C.BUGS}
        power_mean = C.power_curve(DELTAS, 100, "mean", map=runner.map)
        power_sd = C.power_curve(DELTAS, 100, "sd", map=runner.map)
    total = sum(v["runs"] for v in correct.values())
    alarms = sum(v["not_agree"] for v in correct.values())
    smallest = {k: next((d for d in DELTAS if r[d] >= 0.95), None)
                for k, r in [("mean", power_mean), ("sd", power_sd)]}
    result = {
        "false_alarms": {"runs": total, "alarms": alarms, "rate": alarms / total,
                         "budget": ALPHA_RUN, "by_scenario": correct},
        "detection": {k: {**v, "rate": v["not_agree"] / v["runs"]} for k, v in bugs.items()},
        "power": {"mean_shift_sd": power_mean, "sd_stretch": power_sd,
                  "smallest_detected_95": smallest, "runs_per_delta": 100,
                  "case": "tutorial, Gibbs, 4 chains x 1000 draws"},
    }
    from comparisons.report import atomic_write

    atomic_write(out / "calibration.json", json.dumps(result, indent=1, default=str))
    _write_page(result, out)
    # false alarms within budget: at most the 99.9% binomial quantile at the design rate
    assert alarms <= stats.binom.ppf(0.999, total, ALPHA_RUN), result["false_alarms"]
    for name, v in result["detection"].items():
        assert v["rate"] >= 0.95, (name, v)


def _write_page(result: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    from comparisons.plots import png_base64 as _png
    from comparisons.report import _badge, _page, atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in [("mean_shift_sd", "bias in the mean"), ("sd_stretch", "bias in the sd")]:
        r = result["power"][key]
        ax.plot([float(d) for d in r], list(r.values()), marker="o", label=label)
    ax.axhline(0.95, ls="--", color="grey")
    ax.set_xlabel("bias (posterior sds; relative for the sd)")
    ax.set_ylabel("detection rate")
    ax.legend(frameon=False)
    power_png = _png(fig)
    fa = result["false_alarms"]
    rows = "".join(f"<tr><td style='text-align:left'>{k}</td><td>{v['runs']}</td>"
                   f"<td>{v['not_agree']}</td><td>{v['seconds']}</td></tr>"
                   for k, v in fa["by_scenario"].items())
    bug_rows = "".join(
        f"<tr><td style='text-align:left'>{k}</td><td>{v['runs']}</td><td>{v['disagree']}</td>"
        f"<td>{v['inconclusive']}</td><td>{v['rate']:.0%}</td>"
        f"<td>{_badge('agree' if v['rate'] >= 0.95 else 'disagree')}</td></tr>"
        for k, v in result["detection"].items())
    body = f"""<h1>Calibration of the verdict rule</h1>
<h2>False alarms</h2><p>{fa['alarms']} of {fa['runs']} runs of correct samplers were not judged
"agree": rate {fa['rate']:.2%} against a design budget of {fa['budget']:.0%} per case.</p>
<table><tr><th>scenario</th><th>runs</th><th>not agree</th><th>seconds</th></tr>{rows}</table>
<h2>Injected bugs</h2><table><tr><th>bug</th><th>runs</th><th>disagree</th><th>inconclusive</th>
<th>detected</th><th>&ge; 95%</th></tr>{bug_rows}</table>
<h2>Power</h2><p>Smallest bias detected in at least 95% of runs:
{json.dumps(result['power']['smallest_detected_95'])} (posterior sds) at default draws
({result['power']['case']}).</p><img alt="power" src="data:image/png;base64,{power_png}">"""
    atomic_write(out / "index.html", _page("calibration", body))


def test_calibration_runs_on_dask_give_the_serial_counts():
    """The study's runs as Dask tasks on a local cluster: the same verdicts as one after
    another (each run's seed is fixed by its index)."""
    from comparisons.parallel import Runner

    name = "Gibbs, HalfCauchy mixture (tutorial)"
    serial = C.verdicts(name, 4)
    with Runner(workers=2) as runner:
        parallel = C.verdicts(name, 4, map=runner.map)
        bug = C.verdicts("prior mean +0.5 sd", 2, map=runner.map)
    drop = ("seconds",)
    assert {k: v for k, v in parallel.items() if k not in drop} == \
        {k: v for k, v in serial.items() if k not in drop}
    assert bug["not_agree"] >= 1


def test_validation_page_is_written_from_a_result(tmp_path):
    """The page of the slow study, from its recorded JSON (so a refactor of the report helpers
    cannot break ``make validate`` after a quarter of an hour of work)."""
    result = json.loads((ROOT / "docs" / "validation" / "calibration.json").read_text())
    _write_page(result, tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "data:image/png;base64," in page and "false" in page.lower()
