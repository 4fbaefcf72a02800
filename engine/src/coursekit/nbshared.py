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

from coursekit.paths import Course, CourseError

MARKER_RE = re.compile(r"^# coursekit: shared (?P<file>[\w.-]+\.py)[ \t]*$")
TITLE_RE = re.compile(r"^#\s*@title\b")
# First line of every shared cell: Colab folds a cell whose first line is a "@title" form, showing the title only.
TITLE = '# @title Codi comú del curs: {filename} (executeu-la; no cal obrir-la) {{ display-mode: "form" }}'


def shared_dir(course: Course) -> Path:
    return course.root / "notebooks"


def expected_source(course: Course, filename: str) -> str:
    path = shared_dir(course) / filename
    if not path.is_file():
        raise CourseError(f"a notebook cell includes notebooks/{filename}, which does not exist")
    return (TITLE.format(filename=filename) + f"\n# coursekit: shared {filename}\n"
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
    changed = []
    for nb_path in sorted(course.source.glob("*/*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        dirty = False
        for cell, filename in shared_cells(nb):
            want = expected_source(course, filename)
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
