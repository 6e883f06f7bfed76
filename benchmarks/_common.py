"""What the benchmark scripts share: the environment, the PyMC + nutpie fit, ESS, medians, and
the goal rows that ``run_all.py`` gathers into its final table.

Every comparison is like for like with PyMC's defaults: 4 chains, 1000 warmup + 1000 kept draws,
``pm.sample(nuts_sampler="nutpie", chains=4, cores=2)``. Speed is the minimum arviz bulk ESS over
the model's parameters divided by the wall time of the whole fit call, as a median over 3 fits
(seeds SEED, SEED + 1, SEED + 2) run alternately with the other methods, so that a change in
machine load hits every method alike.

Compile time is shown both ways:

* PyMC builds and compiles its model inside every ``pm.sample`` call (PyTensor's disk cache
  makes that a few seconds), so the fit call counts the compile once; "excl. compile" uses the
  ``sampling_time`` nutpie reports for the sampling alone.
* numba compiles the Gibbs fast path once per process, in its first call, or loads it from the
  disk cache (``reference/_numba.py``). The median of 3 calls is a warm call; beside it are the
  first call of the benchmark process (disk cache as found) and the first fit call of a fresh
  process with the disk cache off, the cold JIT compile included.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# the numba fast path caches its compiled code beside the suite's other caches (as make does)
os.environ.setdefault("CROSSCHECK_CACHE", str(ROOT / ".cache" / "crosscheck"))

import numpy as np  # noqa: E402

SEED = 20261121
REPEATS = 3
#: PyMC's defaults, used by every like-for-like row
CHAINS, TUNE, DRAWS = 4, 1000, 1000


def nutpie_fit(build, seed: int, **sample_kw) -> tuple[float, float, object]:
    """Build the PyMC model with ``build()`` (a context manager) and sample it with nutpie as
    PyMC's defaults do. Returns (wall time of the whole call, nutpie's sampling time, DataTree)."""
    import pymc as pm

    kw = dict(draws=DRAWS, tune=TUNE, chains=CHAINS, cores=2, nuts_sampler="nutpie",
              random_seed=seed, progressbar=False)
    kw.update(sample_kw)
    start = time.perf_counter()
    with build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = pm.sample(**kw)
    wall = time.perf_counter() - start
    return wall, float(dt.posterior.attrs["sampling_time"]), dt


def min_ess(dt, var_names=None) -> float:
    """Minimum arviz bulk ESS over the given variables (default: all) and their entries."""
    import arviz as az

    ess = az.ess(dt, var_names=var_names)
    return float(min(np.min(ess[v].values) for v in ess.data_vars))


def max_rhat(dt, var_names=None) -> float:
    import arviz as az

    rhat = az.rhat(dt, var_names=var_names)
    return float(max(np.max(rhat[v].values) for v in rhat.data_vars))


def max_draw_difference(a, b) -> float:
    """Largest |a - b| over every posterior variable of two DataTrees (same seed, two paths)."""
    return float(max(np.max(np.abs(a.posterior[v].values - b.posterior[v].values))
                     for v in a.posterior.data_vars))


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def record_goal(goal: str, measured: str, holds: bool | None, note: str = "") -> None:
    """Print a goal row and append it to $BENCH_GOALS (a JSON-lines file run_all.py reads)."""
    verdict = {True: "holds", False: "DOES NOT HOLD", None: "n/a"}[holds]
    print(f"GOAL  {goal}: {measured} -> {verdict}" + (f"  ({note})" if note else ""), flush=True)
    path = os.environ.get("BENCH_GOALS")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"goal": goal, "measured": measured, "holds": holds,
                                 "note": note}) + "\n")


def load_line() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def cold_compile_seconds(setup: str, call: str) -> float:
    """Seconds of the first fast-path call in a fresh process with numba's disk cache off
    (``CROSSCHECK_NUMBA_CACHE=0``): the JIT compile, numba's import included, that a process
    pays once when no cache is at hand. ``setup`` runs untimed first."""
    import subprocess
    import sys
    import textwrap

    code = (f"import sys, time\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            f"{textwrap.dedent(setup)}\nstart = time.perf_counter()\n{textwrap.dedent(call)}\n"
            "print(time.perf_counter() - start)")
    env = dict(os.environ, CROSSCHECK_NUMBA_CACHE="0")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])
