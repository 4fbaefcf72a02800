"""What every assignment of the series must do, one table for all five.

Each row is an assignment (or one generated submission of its catalogue): the source passes
``nbgrader validate`` (A1, A2, A4; A3 and A5 validate their release in their own modules); the committed release equals a fresh generation; the catalogue is
consistent (unique students, the solution and the blank first, exactly the source's test cells,
at least two right answers in other styles, no mistake that costs everything); graded once by
plain nbgrader (conftest's ``graded_catalogue``, shared with each assignment's own module), the
solution gets every point and the blank none, every variant exactly the test cells its work
deserves, every faked submission loses exactly the points it faked.  What is particular to one
assignment (its cells, its blanks, its experiments and claims) stays in its own module,
``test_<assignment>.py``.
"""
from __future__ import annotations

import importlib

import pytest
from assignment_checks import catalogue_of, check_faked_submission, grade_cells, nbg, read_nb, wrong_points
import tiers
from conftest import REPO, make_course, nbgrader

from bncourse import ASSIGNMENTS
from coursekit import classgen, gradebook
from coursekit.paths import Course
from coursekit.release import release_differences

pytestmark = pytest.mark.slow


def _tests(assignment: str) -> tuple[str, ...]:
    """The autograded test cells of the assignment, in notebook order (its catalogue's ``TESTS``)."""
    return importlib.import_module(f"bncourse.classgen.{assignment}").TESTS


def _source(assignment: str):
    (path,) = sorted((REPO / "source" / assignment).glob("*.ipynb"))
    return path


def _rows(kind: int):
    rows = []
    for assignment in ASSIGNMENTS:
        for variant in catalogue_of(assignment)[kind]:
            rows.append(pytest.param(assignment, variant, id=f"{assignment}-{variant.student}"))
    return rows


# A3 and A5 validate their release instead (their modules: exactly the blanks fail); validating their
# source would execute their slowest solution notebooks once more (about 40 s each on 2 cores).
@pytest.mark.parametrize("assignment", [a for a in ASSIGNMENTS if a not in ("a3_alexnet_bn", "a5_modern_architectures")])
def test_source_passes_nbgrader_validate(tmp_path, assignment):
    course = make_course(tmp_path / "course", [assignment])
    proc = nbgrader(course, "validate", str(course.source / assignment / _source(assignment).name))
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_equals_a_fresh_generation(assignment):
    assert release_differences(Course.at(REPO), [assignment]) == []


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalogue_is_consistent(assignment):
    variants, faked = catalogue_of(assignment)
    tests = _tests(assignment)
    students = [v.student for v in variants + faked]
    assert len(set(students)) == len(students)
    assert students[:2] == ["solution", "blank"]
    assert set(tests) == {nbg(c)["grade_id"] for c in grade_cells(read_nb(_source(assignment)))}
    answers = {nbg(c)["grade_id"] for c in read_nb(_source(assignment)).cells if nbg(c).get("solution")}
    right = [v for v in variants if v.fails == frozenset() and v.student != "solution"]
    assert len(right) >= 2, "right answers in at least two other styles"
    for v in variants + faked:
        assert set(v.answers) <= answers, v.student       # only answer cells are the student's
        classgen.expected_pass(v, list(tests))             # raises on an unknown grade_id
        if v.fails != "all" and v.student != "blank":
            assert set(v.fails) < set(tests), v.student    # a mistake never costs everything


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_gradebook_lists_the_tests_and_the_class(request, graded_catalogue, assignment):
    graded = graded_catalogue(assignment)
    for course in graded.courses:
        assert tuple(gradebook.autograded_tests(course, assignment)) == _tests(assignment)
    # exactly the submissions this session's tests read (tests/tiers.py), each graded once
    assert set(graded.scores) == tiers.session_needs(request.session.items, assignment)
    assert all(graded.maxima[t] > 0 for t in _tests(assignment))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_every_point_and_blank_none(graded_catalogue, assignment):
    graded, tests = graded_catalogue(assignment), _tests(assignment)
    scores, maxima = graded.scores, graded.maxima
    assert {t: scores["solution"][t] for t in tests} == {t: maxima[t] for t in tests}
    assert sum(scores["blank"][t] for t in tests) == 0


@pytest.mark.parametrize("assignment, variant", _rows(0))
def test_variant_gets_exactly_its_points(graded_catalogue, assignment, variant):
    wrong = wrong_points(graded_catalogue(assignment), variant, _tests(assignment))
    assert not wrong, f"{variant.student} ({variant.description}): {wrong}"


@pytest.mark.parametrize("assignment, variant", _rows(1))
def test_faked_submission_loses_exactly_the_points_it_faked(graded_catalogue, assignment, variant):
    check_faked_submission(graded_catalogue(assignment), variant, _tests(assignment), assignment,
                           _source(assignment).name)
