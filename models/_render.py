"""Shared helpers for rendering a ModelSpec as PyMC or Bambi source code."""

from __future__ import annotations

import keyword

from reference.priors import Prior


def fmt(v) -> str:
    """A number as it would be typed: ``20.0`` -> ``20``, ``0.5`` -> ``0.5``."""
    if isinstance(v, str):
        return repr(v)
    f = float(v)
    return repr(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def identifier(name: str, used: set) -> str:
    """A readable Python identifier for a parameter name (``x``; ``np.log(x)`` -> ``np_log_x``)."""
    base = "".join(c if c.isalnum() else "_" for c in name).strip("_") or "term"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = "b_" + base
    out, k = base, 2
    while out in used:
        out, k = f"{base}_{k}", k + 1
    used.add(out)
    return out


def prior_kwargs(prior: Prior, skip=("on",)) -> str:
    """``mu=0, sigma=20`` for a prior's parameters (PyMC's parameter names)."""
    return ", ".join(f"{k}={fmt(v)}" for k, v in prior.params().items() if k not in skip)
