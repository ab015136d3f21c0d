"""The built wheel is the library: every module of the source tree imports from an installed
copy (non-editable), the embedded recipe ships with it, and the entry point runs from outside
the source tree.

Guards against a package directory without ``__init__.py`` (``find_packages`` skips it and the
wheel silently lacks it) and against undeclared package data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _source_modules() -> list[str]:
    mods = []
    for path in sorted((ROOT / "logics_rl").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this tree, installed with ``--no-deps`` into a scratch directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, target = tmp / "src", tmp / "dist", tmp / "site"
    # A clean copy: a stale build/ directory in the tree would hide a missing package.
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        cwd=tmp,
        capture_output=True,
    )
    wheels = list(dist.glob("logics_rl-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "-q",
            "--target",
            str(target),
            str(wheels[0]),
        ],
        check=True,
        cwd=tmp,
        capture_output=True,
    )
    return target


# The test environment may hold an editable install of the source tree, whose import hook
# would quietly supply any module the wheel lacks: drop it before anything is imported.
_NO_EDITABLE = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in type(f).__name__\n"
    "                    and 'Editable' not in getattr(f, '__name__', '')]\n"
)


def _run(code: str, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", _NO_EDITABLE + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_source_directory_is_a_package():
    for d in (ROOT / "logics_rl").rglob("*"):
        if d.is_dir() and any(d.glob("*.py")):
            assert (d / "__init__.py").exists(), f"{d} holds modules but no __init__.py"


def test_wheel_holds_every_module_and_the_recipes(installed):
    wheel_files = {str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()}
    for mod in _source_modules():
        as_file = mod.replace(".", "/")
        assert f"{as_file}.py" in wheel_files or f"{as_file}/__init__.py" in wheel_files, mod
    for recipe in (ROOT / "logics_rl" / "recipes").glob("*.yaml"):
        assert f"logics_rl/recipes/{recipe.name}" in wheel_files


def test_every_module_imports_from_the_installed_copy(installed, tmp_path):
    code = (
        "import importlib, sys\n"
        f"mods = {_source_modules()!r}\n"
        "for m in mods:\n"
        "    mod = importlib.import_module(m)\n"
        f"    assert mod.__file__.startswith({str(installed)!r}), (m, mod.__file__)\n"
        "print(len(mods))\n"
    )
    out = _run(code, installed, tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert int(out.stdout.split()[-1]) == len(_source_modules())


def test_entry_point_prints_the_embedded_config_outside_the_tree(installed, tmp_path):
    code = (
        "import runpy\n"
        "sys.argv = ['logics_rl.main', '--print-config']\n"
        "runpy.run_module('logics_rl.main', run_name='__main__')\n"
    )
    out = _run(code, installed, tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "mode: sft_rl" in out.stdout  # the embedded quickstart recipe was found and loaded


def test_wheel_zip_has_no_tests_or_benchmarks(installed):
    dist = next(installed.parent.glob("dist/*.whl"))
    names = zipfile.ZipFile(dist).namelist()
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
