"""The report's cases as Dask tasks: the same results as a serial run, and clear errors."""

import json

import pytest

from comparisons import api
from comparisons.cli import main
from comparisons.parallel import Runner

CASES = ["three-point", "tutorial-nig"]
TIMING = ("wall_time", "wall_times", "seconds")


def _strip(obj):
    """Everything but wall times (which differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_report_on_dask_equals_the_serial_report(tmp_path):
    common = {"cases": CASES, "backends": ("reference",), "cache": False}
    serial = api.report(tmp_path / "serial", serial=True, **common)
    seen = []
    parallel = api.report(tmp_path / "dask", workers=2, on_case=lambda s: seen.append(s["case"]),
                          **common)
    assert sorted(seen) == sorted(CASES)
    assert [s["case"] for s in parallel] == CASES  # in case order, whatever finished first
    assert _strip(parallel) == _strip(serial)
    for case in CASES:
        for name in ("summary.json", "report.html", "report.md", "reference.nc"):
            assert (tmp_path / "dask" / case / name).is_file()
        on_disk = json.loads((tmp_path / "dask" / case / "summary.json").read_text())
        assert _strip(on_disk) == _strip(next(s for s in serial if s["case"] == case))
    index = (tmp_path / "dask" / "index.html").read_text()
    assert "Bayes factors" in index and "three-point/report.html" in index
    page = (tmp_path / "dask" / "three-point" / "report.html").read_text()
    assert "../index.html" in page  # report pages link to their index


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, capsys):
    code = main(["report", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path),
                 "--backends", "reference", "--quiet"])
    assert code == 2
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in capsys.readouterr().err


def test_runner_rejects_bad_settings():
    with pytest.raises(ValueError, match="workers must be a positive integer; received 0"):
        Runner(workers=0)
    with pytest.raises(ValueError, match="cannot use a scheduler"):
        Runner("tcp://x:1", serial=True)
    with Runner(serial=True) as run:
        assert run.map(pow, [(2, 3), (3, 2)]) == [8, 9]


def test_successive_maps_on_one_cluster_never_mix_results():
    """Two maps on one cluster with equal-looking units: each gets its own results (task keys
    used to repeat across calls, and a second SBC study received the first one's ranks)."""
    with Runner(workers=2) as run:
        first = run.map(pow, [(2, 1), (2, 2), (2, 3)])
        second = run.map(pow, [(3, 1), (3, 2), (3, 3)])
    assert first == [2, 4, 8] and second == [3, 9, 27]


def test_two_local_clusters_at_once_do_not_warn_about_a_port():
    """Two commands (or two test workers) each start a LocalCluster: neither binds 8787, so
    neither prints distributed's 'Port 8787 is already in use' warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Runner(workers=1) as a, Runner(workers=1) as b:
            assert a.map(pow, [(2, 2)]) == [4] and b.map(pow, [(3, 2)]) == [9]
    assert not [w for w in caught if "already in use" in str(w.message)], \
        [str(w.message) for w in caught]


def test_report_on_a_given_scheduler(tmp_path, capsys):
    """--scheduler ADDRESS: the cases run on that cluster's workers and the files land here."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        code = main(["report", "--scheduler", cluster.scheduler_address, "--out",
                     str(tmp_path), "--cases", "three-point", "eight-schools", "--backends",
                     "reference", "--no-cache", "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["verdict"] == "agree"
    assert [c["case"] for c in out["cases"]] == ["three-point", "eight-schools"]
    assert (tmp_path / "three-point" / "reference.nc").is_file()
    assert (tmp_path / "index.html").is_file()


def test_smc_evidence_runs_inside_a_dask_worker(tmp_path):
    """A Dask worker is a daemonic process; PyMC's SMC used to start chain processes there and
    crash the whole report. three-point asks for SMC evidence."""
    (summ,) = api.report(tmp_path, cases=["three-point"], backends=("pymc",), draws=200,
                         tune=200, cache=False, workers=1)
    smc = next(r for r in summ["evidence"]["estimates"] if r["method"] == "smc")
    assert smc["log_evidence"] is not None, smc["note"]
    check = next(c for c in summ["evidence"]["checks"] if c["method"] == "smc")
    assert check["verdict"] == "agree", check  # within 3 se + 0.05 nats of -5.4775
