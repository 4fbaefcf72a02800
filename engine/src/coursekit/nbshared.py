"""One source of truth for helper code that several notebooks share.

The shared code lives in ``notebooks/*.py`` (plain Python that needs only what
Colab ships).  A source notebook includes a file by a code cell that carries the
marker line ``# coursekit: shared <file>.py`` (its first line, or its second
after a Colab ``# @title`` line); ``coursekit sync`` rewrites every such cell
as a Colab form titled for students (Colab shows the title and folds the
code away), the marker, then the file's current content, so the release
notebooks (generated from source/) carry the code inline and open alone in
Colab.  Such cells should be nbgrader read-only cells (locked), so
that autograding restores them whatever the student did.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from traitlets import Unicode
from traitlets.config import Configurable

from coursekit.content import course_config
from coursekit.paths import Course, CourseError

MARKER_RE = re.compile(r"^# coursekit: shared (?P<file>[\w.-]+\.py)[ \t]*$")
TITLE_RE = re.compile(r"^#\s*@title\b")
# First line of every shared cell: Colab folds a cell whose first line is a "@title" form, showing the title only.
# In English unless the course sets its own words (``c.SharedCells.title``; {filename}: the shared file).
TITLE = '# @title Shared course code: {filename} (run it; no need to open it) {{ display-mode: "form" }}'


class SharedCells(Configurable):
    """What ``coursekit sync`` writes for students in a shared cell (read from the course's nbgrader_config.py)."""

    title = Unicode(TITLE, help="first line of a shared cell, a Colab form title ({filename}: the shared "
                                "file; literal braces doubled)").tag(config=True)


def cell_title(course: Course) -> str:
    """The course's title line template for shared cells."""
    return SharedCells(config=course_config(course.root)).title


def shared_dir(course: Course) -> Path:
    return course.root / "notebooks"


def expected_source(course: Course, filename: str, title: str | None = None) -> str:
    """The source a shared cell must have (``title``: the course's title template, read when not given)."""
    path = shared_dir(course) / filename
    if not path.is_file():
        raise CourseError(f"a notebook cell includes notebooks/{filename}, which does not exist")
    title = cell_title(course) if title is None else title
    return (title.format(filename=filename) + f"\n# coursekit: shared {filename}\n"
            + path.read_text(encoding="utf-8").rstrip("\n"))


def shared_cells(nb):
    """(cell, filename) for every cell that includes a shared file."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n", 2)
        m = MARKER_RE.match(lines[0])
        if not m and len(lines) > 1 and TITLE_RE.match(lines[0]):
            m = MARKER_RE.match(lines[1])
        if m:
            yield cell, m.group("file")


def sync(course: Course, check: bool = False) -> list[Path]:
    """Refresh the shared cells of every source notebook; return the notebooks that were (or would be) changed."""
    changed, title = [], cell_title(course)
    for nb_path in sorted(course.source.glob("*/*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        dirty = False
        for cell, filename in shared_cells(nb):
            want = expected_source(course, filename, title)
            if cell.source != want:
                cell.source = want
                dirty = True
        if dirty:
            changed.append(nb_path)
            if not check:
                nbformat.write(nb, str(nb_path))
    return changed


def add_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true", help="do not write: fail if a shared cell is stale")


def run(args) -> int:
    course = Course.at(args.course)
    changed = sync(course, check=args.check)
    for p in changed:
        print(f"{'stale' if args.check else 'updated'}: {p.relative_to(course.root)}", file=sys.stderr)
    if args.check and changed:
        print("shared cells are stale: run `coursekit sync` then `make release`", file=sys.stderr)
        return 1
    return 0
