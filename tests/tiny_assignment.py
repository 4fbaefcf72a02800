"""A tiny nbgrader assignment (two answers, two tests, a read-only cell, a written answer).

Used by the intake, repair and reports tests next to the real assignment 1:
it grades in a second or two per submission, so the many damage cases stay cheap.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nbformat

from coursekit.classgen import Variant
from coursekit.nbrun import venv_env
from coursekit.paths import Course

# nbgrader runs `alembic` when it creates a gradebook: the venv's bin must be on PATH
os.environ["PATH"] = venv_env()["PATH"]

ASSIGNMENT = "t0_tiny"
NOTEBOOK = "tiny"


def _meta(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def source_notebook():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        md("# Exercici petit\nDues funcions i una pregunta."),
        code("import math"),
        code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             metadata=_meta("double", solution=True)),
        code("# comprova double\nassert double(2) == 4, \"double(2) hauria de ser 4\"\n"
             "### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n### END HIDDEN TESTS",
             metadata=_meta("test_double", grade=True, locked=True, points=2)),
        md("Ara la funció `inc`, que suma u.", metadata=_meta("intro_inc", locked=True)),
        code("def inc(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION",
             metadata=_meta("inc", solution=True)),
        code("# comprova inc\nassert inc(1) == 2, \"inc(1) hauria de ser 2\"\n"
             "### BEGIN HIDDEN TESTS\nassert inc(-1) == 0\n### END HIDDEN TESTS",
             metadata=_meta("test_inc", grade=True, locked=True, points=1)),
        md("Explica què fa `inc`.\n\n### BEGIN SOLUTION\nSuma u.\n### END SOLUTION",
           metadata=_meta("explain", grade=True, solution=True, points=1)),
        code("print(double(inc(1)))"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def install(course: Course) -> None:
    """Write source/t0_tiny/tiny.ipynb and run nbgrader generate_assignment (release + gradebook)."""
    from conftest import nbgrader

    folder = course.source / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(), str(folder / f"{NOTEBOOK}.ipynb"))
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")


SOLUTION = {"double": "def double(x):\n    return 2 * x", "inc": "def inc(x):\n    return x + 1"}
WRONG_INC = {"double": SOLUTION["double"], "inc": "def inc(x):\n    return x"}


def variants() -> list[Variant]:
    return [
        Variant("ok", "both right", dict(SOLUTION)),
        Variant("half", "inc wrong", dict(WRONG_INC), fails={"test_inc"}),
        Variant("none", "untouched release", {}, fails="all"),
    ]


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (to prove nothing was modified)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
