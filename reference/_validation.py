"""Input checks shared by the reference code.

Every check raises ``ValueError`` (or ``TypeError``) with a one-line message that says what is
wrong, what was received and what is allowed, so that no user ever sees a raw ``LinAlgError``.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import linalg


def as_design(X, y) -> tuple[np.ndarray, np.ndarray]:
    """Return ``X`` as a float (n, p) array and ``y`` as a float (n,) array, or raise.

    Checks: both non-empty, ``X`` two-dimensional, lengths equal, every value finite.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n, p); received an array with shape {X.shape}.")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array (n,); received an array with shape {y.shape}.")
    if X.shape[0] == 0 or y.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"the data are empty: X has shape {X.shape} and y has {y.shape[0]} values; "
            "at least one row and one column are needed."
        )
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values; they must match.")
    _check_finite("X", X)
    _check_finite("y", y)
    return X, y


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.argwhere(bad)[0]
        kinds = sorted({"NaN" if np.isnan(v) else "inf" for v in a[bad]})
        raise ValueError(
            f"{name} contains {bad.sum()} non-finite value(s) ({', '.join(kinds)}), the first at "
            f"index {tuple(int(i) for i in where)}; every value must be finite."
        )


def positive_scalar(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; received {value!r}.") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; received {value!r}.")
    return v


def vector(name: str, value, p: int) -> np.ndarray:
    """Broadcast a scalar or length-``p`` sequence to a finite (p,) float array."""
    v = np.asarray(value, dtype=float)
    if v.ndim == 0:
        v = np.full(p, float(v))
    if v.shape != (p,):
        raise ValueError(f"{name} must be a scalar or have length {p}; received shape {v.shape}.")
    _check_finite(name, v)
    return v


def spd_matrix(name: str, value, p: int) -> np.ndarray:
    """Return a symmetric positive-definite (p, p) matrix from a scalar, a vector or a matrix.

    A scalar ``s`` means ``s * I``; a vector means a diagonal matrix.
    """
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        a = np.full(p, float(a))
    if a.ndim == 1:
        if a.shape != (p,):
            raise ValueError(f"{name} must have length {p} on its diagonal; received {a.shape}.")
        _check_finite(name, a)
        if np.any(a <= 0):
            raise ValueError(
                f"{name} must be positive definite, but its diagonal holds {a.min():g} <= 0."
            )
        return np.diag(a)
    if a.shape != (p, p):
        raise ValueError(f"{name} must be a ({p}, {p}) matrix; received shape {a.shape}.")
    _check_finite(name, a)
    if not np.allclose(a, a.T, rtol=1e-10, atol=1e-12 * np.abs(a).max()):
        raise ValueError(f"{name} must be symmetric; received a non-symmetric matrix.")
    try:
        linalg.cholesky(a, lower=True)
    except linalg.LinAlgError:
        eig = np.linalg.eigvalsh(a).min()
        raise ValueError(
            f"{name} must be positive definite; its smallest eigenvalue is {eig:.3g}."
        ) from None
    return a


def integer(name: str, value, minimum: int) -> int:
    """Return ``value`` as an int >= ``minimum``; reject bools, floats and strings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; received {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received {value}.")
    return int(value)
