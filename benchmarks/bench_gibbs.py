"""Benchmark: the sufficient-statistics Gibbs sampler against PyMC + nutpie, like for like.

Every fit, Gibbs and PyMC alike, runs PyMC's defaults: 4 chains, 1000 warmup + 1000 kept draws.
Speed is min bulk ESS (arviz, over every parameter including sigma) per second of the whole fit
call, the median of 3 fits run alternately (see ``_common.py`` for how compile time is counted).

(a) The PyMC "GLM: linear regression" tutorial (n = 200): ``sigma ~ HalfCauchy(10)``,
    ``Intercept, x ~ Normal(0, 20)``. Goal: Gibbs >= 100x nutpie.
(b) Synthetic data, n = 10^6 rows, p = 10, ``Normal(0, 20)`` coefficients, ``HalfCauchy(10)``
    noise. The Gibbs fit call includes the one pass over the rows (``GibbsData.from_arrays``).
    Goal: >= 1000x nutpie. nutpie at n = 10^6 takes about ten minutes per fit here, more than the
    whole ``make bench`` budget, so by default it is measured at n = 10^4 (3 fits, like for like)
    and carried to n = 10^6 through its own cost: the fits count nutpie's gradient evaluations
    (``n_steps``, warmup included) and the script times one log-density-and-gradient evaluation
    of the same PyMC model, compiled by PyTensor's numba backend as nutpie compiles it, at both
    sizes; the estimate adds ``evaluations x (time at 10^6 - time at 10^4) / 2`` (two chains in
    parallel on the 2 cores) to the measured wall time at 10^4. The ratio against nutpie *at
    n = 10^4* is printed too: a measured lower bound, since nutpie's cost grows with n and Gibbs'
    sweep does not. ``--nutpie-large`` fits nutpie at n = 10^6 itself (once).
(c) Time per sweep at n = 10^3, 10^5, 10^6 (p = 10, 4 chains): the sweep reads only X'X, X'y
    and y'y, so the three should agree (goal: within 1.5x). Sizes interleaved; each of 3 repeats
    keeps the fastest of 7 short blocks per size (load only slows blocks down), then the median.

Each case shows the numba fast path (``fast=True``, the figures the goals are judged on), the
numpy reference path, and the largest difference between their draws for the same seed.

Usage::

    python benchmarks/bench_gibbs.py [--nutpie-large] [--skip-large]
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import contextmanager

import _common as C  # noqa: I001  (sets the environment before numpy/pymc are imported)
import numpy as np

from reference import gibbs, sampling
from reference.datasets import tutorial
from reference.priors import HalfCauchy

PRIOR_SD = 20.0
HALF_CAUCHY = 10.0


# --------------------------------------------------------------------------------------------
# Data and fits
# --------------------------------------------------------------------------------------------
def tutorial_data():
    d = tutorial()
    X = np.column_stack([np.ones_like(d["x"]), d["x"]])
    return X, d["y"], ["Intercept", "x"]


def synthetic_data(n: int, p: int = 10, seed: int = C.SEED):
    rng = np.random.default_rng(seed)
    X = np.empty((n, p))
    X[:, 0] = 1.0
    X[:, 1:] = rng.standard_normal((n, p - 1))
    beta = rng.normal(0.0, 2.0, p)
    y = X @ beta + 1.5 * rng.standard_normal(n)
    return X, y, ["Intercept", *[f"x{j}" for j in range(1, p)]]


def fit_gibbs(X, y, names, seed, *, fast):
    """The whole Gibbs fit call: the pass over the rows, sampling, the DataTree."""
    start = time.perf_counter()
    data = gibbs.GibbsData.from_arrays(X, y)
    dt = gibbs.linear_gibbs(data, names=names, beta_cov=PRIOR_SD**2,
                            sigma_prior=HalfCauchy(HALF_CAUCHY), draws=C.DRAWS, tune=C.TUNE,
                            chains=C.CHAINS, seed=seed, fast=fast)
    return time.perf_counter() - start, dt


def pymc_model(X, y):
    """The PyMC model as a context-manager factory, and the data containers (for resizing)."""
    import pymc as pm

    holders = {}

    @contextmanager
    def build():
        with pm.Model(coords={"coef": list(range(X.shape[1]))}) as model:
            sigma = pm.HalfCauchy("sigma", beta=HALF_CAUCHY)
            if X.shape[1] == 2:  # the tutorial's model, written as in the tutorial
                intercept = pm.Normal("Intercept", 0, sigma=PRIOR_SD)
                slope = pm.Normal("x", 0, sigma=PRIOR_SD)
                pm.Normal("y", mu=intercept + slope * X[:, 1], sigma=sigma, observed=y)
            else:
                Xd, yd = pm.Data("X", X), pm.Data("y_obs", y)
                beta = pm.Normal("beta", 0, sigma=PRIOR_SD, dims="coef")
                pm.Normal("y", mu=Xd @ beta, sigma=sigma, observed=yd)
                holders.update(X=Xd, y=yd)
            holders["model"] = model
            yield model

    return build, holders


def gradient_seconds(X, y, sizes: dict) -> dict:
    """Seconds per joint log density + gradient evaluation of the p = 10 model, compiled by
    PyTensor's numba backend (what nutpie compiles), for each {n: (X, y)} in ``sizes``."""
    import pytensor
    import pytensor.tensor as pt

    build, holders = pymc_model(X, y)
    with build() as model:
        logp = model.logp()
        fn = pytensor.function(model.value_vars, [logp, *pt.grad(logp, model.value_vars)],
                               mode="NUMBA")
        point = model.initial_point()
        args = [point[v.name] for v in model.value_vars]
    out = {}
    for n, (Xn, yn) in sizes.items():
        holders["X"].set_value(Xn)
        holders["y"].set_value(yn)
        reps = max(5, int(2e6 / n))
        for _ in range(3):
            fn(*args)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        out[n] = C.median(times)
    return out


def summarize(rows: dict) -> dict:
    """Per method: medians of wall, ESS, ESS/s (and of nutpie's sampling-only ESS/s)."""
    out = {}
    for name, fits in rows.items():
        wall = np.array([f["wall"] for f in fits])
        ess = np.array([f["ess"] for f in fits])
        s = {"wall": C.median(wall), "ess": C.median(ess), "ess_s": C.median(ess / wall),
             "first_ess_s": float(ess[0] / wall[0]), "first_wall": float(wall[0]),
             "rhat": max(f["rhat"] for f in fits)}
        if "sampling" in fits[0]:
            samp = np.array([f["sampling"] for f in fits])
            s.update(sampling=C.median(samp), ess_s_excl=C.median(ess / samp))
        out[name] = s
    return out


def print_table(title, summary, base="pymc+nutpie"):
    ref = summary[base]["ess_s"]
    print(f"\n{title}; {C.load_line()}")
    print(f"  {'method':<34}{'wall s':>9}{'min ESS':>9}{'ESS/s':>11}{'vs nutpie':>11}"
          f"{'max R-hat':>10}")
    for name, s in summary.items():
        print(f"  {name:<34}{s['wall']:>9.3f}{s['ess']:>9.0f}{s['ess_s']:>11.0f}"
              f"{s['ess_s'] / ref:>10.1f}x{s['rhat']:>10.4f}")
    nut = summary[base]
    if "ess_s_excl" in nut:
        print(f"  nutpie sampling alone (compile excluded): {nut['sampling']:.3f} s, "
              f"{nut['ess_s_excl']:.0f} ESS/s")
    fast = summary.get("gibbs numba")
    if fast:
        print(f"  gibbs numba, first call of the process (compile or cache load included): "
              f"{fast['first_wall']:.3f} s, {fast['first_ess_s']:.0f} ESS/s", flush=True)


# --------------------------------------------------------------------------------------------
# (a) tutorial
# --------------------------------------------------------------------------------------------
def tutorial_case():
    X, y, names = tutorial_data()
    build, _ = pymc_model(X, y)
    rows = {"pymc+nutpie": [], "gibbs numba": [], "gibbs numpy": []}
    diff = 0.0
    for r in range(C.REPEATS):
        seed = C.SEED + r
        wall, samp, dt = C.nutpie_fit(build, seed)
        rows["pymc+nutpie"].append(dict(wall=wall, sampling=samp, ess=C.min_ess(dt),
                                        rhat=C.max_rhat(dt)))
        draws = {}
        for name, fast in (("gibbs numba", True), ("gibbs numpy", False)):
            wall, dt = fit_gibbs(X, y, names, seed, fast=fast)
            rows[name].append(dict(wall=wall, ess=C.min_ess(dt), rhat=C.max_rhat(dt)))
            draws[name] = dt
        diff = max(diff, C.max_draw_difference(draws["gibbs numpy"], draws["gibbs numba"]))
    s = summarize(rows)
    print_table("(a) tutorial, n = 200, p = 2, 4 chains x (1000 + 1000), medians of 3", s)
    nut, fast, slow = s["pymc+nutpie"], s["gibbs numba"], s["gibbs numpy"]
    ratio = fast["ess_s"] / nut["ess_s"]
    excl = fast["ess_s"] / nut["ess_s_excl"]
    cold = C.cold_compile_seconds(
        "import arviz_base, bench_gibbs as b\nX, y, names = b.tutorial_data()",
        "b.fit_gibbs(X, y, names, 0, fast=True)")
    cold_ratio = fast["ess"] / cold / nut["ess_s"]
    print(f"  gibbs numba, first fit call in a fresh process without the disk cache (JIT "
          f"compile included): {cold:.1f} s ({cold_ratio:.1f}x nutpie if every fit paid it)")
    C.record_goal("Gibbs, tutorial n=200, 4 chains: >= 100x nutpie", f"{ratio:.0f}x",
                  ratio >= 100,
                  f"numba path; vs nutpie's sampling alone {excl:.0f}x; numba first call of the "
                  f"process (disk cache) {fast['first_ess_s'] / nut['ess_s']:.0f}x; a fit call "
                  f"that compiles cold ({cold:.1f} s) {cold_ratio:.1f}x; numpy path "
                  f"{slow['ess_s'] / nut['ess_s']:.0f}x")
    return diff


# --------------------------------------------------------------------------------------------
# (b) n = 10^6, p = 10
# --------------------------------------------------------------------------------------------
def large_case(args):
    n_large, n_small = 10**6, 10**4
    X, y, names = synthetic_data(n_large)
    Xs, ys, _ = synthetic_data(n_small)
    rows = {"pymc+nutpie": [], "gibbs numba": [], "gibbs numpy": []}
    diff = 0.0
    for r in range(C.REPEATS):
        seed = C.SEED + r
        build, _ = pymc_model(Xs, ys)
        wall, samp, dt = C.nutpie_fit(build, seed, discard_tuned_samples=False)
        n_grad = float(dt.sample_stats["n_steps"].sum() + dt.warmup_sample_stats["n_steps"].sum())
        rows["pymc+nutpie"].append(dict(wall=wall, sampling=samp, ess=C.min_ess(dt, ["beta",
                                                                                    "sigma"]),
                                        rhat=C.max_rhat(dt, ["beta", "sigma"]), n_grad=n_grad))
        draws = {}
        for name, fast in (("gibbs numba", True), ("gibbs numpy", False)):
            wall, dtg = fit_gibbs(X, y, names, seed, fast=fast)
            rows[name].append(dict(wall=wall, ess=C.min_ess(dtg), rhat=C.max_rhat(dtg)))
            draws[name] = dtg
        diff = max(diff, C.max_draw_difference(draws["gibbs numpy"], draws["gibbs numba"]))
    start = time.perf_counter()
    gibbs.GibbsData.from_arrays(X, y)
    stats_pass = time.perf_counter() - start
    grad = gradient_seconds(Xs, ys, {n_small: (Xs, ys), n_large: (X, y)})
    nut = rows["pymc+nutpie"]
    for f in nut:  # nutpie's wall time carried from n = 10^4 to n = 10^6 by its own costs
        f["wall_est"] = f["wall"] + f["n_grad"] * (grad[n_large] - grad[n_small]) / 2
    est = C.median([f["ess"] / f["wall_est"] for f in nut])
    est_excl = C.median([f["ess"] / (f["sampling"] + f["wall_est"] - f["wall"]) for f in nut])
    s = summarize(rows)
    print_table(f"(b) synthetic, n = {n_large} (Gibbs) and n = {n_small} (PyMC), p = 10, "
                "4 chains x (1000 + 1000), medians of 3; Gibbs time includes the pass over the "
                f"rows ({stats_pass:.3f} s)", s)
    print(f"  nutpie gradient evaluations per fit (warmup included): "
          f"{C.median([f['n_grad'] for f in nut]):.0f}; one log density + gradient: "
          f"{1e3 * grad[n_small]:.3f} ms at n = {n_small}, {1e3 * grad[n_large]:.2f} ms at "
          f"n = {n_large}")
    print(f"  nutpie at n = {n_large}, estimated: wall {C.median([f['wall_est'] for f in nut]):.0f}"
          f" s per fit, {est:.2f} ESS/s ({est_excl:.2f} ESS/s compile excluded)")
    fast = s["gibbs numba"]
    measured_bound = fast["ess_s"] / s["pymc+nutpie"]["ess_s"]
    ratio = fast["ess_s"] / est
    note = (f"nutpie at n=10^6 estimated from its fits at n=10^4 and its gradient cost; "
            f"measured lower bound vs nutpie at n=10^4: {measured_bound:.0f}x; vs nutpie's "
            f"sampling alone {fast['ess_s'] / est_excl:.0f}x; numpy path "
            f"{s['gibbs numpy']['ess_s'] / est:.0f}x")
    if args.nutpie_large:
        build, _ = pymc_model(X, y)
        wall, samp, dt = C.nutpie_fit(build, C.SEED)
        ess = C.min_ess(dt, ["beta", "sigma"])
        print(f"  nutpie at n = {n_large}, measured once: wall {wall:.0f} s (sampling {samp:.0f} s)"
              f", min ESS {ess:.0f}, {ess / wall:.2f} ESS/s")
        ratio = fast["ess_s"] / (ess / wall)
        note = f"nutpie at n=10^6 measured once (estimate: {fast['ess_s'] / est:.0f}x); " + note
    C.record_goal("Gibbs, n=10^6, p=10, statistics pass included: >= 1000x nutpie",
                  f"{ratio:.0f}x", ratio >= 1000, note)
    return diff


# --------------------------------------------------------------------------------------------
# (c) sweep cost against n
# --------------------------------------------------------------------------------------------
def sweep_case():
    from reference import _fast_gibbs

    sizes = [10**3, 10**5, 10**6]
    built = {}
    for n in sizes:
        X, y, names = synthetic_data(n)
        built[n] = gibbs._build_kernel(X, y, names=names, beta_mean=0.0, beta_cov=PRIOR_SD**2,
                                       sigma_prior=HalfCauchy(HALF_CAUCHY), nig=False)
        del X, y  # the kernel keeps only X'X, X'y and y'y
    # Each repeat times short blocks of sweeps, rotating through the sizes, and keeps each size's
    # fastest block: another job on the machine only ever slows a block down, so the minimum
    # over blocks taken side by side is the steadiest figure; then the median of 3 repeats.
    numpy_sweeps, numba_sweeps, blocks = 300, 10000, 7
    times = {(path, n): [] for path in ("numba", "numpy") for n in sizes}
    for r in range(C.REPEATS):
        best = {key: np.inf for key in times}
        for b in range(blocks):
            for n in sizes[b % 3:] + sizes[:b % 3]:
                kernel, setup = built[n]
                rng = sampling.ChainRNG(C.SEED + r, C.CHAINS)
                state = kernel.init(rng)
                start = time.perf_counter()
                _fast_gibbs.run_chains(rng.generators, state, setup.data, setup.prior,
                                       setup.kind, setup.noise, tune=0, draws=numba_sweeps,
                                       thin=1)
                best["numba", n] = min(best["numba", n],
                                       (time.perf_counter() - start) / numba_sweeps)
                start = time.perf_counter()
                for _ in range(numpy_sweeps):
                    state, _ = kernel.step(rng, state, None)
                best["numpy", n] = min(best["numpy", n],
                                       (time.perf_counter() - start) / numpy_sweeps)
        for key, value in best.items():
            times[key].append(value)
    print(f"\n(c) time per Gibbs sweep of 4 chains (p = 10, HalfCauchy noise): medians of 3 "
          f"repeats of the fastest of {blocks} blocks, sizes interleaved; {C.load_line()}")
    spread = {}
    for path in ("numba", "numpy"):
        t = [C.median(times[path, n]) for n in sizes]
        spread[path] = max(t) / min(t)
        cells = "  ".join(f"n={n:>8}: {1e6 * s:8.2f} us" for n, s in zip(sizes, t, strict=True))
        print(f"  {path:<6}{cells}   max/min {spread[path]:.2f}", flush=True)
    C.record_goal("Gibbs sweep time at n=10^3, 10^5, 10^6 within 1.5x",
                  f"max/min {spread['numba']:.2f} (numba), {spread['numpy']:.2f} (numpy)",
                  max(spread.values()) <= 1.5)


def main(args):
    import arviz
    import numba
    import pymc

    print(f"python {platform.python_version()}, numpy {np.__version__}, pymc {pymc.__version__}, "
          f"arviz {arviz.__version__}, numba {numba.__version__}; {C.load_line()}", flush=True)
    diff = tutorial_case()
    if not args.skip_large:
        diff = max(diff, large_case(args))
    sweep_case()
    C.record_goal("Linear Gibbs: numba and numpy paths give the same draws (same seed)",
                  f"max |difference| {diff:.1e}", diff <= 1e-12,
                  "tests/test_fast_paths.py asserts it")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nutpie-large", action="store_true",
                        help="also fit nutpie at n = 10^6 (about ten minutes)")
    parser.add_argument("--skip-large", action="store_true", help="skip case (b)")
    main(parser.parse_args())
