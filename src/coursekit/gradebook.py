"""Reading results out of nbgrader's gradebook (the course's ``gradebook.db``).

Scores are always read back from the gradebook nbgrader wrote, never
recomputed, so that tests and reports show what nbgrader will export.
"""
from __future__ import annotations

from nbgrader.api import Gradebook

from coursekit.paths import Course


def db_url(course: Course) -> str:
    return f"sqlite:///{course.gradebook}"


def autograded_tests(course: Course, assignment: str) -> list[str]:
    """grade_ids of the autograded test cells of an assignment, in notebook order."""
    with Gradebook(db_url(course)) as gb:
        a = gb.find_assignment(assignment)
        out = []
        for nb in a.notebooks:
            solutions = {s.name for s in nb.solution_cells}
            # a code grade cell that is not also a solution cell is an autograder test
            out += [c.name for c in nb.grade_cells
                    if c.cell_type == "code" and c.name not in solutions]
        return out


def scores(course: Course, assignment: str) -> dict[str, dict[str, float]]:
    """{student: {grade_id: auto_score}} for every submission of the assignment in the gradebook."""
    out: dict[str, dict[str, float]] = {}
    with Gradebook(db_url(course)) as gb:
        for sub in gb.assignment_submissions(assignment):
            cells: dict[str, float] = {}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name] = grade.auto_score if grade.auto_score is not None else 0.0
            out[sub.student.id] = cells
    return out


def max_scores(course: Course, assignment: str) -> dict[str, float]:
    with Gradebook(db_url(course)) as gb:
        a = gb.find_assignment(assignment)
        return {c.name: c.max_score for nb in a.notebooks for c in nb.grade_cells}
