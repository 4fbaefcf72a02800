"""The course's generated submissions: one catalogue per assignment (``VARIANTS``), read by the
engine's :mod:`coursekit.classgen`, and the hostile classes of the threat model.

The helpers here build a variant from the instructor's solution in this repository's ``source/``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from coursekit.classgen import edit_source, solution_source
from coursekit.paths import Course, CourseError

from bncourse import ROOT


def catalogue_course(assignment: str) -> Course:
    """The course whose source/ an assignment's catalogue is built from: this repository, or else
    the current directory."""
    for root in (ROOT, Path.cwd().resolve()):
        course = Course(root)
        if (root / "nbgrader_config.py").is_file() and (course.source / assignment).is_dir():
            return course
    raise CourseError(f"source/{assignment} not found (looked in {ROOT} and {Path.cwd()}): run from the course root")


@lru_cache(maxsize=None)
def catalogue_solution(assignment: str, grade_id: str) -> str:
    """The instructor's solution of an answer cell (markers removed), read once per run."""
    return solution_source(catalogue_course(assignment), assignment, grade_id)


def edit_solution(assignment: str, grade_id: str, *pairs: tuple[str, str]) -> str:
    """The solution of an answer cell with each ``old`` text replaced by ``new`` (each exactly once)."""
    return edit_source(catalogue_solution(assignment, grade_id), *pairs,
                       where=f"the solution of {grade_id} (src/bncourse/classgen/{assignment}.py)")
