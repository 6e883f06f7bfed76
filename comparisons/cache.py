"""A content-addressed cache of finished fits and rendered reports.

An entry's key hashes everything its content depends on: the case (formula, priors, noise, data
hash), the backend, the sampler settings and seed, the package versions and the suite's own
source. A rerun with the same inputs reuses the entry; change any input and the key changes.

Where it lives (:func:`default_cache_dir`): ``$CROSSCHECK_CACHE`` when set, else
``$XDG_CACHE_HOME/bayes-crosscheck``, else ``~/.cache/bayes-crosscheck``; the command line's
``--cache-dir`` overrides both. Nothing is written next to the installed package.

Every entry is a folder holding its files and a ``manifest.json`` with each file's SHA-256 and
an ``about`` record (which case, backend and settings the hashed folder holds). It is
written to a temporary folder and renamed into place, so an interrupt never leaves half an entry;
on reading, a missing or mismatching file marks the entry corrupt, and it is deleted and
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "bambi", "formulae",
            "arviz-base", "arviz-stats", "nutpie", "matplotlib", "arviz-plots")


class CorruptCacheEntry(UserWarning):
    """A cache entry failed its checksum and was recomputed."""


@cache
def environment_fingerprint(folders: tuple = ("reference", "models", "comparisons")) -> dict:
    """Package versions and a hash of the suite's own source in ``folders``."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".toml", ".csv") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode())
                h.update(path.read_bytes())
    return {"packages": versions, "source": h.hexdigest()[:16]}


def make_key(*, source: tuple = ("reference", "models", "comparisons"), **parts) -> str:
    """SHA-256 of the JSON of ``parts`` plus package versions and the hash of ``source`` folders.

    A fit depends on the model code only (``source=("reference", "models")``); a rendered report
    also on the comparison and report code.
    """
    env = environment_fingerprint(tuple(source))
    blob = json.dumps({**parts, "env": env}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """``$CROSSCHECK_CACHE``, else ``$XDG_CACHE_HOME/bayes-crosscheck``, else
    ``~/.cache/bayes-crosscheck`` (the XDG base-directory default)."""
    env = os.environ.get("CROSSCHECK_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "bayes-crosscheck"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Cache:
    """Entries under ``root`` (default: :func:`default_cache_dir`, resolved when created)."""

    def __init__(self, root: Path | str | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.enabled = enabled

    def _entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Path | None:
        """The entry's folder if it exists and every checksum matches; else None."""
        if not self.enabled:
            return None
        entry = self._entry(kind, key)
        if not entry.exists():
            return None
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
            ok = all((entry / name).is_file() and _sha(entry / name) == digest
                     for name, digest in manifest["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            warnings.warn(f"cache entry {kind}/{key} is corrupt; recomputing it.",
                          CorruptCacheEntry, stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return entry

    def put(self, kind: str, key: str, write, about: dict | None = None) -> Path:
        """Create an entry: ``write(folder)`` fills a temporary folder, renamed into place.

        ``about`` (what the entry holds: case, backend, settings) goes into its manifest, so a
        hashed folder can be identified without recomputing its key.
        """
        entry = self._entry(kind, key)
        if not self.enabled:
            return entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}."))
        try:
            write(tmp)
            files = {p.name: _sha(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {"kind": kind, "about": about or {}, "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry

    # --- DataTree fits ------------------------------------------------------------------
    def load_fit(self, key: str):
        entry = self.get("fits", key)
        if entry is None:
            return None
        from xarray import open_datatree

        try:
            with open_datatree(entry / "fit.nc", engine="h5netcdf") as dt:
                return dt.load()
        except Exception:  # unreadable despite a matching checksum: treat as corrupt
            warnings.warn(f"cache entry fits/{key} cannot be read; recomputing it.",
                          CorruptCacheEntry, stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def save_fit(self, key: str, dt, about: dict | None = None) -> None:
        def write(folder: Path):
            _clean_attrs(dt).to_netcdf(folder / "fit.nc", engine="h5netcdf")

        self.put("fits", key, write, about=about)


def _clean_attrs(dt):
    """netCDF attributes must be numbers, strings or arrays: stringify the rest."""
    dt = dt.copy()
    for node in dt.subtree:
        node.attrs = {k: (v if _netcdf_attr(v) else json.dumps(v, default=str))
                      for k, v in node.attrs.items()}
        for name, var in list(node.data_vars.items()):
            if var.dtype == object:
                node[name] = var.astype(str)
    return dt


def _netcdf_attr(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float | str):
        return True
    return isinstance(v, list | tuple) and len(v) > 0 and all(isinstance(i, str) for i in v)
