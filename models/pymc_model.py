"""The PyMC backend: a :class:`~models.spec.ModelSpec` written out as an explicit ``pm.Model``.

:func:`pymc_code` renders the specification as plain PyMC source that a reader can study, and
:func:`build_pymc_model` runs exactly that source, so the printed model and the fitted model
cannot drift apart. ``X`` (the common design matrix from formulae), ``y``, and for group terms
``codes`` (group index per row) and ``Z`` (the term's column per row) are the data.

Group terms use Bambi's non-centred parametrization, under Bambi's names:
``1|g_offset ~ N(0, 1)``, ``1|g = 1|g_offset * 1|g_sigma``.
"""

from __future__ import annotations

import numpy as np

from models._render import fmt, identifier, prior_kwargs
from models.spec import ModelSpec, NoiseColumn
from reference.priors import InverseGamma, Prior

#: NUTS implementations PyMC can use here
SAMPLERS = ("nutpie", "pymc")


def _dist(prior: Prior, name: str, dims: str | None = None, scale: str = "") -> str:
    kwargs = prior_kwargs(prior)
    if scale:  # Normal-Inverse-Gamma: the prior sd is in units of sigma
        kwargs = f"mu={fmt(prior.mu)}, sigma={fmt(prior.sigma)} * {scale}"
    if dims:
        kwargs += f', dims="{dims}"'
    return f'pm.{prior.name}("{name}"{", " if kwargs else ""}{kwargs})'


def pymc_code(spec: ModelSpec, *, marginal: bool = False) -> str:
    """The explicit PyMC model for ``spec``, as source code.

    ``marginal=True`` writes the varying intercepts integrated out (see
    :func:`marginal_pymc_code`, which checks that the model allows it).
    """
    d = spec.design()
    used: set = {"pm", "pt", "np", "X", "y", "Z", "codes", "coords", "noise_sd", "model", "mu",
                 "sigma", "sigma2"}
    if marginal:
        used |= {"level", "w", "r", "A", "B", "tau2", "logdet", "quad"}
    lines = ["import numpy as np"] if marginal else []
    lines += ["import pymc as pm", "import pytensor.tensor as pt", ""]
    lines.append(f"# {spec.formula}")
    lines.append(f"# X columns: {', '.join(d.column_names()) or '(none)'}")
    coords = spec.coords()
    lines.append("with pm.Model(coords=coords) as model:" if coords else
                 "with pm.Model() as model:")
    body = []
    scale_var = ""
    if isinstance(spec.sigma, InverseGamma) and spec.sigma.on == "sigma2":
        body += ["# inverse-gamma prior on the variance; sigma is its square root",
                 f'sigma2 = pm.InverseGamma("sigma2", alpha={fmt(spec.sigma.alpha)}, '
                 f"beta={fmt(spec.sigma.beta)})",
                 'sigma = pm.Deterministic("sigma", pt.sqrt(sigma2))']
        scale_var = "sigma" if spec.coef_scale_by_sigma else ""
    terms = []
    for t in d.common:
        var = identifier(t.name, used)
        body.append(f"{var} = {_dist(spec.priors[t.name], t.name, t.dim, scale_var)}")
        sl = t.columns
        if t.name == "Intercept":
            terms.append(var)
        elif t.levels is None:
            terms.append(f"{var} * X[:, {sl.start}]")
        else:
            terms.append(f"X[:, {sl.start}:{sl.stop}] @ {var}")
    group_var = {}
    for g in d.groups:
        var = group_var[g.name] = identifier(g.name, used)
        gp = spec.priors[g.name]
        if marginal:  # only the scale: the effects are integrated out below
            body.append(f"{var}_sigma = {_dist(gp.sigma, g.name + '_sigma')}")
            continue
        body += [f"# {g.name}: one effect per level of {g.group}, non-centred as in Bambi",
                 f"{var}_sigma = {_dist(gp.sigma, g.name + '_sigma')}",
                 f'{var}_offset = pm.Normal("{g.name}_offset", mu=0, sigma=1, dims="{g.dim}")',
                 f'{var} = pm.Deterministic("{g.name}", {var}_offset * {var}_sigma, '
                 f'dims="{g.dim}")']
        terms.append(f'{var}[codes["{g.name}"]]' +
                     ("" if g.expr == "1" else f' * Z["{g.name}"]'))
    ks = spec.known_sigma
    if ks is not None:
        body.append(f"sigma = {fmt(ks)}  # known noise sd")
    elif isinstance(spec.sigma, NoiseColumn):
        body.append(f"sigma = noise_sd  # known per-row sds, column {spec.sigma.column!r}")
    elif "sigma = pm.Deterministic" not in "\n".join(body):
        body.append(f"sigma = {_dist(spec.sigma, 'sigma')}")
    if marginal:
        g = d.groups[0]
        tau = f"{group_var[g.name]}_sigma"
        body += [f"mu = {' + '.join(terms) if terms else 'pt.zeros(len(y))'}",
                 f"# {g.name} integrated out: the rows of each level of {g.group} are jointly",
                 "# N(mu_j, D_j + tau^2 11'); determinant lemma and Sherman-Morrison per level",
                 "w = pt.ones(len(y)) / sigma**2            # noise precision per row",
                 "r = y - mu",
                 f'level = codes["{g.name}"]                 # level of each row',
                 f"A = pt.inc_subtensor(pt.zeros({len(g.levels)})[level], w)      "
                 "# sum of w in each level",
                 f"B = pt.inc_subtensor(pt.zeros({len(g.levels)})[level], w * r)  "
                 "# sum of w r in each level",
                 f"tau2 = {tau}**2",
                 "logdet = -pt.sum(pt.log(w)) + pt.sum(pt.log1p(tau2 * A))",
                 "quad = pt.sum(w * r**2) - pt.sum(tau2 * B**2 / (1 + tau2 * A))",
                 f'pm.Potential("{d.response}", '
                 "-0.5 * (len(y) * np.log(2 * np.pi) + logdet + quad))"]
    else:
        body += [f"mu = {' + '.join(terms) if terms else '0.0'}",
                 f'pm.Normal("{d.response}", mu=mu, sigma=sigma, observed=y)']
    lines += ["    " + b for b in body]
    return "\n".join(lines) + "\n"


def pymc_script(spec: ModelSpec) -> str:
    """:func:`pymc_code` preceded by the code that builds its data from the formula (formulae),
    as :class:`~models.spec.ModelSpec` does: it runs as printed, in a fresh interpreter."""
    from models._render import data_code

    return data_code(spec, arrays=True) + "\n" + pymc_code(spec)


def namespace(spec: ModelSpec) -> dict:
    """The data the generated source refers to."""
    d = spec.design()
    return {"X": d.X, "y": d.y, "np": np, "coords": spec.coords(), "noise_sd": d.noise_sd,
            "codes": {g.name: g.codes for g in d.groups},
            "Z": {g.name: g.column for g in d.groups}}


def build_pymc_model(spec: ModelSpec):
    """Execute :func:`pymc_code` and return the ``pm.Model``."""
    ns = namespace(spec)
    exec(compile(pymc_code(spec), f"<pymc model {spec.name}>", "exec"), ns)  # noqa: S102
    return ns["model"]


def marginalizable(spec: ModelSpec) -> str | None:
    """Why the group effects of ``spec`` cannot be integrated out in closed form, or None.

    :func:`marginal_pymc_code` handles one varying-intercept term ``(1|g)`` with Gaussian noise
    (an unknown sigma, a known sigma, or known per-row sds).
    """
    d = spec.design()
    if len(d.groups) != 1 or d.groups[0].expr != "1":
        return ("the closed-form marginal is written for exactly one varying-intercept term "
                f"(1|g); this model has {[g.name for g in d.groups] or 'none'}")
    if isinstance(spec.sigma, InverseGamma) and spec.sigma.on == "sigma2":
        return "an inverse-gamma prior on sigma^2 is not supported by the marginal model"
    return None


def marginal_pymc_code(spec: ModelSpec) -> str:
    r"""PyMC source of ``spec`` with its varying intercepts integrated out analytically.

    With :math:`b_j \sim N(0, \tau^2)` for the rows :math:`i \in j` of group j and noise
    precisions :math:`w_i = 1/\sigma_i^2`, the rows of a group are jointly
    :math:`N(\mu_j, D_j + \tau^2 \mathbf{1}\mathbf{1}^\top)`, :math:`D_j = \mathrm{diag}(1/w_i)`.
    With :math:`A_j = \sum_{i\in j} w_i`, :math:`B_j = \sum_{i\in j} w_i r_i` and residuals
    :math:`r = y - X\beta`, the matrix determinant lemma and Sherman-Morrison give

    .. math::

        \log p(y \mid \beta, \tau, \sigma) = -\tfrac12 \Big[ n \log 2\pi
        - \sum_i \log w_i + \sum_j \log(1 + \tau^2 A_j)
        + \sum_i w_i r_i^2 - \sum_j \frac{\tau^2 B_j^2}{1 + \tau^2 A_j} \Big].

    The evidence is unchanged (the integral over b is done exactly), but a sampler or SMC sees
    only the common coefficients and the scales: 5 parameters instead of 90 for radon.
    """
    why = marginalizable(spec)
    if why is not None:
        raise ValueError(f"cannot integrate the group effects of {spec.name!r} out: {why}.")
    return pymc_code(spec, marginal=True)


def build_marginal_pymc_model(spec: ModelSpec):
    """Execute :func:`marginal_pymc_code` and return the ``pm.Model``."""
    ns = namespace(spec)
    exec(compile(marginal_pymc_code(spec), f"<marginal pymc model {spec.name}>", "exec"), ns)  # noqa: S102
    return ns["model"]


def fit_pymc(spec: ModelSpec, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
             seed: int = 0, sampler: str = "nutpie", progressbar: bool = False, model=None,
             target_accept: float = 0.8):
    """Sample ``spec`` with NUTS (nutpie or PyMC's own); returns an ArviZ DataTree.

    The posterior keeps the specification's parameters (``spec.parameters``) under their shared
    names; ``posterior.attrs["inference_library"]`` says which NUTS ran. Divergences are kept in
    ``sample_stats``.
    """
    import pymc as pm

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown PyMC sampler {sampler!r}; choose one of {SAMPLERS}.")
    model = build_pymc_model(spec) if model is None else model
    idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                      random_seed=seed, nuts_sampler=sampler, progressbar=progressbar,
                      target_accept=target_accept, compute_convergence_checks=False,
                      model=model)
    return keep_parameters(idata, spec)


def keep_parameters(dt, spec: ModelSpec):
    """Restrict the posterior to ``spec.parameters`` (adding ``sigma`` from ``sigma2``)."""
    post = dt["posterior"].to_dataset()
    if "sigma" in spec.parameters and "sigma" not in post and "sigma2" in post:
        post["sigma"] = np.sqrt(post["sigma2"])
    missing = [n for n in spec.parameters if n not in post]
    if missing:
        raise RuntimeError(f"the fitted model lacks parameters {missing}; it has {list(post)}.")
    dt["posterior"] = post[spec.parameters]
    return dt


__all__ = ["SAMPLERS", "build_pymc_model", "fit_pymc", "keep_parameters", "pymc_code",
           "pymc_script"]
