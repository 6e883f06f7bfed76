"""Each backend's posterior as an ArviZ netCDF file beside its report.

A run writes ``<out>/<case>/<backend>.nc`` for every backend (and ``user.nc`` for draws checked
with ``crosscheck compare``): the groups the backend produced (``posterior``, and
``sample_stats`` where it has one: divergences, acceptance rates, ...), plus, on request, a
``log_likelihood`` group (pointwise :math:`\\log N(y_i \\mid \\mu_i, \\sigma_i)` per draw,
computed the same way for every backend, so ``az.loo`` compares like with like) and the
``observed_data`` it refers to. Like PyMC, the log likelihood is off by default: for radon it is
919 values per draw.

>>> from comparisons.api import posteriors            # doctest: +SKIP
>>> fits = posteriors("radon-intercepts")              # doctest: +SKIP
>>> fits["pymc"]["posterior"]["1|county_sigma"].mean() # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

#: the groups copied into the netCDF files when the backend has them
GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data")


def log_likelihood(spec, dt) -> np.ndarray:
    r"""Pointwise :math:`\log N(y_i \mid \mu_i, \sigma_i)` at every draw: (chain, draw, n)."""
    from scipy import stats

    from comparisons.plots import _linear_predictor, _noise_sd

    post = dt["posterior"]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    y = spec.design().y
    ll = stats.norm.logpdf(y[None, :], _linear_predictor(spec, dt), _noise_sd(spec, dt))
    return ll.reshape(chains, draws, len(y))


def with_log_likelihood(spec, dt):
    """``dt`` with ``log_likelihood`` and ``observed_data`` groups (response name, dim
    ``__obs__``), as PyMC writes them."""
    import xarray as xr

    d = spec.design()
    post = dt["posterior"]
    ll = xr.DataArray(log_likelihood(spec, dt), dims=("chain", "draw", "__obs__"),
                      coords={"chain": post["chain"].values, "draw": post["draw"].values,
                              "__obs__": np.arange(len(d.y))})
    out = dt.copy()
    out["log_likelihood"] = xr.DataTree(xr.Dataset({d.response: ll}))
    out["observed_data"] = xr.DataTree(xr.Dataset(
        {d.response: xr.DataArray(d.y, dims=("__obs__",),
                                  coords={"__obs__": np.arange(len(d.y))})}))
    return out


def write(posteriors: dict, folder: Path, spec=None, *, include_log_likelihood: bool = False
          ) -> dict:
    """Write ``folder/<backend>.nc`` for every posterior; returns backend -> path.

    Each file is written to a temporary name and renamed, so an interrupted run leaves either
    the old file or the new one, never half of one.
    """
    import xarray as xr

    from comparisons.cache import _clean_attrs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for backend, dt in posteriors.items():
        if include_log_likelihood and spec is not None and "log_likelihood" not in dt.children:
            dt = with_log_likelihood(spec, dt)
        keep = xr.DataTree.from_dict({f"/{g}": dt[g].to_dataset() for g in GROUPS
                                      if g in dt.children})
        keep["posterior"].attrs = dict(dt["posterior"].attrs)
        path = folder / f"{backend}.nc"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{backend}.", suffix=".nc.tmp")
        os.close(fd)
        try:
            _clean_attrs(keep).to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths[backend] = path
    for stale in folder.glob("*.nc"):  # from an earlier run with other backends
        if stale.stem not in paths:
            stale.unlink()
    return paths


def load(folder: Path) -> dict:
    """Every ``<backend>.nc`` in ``folder`` as an ArviZ DataTree, loaded into memory."""
    from xarray import open_datatree

    folder = Path(folder)
    files = sorted(folder.glob("*.nc"))
    if not files:
        raise ValueError(f"no posteriors (*.nc) in {str(folder)!r}; run the case first "
                         "(crosscheck run CASE --out DIR).")
    out = {}
    for path in files:
        with open_datatree(path, engine="h5netcdf") as dt:
            out[path.stem] = dt.load()
    return out
