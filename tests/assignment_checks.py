"""What the assignment test files (test_a1_* ... test_a5_*, and the table of test_assignments.py) share:
reading nbgrader metadata, an assignment's catalogue, and grading a whole catalogue of generated
submissions once with plain ``nbgrader autograde`` (conftest's session fixture ``graded_catalogue``)."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from conftest import generated_course
from coursekit import classgen, gradebook
from coursekit.paths import Course


def nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def read_nb(path: Path):
    return nbformat.read(str(path), as_version=4)


def grade_cells(nb):
    """The autograded test cells (grade cells that are not answers)."""
    return [c for c in nb.cells if nbg(c).get("grade") and not nbg(c).get("solution")]


def outside_solutions(src: str) -> str:
    return re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "", src, flags=re.DOTALL)


@dataclass
class GradedClass:
    courses: list[Course]
    scores: dict[str, dict[str, float]]
    maxima: dict[str, float]

    def autograded(self, student: str, assignment: str, notebook: str) -> Path:
        return next(c.autograded / student / assignment / notebook for c in self.courses
                    if (c.autograded / student).is_dir())


def catalogue_of(assignment: str):
    """(variants, faked submissions) of an assignment's catalogue in the course's package."""
    module = importlib.import_module(f"bncourse.classgen.{assignment}")
    return list(module.VARIANTS), (list(module.faked()) if hasattr(module, "faked") else [])


def grade_catalogue(root: Path, assignment: str, variants, parts: int = 2) -> GradedClass:
    """Generate and autograde the catalogue once by plain nbgrader, split over ``parts`` scratch
    courses graded side by side (one nbgrader per core; each course has its own gradebook)."""
    groups = [variants[i::parts] for i in range(parts) if variants[i::parts]]
    courses = [generated_course(root / f"course{i}", [assignment]) for i in range(len(groups))]
    for course, group in zip(courses, groups):
        classgen.write_class(course, assignment, group)
    # one math thread per kernel (tiny tensors, graders sharing the cores), as `coursekit grade`
    # does; the sandbox passes these variables to the kernel
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"], env=env,
                              cwd=course.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for course in courses]
    logs = [p.communicate(timeout=3600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-5000:]
    scores: dict[str, dict[str, float]] = {}
    for course in courses:
        scores.update(gradebook.scores(course, assignment))
    for course, group in zip(courses, groups):
        assert_started_warm(course, assignment, [v.student for v in group])
    return GradedClass(courses, scores, gradebook.max_scores(courses[0], assignment))


def assert_started_warm(course: Course, assignment: str, students) -> None:
    """Every kernel of the run, the notebook's and each trusted re-check's child, forked from the warm server
    that plain nbgrader started for itself: a silent fall-back to cold kernels fails here, not only slows."""
    from coursekit import events

    for student in students:
        started = [e for e in events.read(course.root, assignment, student)
                   if e.get("kind") in (events.KERNEL_STARTED, events.TRUSTED_CHECKED)]
        modes = {(e["kind"], e.get("mode") or e.get("child")) for e in started}
        assert modes and all(mode == "warm" for _, mode in modes), (student, sorted(modes, key=str))


def wrong_points(graded: GradedClass, variant, tests) -> dict[str, str]:
    """Test cells where the variant's score is not what its simulated work deserves (empty: right)."""
    scores, maxima = graded.scores[variant.student], graded.maxima
    assert all(scores[t] in (0, maxima[t]) for t in tests), f"{variant.student}: partial credit in a test cell"
    want = classgen.expected_pass(variant, list(tests))
    got = {t: scores[t] == maxima[t] for t in tests}
    return {t: ("passed" if got[t] else "failed") for t in tests if got[t] != want[t]}


def check_faked_submission(graded: GradedClass, variant, tests, assignment: str, notebook: str) -> None:
    """A faked submission fooled the kernel (no test cell failed there: the cells it deserves to fail start
    with the trusted re-check's error, nothing else), and the gradebook holds exactly the honest points."""
    from bncourse.messages import TRUSTED_ERROR_NAME as ERROR_NAME

    wrong = wrong_points(graded, variant, tests)
    assert not wrong, f"{variant.student} ({variant.description}): {wrong}"
    nb = read_nb(graded.autograded(variant.student, assignment, notebook))
    for cell in grade_cells(nb):
        grade_id = nbg(cell)["grade_id"]
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if grade_id in variant.fails:
            assert errors and errors[0].ename == ERROR_NAME and len(errors) == 1, (grade_id, errors)
        else:
            assert not errors, (grade_id, errors)
