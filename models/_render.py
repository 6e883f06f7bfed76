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


def data_code(spec, *, arrays: bool) -> str:
    """Python that defines the data a printed model refers to, so it runs as printed.

    Always ``data`` (the data frame, from ``spec.data_code``), with grouping columns as string
    labels; with ``arrays=True`` also what :func:`models.pymc_model.pymc_code` uses, built from
    the formula by formulae exactly as :class:`models.spec.ModelSpec` builds it: ``y``, ``X``,
    ``coords``, and for group terms ``codes`` (level index per row) and ``Z`` (the term's column
    per row), and ``noise_sd`` for known per-row noise.
    """
    import pprint

    from models.spec import NoiseColumn

    d = spec.design()
    lines = [spec.data_code.rstrip() if spec.data_code else
             "# data: the pandas DataFrame of this model (define it before running the code)"]
    factors = list(dict.fromkeys(g.group for g in d.groups))
    for f in factors:
        lines.append(f"data[{f!r}] = data[{f!r}].astype(str)  # group labels, not numbers")
    if not arrays:
        return "\n".join(lines) + "\n"
    lines = ["import numpy as np", "import pandas as pd", "from formulae import design_matrices",
             "", *lines, "",
             f"dm = design_matrices({spec.formula!r}, data, na_action=\"error\")",
             "y = np.asarray(dm.response.design_matrix, dtype=float).ravel()"]
    if d.common:
        lines.append("X = np.asarray(dm.common.design_matrix, dtype=float)  # columns: "
                     + ", ".join(d.column_names()))
    else:
        lines.append("X = np.empty((len(y), 0))  # no common terms")
    coords = spec.coords()
    lines.append("coords = " + pprint.pformat(coords, width=95, compact=True).replace(
        "\n", "\n" + " " * len("coords = ")) if coords else "coords = {}")
    if d.groups:
        lines += ["G = dm.group.design_matrix",
                  "G = G.toarray() if hasattr(G, \"toarray\") else np.asarray(G, dtype=float)",
                  "codes, Z = {}, {}"]
        for g in d.groups:
            lines += [f"codes[{g.name!r}] = np.asarray(pd.Categorical(data[{g.group!r}], "
                      f"categories=coords[{g.dim!r}]).codes)",
                      f"Z[{g.name!r}] = G[:, dm.group.slices[{g.name!r}]][np.arange(len(y)), "
                      f"codes[{g.name!r}]]"]
        lines.append("del G")
    if isinstance(spec.sigma, NoiseColumn):
        lines.append(f"noise_sd = data[{spec.sigma.column!r}].to_numpy(dtype=float)")
    return "\n".join(lines) + "\n"
