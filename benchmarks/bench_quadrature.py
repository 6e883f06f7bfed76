"""Benchmark: the quadrature gold standard, block elimination against the dense factorization.

Prints figures only. For three cases of the comparison suite,

* ``radon-intercepts``: ``log.radon ~ basement + uranium + (1|county)``, 85 counties, 2 scales;
* ``sleepstudy``: ``Reaction ~ Days + (Days|Subject)``, 18 subjects x 2 terms, 3 scales;
* ``radon-slopes``: ``log.radon ~ basement + uranium + (basement|county)``, 85 counties x 2
  terms (p = 3, J = 170), 3 scales,

it times, as medians over ``--repeats`` runs,

1. construction, ``ScaleQuadrature(...)`` (mode, box, adaptive grid, conditional moments);
2. the queries of the harness and the report: for every coefficient, group level and free
   scale ``marginal(name, level)`` then ``mean()``, ``std()``, ``ppf(0.05)``, ``ppf(0.95)``,
   ``pdf`` on a 300-point grid for the scalar parameters (the report's density plot), and
   ``corr`` of every pair of coefficients,

under three configurations: ``dense`` (``fast=False``: one Cholesky factorization of the
(p + J + 1) bordered matrix per grid point, the algorithm before block elimination) and
``block`` (the default, ``fast=True``) at the default ``rtol=1e-6``, and ``block`` at
``rtol=1e-3``, ample for comparisons with Monte Carlo output. It also prints the largest
difference, in posterior sds, between block and dense answers (they should agree to rounding)
and between ``rtol=1e-3`` and ``1e-6`` (the grid error actually incurred).

The dense path on ``radon-slopes`` takes minutes per fit, more than ``make bench``'s budget
of ten minutes for everything, so it runs only behind ``--dense-slopes`` (once by default,
``--dense-slopes-repeats``). Other helpers' jobs on the same machine can slow any single run;
the load average is printed with the figures. Nothing here is a goal of the final table; the
figures are printed for the record.

Usage::

    python benchmarks/bench_quadrature.py [--repeats 3] [--dense-slopes]
                                          [--dense-slopes-repeats 1] [--cases sleepstudy ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import _common  # noqa: F401, I001  (sets the environment before numpy is imported)
import numpy as np
import scipy

from comparisons.cases import get_case
from models.reference_model import _arrays
from reference.quadrature import ScaleQuadrature

CASES = ["radon-intercepts", "sleepstudy", "radon-slopes"]
CONFIGS = {"dense, rtol 1e-6": dict(fast=False, rtol=1e-6),
           "block, rtol 1e-6": dict(fast=True, rtol=1e-6),
           "block, rtol 1e-3": dict(fast=True, rtol=1e-3)}


def build(case: str, **kw) -> ScaleQuadrature:
    spec = get_case(case)
    a = _arrays(spec)
    return ScaleQuadrature(a["X"], a["y"], a["groups"], names=a["names"],
                           beta_mean=a["beta_mean"], beta_cov=a["beta_cov"],
                           tau_priors=a["tau_priors"], weights=a["weights"],
                           sigma_prior=spec.sigma, **kw)


def queries(quad: ScaleQuadrature) -> dict:
    """What the harness and the report ask of every parameter; returns the summaries."""
    out = {}
    scalars = quad.names + quad.scale_names
    keys = [(n, None) for n in scalars] + [(g.name, j) for g in quad.groups
                                           for j in range(g.n_levels)]
    for name, level in keys:
        m = quad.marginal(name, level)
        out[(name, level)] = np.array([m.mean(), m.std(), m.ppf(0.05), m.ppf(0.95)])
        if level is None:
            m.pdf(np.linspace(m.ppf(0.001), m.ppf(0.999), 300))
    for i, a in enumerate(quad.names):
        for b in quad.names[i + 1:]:
            out[(a, b)] = np.array([quad.corr(a, b), 1.0])  # compared in units of 1
    return out


def run(case: str, config: dict, repeats: int):
    rows, summary, quad = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        quad = build(case, **config)
        t1 = time.perf_counter()
        summary = queries(quad)
        t2 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t2 - t0))
    return np.median(np.array(rows), axis=0), quad, summary


def max_difference(a: dict, b: dict) -> float:
    """Largest |a - b| over mean, sd, q05, q95 of every parameter, in posterior sds of b."""
    return max(float(np.max(np.abs(a[k] - b[k]) / b[k][1])) for k in b)


def main(args):
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
          f"medians of {args.repeats} runs (dense radon-slopes: "
          f"{args.dense_slopes_repeats if args.dense_slopes else 0})")
    header = (f"{'case':<17}{'configuration':<18}{'grid':<15}{'nodes':>8}{'build s':>9}"
              f"{'queries s':>10}{'total s':>9}{'vs dense':>9}")
    print(header)
    print("-" * len(header))
    for case in args.cases:
        results = {}
        for label, config in CONFIGS.items():
            repeats = args.repeats
            if case == "radon-slopes" and not config["fast"]:
                if not args.dense_slopes:
                    continue
                repeats = args.dense_slopes_repeats
            times, quad, summary = run(case, config, repeats)
            results[label] = (times, summary)
            dense = results.get("dense, rtol 1e-6")
            ratio = f"{dense[0][2] / times[2]:8.1f}x" if dense and config["fast"] else ""
            print(f"{case:<17}{label:<18}{str(quad.grid_shape):<15}{len(quad._mix_w):>8}"
                  f"{times[0]:>9.2f}{times[1]:>10.2f}{times[2]:>9.2f}{ratio:>9}", flush=True)
        block, coarse = results["block, rtol 1e-6"][1], results["block, rtol 1e-3"][1]
        if "dense, rtol 1e-6" in results:
            print(f"{'':<17}block vs dense: max difference "
                  f"{max_difference(block, results['dense, rtol 1e-6'][1]):.1e} sd")
        print(f"{'':<17}rtol 1e-3 vs 1e-6: max difference {max_difference(coarse, block):.1e} "
              "sd (mean, sd, q05, q95 of every parameter)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-slopes-repeats", type=int, default=1)
    parser.add_argument("--dense-slopes", action="store_true",
                        help="also the dense path on radon-slopes (minutes per run)")
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    main(parser.parse_args())
