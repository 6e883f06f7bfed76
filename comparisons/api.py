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
        chains=None, seed=None, cache: bool | Cache = True, progress=None) -> dict:
    """Run one case (a built-in name or a case-file path); write its report if ``out`` is given.

    Returns the case summary (the content of ``summary.json``).
    """
    spec, sampler = load(case)
    s = settings_for(sampler, draws=draws, tune=tune, chains=chains, seed=seed)
    backends = tuple(spec.backends if backends is None else backends)
    store = cache if isinstance(cache, Cache) else Cache(enabled=bool(cache))
    key = make_key(kind="case", spec=fingerprint(spec), backends=backends, **s)
    entry = store.get("cases", key)
    if entry is not None and out is not None:
        if progress is not None:
            progress(f"{spec.name}: reusing the cached result")
        folder = Path(out) / spec.name
        for name in ("summary.json", "report.html"):
            atomic_write(folder / name, (entry / name).read_bytes())
        return json.loads((entry / "summary.json").read_text())
    result = run_case(spec, backends=backends, progress=progress, cache=store, **s)
    if out is None:
        from comparisons.report import summary

        return summary(result)
    summ = write_case(result, Path(out))
    folder = Path(out) / spec.name

    def fill(tmp: Path):
        for name in ("summary.json", "report.html"):
            (tmp / name).write_bytes((folder / name).read_bytes())

    store.put("cases", key, fill)
    return summ


def report(out: str | Path = "reports", *, cases=None, progress=None, **kwargs) -> list[dict]:
    """Run every built-in case (or ``cases``) and write ``out/index.html``."""
    summaries = [run(c, out=out, progress=progress, **kwargs) for c in (cases or CASES)]
    write_index(summaries, Path(out), bayes_factors=bayes_factor_rows(
        cache=kwargs.get("cache", True), progress=progress))
    return summaries


def bayes_factor_rows(cache: bool | Cache = True, progress=None, seed: int = 20261121) -> list:
    """The Bayes factors of :data:`comparisons.evidence.BAYES_FACTORS` (cached)."""
    from comparisons.evidence import BAYES_FACTORS, bayes_factors

    store = cache if isinstance(cache, Cache) else Cache(enabled=bool(cache))
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
