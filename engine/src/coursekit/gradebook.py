"""The course gradebook (nbgrader's ``gradebook.db``): every read and write of it goes through here.

Scores are always read back from the gradebook nbgrader wrote, never
recomputed, so that tests and reports show what nbgrader will export.  Access
is through nbgrader's ``Gradebook`` API; the one direct use of SQLite is
:func:`snapshot` (SQLite's backup API, which nbgrader has no equivalent of:
it copies a live database consistently, whatever nbgrader holds open).
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

from nbgrader.api import Gradebook

from coursekit.nbrun import last_line, nbgrader
from coursekit.paths import Course, CourseError


def db_url(course: Course) -> str:
    return f"sqlite:///{course.gradebook}"


def open_gradebook(course: Course, course_id: str | None = None) -> Gradebook:
    """nbgrader's Gradebook of the course (a context manager), for course ``course_id`` when given."""
    return Gradebook(db_url(course), course_id) if course_id else Gradebook(db_url(course))


def snapshot(course: Course, dest: Path) -> None:
    """A consistent copy of the course gradebook at ``dest`` (a worker's scratch gradebook)."""
    dest.unlink(missing_ok=True)
    src = sqlite3.connect(course.gradebook)
    dst = sqlite3.connect(dest)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def autograded_tests(course: Course, assignment: str) -> list[str]:
    """grade_ids of the autograded test cells of an assignment, in notebook order."""
    with open_gradebook(course) as gb:
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
    with open_gradebook(course) as gb:
        for sub in gb.assignment_submissions(assignment):
            cells: dict[str, float] = {}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name] = grade.auto_score if grade.auto_score is not None else 0.0
            out[sub.student.id] = cells
    return out


def max_scores(course: Course, assignment: str) -> dict[str, float]:
    with open_gradebook(course) as gb:
        a = gb.find_assignment(assignment)
        return {c.name: c.max_score for nb in a.notebooks for c in nb.grade_cells}


def submissions(course: Course, assignment: str) -> dict[str, dict]:
    """Per student: nbgrader's score, penalty, maximum, manual-grade flag and per-cell scores."""
    from nbgrader.api import MissingEntry

    if not course.gradebook.is_file():
        raise CourseError(f"no gradebook at {course.gradebook}: grade first (coursekit grade {assignment})")
    out = {}
    with open_gradebook(course) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise CourseError(f"assignment {assignment!r} is not in the gradebook: run "
                              f"`coursekit release` / nbgrader generate_assignment, then grade") from None
        for sub in gb.assignment_submissions(assignment):
            cells = {}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name] = {"score": grade.score, "auto": grade.auto_score, "max": grade.max_score,
                                         "needs_manual": bool(grade.needs_manual_grade)}
            student = sub.student
            penalty = sub.late_submission_penalty or 0.0
            out[student.id] = {
                "score": max(0.0, (sub.score or 0.0) - penalty), "raw_score": sub.score or 0.0,
                "late_penalty": penalty, "max_score": sub.max_score or 0.0,
                "needs_manual_grade": bool(sub.needs_manual_grade),
                "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "first_name": student.first_name or "", "last_name": student.last_name or "",
                "email": student.email or "", "cells": cells,
            }
    return out



def has_assignment(course: Course, assignment: str) -> bool:
    from nbgrader.api import MissingEntry

    if not course.gradebook.is_file():
        return False
    with open_gradebook(course) as gb:
        try:
            return bool(gb.find_assignment(assignment).notebooks)
        except MissingEntry:
            return False


def ensure_assignment(course: Course, assignment: str) -> bool:
    """Put the assignment (its notebooks, cells and points) into the gradebook if it is not there yet,
    as on a fresh clone, where ``release/`` is committed but ``gradebook.db`` is not: nbgrader's own
    ``generate_assignment`` reads ``source/`` and fills the gradebook; its release copy goes to a
    scratch folder, so the committed ``release/`` is left as it is.  Returns whether it did."""
    if has_assignment(course, assignment):
        return False
    course.source_notebooks(assignment)  # a clear error for an unknown assignment
    scratch = Path(tempfile.mkdtemp(prefix="ck-gradebook-"))
    try:  # a process: see coursekit.nbrun
        proc = nbgrader(course.root, "generate_assignment", assignment, "--force",
                        f"--CourseDirectory.release_directory={scratch / 'release'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0 or not has_assignment(course, assignment):
        raise CourseError(f"could not add {assignment} to {course.gradebook} with nbgrader generate_assignment: "
                          f"{last_line(proc)}")
    return True


# ---------------------------------------------------------------- merging a worker's grades (coursekit grade)

def merge(gb, assignment: str, student: str, result: dict) -> None:
    """Write one submission's autograder-owned fields into the course gradebook.

    The student and submission rows first (nbgrader's API commits them), then all
    grades, comments and penalties in one transaction.  A failure here fails the
    submission, whose autograded copy is then removed, so the next run grades it again."""
    gb.update_or_create_student(student)
    kwargs = {"timestamp": result["timestamp"]} if result.get("timestamp") else {}
    gb.update_or_create_submission(assignment, student, **kwargs)
    try:
        for nb_name, nb in result["notebooks"].items():
            sub_nb = gb.find_submission_notebook(nb_name, assignment, student)
            sub_nb.late_submission_penalty = nb["late_submission_penalty"]
            sub_nb.flagged = nb["flagged"]
            for name, (auto_score, needs_manual) in nb["grades"].items():
                grade = gb.find_grade(name, nb_name, assignment, student)
                grade.auto_score = auto_score
                grade.needs_manual_grade = needs_manual
            for name, auto_comment in nb["comments"].items():
                gb.find_comment(name, nb_name, assignment, student).auto_comment = auto_comment
        gb.db.commit()
    except Exception:
        gb.db.rollback()
        raise


def extract_from(db_url: str, course_id: str, assignment: str, student: str) -> dict:
    """:func:`extract` from the gradebook at ``db_url`` (a worker's scratch gradebook)."""
    with Gradebook(db_url, course_id) as gb:
        return extract(gb, assignment, student)


def extract(gb, assignment: str, student: str) -> dict:
    """The autograder-owned fields of one submission, as plain data (the inverse of merge)."""
    sub = gb.find_submission(assignment, student)
    out = {"timestamp": sub.timestamp.isoformat() if sub.timestamp else None, "notebooks": {}}
    for nb in sub.notebooks:
        out["notebooks"][nb.name] = {
            "late_submission_penalty": nb.late_submission_penalty,
            "flagged": nb.flagged,
            "grades": {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
            "comments": {c.name: c.auto_comment for c in nb.comments},
        }
    return out


def split_name(full_name: str) -> tuple[str, str]:
    """(first, last) of a Moodle full name ("First Last Last"): Moodle shows first names first."""
    parts = full_name.split()
    return (parts[0], " ".join(parts[1:])) if parts else ("", "")


def fill_students(db_url: str, students: dict[str, dict]) -> None:
    """Write who each collected student is into nbgrader's student table (formgrader's students
    page, ``nbgrader export``): first and last name, email, and the Moodle identity (ID number,
    else username, as nbgrader's ``lms_user_id``).  Known values are never replaced by empty ones."""
    from nbgrader.api import MissingEntry

    with Gradebook(db_url) as gb:
        for sid, info in students.items():
            first, last = info.get("first_name", ""), info.get("last_name", "")
            if not (first or last):
                first, last = split_name(info.get("full_name", ""))
            fields = {"first_name": first, "last_name": last, "email": info.get("email", ""),
                      "lms_user_id": info.get("id_number") or info.get("username", "")}
            try:
                known = gb.find_student(sid)
                fields = {k: v or getattr(known, k) for k, v in fields.items()}
            except MissingEntry:
                pass
            gb.update_or_create_student(sid, **{k: v or None for k, v in fields.items()})
