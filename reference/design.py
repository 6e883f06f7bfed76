r"""Design of a (hierarchical) Gaussian linear model, as the reference samplers consume it.

.. math::

    y_i = x_i^\top \beta + \sum_t z_{t,i}\, b_{t, g_t[i]} + \varepsilon_i, \qquad
    b_{t, j} \sim N(0, \tau_t^2), \qquad \varepsilon_i \sim N(0, \sigma^2 w_i^{-1}).

Each group term :math:`t` is one of Bambi's ``(1|g)`` or ``(x|g)`` terms: a column :math:`z_t`
(ones for ``1|g``) and an integer code per row. Terms are independent of each other, as in
Bambi (no correlation between varying intercepts and slopes).

Stacking :math:`\theta = (\beta, b_1, \dots, b_T)` and :math:`W = [X, Z_1, \dots, Z_T]`, every
computation that conditions on the scales needs only the sufficient statistics
:math:`W^\top \Omega W`, :math:`W^\top \Omega y` and :math:`y^\top \Omega y`, with
:math:`\Omega = \mathrm{diag}(w)`; they are formed once, so the cost per sweep or per grid point
does not depend on n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from reference._validation import as_design


@dataclass(frozen=True)
class GroupTerm:
    """One varying-effect term.

    Attributes
    ----------
    name : str
        Bambi's name, e.g. ``"1|county"`` or ``"basement|county"``.
    column : ndarray (n,)
        The predictor multiplied by the group effect (ones for a varying intercept).
    codes : ndarray (n,) of int
        Group index of every row, in ``range(len(levels))``.
    levels : tuple of str
        Group labels. A level with no rows is allowed: its effect is drawn from the prior.
    """

    name: str
    column: np.ndarray
    codes: np.ndarray
    levels: tuple

    def __post_init__(self):
        codes = np.asarray(self.codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"group term {self.name!r}: codes must be a 1-D integer array.")
        if len(codes) and (codes.min() < 0 or codes.max() >= len(self.levels)):
            raise ValueError(
                f"group term {self.name!r}: codes must lie in [0, {len(self.levels)}); "
                f"received values from {codes.min()} to {codes.max()}."
            )

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def group(self) -> str:
        return self.name.split("|", 1)[1]

    def matrix(self) -> sparse.csr_matrix:
        """The (n, J) indicator-times-column matrix :math:`Z_t`."""
        n = len(self.codes)
        return sparse.csr_matrix(
            (np.asarray(self.column, float), (np.arange(n), np.asarray(self.codes))),
            shape=(n, self.n_levels),
        )


@dataclass(frozen=True)
class SufficientStats:
    """:math:`W^\\top\\Omega W`, :math:`W^\\top\\Omega y`, :math:`y^\\top\\Omega y` and the
    sizes."""

    WtW: np.ndarray
    Wty: np.ndarray
    yty: float
    n: int
    p: int
    #: slices of theta belonging to beta and to each group term
    blocks: tuple
    #: sum of log weights (the log-determinant of Omega), for the evidence
    log_weights_sum: float


def sufficient_stats(X, y, groups=(), weights=None) -> SufficientStats:
    """Form the sufficient statistics of :math:`W = [X, Z_1, \\dots]` once.

    ``weights`` are precisions relative to :math:`\\sigma^2` (all ones by default); with known
    per-row standard deviations :math:`s_i` use :math:`w_i = 1/s_i^2` and :math:`\\sigma = 1`.
    """
    X, y = as_design(X, y)
    n, p = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must be {n} finite positive values; received shape {w.shape}.")
    for g in groups:
        if len(g.codes) != n:
            raise ValueError(f"group term {g.name!r} has {len(g.codes)} rows but y has {n}.")
    blocks = [slice(0, p)]
    start = p
    mats = [sparse.csr_matrix(X)]
    for g in groups:
        blocks.append(slice(start, start + g.n_levels))
        start += g.n_levels
        mats.append(g.matrix())
    W = sparse.hstack(mats).tocsr()
    Wt_w = W.T.multiply(w).tocsr()
    WtW = np.asarray((Wt_w @ W).todense())
    Wty = np.asarray(Wt_w @ y).ravel()
    return SufficientStats(WtW, Wty, float(y @ (w * y)), n, p, tuple(blocks),
                           float(np.log(w).sum()))
