"""Run one case through every backend and compare the posteriors with the exact answer.

The data flow is one way: a :class:`~models.spec.ModelSpec` goes to each backend, each backend
returns an ArviZ DataTree under the shared parameter names, and :func:`compare` turns those into
checks. Each check is a z-score in Monte Carlo standard errors (see :mod:`comparisons.agreement`).

Verdict threshold
-----------------
A check agrees when :math:`|z| < 4`. Under a correct sampler z is close to standard normal, so
one check raises a false alarm with probability :math:`2\\Phi(-4) \\approx 6.3 \\times 10^{-5}`;
a report of about 60 checks (two cases, three backends, three parameters, four quantities plus
correlations) then cries wolf less than 0.4% of the time (Bonferroni bound).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from comparisons.agreement import check_against_exact, check_correlation
from models.spec import ModelSpec

#: |z| at or above this is a disagreement (see module docstring for the false-alarm budget)
Z_MAX = 4.0
BACKENDS = ("reference", "pymc", "bambi")


def backend_seed(seed: int, backend: str) -> int:
    """A seed of its own for each backend, derived from the root seed.

    PyMC and Bambi build the same graph, so one seed would give them identical draws and their
    Monte Carlo errors would not be independent; deriving a seed per backend keeps them so.
    """
    key = zlib.crc32(backend.encode())
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


def _fit(backend: str):
    if backend == "reference":
        from models.reference_model import fit_reference

        return fit_reference
    if backend == "pymc":
        from models.pymc_model import fit_pymc

        return fit_pymc
    if backend == "bambi":
        from models.bambi_model import fit_bambi

        return fit_bambi
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}.")


@dataclass
class CaseResult:
    """Everything one case produced: fits, the exact answer, checks and timings."""

    spec: ModelSpec
    settings: dict
    posteriors: dict = field(default_factory=dict)
    wall_times: dict = field(default_factory=dict)
    exact: object = None
    checks: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "agree" if all(c["verdict"] == "agree" for c in self.checks) else "disagree"


def run_case(spec: ModelSpec, *, backends=BACKENDS, draws: int = 1000, tune: int = 1000,
             chains: int = 4, seed: int = 0, progress=None) -> CaseResult:
    """Fit ``spec`` with each backend and compare it with the exact posterior.

    ``progress(message)`` is called before each backend starts, for progress displays.
    """
    for b in backends:
        _fit(b)  # validate every name before any work
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed,
                "backends": list(backends),
                "backend_seeds": {b: backend_seed(seed, b) for b in backends}}
    result = CaseResult(spec, settings)
    from models.reference_model import ExactPosterior

    result.exact = ExactPosterior(spec)
    for b in backends:
        if progress is not None:
            progress(f"{spec.name}: fitting {b}")
        t0 = time.perf_counter()
        out = _fit(b)(spec, draws=draws, tune=tune, chains=chains,
                      seed=settings["backend_seeds"][b])
        result.posteriors[b] = out[0] if isinstance(out, tuple) else out
        result.wall_times[b] = time.perf_counter() - t0
    result.checks = compare(spec, result.posteriors, result.exact)
    return result


def compare(spec: ModelSpec, posteriors: dict, exact) -> list[dict]:
    """Checks of every backend's mean, sd, 5% and 95% quantiles and correlations against ``exact``."""
    checks = []
    coefs = list(spec.design().terms)
    for backend, dt in posteriors.items():
        post = dt["posterior"]
        for name in spec.parameters:
            x = np.asarray(post[name].values, dtype=float)
            for c in check_against_exact(name, x, exact.marginal(name)):
                checks.append(_row(backend, c))
        for a, b in combinations(coefs, 2):
            ma, mb = exact.marginal(a), exact.marginal(b)
            c = check_correlation((a, b), post[a].values, post[b].values,
                                  (ma.mean(), mb.mean()), (ma.std(), mb.std()), exact.corr(a, b))
            checks.append(_row(backend, c))
    return checks


def _row(backend: str, c) -> dict:
    row = {"backend": backend, "against": "exact", **c.as_dict(), "tolerance": Z_MAX}
    row["verdict"] = "agree" if abs(c.z) < Z_MAX else "disagree"
    return row
