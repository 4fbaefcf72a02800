"""What travels between the coordinator and the Dask workers (no shared file system assumed).

The course bundle (``nbgrader_config.py``, ``notebooks/``, the assignment's
``source/`` and ``release/``) as an in-memory tar archive, a consistent snapshot
of ``gradebook.db``, one student's submitted folder, and the tar helpers both
sides use to pack and unpack them (``_untar`` refuses paths out of its folder).
"""
from __future__ import annotations

import io
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from coursekit.paths import Course

# What a worker needs of the course to grade an assignment (besides the gradebook snapshot).
COURSE_FILES = ("nbgrader_config.py", "notebooks")


def course_members(course: Course, assignment: str) -> list[Path]:
    """The course files a worker needs, relative to the course root."""
    names = [Path(n) for n in COURSE_FILES] + [Path("source") / assignment, Path("release") / assignment]
    return [n for n in names if (course.root / n).exists()]


def _tar(root: Path, members: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for m in members:
            tar.add(root / m, arcname=str(m),
                    filter=lambda info: None if "__pycache__" in info.name else info)
    return buf.getvalue()


def _untar(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, `..`, links out of dest


def course_bundle(course: Course, assignment: str) -> bytes:
    return _tar(course.root, course_members(course, assignment))


def gradebook_snapshot(course: Course) -> bytes:
    """A consistent copy of gradebook.db (SQLite backup API), as bytes."""
    with tempfile.TemporaryDirectory(prefix="ck-gb-") as tmp:
        dest = Path(tmp) / "gradebook.db"
        src, dst = sqlite3.connect(course.gradebook), sqlite3.connect(dest)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        return dest.read_bytes()


def submission_files(course: Course, assignment: str, student: str) -> bytes:
    return _tar(course.submitted / student, [Path(assignment)])
