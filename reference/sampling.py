r"""The kernel protocol and the driver that runs chains of any reference sampler.

A *kernel* is a pure function ``step(rng, state, params) -> (state, info)``: it reads the random
stream it is given, never a global one, and returns a new state instead of mutating the old. Every
state carries a leading chain axis, so one call advances all C chains at once with vectorized
numpy. ``info`` is a ``NamedTuple`` of per-chain arrays (acceptance, counts, ...) that the driver
stores in ``sample_stats``.

Randomness: :class:`ChainRNG` holds one ``numpy.random.Generator`` per chain, seeded from
``np.random.SeedSequence(seed).spawn(C)``. Each chain draws only from its own generator, so chain
``c`` is the same whether 2 or 8 chains are run, and the same seed gives the same draws.

Warmup: a kernel may adapt its tuning parameters during the first ``tune`` iterations through
``adapt_init(state) -> params`` and ``adapt_update(params, state, info, i, tune) -> params``. After
warmup ``params`` are frozen, so the draws kept come from a fixed Markov kernel (adapting during
sampling breaks stationarity; Andrieu and Thoms 2008).

Examples
--------
A kernel that ignores its state and draws independent standard normals:

>>> from typing import NamedTuple
>>> class Info(NamedTuple):
...     accepted: np.ndarray
>>> kernel = Kernel(
...     init=lambda rng: rng.normal(size=()),
...     step=lambda rng, state, params: (rng.normal(size=()), Info(np.ones(rng.chains, bool))),
...     positions=lambda state: {"z": state},
... )
>>> out = run(kernel, draws=100, tune=10, chains=2, seed=1)
>>> out["z"].shape
(2, 100)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference._validation import integer

__all__ = ["ChainRNG", "Kernel", "run", "sample"]


class ChainRNG:
    """C independent random streams, one per chain, that draw stacked arrays of shape (C, ...).

    Parameters
    ----------
    seed : int
        Root seed; chain ``c`` uses ``np.random.SeedSequence(seed).spawn(C)[c]``.
    chains : int
        Number of chains C.
    """

    def __init__(self, seed: int, chains: int):
        seed = integer("seed", seed, 0)
        self.chains = integer("chains", chains, 1)
        self.generators = [
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.chains)
        ]

    def subset(self, mask) -> ChainRNG:
        """The streams of the chains where ``mask`` (C,) is true, not copies: drawing from the
        subset advances those chains' own streams, as drawing from the whole would."""
        sub = object.__new__(ChainRNG)
        sub.generators = [g for g, keep in zip(self.generators, mask, strict=True) if keep]
        sub.chains = len(sub.generators)
        return sub

    # Each method draws chain by chain from that chain's generator; np.array stacks the
    # per-chain results (one call, cheaper than np.stack for the small arrays of a sweep).
    def normal(self, size=()) -> np.ndarray:
        """Standard normal draws, shape (C, *size)."""
        return np.array([g.standard_normal(size) for g in self.generators])

    def uniform(self, size=()) -> np.ndarray:
        """Uniform(0, 1) draws, shape (C, *size)."""
        return np.array([g.random(size) for g in self.generators])

    def exponential(self, size=()) -> np.ndarray:
        """Standard exponential draws, shape (C, *size)."""
        return np.array([g.standard_exponential(size) for g in self.generators])

    def gamma(self, shape, size=()) -> np.ndarray:
        """Gamma(shape, 1) draws, shape (C, *size); ``shape`` broadcasts, with chain axis first."""
        size = (size,) if isinstance(size, int | np.integer) else tuple(size)
        if not size and np.ndim(shape) == 0:  # one draw per chain from a common shape
            a = float(shape)
            return np.array([g.standard_gamma(a) for g in self.generators])
        shape = np.broadcast_to(np.asarray(shape, dtype=float), (self.chains, *size))
        return np.stack([g.standard_gamma(a) for g, a in zip(self.generators, shape, strict=True)])


@dataclass(frozen=True)
class Kernel:
    """A Markov kernel in the form the driver runs.

    Attributes
    ----------
    init : callable ``(rng) -> state``
        Initial state for all chains (leading chain axis), typically dispersed.
    step : callable ``(rng, state, params) -> (state, info)``
        One transition of every chain.
    positions : callable ``(state) -> dict[str, ndarray]``
        The model's parameters on their natural scale, each (C, ...), named as Bambi names them.
    adapt_init, adapt_update : callable, optional
        Warmup adaptation of ``params`` (see module docstring). Without them ``params`` is None.
    dims, coords : dict
        ArviZ dims and coords of vector-valued parameters.
    """

    init: Callable
    step: Callable
    positions: Callable
    adapt_init: Callable | None = None
    adapt_update: Callable | None = None
    dims: dict = field(default_factory=dict)
    coords: dict = field(default_factory=dict)


@dataclass
class Run:
    """Raw output of :func:`run`: arrays shaped (chain, draw, ...), before any ArviZ conversion."""

    posterior: dict
    sample_stats: dict
    params: Any
    dims: dict
    coords: dict

    def __getitem__(self, name: str) -> np.ndarray:
        return self.posterior[name]


def run(
    kernel: Kernel,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    thin: int = 1,
    init_state=None,
    progress: Callable[[int, int], None] | None = None,
) -> Run:
    """Run ``chains`` chains of ``kernel``: ``tune`` adaptive warmup steps, then ``draws * thin``.

    Parameters
    ----------
    kernel : Kernel
    draws, tune, chains, thin : int
        Kept draws per chain (>= 1), warmup iterations (>= 0), chains (>= 1), and the thinning
        interval (>= 1; every ``thin``-th state is kept).
    seed : int
        Root seed (a non-negative integer).
    init_state : optional
        Starting state; default ``kernel.init(rng)``.
    progress : callable ``(done, total)``, optional
        Called every few hundred iterations, for progress bars.

    Returns
    -------
    Run
    """
    draws = integer("draws", draws, 1)
    tune = integer("tune", tune, 0)
    thin = integer("thin", thin, 1)
    rng = ChainRNG(seed, chains)
    state = kernel.init(rng) if init_state is None else init_state
    params = kernel.adapt_init(state) if kernel.adapt_init is not None else None

    total = tune + draws * thin
    every = max(1, total // 100)
    kept_pos: list[dict] = []
    kept_info: list = []
    for i in range(total):
        state, info = kernel.step(rng, state, params)
        if i < tune:
            if kernel.adapt_update is not None:
                params = kernel.adapt_update(params, state, info, i, tune)
        elif (i - tune) % thin == thin - 1:
            kept_pos.append(kernel.positions(state))
            kept_info.append(info)
        if progress is not None and (i % every == 0 or i == total - 1):
            progress(i + 1, total)

    # stack to (chain, draw, ...)
    posterior = {k: np.stack([p[k] for p in kept_pos], axis=1) for k in kept_pos[0]}
    stats = {}
    if kept_info and hasattr(kept_info[0], "_fields"):
        for name in kept_info[0]._fields:
            stats[name] = np.stack([np.asarray(getattr(f, name)) for f in kept_info], axis=1)
    return Run(posterior, stats, params, dict(kernel.dims), dict(kernel.coords))


def sample(kernel: Kernel, *, observed_data: dict | None = None, attrs: dict | None = None,
           **kwargs):
    """Run :func:`run` and return an ArviZ ``DataTree`` (``posterior``, ``sample_stats``, ...).

    Keyword arguments go to :func:`run`. ``attrs`` are added to the posterior group (the
    algorithm's name, its reference, the seed). The conversion imports ``arviz_base`` here, so
    the algorithms themselves depend on numpy and scipy only.
    """
    out = run(kernel, **kwargs)
    return to_datatree(out, observed_data=observed_data, attrs=attrs, seed=kwargs.get("seed", 0))


def to_datatree(out: Run, *, observed_data=None, attrs=None, seed=None):
    """Convert a :class:`Run` into an ArviZ ``DataTree``."""
    from arviz_base import from_dict

    groups = {"posterior": out.posterior}
    if out.sample_stats:
        groups["sample_stats"] = out.sample_stats
    if observed_data:
        groups["observed_data"] = observed_data
    post_attrs = {"inference_library": "bayes-crosscheck reference", "seed": seed}
    post_attrs.update(attrs or {})
    return from_dict(groups, dims=out.dims or None, coords=out.coords or None,
                     attrs={"posterior": post_attrs})
