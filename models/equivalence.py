r"""Are the backends one model? Compare their log densities, term by term, before any sampling.

Every backend's unnormalized log posterior is a sum of terms: one prior term per free parameter
and the likelihood. At random points :math:`\theta_1, \dots, \theta_K` (K >= 20), all in one
parametrization, each term of the reference is compared with the same term of PyMC and of Bambi.
For a correct rendering the difference :math:`\ell^{ref}_t(\theta_k) - \ell^{b}_t(\theta_k)` does
not depend on k (it is zero when both are normalized, a constant when one drops a normalizing
constant). When a difference varies, the models differ *in that term*, and the check says which,
so a mismatch is never mistaken for a sampler being wrong.

The shared parametrization is Bambi's, on the constrained scale (no Jacobians): coefficients,
group offsets ``1|g_offset`` (the effects are ``offset * 1|g_sigma``), group sds, and ``sigma``
(or ``sigma2`` when the prior is placed on the variance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.priors import Flat, InverseGamma, Normal, Prior

#: differences must be constant to this relative precision
RTOL = 1e-8
#: PyTensor mode of the term functions: a few evaluations do not repay the default linker's
#: compile (cold, 15-50 s per model); the Python linker compiles in about a second
MODE = "FAST_COMPILE"
N_POINTS = 20


@dataclass
class TermCheck:
    term: str
    backend: str
    spread: float
    tolerance: float
    ok: bool
    note: str = ""


@dataclass
class EquivalenceResult:
    """Per-term comparison of every backend with the reference."""

    passed: bool
    n_points: int
    checks: list = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.passed:
            return (f"log densities agree term by term at {self.n_points} random points "
                    f"(every difference constant to {RTOL:g} relative)")
        bad = [c for c in self.checks if not c.ok]
        return "; ".join(f"{c.backend} differs from the reference in the {c.term}"
                         + (f" ({c.note})" if c.note else "") for c in bad)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "n_points": self.n_points, "message": self.message,
                "terms": [c.__dict__ for c in self.checks]}


def _variance_param(spec: ModelSpec) -> bool:
    return isinstance(spec.sigma, InverseGamma) and spec.sigma.on == "sigma2"


# ---------------------------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------------------------
def random_points(spec: ModelSpec, n: int = N_POINTS, seed: int = 0) -> list[dict]:
    """``n`` points in the shared parametrization, drawn from the priors (N(0, 1) where flat)."""
    rng = np.random.default_rng(seed)
    d = spec.design()
    pts = []
    for _ in range(n):
        p = {}
        for t in d.common:
            prior = spec.priors[t.name]
            size = None if t.levels is None else len(t.levels)
            p[t.name] = (rng.standard_normal(size) if isinstance(prior, Flat)
                         else np.asarray(prior.rvs(rng, size), float))
        for g in d.groups:
            p[f"{g.name}_sigma"] = float(spec.priors[g.name].sigma.rvs(rng))
            p[f"{g.name}_offset"] = rng.standard_normal(len(g.levels))
        if not spec.sigma_is_known:
            s = float(spec.sigma.rvs(rng))
            if _variance_param(spec):
                p["sigma2"] = s * s
            else:
                p["sigma"] = s
        pts.append(p)
    return pts


# ---------------------------------------------------------------------------------------------
# the reference's terms
# ---------------------------------------------------------------------------------------------
def reference_terms(spec: ModelSpec, point: dict) -> dict:
    """The reference's log density at ``point``, split into named terms."""
    d = spec.design()
    out = {}
    sigma = _sigma(spec, point)
    for t in d.common:
        prior = spec.priors[t.name]
        v = point[t.name]
        if spec.coef_scale_by_sigma:
            prior = Normal(prior.mu, prior.sigma * float(np.sqrt(point["sigma2"])))
        out[f"prior of {t.name}"] = float(np.sum(prior.logpdf(v)))
    mu = np.zeros(len(d.y))
    for t in d.common:
        mu = mu + d.X[:, t.columns] @ np.atleast_1d(point[t.name])
    for g in d.groups:
        gp: GroupPrior = spec.priors[g.name]
        tau = point[f"{g.name}_sigma"]
        off = point[f"{g.name}_offset"]
        out[f"prior of {g.name}_sigma"] = float(gp.sigma.logpdf(tau))
        out[f"prior of {g.name}_offset"] = float(np.sum(stats.norm.logpdf(off)))
        mu = mu + (off * tau)[g.codes] * g.column
    if "sigma2" in point:
        ig: InverseGamma = spec.sigma
        out["prior of sigma2"] = float(stats.invgamma.logpdf(point["sigma2"], ig.alpha,
                                                             scale=ig.beta))
    elif "sigma" in point:
        out["prior of sigma"] = float(spec.sigma.logpdf(point["sigma"]))
    out["likelihood"] = float(np.sum(stats.norm.logpdf(d.y, mu, sigma)))
    return out


def _sigma(spec: ModelSpec, point: dict):
    if spec.known_sigma is not None:
        return spec.known_sigma
    if isinstance(spec.sigma, NoiseColumn):
        return spec.design().noise_sd
    return float(np.sqrt(point["sigma2"])) if "sigma2" in point else point["sigma"]


# ---------------------------------------------------------------------------------------------
# a PyMC model's terms (Bambi's too: it builds a PyMC model)
# ---------------------------------------------------------------------------------------------
class PyMCTerms:
    """Per-term log densities of a PyMC model, evaluated at points on the constrained scale."""

    def __init__(self, model):
        import pytensor.tensor as pt

        self.model = model
        self.rvs = list(model.free_RVs)
        terms = [f"prior of {rv.name}" for rv in self.rvs] + ["likelihood"]
        outs = [model.logp(vars=[rv], jacobian=False) for rv in self.rvs]
        outs.append(model.logp(vars=model.observed_RVs, jacobian=False))
        self.names = terms
        self.fn = model.compile_fn(outs, point_fn=True, mode=MODE)
        self._forward = {}
        for rv in self.rvs:
            tr = model.rvs_to_transforms.get(rv)
            value = model.rvs_to_values[rv]
            if tr is None:
                self._forward[rv.name] = (value.name, None)
            else:
                x = pt.dvector("x") if rv.ndim else pt.dscalar("x")
                f = model.compile_fn(tr.forward(x, *rv.owner.inputs), inputs=[x],
                                     point_fn=False, mode=MODE)
                self._forward[rv.name] = (value.name, f)

    def __call__(self, point: dict) -> dict:
        missing = [rv.name for rv in self.rvs if rv.name not in point]
        if missing:
            return {"__missing__": missing}
        values = {}
        for rv in self.rvs:
            vname, f = self._forward[rv.name]
            v = np.asarray(point[rv.name], dtype=float)
            values[vname] = v if f is None else np.asarray(f(v), dtype=float)
        return dict(zip(self.names, (float(o) for o in self.fn(values)), strict=True))


def check_equivalence(spec: ModelSpec, models: dict, *, n_points: int = N_POINTS,
                      seed: int = 0) -> EquivalenceResult:
    """Compare the reference's terms with those of each PyMC model in ``models`` (name -> model).

    Returns an :class:`EquivalenceResult`; ``result.message`` names the first differing terms.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2; received {n_points}.")
    points = random_points(spec, n_points, seed)
    ref = [reference_terms(spec, p) for p in points]
    checks = []
    for backend, model in models.items():
        evaluator = PyMCTerms(model)
        vals = [evaluator(p) for p in points]
        if "__missing__" in vals[0]:
            checks.append(TermCheck("parameters", backend, np.inf, 0.0, False,
                                    f"it has no parameter {vals[0]['__missing__']}"))
            continue
        ref_terms, b_terms = set(ref[0]), set(vals[0])
        for term in sorted(ref_terms - b_terms):
            checks.append(TermCheck(term, backend, np.inf, 0.0, False, "missing in " + backend))
        for term in sorted(b_terms - ref_terms):
            checks.append(TermCheck(term, backend, np.inf, 0.0, False,
                                    "present only in " + backend))
        for term in [t for t in ref[0] if t in b_terms]:
            a = np.array([r[term] for r in ref])
            b = np.array([v[term] for v in vals])
            diff = a - b
            if not np.all(np.isfinite(diff)):
                checks.append(TermCheck(term, backend, np.inf, 0.0, False, "not finite"))
                continue
            spread = float(diff.max() - diff.min())
            tol = RTOL * max(1.0, float(np.abs(a).max()))
            checks.append(TermCheck(term, backend, spread, tol, spread <= tol))
    return EquivalenceResult(all(c.ok for c in checks), n_points, checks)


def check_spec(spec: ModelSpec, backends=("pymc", "bambi"), **kw) -> EquivalenceResult:
    """Build the PyMC and/or Bambi models of ``spec`` and run :func:`check_equivalence`."""
    models = {}
    if "pymc" in backends:
        from models.pymc_model import build_pymc_model

        models["pymc"] = build_pymc_model(spec)
    if "bambi" in backends:
        from models.bambi_model import build_bambi_model

        m = build_bambi_model(spec)
        m.build()
        models["bambi"] = m.backend.model
    return check_equivalence(spec, models, **kw)


__all__ = ["EquivalenceResult", "check_equivalence", "check_spec", "random_points",
           "reference_terms", "Prior"]
