"""Benchmark: the sufficient-statistics Gibbs sampler against PyMC + nutpie (prints figures only).

Measured, side by side in one run:

1. Minimum ESS per second of wall time for the whole fit (arviz bulk ESS, minimum over every
   scalar parameter including sigma), medians over ``--repeats`` fits:

   (a) the PyMC "GLM: linear regression" tutorial data (n = 200), priors
       ``sigma ~ HalfCauchy(10)``, ``Intercept, x ~ Normal(0, 20)``;
   (b) synthetic data with n = 10^6 rows and p = 10 coefficients, priors
       ``Normal(0, 20)`` on every coefficient and ``sigma ~ HalfCauchy(10)``.

   PyMC's wall time is ``pm.sample(nuts_sampler="nutpie", chains=4, cores=2)`` (1000 tune, 1000
   draws) including model build and compile, with a warm compile cache (one untimed fit first).
   The Gibbs wall time includes the one-off pass over the data (``GibbsData.from_arrays``), the
   sampling and the conversion to a DataTree. Gibbs is run with 4 chains (PyMC's setting) and
   with more chains, which all advance in the same vectorized numpy calls.

2. Time per Gibbs sweep at n = 10^3, 10^5, 10^6 (p = 10): the kernel reads only X'X, X'y and
   y'y, so these should agree.

Usage::

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor MPLBACKEND=Agg \\
        python benchmarks/bench_gibbs.py [--repeats 3] [--pymc-large-repeats 1]
                                         [--pymc-n 100000] [--skip-pymc-large] [--quick]

PyMC at n = 10^6 costs tens of minutes per fit on a 2-core machine, so by default it is fitted
once (after an untimed short warm-up fit that compiles the graph); every other figure is a
median over ``--repeats`` fits. ``--pymc-n 100000`` fits PyMC at a smaller n in case (b),
which makes the printed ratios lower bounds for n = 10^6.
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
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402

from reference import gibbs, sampling  # noqa: E402
from reference.datasets import tutorial  # noqa: E402
from reference.priors import HalfCauchy  # noqa: E402

SEED = 20261121
PRIOR_SD = 20.0
HALF_CAUCHY = 10.0


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def tutorial_data():
    d = tutorial()
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    return X, d["y"], ["Intercept", "x"]


def synthetic_data(n: int, p: int = 10, seed: int = SEED):
    rng = np.random.default_rng(seed)
    X = np.empty((n, p))
    X[:, 0] = 1.0
    X[:, 1:] = rng.standard_normal((n, p - 1))
    beta = rng.normal(0.0, 2.0, p)
    y = X @ beta + 1.5 * rng.standard_normal(n)
    return X, y, ["Intercept", *[f"x{j}" for j in range(1, p)]]


# --------------------------------------------------------------------------------------------
# Fits, each returning (wall seconds, DataTree)
# --------------------------------------------------------------------------------------------
def fit_gibbs(X, y, names, *, chains, draws=1000, tune=200, seed=SEED):
    start = time.perf_counter()
    data = gibbs.GibbsData.from_arrays(X, y)  # the one-off pass over the rows
    dt = gibbs.linear_gibbs(data, names=names, beta_cov=PRIOR_SD**2,
                            sigma_prior=HalfCauchy(HALF_CAUCHY), draws=draws, tune=tune,
                            chains=chains, seed=seed)
    return time.perf_counter() - start, dt


def fit_pymc(X, y, names, *, draws=1000, tune=1000, seed=SEED):
    import pymc as pm

    start = time.perf_counter()
    with pm.Model(coords={"coef": names}):
        sigma = pm.HalfCauchy("sigma", beta=HALF_CAUCHY)
        if X.shape[1] == 2:  # the tutorial's model, written as in the tutorial
            intercept = pm.Normal("Intercept", 0, sigma=PRIOR_SD)
            slope = pm.Normal("x", 0, sigma=PRIOR_SD)
            mu = intercept + slope * X[:, 1]
        else:
            Xd = pm.Data("X", X)
            beta = pm.Normal("beta", 0, sigma=PRIOR_SD, dims="coef")
            mu = Xd @ beta
        pm.Normal("y", mu=mu, sigma=sigma, observed=y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = pm.sample(draws=draws, tune=tune, chains=4, cores=2, nuts_sampler="nutpie",
                           random_seed=seed, progressbar=False)
    return time.perf_counter() - start, dt


def min_ess(dt) -> float:
    import arviz as az

    ess = az.ess(dt)
    return float(min(np.min(ess[v].values) for v in ess.data_vars))


def max_rhat(dt) -> float:
    import arviz as az

    rhat = az.rhat(dt)
    return float(max(np.max(rhat[v].values) for v in rhat.data_vars))


def repeat(fit, repeats, **kw):
    """Median wall time, median min-ESS and median ESS/s over ``repeats`` fits (seed varies)."""
    rows = []
    for r in range(repeats):
        wall, dt = fit(seed=SEED + r, **kw)
        rows.append((wall, min_ess(dt), max_rhat(dt)))
    rows = np.array(rows)
    return {"wall": float(np.median(rows[:, 0])), "ess": float(np.median(rows[:, 1])),
            "ess_per_s": float(np.median(rows[:, 1] / rows[:, 0])),
            "rhat": float(rows[:, 2].max())}


def print_case(title, results, reference="pymc+nutpie"):
    base = results[reference]["ess_per_s"]
    print(f"\n{title}; load average now {os.getloadavg()[0]:.1f}")
    print(f"  {'method':<28}{'wall s':>10}{'min ESS':>10}{'ESS/s':>12}{'max R-hat':>11}"
          f"{'ratio':>9}")
    for name, r in results.items():
        print(f"  {name:<28}{r['wall']:>10.3f}{r['ess']:>10.0f}{r['ess_per_s']:>12.1f}"
              f"{r['rhat']:>11.4f}{r['ess_per_s'] / base:>8.0f}x", flush=True)


# --------------------------------------------------------------------------------------------
# Sweep cost against n
# --------------------------------------------------------------------------------------------
def time_per_sweep(sizes, chains, sweeps=300, repeats=7, p=10):
    """Median seconds per sweep for each n. The kernels are built first and the repeats are
    interleaved across sizes, so a change in machine load affects every size alike."""
    kernels = {}
    for n in sizes:
        X, y, names = synthetic_data(n, p)
        kernels[n] = gibbs.gibbs_kernel(X, y, names=names, beta_cov=PRIOR_SD**2,
                                        sigma_prior=HalfCauchy(HALF_CAUCHY))
        del X, y  # the kernel keeps only X'X, X'y and y'y
    times = {n: [] for n in sizes}
    for r in range(repeats):
        for n, kernel in kernels.items():
            rng = sampling.ChainRNG(SEED + r, chains)
            state = kernel.init(rng)
            start = time.perf_counter()
            for _ in range(sweeps):
                state, _ = kernel.step(rng, state, None)
            times[n].append((time.perf_counter() - start) / sweeps)
    return [float(np.median(times[n])) for n in sizes]


def main(args):
    import arviz
    import pymc

    print(f"python {platform.python_version()}, numpy {np.__version__}, pymc {pymc.__version__}, "
          f"arviz {arviz.__version__}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}; repeats {args.repeats} (PyMC at n = 10^6: "
          f"{args.pymc_large_repeats})", flush=True)
    many = [64, 256] if not args.quick else [64]
    if args.sweeps_only:
        return sweep_table()

    # (a) tutorial
    X, y, names = tutorial_data()
    fit_pymc(X, y, names)  # warm the compile cache
    fit_gibbs(X, y, names, chains=4, draws=10, tune=0)  # warm imports
    res = {"pymc+nutpie": repeat(fit_pymc, args.repeats, X=X, y=y, names=names)}
    res["gibbs, 4 chains"] = repeat(fit_gibbs, args.repeats, X=X, y=y, names=names, chains=4)
    for c in many:
        res[f"gibbs, {c} chains"] = repeat(fit_gibbs, args.repeats, X=X, y=y, names=names,
                                           chains=c)
    print_case("(a) tutorial, n = 200, p = 2 (Gibbs: 200 tune + 1000 draws per chain)", res)

    # (b) n = 10^6, p = 10
    n_large = 10**5 if args.quick else 10**6
    n_pymc = min(args.pymc_n or n_large, n_large)
    res = {}
    if not args.skip_pymc_large:
        Xp, yp, names = synthetic_data(n_pymc)
        fit_pymc(Xp, yp, names, draws=10, tune=10)  # warm the compile cache for this graph
        res["pymc+nutpie"] = repeat(fit_pymc, args.pymc_large_repeats, X=Xp, y=yp, names=names)
        res["pymc+nutpie"]["n"] = n_pymc
        del Xp, yp
    X, y, names = synthetic_data(n_large)
    start = time.perf_counter()
    gibbs.GibbsData.from_arrays(X, y)
    print(f"\none-off sufficient-statistics pass at n = {n_large}: "
          f"{time.perf_counter() - start:.3f} s", flush=True)
    res["gibbs, 4 chains"] = repeat(fit_gibbs, args.repeats, X=X, y=y, names=names, chains=4)
    for c in many:
        res[f"gibbs, {c} chains"] = repeat(fit_gibbs, args.repeats, X=X, y=y, names=names,
                                           chains=c)
    title = f"(b) synthetic, n = {n_large}, p = 10 (Gibbs time includes the data pass)"
    if "pymc+nutpie" not in res:
        print_case(title + ", PyMC skipped", res, reference="gibbs, 4 chains")
    else:
        if n_pymc < n_large:
            title += (f"\n    PyMC fitted at n = {n_pymc} only: its cost per gradient grows with n "
                      "and its ESS does not, so the ratios are LOWER BOUNDS for n = "
                      f"{n_large}")
        print_case(title, res)
    del X, y

    # sweep cost against n
    sweep_table()


def sweep_table():
    print("\ntime per Gibbs sweep (p = 10, HalfCauchy noise), median of 7 x 300 sweeps, "
          "sizes interleaved")
    sizes = [10**3, 10**5, 10**6]
    for chains in (4, 64):
        t = time_per_sweep(sizes, chains)
        cells = "  ".join(f"n={n:>8}: {1e6 * s:7.1f} us" for n, s in zip(sizes, t, strict=True))
        print(f"  {chains:>3} chains  {cells}   max/min {max(t) / min(t):.2f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pymc-large", action="store_true",
                        help="do not fit PyMC at n = 10^6 (it takes minutes per fit)")
    parser.add_argument("--pymc-large-repeats", type=int, default=1,
                        help="PyMC fits at n = 10^6 (default 1: each takes tens of minutes)")
    parser.add_argument("--pymc-n", type=int, default=None,
                        help="fit PyMC at this smaller n in case (b); the ratios are then lower "
                             "bounds (default: the same n as Gibbs)")
    parser.add_argument("--quick", action="store_true", help="n = 10^5 and fewer configurations")
    parser.add_argument("--sweeps-only", action="store_true",
                        help="only the time per sweep against n")
    main(parser.parse_args())
