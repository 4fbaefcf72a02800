"""Assignment 3 (BatchNorm in AlexNet), end to end through real nbgrader.

- the source notebook: nbgrader metadata (five code answer cells, four written
  answers, seven locked test cells with points, visible and hidden parts), the
  locked shared and given cells;
- the committed release: `nbgrader validate` lists exactly its blanks; equal to
  a fresh generation, five code blanks and four
  text blanks, no solution, hidden test or output, the current shared code;
  run alone in a fresh kernel (fast mode) every error is the stub's
  NotImplementedError raised from an answer cell, and it runs to the first blank;
- the catalogue of generated submissions (bncourse.classgen.a3_alexnet_bn),
  graded ONCE by `nbgrader autograde` in a scratch course: each variant gets
  exactly the test cells its ``fails`` set allows, read from the gradebook; the
  graded solution ran whole and its printed comparison shows what the prose says.
(What all five share is the table of test_assignments.py; here, what is this assignment's own.)
"""
from __future__ import annotations

import re

import pytest
from assignment_checks import grade_cells as _test_cells, nbg as _nbg, read_nb as _read
from conftest import REPO, make_course, nbgrader

from coursekit import classgen, gradebook
from bncourse.classgen import a3_alexnet_bn as catalogue
from coursekit.paths import Course
from coursekit.release import BADGE_ROLE

ASSIGNMENT = "a3_alexnet_bn"
NOTEBOOK = "alexnet_bn.ipynb"
SOURCE = REPO / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = REPO / "release" / ASSIGNMENT / NOTEBOOK
CODE_STUB = "    # EL VOSTRE CODI AQUÍ\n    raise NotImplementedError()"
TEXT_STUB = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"
POINTS = {"test_features": 3, "test_classifier": 2, "test_alexnet_shape": 2, "test_alexnet_freeze": 3,
          "test_train_one_epoch": 3, "test_train_graphs": 1, "test_evaluate": 4,
          "answer_comparison": 3, "answer_learning_rate": 3, "answer_activations": 3, "answer_transfer": 3}
GIVEN = ("shared_course_utils", "given_setup", "given_alexnet")
VARIANTS = catalogue.VARIANTS


def _ids(nb) -> list:
    return [_nbg(c).get("grade_id") for c in nb.cells]


# ---------------------------------------------------------------------------------------------------------
# the source notebook

def test_source_cells_and_metadata():
    nb = _read(SOURCE)
    answers = [(_nbg(c)["grade_id"], c.cell_type, bool(_nbg(c).get("grade"))) for c in nb.cells if _nbg(c).get("solution")]
    assert answers == [(g, "code", False) for g in catalogue.CODE_ANSWERS] + \
        [(g, "markdown", True) for g in catalogue.WRITTEN_ANSWERS]
    for c in nb.cells:
        if _nbg(c).get("solution") and c.cell_type == "code":
            assert c.source.count("### BEGIN SOLUTION") == c.source.count("### END SOLUTION") == 1
            assert c.source.startswith("def ") or c.source.startswith("@"), _nbg(c)["grade_id"]
    tests = _test_cells(nb)
    assert tuple(_nbg(c)["grade_id"] for c in tests) == catalogue.TESTS
    for c in tests:
        meta = _nbg(c)
        assert c.cell_type == "code" and meta["locked"], meta["grade_id"]
        assert c.source.startswith("# Prova: "), f"{meta['grade_id']}: the first line must say what it checks"
        assert c.source.count("### BEGIN HIDDEN TESTS") == c.source.count("### END HIDDEN TESTS") == 1
        assert "FAST" not in c.source, f"{meta['grade_id']}: graded results must not depend on the mode"
    assert {_nbg(c)["grade_id"]: _nbg(c)["points"] for c in nb.cells if _nbg(c).get("grade")} == POINTS
    # each answer comes before its tests, the tests before the experiments that use the answers
    ids = _ids(nb)
    order = ["shared_course_utils", "given_setup", "given_alexnet", "build_features", "test_features",
             "build_classifier", "test_classifier", "build_alexnet", "test_alexnet_shape", "test_alexnet_freeze",
             "train_one_epoch", "test_train_one_epoch", "test_train_graphs", "evaluate", "test_evaluate", *catalogue.WRITTEN_ANSWERS]
    assert [ids.index(g) for g in order] == sorted(ids.index(g) for g in order)
    for g in GIVEN:
        meta = _nbg(nb.cells[ids.index(g)])
        assert meta["locked"] and not meta["grade"] and not meta["solution"], g
    shared = nb.cells[ids.index("shared_course_utils")]
    assert shared.source.split("\n", 1)[1].startswith("# coursekit: shared course_utils.py\n")


def test_release_validate_lists_exactly_the_blanks(tmp_path, monkeypatch):
    """The student's Validate button on the untouched release: the seven test cells fail with the stub's
    NotImplementedError and the four written answers are reported unanswered; nothing else fails.
    (That the instructor's solution passes every visible and hidden test is shown by the graded catalogue.)"""
    course = make_course(tmp_path / "course", [ASSIGNMENT])
    monkeypatch.setenv("COURSE_MODE", "fast")
    proc = nbgrader(course, "validate", str(course.release / ASSIGNMENT / NOTEBOOK), check=False)
    out = proc.stdout
    assert f"VALIDATION FAILED ON {len(catalogue.TESTS) + len(catalogue.WRITTEN_ANSWERS)} CELL(S)" in out, out
    failed = re.findall(r"The following cell failed:\n\n\s+(.+)", out)
    want = [_test_cells(_read(RELEASE))[i].source.splitlines()[0][:40] for i in range(len(catalogue.TESTS))]
    assert [f[:40] for f in failed[:len(want)]] == want, failed
    assert failed[len(want):] == [TEXT_STUB] * len(catalogue.WRITTEN_ANSWERS), failed
    errors = re.findall(r"^\s+(\w+Error)\b", out, flags=re.MULTILINE)
    assert errors and set(errors) == {"NotImplementedError"}, errors


def test_written_answers_carry_a_rubric_and_their_questions_ask_for_numbers():
    """Each model answer ends with a rubric (inside the solution region, so students never see it) whose points add
    up to the cell's points; each question asks the student to quote the numbers of their own run; the experiments
    that the answers discuss are tagged as evidence (their Colab outputs are kept when grading)."""
    nb = _read(SOURCE)
    by_id = {c.get("id"): c for c in nb.cells}
    for cell in nb.cells:
        meta = _nbg(cell)
        if meta.get("grade_id") not in catalogue.WRITTEN_ANSWERS:
            continue
        body = cell.source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
        rubric = re.search(r"\*\*Rúbrica \((\d+) punts?\)\*\*\n((?:- .+\n?)+)", body)
        assert rubric, meta["grade_id"]
        assert int(rubric.group(1)) == meta["points"], meta["grade_id"]
        items = [float(p.replace(",", ".")) for p in re.findall(r"^- (\d+(?:,\d+)?) punts?:", rubric.group(2), flags=re.MULTILINE)]
        assert len(items) == len(rubric.group(2).strip().splitlines()) and sum(items) == meta["points"], meta["grade_id"]
        question = nb.cells[nb.cells.index(cell) - 1]
        assert question.cell_type == "markdown" and "Citeu" in question.source, meta["grade_id"]
    evidence = [c.get("id") for c in nb.cells if "evidence" in c.metadata.get("tags", [])]
    assert evidence == ["exp-compare", "exp-lr", "exp-activations", "exp-transfer", "bn-frozen"]
    assert all(by_id[i].cell_type == "code" for i in evidence)
    release = _read(RELEASE)
    assert [c.get("id") for c in release.cells if "evidence" in c.metadata.get("tags", [])] == evidence
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown" and not _nbg(c).get("solution"))
    assert "signifiquin" not in text and "Rúbrica" not in RELEASE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# the committed release

def test_release_has_the_blanks_and_nothing_hidden():
    source, release = _read(SOURCE), _read(RELEASE)
    text = RELEASE.read_text(encoding="utf-8")
    badge = release.cells[0]
    assert badge.metadata.get("coursekit", {}).get("role") == BADGE_ROLE
    assert f"/release/{ASSIGNMENT}/{NOTEBOOK}" in badge.source

    assert sum(c.source.count("raise NotImplementedError()") for c in release.cells) == len(catalogue.CODE_ANSWERS)
    for g in catalogue.CODE_ANSWERS:
        cell = classgen.cell_by_grade_id(release, g).source
        assert cell.endswith(CODE_STUB), g
        solution = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION",
                             classgen.cell_by_grade_id(source, g).source, flags=re.DOTALL).group(1)
        for line in solution.strip().splitlines():
            assert line.strip() not in cell, (g, line)
    for g in catalogue.WRITTEN_ANSWERS:
        assert classgen.cell_by_grade_id(release, g).source.strip() == TEXT_STUB
        for line in classgen.solution_source(Course.at(REPO), ASSIGNMENT, g).splitlines():
            assert not line.strip() or line.strip() not in text
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "_StepSpy", "fill_(0.5)"):
        assert marker not in text, marker
    for cell in release.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # the visible part of each test cell is what the student sees; the grader restores the rest
    for src_cell in _test_cells(source):
        rel_cell = classgen.cell_by_grade_id(release, _nbg(src_cell)["grade_id"])
        assert rel_cell.source.strip() == src_cell.source.split("### BEGIN HIDDEN TESTS")[0].strip()
        assert _nbg(rel_cell)["locked"] and _nbg(rel_cell)["points"] == _nbg(src_cell)["points"]
    shared = classgen.cell_by_grade_id(release, "shared_course_utils").source
    assert shared.split("\n", 1)[1] == "# coursekit: shared course_utils.py\n" + \
        (REPO / "notebooks" / "course_utils.py").read_text(encoding="utf-8").rstrip("\n")


def test_release_alone_fails_only_in_the_blanks(release_alone):
    """The release, alone in a folder and a fresh kernel (fast mode), runs top to bottom; every error is the
    stub's NotImplementedError raised from an answer cell's code, the first one in the first test cell."""
    nb, work = release_alone(ASSIGNMENT)  # run once per session (conftest), shared with the student guide's test
    answer_counts = {classgen.cell_by_grade_id(nb, g).execution_count for g in catalogue.CODE_ANSWERS}
    failing = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type != "error":
                continue
            failing.append(_nbg(cell).get("grade_id") or cell.get("id"))
            assert out.ename == "NotImplementedError", (cell.get("id"), out.ename, out.evalue)
            frames = re.findall(r"Cell In\[(\d+)\]", re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.traceback)))
            assert frames and int(frames[-1]) in answer_counts, (cell.get("id"), out.traceback)
    # every test cell and every experiment that uses the answers stops at a blank; nothing before the first does
    assert failing == [*catalogue.TESTS, "exp-setup", "exp-compare", "exp-lr", "exp-activations", "exp-transfer",
                       "final-test"]
    first = [c.get("id") for c in nb.cells].index(next(c.get("id") for c in nb.cells
                                                      if _nbg(c).get("grade_id") == catalogue.TESTS[0]))
    assert all(c.execution_count for c in nb.cells[:first] if c.cell_type == "code")
    assert not any(work.iterdir()), "fast mode must not download or write anything"


# ---------------------------------------------------------------------------------------------------------
# the catalogue of generated submissions

def test_catalogue_is_consistent():
    # what every catalogue must be (unique students, solution and blank first, the source's test cells)
    # is checked for all five in test_assignments.py; here, what this assignment's must hold
    answer_ids = set(catalogue.CODE_ANSWERS) | set(catalogue.WRITTEN_ANSWERS)
    correct = [v for v in VARIANTS if v.fails == frozenset() and v.student != "solution"]
    assert len(correct) >= 3
    for g in catalogue.CODE_ANSWERS:  # the correct styles really differ from the solution in every cell
        assert len({catalogue.solution(g)} | {v.answers[g] for v in correct}) == len(correct) + 1, g
    for v in VARIANTS:
        assert set(v.answers) <= answer_ids, v.student
        classgen.expected_pass(v, list(catalogue.TESTS))  # raises on an unknown grade_id
        if v.fails != "all":
            assert set(v.fails) < set(catalogue.TESTS), v.student
    # every classic mistake the assignment names is in the catalogue
    descriptions = " ".join(v.description for v in VARIANTS)
    for mistake in ("without model.eval()", "no optimizer.zero_grad()", "Softmax applied to the logits before",
                    "without torch.no_grad()", "BatchNorm2d after the ReLU", "freeze_features ignored",
                    "loss accumulated as a tensor"):
        assert mistake in descriptions, mistake


@pytest.fixture(scope="module")
def graded(graded_catalogue):
    """The whole catalogue (and its faked submissions) graded once by plain nbgrader, shared with the
    table of test_assignments.py (conftest's ``graded_catalogue``)."""
    return graded_catalogue(ASSIGNMENT)


def test_gradebook_lists_the_tests_of_the_notebook(graded):
    scores, maxima = graded.scores, graded.maxima
    for course in graded.courses:
        assert tuple(gradebook.autograded_tests(course, ASSIGNMENT)) == catalogue.TESTS
    assert {"solution", "blank"} <= set(scores) <= {v.student for v in VARIANTS}  # what this session reads
    assert maxima == POINTS


def _outputs(nb, cell_id: str) -> tuple[str, list]:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs), cell.outputs


@pytest.mark.parametrize("student", ["solution", "correct_style_a", "correct_style_b"])
def test_correct_submissions_run_whole_and_show_the_claims(graded, student):
    """In a graded (fast-mode) correct submission every cell ran without error, every experiment drew its
    plot, and the printed results say what the prose claims: +BN reaches the baseline's best validation
    accuracy in fewer epochs, and at the sweep's highest learning rate the baseline ends at chance (or diverges)
    while the BN network learns, far above it. (The same claims on several seeds and float orders:
    test_a3_claims.py.)"""
    nb = _read(graded.autograded(student, ASSIGNMENT, NOTEBOOK))
    errors = [c.get("id") for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert not errors
    for cell_id in ("data", "exp-compare", "exp-lr", "exp-activations", "exp-transfer"):
        assert any("image/png" in o.get("data", {}) for o in _outputs(nb, cell_id)[1]), cell_id

    table, _ = _outputs(nb, "exp-compare")
    reach = {name: int(e) if e != "-" else None for name, e in
             re.findall(r"^\s*(\S+) \|\s+[0-9.]+ \|\s+(\d+|-) \|", table, flags=re.MULTILINE)}
    assert set(reach) == {"base", "+BN", "+Dropout", "+BN+Dropout"}, table
    assert reach["+BN"] is not None and reach["+BN"] < reach["base"], table

    sweep, _ = _outputs(nb, "exp-lr")
    chance = float(re.search(r"^atzar: exactitud ([0-9.]+)", sweep, flags=re.MULTILINE).group(1))
    rows = {(float(lr), bn): (float(best), float(last), note) for lr, bn, best, last, note in
            re.findall(r"^lr=([0-9.]+)\s+(sense|amb) BN: millor exactitud de validació ([0-9.]+)"
                       r" · a l'última època ([0-9.]+) · pèrdua d'entrenament final \S+(.*)$", sweep, flags=re.MULTILINE)}
    assert len(rows) == 4, sweep
    high = max(lr for lr, _ in rows)
    base, bn = rows[(high, "sense")], rows[(high, "amb")]
    # the baseline ends at chance (or diverges); +BN learns, far above the baseline's best
    assert "divergeix" in base[2] or base[1] <= chance + 0.05, sweep
    assert bn[0] >= 0.7 and bn[0] - base[0] >= 0.4 and "divergeix" not in bn[2], sweep
