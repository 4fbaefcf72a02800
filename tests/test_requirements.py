"""The install files agree: requirements.txt (ranges, any platform), requirements.lock (the exact
Linux environment `make` and CI install), requirements-cpu.txt (CPU-only grading servers) and the
packages' declared dependencies: the engine's (engine/pyproject.toml) and the course's (pyproject.toml).

No network here, so nothing is downloaded: the files are checked against each other and against
the environment the tests run in (which `make` installs from the lock).
"""
from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# What requirements.txt must name: the design's packages.
DESIGN = {"torch", "torchvision", "nbgrader", "jupyter", "matplotlib", "tqdm", "pytest"}
# Wheels that exist for one platform only (CUDA libraries, Triton): never in requirements.txt.
PLATFORM_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _requirements(path: Path) -> list[Requirement]:
    """The requirement lines of a pip requirements file (options and the editable package left out)."""
    return [Requirement(line) for line in _lines(path) if not line.startswith("-")]


PYPROJECTS = ("engine/pyproject.toml", "pyproject.toml")
# The repository's own projects: installed editable from their folders, never pinned in the lock.
LOCAL = {"coursekit", "bncourse"}


def _pyproject(path: str = "pyproject.toml") -> dict:
    return tomllib.loads((REPO / path).read_text(encoding="utf-8"))["project"]


def _declared(paths: tuple[str, ...] = PYPROJECTS) -> list[Requirement]:
    reqs = []
    for path in paths:
        project = _pyproject(path)
        reqs += [Requirement(r) for r in project["dependencies"]]
        for extra in project.get("optional-dependencies", {}).values():
            reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) not in LOCAL]


def _lock() -> dict[str, str]:
    pins = {}
    for req in _requirements(REPO / "requirements.lock"):
        (spec,) = req.specifier  # exactly one ==
        assert spec.operator == "==", f"requirements.lock: {req} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_requirements_txt_installs_anywhere():
    reqs = _requirements(REPO / "requirements.txt")
    names = {canonicalize_name(r.name) for r in reqs}
    assert DESIGN <= names, f"requirements.txt lacks {sorted(DESIGN - names)}"
    for req in reqs:
        where = f"requirements.txt: {req}"
        assert not PLATFORM_ONLY.match(canonicalize_name(req.name)), f"{where}: a platform-specific wheel"
        assert req.url is None and req.marker is None, f"{where}: a URL or platform marker"
        ops = {s.operator for s in req.specifier}
        assert ops and not ops & {"==", "==="}, f"{where}: needs a range, not a pin"
        assert ">=" in ops and "<" in ops, f"{where}: needs a lower and an upper bound"
    options = [line for line in _lines(REPO / "requirements.txt") if line.startswith("-")]
    assert options == ["-e ./engine", "-e ."], \
        f"requirements.txt: only the engine and the course themselves, no index or wheel options: {options}"


def test_the_engine_declares_no_course_library():
    """The engine grades any nbgrader course: what one course's notebooks use (torch, torchvision)
    is the course's to declare, and the course depends on the engine."""
    engine = {canonicalize_name(r.name) for r in _declared(("engine/pyproject.toml",))}
    assert not engine & {"torch", "torchvision", "pillow"}, f"engine/pyproject.toml declares {sorted(engine)}"
    course = [Requirement(r) for r in _pyproject()["dependencies"]]
    assert "coursekit" in {canonicalize_name(r.name) for r in course}
    assert _pyproject("engine/pyproject.toml")["name"] == "coursekit"
    assert metadata.version("coursekit") in next(r for r in course if r.name == "coursekit").specifier


def test_pyproject_declares_ranged_dependencies():
    declared = _declared()
    assert {canonicalize_name(r.name) for r in declared} >= {"nbgrader", "torch", "traitlets", "psutil"}
    local = {canonicalize_name(Requirement(r).name) for r in _pyproject()["dependencies"]} & LOCAL
    assert local == {"coursekit"}, "the course depends on the engine"
    for req in declared:
        ops = {s.operator for s in req.specifier}
        assert ">=" in ops and "<" in ops, f"pyproject.toml: {req} needs a lower and an upper bound"
        assert not PLATFORM_ONLY.match(canonicalize_name(req.name)), f"pyproject.toml: {req}"


@pytest.mark.parametrize("source", ["requirements.txt", "pyproject.toml"])
def test_every_lock_pin_satisfies_the_ranges(source):
    pins = _lock()
    reqs = _requirements(REPO / source) if source.endswith(".txt") else _declared()
    reqs = [r for r in reqs if canonicalize_name(r.name) not in LOCAL]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{source} names {req.name}, requirements.lock does not pin it"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside {source}'s {req}"


def test_the_tested_environment_is_inside_the_ranges():
    """The venv the tests run in (installed from the lock) satisfies what the packages declare."""
    for req in _declared():
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is declared in pyproject.toml but not installed in this environment")
        assert req.specifier.contains(installed, prereleases=True), f"installed {req.name} {installed}, declared {req}"


def test_cpu_only_install_path():
    lines = _lines(REPO / "requirements-cpu.txt")
    assert f"--extra-index-url {CPU_INDEX}" in lines and "-r requirements.txt" in lines
    assert not _requirements(REPO / "requirements-cpu.txt"), "requirements-cpu.txt adds no packages of its own"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "REQUIREMENTS ?= requirements.lock" in makefile  # make and CI: the exact environment
    assert re.search(r"pip install .*-r \$\(REQUIREMENTS\)", makefile)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "requirements-cpu.txt" in readme and "requirements.lock" in readme
    assert "Linux only" in readme  # the sandbox, and what happens elsewhere
