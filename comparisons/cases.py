"""Built-in comparison cases: the TOML case files in ``comparisons/cases/``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from comparisons.casefile import load_case
from models.spec import ModelSpec

CASE_DIR = Path(__file__).parent / "cases"

#: the built-in cases, in report order (seeds first, then real data)
ORDER = ("three-point", "tutorial-nig", "nig-synthetic", "tutorial", "tutorial-bambi-defaults",
         "blog-mh", "boston", "eight-schools", "radon-intercepts", "radon-slopes", "sleepstudy")


def case_files() -> dict[str, Path]:
    files = {p.stem: p for p in CASE_DIR.glob("*.toml")}
    return {n: files[n] for n in ORDER if n in files} | {
        n: p for n, p in sorted(files.items()) if n not in ORDER}


CASES = tuple(case_files())


def get_case(name_or_path: str) -> ModelSpec:
    """A built-in case by name, or any case file by path."""
    return load(name_or_path)[0]


def load(name_or_path: str) -> tuple[ModelSpec, dict]:
    """``(spec, sampler settings)`` for a built-in case name or a case file path."""
    files = case_files()
    if name_or_path in files:
        spec, sampler = load_case(files[name_or_path])
        return replace(spec, data_code=_data_code(name_or_path)), sampler
    if str(name_or_path).endswith(".toml") or Path(name_or_path).exists():
        spec, sampler = load_case(name_or_path)
        return replace(spec, data_code=_data_code(str(Path(name_or_path).resolve()))), sampler
    raise ValueError(f"unknown case {name_or_path!r}; built-in cases are: {', '.join(files)}; "
                     "or give the path of a .toml case file.")


def _data_code(case: str) -> str:
    """Python that loads a case's data exactly as the suite does (offline)."""
    return f"from comparisons.cases import get_case\n\ndata = get_case({case!r}).data\n"
