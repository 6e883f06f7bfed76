"""The reference backend: a :class:`~models.spec.ModelSpec` rendered with the from-scratch code.

For conjugate specifications the answer is exact (:mod:`reference.conjugate`); the backend then
returns independent draws from the exact posterior as an ArviZ DataTree, so plots and summaries
treat it like any other backend, while comparisons use the exact values themselves.
"""

from __future__ import annotations

import numpy as np

from models.spec import ModelSpec
from reference.conjugate import GaussianKnownNoise, NormalInverseGamma
from reference.priors import Flat, Normal


class ExactPosterior:
    """Exact marginals, correlations and evidence of a conjugate specification.

    ``marginal(name)`` returns an object with ``mean()``, ``std()``, ``ppf()`` and ``cdf()``.
    """

    def __init__(self, spec: ModelSpec):
        d = spec.design()
        self.spec = spec
        self.names = list(d.terms)
        priors = [spec.priors[t] for t in d.terms]
        flat = all(isinstance(p, Flat) for p in priors)
        if not flat and not all(isinstance(p, Normal) for p in priors):
            raise ValueError(f"case {spec.name!r} is not conjugate: coefficient priors must be Normal.")
        m0 = None if flat else np.array([p.mu for p in priors])
        V0 = None if flat else np.array([p.sigma for p in priors]) ** 2
        if spec.known_sigma is not None:
            self.kind = "Gaussian prior, known noise (closed form)"
            self.post = GaussianKnownNoise(d.X, d.y, spec.known_sigma**2,
                                           0.0 if flat else m0, V0)
        elif spec.coef_scale_by_sigma:
            self.kind = "Normal-Inverse-Gamma (closed form)"
            self.post = NormalInverseGamma(d.X, d.y, m0, V0, spec.sigma.alpha, spec.sigma.beta)
        else:
            raise ValueError(
                f"case {spec.name!r} has no closed form: unknown sigma needs the "
                "Normal-Inverse-Gamma prior (coef_scale_by_sigma=True)."
            )
        self._marg = dict(zip(self.names, self.post.marginals(), strict=True))
        if isinstance(self.post, NormalInverseGamma):
            self._marg["sigma"] = self.post.sigma()

    def marginal(self, name: str):
        try:
            return self._marg[name]
        except KeyError:
            raise KeyError(f"no parameter {name!r}; valid names: {list(self._marg)}") from None

    def corr(self, a: str, b: str) -> float:
        i, j = self.names.index(a), self.names.index(b)
        return float(self.post.corr[i, j])

    def log_evidence(self) -> float:
        return self.post.log_evidence()

    def to_datatree(self, draws: int, chains: int, seed: int):
        """Independent exact draws shaped (chain, draw), as an ArviZ DataTree."""
        from arviz_base import from_dict

        rng = np.random.default_rng(seed)
        size = draws * chains
        if isinstance(self.post, NormalInverseGamma):
            beta, sigma2 = self.post.sample(rng, size)
            extra = {"sigma": np.sqrt(sigma2).reshape(chains, draws)}
        else:
            beta, extra = self.post.sample(rng, size), {}
        post = {n: beta[:, i].reshape(chains, draws) for i, n in enumerate(self.names)}
        post.update(extra)
        return from_dict({"posterior": post}, attrs={"posterior": {
            "inference_library": "bayes-crosscheck reference", "algorithm": self.kind,
            "seed": seed}})


def fit_reference(spec: ModelSpec, *, draws: int = 1000, chains: int = 4, seed: int = 0,
                  **_ignored):
    """Fit ``spec`` with the reference backend; returns ``(DataTree, ExactPosterior)``."""
    exact = ExactPosterior(spec)
    return exact.to_datatree(draws, chains, seed), exact
