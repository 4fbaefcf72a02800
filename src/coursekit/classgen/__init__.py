"""Generated student submissions: the demo class and the test catalogues.

A *variant* is one simulated student: the release notebook with some answer
cells replaced by given code (and, for damaged or hostile submissions, any
further change to the notebook).  Each assignment has a catalogue module here
(``classgen/<assignment>.py``) whose ``VARIANTS`` list says, for each variant,
which test cells it must fail; every other autograded test cell must pass.
Tests and ``make demo`` grade these through nbgrader and compare.
"""
from __future__ import annotations

import copy
import importlib
import re
from functools import lru_cache
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


def catalogue(assignment: str) -> list[Variant]:
    """The variants of an assignment (``coursekit.classgen.<assignment>.VARIANTS``)."""
    try:
        module = importlib.import_module(f"coursekit.classgen.{assignment}")
    except ModuleNotFoundError as exc:
        raise CourseError(f"no catalogue of generated submissions for {assignment!r}") from exc
    return list(module.VARIANTS)


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


def catalogue_course(assignment: str) -> Course:
    """The course whose source/ an assignment's catalogue is built from: the repository this package
    lives in, or else the current directory."""
    from coursekit.context import repository_course

    repo = repository_course()
    for course in ([repo] if repo else []) + [Course(Path.cwd().resolve())]:
        if (course.root / "nbgrader_config.py").is_file() and (course.source / assignment).is_dir():
            return course
    raise CourseError(f"source/{assignment} not found (looked in {repo.root if repo else '-'} and {Path.cwd()}): "
                      "run from the course root")


@lru_cache(maxsize=None)
def catalogue_solution(assignment: str, grade_id: str) -> str:
    """The instructor's solution of an answer cell (markers removed), read once per run."""
    return solution_source(catalogue_course(assignment), assignment, grade_id)


def edit_solution(assignment: str, grade_id: str, *pairs: tuple[str, str]) -> str:
    """The solution of an answer cell with each ``old`` text replaced by ``new``; each ``old`` must occur
    exactly once, so that a changed solution breaks the catalogue loudly instead of silently."""
    src = catalogue_solution(assignment, grade_id)
    for old, new in pairs:
        if src.count(old) != 1:
            raise CourseError(f"classgen {assignment}: expected exactly one {old.strip()!r} in the solution of "
                              f"{grade_id} (found {src.count(old)}); update src/coursekit/classgen/{assignment}.py")
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
    variants = catalogue(assignment) if variants is None else variants
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
