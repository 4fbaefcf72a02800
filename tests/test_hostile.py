"""The hostile corpus (bncourse.classgen.hostile) graded through the real pipeline.

One scratch course per pipeline holds the corpus (one submission per class of
the threat model) plus honest submissions; it is graded ONCE by plain
``nbgrader autograde`` and once by ``coursekit grade``, with the course's
configuration (sandboxed kernel, repair, trusted checks).  Then, for each run:

- the run finishes and every submission that can be graded is graded;
- each hostile submission earns no point it would not earn honestly (exactly
  its honest score, or at most that where its own attack costs it points);
- the honest submissions get exactly their grades;
- no file outside the submissions' working copies changes (hash of the course
  tree before/after, leaving out what nbgrader itself writes: autograded/,
  the gradebook, its log, coursekit's state folder);
- nothing leaks into the graded notebooks (a secret of the grader's
  environment, the hidden tests) and nothing reaches the network;
- the per-submission event log flags what each attack attempted.

The course's cell timeout is lowered to 30 s in the scratch copies, so that
the never-ending cell costs 30 s rather than two minutes.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import generated_course, nbgrader
from tiers import thorough

from coursekit import classgen, events, gradebook
from bncourse.classgen import hostile
from coursekit.nbrun import venv_env
from coursekit.paths import Course

ASSIGNMENT = hostile.ASSIGNMENT
SECRET = "coursekit-grader-secret-6b1f0c"
# What nbgrader (and coursekit grade) write in the course by design.
WRITTEN_BY_GRADER = ("autograded", ".coursekit", ".nbgrader.log")
RUN_TIMEOUT = 3600


@pytest.fixture(scope="module", autouse=True)
def venv_on_path():
    # nbgrader runs `alembic` from PATH when it creates a gradebook
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = venv_env()["PATH"]
    yield
    os.environ["PATH"] = old


class Listener:
    """A local TCP port that records whatever connects to it."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.server.close()


@dataclass
class Run:
    name: str
    course: Course
    variants: list
    before: dict
    after: dict
    scores: dict
    max_scores: dict
    tests: list
    output: str
    wall: float


def _tree(course: Course) -> dict[str, str]:
    """sha256 of every file of the course but what the grader writes by design."""
    out = {}
    for path in sorted(course.root.rglob("*")):
        rel = path.relative_to(course.root)
        if rel.parts[0] in WRITTEN_BY_GRADER or rel.name.startswith(("gradebook.db", ".grading-w")):
            continue
        if path.is_file() or path.is_symlink():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "symlink"
        elif path.is_dir():
            out[str(rel) + "/"] = "dir"
    return out


def _prepare(root: Path, port: int) -> tuple[Course, list]:
    course = generated_course(root, [ASSIGNMENT])
    with open(course.root / "nbgrader_config.py", "a") as f:
        f.write("\n# test_hostile: the never-ending cell costs 30 s, not 2 min\nc.Execute.timeout = 30\n")
    variants = hostile.variants(port) + hostile.honest()
    classgen.write_class(course, ASSIGNMENT, variants)
    return course, variants


def _env() -> dict:
    return {**os.environ, "COURSEKIT_TEST_SECRET": SECRET}


def _finish(name, course, variants, before, output, wall) -> Run:
    return Run(name, course, variants, before, _tree(course), gradebook.scores(course, ASSIGNMENT),
               gradebook.max_scores(course, ASSIGNMENT), gradebook.autograded_tests(course, ASSIGNMENT),
               output, wall)


@pytest.fixture(scope="module")
@thorough
def plain_run(tmp_path_factory, listener) -> Run:
    course, variants = _prepare(tmp_path_factory.mktemp("plain") / "course", listener.port)
    before = _tree(course)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=course.root,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=_env())
    return _finish("nbgrader autograde", course, variants, before, proc.stdout + proc.stderr,
                   time.monotonic() - start)


@pytest.fixture(scope="module")
@thorough
def coursekit_run(tmp_path_factory, listener) -> Run:
    course, variants = _prepare(tmp_path_factory.mktemp("coursekit") / "course", listener.port)
    before = _tree(course)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), "grade", ASSIGNMENT],
                          cwd=course.root, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=_env())
    return _finish("coursekit grade", course, variants, before, proc.stdout + proc.stderr, time.monotonic() - start)


@pytest.fixture(params=["plain_run", "coursekit_run"])
@thorough  # it asks for plain_run or coursekit_run by name, which collection cannot see
def run(request) -> Run:
    return request.getfixturevalue(request.param)


def _points(run: Run, variant) -> tuple[dict, dict]:
    """(points it got, points it deserves honestly) per test cell."""
    deserved = {t: run.max_scores[t] if ok else 0.0 for t, ok in classgen.expected_pass(variant, run.tests).items()}
    got = {t: run.scores.get(variant.student, {}).get(t, 0.0) for t in run.tests}
    return got, deserved


def _hostile(run):
    honest = {h.student for h in hostile.honest()}
    return [v for v in run.variants if v.student not in honest]


def test_every_submission_that_can_be_graded_is_graded(run):
    missing = [v.student for v in run.variants if v.student not in hostile.AT_MOST
               and set(run.scores.get(v.student, {})) < set(run.tests)]
    assert not missing, f"{run.name}: not graded: {missing}\n{run.output[-3000:]}"


def test_no_hostile_submission_earns_an_undeserved_point(run):
    problems = []
    for variant in _hostile(run):
        got, deserved = _points(run, variant)
        for test in run.tests:
            if got[test] > deserved[test]:
                problems.append(f"{variant.student}/{test}: {got[test]} > {deserved[test]} ({variant.description})")
            elif got[test] < deserved[test] and variant.student not in hostile.AT_MOST:
                problems.append(f"{variant.student}/{test}: lost a deserved point ({got[test]} < {deserved[test]})")
    assert not problems, f"{run.name}:\n" + "\n".join(problems)


def test_honest_submissions_keep_their_exact_grades(run):
    for variant in hostile.honest():
        got, deserved = _points(run, variant)
        assert got == deserved, f"{run.name}: {variant.student}"


def test_no_file_outside_the_working_copies_changes(run):
    changed = sorted(k for k in set(run.before) | set(run.after) if run.before.get(k) != run.after.get(k))
    assert not changed, f"{run.name}: changed {changed}"
    with sqlite3.connect(str(run.course.gradebook)) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)


def test_nothing_leaks_into_the_graded_notebooks(run):
    # what the students' own cells printed (tracebacks of failing test cells quote test code by design)
    for variant in _hostile(run):
        for path in (run.course.autograded / variant.student / ASSIGNMENT).glob("*.ipynb"):
            nb = nbformat.read(str(path), as_version=4)
            shown = "\n".join(str(o) for c in nb.cells if c.cell_type == "code" and not _is_test(c)
                              for o in c.get("outputs", []))
            assert SECRET not in shown, f"{run.name}: {variant.student} printed the grader's secret"
            assert "HIDDEN TESTS" not in shown and "guarda comuna" not in shown, \
                f"{run.name}: {variant.student} printed hidden tests"
            assert "solució trobada" not in shown and "solució copiada" not in shown, \
                f"{run.name}: {variant.student} found a solution"


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def test_nothing_reaches_the_network(run, listener):
    assert listener.received == [], f"{run.name}: the local port received {listener.received}"


def test_attempts_are_flagged_in_the_event_log(run):
    missing = []
    for student, kinds in hostile.FLAGS.items():
        logged = {e["kind"] for e in events.read(run.course.root, ASSIGNMENT, student)}
        if not kinds <= logged:
            missing.append(f"{student}: expected {sorted(kinds)}, logged {sorted(logged)}")
    assert not missing, f"{run.name}:\n" + "\n".join(missing)


def test_the_honest_mistakes_cost_what_assignment_1s_catalogue_says():
    """The attacks wrap honest mistakes; what those cost is the catalogue's, not a second opinion."""
    from bncourse.classgen import a1_batchnorm1d as a1

    fails = {v.student: frozenset(v.fails) for v in a1.VARIANTS}
    assert hostile.EPS_FAILS == fails["eps_outside_sqrt"]
    assert hostile.MOMENTUM_FAILS == fails["reversed_momentum"]
