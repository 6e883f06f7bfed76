"""Shared test settings: PyTensor's compile cache inside the checkout, a headless matplotlib."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# fits cached by the tests stay in the checkout, as under make (see the Makefile)
os.environ.setdefault("CROSSCHECK_CACHE", str(ROOT / ".cache" / "crosscheck"))
