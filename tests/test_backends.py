"""PyMC and Bambi against the closed forms, through the comparison harness.

Each built-in case is fitted once per session by every backend (4 chains x 1000 draws). The
verdict threshold is |z| < 4 in MCSE units (false-alarm budget in comparisons.harness).
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from comparisons.cases import CASES as ALL_CASES
from comparisons.cases import get_case
from comparisons.cli import main
from comparisons.harness import Z_MAX, compare, run_case
from comparisons.report import write_case, write_index
from reference.priors import Normal

SEED = 20261121
CASES = ("three-point", "tutorial-nig")  # the conjugate cases with closed forms


@pytest.fixture(scope="session")
def results():
    return {name: run_case(get_case(name), seed=SEED) for name in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_pymc_and_bambi_agree_with_the_closed_form(results, case):
    r = results[case]
    spec = r.spec
    for backend in ("pymc", "bambi", "reference"):
        rows = [c for c in r.checks if c["backend"] == backend]
        # every parameter's mean, sd and 90% interval endpoints are checked
        for name in spec.parameters:
            qs = {c["quantity"] for c in rows if c["parameter"] == name}
            assert qs == {"mean", "sd", "q05", "q95"}, (backend, name, qs)
        bad = [c for c in rows if abs(c["z"]) >= Z_MAX]
        assert not bad, bad
    assert r.verdict == "agree"


def test_nig_case_reports_sigma_from_every_backend(results):
    r = results["tutorial-nig"]
    for dt in r.posteriors.values():
        assert set(dt["posterior"].data_vars) == {"Intercept", "x", "sigma"}


def test_a_prior_scale_changed_by_20_percent_is_reported_as_disagreement(results):
    """The comparison can fail: PyMC fitted with the slope's prior sd times 1.2 disagrees."""
    from models.pymc_model import fit_pymc

    spec = get_case("three-point")
    wrong = replace(spec, priors={**spec.priors, "x": Normal(0.0, 1.2)})
    dt = fit_pymc(wrong, seed=SEED)
    checks = compare(spec, {"pymc": dt}, results["three-point"].exact)
    flagged = {(c["parameter"], c["quantity"]) for c in checks if c["verdict"] == "disagree"}
    assert flagged, "a 20% prior-scale change went unnoticed"
    assert ("x", "mean") in flagged or ("x", "sd") in flagged


def test_reports_are_written(results, tmp_path):
    summaries = [write_case(r, tmp_path) for r in results.values()]
    index = write_index(summaries, tmp_path)
    assert "three-point/report.html" in index.read_text()
    s = json.loads((tmp_path / "tutorial-nig" / "summary.json").read_text())
    p = s["backends"]["pymc"]["parameters"]["sigma"]
    assert set(p) >= {"mean", "sd", "q05", "q95", "mcse_mean", "ess_bulk", "r_hat"}
    assert s["exact"]["log_evidence"] == pytest.approx(results["tutorial-nig"].exact.log_evidence())
    assert s["provenance"]["seed"] == SEED and s["provenance"]["packages"]["pymc"] == "6.4.0"
    assert s["verdict"] == "agree"
    page = (tmp_path / "three-point" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "pm.Model()" in page
    assert "bmb.Model(" in page
    md = (tmp_path / "three-point" / "report.md").read_text()
    assert md.startswith("# three-point: agree") and "| pymc | x |" in md
    assert "evidence curve" in page  # empirical Bayes curve of the known-noise case
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_known_answer_through_the_reference_backend(results):
    ex = results["three-point"].exact
    assert ex.marginal("Intercept").mean() == pytest.approx(0.8, abs=1e-4)
    assert ex.marginal("x").mean() == pytest.approx(1.2667, abs=1e-4)
    assert ex.log_evidence() == pytest.approx(-5.4775, abs=1e-4)


def test_models_are_explicit():
    from models.bambi_model import build_bambi_model
    from models.pymc_model import build_pymc_model

    spec = get_case("tutorial-nig")
    pm_model = build_pymc_model(spec)
    assert {v.name for v in pm_model.free_RVs} == {"sigma2", "Intercept", "x"}
    bmb_model = build_bambi_model(spec)
    bmb_model.build()
    assert {v.name for v in bmb_model.backend.model.free_RVs} == {"sigma2", "Intercept", "x"}
    # same log density at the same point: PyMC and Bambi are one model
    pt_pm = {"sigma2_log__": np.log(0.3), "Intercept": 0.9, "x": 2.1}
    lp_pm = pm_model.compile_logp()(pt_pm)
    lp_bmb = bmb_model.backend.model.compile_logp()(pt_pm)
    assert lp_pm == pytest.approx(lp_bmb, rel=1e-10)


def test_bambi_rejects_a_misspelled_prior():
    import bambi as bmb

    spec = get_case("three-point")
    with pytest.raises(Exception, match="(?i)unused|not used|slope"):
        bmb.config["UNUSED_PRIORS"] = "error"
        bmb.Model("y ~ x", spec.data, priors={"slope": bmb.Prior("Normal", mu=0, sigma=1)},
                  center_predictors=False, auto_scale=False)


def test_cli_rejects_an_unknown_case(tmp_path, capsys):
    assert main(["run", "no-such-case", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown case 'no-such-case'" in err and "three-point" in err


def test_cli_rejects_an_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "three-point", "--out", str(blocker / "sub")]) == 2
    assert "cannot write to output directory" in capsys.readouterr().err


def test_cli_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "three-point", "--draws", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer, received 0" in capsys.readouterr().err


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_printed_models_run_as_printed(case):
    """The PyMC and Bambi code on every report page runs in a fresh namespace, data loading
    included, and builds its model from the same arrays the suite fits."""
    from models.bambi_model import bambi_script
    from models.pymc_model import namespace, pymc_script

    spec = get_case(case)
    ns: dict = {}
    exec(compile(pymc_script(spec), "<printed pymc>", "exec"), ns)  # noqa: S102
    ref = namespace(spec)
    np.testing.assert_array_equal(ns["X"], ref["X"])
    np.testing.assert_array_equal(ns["y"], ref["y"])
    assert ns["coords"] == ref["coords"]
    for k in ref["codes"]:
        np.testing.assert_array_equal(ns["codes"][k], ref["codes"][k])
        np.testing.assert_array_equal(ns["Z"][k], ref["Z"][k])
    if ref["noise_sd"] is not None:
        np.testing.assert_array_equal(ns["noise_sd"], ref["noise_sd"])
    assert set(ns["model"].named_vars) >= set(spec.parameters)
    ns = {}
    exec(compile(bambi_script(spec), "<printed bambi>", "exec"), ns)  # noqa: S102
    assert ns["model"].formula is not None
