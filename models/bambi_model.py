"""The Bambi backend: a :class:`~models.spec.ModelSpec` as a ``bmb.Model`` formula call.

Bambi must fit the same model as the other backends, which takes three settings (see
STACK-NOTES): ``center_predictors=False`` (otherwise the Intercept prior applies to centred
predictors), ``auto_scale=False`` (otherwise unset priors depend on the data) and an explicit
``bmb.Prior`` on every term, with ``bmb.config["UNUSED_PRIORS"] = "error"`` so a misspelled
prior name fails instead of being ignored.

What Bambi has no keyword for is written in its own idioms:

* an inverse-gamma prior on :math:`\\sigma^2`: a custom ``dist=`` returning an unnamed
  ``pt.sqrt(sigma2)``;
* the Normal-Inverse-Gamma prior, whose coefficient scales are multiples of :math:`\\sigma`:
  custom ``dist=`` callables sharing one ``sigma2`` variable;
* known per-row noise sds (meta-analysis): a distributional formula
  ``sigma ~ 0 + offset(np.log(se))`` with a log link, so ``sigma = se`` exactly.

As for PyMC, :func:`bambi_code` is the source a reader sees and :func:`build_bambi_model` runs it.
"""

from __future__ import annotations

import numpy as np

from models._render import fmt, prior_kwargs
from models.pymc_model import keep_parameters
from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.priors import InverseGamma, Prior

_SHARED_SIGMA2 = '''
def shared_sigma2():
    """The one sigma^2 ~ InverseGamma(alpha, beta) of the Normal-Inverse-Gamma prior."""
    model = pm.modelcontext(None)
    if "sigma2" not in model.named_vars:
        pm.InverseGamma("sigma2", alpha={alpha}, beta={beta})
    return model["sigma2"]


def normal_times_sigma(name, mu, scale, dims=None, **kwargs):
    """Coefficient prior N(mu, (scale * sigma)^2)."""
    return pm.Normal(name, mu=mu, sigma=scale * pt.sqrt(shared_sigma2()), dims=dims)


def sigma_from_shared_variance(name, **kwargs):
    """Likelihood sd: the square root of the shared sigma^2 (unnamed, so Bambi keeps it)."""
    return pt.sqrt(shared_sigma2())
'''

_SIGMA_FROM_VARIANCE = '''
def sigma_from_variance(name, alpha, beta, **kwargs):
    """sigma = sqrt(sigma2) with sigma2 ~ InverseGamma(alpha, beta)."""
    return pt.sqrt(pm.InverseGamma("sigma2", alpha=alpha, beta=beta))
'''


def _prior(p: Prior | GroupPrior) -> str:
    if isinstance(p, GroupPrior):
        return f'bmb.Prior("Normal", mu=0, sigma={_prior(p.sigma)})'
    return f'bmb.Prior("{p.name}", {prior_kwargs(p)})'


def bambi_code(spec: ModelSpec) -> str:
    """The Bambi formula model for ``spec``, as source code (``data`` is the data frame)."""
    sigma = spec.sigma
    nig = spec.coef_scale_by_sigma
    ig_variance = isinstance(sigma, InverseGamma) and sigma.on == "sigma2"
    lines = ["import bambi as bmb"]
    if isinstance(sigma, NoiseColumn):
        lines.append("import numpy as np")
    if ig_variance:
        lines += ["import pymc as pm", "import pytensor.tensor as pt"]
    lines += ["", 'bmb.config["UNUSED_PRIORS"] = "error"  # a misspelled prior name fails']
    if nig:
        lines.append(_SHARED_SIGMA2.format(alpha=fmt(sigma.alpha), beta=fmt(sigma.beta)))
    elif ig_variance:
        lines.append(_SIGMA_FROM_VARIANCE)
    lines.append("priors = {")
    for name, p in spec.priors.items():
        if nig:
            lines.append(f'    "{name}": bmb.Prior("NormalTimesSigma", mu={fmt(p.mu)}, '
                         f"scale={fmt(p.sigma)}, dist=normal_times_sigma),")
        else:
            lines.append(f'    "{name}": {_prior(p)},')
    ks = spec.known_sigma
    if ks is not None:
        lines.append(f'    "sigma": {fmt(ks)},  # known noise sd')
    elif nig:
        lines.append('    "sigma": bmb.Prior("SharedSigma", dist=sigma_from_shared_variance),')
    elif ig_variance:
        lines.append(f'    "sigma": bmb.Prior("SigmaFromVariance", alpha={fmt(sigma.alpha)}, '
                     f"beta={fmt(sigma.beta)}, dist=sigma_from_variance),")
    elif not isinstance(sigma, NoiseColumn):
        lines.append(f'    "sigma": {_prior(sigma)},')
    lines.append("}")
    if isinstance(sigma, NoiseColumn):
        lines += [
            "# known per-row noise sds: log(sigma) = log(se) exactly, through an offset",
            f'formula = bmb.Formula("{spec.formula}", '
            f'"sigma ~ 0 + offset(np.log({sigma.column}))")',
            "model = bmb.Model(formula, data, priors=priors,",
            '                  link={"mu": "identity", "sigma": "log"},',
            "                  center_predictors=False, auto_scale=False)",
        ]
    else:
        lines += [f'model = bmb.Model("{spec.formula}", data, priors=priors,',
                  "                  center_predictors=False, auto_scale=False)"]
    return "\n".join(lines) + "\n"


def bambi_script(spec: ModelSpec) -> str:
    """:func:`bambi_code` preceded by the code that loads its data: it runs as printed."""
    from models._render import data_code

    return data_code(spec, arrays=False) + "\n" + bambi_code(spec)


def build_bambi_model(spec: ModelSpec):
    """Execute :func:`bambi_code` and return the ``bmb.Model``."""
    namespace = {"data": spec.design().data, "np": np}
    exec(compile(bambi_code(spec), f"<bambi model {spec.name}>", "exec"), namespace)  # noqa: S102
    return namespace["model"]


def fit_bambi(spec: ModelSpec, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
              seed: int = 0, sampler: str = "nutpie", progressbar: bool = False,
              target_accept: float = 0.8):
    """Fit ``spec`` with Bambi; returns an ArviZ DataTree under the shared parameter names.

    When sigma is the square root of a sampled ``sigma2`` (inverse-gamma prior on the
    variance), Bambi's posterior holds ``sigma2``; ``sigma`` is added as its square root.
    """
    model = build_bambi_model(spec)
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                      random_seed=seed, inference_method=sampler, progressbar=progressbar,
                      target_accept=target_accept)
    return keep_parameters(idata, spec)
