"""Packaging: the published numbers are package data read through importlib.resources (one
copy, inside the package), the built wheel carries them and an import from the wheel alone
reads them; pyproject declares ranges and project metadata; constraints.txt pins a point inside
every range and is what scripts/test.sh installs with.

The wheel is built in-process with setuptools' PEP 517 backend from a copy of the sources (no
download, a few seconds); scripts/wheel_check.sh does the full check by hand: ``python -m build``,
a fresh venv, a non-editable install, then ``mr-eval report`` / ``leaderboard``."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from robustbench_mr.reports.published import load_published, published_resource, published_text

REPO = Path(__file__).resolve().parents[2]
RESOURCE = "robustbench_mr/reports/data/published.csv"


def test_published_csv_is_package_data_and_equals_the_papers_tables(shared_dir):
    res = published_resource()
    assert res.is_file() and published_text() == (REPO / RESOURCE).read_text(encoding="utf-8")
    assert (REPO / RESOURCE).read_bytes() == (shared_dir / "paper" / "published.csv").read_bytes()
    assert not (REPO / "results" / "published.csv").exists()  # one source of truth
    rows = load_published()
    assert sum(r.table == 1 for r in rows) == 12 and sum(r.table == 2 for r in rows) == 9
    mr_small = next(r for r in rows if r.defense == "Manifold Regularization (small)")
    assert (mr_small.verified_pct, mr_small.robust_pct, mr_small.clean_pct) == ("21.04", "25.56", "36.66")
    text = (shared_dir / "paper" / "manifold_regularization_jin_rinard_2020.txt").read_text(errors="replace")
    for value in ("21.04", "25.56", "36.66", "40.54", "69.95", "57.53", "36.90", "66.02"):
        assert value in text


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "robustbench_mr", src / "robustbench_mr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "dist"
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools>=77 (the test extra)")
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_published_csv_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert RESOURCE in names and "robustbench_mr/reports/data/SOURCE.md" in names
        assert z.read(RESOURCE) == (REPO / RESOURCE).read_bytes()
        assert not any(n.startswith(("tests/", "results/", "bench/")) for n in names)
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "mr-eval = robustbench_mr.cli.eval:main" in entry_points and "mr-train = robustbench_mr.cli.train:main" in entry_points
    assert any(u.startswith("Paper, https://arxiv.org/abs/2003.04286") for u in meta.get_all("Project-URL"))
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    requires = meta.get_all("Requires-Dist")
    assert any(r.replace(" ", "").startswith("torch<3,>=2.14") or r.replace(" ", "").startswith("torch>=2.14,<3") for r in requires)
    assert not any(r.startswith("torchattacks") for r in requires)  # see the README: installed with --no-deps


def test_published_csv_loads_from_the_wheel_alone(wheel, tmp_path):
    """Import the package from the wheel file (zipimport: nothing from the checkout) and read the
    published numbers through importlib.resources."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import robustbench_mr.reports.published as p\n"
        "assert p.__file__.startswith(sys.argv[1]), p.__file__\n"
        "rows = p.load_published()\n"
        "print(len(rows), type(p.published_resource()).__module__)\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(wheel)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, module = proc.stdout.split()
    assert count == "21" and module.startswith("zipfile")


def _requirements() -> dict[str, str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"]["optional-dependencies"].values():
        reqs += extra
    from packaging.requirements import Requirement

    out = {}
    for r in reqs:
        req = Requirement(r)
        out[req.name.lower().replace("_", "-")] = str(req.specifier)
    return out


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_ranges_in_pyproject_and_exact_pins_in_constraints():
    from packaging.specifiers import SpecifierSet

    reqs, pins = _requirements(), _constraints()
    for name, spec in reqs.items():
        assert spec, f"{name}: no version range in pyproject.toml"
        assert not spec.startswith("=="), f"{name}: pinned exactly in pyproject.toml ({spec}); pins belong in constraints.txt"
        assert name in pins, f"{name}: no exact pin in constraints.txt"
        assert SpecifierSet(spec).contains(pins[name]), f"{name}: constraints.txt pins {pins[name]}, outside {spec}"
    assert "torchattacks" in pins and "torchattacks" not in reqs and "requests" not in pins
    test_sh = (REPO / "scripts" / "test.sh").read_text()
    assert "-c constraints.txt -e '.[test]'" in test_sh and "-c constraints.txt --no-deps torchattacks" in test_sh


def test_installed_versions_are_the_pinned_ones():
    """In an environment made by scripts/test.sh, every pinned package that is installed has
    exactly the pinned version (a drifted venv fails here, not somewhere obscure)."""
    drift = []
    for name, version in _constraints().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if have != version:
            drift.append(f"{name} {have} (constraints.txt: {version})")
    assert not drift, "installed versions differ from constraints.txt: " + ", ".join(drift)
