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
    assert code == 2 and "lacks parameters ['x']" in err
    assert "expects ['Intercept', 'x', 'sigma']" in err
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


# ---------------------------------------------------------------------------------------------
# issue 10: the command line a new user meets, the posteriors, the cache location
# ---------------------------------------------------------------------------------------------
def test_every_subcommand_has_help_with_descriptions_and_defaults(capsys):
    from comparisons.cli import parser

    p = parser()
    sub = next(a for a in p._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        assert sp.description, f"{name} has no description"
        for action in sp._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        text = sp.format_help()
        if name in ("run", "report", "compare"):
            assert "(default: reports)" in text and "else 1000" in text
            assert "$XDG_CACHE_HOME" in text
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("crosscheck 0.")


def test_list_shows_a_one_line_description(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    radon = next(ln for ln in lines if ln.startswith("radon-intercepts"))
    assert "Radon in 919 Minnesota homes" in radon and len(radon) <= 24 + 1 + 90


def test_run_quiet_prints_one_line_and_writes_posteriors(tmp_path, capsys):
    """--quiet: no progress, one verdict line; every backend's posterior is written as ArviZ
    netCDF beside the report, and api.posteriors reads them back as DataTrees."""
    code = main(["run", "three-point", "--backends", "reference", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet", "--log-likelihood"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    page_path = tmp_path / "three-point" / "report.html"
    assert captured.out.strip() == f"three-point: agree -> {page_path}"
    fits = api.posteriors("three-point", out=tmp_path)
    dt = fits["reference"]
    assert set(dt.children) >= {"posterior", "log_likelihood", "observed_data"}
    spec = get_case("three-point")
    from scipy import stats

    b0, b1 = (float(dt["posterior"][k].values[0, 0]) for k in ("Intercept", "x"))
    expect = stats.norm.logpdf(spec.design().y, b0 + b1 * spec.design().X[:, 1], 1.0)
    np.testing.assert_allclose(dt["log_likelihood"]["y"].values[0, 0], expect)
    page = (tmp_path / "three-point" / "report.html").read_text()
    assert "all cases" not in page  # written by run: there is no index to link to


def test_pymc_posterior_keeps_sample_stats(tmp_path):
    """A NUTS backend's .nc keeps its sample_stats (divergences) next to the posterior."""
    from comparisons import posteriors
    from models.pymc_model import fit_pymc

    spec = get_case(CASE)

    dt = fit_pymc(spec, draws=100, tune=100, chains=2, seed=1)
    posteriors.write({"pymc": dt}, tmp_path, spec)
    back = posteriors.load(tmp_path)["pymc"]
    assert {"posterior", "sample_stats"} <= set(back.children)
    assert "diverging" in back["sample_stats"]
    library = dt["posterior"].attrs["inference_library"]
    assert back["posterior"].attrs["inference_library"] == library


def test_report_json_lists_each_case(monkeypatch, tmp_path, capsys):
    def fake_run(case, *, alpha, index_link, **kwargs):
        assert index_link  # report pages link to the index
        return {"case": case, "verdict": "agree", "comparisons": [], "formula": "",
                "rule": {"alpha": alpha}, "posteriors": {"reference": "reference.nc"}}

    monkeypatch.setattr(api, "run", fake_run)
    monkeypatch.setattr(api, "bayes_factor_rows", lambda **kw: [])
    assert main(["report", "--out", str(tmp_path), "--json", "--quiet", "--serial"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "agree" and out["index"] == str(tmp_path / "index.html")
    assert out["cases"][0]["report"] == str(tmp_path / out["cases"][0]["case"] / "report.html")


def test_cache_location_follows_xdg_and_settings(tmp_path, monkeypatch):
    from comparisons.cache import default_cache_dir

    monkeypatch.delenv("CROSSCHECK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "bayes-crosscheck"
    assert Cache().root == tmp_path / "xdg" / "bayes-crosscheck"
    monkeypatch.setenv("CROSSCHECK_CACHE", str(tmp_path / "mine"))
    assert Cache().root == tmp_path / "mine"
    monkeypatch.delenv("CROSSCHECK_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "bayes-crosscheck"


def test_cache_entries_say_what_they_hold(tmp_path):
    api.run("three-point", out=tmp_path / "r", backends=("reference",), cache=tmp_path / "c")
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "c").rglob("manifest.json")]
    assert {m["kind"] for m in manifests} >= {"fits", "cases"}
    for m in manifests:
        assert m["about"]["case"] == "three-point", m
        if m["kind"] == "fits":
            assert m["about"]["backend"] == "reference"


def test_a_non_editable_install_never_writes_into_site_packages(tmp_path):
    """Install the package (not editable) into a folder, run a case from there with a fresh
    HOME, and check that nothing in the installed tree changed."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for name in ("reference", "models", "comparisons", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (root / name).is_dir() else shutil.copy
        copy(root / name, source / name)  # pip builds in the source tree: not in the checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, cwd=tmp_path)

    def snapshot():
        return {str(p.relative_to(target)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in target.rglob("*") if p.is_file()}

    before = snapshot()
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSCHECK_CACHE", "PYTHONPATH")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME="", PYTHONPATH=str(target),
               PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", "import sys; from comparisons.cli import main;"
                           " sys.exit(main(sys.argv[1:]))", "run", "three-point", "--backends",
                           "reference", "--out", str(tmp_path / "out"), "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert str(target) in subprocess.run(
        [sys.executable, "-c", "import comparisons; print(comparisons.__file__)"], env=env,
        capture_output=True, text=True, cwd=tmp_path).stdout
    assert snapshot() == before
    assert (tmp_path / "home" / ".cache" / "bayes-crosscheck" / "fits").is_dir()


def test_a_crash_is_exit_status_4_not_a_verdict(monkeypatch, capsys):
    """An exception inside a run (here a task failing on a worker) used to leave Python's exit
    status 1, which make report read as "disagree"."""
    def broken(*args, **kwargs):
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(api, "run", broken)
    assert main(["run", "three-point", "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "AssertionError: daemonic" in err and "crashed (exit status 4)" in err
