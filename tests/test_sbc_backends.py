"""Simulation-based calibration of the PyMC and Bambi backends, and SBC as Dask tasks.

The fast versions here run 30 replications per backend (``make test``); ``make validate`` runs
200 per study (``crosscheck sbc`` without ``--quick`` runs them all and writes a page). Each
uniformity verdict has a family-wise false-alarm rate of 1% (Bonferroni across parameters in
:func:`reference.sbc.sbc`); seeds are fixed once and never tuned.
"""

import numpy as np
import pytest

from comparisons import sbc_studies as S
from comparisons.cli import main
from comparisons.parallel import Runner

SEED = 20261121
FAST = 30


@pytest.mark.parametrize("study", ["pymc", "bambi"])
def test_sbc_of_a_nuts_backend_passes(study):
    result = S.run_study(study, FAST, seed=SEED)
    assert set(result.ranks) == {"Intercept", "x", "sigma"}
    assert result.passed, result.summary()


def test_sbc_catches_a_pymc_model_that_uses_sigma_as_a_variance(monkeypatch):
    """Failure demonstration: the PyMC model's likelihood sd is sigma**2 while the data were
    simulated with sd sigma; the ranks of sigma are far from uniform."""
    import models.pymc_model as pm_model

    real = pm_model.pymc_code

    def broken(spec, **kw):
        return real(spec, **kw).replace("mu=mu, sigma=sigma,", "mu=mu, sigma=sigma**2,")

    monkeypatch.setattr(pm_model, "pymc_code", broken)
    S._compiled.cache_clear()
    try:
        result = S.run_study("pymc", FAST, seed=SEED)
    finally:
        S._compiled.cache_clear()
    assert not result.passed and not result.tests["sigma"].passed


def test_sbc_on_dask_gives_the_serial_ranks():
    serial = S.run_study("reference-gibbs", 6, seed=SEED)
    with Runner(workers=2) as runner:
        parallel = S.run_study("reference-gibbs", 6, seed=SEED, map=runner.map)
    for name in serial.ranks:
        np.testing.assert_array_equal(parallel.ranks[name], serial.ranks[name])
    np.testing.assert_array_equal(parallel.thin, serial.thin)


def test_sbc_command_writes_its_page(tmp_path, capsys):
    code = main(["sbc", "--quick", "--studies", "reference-hierarchical", "--replications", "8",
                 "--serial", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "reference-hierarchical: uniform" in err
    page = (tmp_path / "sbc" / "index.html").read_text()
    assert "data:image/png;base64," in page and "reference-hierarchical" in page
    assert main(["sbc", "--studies", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown SBC study ['nope']" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("study", list(S.STUDIES))
def test_sbc_study_slow(study):
    """The full study (make validate): 200 replications per study, as Dask tasks."""
    with Runner() as runner:
        result = S.run_study(study, 200, seed=SEED, map=runner.map)
    assert result.passed, result.summary()
