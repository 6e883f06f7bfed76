"""The verdict rule: Holm's procedure, the equivalence margin and diagnostics."""

import numpy as np
import pytest
from scipy import stats

from comparisons.verdicts import ALPHA, decide, holm, overall


def test_holm_matches_its_definition():
    p = np.array([0.001, 0.04, 0.0025, 0.5, 0.004])
    # sorted: 0.001 <= .01/5, 0.0025 <= .01/4, 0.004 > .01/3 -> stop
    np.testing.assert_array_equal(holm(p, 0.01), [True, False, True, False, False])
    assert not holm(np.full(10, 0.002), 0.01).any()  # 0.002 > 0.01/10
    assert holm([1e-9], 0.01).all()


def test_holm_controls_the_family_wise_rate():
    """Under the null the chance of any rejection is at most alpha (simulated, 20000 families)."""
    rng = np.random.default_rng(20261121)
    fams = rng.uniform(size=(20000, 50))
    rate = np.mean([holm(p, ALPHA).any() for p in fams])
    # binomial upper bound at false-alarm budget 1e-4 for a true rate of at most 1%
    assert rate <= stats.binom.ppf(1 - 1e-4, 20000, ALPHA) / 20000


def _check(z, diff=1.0, scale=1.0, backend="a", other="exact", quantity="mean"):
    return {"backend": backend, "other": other, "parameter": "x", "quantity": quantity,
            "estimate": diff, "target": 0.0, "z": z, "scale": scale}


def test_large_z_beyond_the_margin_disagrees():
    checks = decide([_check(8.0, diff=0.2), _check(0.5, diff=0.01)], {})
    assert [c["verdict"] for c in checks] == ["disagree", "agree"]
    assert overall(checks) == "disagree"


def test_a_significant_difference_inside_the_margin_agrees():
    """A long run's tiny MCSE must not flag a difference of 0.01 posterior sd."""
    checks = decide([_check(30.0, diff=0.01, scale=1.0)], {})
    assert checks[0]["verdict"] == "agree"


def test_poor_diagnostics_make_a_check_inconclusive():
    diag = {"a": {"divergences": 0, "parameters": {"x": {"r_hat": 1.05, "ess_bulk": 3000}}}}
    checks = decide([_check(0.1, diff=0.0)], diag)
    assert checks[0]["verdict"] == "inconclusive" and "R-hat 1.050" in checks[0]["reason"]
    diag = {"a": {"divergences": 3, "parameters": {}}}
    assert decide([_check(0.1)], diag)[0]["reason"] == "a: 3 divergent transitions"
    diag = {"a": {"divergences": 0, "parameters": {"x": {"r_hat": 1.0, "ess_bulk": 120}}}}
    assert "bulk ESS 120 < 400" in decide([_check(0.1)], diag)[0]["reason"]
    assert overall(decide([_check(0.1)], diag)) == "inconclusive"


def test_nan_z_is_never_agreement():
    assert decide([_check(float("nan"), diff=5.0)], {})[0]["verdict"] == "disagree"


def test_overall_without_checks_is_inconclusive():
    assert overall([]) == "inconclusive"


@pytest.mark.parametrize("bias_sd, expect", [(0.0, "agree"), (0.5, "disagree")])
def test_rule_on_draws(bias_sd, expect):
    """End to end on iid draws: a half-sd bias in the mean is caught, no bias is not."""
    from comparisons.agreement import check_against_exact

    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 1000)) + bias_sd
    rows = [{"backend": "a", "other": "exact", **c.as_dict(), "scale": 1.0}
            for c in check_against_exact("x", x, stats.norm(0, 1))]
    assert overall(decide(rows, {})) == expect


def test_a_report_shares_its_budget_among_its_cases(monkeypatch, tmp_path):
    """The report's 1% is split over its K cases (each ALPHA / K), so a z that one case alone
    would flag (3.9 among 40 checks: Holm's first threshold 3.66) is not flagged in an
    11-case report (threshold about 4.3)."""
    from comparisons import api
    from comparisons.cli import main

    assert api.case_alpha(1) == ALPHA and api.case_alpha(11) == pytest.approx(ALPHA / 11)
    checks = [_check(3.9)] + [_check(0.0) for _ in range(39)]
    assert overall(decide([dict(c) for c in checks], {}, alpha=api.case_alpha(1))) == "disagree"
    assert overall(decide([dict(c) for c in checks], {}, alpha=api.case_alpha(11))) == "agree"

    seen = []

    def fake_run(case, *, alpha, **kwargs):
        seen.append(alpha)
        return {"case": case, "verdict": "agree", "comparisons": [], "formula": "",
                "rule": {"alpha": alpha}}

    monkeypatch.setattr(api, "run", fake_run)
    monkeypatch.setattr(api, "bayes_factor_rows", lambda **kw: [])
    assert main(["report", "--out", str(tmp_path), "--serial"]) == 0
    from comparisons.cases import CASES

    assert seen == [pytest.approx(ALPHA / len(CASES))] * len(CASES)
    assert "shared by its" in (tmp_path / "index.html").read_text()
    seen.clear()
    main(["run", "three-point", "--out", str(tmp_path)])
    assert seen == [ALPHA]


def test_nan_draws_are_a_disagreement_not_agreement():
    """Draws that turned NaN half-way through one chain: every check of that parameter disagrees
    (the margin test ``nan > limit`` used to let them through as agreement)."""
    from comparisons.agreement import check_against_exact

    x = np.random.default_rng(20261121).standard_normal((4, 1000))
    x[2, 500:] = np.nan
    checks = [{"backend": "a", "other": "exact", "scale": 1.0, **c.as_dict()}
              for c in check_against_exact("x", x, stats.norm())]
    verdicts = {c["verdict"] for c in decide(checks, {})}
    assert verdicts == {"disagree"}


def _diag(**params):
    return {"divergences": 0, "parameters": {
        k: {"r_hat": v[0], "ess_bulk": v[1]} for k, v in params.items()}}


def test_a_correlation_is_gated_by_both_of_its_parameters():
    """corr(a, b) uses the draws of a and b: a low ESS in either makes it inconclusive (the
    gate used to look rows up by their label, which no parameter has)."""
    row = {**_check(8.0, diff=0.3, quantity="corr"), "parameter": "corr(a, b)", "uses": ["a", "b"]}
    diag = {"a": _diag(a=(1.0, 3000.0), b=(1.0, 31.0))}
    checked = decide([dict(row)], diag)[0]
    assert checked["verdict"] == "inconclusive"
    assert checked["reason"] == "a: bulk ESS 31 < 400 (b)"
    assert decide([dict(row)], {"a": _diag(a=(1.0, 3000.0), b=(1.0, 3000.0))})[0]["verdict"] \
        == "disagree"


def test_the_reason_names_every_failing_diagnostic_with_its_value():
    diag = {"a": _diag(x=(1.59, 7.0))}
    reason = decide([_check(0.1)], diag)[0]["reason"]
    assert reason == "a: R-hat 1.590 > 1.01 (x), bulk ESS 7 < 400 (x)"


def test_evidence_from_poorly_mixed_draws_is_inconclusive():
    """Bridge sampling on a stuck chain's draws is not judged; SMC (its own particles) is."""
    from comparisons.evidence import evidence_checks

    rows = [{"method": "exact", "backend": "reference", "log_evidence": -5.0, "se": 0.0,
             "note": ""},
            {"method": "bridge-warp3", "backend": "a", "log_evidence": -9.0, "se": 0.01,
             "note": ""},
            {"method": "smc", "backend": "a", "log_evidence": -9.0, "se": 0.01, "note": ""}]
    diag = {"a": _diag(x=(1.59, 7.0))}
    out = {c["method"]: c for c in evidence_checks(rows, diag)}
    assert out["bridge-warp3"]["verdict"] == "inconclusive"
    assert "R-hat 1.590" in out["bridge-warp3"]["reason"]
    assert out["smc"]["verdict"] == "disagree"
    assert {c["verdict"] for c in evidence_checks(rows, {"a": _diag(x=(1.0, 4000.0))})} == \
        {"disagree"}


def test_the_stated_smallest_detectable_shift_is_detected_95_percent_of_the_time():
    """detectable() promises that a shift of its mean_shift_sd is caught with probability 0.95:
    iid N(0, 1) draws (ESS about 4000) shifted by it are flagged in at least the binomial 99.9%
    lower bound of 200 runs at 0.95; shifted by half of it, in well under half of the runs."""
    from comparisons.agreement import check_against_exact
    from comparisons.verdicts import detectable

    rng = np.random.default_rng(20261203)

    def rate(delta, runs=200):
        hits = 0
        for _ in range(runs):
            x = rng.standard_normal((4, 1000)) + delta
            rows = [{"backend": "a", "other": "exact", **c.as_dict(), "scale": 1.0}
                    for c in check_against_exact("x", x, stats.norm())]
            hits += overall(decide(rows, {})) == "disagree"
        return hits / runs

    diag = {"a": _diag(x=(1.0, 4000.0))}
    delta = detectable(diag, n_checks=4)["backends"]["a"]["mean_shift_sd"]
    assert 0.05 < delta < 0.1
    assert rate(delta) >= stats.binom.ppf(0.001, 200, 0.95) / 200
    assert rate(delta / 2) < 0.5
