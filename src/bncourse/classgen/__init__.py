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


def filled(assignment: str, code_answers, written: dict, **answers: str) -> dict[str, str]:
    """Every answer cell of a catalogue filled: the solution of each code answer and the written
    answers, except the cells given here."""
    out = {g: catalogue_solution(assignment, g) for g in code_answers}
    out.update(written)
    out.update(answers)
    return out


def with_edits(assignment: str, code_answers, written: dict, changes, whole: dict | None = None) -> dict[str, str]:
    """Answers with the given ``(grade_id, (old, new), ...)`` edits applied to the solution, cell by
    cell, and the cells in ``whole`` replaced entirely; every other cell as in :func:`filled`."""
    by_cell: dict[str, list] = {}
    for grade_id, *pairs in changes:
        by_cell.setdefault(grade_id, []).extend(pairs)
    return filled(assignment, code_answers, written,
                  **{g: edit_solution(assignment, g, *pairs) for g, pairs in by_cell.items()}, **(whole or {}))
