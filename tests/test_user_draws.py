"""Can a sampler author trust the verdict? Draws the suite did not produce, checked by
``crosscheck compare``: a hand-written random-walk Metropolis sampler, run short, stuck, long and
broken, on the derivation seed's three-point example (exact posterior known).

Each defect of issue 10 has a test here that failed on the code before the fix:

* a correlation check on draws with a bulk ESS of about 30 was judged (``disagree``, z = +4.3)
  instead of gated;
* with one stuck chain the "correlation" was a cross-moment standardized by the exact sds (-61.6)
  judged "agree", and the bridge-sampling evidence of the same draws was judged too;
* the command line printed z without estimate or target, so a quantile's z on the probability
  scale read as if it were in parameter units.
"""

import numpy as np
import pandas as pd
import pytest

from comparisons.cases import get_case
from comparisons.cli import EXIT_AGREE, EXIT_DISAGREE, EXIT_INCONCLUSIVE, main
from models.reference_model import exact_answer

CASE = "three-point"
SEED = 20261203


def hand_written_rwm(rng, n_draws: int, chains: int = 4, step: float = 0.9, *,
                     with_prior: bool = True, stuck_chain: int | None = None) -> pd.DataFrame:
    """Random-walk Metropolis on (Intercept, x) for y ~ N(X b, 1), b ~ N(0, I), written the way
    a user would write it (not the suite's sampler). ``with_prior=False`` is a bug: the prior is
    left out of the log density. ``stuck_chain`` never moves from a far-away start."""
    spec = get_case(CASE)
    X, y = spec.design().X, spec.design().y

    def logp(b):  # (chains, 2)
        r = y[None, :] - b @ X.T
        return -0.5 * np.sum(r * r, axis=1) - (0.5 * np.sum(b * b, axis=1) if with_prior else 0)

    b = rng.normal(size=(chains, 2))
    if stuck_chain is not None:
        b[stuck_chain] = [4.0, -3.0]
    lp = logp(b)
    out = np.empty((chains, n_draws, 2))
    for t in range(-500, n_draws):  # 500 warmup steps
        prop = b + step * rng.normal(size=b.shape)
        lp_prop = logp(prop)
        accept = np.log(rng.uniform(size=chains)) < lp_prop - lp
        if stuck_chain is not None:
            accept[stuck_chain] = False
        b = np.where(accept[:, None], prop, b)
        lp = np.where(accept, lp_prop, lp)
        if t >= 0:
            out[:, t] = b
    return pd.DataFrame({"chain": np.repeat(np.arange(chains), n_draws),
                         "draw": np.tile(np.arange(n_draws), chains),
                         "Intercept": out[..., 0].ravel(), "x": out[..., 1].ravel()})


def _compare(df, tmp_path, capsys, name="draws.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    code = main(["compare", str(path), "--case", CASE, "--backends", "reference", "--out",
                 str(out), "--no-cache", "--json"])
    captured = capsys.readouterr()
    import json

    return code, json.loads(captured.out), captured.err


def _user_rows(summ):
    return [c for c in summ["comparisons"] if "user" in (c["backend"], c.get("other"))]


def test_short_correct_draws_are_inconclusive_correlations_included(tmp_path, capsys):
    """100 draws per chain (bulk ESS well below 400): every check, the correlation too, is
    inconclusive; none may disagree, and the verdict line names the ESS."""
    df = hand_written_rwm(np.random.default_rng(SEED), 100)
    code, summ, err = _compare(df, tmp_path, capsys)
    rows = _user_rows(summ)
    corr = [c for c in rows if c["quantity"] == "corr"]
    assert corr and all(c["verdict"] == "inconclusive" for c in corr), corr
    assert {c["verdict"] for c in rows} == {"inconclusive"}
    assert code == EXIT_INCONCLUSIVE
    line = next(ln for ln in err.splitlines() if ln.startswith("your draws:"))
    ess = min(p["ess_bulk"] for p in summ["backends"]["user"]["parameters"].values())
    assert line.startswith("your draws: inconclusive (user: ")
    assert f"bulk ESS {ess:.0f} < 400" in line, line


def test_a_stuck_chain_gives_a_real_correlation_and_gates_every_check(tmp_path, capsys):
    """One of four chains never moves: the correlation is the sample correlation of the pooled
    draws (within [-1, 1]), and every check of the user's draws, evidence included, is
    inconclusive with R-hat named; the command line shows both."""
    df = hand_written_rwm(np.random.default_rng(SEED), 1000, stuck_chain=3)
    code, summ, err = _compare(df, tmp_path, capsys)
    rows = _user_rows(summ)
    corr = next(c for c in rows if c["quantity"] == "corr")
    assert corr["estimate"] == pytest.approx(np.corrcoef(df["Intercept"], df["x"])[0, 1])
    assert -1 <= corr["estimate"] <= 1
    assert {c["verdict"] for c in rows} == {"inconclusive"}
    assert all("R-hat" in c["reason"] for c in rows)
    ev = [c for c in summ["evidence"]["checks"] if c["backend"] == "user"]
    assert ev and {c["verdict"] for c in ev} == {"inconclusive"}
    assert all("R-hat" in c["reason"] for c in ev)
    assert code == EXIT_INCONCLUSIVE
    rhat = summ["backends"]["user"]["parameters"]["Intercept"]["r_hat"]
    assert f"R-hat {rhat:.3f} > 1.01" in err
    assert "evidence bridge-warp3 (user): inconclusive" in err
    # the page: inconclusive styled and explained at the top, the model near the top, and no
    # link to an index that compare never writes
    page = (tmp_path / "out" / f"{CASE}-user-draws" / "report.html").read_text()
    assert ".inconclusive{" in page and 'class="box inconclusive-box"' in page
    top = page.index('class="box inconclusive-box"')
    assert top < page.index("<h2>The model, three ways") < page.index("<h2>Verdicts")
    assert "is not agreement" in page[top:top + 2000] and "R-hat" in page[top:top + 2000]
    assert "all cases" not in page and "../index.html" not in page


def test_long_correct_draws_agree_and_the_broken_sampler_disagrees(tmp_path, capsys):
    """The same sampler run long agrees; with the prior left out it disagrees, and the command
    line prints the failing rows with estimate, target, difference in sd and z, the z scale said
    once, and where the page is."""
    good = hand_written_rwm(np.random.default_rng(SEED), 5000)
    code, summ, err = _compare(good, tmp_path, capsys)
    assert code == EXIT_AGREE, err
    assert summ["backends"]["user"]["parameters"]["x"]["ess_bulk"] >= 400
    bad = hand_written_rwm(np.random.default_rng(SEED + 1), 5000, with_prior=False)
    code, summ, err = _compare(bad, tmp_path, capsys, "bad.csv")
    assert code == EXIT_DISAGREE
    assert err.startswith("your draws: disagree") or "\nyour draws: disagree" in err
    from comparisons.report import worst_rows

    worst = worst_rows(_user_rows(summ), 1)[0]
    line = next(ln for ln in err.splitlines() if ln.strip().startswith(
        f"{worst['parameter']} {worst['quantity']} ({worst['backend']} vs {worst['other']})"))
    assert f"estimate {worst['estimate']:.4g}, target {worst['target']:.4g}" in line
    assert f"difference {worst['diff_sd']:+.2f}" in line and f"z = {worst['z']:+.1f}" in line
    assert line.endswith("-> disagree")
    assert err.count("q05 and q95 are compared on the probability scale") == 1
    assert "wrote " in err and "three-point-user-draws/report.html" in err
    assert "Smallest detectable difference: a shift of" in err


def test_a_quantile_z_is_printed_with_its_target_and_scale(tmp_path, capsys):
    """A quantile's z lives on the probability scale; the row says so and shows estimate, target
    and the difference in posterior sds, so a large z on a small difference reads correctly."""
    ex = exact_answer(get_case(CASE))
    rng = np.random.default_rng(SEED)
    b = ex.post.sample(rng, 4000)
    sd = ex.marginal("Intercept").std()
    df = pd.DataFrame({"chain": np.repeat(np.arange(4), 1000),
                       "Intercept": b[:, 0] + 0.4 * sd, "x": b[:, 1]})
    code, summ, err = _compare(df, tmp_path, capsys)
    q05 = next(c for c in _user_rows(summ) if (c["parameter"], c["quantity"], c["other"])
               == ("Intercept", "q05", "exact"))
    assert q05["z_scale"] == "probability"
    assert q05["diff_sd"] == pytest.approx((q05["estimate"] - q05["target"]) / sd)
    line = next(ln for ln in err.splitlines() if "Intercept q05 (user vs exact)" in ln)
    assert f"target {q05['target']:.4g}" in line and "(probability scale)" in line
    assert f"difference {q05['diff_sd']:+.2f} sd" in line
    assert code == EXIT_DISAGREE


def test_user_posterior_is_written_as_netcdf(tmp_path, capsys):
    from comparisons import posteriors

    df = hand_written_rwm(np.random.default_rng(SEED), 300)
    _compare(df, tmp_path, capsys)
    fits = posteriors.load(tmp_path / "out" / f"{CASE}-user-draws")
    assert set(fits) == {"user", "reference"}
    np.testing.assert_allclose(fits["user"]["posterior"]["x"].values.ravel(), df["x"])
