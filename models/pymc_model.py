"""The PyMC backend: a :class:`~models.spec.ModelSpec` written out as an explicit ``pm.Model``.

:func:`pymc_code` renders the specification as plain PyMC source that a reader can study, and
:func:`build_pymc_model` runs exactly that source, so the printed model and the fitted model can
never drift apart. The design matrix ``X`` and response ``y`` come from formulae, like Bambi's.
"""

from __future__ import annotations

import numpy as np

from models._render import fmt, identifier, prior_kwargs
from models.spec import ModelSpec
from reference.priors import InverseGamma

#: NUTS implementations PyMC can use here
SAMPLERS = ("nutpie", "pymc")


def _prior_line(var: str, name: str, prior, scale: str = "") -> str:
    kwargs = prior_kwargs(prior)
    if scale:  # Normal-Inverse-Gamma: the prior sd is in units of sigma
        kwargs = f"mu={fmt(prior.mu)}, sigma={fmt(prior.sigma)} * {scale}"
    return f'    {var} = pm.{prior.name}("{name}", {kwargs})'


def pymc_code(spec: ModelSpec) -> str:
    """The explicit PyMC model for ``spec``, as source code (``X``, ``y`` are the design)."""
    d = spec.design()
    used: set = {"pm", "pt", "np", "X", "y", "model", "mu", "sigma", "sigma2"}
    lines = [
        "import pymc as pm",
        "import pytensor.tensor as pt",
        "",
        f"# {spec.formula}; X columns: {', '.join(d.terms)}",
        "with pm.Model() as model:",
    ]
    sigma_var = ""
    ks = spec.known_sigma
    if ks is not None:
        lines.append(f"    sigma = {fmt(ks)}  # known noise sd")
        sigma_var = "sigma"
    elif isinstance(spec.sigma, InverseGamma) and spec.sigma.on == "sigma2":
        lines += [
            "    # inverse-gamma prior on the variance; sigma is its square root",
            f'    sigma2 = pm.InverseGamma("sigma2", alpha={fmt(spec.sigma.alpha)}, '
            f"beta={fmt(spec.sigma.beta)})",
            '    sigma = pm.Deterministic("sigma", pt.sqrt(sigma2))',
        ]
        sigma_var = "sigma"
    terms = []
    for j, t in enumerate(d.terms):
        var = identifier(t, used)
        scale = "sigma" if spec.coef_scale_by_sigma else ""
        lines.append(_prior_line(var, t, spec.priors[t], scale))
        terms.append(var if t == "Intercept" else f"{var} * X[:, {j}]")
    if not sigma_var:
        lines.append(_prior_line("sigma", "sigma", spec.sigma))
    lines += [
        f"    mu = {' + '.join(terms)}",
        f'    pm.Normal("{d.response}", mu=mu, sigma=sigma, observed=y)',
    ]
    return "\n".join(lines) + "\n"


def build_pymc_model(spec: ModelSpec):
    """Execute :func:`pymc_code` and return the ``pm.Model``."""
    d = spec.design()
    namespace = {"X": d.X, "y": d.y, "np": np}
    exec(compile(pymc_code(spec), f"<pymc model {spec.name}>", "exec"), namespace)  # noqa: S102
    return namespace["model"]


def fit_pymc(spec: ModelSpec, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
             seed: int = 0, sampler: str = "nutpie", progressbar: bool = False):
    """Sample ``spec`` with NUTS (nutpie or PyMC's own); returns an ArviZ DataTree.

    The posterior keeps the specification's parameters (``spec.parameters``) under their shared
    names; ``posterior.attrs["inference_library"]`` says which NUTS ran.
    """
    import pymc as pm

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown PyMC sampler {sampler!r}; choose one of {SAMPLERS}.")
    model = build_pymc_model(spec)
    idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                      random_seed=seed, nuts_sampler=sampler, progressbar=progressbar,
                      compute_convergence_checks=False, model=model)
    return _keep(idata, spec.parameters)


def _keep(dt, names):
    post = dt["posterior"].to_dataset()
    missing = [n for n in names if n not in post]
    if missing:
        raise RuntimeError(f"the fitted model lacks parameters {missing}; has {list(post)}.")
    dt["posterior"] = dt["posterior"].to_dataset()[names]
    return dt


__all__ = ["SAMPLERS", "build_pymc_model", "fit_pymc", "pymc_code"]
