"""Registry of trusted checks: what each autograded test cell is re-checked against.

A course's module ``<package>.checks.<assignment>`` (see :mod:`coursekit.content`)
exposes ``CHECKS``, an :class:`AssignmentChecks`: the class the tests exercise
(``target``), a *probe* module (child side: builds the student's class, feeds it
the inputs of ``spec(seed)``, returns measurements as JSON data), the same probe
run by the grader on the reference (``reference(spec)``), and one :class:`Check`
per test cell ``grade_id`` that compares the two.  ``coursekit.trusted`` runs
all of it once per submission, outside the student's kernel.

What counts as *delegation* (handing the exercise to the library's own
implementation) is the course's to say: the library's operators the child
watches for (``forbidden_ops``), the names the static reading looks for
(``builtin``, a :class:`coursekit.checks.scan.BuiltinNames`), the kernels made
to raise while the student's code runs (``guard``, a :class:`KernelGuard`).

Everything that arrives from the child is student-controlled: comparisons go
through :func:`as_array`, which accepts only well-formed lists of numbers of the
expected shape.  The words a comparison returns are the course's (its
student-facing language).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coursekit.checks.scan import BuiltinNames

NOTHING = re.compile(r"(?!)")  # matches no operator name


@dataclass(frozen=True)
class KernelGuard:
    """Library kernels made to raise in the child while the student's code runs (PyTorch's dispatcher).

    ``ops``: regular expression over ``aten::`` operator names (and PyTorch's Python decompositions
    of them); ``probe``: one line of Python, run in the child after the student's code, that must
    reach one of those kernels (it raising the guard's error proves the guard held)."""
    ops: str
    probe: str


@dataclass(frozen=True)
class Check:
    grade_id: str
    what: str        # in the course's language, what the test cell checks
    # compare(student_probe, reference_probe) -> None when right, else a detail in the course's language
    compare: Callable[[dict, dict], str | None]
    implementation: bool = True   # delegating to the built-in layer costs this cell's points
    # where delegation counts against this cell (None: anywhere): the probe's scenarios whose
    # aten operators are read, and the answer cells (grade_id) whose static findings are;
    # code the student added outside every answer cell always counts
    scenarios: tuple[str, ...] | None = None
    cells: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AssignmentChecks:
    assignment: str
    target: str | list[str]               # the class the probe exercises (several: a dict of them)
    probe_file: Path                      # child-side module defining probe(Layer, torch, spec)
    spec: Callable[[int], dict]           # seed -> JSON-able inputs
    reference: Callable[[dict], dict]     # spec -> the reference layer's probe, computed here
    checks: list[Check] = field(default_factory=list)
    notebook: str | None = None           # which notebook of the assignment (None: any)
    # library operators whose use in the implementation is delegation (read from the child's trace)
    forbidden_ops: re.Pattern = NOTHING
    # names of the library's own implementation, for the static reading; None: none to look for
    builtin: BuiltinNames | None = None
    # naming ``builtin`` inside the student's implementation costs points (a from-scratch exercise);
    # False: the names are only recorded (using the library's layer is the exercise)
    own_implementation: bool = False
    # kernels disabled while the student's code runs; None: the library runs untouched
    guard: KernelGuard | None = None
    # modules the given code imports, imported in the child before the student's code runs (their
    # start-up threads and processes are the course's, not the submission's)
    preload: tuple[str, ...] = ()

    @property
    def probe_source(self) -> str:
        return self.probe_file.read_text(encoding="utf-8")

    def by_grade_id(self) -> dict[str, Check]:
        return {c.grade_id: c for c in self.checks}


def load(assignment: str, content) -> AssignmentChecks | None:
    """The trusted checks of an assignment (``content``: the course's
    :class:`coursekit.content.CourseContent`), or None when it has none."""
    from coursekit.content import module

    found = module(content, "checks", assignment)
    return getattr(found, "CHECKS", None) if found is not None else None


# ---------------------------------------------------------------- comparisons

def as_array(value, shape: tuple[int, ...] | None = None, limit: int = 1 << 20):
    """A float64 numpy array from student-controlled JSON, or None if malformed."""
    import numpy as np

    def count(v, depth=0):
        if depth > 8:
            raise ValueError
        if isinstance(v, list):
            return sum(count(e, depth + 1) for e in v) or 1
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError
        return 1

    try:
        if count(value) > limit:
            return None
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return None
    if shape is not None and tuple(array.shape) != tuple(shape):
        return None
    return array


def field_of(probe: dict, *keys):
    """probe[k1][k2]... or None when any level is missing or not a dict."""
    value = probe
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
