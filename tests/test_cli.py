"""The command line and API: compare a user's draws, exit codes, cache and atomic output."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from comparisons import api
from comparisons.cache import Cache, CorruptCacheEntry
from comparisons.cases import get_case
from comparisons.cli import main
from models.reference_model import exact_answer

CASE = "tutorial-nig"


@pytest.fixture(scope="module")
def exact_draws():
    """Independent exact posterior draws of the NIG case, as an outside sampler would write."""
    spec = get_case(CASE)
    ex = exact_answer(spec)
    b, s2 = ex.post.sample(np.random.default_rng(11), 4000)
    return pd.DataFrame({"chain": np.repeat(np.arange(4), 1000), "Intercept": b[:, 0],
                         "x": b[:, 1], "sigma": np.sqrt(s2)}), ex


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_compare_accepts_correct_draws_and_flags_biased_ones(exact_draws, tmp_path, capsys):
    df, ex = exact_draws
    good, biased = tmp_path / "good.csv", tmp_path / "biased.csv"
    df.to_csv(good, index=False)
    df.assign(x=df["x"] + 0.3 * ex.marginal("x").std()).to_csv(biased, index=False)
    out = tmp_path / "out"
    common = ["--case", CASE, "--backends", "reference", "--out", str(out), "--no-cache"]
    code, err = _run(["compare", str(good), *common], capsys)
    assert code == 0 and "your draws: agree" in err
    code, err = _run(["compare", str(biased), *common], capsys)
    assert code == 1 and "your draws: disagree" in err and "x mean" in err
    assert (out / f"{CASE}-user-draws" / "summary.json").exists()


@pytest.mark.parametrize("fmt", ["nc", "zarr"])
def test_compare_reads_netcdf_and_zarr(exact_draws, tmp_path, fmt):
    from arviz_base import from_dict

    df, _ = exact_draws
    post = {k: df[k].to_numpy().reshape(4, 1000) for k in ("Intercept", "x", "sigma")}
    dt = from_dict({"posterior": post})
    path = tmp_path / f"draws.{fmt}"
    dt.to_netcdf(path, engine="h5netcdf") if fmt == "nc" else dt.to_zarr(path)
    user = api.read_draws(path, get_case(CASE))
    np.testing.assert_allclose(user["posterior"]["x"].values, post["x"])


def test_compare_bad_draws(exact_draws, tmp_path, capsys):
    df, _ = exact_draws
    wrong = tmp_path / "wrong.csv"
    df.rename(columns={"x": "slope"}).to_csv(wrong, index=False)
    code, err = _run(["compare", str(wrong), "--case", CASE, "--out", str(tmp_path)], capsys)
    assert code == 2 and "lacks parameters ['x']" in err and "expects ['Intercept', 'x', 'sigma']" in err
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"not a netcdf file" * 10)
    code, err = _run(["compare", str(corrupt), "--case", CASE, "--out", str(tmp_path)], capsys)
    assert code == 2 and "cannot read draws file" in err
    nan = tmp_path / "nan.csv"
    df.assign(x=np.nan).to_csv(nan, index=False)
    code, err = _run(["compare", str(nan), "--case", CASE, "--out", str(tmp_path)], capsys)
    assert code == 2 and "NaN or inf" in err
    code, err = _run(["compare", str(tmp_path / "absent.csv"), "--case", CASE], capsys)
    assert code == 2 and "not found" in err


def test_run_json_and_cache_reuse(tmp_path, capsys):
    cache = Cache(tmp_path / "cache")
    first = api.run("three-point", out=tmp_path / "r", backends=("reference",), cache=cache)
    assert first["verdict"] == "agree"
    again = api.run("three-point", out=tmp_path / "r2", backends=("reference",), cache=cache)
    assert again == first  # reused, identical numbers
    assert (tmp_path / "r2" / "three-point" / "report.html").exists()


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    cache = Cache(tmp_path / "cache")
    first = api.run("three-point", out=tmp_path / "r", backends=("reference",), cache=cache)
    for entry in (tmp_path / "cache").rglob("summary.json"):
        entry.write_text("{ corrupted")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = api.run("three-point", out=tmp_path / "r3", backends=("reference",), cache=cache)
    assert any(issubclass(w.category, CorruptCacheEntry) for w in caught)
    assert again["verdict"] == first["verdict"]
    assert json.loads((tmp_path / "r3" / "three-point" / "summary.json").read_text())


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from comparisons import report

    target = tmp_path / "summary.json"
    target.write_text("old")

    class Boom(Exception):
        pass

    def explode(*a, **k):
        raise Boom

    monkeypatch.setattr(report.os, "replace", explode)
    with pytest.raises(Boom):
        report.atomic_write(target, "new content")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*tmp"))


def test_exit_code_for_inconclusive():
    from comparisons.cli import EXIT_AGREE, EXIT_DISAGREE, EXIT_INCONCLUSIVE, _exit_code

    assert _exit_code(["agree", "inconclusive"]) == EXIT_INCONCLUSIVE
    assert _exit_code(["inconclusive", "disagree"]) == EXIT_DISAGREE
    assert _exit_code(["agree"]) == EXIT_AGREE


def test_list_and_usage(capsys):
    assert main(["list"]) == 0
    assert "radon-intercepts" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2


def test_progress_is_a_rich_bar_on_a_terminal_and_lines_in_a_log(capsys):
    """On a terminal the progress is a bar (cases m/n, elapsed, current stage); in a log file or
    CI it is one timestamped line per stage."""
    import io

    from rich.console import Console

    from comparisons.cli import _Progress

    buf = io.StringIO()
    bar = _Progress(3, bar=True, console=Console(file=buf, force_terminal=True, width=120))
    bar("three-point: fitting pymc [nutpie]")
    bar.advance("three-point: agree")
    bar.close()
    shown = buf.getvalue()
    assert "cases" in shown and "1/3" in shown and "━" in shown and "[nutpie]" in shown
    assert "three-point: agree" in shown
    assert capsys.readouterr().err == ""        # nothing leaks as plain lines

    lines = _Progress(2, bar=False)
    lines("tutorial: exact answer")
    lines.advance("tutorial: agree")
    lines.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[0/2 cases,") and err[0].endswith("tutorial: exact answer")
    assert err[1].startswith("[1/2 cases,") and err[1].endswith("tutorial: agree")
