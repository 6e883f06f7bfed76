"""Benchmark: bridge sampling on a 100-parameter Gaussian posterior (prints figures only).

The posterior is the exact posterior of a Gaussian linear regression with known noise
(:class:`reference.conjugate.GaussianKnownNoise`): p = 100 coefficients, n = 400 rows with
standard-normal predictors, noise sd 1, prior N(0, I). Its log evidence is known in closed form,
so the accuracy of every run is printed next to its time. The draws are 4 chains x 1000 exact
independent posterior draws (4000 in total); the log density is vectorized over draws through
:class:`reference.logdensity.GaussianLikelihood` (cost independent of n).

For each proposal (``normal``, ``warp3``) the script prints the median wall time over
``--repeats`` calls of :func:`reference.evidence.bridge_sampling` (each with a different proposal
seed), the estimate and its standard error, and the error against the closed form. Goal: at most
10 s per call (about 0.4 s on the 2-core machines).

Usage::

    python benchmarks/bench_bridge.py [--repeats 3] [--dim 100] [--draws 1000] [--chains 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import _common as C  # noqa: I001  (sets the environment before numpy is imported)
import numpy as np
from scipy import stats

from reference import evidence
from reference.conjugate import GaussianKnownNoise
from reference.logdensity import GaussianLikelihood

SEED = C.SEED


def problem(dim: int, n: int = 400, seed: int = SEED):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    y = X @ rng.normal(0.0, 1.0, dim) + rng.standard_normal(n)
    post = GaussianKnownNoise(X, y, noise_var=1.0, prior_cov=1.0)
    likelihood = GaussianLikelihood(X, y)

    def log_density(beta):  # (m, dim) -> (m,)
        return likelihood(beta, 1.0) + stats.norm.logpdf(beta).sum(axis=1)

    return post, log_density


def main(args):
    post, log_density = problem(args.dim)
    truth = post.log_evidence()
    draws = post.sample(np.random.default_rng(SEED), args.chains * args.draws)
    draws = draws.reshape(args.chains, args.draws, args.dim)
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"Gaussian posterior: d = {args.dim}, draws = {args.chains} x {args.draws}, "
          f"exact log evidence {truth:.4f}")
    times = {}
    for proposal in evidence.PROPOSALS:
        evidence.bridge_sampling(draws, log_density, proposal=proposal, seed=0)  # warm-up
        rows = []
        for r in range(args.repeats):
            start = time.perf_counter()
            est = evidence.bridge_sampling(draws, log_density, proposal=proposal, seed=r + 1)
            rows.append((time.perf_counter() - start, est))
        times[proposal] = float(np.median([t for t, _ in rows]))
        for t, est in rows:
            err = est.log_evidence - truth
            print(f"  {proposal:6s} {t:7.3f} s  log p(y) = {est.log_evidence:.4f}  se {est.se:.4f}"
                  f"  error {err:+.4f} ({err / est.se:+.2f} se)  "
                  f"{est.details['iterations']} iterations")
        print(f"{proposal:6s} median wall time over {args.repeats} repeats: "
              f"{times[proposal]:.3f} s")
    print(f"warp3 / normal time ratio: {times['warp3'] / times['normal']:.2f}")
    slowest = max(times.values())
    C.record_goal(f"Bridge sampling, {args.chains * args.draws} draws x {args.dim} parameters: "
                  "<= 10 s", f"{times['normal']:.2f} s (normal), {times['warp3']:.2f} s (warp3)",
                  slowest <= 10.0, f"median of {args.repeats} calls each")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=C.REPEATS)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain")
    parser.add_argument("--chains", type=int, default=4)
    main(parser.parse_args())
