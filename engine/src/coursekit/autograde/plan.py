"""Planning a grading run: which submissions need grading, and what the course's configuration says.

A submission counts as graded (skipped unless ``--force``) when the course
gradebook has its submission, every submitted notebook nbgrader knows has an
autograded copy newer than the submitted file, the submitted ``timestamp.txt``
is not newer than the autograded one (nbgrader's own rule) and no in-flight
marker (``.coursekit/grading/<assignment>/<student>.inflight``, written before a
submission is handed to a worker and removed once its grades are merged) says a
previous run died while grading it.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from coursekit.gradebook import open_gradebook
from coursekit.paths import Course, CourseError


def state_dir(course: Course, assignment: str) -> Path:
    return course.state / "grading" / assignment


def submitted_students(course: Course, assignment: str) -> list[str]:
    """Students with at least one notebook in submitted/<student>/<assignment>/."""
    if not course.submitted.is_dir():
        return []
    return sorted(p.name for p in course.submitted.iterdir()
                  if p.is_dir() and any((p / assignment).glob("*.ipynb")))


def _read_timestamp(folder: Path) -> dt.datetime | None:
    from nbgrader.utils import parse_utc
    path = folder / "timestamp.txt"
    try:
        text = path.read_text().strip()
        return parse_utc(text) if text else None
    except (OSError, ValueError):
        return None


def is_graded(course: Course, gb, assignment: str, student: str, notebooks: set[str]) -> bool:
    """True when this submission's current files were graded and merged (see module docstring)."""
    from nbgrader.api import MissingEntry
    if (state_dir(course, assignment) / f"{student}.inflight").exists():
        return False
    src = course.submitted / student / assignment
    out = course.autograded / student / assignment
    for nb in src.glob("*.ipynb"):
        if nb.stem not in notebooks:
            continue  # nbgrader skips notebooks it does not know
        graded = out / nb.name
        if not graded.is_file() or graded.stat().st_mtime < nb.stat().st_mtime:
            return False
    new, old = _read_timestamp(src), _read_timestamp(out)
    if new is not None and (old is None or new > old):
        return False
    try:
        gb.find_submission(assignment, student)
    except MissingEntry:
        return False
    return True


def plan(course: Course, assignment: str, course_id: str, students: list[str] | None,
         force: bool) -> tuple[list[str], list[str]]:
    """(to grade, already graded) among the submitted students."""
    from nbgrader.api import MissingEntry
    found = submitted_students(course, assignment)
    if students:
        missing = sorted(set(students) - set(found))
        if missing:
            raise CourseError(f"no submission of {assignment} in {course.submitted} for: {', '.join(missing)}")
        found = [s for s in found if s in set(students)]
    if not course.gradebook.is_file():
        raise CourseError(f"{course.gradebook} does not exist: run `nbgrader generate_assignment {assignment}` "
                          "(or `coursekit release`) in the course root first")
    with open_gradebook(course, course_id) as gb:
        try:
            notebooks = {nb.name for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            raise CourseError(f"assignment {assignment!r} is not in {course.gradebook}: run "
                              f"`nbgrader generate_assignment {assignment}` (or `coursekit release`) first") from None
        if force:
            return found, []
        todo, done = [], []
        for s in found:
            (done if is_graded(course, gb, assignment, s, notebooks) else todo).append(s)
    return todo, done


def read_config(course: Course) -> tuple[str, bool]:
    """(course id, whether autograde runs kernels in the sandbox), from the
    course's nbgrader configuration as nbgrader itself loads it."""
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.converters import Autograde
    from traitlets.utils.importstring import import_item

    from coursekit.sandbox import SandboxExecute
    app = NbGrader()
    app.initialize([], root=str(course.root))
    course_id = app.coursedir.course_id or "default_course"
    preprocessors = Autograde(coursedir=app.coursedir, parent=app).autograde_preprocessors
    app.clear_instance()
    sandboxed = False
    for pp in preprocessors:
        cls = import_item(pp) if isinstance(pp, str) else pp
        sandboxed |= isinstance(cls, type) and issubclass(cls, SandboxExecute)
    return course_id, sandboxed


def read_course_id(course: Course) -> str:
    return read_config(course)[0]
