"""Benchmark: the hierarchical Gibbs sampler against PyMC + nutpie on radon, like for like.

Model (Gelman and Hill 2007), varying intercepts::

    log.radon ~ basement + uranium + (1|county)
    Intercept, basement, uranium ~ Normal(0, 10);  1|county_sigma ~ HalfNormal(1);
    sigma ~ HalfNormal(1)

on the 919 homes in 85 counties of ``comparisons.datasets.radon()``.

Every fit runs PyMC's defaults, 4 chains x (1000 warmup + 1000 draws), the Gibbs sampler with
its default (collapsed) strategy. Speed is the minimum arviz bulk ESS over every parameter
(``Intercept``, ``basement``, ``uranium``, all 85 entries of ``1|county``, ``1|county_sigma``,
``sigma``; PyMC's ``1|county_offset`` is not a parameter of Bambi's output) per second of the
whole fit call, the median of 3 fits run alternately (``_common.py`` says how compile time is
counted). PyMC's model is written as Bambi 0.21 builds it (non-centred:
``1|county = 1|county_offset * 1|county_sigma``). Goal: Gibbs >= 10x nutpie.

Rows: nutpie; Gibbs on the numba fast path (``fast=True``, what the goal is judged on); Gibbs on
the numpy reference path; with ``--strategies`` also the ASIS and centred strategies (numpy,
1 fit each). The posterior means of the scales are printed as a check of agreement.

Usage::

    python benchmarks/bench_hierarchical.py [--strategies]
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import contextmanager

import _common as C  # noqa: I001  (sets the environment before numpy/pymc are imported)
import numpy as np

from comparisons.datasets import radon
from reference import hierarchical, priors

NAMES = ["Intercept", "basement", "uranium"]
COEF_SD = 10.0
PARAMS = ["Intercept", "basement", "uranium", "1|county", "1|county_sigma", "sigma"]


def radon_data():
    df = radon()
    X = np.column_stack([np.ones(len(df)), df["basement"].to_numpy(float),
                         df["uranium"].to_numpy(float)])
    return df, X, df["log.radon"].to_numpy(float)


def fit_gibbs(df, X, y, seed, *, fast, strategy="collapsed"):
    """The whole fit call: the group term, the sufficient statistics, sampling, the DataTree."""
    start = time.perf_counter()
    term = hierarchical.group_term("1|county", None, df["county"])
    dt = hierarchical.hierarchical_gibbs(
        X, y, [term], names=NAMES, beta_mean=0.0, beta_cov=COEF_SD**2,
        tau_priors={"1|county": priors.HalfNormal(1.0)}, sigma_prior=priors.HalfNormal(1.0),
        strategy=strategy, draws=C.DRAWS, tune=C.TUNE, chains=C.CHAINS, seed=seed, fast=fast)
    return time.perf_counter() - start, dt


def pymc_model(df, X, y):
    import pymc as pm

    county = df["county"].astype(str).to_numpy()
    levels = sorted(set(county))  # Bambi's order: sorted labels
    idx = np.searchsorted(levels, county)

    @contextmanager
    def build():
        with pm.Model(coords={"county__factor_dim": levels}) as model:
            intercept = pm.Normal("Intercept", 0.0, COEF_SD)
            basement = pm.Normal("basement", 0.0, COEF_SD)
            uranium = pm.Normal("uranium", 0.0, COEF_SD)
            tau = pm.HalfNormal("1|county_sigma", 1.0)
            offset = pm.Normal("1|county_offset", 0.0, 1.0, dims="county__factor_dim")
            b = pm.Deterministic("1|county", offset * tau, dims="county__factor_dim")
            sigma = pm.HalfNormal("sigma", 1.0)
            mu = intercept + basement * X[:, 1] + uranium * X[:, 2] + b[idx]
            pm.Normal("log.radon", mu=mu, sigma=sigma, observed=y)
            yield model

    return build


def summary(dt) -> dict:
    post = dt.posterior
    return {"ess": C.min_ess(dt, PARAMS), "rhat": C.max_rhat(dt, PARAMS),
            "tau": float(post["1|county_sigma"].mean()), "sigma": float(post["sigma"].mean())}


def main(args):
    import arviz
    import numba
    import pymc

    print(f"python {platform.python_version()}, numpy {np.__version__}, pymc {pymc.__version__}, "
          f"arviz {arviz.__version__}, numba {numba.__version__}; {C.load_line()}", flush=True)
    df, X, y = radon_data()
    build = pymc_model(df, X, y)
    rows = {"pymc+nutpie": [], "gibbs collapsed numba": [], "gibbs collapsed numpy": []}
    diff = 0.0
    for r in range(C.REPEATS):
        seed = C.SEED + r
        wall, samp, dt = C.nutpie_fit(build, seed)
        rows["pymc+nutpie"].append(dict(wall=wall, sampling=samp, **summary(dt)))
        draws = {}
        for name, fast in (("gibbs collapsed numba", True), ("gibbs collapsed numpy", False)):
            wall, dt = fit_gibbs(df, X, y, seed, fast=fast)
            rows[name].append(dict(wall=wall, **summary(dt)))
            draws[name] = dt
        diff = max(diff, C.max_draw_difference(draws["gibbs collapsed numpy"],
                                               draws["gibbs collapsed numba"]))
    if args.strategies:
        for strategy in ("asis", "centred"):
            wall, dt = fit_gibbs(df, X, y, C.SEED, fast=False, strategy=strategy)
            rows[f"gibbs {strategy} numpy (1 fit)"] = [dict(wall=wall, **summary(dt))]

    def med(fits, key):
        return C.median([f[key] for f in fits])

    nut = rows["pymc+nutpie"]
    base = C.median([f["ess"] / f["wall"] for f in nut])
    print(f"\nradon varying intercepts, 4 chains x (1000 + 1000), medians of 3; {C.load_line()}")
    print(f"  {'method':<32}{'wall s':>9}{'min ESS':>9}{'ESS/s':>9}{'vs nutpie':>10}"
          f"{'R-hat':>8}{'E[tau]':>8}{'E[sigma]':>9}")
    ess_s = {}
    for name, fits in rows.items():
        ess_s[name] = C.median([f["ess"] / f["wall"] for f in fits])
        print(f"  {name:<32}{med(fits, 'wall'):>9.2f}{med(fits, 'ess'):>9.0f}"
              f"{ess_s[name]:>9.0f}{ess_s[name] / base:>9.1f}x"
              f"{max(f['rhat'] for f in fits):>8.3f}{med(fits, 'tau'):>8.4f}"
              f"{med(fits, 'sigma'):>9.4f}")
    excl = C.median([f["ess"] / f["sampling"] for f in nut])
    fast = rows["gibbs collapsed numba"]
    first = fast[0]["ess"] / fast[0]["wall"]
    print(f"  nutpie sampling alone (compile excluded): {med(nut, 'sampling'):.2f} s, "
          f"{excl:.0f} ESS/s")
    print(f"  gibbs numba, first call of the process (compile or cache load included): "
          f"{fast[0]['wall']:.2f} s, {first:.0f} ESS/s", flush=True)
    cold = C.cold_compile_seconds(
        "import arviz_base, bench_hierarchical as b\ndf, X, y = b.radon_data()",
        "b.fit_gibbs(df, X, y, 0, fast=True)")
    cold_ratio = med(fast, "ess") / cold / base
    print(f"  gibbs numba, first fit call in a fresh process without the disk cache (JIT "
          f"compile included): {cold:.1f} s ({cold_ratio:.1f}x nutpie if every fit paid it)")
    ratio = ess_s["gibbs collapsed numba"] / base
    C.record_goal("Hierarchical Gibbs, radon varying intercepts: >= 10x nutpie like for like",
                  f"{ratio:.1f}x", ratio >= 10,
                  f"numba path; vs nutpie's sampling alone "
                  f"{ess_s['gibbs collapsed numba'] / excl:.1f}x; numba first call of the process "
                  f"(disk cache) {first / base:.1f}x; a fit call that compiles cold ({cold:.1f} s) "
                  f"{cold_ratio:.1f}x; numpy path "
                  f"{ess_s['gibbs collapsed numpy'] / base:.1f}x")
    C.record_goal("Hierarchical Gibbs: numba and numpy paths give the same draws (same seed)",
                  f"max |difference| {diff:.1e}", diff <= 1e-12,
                  "tests/test_fast_paths.py asserts it")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", action="store_true",
                        help="also the ASIS and centred strategies (numpy, one fit each)")
    main(parser.parse_args())
