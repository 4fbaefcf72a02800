"""The suite's two tiers, derived from what each test uses.

* ``quick`` (``make test``, every change): every test that uses no fixture marked :func:`thorough`
  and needs no graded catalogue submission outside :data:`QUICK_STUDENTS`.
* ``thorough`` (``make test-thorough``): everything else.  With ``make test`` it is the whole suite.

A test lands in a tier without anyone remembering to mark it: a costly fixture says so once
(``@thorough`` under ``@pytest.fixture``), and every test that uses it, directly or through other
fixtures, is marked ``thorough`` at collection.  Tests that read the shared graded catalogue
(conftest's ``graded_catalogue``) are quick when every submission they need is in the stated sample
below, thorough otherwise; each tier grades only the submissions its own tests need, so no
submission is graded by both.
"""
from __future__ import annotations

import functools

import pytest

THOROUGH_MARK = "thorough"

# The stated sample of each catalogue that `make test` grades, besides the solution, the blank and
# every faked submission: a correct answer in another style, a plain mistake, a delegation and an
# attack hidden in the answer where the catalogue has one.  `make test-thorough` grades the rest.
SAMPLE = {
    "a1_batchnorm1d": ("correct_lerp", "eps_outside_sqrt", "delegates_f_batch_norm", "patched_allclose"),
    "a2_batchnorm2d": ("correct_matrix_means", "ln_stats_without_keepdim", "input_modified_inplace",
                       "eps_outside_sqrt__dgamma_not_summed_over_hw__norms_eps_outside_sqrt",
                       "gn_delegates_f_group_norm", "patched_reference"),
    "a3_alexnet_bn": ("correct_style_a", "eval_with_grad"),
    "a4_hyperparameters": ("correct_log10_dispatch_recursive_heapq", "plain_max_nan__keeps_ceil"),
    "a5_modern_architectures": ("correct_style_a", "delegates"),
}
CORE = ("solution", "blank")


def thorough(fixture_function):
    """Mark a fixture as costly: every test that uses it runs in the thorough tier.  Put it under
    ``@pytest.fixture``."""
    fixture_function._tier = THOROUGH_MARK
    return fixture_function


@functools.cache  # asked once per collected test
def quick_students(assignment: str) -> frozenset[str]:
    """The submissions of ``assignment`` that the quick tier grades."""
    from assignment_checks import catalogue_of  # it imports conftest, which imports this module

    _, faked = catalogue_of(assignment)
    return frozenset(CORE) | set(SAMPLE.get(assignment, ())) | {v.student for v in faked}


def _uses_thorough_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name in item.fixturenames:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if getattr(getattr(fixturedef, "func", None), "_tier", None) == THOROUGH_MARK:
                return True
    return False


def catalogue_needs(item) -> dict[str, set[str]]:
    """{assignment: students} of the graded catalogue that ``item`` reads.

    Declared by a ``@pytest.mark.catalogue(assignment, *students)`` marker, or read from the test's
    parameters (``assignment`` with ``variant`` or ``student``; a module's ``ASSIGNMENT`` with
    ``student``); a test that only asks for the graded class of an assignment needs its solution and
    its blank."""
    needs: dict[str, set[str]] = {}
    for mark in item.iter_markers("catalogue"):
        assignment, *students = mark.args
        needs.setdefault(assignment, set()).update(students or CORE)
    if "graded_catalogue" not in item.fixturenames or needs:
        return needs
    params = getattr(getattr(item, "callspec", None), "params", {})
    assignment = params.get("assignment") or getattr(item.module, "ASSIGNMENT", None)
    if assignment is None:
        return needs
    if "variant" in params:
        students = {params["variant"].student}
    elif "student" in params:
        students = {params["student"]}
    else:
        students = set(CORE)
    needs[assignment] = students
    return needs


def tier_of(item) -> str:
    if _uses_thorough_fixture(item):
        return THOROUGH_MARK
    for assignment, students in catalogue_needs(item).items():
        if not students <= quick_students(assignment):
            return THOROUGH_MARK
    return "quick"


def mark_tiers(items) -> None:
    for item in items:
        if tier_of(item) == THOROUGH_MARK:
            item.add_marker(pytest.mark.thorough)


def session_needs(items, assignment: str) -> set[str]:
    """Every submission of ``assignment`` that the selected tests of this session read."""
    needed: set[str] = set()
    for item in items:
        needed |= catalogue_needs(item).get(assignment, set())
    return needed
