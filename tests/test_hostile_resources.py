"""The markup and resource attacks (bncourse.classgen.hostile_resources),
graded through the real pipeline with honest submissions beside them.

One scratch course per pipeline, graded once: plain ``nbgrader autograde`` then
``nbgrader generate_feedback``; ``coursekit grade`` then ``coursekit report``.
For each run:

- every submission gets exactly its honest score (at most, for the process
  hog), the honest ones their exact grades, and a child process still starts
  in the honest notebook that needs one;
- no feedback page and no autograded notebook holds anything of the
  student's that a browser would run (script, on* attribute, javascript: URL,
  iframe, svg...), while the course's own headings and badge still render;
- the 20,501 files a kernel left are gone from autograded/ and never reach
  feedback/, and the event log says how many there were;
- 150,000 empty display messages leave a small notebook with a note saying
  the output was cut.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import generated_course, nbgrader
from tiers import thorough
from html_checks import elements, headings, live_parts

from coursekit import classgen, events, gradebook
from bncourse.classgen import hostile_resources as R
from bncourse.messages import OUTPUT_NOTICES
from coursekit.paths import Course

pytestmark = pytest.mark.slow

ASSIGNMENT = R.ASSIGNMENT
NOTEBOOK = "batchnorm1d"
RUN_TIMEOUT = 1800


@dataclass
class Run:
    name: str
    course: Course
    variants: list
    scores: dict
    max_scores: dict
    tests: list
    output: str
    grade_s: float
    feedback_s: float


def _prepare(root: Path) -> tuple[Course, list]:
    course = generated_course(root, [ASSIGNMENT])
    variants = R.variants() + R.honest()
    classgen.write_class(course, ASSIGNMENT, variants)
    return course, variants


def _timed(argv: list[str], course: Course) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=course.root, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return time.monotonic() - start, f"$ {' '.join(argv[2:])} -> {proc.returncode}\n{proc.stdout}{proc.stderr}"


def _finish(name, course, variants, grade, feedback) -> Run:
    return Run(name, course, variants, gradebook.scores(course, ASSIGNMENT), gradebook.max_scores(course, ASSIGNMENT),
               gradebook.autograded_tests(course, ASSIGNMENT), grade[1] + feedback[1], grade[0], feedback[0])


@pytest.fixture(scope="module")
@thorough
def plain_run(tmp_path_factory) -> Run:
    course, variants = _prepare(tmp_path_factory.mktemp("plain") / "course")
    grade = _timed([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], course)
    feedback = _timed([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT], course)
    return _finish("nbgrader", course, variants, grade, feedback)


@pytest.fixture(scope="module")
@thorough
def coursekit_run(tmp_path_factory) -> Run:
    course, variants = _prepare(tmp_path_factory.mktemp("coursekit") / "course")
    ck = [sys.executable, "-m", "coursekit", "--course", str(course.root)]
    grade = _timed(ck + ["grade", ASSIGNMENT, "--jobs", "2"], course)
    feedback = _timed(ck + ["report", ASSIGNMENT], course)
    return _finish("coursekit", course, variants, grade, feedback)


@pytest.fixture(scope="module", params=["plain_run", "coursekit_run"])
@thorough  # it asks for plain_run or coursekit_run by name, which collection cannot see
def run(request) -> Run:
    result = request.getfixturevalue(request.param)
    print(f"\n{result.name}: grading {result.grade_s:.0f} s, feedback {result.feedback_s:.0f} s")
    return result


def _feedback(run: Run, student: str) -> Path:
    return run.course.root / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html"


def _autograded(run: Run, student: str) -> Path:
    return run.course.autograded / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def test_scores_are_the_honest_ones(run):
    problems = []
    for variant in run.variants:
        deserved = {t: run.max_scores[t] if ok else 0.0
                    for t, ok in classgen.expected_pass(variant, run.tests).items()}
        got = {t: run.scores.get(variant.student, {}).get(t) for t in run.tests}
        for test in run.tests:
            if got[test] is None:
                problems.append(f"{variant.student}/{test}: not graded")
            elif got[test] > deserved[test] or (got[test] < deserved[test] and variant.student not in R.AT_MOST):
                problems.append(f"{variant.student}/{test}: {got[test]} (deserves {deserved[test]})")
    assert not problems, f"{run.name}:\n" + "\n".join(problems) + "\n" + run.output[-3000:]


def test_an_honest_notebook_still_starts_processes(run):
    nb = nbformat.read(str(_autograded(run, "honest_forks")), as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "procés fill correcte" in printed


def test_feedback_of_every_student_is_inert_and_the_course_renders(run):
    for variant in run.variants:
        path = _feedback(run, variant.student)
        assert path.is_file(), f"{run.name}: no feedback for {variant.student}\n{run.output[-3000:]}"
        html = path.read_text(encoding="utf-8")
        assert live_parts(html, R.MARKER) == [], f"{run.name}: {variant.student}"
        assert len(headings(html)) >= 5, f"{run.name}: {variant.student}: the course's headings are gone"
        assert any("colab-badge" in img.get("src", "") for img in elements(html, "img"))
    markup = _feedback(run, "r01_markup").read_text(encoding="utf-8")
    assert markup.count(R.MARKER) >= 8  # shown as text


def test_autograded_notebooks_hold_no_active_output(run):
    nb = nbformat.read(str(_autograded(run, "r01_markup")), as_version=4)
    kinds = {k for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) for k in o.get("data", {})}
    assert kinds <= {"text/plain", "text/html", "image/png", "image/jpeg"}, kinds
    shown = "".join(o.data["text/html"] for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []) if "text/html" in o.get("data", {}))
    assert R.MARKER in shown and live_parts(shown, R.MARKER) == []


def test_files_left_by_a_kernel_never_reach_feedback(run):
    autograded = run.course.autograded / "r02_files" / ASSIGNMENT
    left = sorted(str(p.relative_to(autograded)) for p in autograded.rglob("*"))
    assert left == [f"{NOTEBOOK}.ipynb", "timestamp.txt"] or left == [f"{NOTEBOOK}.ipynb"], left[:10]
    feedback = sorted(p.name for p in (run.course.root / "feedback" / "r02_files" / ASSIGNMENT).rglob("*"))
    assert feedback == [f"{NOTEBOOK}.html"] or feedback == [f"{NOTEBOOK}.html", "timestamp.txt"], feedback[:10]
    removed = [e for e in events.read(run.course.root, ASSIGNMENT, "r02_files") if e["kind"] == "sandbox_removed_files"]
    assert removed and removed[-1]["files"] == R.FILES_LEFT, removed


def test_a_flood_of_tiny_messages_is_cut(run):
    path = _autograded(run, "r03_messages")
    assert path.stat().st_size < 2 * 2**20
    nb = nbformat.read(str(path), as_version=4)
    flood = next(c for c in nb.cells if c.cell_type == "code" and "150000" in c.source)
    assert len(flood.outputs) <= 5_002  # kept outputs, the note, at most one late error
    # the course's words (c.SandboxKernelManager.output_notices, set by bncourse.messages.configure) reach the
    # kernel manager that nbgrader's Execute builds, in both pipelines
    note = OUTPUT_NOTICES["cut"].format(what=OUTPUT_NOTICES["cell_messages"].format(count=5_000))
    assert any(note in o.get("text", "") for o in flood.outputs), [o.get("text", "")[:200] for o in flood.outputs[-3:]]
