r"""What the optional numba fast paths share: the import, the JIT decorator and its disk cache,
and two special functions.

The fast paths (:mod:`reference._fast_gibbs`, :mod:`reference._fast_hierarchical`) are
transcriptions of the numpy samplers, loop by loop, for speed only. The numpy versions stay the
documented reference; numba is not a probabilistic programming language, and nothing here
changes what is sampled. Nothing in :mod:`reference` imports this module unless a fast path is
asked for (``fast=True``), so the numpy samplers work without numba.

Same random numbers
-------------------
Each chain's ``numpy.random.Generator`` is passed into the compiled code, which draws from it
with the same methods (``standard_normal``, ``standard_gamma``, ``standard_exponential``,
``random``) in the same order as the numpy sampler. numba implements these with NumPy's own
algorithms on the same bit generator, so the variates are bit-identical and the Generator's
state advances exactly as it would in numpy (``tests/test_fast_paths.py`` checks both). The draws
of the two paths then differ only by floating-point rounding (summation order, LAPACK against
hand-written loops), about 1e-13 relative.

Compile cache
-------------
Compiling takes a few seconds per process. Compiled code is cached on disk only in the suite's
cache folder, found as :func:`comparisons.cache.default_cache_dir` finds it (read here from the
environment, since :mod:`reference` does not import :mod:`comparisons`): ``$CROSSCHECK_CACHE``,
else ``$XDG_CACHE_HOME/bayes-crosscheck``, else ``~/.cache/bayes-crosscheck``, in a ``numba``
subfolder. Setting ``CROSSCHECK_NUMBA_CACHE=0`` turns the disk cache off. numba's default would
write next to the source file, which in an installed package is ``site-packages``; the locator
below is consulted first and claims only this package's fast-path functions, so that never
happens, and when it cannot be installed caching is simply off.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba
import numpy as np

__all__ = ["CACHE_DIR", "gammainc", "gammaincinv", "jit"]

#: the modules whose functions the cache locator claims
_FAST_MODULES = ("reference._numba", "reference._fast_gibbs",
                 "reference._fast_hierarchical")


def _cache_dir() -> Path | None:
    """The folder of the compile cache, or None when caching is off (see module docstring)."""
    if os.environ.get("CROSSCHECK_NUMBA_CACHE", "1").strip().lower() in ("0", "false", "no", ""):
        return None
    env = os.environ.get("CROSSCHECK_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
        base = root / "bayes-crosscheck"
    return base / "numba"


def _install_locator(folder: Path) -> bool:
    """Register a numba cache locator for the fast-path modules; False if that is not possible
    (an unexpected numba version, a folder that cannot be written)."""
    try:
        from numba.core.caching import CacheImpl, _CacheLocator

        folder.mkdir(parents=True, exist_ok=True)
    except (ImportError, OSError):
        return False

    class SuiteCacheLocator(_CacheLocator):
        """Cache the fast-path functions in the suite's cache folder, keyed by the source."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno

        def ensure_cache_path(self):
            folder.mkdir(parents=True, exist_ok=True)

        def get_cache_path(self):
            return str(folder)

        def get_source_stamp(self):
            # the file's content and numba's version: any edit recompiles
            data = Path(self._py_file).read_bytes() + numba.__version__.encode()
            return hashlib.sha256(data).hexdigest()

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if getattr(py_func, "__module__", None) in _FAST_MODULES:
                return cls(py_func, py_file)
            return None

    if not any(getattr(c, "__name__", "") == "SuiteCacheLocator"
               for c in CacheImpl._locator_classes):
        CacheImpl._locator_classes.insert(0, SuiteCacheLocator)
    return True


CACHE_DIR = _cache_dir()
_CACHE = CACHE_DIR is not None and _install_locator(CACHE_DIR)


def jit(func):
    """``numba.njit`` with the cache policy of the module docstring. Floating-point semantics
    are numpy's: no fastmath, so the order of operations is the one written."""
    return numba.njit(cache=_CACHE, nogil=True)(func)


# --------------------------------------------------------------------------------------------
# scipy.special in compiled code: the same C functions scipy's ufuncs call
# --------------------------------------------------------------------------------------------
def _special(name: str):
    """An external function bound by symbol name (so that cached code can link to it in a
    later process): scipy's ``cython_special`` C function of two doubles."""
    import llvmlite.binding as llvm
    from numba import types
    from numba.extending import get_cython_function_address

    symbol = f"bayes_crosscheck_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.special.cython_special", name))
    # cpdef functions take a trailing int (skip_dispatch), always 0 here
    return types.ExternalFunction(symbol, types.float64(types.float64, types.float64,
                                                        types.intc))


_gammainc = _special("gammainc")
_gammaincinv = _special("gammaincinv")


@jit
def gammainc(a: float, x: float) -> float:
    """Regularized lower incomplete gamma function, as ``scipy.special.gammainc``."""
    return _gammainc(a, x, 0)


@jit
def gammaincinv(a: float, p: float) -> float:
    """Inverse of :func:`gammainc` in its second argument, as ``scipy.special.gammaincinv``."""
    return _gammaincinv(a, p, 0)


@jit
def cholesky_into(A, L) -> bool:
    r"""Lower Cholesky factor :math:`A = LL^\top` of a small symmetric positive definite matrix,
    written into the lower triangle of ``L`` (Cholesky-Banachiewicz, row by row); False when a
    pivot is not positive. For the few-by-few matrices of a sweep this loop costs less than a
    LAPACK call with its allocation, and rounds like it to the last bit or two."""
    n = A.shape[0]
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True
