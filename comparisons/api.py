"""The small Python API the ``crosscheck`` command line is a thin layer over.

>>> from comparisons.api import run, report          # doctest: +SKIP
>>> summary = run("three-point", out="reports")       # doctest: +SKIP
>>> summary["verdict"]                                # doctest: +SKIP
'agree'

Notebooks and users' own test suites call these functions; the command line only parses
arguments, shows progress and maps verdicts to exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

from comparisons.cache import Cache, make_key
from comparisons.cases import CASES, load
from comparisons.harness import fingerprint, run_case
from comparisons.report import atomic_write, write_case, write_index

#: defaults when neither the case file nor the caller sets them
DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4, "seed": 20261121}


def settings_for(sampler: dict, **overrides) -> dict:
    """Sampler settings: the caller's overrides, else the case file's, else :data:`DEFAULTS`."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in sampler.items() if v is not None})
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


def run(case: str, *, out: str | Path | None = "reports", backends=None, draws=None, tune=None,
        chains=None, seed=None, cache: bool | str | Path | Cache = True, progress=None,
        alpha: float | None = None, index_link: bool = False,
        log_likelihood: bool = False) -> dict:
    """Run one case (a built-in name or a case-file path); write its report if ``out`` is given.

    ``out/<case>/`` then holds ``report.html``, ``report.md``, ``summary.json`` and each
    backend's posterior as ``<backend>.nc`` (read them back with :func:`posteriors`).
    ``alpha`` is the case's family-wise false-alarm budget (default 1%; :func:`report` shares
    1% among its cases). ``cache`` is True (the default location, see
    :func:`comparisons.cache.default_cache_dir`), False, a folder or a
    :class:`~comparisons.cache.Cache`. ``index_link`` links the page to ``../index.html``;
    ``log_likelihood`` adds pointwise log likelihoods to the netCDF files.
    Returns the case summary (the content of ``summary.json``).
    """
    from comparisons.verdicts import ALPHA

    alpha = ALPHA if alpha is None else float(alpha)  # one cache key for the default
    spec, sampler = load(case)
    s = settings_for(sampler, draws=draws, tune=tune, chains=chains, seed=seed)
    backends = tuple(spec.backends if backends is None else backends)
    store = as_cache(cache)
    key = make_key(kind="case", spec=fingerprint(spec), backends=backends, alpha=alpha,
                   index_link=index_link, log_likelihood=log_likelihood, **s)
    entry = store.get("cases", key)
    if entry is not None and out is not None:
        if progress is not None:
            progress(f"{spec.name}: reusing the cached result")
        folder = Path(out) / spec.name
        for path in sorted(entry.iterdir()):
            if path.name != "manifest.json" and not path.name.startswith("."):
                atomic_write(folder / path.name, path.read_bytes())
        for stale in folder.glob("*.nc"):
            if not (entry / stale.name).exists():
                stale.unlink()
        return json.loads((entry / "summary.json").read_text())
    result = run_case(spec, backends=backends, progress=progress, cache=store, alpha=alpha, **s)
    if out is None:
        from comparisons.report import summary

        return summary(result)
    summ = write_case(result, Path(out), cache=store, index_link=index_link,
                      log_likelihood=log_likelihood)
    folder = Path(out) / spec.name
    names = ["summary.json", "report.html", "report.md", *summ["posteriors"].values()]

    def fill(tmp: Path):
        for name in names:
            (tmp / name).write_bytes((folder / name).read_bytes())

    store.put("cases", key, fill, about={"case": spec.name, "backends": list(backends), **s})
    return summ


def posteriors(case: str, out: str | Path = "reports") -> dict:
    """Each backend's posterior from a run's ``out/<case>/<backend>.nc``, as ArviZ DataTrees.

    >>> fits = posteriors("tutorial")                     # doctest: +SKIP
    >>> sorted(fits)                                      # doctest: +SKIP
    ['bambi', 'pymc', 'reference']
    >>> fits["reference"]["posterior"]["x"].mean().item() # doctest: +SKIP
    """
    from comparisons import posteriors as post

    name = load(case)[0].name if not (Path(out) / case).is_dir() else case
    return post.load(Path(out) / name)


def as_cache(cache: bool | str | Path | Cache) -> Cache:
    """A :class:`Cache` from True (default location), False (disabled) or a folder."""
    if isinstance(cache, Cache):
        return cache
    if isinstance(cache, str | Path):
        return Cache(cache)
    return Cache(enabled=bool(cache))


def report(out: str | Path = "reports", *, cases=None, progress=None, on_case=None,
           scheduler: str | None = None, workers: int | None = None, serial: bool = False,
           **kwargs) -> list[dict]:
    """Run every built-in case (or ``cases``) and write ``out/index.html``; returns the summaries
    in case order.

    The cases (and the Bayes factors) are independent units: they run as Dask tasks on a local
    cluster by default, on the cluster at ``scheduler`` when given, or one after another in
    this process with ``serial=True`` (see :class:`comparisons.parallel.Runner`). Each case's
    seeds come from the root seed and the case, so the results do not depend on where or in
    which order the cases ran. ``progress(message)`` receives stage messages,
    ``on_case(summary)`` each finished case.

    The 1% false-alarm budget is for the whole report: each of K cases gets ``ALPHA / K``
    (Bonferroni across cases, Holm within each), see :func:`case_alpha`.
    """
    import sys

    from comparisons.parallel import Runner

    cases = list(cases or CASES)
    for c in cases:  # every case file must load before any work starts
        load(c)
    alpha = case_alpha(len(cases))
    cache = kwargs.pop("cache", True)
    out = Path(out)
    summaries: list = [None] * len(cases)
    with Runner(scheduler, workers, serial=serial) as runner:
        if serial:
            for i, c in enumerate(cases):
                summaries[i] = run(c, out=out, progress=progress, alpha=alpha, index_link=True,
                                   cache=cache, **kwargs)
                if on_case is not None:
                    on_case(summaries[i])
            bf = bayes_factor_rows(cache=cache, progress=progress)
        else:
            if progress is not None:
                progress(f"{len(cases)} cases {runner.description}")
            units = [("case", c, {"alpha": alpha, "index_link": True, "cache": cache, **kwargs},
                      list(sys.argv)) for c in cases]
            units.append(("bayes-factors", None, {"cache": cache}, list(sys.argv)))

            def finished(i, result):
                if i < len(cases):
                    summaries[i] = _write_unit(out, *result)
                    if on_case is not None:
                        on_case(summaries[i])

            # longest first (a rough cost: parameters x rows, SMC counted four times), so the
            # two radon cases do not start last and run alone
            cost = [expected_cost(load(c)[0]) for c in cases] + [BAYES_FACTORS_COST]
            results = runner.map(_unit, units, progress=finished, events=progress,
                                 priorities=cost)
            bf = results[-1]
    write_index(summaries, out, bayes_factors=bf)
    return summaries


#: the Bayes factors' cost on :func:`expected_cost`'s scale (reference fits of four models)
BAYES_FACTORS_COST = 50_000


def expected_cost(spec) -> int:
    """A rough cost of a case, for scheduling only: scalar parameters x rows, x4 with SMC."""
    n_params = sum(len(v) for v in spec.coords().values()) + len(spec.parameters)
    return n_params * len(spec.design().y) * (4 if "smc" in spec.evidence else 1)


def _unit(kind: str, case, kwargs: dict, argv: list):
    """One unit of a report, run on a Dask worker: a case (returns its summary and the files of
    its folder) or the Bayes factors. Files travel back to the client, so a remote cluster
    needs no shared file system."""
    import sys
    import tempfile

    from comparisons.parallel import report_progress

    sys.argv = argv  # the command recorded in the report's provenance
    if kind == "bayes-factors":
        return bayes_factor_rows(cache=kwargs["cache"], progress=report_progress)
    with tempfile.TemporaryDirectory(prefix="crosscheck-") as tmp:
        summ = run(case, out=tmp, progress=report_progress, **kwargs)
        folder = Path(tmp) / summ["case"]
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return summ, files


def _write_unit(out: Path, summ: dict, files: dict) -> dict:
    """Write a case's files (from a worker) into ``out/<case>/``, dropping stale posteriors."""
    folder = out / summ["case"]
    for name, data in files.items():
        atomic_write(folder / name, data)
    for stale in folder.glob("*.nc"):
        if stale.name not in files:
            stale.unlink()
    return summ


def case_alpha(n_cases: int) -> float:
    """Each case's share of the report's family-wise budget: ``ALPHA / n_cases``.

    Holm within a case keeps its false-alarm probability at most its share, so by the union
    bound the whole report raises a false alarm with probability at most ``ALPHA``.
    """
    from comparisons.verdicts import ALPHA

    return ALPHA / max(int(n_cases), 1)


def bayes_factor_rows(cache: bool | Cache = True, progress=None, seed: int = 20261121) -> list:
    """The Bayes factors of :data:`comparisons.evidence.BAYES_FACTORS` (cached)."""
    from comparisons.evidence import BAYES_FACTORS, bayes_factors

    store = as_cache(cache)
    key = make_key(kind="bayes-factors", table=BAYES_FACTORS, seed=seed)
    entry = store.get("bayes-factors", key)
    if entry is not None:
        return json.loads((entry / "bayes_factors.json").read_text())
    if progress is not None:
        progress("Bayes factors between specifications")
    rows = bayes_factors(seed)
    blob = json.dumps(rows, indent=1)
    store.put("bayes-factors", key, lambda folder: (folder / "bayes_factors.json").write_text(blob))
    return rows


# ---------------------------------------------------------------------------------------------
# a user's own draws
# ---------------------------------------------------------------------------------------------
def read_draws(path: str | Path, spec) -> object:
    """Draws from an outside sampler as an ArviZ DataTree under ``spec``'s parameter names.

    Formats: netCDF (``.nc``, an ArviZ DataTree/InferenceData with a ``posterior`` group),
    zarr (a ``.zarr`` folder, same layout) or CSV (one column per scalar parameter, named as in
    ``spec`` -- vector parameters as ``1|g[level]`` -- and optional ``chain`` and ``draw``
    columns; without ``chain`` all rows are one chain).
    """
    import numpy as np
    import pandas as pd
    from arviz_base import from_dict

    from comparisons.harness import scalar_elements  # noqa: F401  (documented naming)

    path = Path(path)
    if not path.exists():
        raise ValueError(f"draws file {str(path)!r} not found.")
    dims, coords = spec.dims(), spec.coords()
    expected = []
    for name in spec.parameters:
        if name in dims:
            expected += [f"{name}[{lv}]" for lv in coords[dims[name][0]]]
        else:
            expected.append(name)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix in (".nc", ".netcdf", ".h5") or suffix == ".zarr" or path.is_dir():
            import xarray as xr

            engine = "zarr" if (suffix == ".zarr" or path.is_dir()) else "h5netcdf"
            with xr.open_datatree(path, engine=engine) as tree:
                post = tree["posterior"].to_dataset().load()
            df = _dataset_to_frame(post, spec)
        else:
            raise ValueError(f"unsupported draws format {suffix!r}; use .csv, .nc or .zarr.")
    except ValueError:
        raise
    except Exception as err:  # corrupt or unreadable files come in many exception types
        raise ValueError(f"cannot read draws file {str(path)!r}: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                         ) from None
    missing = [n for n in expected if n not in df.columns]
    if missing:
        raise ValueError(f"draws file {str(path)!r} lacks parameters {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}; case {spec.name!r} expects "
                         f"{expected}; it has "
                         f"{[c for c in df.columns if c not in ('chain', 'draw')]}.")
    values = df[expected].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"draws file {str(path)!r} contains NaN or inf values.")
    chain = df["chain"].to_numpy() if "chain" in df else np.zeros(len(df), dtype=int)
    chains = sorted(set(chain.tolist()))
    per = [values[chain == c] for c in chains]
    n = min(len(p) for p in per)
    if n < 50:
        raise ValueError(f"draws file {str(path)!r} has {n} draws per chain; at least 50 needed.")
    arr = np.stack([p[:n] for p in per])  # (chain, draw, k)
    post, k = {}, 0
    for name in spec.parameters:
        if name in dims:
            m = len(coords[dims[name][0]])
            post[name] = arr[..., k:k + m]
            k += m
        else:
            post[name] = arr[..., k]
            k += 1
    return from_dict({"posterior": post}, dims=dims or None, coords=coords or None,
                     attrs={"posterior": {"inference_library": f"user draws ({path.name})"}})


def _dataset_to_frame(post, spec):
    import numpy as np
    import pandas as pd

    dims, coords = spec.dims(), spec.coords()
    cols = {}
    chain = None
    for name in post.data_vars:
        x = np.asarray(post[name].values, dtype=float)
        C, D = x.shape[:2]
        chain = np.repeat(np.arange(C), D)
        if x.ndim == 2:
            cols[name] = x.reshape(-1)
        elif name in dims:
            for i, lv in enumerate(coords[dims[name][0]]):
                cols[f"{name}[{lv}]"] = x[..., i].reshape(-1)
    if chain is None:
        raise ValueError("the posterior group is empty.")
    return pd.DataFrame({"chain": chain, **cols})


def compare_draws(draws_file: str | Path, case: str, *, out: str | Path | None = "reports",
                  backends=("pymc",), cache: bool | str | Path | Cache = True, progress=None,
                  log_likelihood: bool = False, **settings):
    """Check a user's draws against the exact answer and the named backends.

    The page, summary and posteriors (``user.nc`` among them) go to ``out/<case>-user-draws/``.
    Returns the summary; its ``verdict_user`` is the verdict of the checks involving the user's
    draws (what the command line's exit status reports), ``verdict_user_reason`` says why when
    that is not "agree", and ``report`` is the page's path (None without ``out``).
    """
    from comparisons.verdicts import explain, overall

    spec, sampler = load(case)
    user = read_draws(draws_file, spec)
    s = settings_for(sampler, **settings)
    store = as_cache(cache)
    result = run_case(spec, backends=tuple(backends), progress=progress, cache=store,
                      extra={"user": user}, **s)
    mine = [c for c in result.checks if "user" in (c["backend"], c.get("other"))]
    mine += [c for c in result.evidence_checks if c["backend"] == "user"]
    extra = {"verdict_user": overall(mine),
             "verdict_user_reason": explain(mine, {"user": result.diagnostics["user"]}),
             "draws_file": str(draws_file)}
    if out is not None:
        from dataclasses import replace

        result.spec = replace(spec, name=f"{spec.name}-user-draws")
        page = Path(out) / result.spec.name / "report.html"
        summ = write_case(result, Path(out), cache=store, log_likelihood=log_likelihood,
                          extra={**extra, "report": str(page)})
    else:
        from comparisons.report import summary

        summ = {**summary(result), **extra, "report": None}
    return summ
