"""Simulation-based calibration of every backend: the reference samplers, PyMC and Bambi.

Each study draws parameters from the priors of a small model description, data from the model
given them, fits the data with one backend and ranks the true values among the draws
(:func:`reference.sbc.sbc`, Talts et al. 2018; uniformity by simultaneous ECDF bands,
Saeilynoja et al. 2022). The models:

* ``regression``: ``y ~ x`` on 20 rows, ``x`` evenly spaced on [0, 1], ``Intercept, x ~ N(0,
  1)``, ``sigma ~ HalfNormal(1)``;
* ``hierarchical``: ``y ~ 1 + (1|g)`` with 6 groups of 4 rows, ``Intercept ~ N(0, 1)``,
  ``1|g ~ N(0, 1|g_sigma)``, ``1|g_sigma ~ HalfNormal(1)``, ``sigma ~ HalfNormal(1)``.

The studies (:data:`STUDIES`): the reference's Gibbs (slice step for the HalfNormal sd),
Metropolis-Hastings and hierarchical Gibbs, and NUTS on the PyMC and on the Bambi rendering of
the same descriptions. PyMC and Bambi models are compiled once per process (nutpie), with the
observed data turned into a shared variable that each replication replaces, so a replication
costs a sampler run, not a compile.

Replications are independent units: :func:`run_study` passes a ``map`` (e.g.
:meth:`comparisons.parallel.Runner.map`) to run them as Dask tasks; the ranks are the same as in
a serial run with the same seed.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from models.spec import GroupPrior, ModelSpec
from reference.priors import HalfNormal, Normal

#: draws per chain, warmup, chains, and ranks against L draws (thinned by ESS)
SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
L = 49


def regression_spec() -> ModelSpec:
    data = pd.DataFrame({"x": np.linspace(0.0, 1.0, 20), "y": np.zeros(20)})
    return ModelSpec("sbc-regression", data, "y ~ x",
                     {"Intercept": Normal(0.0, 1.0), "x": Normal(0.0, 1.0)}, HalfNormal(1.0))


def hierarchical_spec() -> ModelSpec:
    data = pd.DataFrame({"g": np.repeat([f"g{j}" for j in range(6)], 4), "y": np.zeros(24)})
    return ModelSpec("sbc-hierarchical", data, "y ~ 1 + (1|g)",
                     {"Intercept": Normal(0.0, 1.0), "1|g": GroupPrior(HalfNormal(1.0))},
                     HalfNormal(1.0))


#: study name -> (model description, backend, reference algorithm)
STUDIES = {
    "reference-gibbs": ("regression", "reference", "gibbs"),
    "reference-mh": ("regression", "reference", "mh"),
    "reference-hierarchical": ("hierarchical", "reference", "hierarchical-gibbs"),
    "pymc": ("regression", "pymc", None),
    "bambi": ("regression", "bambi", None),
    "pymc-hierarchical": ("hierarchical", "pymc", None),
}
SPECS = {"regression": regression_spec, "hierarchical": hierarchical_spec}


@cache
def _spec(model: str, algorithm: str | None = None) -> ModelSpec:
    spec = SPECS[model]()
    return dataclasses.replace(spec, reference_algorithm=algorithm) if algorithm else spec


def simulate(model: str, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Parameters from the priors of ``model`` and data given them: ``(theta, y)``."""
    spec = _spec(model)
    d = spec.design()
    theta, mu = {}, np.zeros(len(d.y))
    for t in d.common:
        theta[t.name] = float(spec.priors[t.name].rvs(rng))
        mu = mu + theta[t.name] * d.X[:, t.columns.start]
    for g in d.groups:
        tau = float(spec.priors[g.name].sigma.rvs(rng))
        b = tau * rng.standard_normal(len(g.levels))
        theta[f"{g.name}_sigma"], theta[g.name] = tau, b
        mu = mu + b[g.codes] * g.column
    theta["sigma"] = float(spec.sigma.rvs(rng))
    return theta, mu + theta["sigma"] * rng.standard_normal(len(mu))


def _with_y(spec: ModelSpec, y: np.ndarray) -> ModelSpec:
    return dataclasses.replace(spec, data=spec.data.assign(y=y))


#: the name of the shared variable holding the observed data
OBSERVED = "sbc_observed_y"


@cache
def _compiled(model: str, backend: str):
    """A nutpie-compiled PyMC model of ``model`` (as PyMC or as Bambi writes it) whose observed
    data are a shared variable, and that variable's name: compiled once per process."""
    import nutpie
    import pytensor
    from pymc.model.fgraph import ModelObservedRV, fgraph_from_model, model_from_fgraph

    spec = _spec(model)
    if backend == "pymc":
        from models.pymc_model import build_pymc_model

        pm_model = build_pymc_model(spec)
    else:
        from models.bambi_model import build_bambi_model

        bmb_model = build_bambi_model(spec)
        bmb_model.build()
        pm_model = bmb_model.backend.model
    fg, _ = fgraph_from_model(pm_model)
    for node in [n for n in fg.apply_nodes if isinstance(n.op, ModelObservedRV)]:
        value = node.inputs[1]
        fg.replace(value, pytensor.shared(np.asarray(value.data), name=OBSERVED),
                   import_missing=True)
    return nutpie.compile_pymc_model(model_from_fgraph(fg)), OBSERVED


def fit(study: str, y: np.ndarray, seed: int):
    """Fit one simulated data set with the study's backend; returns a DataTree (or dict)."""
    model, backend, algorithm = STUDIES[study]
    if backend == "reference":
        from models.reference_model import fit_reference

        return fit_reference(_with_y(_spec(model, algorithm), y), seed=seed, **SETTINGS)
    import nutpie

    compiled, name = _compiled(model, backend)
    trace = nutpie.sample(compiled.with_data(**{name: y}), seed=seed, progress_bar=False,
                          cores=1, **SETTINGS)
    post = trace["posterior"] if "posterior" in getattr(trace, "children", {}) else \
        trace.posterior
    return {k: np.asarray(post[k].values) for k in _spec(model).parameters}


class _Simulate:
    """``simulate`` bound to a model (a picklable callable for Dask)."""

    def __init__(self, model: str):
        self.model = model

    def __call__(self, rng):
        return simulate(self.model, rng)


class _Fit:
    """``fit`` bound to a study (a picklable callable for Dask)."""

    def __init__(self, study: str):
        self.study = study

    def __call__(self, y, seed):
        return fit(self.study, y, seed)


def run_study(study: str, replications: int, *, seed: int = 20261121, map=None,
              alpha: float = 0.01):
    """One SBC study (:data:`STUDIES`): ``replications`` simulated data sets, ranks against
    :data:`L` draws thinned by ESS, tested at family-wise level ``alpha``."""
    from reference.sbc import sbc

    if study not in STUDIES:
        raise ValueError(f"unknown SBC study {study!r}; valid: {', '.join(STUDIES)}.")
    model = STUDIES[study][0]
    return sbc(_Simulate(model), _Fit(study), replications=replications, L=L, thin="ess",
               alpha=alpha, seed=seed, map=map)


def write(results: dict, out: Path) -> Path:
    """``out/sbc/sbc.json`` and ``index.html`` (ECDF-difference plots with their bands)."""
    import matplotlib.pyplot as plt

    from comparisons.plots import png_base64
    from comparisons.report import _badge, _page, atomic_write

    folder = Path(out) / "sbc"
    rows, figs, blob = "", "", {}
    for name, r in results.items():
        blob[name] = {"passed": bool(r.passed), "replications": r.replications, "L": r.L,
                      "alpha": r.alpha, "p_values": r.p_values, "seconds": round(r.seconds, 1),
                      "ess_shortfall": int(r.ess_shortfall), "attrs": r.attrs,
                      "model": STUDIES[name][0], "backend": STUDIES[name][1]}
        verdict = "agree" if r.passed else "disagree"
        rows += (f"<tr><td style='text-align:left'>{name}</td><td>{STUDIES[name][1]}</td>"
                 f"<td>{r.replications}</td><td>{min(r.p_values.values()):.3g}</td>"
                 f"<td>{_badge(verdict)}</td></tr>")
        diffs = r.ecdf_difference()
        fig, axes = plt.subplots(1, len(diffs), figsize=(2.6 * len(diffs), 2.4), squeeze=False)
        for ax, (comp, d) in zip(axes[0], diffs.items(), strict=True):
            ax.fill_between(d["z"], d["lower_diff"], d["upper_diff"], color="0.85", step="post")
            ax.step(d["z"], d["ecdf_diff"], where="post", color="C0")
            ax.set_title(comp, fontsize=9)
        fig.suptitle(name, fontsize=10)
        figs += f'<h3>{name}</h3><img alt="{name}" src="data:image/png;base64,{png_base64(fig)}">'
    atomic_write(folder / "sbc.json", json.dumps(blob, indent=1, default=str))
    body = ("<h1>Simulation-based calibration</h1><p>Each study simulates data from the prior, "
            f"fits them and ranks the true values among {L} draws thinned by ESS; the ranks "
            "must be uniform (simultaneous ECDF bands at a 1% family-wise level, Saeilynoja "
            "et al. 2022). The grey band is where the ECDF minus the uniform CDF must stay.</p>"
            "<table><tr><th>study</th><th>backend</th><th>replications</th>"
            f"<th>smallest p</th><th>uniform</th></tr>{rows}</table>{figs}")
    atomic_write(folder / "index.html", _page("SBC", body))
    return folder / "index.html"
