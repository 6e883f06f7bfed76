"""The model description: one formula, explicit priors and data, rendered by every backend.

A :class:`ModelSpec` is the single source the reference, PyMC and Bambi backends are built from,
so that all three fit the same model. Design matrices come from ``formulae``, the parser Bambi
uses, so every backend sees the same columns under the same names.

Parameter names follow Bambi: ``Intercept``, the term names (``x``), ``sigma``.

Noise is either unknown, with a prior on ``sigma``, or known (a float). The Normal-Inverse-Gamma
conjugate prior is written as ``sigma = InverseGamma(a0, b0, on="sigma2")`` together with
``coef_scale_by_sigma=True``: every coefficient prior ``Normal(mu, s)`` then means
``Normal(mu, s * sigma)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reference.priors import Constant, InverseGamma, Normal, Prior


@dataclass(frozen=True)
class Design:
    """Response and common-effects design matrix, with Bambi's term names."""

    response: str
    y: np.ndarray
    X: np.ndarray
    terms: tuple  # term names, one column each
    data: pd.DataFrame


@dataclass(frozen=True)
class ModelSpec:
    """A Gaussian regression described once for all backends.

    Parameters
    ----------
    name : str
        Case name (used in reports and cache keys).
    data : pandas.DataFrame
    formula : str
        formulae/Bambi syntax, e.g. ``"y ~ x"`` or ``"y ~ 0 + x"``.
    priors : dict[str, Prior]
        One explicit prior per coefficient, keyed by Bambi's term name.
    sigma : Prior or float
        Prior on the noise sd, or its known value.
    coef_scale_by_sigma : bool
        Coefficient prior sds are in units of sigma (Normal-Inverse-Gamma).
    description : str
        One paragraph shown in reports.
    """

    name: str
    data: pd.DataFrame = field(repr=False)
    formula: str
    priors: dict
    sigma: Prior | float
    coef_scale_by_sigma: bool = False
    description: str = ""

    def __post_init__(self):
        terms = self.design().terms
        missing = [t for t in terms if t not in self.priors]
        extra = [k for k in self.priors if k not in terms]
        if missing or extra:
            raise ValueError(
                f"case {self.name!r}: priors must name exactly the formula's terms {list(terms)}; "
                f"missing {missing}, unknown {extra}."
            )
        for k, p in self.priors.items():
            if not isinstance(p, Prior):
                raise TypeError(f"prior for {k!r} must be a Prior; received {p!r}.")
        if self.coef_scale_by_sigma:
            if not (isinstance(self.sigma, InverseGamma) and self.sigma.on == "sigma2"):
                raise ValueError("coef_scale_by_sigma needs sigma = InverseGamma(..., on='sigma2').")
            if not all(isinstance(p, Normal) for p in self.priors.values()):
                raise ValueError("coef_scale_by_sigma needs Normal priors on every coefficient.")

    @property
    def known_sigma(self) -> float | None:
        """The known noise sd, or None when sigma is a parameter."""
        if isinstance(self.sigma, Constant):
            return float(self.sigma.value)
        if isinstance(self.sigma, int | float):
            return float(self.sigma)
        return None

    @property
    def parameters(self) -> list[str]:
        """Names of the parameters every backend reports."""
        names = list(self.design().terms)
        return names if self.known_sigma is not None else [*names, "sigma"]

    def design(self) -> Design:
        """Design matrices from formulae (cached on first call)."""
        cached = self.__dict__.get("_design")
        if cached is None:
            from formulae import design_matrices

            dm = design_matrices(self.formula, self.data, na_action="error")
            X = np.asarray(dm.common.design_matrix, dtype=float)
            terms = tuple(dm.common.terms)
            for t in terms:
                sl = dm.common.slices[t]
                if sl.stop - sl.start != 1:
                    raise ValueError(f"term {t!r} spans several columns; not supported yet.")
            y = np.asarray(dm.response.design_matrix, dtype=float).ravel()
            cached = Design(dm.response.name, y, X, terms, self.data)
            object.__setattr__(self, "_design", cached)
        return cached

    def data_hash(self) -> str:
        """SHA-256 of the data frame's values and column names, for provenance and caching."""
        h = hashlib.sha256()
        h.update(",".join(map(str, self.data.columns)).encode())
        h.update(pd.util.hash_pandas_object(self.data, index=False).values.tobytes())
        return h.hexdigest()[:16]

    def prior_table(self) -> dict:
        """Human-readable priors, for reports."""
        out = {k: str(p) + (" x sigma" if self.coef_scale_by_sigma else "")
               for k, p in self.priors.items()}
        ks = self.known_sigma
        out["sigma"] = f"known = {ks:g}" if ks is not None else str(self.sigma)
        return out
