"""The numba fast paths give the numpy samplers' draws, and the numpy samplers need no numba.

``fast=True`` runs a compiled transcription of the numpy sweep (reference/_fast_gibbs.py,
reference/_fast_hierarchical.py) on each chain's own ``numpy.random.Generator``. The numpy
samplers are the documented reference and carry the statistical tests (tests/test_gibbs.py,
tests/test_hierarchical.py); here the fast paths are held to them draw by draw: for the same seed
every draw agrees to 1e-12 (only the rounding of sums and of the Cholesky factor differs), and the
slice samplers spend exactly the same number of evaluations.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from reference import datasets, gibbs, hierarchical
from reference import priors as P

numba = pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261121
#: largest difference allowed between a numba draw and the numpy draw (relative, or absolute
#: below 1): rounding only
TOL = 1e-12


def assert_same_draws(a, b):
    """Every posterior variable of DataTree ``b`` equals ``a``'s to TOL; same slice counts."""
    assert a.posterior.attrs["sampler_path"] == "numpy"
    assert b.posterior.attrs["sampler_path"] == "numba"
    assert sorted(a.posterior.data_vars) == sorted(b.posterior.data_vars)
    for name in a.posterior.data_vars:
        x, y = a.posterior[name].values, b.posterior[name].values
        assert x.shape == y.shape, name
        np.testing.assert_allclose(y, x, rtol=TOL, atol=TOL, err_msg=name)
    if "sample_stats" in a.children and "slice_evals" in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats["slice_evals"].values,
                                      b.sample_stats["slice_evals"].values)


# --------------------------------------------------------------------------------------------
# The random streams
# --------------------------------------------------------------------------------------------
def test_numba_draws_numpys_variates_from_the_same_generator():
    """The compiled code's standard_normal, standard_gamma, standard_exponential and random
    give numpy's values bit for bit, and leave the generator where numpy leaves it."""

    @numba.njit
    def draw(gen, shapes, out):
        for i in range(out.shape[0]):
            out[i, 0] = gen.standard_normal()
            out[i, 1] = gen.standard_gamma(shapes[i])
            out[i, 2] = gen.standard_exponential()
            out[i, 3] = gen.random()

    shapes = np.array([0.3, 0.5, 1.0, 2.5, 100.5, 5e5] * 50)
    g_numba, g_numpy = np.random.default_rng(SEED), np.random.default_rng(SEED)
    got = np.empty((shapes.size, 4))
    draw(g_numba, shapes, got)
    want = np.array([[g_numpy.standard_normal(), g_numpy.standard_gamma(a),
                      g_numpy.standard_exponential(), g_numpy.random()] for a in shapes])
    np.testing.assert_array_equal(got, want)
    assert g_numba.random() == g_numpy.random()


def test_compiled_special_functions_are_scipys():
    """gammainc and gammaincinv in compiled code are scipy's own C functions: equal values."""
    from scipy import special

    from reference import _numba

    for a in (0.5, 3.5, 458.5, 1e5):
        for x in (1e-3, 0.4, a, 3 * a):
            assert _numba.gammainc(a, x) == special.gammainc(a, x)
        for q in (1e-12, 0.3, 0.999):
            assert _numba.gammaincinv(a, q) == special.gammaincinv(a, q)


# --------------------------------------------------------------------------------------------
# Linear Gibbs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(SEED)
    n = 15
    x1 = rng.normal(size=n)
    x2 = 0.8 * x1 + 0.6 * rng.normal(size=n)
    X = np.column_stack([np.ones(n), x1, x2])
    y = X @ np.array([1.0, 0.5, -0.7]) + 0.8 * rng.normal(size=n)
    return X, y


M0 = np.array([0.5, 0.0, 0.2])
V0 = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
LINEAR = {
    "halfcauchy": dict(sigma_prior=P.HalfCauchy(1.0)),
    "ig-semi-conjugate": dict(sigma_prior=P.InverseGamma(3.0, 2.0, on="sigma2")),
    "ig-nig": dict(sigma_prior=P.InverseGamma(3.0, 2.0, on="sigma2"), nig=True),
    "known-float": dict(sigma_prior=0.8),
    "known-constant": dict(sigma_prior=P.Constant(0.8)),
    "flat-halfcauchy": dict(sigma_prior=P.HalfCauchy(1.0), beta_cov=None),
    "flat-ig-nig": dict(sigma_prior=P.InverseGamma(3.0, 2.0, on="sigma2"), beta_cov=None,
                        nig=True),
}


@pytest.mark.parametrize("case", list(LINEAR))
def test_linear_fast_path_gives_the_numpy_draws(small, case):
    X, y = small
    kw = dict(names=["Intercept", "x1", "x2"], beta_mean=M0, beta_cov=V0, draws=400, tune=300,
              chains=3, seed=SEED, thin=2)
    kw.update(LINEAR[case])
    assert_same_draws(gibbs.linear_gibbs(X, y, **kw), gibbs.linear_gibbs(X, y, fast=True, **kw))


def test_linear_fast_path_from_statistics_at_large_n():
    """n = 10^6 rows, p = 10, read once into the statistics: the same draws both ways."""
    rng = np.random.default_rng(SEED)
    n, p = 10**6, 10
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1))])
    y = X @ rng.normal(0.0, 2.0, p) + 1.5 * rng.standard_normal(n)
    data = gibbs.GibbsData.from_arrays(X, y)
    kw = dict(names=[f"b{j}" for j in range(p)], beta_cov=400.0, sigma_prior=P.HalfCauchy(10.0),
              draws=200, tune=100, chains=2, seed=SEED)
    assert_same_draws(gibbs.linear_gibbs(data, **kw), gibbs.linear_gibbs(data, fast=True, **kw))


def test_linear_slice_priors_run_on_the_numpy_path(small):
    X, y = small
    kw = dict(names=["Intercept", "x1", "x2"], beta_cov=V0, sigma_prior=P.HalfNormal(1.0),
              draws=20, tune=10, seed=SEED)
    a = gibbs.linear_gibbs(X, y, **kw)
    b = gibbs.linear_gibbs(X, y, fast=True, **kw)
    assert b.posterior.attrs["sampler_path"] == "numpy"
    np.testing.assert_array_equal(a.posterior["sigma"].values, b.posterior["sigma"].values)


def test_linear_fast_chains_do_not_depend_on_how_many_run(small):
    X, y = small
    kw = dict(names=["Intercept", "x1", "x2"], beta_cov=V0, sigma_prior=P.HalfCauchy(1.0),
              draws=30, tune=20, seed=SEED, fast=True)
    a = gibbs.linear_gibbs(X, y, chains=2, **kw)
    b = gibbs.linear_gibbs(X, y, chains=3, **kw)
    np.testing.assert_array_equal(a.posterior["sigma"].values, b.posterior["sigma"].values[:2])


# --------------------------------------------------------------------------------------------
# Hierarchical Gibbs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grouped():
    d = datasets.hierarchical_synthetic(seed=3, groups=6, per_group=8)
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    terms = [hierarchical.group_term("1|g", None, d["g"]),
             hierarchical.group_term("x|g", d["x"], d["g"])]
    return X, d["y"], terms


HIERARCHICAL = {
    "halfnormal": ({"1|g": P.HalfNormal(1.0), "x|g": P.HalfNormal(0.5)}, P.HalfNormal(1.0)),
    "halfcauchy-exponential": ({"1|g": P.HalfCauchy(1.0), "x|g": P.Exponential(2.0)},
                               P.HalfCauchy(2.0)),
    "studentt-constant-ig": ({"1|g": P.HalfStudentT(3.0, 1.0), "x|g": P.Constant(0.3)},
                             P.InverseGamma(2.0, 1.0, on="sigma2")),
    "ig-sd-uniform-truncnormal": ({"1|g": P.InverseGamma(2.0, 1.0, on="sigma"),
                                   "x|g": P.Uniform(0.0, 3.0)}, P.TruncatedNormal(0.5, 1.0)),
    "ig-var-flat-exponential": ({"1|g": P.InverseGamma(2.0, 1.0, on="sigma2"),
                                 "x|g": P.Flat()}, P.Exponential(1.0)),
}


@pytest.mark.parametrize("case", list(HIERARCHICAL))
def test_hierarchical_fast_path_gives_the_numpy_draws(grouped, case):
    X, y, terms = grouped
    tau_priors, sigma_prior = HIERARCHICAL[case]
    kw = dict(names=["Intercept", "x"], beta_mean=0.0, beta_cov=25.0, tau_priors=tau_priors,
              sigma_prior=sigma_prior, draws=300, tune=200, chains=3, seed=SEED, thin=2)
    a = hierarchical.hierarchical_gibbs(X, y, terms, **kw)
    b = hierarchical.hierarchical_gibbs(X, y, terms, fast=True, **kw)
    assert_same_draws(a, b)


def test_hierarchical_fast_path_with_known_weights_and_one_term():
    """Eight-schools form: known per-row sds as weights, sigma fixed at 1, flat-ish prior."""
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    se = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    term = hierarchical.group_term("1|school", None, [str(j) for j in range(8)])
    kw = dict(names=["Intercept"], beta_mean=0.0, beta_cov=25.0,
              tau_priors={"1|school": P.HalfCauchy(5.0)}, sigma_prior=None, weights=1 / se**2,
              draws=300, tune=200, chains=2, seed=SEED)
    X = np.ones((8, 1))
    assert_same_draws(hierarchical.hierarchical_gibbs(X, y, [term], **kw),
                      hierarchical.hierarchical_gibbs(X, y, [term], fast=True, **kw))


def test_hierarchical_radon_like_for_like():
    """The benchmark's radon model at PyMC's settings (4 chains, 1000 + 1000)."""
    from comparisons.datasets import radon

    df = radon()
    X = np.column_stack([np.ones(len(df)), df["basement"].to_numpy(float),
                         df["uranium"].to_numpy(float)])
    term = hierarchical.group_term("1|county", None, df["county"])
    kw = dict(names=["Intercept", "basement", "uranium"], beta_mean=0.0, beta_cov=100.0,
              tau_priors={"1|county": P.HalfNormal(1.0)}, sigma_prior=P.HalfNormal(1.0),
              draws=1000, tune=1000, chains=4, seed=SEED)
    y = df["log.radon"].to_numpy(float)
    assert_same_draws(hierarchical.hierarchical_gibbs(X, y, [term], **kw),
                      hierarchical.hierarchical_gibbs(X, y, [term], fast=True, **kw))


def test_other_strategies_run_on_the_numpy_path(grouped):
    X, y, terms = grouped
    tau_priors, sigma_prior = HIERARCHICAL["halfnormal"]
    dt = hierarchical.hierarchical_gibbs(X, y, terms, names=["Intercept", "x"], beta_mean=0.0,
                                         beta_cov=25.0, tau_priors=tau_priors,
                                         sigma_prior=sigma_prior, strategy="asis", draws=10,
                                         tune=5, seed=SEED, fast=True)
    assert dt.posterior.attrs["sampler_path"] == "numpy"


# --------------------------------------------------------------------------------------------
# Without numba, and where compiled code is cached
# --------------------------------------------------------------------------------------------
def _python(code: str, **env_over) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSCHECK_CACHE",
                                                           "CROSSCHECK_NUMBA_CACHE")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **env_over)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_numpy_samplers_work_when_numba_cannot_be_imported():
    """numba blocked from importing: fast=False never needs it, fast=True warns and runs the
    numpy kernel (the same draws)."""
    done = _python("""
        import sys, warnings
        sys.modules["numba"] = None          # any import of numba now fails
        import numpy as np
        from reference import gibbs, hierarchical, datasets, priors as P
        d = datasets.tutorial()
        X = np.column_stack([np.ones_like(d["x"]), d["x"]])
        kw = dict(names=["Intercept", "x"], beta_cov=400.0, sigma_prior=P.HalfCauchy(10.0),
                  draws=50, tune=10, seed=1)
        a = gibbs.linear_gibbs(X, d["y"], **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b = gibbs.linear_gibbs(X, d["y"], fast=True, **kw)
        assert any("could not be imported" in str(w.message) for w in caught), caught
        assert b.posterior.attrs["sampler_path"] == "numpy"
        assert np.array_equal(a.posterior["x"].values, b.posterior["x"].values)
        h = datasets.hierarchical_synthetic()
        Xh = np.column_stack([np.ones_like(h["x"]), h["x"]])
        term = hierarchical.group_term("1|g", None, h["g"])
        hierarchical.hierarchical_gibbs(Xh, h["y"], [term], names=["Intercept", "x"],
                                        beta_mean=0.0, beta_cov=100.0,
                                        tau_priors={"1|g": P.HalfNormal(1.0)},
                                        sigma_prior=P.HalfNormal(1.0), draws=20, tune=10)
        assert "numba" not in {m.split(".")[0] for m in sys.modules if sys.modules[m]}
        print("ok")
    """)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_compiled_code_is_cached_only_in_the_suite_cache(tmp_path):
    """With CROSSCHECK_CACHE set the compiled functions go to $CROSSCHECK_CACHE/numba, with
    CROSSCHECK_NUMBA_CACHE=0 nowhere; never next to the source (site-packages once installed)."""

    def numba_files(folder: Path) -> set:
        return {p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")}

    source_before = numba_files(ROOT / "reference")
    fit = """
        import numpy as np
        from reference import gibbs, datasets, priors as P
        d = datasets.tutorial()
        X = np.column_stack([np.ones_like(d["x"]), d["x"]])
        dt = gibbs.linear_gibbs(X, d["y"], names=["Intercept", "x"], beta_cov=400.0,
                                sigma_prior=P.HalfCauchy(10.0), draws=20, tune=5, fast=True)
        assert dt.posterior.attrs["sampler_path"] == "numba"
    """
    cache = tmp_path / "cache"
    done = _python(fit, CROSSCHECK_CACHE=str(cache))
    assert done.returncode == 0, done.stderr
    assert any(p.name.startswith("_fast_gibbs._chain") for p in numba_files(cache / "numba"))
    off = tmp_path / "off"
    done = _python(fit, CROSSCHECK_CACHE=str(off), CROSSCHECK_NUMBA_CACHE="0")
    assert done.returncode == 0, done.stderr
    assert not off.exists() or not numba_files(off)
    assert numba_files(ROOT / "reference") == source_before
