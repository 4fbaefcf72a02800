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


def has_assignment(course: Course, assignment: str) -> bool:
    from nbgrader.api import MissingEntry

    if not course.gradebook.is_file():
        return False
    with Gradebook(db_url(course)) as gb:
        try:
            return bool(gb.find_assignment(assignment).notebooks)
        except MissingEntry:
            return False


def ensure_assignment(course: Course, assignment: str) -> bool:
    """Put the assignment (its notebooks, cells and points) into the gradebook if it is not there yet,
    as on a fresh clone, where ``release/`` is committed but ``gradebook.db`` is not: nbgrader's own
    ``generate_assignment`` reads ``source/`` and fills the gradebook; its release copy goes to a
    scratch folder, so the committed ``release/`` is left as it is.  Returns whether it did."""
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from coursekit.paths import CourseError

    if has_assignment(course, assignment):
        return False
    course.source_notebooks(assignment)  # a clear error for an unknown assignment
    scratch = Path(tempfile.mkdtemp(prefix="ck-gradebook-"))
    env = dict(__import__("os").environ)
    env["PATH"] = str(Path(sys.executable).parent) + ":" + env.get("PATH", "")
    try:
        proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                               f"--CourseDirectory.release_directory={scratch / 'release'}"],
                              cwd=course.root, capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0 or not has_assignment(course, assignment):
        last = next((ln for ln in reversed((proc.stdout + proc.stderr).splitlines()) if ln.strip()), "")
        raise CourseError(f"could not add {assignment} to {course.gradebook} with nbgrader generate_assignment: "
                          f"{last.strip()[:300]}")
    return True
