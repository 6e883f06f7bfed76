"""Benchmark: the hierarchical Gibbs sampler against PyMC + nutpie on radon (prints figures only).

Model (Gelman and Hill 2007), varying intercepts::

    log.radon ~ basement + uranium + (1|county)
    Intercept, basement, uranium ~ Normal(0, 10);  1|county_sigma ~ HalfNormal(1);
    sigma ~ HalfNormal(1)

on the 919 homes in 85 counties of ``comparisons.datasets.radon()``.

Measured, side by side in one run, medians over ``--repeats`` fits (the seed varies):

* wall time of the whole fit; for PyMC the model build, compile (warm cache: one untimed fit
  first) and ``pm.sample(nuts_sampler="nutpie", chains=4, cores=2, tune=1000, draws=1000)``;
  for Gibbs the kernel build (one pass over the rows for the sufficient statistics), the
  sampling and the conversion to a DataTree;
* the minimum arviz bulk ESS over every parameter: ``Intercept``, ``basement``, ``uranium``,
  all 85 entries of ``1|county``, ``1|county_sigma`` and ``sigma`` (PyMC's ``1|county_offset``
  is left out: it is not a model parameter in Bambi's output);
* min ESS per second and its ratio to PyMC's;
* the largest R-hat, and the posterior means of the scales as a sanity check of agreement.

The PyMC model is written out explicitly as Bambi 0.21 builds it (non-centred:
``1|county = 1|county_offset * 1|county_sigma``, ``1|county_offset ~ Normal(0, 1)``).

Gibbs rows: the default (collapsed) strategy with 4 chains and the same 1000 tune + 1000 draws
as PyMC (the like-for-like row); the same with 200 warmup sweeps (a Gibbs sampler has little to
tune: burn-in and the slice widths); 16 chains, which advance in the same vectorized numpy calls
(most of a sweep's cost is per call, not per chain); and the other strategies (ASIS, centred)
at 4 chains to show what the choice is worth. The ratio column divides by PyMC's ESS/s.

Usage::

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor \\
        python benchmarks/bench_hierarchical.py [--repeats 3] [--skip-pymc]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault(
    "PYTENSOR_FLAGS",
    f"base_compiledir={Path(__file__).resolve().parents[1] / '.cache' / 'pytensor'}")

import numpy as np  # noqa: E402

from comparisons.datasets import radon  # noqa: E402
from reference import hierarchical, priors  # noqa: E402

SEED = 20261121
NAMES = ["Intercept", "basement", "uranium"]
COEF_SD = 10.0
PARAMS = ["Intercept", "basement", "uranium", "1|county", "1|county_sigma", "sigma"]


def radon_data():
    df = radon()
    X = np.column_stack([np.ones(len(df)), df["basement"].to_numpy(float),
                         df["uranium"].to_numpy(float)])
    return df, X, df["log.radon"].to_numpy(float)


def fit_gibbs(df, X, y, *, strategy="collapsed", chains=4, draws=1000, tune=1000, seed=SEED):
    start = time.perf_counter()
    term = hierarchical.group_term("1|county", None, df["county"])
    dt = hierarchical.hierarchical_gibbs(
        X, y, [term], names=NAMES, beta_mean=0.0, beta_cov=COEF_SD**2,
        tau_priors={"1|county": priors.HalfNormal(1.0)}, sigma_prior=priors.HalfNormal(1.0),
        strategy=strategy, draws=draws, tune=tune, chains=chains, seed=seed)
    return time.perf_counter() - start, dt


def fit_pymc(df, X, y, *, draws=1000, tune=1000, seed=SEED):
    import pymc as pm

    start = time.perf_counter()
    county = df["county"].astype(str).to_numpy()
    levels = sorted(set(county))  # Bambi's order: sorted labels
    idx = np.searchsorted(levels, county)
    with pm.Model(coords={"county__factor_dim": levels}):
        intercept = pm.Normal("Intercept", 0.0, COEF_SD)
        basement = pm.Normal("basement", 0.0, COEF_SD)
        uranium = pm.Normal("uranium", 0.0, COEF_SD)
        tau = pm.HalfNormal("1|county_sigma", 1.0)
        offset = pm.Normal("1|county_offset", 0.0, 1.0, dims="county__factor_dim")
        b = pm.Deterministic("1|county", offset * tau, dims="county__factor_dim")
        sigma = pm.HalfNormal("sigma", 1.0)
        mu = intercept + basement * X[:, 1] + uranium * X[:, 2] + b[idx]
        pm.Normal("log.radon", mu=mu, sigma=sigma, observed=y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = pm.sample(draws=draws, tune=tune, chains=4, cores=2, nuts_sampler="nutpie",
                           random_seed=seed, progressbar=False)
    return time.perf_counter() - start, dt


def summary(dt) -> dict:
    import arviz as az

    post = dt.posterior
    ess = az.ess(dt, var_names=PARAMS)
    rhat = az.rhat(dt, var_names=PARAMS)
    return {"ess": float(min(np.min(ess[v].values) for v in PARAMS)),
            "rhat": float(max(np.max(rhat[v].values) for v in PARAMS)),
            "tau": float(post["1|county_sigma"].mean()), "sigma": float(post["sigma"].mean())}


def repeat(fit, repeats, **kw) -> dict:
    rows = []
    for r in range(repeats):
        wall, dt = fit(seed=SEED + r, **kw)
        s = summary(dt)
        rows.append((wall, s["ess"], s["ess"] / wall, s["rhat"], s["tau"], s["sigma"]))
    rows = np.array(rows)
    med = np.median(rows, axis=0)
    return {"wall": med[0], "ess": med[1], "ess_per_s": med[2], "rhat": rows[:, 3].max(),
            "tau": med[4], "sigma": med[5]}


def main(args):
    import arviz

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"arviz {arviz.__version__}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
          f"repeats {args.repeats}")
    df, X, y = radon_data()
    fit_gibbs(df, X, y, draws=10, tune=0)  # warm imports
    results = {}
    if not args.skip_pymc:
        import pymc

        print(f"pymc {pymc.__version__}")
        fit_pymc(df, X, y, draws=10, tune=10)  # warm the compile cache
        results["pymc+nutpie (1000+1000)"] = repeat(fit_pymc, args.repeats, df=df, X=X, y=y)
    results["gibbs collapsed (1000+1000)"] = repeat(fit_gibbs, args.repeats, df=df, X=X, y=y)
    results["gibbs collapsed (200+1000)"] = repeat(fit_gibbs, args.repeats, df=df, X=X, y=y,
                                                   tune=200)
    results["gibbs collapsed 16 ch (200+1000)"] = repeat(fit_gibbs, args.repeats, df=df, X=X,
                                                         y=y, tune=200, chains=16)
    results["gibbs asis (1000+1000)"] = repeat(fit_gibbs, args.repeats, df=df, X=X, y=y,
                                               strategy="asis")
    results["gibbs centred (1000+1000)"] = repeat(fit_gibbs, args.repeats, df=df, X=X, y=y,
                                                  strategy="centred")
    base = next(iter(results.values()))["ess_per_s"]
    print(f"\nradon varying intercepts, medians of {args.repeats} fits "
          f"(ratio = ESS/s over the first row's); load now {os.getloadavg()[0]:.1f}")
    print(f"  {'method':<34}{'wall s':>9}{'min ESS':>9}{'ESS/s':>9}{'ratio':>8}{'R-hat':>8}"
          f"{'E[tau]':>8}{'E[sigma]':>9}")
    for name, r in results.items():
        print(f"  {name:<34}{r['wall']:>9.2f}{r['ess']:>9.0f}{r['ess_per_s']:>9.0f}"
              f"{r['ess_per_s'] / base:>7.1f}x{r['rhat']:>8.3f}{r['tau']:>8.4f}{r['sigma']:>9.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pymc", action="store_true")
    main(parser.parse_args())
