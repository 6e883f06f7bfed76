"""The model description: one formula, explicit priors and data, rendered by every backend.

A :class:`ModelSpec` is the single source the reference, PyMC and Bambi backends are built from,
so all three fit the same model. Design matrices come from ``formulae``, the parser Bambi uses,
so every backend sees the same columns under the same names.

Parameter names follow Bambi: ``Intercept``; common terms by their formula name (``x``,
``np.log(x)``, ``C(g)`` -- a vector over ``C(g)_dim`` for a categorical); group terms ``1|g`` and
``x|g`` (vectors over ``g__factor_dim``) with their standard deviations ``1|g_sigma`` and
``x|g_sigma``; the noise standard deviation ``sigma``.

Priors
------
Every parameter needs an explicit prior (:mod:`reference.priors`). A group term's prior is
:class:`GroupPrior`: ``b_j ~ Normal(0, tau)`` with a prior on ``tau``, exactly Bambi's
``bmb.Prior("Normal", mu=0, sigma=bmb.Prior(...))``.

Noise
-----
``sigma`` is a :class:`~reference.priors.Prior` (unknown noise), a float (known), or
:class:`NoiseColumn` (known per-row standard deviations, as in a meta-analysis such as eight
schools). The Normal-Inverse-Gamma conjugate prior is ``sigma = InverseGamma(a0, b0,
on="sigma2")`` with ``coef_scale_by_sigma=True``: coefficient priors ``Normal(mu, s)`` then mean
``Normal(mu, s * sigma)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reference.priors import Constant, Flat, InverseGamma, Normal, Prior

__all__ = ["CommonTerm", "Design", "GroupPrior", "GroupTermSpec", "ModelSpec", "NoiseColumn"]


@dataclass(frozen=True)
class GroupPrior:
    """Prior of a group term: ``b_j ~ Normal(0, sigma)`` with ``sigma`` itself a prior."""

    sigma: Prior

    def __str__(self) -> str:
        return f"Normal(mu=0, sigma={self.sigma})"


@dataclass(frozen=True)
class NoiseColumn:
    """Known per-row noise standard deviations, read from a data column."""

    column: str

    def __str__(self) -> str:
        return f"known, column {self.column!r}"


@dataclass(frozen=True)
class CommonTerm:
    """A common (population-level) term: one column, or several for a categorical."""

    name: str
    columns: slice
    levels: tuple | None  # coords of a vector term (categorical), None for a scalar

    @property
    def dim(self) -> str | None:
        return f"{self.name}_dim" if self.levels is not None else None


@dataclass(frozen=True)
class GroupTermSpec:
    """A group-specific term ``expr|group``: per-row column, group codes and level labels."""

    name: str
    expr: str
    group: str
    column: np.ndarray = field(repr=False)
    codes: np.ndarray = field(repr=False)
    levels: tuple = ()

    @property
    def dim(self) -> str:
        return f"{self.group}__factor_dim"


@dataclass(frozen=True)
class Design:
    """What every backend fits: response, common design matrix and terms, group terms."""

    response: str
    y: np.ndarray
    X: np.ndarray
    common: tuple
    groups: tuple
    noise_sd: np.ndarray | None
    data: pd.DataFrame

    @property
    def terms(self) -> tuple:
        return tuple(t.name for t in self.common)

    def column_names(self) -> list[str]:
        names = []
        for t in self.common:
            names += [t.name] if t.levels is None else [f"{t.name}[{lv}]" for lv in t.levels]
        return names


@dataclass(frozen=True)
class ModelSpec:
    """A Gaussian regression described once for all backends.

    Parameters
    ----------
    name : str
        Case name (used in reports and cache keys).
    data : pandas.DataFrame
    formula : str
        formulae/Bambi syntax: ``y ~ x``, ``y ~ 0 + x``, ``y ~ x*z``, ``y ~ C(g)``,
        ``y ~ np.log(x)``, ``y ~ scale(x)``, ``y ~ x + (1|g)``, ``y ~ x + (x|g)``.
    priors : dict
        One explicit prior per term (a :class:`Prior`, or a :class:`GroupPrior` for a group
        term), keyed by Bambi's term name.
    sigma : Prior, float or NoiseColumn
        Prior on the noise sd, its known value, or a column of known per-row sds.
    coef_scale_by_sigma : bool
        Coefficient prior sds are in units of sigma (Normal-Inverse-Gamma).
    description : str
        A paragraph shown in reports.
    reference_algorithm : str
        ``"auto"`` (chosen from the priors) or one of ``"closed-form"``, ``"gibbs"``,
        ``"hierarchical-gibbs"``, ``"mh"``.
    """

    name: str
    data: pd.DataFrame = field(repr=False)
    formula: str
    priors: dict
    sigma: Prior | float | NoiseColumn
    coef_scale_by_sigma: bool = False
    description: str = ""
    reference_algorithm: str = "auto"
    backends: tuple = ("reference", "pymc", "bambi")
    unsupported: dict = field(default_factory=dict)
    #: extra evidence estimators to run for this case (``"smc"``: PyMC's SMC)
    evidence: tuple = ()
    #: Python source that assigns this model's data frame to ``data`` (shown in printed models,
    #: so that they run as printed); empty when the data came from elsewhere
    data_code: str = ""

    def __post_init__(self):
        d = self.design()
        expected = list(d.terms) + [g.name for g in d.groups]
        missing = [t for t in expected if t not in self.priors]
        extra = [k for k in self.priors if k not in expected]
        if missing:
            raise ValueError(
                f"case {self.name!r}: no prior for {missing}; every parameter needs an explicit "
                f"prior. The formula's terms are {expected}."
            )
        if extra:
            raise ValueError(
                f"case {self.name!r}: prior for {extra}, which the formula does not have; "
                f"valid names: {expected}."
            )
        group_names = {g.name for g in d.groups}
        for k, p in self.priors.items():
            if k in group_names and not isinstance(p, GroupPrior):
                raise TypeError(f"prior for group term {k!r} must be Normal(mu=0, sigma=<prior>);"
                                f" received {p}.")
            if k not in group_names and not isinstance(p, Prior):
                raise TypeError(f"prior for {k!r} must be a distribution; received {p!r}.")
        if not isinstance(self.sigma, Prior | NoiseColumn | int | float):
            raise TypeError("sigma must be a prior, a number or a column; received "
                            f"{self.sigma!r}.")
        if isinstance(self.sigma, int | float) and not self.sigma > 0:
            raise ValueError(f"a known sigma must be > 0; received {self.sigma}.")
        if self.coef_scale_by_sigma:
            if not (isinstance(self.sigma, InverseGamma) and self.sigma.on == "sigma2"):
                raise ValueError("coef_scale_by_sigma needs sigma = "
                                 "InverseGamma(..., on='sigma2').")
            if not all(isinstance(self.priors[t], Normal) for t in d.terms) or d.groups:
                raise ValueError("coef_scale_by_sigma needs Normal priors on every coefficient "
                                 "and no group terms.")

    # ------------------------------------------------------------------------------------
    @property
    def known_sigma(self) -> float | None:
        """The known constant noise sd, or None."""
        if isinstance(self.sigma, Constant):
            return float(self.sigma.value)
        if isinstance(self.sigma, int | float):
            return float(self.sigma)
        return None

    @property
    def sigma_is_known(self) -> bool:
        return self.known_sigma is not None or isinstance(self.sigma, NoiseColumn)

    @property
    def has_flat_prior(self) -> bool:
        return any(isinstance(p, Flat) for p in self.priors.values()) or (
            isinstance(self.sigma, Flat))

    @property
    def parameters(self) -> list[str]:
        """Names of the parameters every backend reports, in a fixed order."""
        d = self.design()
        names = list(d.terms)
        for g in d.groups:
            names += [g.name, f"{g.name}_sigma"]
        return names if self.sigma_is_known else [*names, "sigma"]

    def dims(self) -> dict:
        """ArviZ dims of the vector-valued parameters."""
        d = self.design()
        out = {t.name: [t.dim] for t in d.common if t.levels is not None}
        out.update({g.name: [g.dim] for g in d.groups})
        return out

    def coords(self) -> dict:
        d = self.design()
        out = {t.dim: list(t.levels) for t in d.common if t.levels is not None}
        out.update({g.dim: list(g.levels) for g in d.groups})
        return out

    def design(self) -> Design:
        """Design matrices from formulae (computed once)."""
        cached = self.__dict__.get("_design")
        if cached is None:
            cached = _build_design(self)
            object.__setattr__(self, "_design", cached)
        return cached

    def data_hash(self) -> str:
        """SHA-256 of the data's column names and values, for provenance and caching."""
        h = hashlib.sha256()
        h.update(",".join(map(str, self.data.columns)).encode())
        h.update(pd.util.hash_pandas_object(self.data, index=False).values.tobytes())
        return h.hexdigest()[:16]

    def prior_table(self) -> dict:
        """Human-readable priors, for reports."""
        scale = " x sigma" if self.coef_scale_by_sigma else ""
        out = {k: f"{p}{scale if isinstance(p, Prior) else ''}" for k, p in self.priors.items()}
        ks = self.known_sigma
        out["sigma"] = f"known = {ks:g}" if ks is not None else str(self.sigma)
        return out


def _formula_columns(formula: str, columns) -> list[str]:
    """Data columns that the formula mentions (longest names first, so ``log.radon`` wins)."""
    found, text = [], formula
    for c in sorted(map(str, columns), key=len, reverse=True):
        if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", text):
            found.append(c)
            text = re.sub(rf"(?<![\w.]){re.escape(c)}(?![\w.])", " ", text)
    return found


def _group_factors(formula: str) -> list[str]:
    return re.findall(r"\|\s*([A-Za-z_][\w.]*)\s*\)", formula)


def _build_design(spec: ModelSpec) -> Design:
    from formulae import design_matrices

    data = spec.data
    if not isinstance(data, pd.DataFrame) or len(data) == 0:
        raise ValueError(f"case {spec.name!r}: the data are empty; at least one row is needed.")
    if "~" not in spec.formula:
        raise ValueError(f"case {spec.name!r}: formula {spec.formula!r} has no '~'; write it as "
                         "'response ~ terms', e.g. 'y ~ x'.")
    used = _formula_columns(spec.formula, data.columns)
    for c in used:
        n_missing = int(data[c].isna().sum())
        if n_missing:
            kind = "grouping column" if c in _group_factors(spec.formula) else "column"
            raise ValueError(f"case {spec.name!r}: {kind} {c!r} has {n_missing} missing "
                             "value(s); drop or fill them first.")
    groups_in_formula = _group_factors(spec.formula)
    if groups_in_formula:  # integer-coded groups are labels, not numbers
        data = data.assign(**{g: data[g].astype(str) for g in groups_in_formula if g in data})
    try:
        dm = design_matrices(spec.formula, data, na_action="error")
    except KeyError as err:
        raise ValueError(f"case {spec.name!r}: formula {spec.formula!r} names {err.args[0]!r}, "
                         f"which is not a data column; columns: {list(map(str, data.columns))}."
                         ) from None
    except Exception as err:  # formulae raises several types; report one clear line
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"case {spec.name!r}: cannot parse formula {spec.formula!r}: {msg}. "
                         "Valid syntax: y ~ x, y ~ 0 + x, y ~ x*z, y ~ C(g), y ~ np.log(x), "
                         "y ~ scale(x), y ~ x + (1|g), y ~ x + (x|g).") from None
    if not pd.api.types.is_numeric_dtype(data[dm.response.name]) if dm.response.name in data \
            else False:
        raise ValueError(f"case {spec.name!r}: the response {dm.response.name!r} must be numeric;"
                         f" it has dtype {data[dm.response.name].dtype}.")
    y = np.asarray(dm.response.design_matrix, dtype=float)
    if y.ndim != 1 and y.shape[1] != 1:
        raise ValueError(f"case {spec.name!r}: the response must be one numeric column; "
                         f"{dm.response.name!r} gives {y.shape[1]} columns (is it categorical?).")
    y = y.ravel()
    X = np.asarray(dm.common.design_matrix, dtype=float) if dm.common is not None else np.empty(
        (len(y), 0))
    common = []
    if dm.common is not None:
        for name in dm.common.terms:
            sl = dm.common.slices[name]
            if sl.stop == sl.start:
                raise ValueError(f"case {spec.name!r}: term {name!r} has a single level, so it "
                                 "adds no column; a categorical needs at least two levels.")
            levels = None
            if sl.stop - sl.start > 1 or _is_categorical(dm.common.terms[name]):
                labels = dm.common.terms[name].labels
                levels = tuple(lbl.split("[", 1)[1].rstrip("]") if "[" in lbl else lbl
                               for lbl in labels)
            common.append(CommonTerm(name, sl, levels))
    groups = []
    if dm.group is not None:
        for name, term in dm.group.terms.items():
            Z = _dense(dm.group.design_matrix)[:, dm.group.slices[name]]
            gname = name.split("|", 1)[1]
            codes = pd.Categorical(data[gname].astype(str),
                                   categories=[str(v) for v in term.groups]).codes
            column = Z[np.arange(len(y)), codes]
            groups.append(GroupTermSpec(name, name.split("|", 1)[0], gname, column,
                                        np.asarray(codes, dtype=np.int64), tuple(term.groups)))
    noise_sd = None
    if isinstance(spec.sigma, NoiseColumn):
        col = spec.sigma.column
        if col not in data:
            raise ValueError(f"case {spec.name!r}: noise column {col!r} is not in the data; "
                             f"columns: {list(data.columns)}.")
        noise_sd = np.asarray(data[col], dtype=float)
        if not np.all(np.isfinite(noise_sd) & (noise_sd > 0)):
            raise ValueError(f"case {spec.name!r}: noise column {col!r} must hold finite "
                             "positive standard deviations.")
    return Design(dm.response.name, y, X, tuple(common), tuple(groups), noise_sd, data)


def _is_categorical(term) -> bool:
    return any(getattr(c, "kind", None) == "categoric" for c in getattr(term, "components", []))


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=float)
