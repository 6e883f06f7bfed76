"""Calibration and power of the harness's verdict rule (test code: bugs are injected here only).

* **False alarms.** Correct reference samplers (closed-form draws, Gibbs, Metropolis-Hastings,
  hierarchical Gibbs) on built-in cases, each run with its own seed, judged against the exact
  answer by :func:`comparisons.harness.compare`. A run is a false alarm when its verdict is not
  "agree" (a disagreement or an inconclusive run both stop a user).
* **Detection.** Eight injected bugs, each by monkeypatching one function or perturbing one input
  of a correct sampler; a run detects the bug when its verdict is not "agree".
* **Power.** Correct Gibbs draws shifted by delta posterior sds (or stretched about their mean by
  1 + delta): the detection rate as a function of delta, and the smallest delta detected in at
  least 95% of runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

import numpy as np

from comparisons.cases import get_case
from comparisons.harness import compare
from comparisons.verdicts import overall
from models.reference_model import _arrays, exact_answer, fit_reference
from reference.priors import InverseGamma, Normal

SEED0 = 20261121


@contextlib.contextmanager
def patched(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement(original))
    try:
        yield
    finally:
        setattr(module, name, original)


# ---------------------------------------------------------------------------------------------
# scenarios: (case, how to fit one run); every fit returns a DataTree under the case's names
# ---------------------------------------------------------------------------------------------
def _ref(case):
    spec = get_case(case)
    return spec, lambda seed: fit_reference(spec, seed=seed)


def _gibbs_nig(case="nig-synthetic"):
    """Gibbs (not the closed form) on a Normal-Inverse-Gamma case: exact answer known."""
    from reference.gibbs import linear_gibbs

    spec = get_case(case)
    a = _arrays(spec)
    sig: InverseGamma = spec.sigma

    def fit(seed):
        return linear_gibbs(a["X"], a["y"], names=a["names"], beta_mean=a["beta_mean"],
                            beta_cov=a["beta_cov"], sigma_prior=sig, nig=True, seed=seed)
    return spec, fit


CORRECT = {
    "closed-form draws (three-point)": lambda: _ref("three-point"),
    "Gibbs, HalfCauchy mixture (tutorial)": lambda: _ref("tutorial"),
    "Gibbs, Normal-Inverse-Gamma (nig-synthetic)": _gibbs_nig,
    "Metropolis-Hastings (blog-mh)": lambda: _ref("blog-mh"),
    "hierarchical Gibbs (eight-schools)": lambda: _ref("eight-schools"),
}


def _with_priors(spec, **priors):
    return dataclasses.replace(spec, priors={**spec.priors, **priors})


def bug_prior_scale():
    """The slope's prior sd times 1.5 (three-point, where the prior matters)."""
    spec = get_case("three-point")
    wrong = _with_priors(spec, x=Normal(0.0, 1.5), Intercept=Normal(0.0, 1.5))
    return spec, lambda seed: fit_reference(wrong, seed=seed)


def bug_prior_mean():
    """The slope's prior mean shifted by 0.5 prior sd (three-point)."""
    spec = get_case("three-point")
    wrong = _with_priors(spec, x=Normal(0.5, 1.0))
    return spec, lambda seed: fit_reference(wrong, seed=seed)


def bug_missing_jacobian():
    """MH on log sigma without the log-Jacobian (blog-mh)."""
    import reference.mh as mh

    spec, fit = _ref("blog-mh")

    def run(seed):
        def no_jacobian(real):
            return lambda u, positive: (real(u, positive)[0], np.zeros(u.shape[0]))
        with patched(mh, "constrain", no_jacobian):
            return fit(seed)
    return spec, run


def bug_ig_shape():
    """Gibbs: inverse-gamma shape a + n instead of a + n/2 (nig-synthetic)."""
    import reference.gibbs as gibbs

    spec, fit = _gibbs_nig()

    def run(seed):
        with patched(gibbs, "draw_sigma2",
                     lambda real: lambda rng, shape, scale, k, q:
                     real(rng, shape, scale, 2 * k, q)):
            return fit(seed)
    return spec, run


def bug_stale_sigma2():
    """Gibbs: the beta draw keeps using the first sigma^2 it saw (a precision cached once and
    never refreshed), on the ten-point blog data where sigma is uncertain."""
    import reference.gibbs as gibbs

    spec = dataclasses.replace(get_case("blog-mh"), reference_algorithm="gibbs",
                               priors={"x": Normal(5.0, 3.0)})
    spec = dataclasses.replace(spec, sigma=InverseGamma(2.0, 20.0, on="sigma2"))

    def run(seed):
        def stale(real):
            cache = {}

            def draw(rng, data, prior, sigma2):
                cache.setdefault("s2", np.array(sigma2, copy=True))
                return real(rng, data, prior, cache["s2"])
            return draw
        with patched(gibbs, "draw_beta", stale):
            return fit_reference(spec, seed=seed)
    return spec, run


def bug_dropped_intercept():
    """The intercept column is zero in the sampler's design (tutorial-nig, closed form)."""
    spec = get_case("tutorial-nig")
    data = spec.data.copy()
    wrong = dataclasses.replace(spec, data=data)
    d = wrong.design()
    X = d.X.copy()
    X[:, 0] = 0.0
    object.__setattr__(wrong, "_design", dataclasses.replace(d, X=X))
    return spec, lambda seed: fit_reference(wrong, seed=seed)


def bug_reversed_acceptance():
    """MH accepts when log u > log ratio (blog-mh)."""
    import reference.mh as mh

    spec, fit = _ref("blog-mh")

    def run(seed):
        with patched(mh, "mh_accept", lambda real: lambda log_ratio, log_u: log_u > log_ratio):
            return fit(seed)
    return spec, run


def bug_group_mapping():
    """Hierarchical Gibbs with the rows' county codes shuffled (radon-intercepts)."""
    import reference.hierarchical as H

    spec, fit = _ref("radon-intercepts")

    def run(seed):
        rng = np.random.default_rng(seed)

        def shuffled(real):
            def stats(X, y, groups, weights):
                groups = [dataclasses.replace(g, codes=rng.permutation(g.codes)) for g in groups]
                return real(X, y, groups, weights)
            return stats
        with patched(H, "sufficient_stats", shuffled):
            return fit(seed)
    return spec, run


BUGS = {
    "prior scale x1.5": bug_prior_scale,
    "prior mean +0.5 sd": bug_prior_mean,
    "missing Jacobian (MH)": bug_missing_jacobian,
    "inverse-gamma shape n, not n/2 (Gibbs)": bug_ig_shape,
    "stale sigma^2 in the beta draw (Gibbs)": bug_stale_sigma2,
    "dropped intercept": bug_dropped_intercept,
    "reversed MH acceptance": bug_reversed_acceptance,
    "wrong group-index mapping (hierarchical)": bug_group_mapping,
}


@functools.cache
def _prepared(name: str):
    """``(spec, fit, exact)`` of the scenario called ``name`` (in :data:`CORRECT`,
    :data:`BUGS` or ``"power"``), built once per process: a Dask worker reuses it."""
    scenario = {**CORRECT, **BUGS, "power": lambda: _ref("tutorial")}[name]
    spec, fit = scenario()
    return spec, fit, exact_answer(spec)


def one_verdict(name: str, seed: int) -> str:
    """The verdict of one run of the scenario ``name`` with ``seed`` (a unit of work)."""
    spec, fit, exact = _prepared(name)
    with np.errstate(all="ignore"):
        dt = fit(seed)
    return overall(compare(spec, {"under-test": dt}, exact))


def _serial_map(fn, units):
    return [fn(*u) for u in units]


def verdicts(name: str, runs: int, seed0: int = SEED0, map=None) -> dict:
    """Run the scenario ``name`` ``runs`` times (seeds ``seed0 + k``); count the verdicts.

    ``map`` runs the runs (e.g. :meth:`comparisons.parallel.Runner.map`, as Dask tasks); each
    run's seed is fixed by its index, so the counts equal those of a serial run.
    """
    counts = {"agree": 0, "disagree": 0, "inconclusive": 0}
    t0 = time.perf_counter()
    for v in (map or _serial_map)(one_verdict, [(name, seed0 + k) for k in range(runs)]):
        counts[v] += 1
    return {"runs": runs, **counts, "not_agree": runs - counts["agree"],
            "seconds": round(time.perf_counter() - t0, 1)}


def _power_run(deltas, kind: str, seed: int) -> dict:
    """For one seed: is each delta's shifted (or stretched) run flagged? (a unit for Dask)"""
    from arviz_base import from_dict

    spec, fit, exact = _prepared("power")
    sd = exact.marginal("x").std()
    dt = fit(seed)
    post = {n: dt["posterior"][n].values for n in spec.parameters}
    x = post["x"]
    out = {}
    for d in deltas:
        y = x + d * sd if kind == "mean" else x.mean() + (x - x.mean()) * (1 + d)
        shifted = from_dict({"posterior": {**post, "x": y}})
        out[d] = overall(compare(spec, {"under-test": shifted}, exact)) != "agree"
    return out


def power_curve(deltas, runs: int, kind: str = "mean", seed0: int = SEED0, map=None) -> dict:
    """Detection rate of a bias of ``delta`` posterior sds in the mean of ``x`` (or a stretch of
    the draws by 1 + delta about their mean, ``kind="sd"``), Gibbs on the tutorial case."""
    flags = (map or _serial_map)(_power_run, [(tuple(deltas), kind, seed0 + k)
                                             for k in range(runs)])
    return {d: sum(f[d] for f in flags) / runs for d in deltas}
