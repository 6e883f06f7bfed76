"""Built-in comparison cases."""

from __future__ import annotations

import pandas as pd

from models.spec import ModelSpec
from reference import datasets
from reference.priors import InverseGamma, Normal


def three_point() -> ModelSpec:
    return ModelSpec(
        name="three-point",
        data=pd.DataFrame(datasets.three_point()),
        formula="y ~ x",
        priors={"Intercept": Normal(0.0, 1.0), "x": Normal(0.0, 1.0)},
        sigma=1.0,
        description=(
            "The derivation seed's worked example: x = (0, 1, 2), y = (1, 2, 4), prior N(0, I) on "
            "(Intercept, x), known noise variance 1. Exact posterior mean (0.8000, 1.2667), "
            "log evidence -5.4775."
        ),
    )


def tutorial_nig() -> ModelSpec:
    return ModelSpec(
        name="tutorial-nig",
        data=pd.DataFrame(datasets.tutorial()),
        formula="y ~ x",
        priors={"Intercept": Normal(0.0, 10.0), "x": Normal(0.0, 10.0)},
        sigma=InverseGamma(2.0, 1.0, on="sigma2"),
        coef_scale_by_sigma=True,
        description=(
            "The PyMC GLM tutorial's data (n = 200, x = linspace(0, 1), intercept 1, slope 2, "
            "noise sd 0.5) under the conjugate Normal-Inverse-Gamma prior: sigma^2 ~ "
            "InvGamma(2, 1), coefficients ~ N(0, (10 sigma)^2)."
        ),
    )


#: name -> builder of every built-in case
CASES = {"three-point": three_point, "tutorial-nig": tutorial_nig}


def get_case(name: str) -> ModelSpec:
    """The built-in case called ``name``; a clear error lists the valid names."""
    try:
        return CASES[name]()
    except KeyError:
        raise ValueError(f"unknown case {name!r}; built-in cases are: {', '.join(CASES)}.") from None
