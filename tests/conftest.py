"""Shared fixtures: a scratch course (config + source/ + release/) per test
module, and helpers that run nbgrader's real commands in it; the suite's tiers
(tests/tiers.py) and its time table (tests/timing.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import timing
import tiers
from coursekit.nbrun import venv_env
from coursekit.paths import Course

REPO = Path(__file__).resolve().parents[1]

# Notebooks executed by the tests run in fast mode, never in full (Colab) mode.
os.environ.setdefault("COURSE_MODE", "fast")
# nbgrader runs `alembic` from PATH when it creates a gradebook: make the venv's bin/ visible
# even when pytest was started without activating the venv.
os.environ["PATH"] = venv_env()["PATH"]


def shared_module(*files: str, name: str = "notebook_shared"):
    """notebooks/<files> executed one after the other in one namespace, as the shared cells of a
    notebook are (course_loops.py uses names that course_utils.py defines)."""
    import types

    module = types.ModuleType(name)
    for f in files:
        path = REPO / "notebooks" / f
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    return module


def make_course(dest: Path, assignments: list[str] | None = None) -> Course:
    """Copy the instructor's files of the real course (no student data) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    # the shared material that release generation inserts (student guide texts)
    shutil.copytree(REPO / "notebooks", dest / "notebooks", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("source", "release"):
        for a in assignments or [p.name for p in (REPO / folder).iterdir() if p.is_dir()]:
            if (REPO / folder / a).is_dir():
                shutil.copytree(REPO / folder / a, dest / folder / a, dirs_exist_ok=True)
    return Course(dest.resolve())


_GENERATED: dict = {}


def generated_course(dest: Path, assignments: list[str]) -> Course:
    """A scratch course at ``dest`` where ``nbgrader generate_assignment`` already ran for ``assignments``
    (release/ and the gradebook's records of the assignments): generated once per test session in a
    template course, then copied."""
    key = tuple(assignments)
    if key not in _GENERATED:
        import atexit
        import tempfile

        template = Path(tempfile.mkdtemp(prefix="ck-generated-")) / "course"
        atexit.register(shutil.rmtree, template.parent, True)
        course = make_course(template, list(assignments))
        for a in assignments:
            nbgrader(course, "generate_assignment", a, "--force")
        _GENERATED[key] = template
    shutil.copytree(_GENERATED[key], dest, symlinks=True)
    return Course(Path(dest).resolve())


def nbgrader(course: Course, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a real ``nbgrader`` command in the course root."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.root,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def module_course(tmp_path_factory) -> Course:
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture
def course(tmp_path) -> Course:
    return make_course(tmp_path / "course")


@pytest.fixture(scope="session")
def release_alone(tmp_path_factory):
    """``run(assignment) -> (notebook, folder)``: the committed release notebook executed top to bottom, alone
    in an empty folder and a fresh kernel, in fast mode and not under nbgrader (as a student first opens it in
    Colab), errors allowed; ``folder`` is where it ran.  Each release runs once per session: the assignment's
    module (every error comes from a blank) and test_student_guide (the self-check's report of the blank) read
    the same run, each from its own copy.  Safe to call from several threads (one run per assignment)."""
    import copy
    import threading

    import nbformat
    from nbclient import NotebookClient

    runs: dict = {}
    locks: dict = {}
    guard = threading.Lock()

    def run(assignment: str):
        with guard:
            lock = locks.setdefault(assignment, threading.Lock())
        with lock:
            if assignment not in runs:
                (path,) = sorted((REPO / "release" / assignment).glob("*.ipynb"))
                nb = nbformat.read(str(path), as_version=4)
                work = tmp_path_factory.mktemp(f"alone-{assignment}") / "alone"
                work.mkdir()
                # the kernel's whole environment, given to it (not set in this process: other threads run too)
                env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
                env["COURSE_MODE"] = "fast"
                NotebookClient(nb, timeout=600, allow_errors=True, kernel_name="python3",
                               resources={"metadata": {"path": str(work)}}).execute(env=env)
                runs[assignment] = (nb, work)
        nb, work = runs[assignment]
        return copy.deepcopy(nb), work

    return run


@pytest.fixture(scope="session")
def graded_catalogue(request, tmp_path_factory):
    """``graded(assignment) -> GradedClass``: the submissions of the assignment's catalogue (variants and faked
    submissions) that this session's selected tests read (``tiers.catalogue_needs``), generated and autograded
    once per session by plain nbgrader (two scratch courses graded side by side; the course's configuration
    runs the trusted re-checks on warm kernels), read by the assignment's own module, the shared table of
    test_assignments.py and the grading modules that compare against it."""
    from assignment_checks import catalogue_of, grade_catalogue

    graded: dict = {}

    def grade(assignment: str):
        if assignment not in graded:
            needed = tiers.session_needs(request.session.items, assignment) or set(tiers.CORE)
            variants, faked = catalogue_of(assignment)
            chosen = [v for v in variants + faked if v.student in needed]
            graded[assignment] = grade_catalogue(tmp_path_factory.mktemp(f"graded-{assignment}"), assignment,
                                                 chosen)
        return graded[assignment]

    return grade


def pytest_addoption(parser):
    parser.addoption("--times-json", default=None,
                     help="write this run's seconds per module and tier as JSON (tests/time_budget.json's form)")


def pytest_collection_modifyitems(config, items):
    tiers.mark_tiers(items)


def pytest_runtest_logreport(report):
    timing.add(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    timing.summary(terminalreporter, config)
