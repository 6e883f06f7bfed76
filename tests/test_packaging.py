"""The install promise: one set of pins everywhere, Python 3.12, and a PPL-free reference."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PPL = {"pymc", "bambi", "pytensor", "nutpie", "numpyro", "jax", "stan", "cmdstanpy"}


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _pyproject_pins() -> dict:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.lower().split("==") for d in deps)


def test_every_lock_line_is_an_exact_pin():
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", line), line


def test_pyproject_pins_match_the_lock():
    lock = _lock()
    for name, version in _pyproject_pins().items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"


def test_environment_yml_matches_the_lock():
    lock = _lock()
    text = (ROOT / "environment.yml").read_text()
    conda = dict(re.findall(r"^\s*-\s+([a-z0-9\-]+)=([0-9][^\s=]*)\s*$", text, re.M))
    pip = dict(re.findall(r"^\s*-\s+([a-z0-9\-]+)==([0-9][^\s]*)\s*$", text, re.M))
    listed = {**conda, **pip}
    listed.pop("python")
    assert set(_pyproject_pins()) <= set(listed), "environment.yml lacks a direct dependency"
    for name, version in listed.items():
        assert lock.get(name) == version, \
            f"{name}: environment.yml {version}, lock {lock.get(name)}"


def test_python_is_at_least_3_12():
    assert (ROOT / ".python-version").read_text().strip() == "3.12"
    assert sys.version_info >= (3, 12)


def test_reference_never_imports_a_ppl():
    for path in sorted((ROOT / "reference").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] not in PPL, f"{path.name} imports {m}"


def test_readme_quickstart_shows_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make report" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_environment_holds_the_locked_versions():
    """``make`` installs requirements.lock with uv (pip when uv is not to be had): whichever
    installed it, every locked package is present at its locked version."""
    from importlib import metadata

    wrong = {}
    for name, version in _lock().items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = None
        if got != version:
            wrong[name] = (version, got)
    assert not wrong, f"locked vs installed: {wrong}"
