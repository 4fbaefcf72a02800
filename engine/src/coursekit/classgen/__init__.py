"""Generated student submissions: the demo class and the test catalogues.

A *variant* is one simulated student: the release notebook with some answer
cells replaced by given code (and, for damaged or hostile submissions, any
further change to the notebook).  Each assignment of a course may have a
catalogue module in the course's own package (``<package>.classgen.<assignment>``,
see :mod:`coursekit.content`) whose ``VARIANTS`` list says, for each variant,
which test cells it must fail; every other autograded test cell must pass.
Tests and ``make demo`` grade these through nbgrader and compare.
"""
from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from coursekit.paths import Course, CourseError

SOLUTION_RE = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
HIDDEN_RE = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.MULTILINE | re.DOTALL)


@dataclass
class Variant:
    student: str                       # student id (folder name under submitted/)
    description: str                   # one line, shown in the demo's table
    answers: dict[str, str] = field(default_factory=dict)   # answer cell grade_id -> new source
    fails: frozenset[str] | str = frozenset()  # test grade_ids it must fail, or "all"
    # optional further change of the notebook (damage, extra cells, ...)
    mutate: Callable[[nbformat.NotebookNode], None] | None = None
    notebook: str | None = None        # which notebook of the assignment (default: the only one)


def catalogue(assignment: str, course: Course | None = None) -> list[Variant]:
    """The variants of an assignment (``<package>.classgen.<assignment>.VARIANTS`` of the course,
    by default the one in the working directory)."""
    from coursekit import content

    found = content.module(content.content_of(course.root if course else None), "classgen", assignment)
    if found is None:
        raise CourseError(f"no catalogue of generated submissions for {assignment!r} "
                          "(CourseContent.package in nbgrader_config.py names the course's package)")
    return list(found.VARIANTS)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def cell_by_grade_id(nb, grade_id: str):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def solution_source(course: Course, assignment: str, grade_id: str, notebook: str | None = None) -> str:
    """The instructor's solution of an answer cell, markers removed: the base of most variants."""
    path = _notebook_path(course.source, assignment, notebook)
    return SOLUTION_RE.sub("", cell_by_grade_id(read_notebook(path), grade_id).source)


def edit_source(src: str, *pairs: tuple[str, str], where: str = "the solution") -> str:
    """``src`` with each ``old`` text replaced by ``new``; each ``old`` must occur exactly once, so that
    a changed solution breaks a catalogue loudly instead of silently."""
    for old, new in pairs:
        if src.count(old) != 1:
            raise CourseError(f"expected exactly one {old.strip()!r} in {where} (found {src.count(old)}); "
                              "update the catalogue")
        src = src.replace(old, new)
    return src


def _notebook_path(folder: Path, assignment: str, notebook: str | None) -> Path:
    paths = sorted((folder / assignment).glob("*.ipynb"))
    if notebook:
        paths = [p for p in paths if p.stem == notebook]
    if len(paths) != 1:
        raise CourseError(f"expected one notebook {notebook or ''} in {folder / assignment}, found {len(paths)}")
    return paths[0]


def render(course: Course, assignment: str, variant: Variant) -> tuple[str, nbformat.NotebookNode]:
    """The notebook this variant's student hands in: (notebook name, notebook)."""
    path = _notebook_path(course.release, assignment, variant.notebook)
    nb = copy.deepcopy(read_notebook(path))
    for grade_id, source in variant.answers.items():
        cell_by_grade_id(nb, grade_id).source = source
    if variant.mutate:
        variant.mutate(nb)
    return path.stem, nb


def write_class(course: Course, assignment: str, variants: list[Variant] | None = None,
                dest: Path | None = None) -> list[Path]:
    """Write each variant to ``<dest or submitted/>/<student>/<assignment>/<notebook>.ipynb``."""
    variants = catalogue(assignment, course) if variants is None else variants
    dest = course.submitted if dest is None else dest
    written = []
    for variant in variants:
        name, nb = render(course, assignment, variant)
        out = dest / variant.student / assignment / f"{name}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))
        written.append(out)
    return written


def expected_pass(variant: Variant, test_ids: list[str]) -> dict[str, bool]:
    """Which autograded test cells this variant must pass."""
    if variant.fails == "all":
        return {t: False for t in test_ids}
    unknown = set(variant.fails) - set(test_ids)
    if unknown:
        raise CourseError(f"variant {variant.student} names unknown test cells {sorted(unknown)}")
    return {t: t not in variant.fails for t in test_ids}


def add_arguments(parser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("--dest", help="folder to write into (default: the course's submitted/)")


def run(args) -> int:
    course = Course.at(args.course)
    written = write_class(course, args.assignment, dest=Path(args.dest) if args.dest else None)
    print(f"wrote {len(written)} submissions of {args.assignment}")
    return 0
