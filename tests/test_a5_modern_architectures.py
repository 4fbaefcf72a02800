"""Assignment 5 (BatchNorm in modern architectures), end to end through real nbgrader.

- the source notebook: nbgrader metadata (five code answer cells, six written
  answers with rubrics, eight locked test cells with points, visible and hidden
  parts), the locked shared and given cells, the `evidence` tags;
- the committed release: equal to a fresh generation, the blanks and nothing
  hidden; `nbgrader validate` lists exactly its blanks; run alone in a fresh
  kernel (fast mode) every error is the stub's NotImplementedError raised from
  an answer cell;
- the catalogue of generated submissions (bncourse.classgen.a5_modern_architectures),
  graded ONCE by `nbgrader autograde` in scratch courses: each variant gets
  exactly the test cells its ``fails`` set allows, read from the gradebook; the
  graded correct submissions ran whole and their printed evidence says what the
  model answers say (requires_grad=False alone lets the running mean move, a
  zero-initialised block is the identity, the folded ResNet has no BN and the
  same outputs, AlexNet+BN takes torchvision's keys with only its BN missing,
  has more parameters than the ResNet, and both learn in the transfer comparison);
- faked submissions (``catalogue.faked()``: a patched ``torch.allclose``, a
  ``freeze_bn`` right only inside the notebook's test cells, an input
  transformer that empties the test cells), graded in the same run: their
  kernel passes every test cell, and the trusted re-check out of the kernel
  (``bncourse.checks.a5_modern_architectures``) takes exactly the points of
  the functions they faked.
(What all five share is the table of test_assignments.py; here, what is this assignment's own.)
"""
from __future__ import annotations

import re

import pytest
from assignment_checks import grade_cells as _test_cells, nbg as _nbg, read_nb as _read
from conftest import REPO, make_course, nbgrader

from coursekit import classgen, gradebook
from bncourse.classgen import a5_modern_architectures as catalogue
from bncourse import ASSIGNMENTS
from coursekit.paths import Course
from coursekit.release import BADGE_ROLE

ASSIGNMENT = "a5_modern_architectures"
NOTEBOOK = "modern_architectures.ipynb"
SOURCE = REPO / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = REPO / "release" / ASSIGNMENT / NOTEBOOK
TEXT_STUB = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"
POINTS = {"test_block_structure": 2, "test_block_torchvision": 3, "test_zero_init": 2, "test_resnet18": 3,
          "test_fold_bn": 4, "test_fold_resnet": 2, "test_freeze_bn_stats": 3, "test_freeze_bn_params": 2,
          "answer_zero_init": 2, "answer_folding": 2, "answer_freeze": 3, "answer_layernorm": 2,
          "answer_finetune": 3, "answer_transfer": 3}
GIVEN = ("shared_course_utils", "shared_course_loops", "given_setup", "given_resnet")
EXPERIMENTS = ("exp-zero-init", "exp-fold", "exp-finetune", "exp-transfer")  # the experiments that use the student's answers
EVIDENCE = ("freeze-demo", "exp-zero-init", "exp-fold", "exp-layernorm", "exp-finetune", "exp-transfer")  # the cells the written answers discuss
VARIANTS = catalogue.VARIANTS
FAKED = catalogue.faked()


def _ids(nb) -> list:
    return [_nbg(c).get("grade_id") for c in nb.cells]


# ---------------------------------------------------------------------------------------------------------
# the source notebook

def test_assignment_is_part_of_the_series():
    assert ASSIGNMENT in ASSIGNMENTS


def test_source_cells_and_metadata():
    nb = _read(SOURCE)
    answers = [(_nbg(c)["grade_id"], c.cell_type, bool(_nbg(c).get("grade"))) for c in nb.cells if _nbg(c).get("solution")]
    assert answers == [(g, "code", False) for g in catalogue.CODE_ANSWERS] + \
        [(g, "markdown", True) for g in catalogue.WRITTEN_ANSWERS]
    for c in nb.cells:
        if _nbg(c).get("solution") and c.cell_type == "code":
            # the class has two regions (constructor and forward), so that the release still defines it
            want = 2 if _nbg(c)["grade_id"] == "build_block" else 1
            assert c.source.count("### BEGIN SOLUTION") == c.source.count("### END SOLUTION") == want
            assert c.source.startswith(("def ", "class ")), _nbg(c)["grade_id"]
    tests = _test_cells(nb)
    assert tuple(_nbg(c)["grade_id"] for c in tests) == catalogue.TESTS
    for c in tests:
        meta = _nbg(c)
        assert c.cell_type == "code" and meta["locked"], meta["grade_id"]
        assert c.source.startswith("# Prova: "), f"{meta['grade_id']}: the first line must say what it checks"
        assert c.source.count("### BEGIN HIDDEN TESTS") == c.source.count("### END HIDDEN TESTS") == 1
        assert "FAST" not in c.source, f"{meta['grade_id']}: graded results must not depend on the mode"
        assert "weights=None" in c.source or "resnet18" not in c.source, "tests never download weights"
    assert {_nbg(c)["grade_id"]: _nbg(c)["points"] for c in nb.cells if _nbg(c).get("grade")} == POINTS
    ids = _ids(nb)
    order = ["shared_course_utils", "given_setup", "build_block", "test_block_structure", "test_block_torchvision",
             "test_zero_init", "given_resnet", "build_resnet", "test_resnet18", "fold_bn", "test_fold_bn",
             "fold_resnet", "test_fold_resnet", "freeze_bn", "test_freeze_bn_stats", "test_freeze_bn_params",
             *catalogue.WRITTEN_ANSWERS]
    assert [ids.index(g) for g in order] == sorted(ids.index(g) for g in order)
    for g in GIVEN:
        meta = _nbg(nb.cells[ids.index(g)])
        assert meta["locked"] and not meta["grade"] and not meta["solution"], g
    assert nb.cells[ids.index("shared_course_utils")].source.split("\n", 1)[1].startswith("# coursekit: shared course_utils.py\n")
    # the cells whose outputs the written answers discuss are tagged as evidence
    tagged = [c.get("id") for c in nb.cells if "evidence" in c.metadata.get("tags", [])]
    assert tuple(tagged) == EVIDENCE


def test_written_answers_have_a_rubric_that_adds_up():
    nb = _read(SOURCE)
    for g in catalogue.WRITTEN_ANSWERS:
        cell = classgen.cell_by_grade_id(nb, g)
        solution = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, flags=re.DOTALL).group(1)
        head = re.search(r"\*\*Rúbrica \((\d+) punts?\)\*\*", solution)
        assert head and int(head.group(1)) == POINTS[g], g
        items = [float(p.replace(",", ".")) for p in re.findall(r"^- ([0-9]+(?:,[0-9]+)?):", solution, flags=re.MULTILINE)]
        assert items and sum(items) == POINTS[g], (g, items)
        question = nb.cells[nb.cells.index(cell) - 1].source
        assert "Citeu" in question, f"{g}: the question must ask for the student's own numbers"


# ---------------------------------------------------------------------------------------------------------
# the committed release

def test_release_has_the_blanks_and_nothing_hidden():
    source, release = _read(SOURCE), _read(RELEASE)
    text = RELEASE.read_text(encoding="utf-8")
    badge = release.cells[0]
    assert badge.metadata.get("coursekit", {}).get("role") == BADGE_ROLE
    assert f"/release/{ASSIGNMENT}/{NOTEBOOK}" in badge.source
    stubs = {_nbg(c).get("grade_id"): c.source.count("raise NotImplementedError()") for c in release.cells
             if _nbg(c).get("solution")}
    assert stubs == {**{g: 1 for g in catalogue.CODE_ANSWERS}, "build_block": 2, **{g: 0 for g in catalogue.WRITTEN_ANSWERS}}
    for g in catalogue.CODE_ANSWERS:
        cell = classgen.cell_by_grade_id(release, g).source
        assert re.search(r"# EL VOSTRE CODI AQUÍ\n\s+raise NotImplementedError\(\)$", cell.rstrip()), g
        for solution in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION",
                                   classgen.cell_by_grade_id(source, g).source, flags=re.DOTALL):
            for line in solution.strip().splitlines():
                assert len(line.strip()) < 5 or line.strip() not in cell, (g, line)  # not just a bracket
    for g in catalogue.WRITTEN_ANSWERS:
        assert classgen.cell_by_grade_id(release, g).source.strip() == TEXT_STUB
        for line in classgen.solution_source(Course.at(REPO), ASSIGNMENT, g).splitlines():
            assert not line.strip() or line.strip() not in text
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "_forbidden", "Rúbrica"):
        assert marker not in text, marker
    for cell in release.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    for src_cell in _test_cells(source):
        rel_cell = classgen.cell_by_grade_id(release, _nbg(src_cell)["grade_id"])
        assert rel_cell.source.strip() == src_cell.source.split("### BEGIN HIDDEN TESTS")[0].strip()
        assert _nbg(rel_cell)["locked"] and _nbg(rel_cell)["points"] == _nbg(src_cell)["points"]
    shared = classgen.cell_by_grade_id(release, "shared_course_utils").source
    assert shared.split("\n", 1)[1] == "# coursekit: shared course_utils.py\n" + \
        (REPO / "notebooks" / "course_utils.py").read_text(encoding="utf-8").rstrip("\n")


def test_release_validate_lists_exactly_the_blanks(tmp_path, monkeypatch):
    """The student's Validate button on the untouched release: every test cell fails with the stub's
    NotImplementedError and the written answers are reported unanswered; nothing else fails."""
    course = make_course(tmp_path / "course", [ASSIGNMENT])
    monkeypatch.setenv("COURSE_MODE", "fast")
    out = nbgrader(course, "validate", str(course.release / ASSIGNMENT / NOTEBOOK), check=False).stdout
    assert f"VALIDATION FAILED ON {len(catalogue.TESTS) + len(catalogue.WRITTEN_ANSWERS)} CELL(S)" in out, out
    failed = re.findall(r"The following cell failed:\n\n\s+(.+)", out)
    want = [c.source.splitlines()[0][:40] for c in _test_cells(_read(RELEASE))]
    assert [f[:40] for f in failed[:len(want)]] == want, failed
    assert failed[len(want):] == [TEXT_STUB] * len(catalogue.WRITTEN_ANSWERS), failed
    errors = re.findall(r"^\s+(\w+Error)\b", out, flags=re.MULTILINE)
    assert errors and set(errors) == {"NotImplementedError"}, errors


def test_release_alone_fails_only_in_the_blanks(release_alone):
    """The release, alone in a folder and a fresh kernel (fast mode), runs top to bottom; every error is the
    stub's NotImplementedError raised from an answer cell's code; the demonstration that requires_grad=False
    does not freeze BN runs without any answer."""
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
    assert failing == [*catalogue.TESTS, *EXPERIMENTS]
    demo = next(c for c in nb.cells if c.get("id") == "freeze-demo")
    assert "canvi màxim de running_mean" in "".join(o.get("text", "") for o in demo.outputs)
    layernorm = next(c for c in nb.cells if c.get("id") == "exp-layernorm")
    assert "dependència del lot" in "".join(o.get("text", "") for o in layernorm.outputs)
    assert not any(work.iterdir()), "fast mode must not download or write anything"


# ---------------------------------------------------------------------------------------------------------
# the catalogue of generated submissions

def test_catalogue_is_consistent():
    # what every catalogue must be (unique students, solution and blank first, the source's test cells)
    # is checked for all five in test_assignments.py; here, what this assignment's must hold
    answer_ids = set(catalogue.CODE_ANSWERS) | set(catalogue.WRITTEN_ANSWERS)
    correct = [v for v in VARIANTS if v.fails == frozenset() and v.student != "solution"]
    assert len(correct) >= 2
    for g in catalogue.CODE_ANSWERS:  # the correct styles really differ from the solution in every cell
        assert len({catalogue.solution(g)} | {v.answers[g] for v in correct}) == len(correct) + 1, g
    for v in VARIANTS:
        assert set(v.answers) <= answer_ids, v.student
        classgen.expected_pass(v, list(catalogue.TESTS))
        if v.fails != "all":
            assert set(v.fails) < set(catalogue.TESTS), v.student
    descriptions = " ".join(v.description for v in VARIANTS)
    for mistake in ("ReLU before the sum", "shortcut without its BN", "folding without eps", "ignores the conv bias",
                    "requires_grad=False only", "bn.eval() once", "zero-init on bn1", "module names not torchvision's",
                    "subclasses torchvision's", "fuse_conv_bn_eval", "stages of torchvision's resnet18"):
        assert mistake in descriptions, mistake


@pytest.fixture(scope="module")
def graded(graded_catalogue):
    """The whole catalogue (and its faked submissions) graded once by plain nbgrader, shared with the
    table of test_assignments.py (conftest's ``graded_catalogue``)."""
    return graded_catalogue(ASSIGNMENT)


def test_gradebook_lists_the_tests_of_the_notebook(graded):
    for course in graded.courses:
        assert tuple(gradebook.autograded_tests(course, ASSIGNMENT)) == catalogue.TESTS
    assert {"solution", "blank"} <= set(graded.scores) <= {v.student for v in VARIANTS + FAKED}
    assert graded.maxima == POINTS


def _text(nb, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs)


@pytest.mark.parametrize("student", ["solution", "correct_style_a", "correct_style_b"])
def test_correct_submissions_run_whole_and_show_the_claims(graded, student):
    """A graded (fast-mode) correct submission ran without error and its evidence cells print what the
    model answers state."""
    nb = _read(graded.autograded(student, ASSIGNMENT, NOTEBOOK))
    errors = [c.get("id") for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert not errors

    demo = _text(nb, "freeze-demo")
    assert "[False, False]" in demo
    moved = float(re.search(r"running_mean després d'un sol lot en mode train\(\): ([0-9.]+)", demo).group(1))
    assert moved > 0.01 and "num_batches_tracked): 1" in demo, demo

    zero = _text(nb, "exp-zero-init")
    rows = dict(re.findall(r"zero_init_residual=(True|False)\s*: canvi relatiu per bloc ([0-9. ]+)", zero))
    plain, zeroed = ([float(v) for v in rows[k].split()] for k in ("False", "True"))
    assert len(plain) == len(zeroed) == 5, zero  # ResNet-18: five blocks with an identity shortcut
    assert all(v == 0 for v in zeroed) and min(plain) > 0.2, zero

    table = dict(((n, int(b)), (float(d), float(g))) for n, b, d, g in re.findall(
        r"^\s*(BN|LN) \|\s+(\d+) \|\s+([0-9.]+) \|\s+([0-9.]+)$", _text(nb, "exp-layernorm"), flags=re.MULTILINE))
    assert len(table) == 4 and table[("LN", 2)] == table[("LN", 64)] == (0.0, 0.0), table

    fold = _text(nb, "exp-fold")
    assert "BN al model original: 20; al plegat: 0" in fold, fold
    assert float(re.search(r"diferència màxima entre les sortides: ([0-9.e+-]+)", fold).group(1)) < 1e-4, fold

    finetune = _text(nb, "exp-finetune")
    final = {k: float(v.split()[-1]) for k, v in re.findall(
        r"^\s*(.+?): exactitud de validació \(eval\) per època ([0-9. ]+)$", finetune, flags=re.MULTILINE)}
    assert len(final) == 3, finetune
    assert final["BN en mode entrenament"] < min(final["BN congelada (freeze_bn)"], final["GroupNorm"]), finetune

    transfer = _text(nb, "exp-transfer")
    assert "AlexNet+BN: 28 claus sense pes preentrenat, totes de les 7 BN noves; cap clau sobrera" in transfer, transfer
    rows = {name: tuple(int(n.replace(",", "")) for n in numbers) for name, *numbers in re.findall(
        r"^\s*(ResNet|AlexNet\+BN) \(miniatura\) \|\s+([0-9,]+) \|\s+([0-9,]+) \|\s+([0-9,]+) \|", transfer,
        flags=re.MULTILINE)}
    assert set(rows) == {"ResNet", "AlexNet+BN"}, transfer
    assert rows["ResNet"][0] < rows["AlexNet+BN"][0], transfer          # fewer parameters in the ResNet
    assert all(total == trainable for total, trainable, _ in rows.values()), transfer  # the whole network trains
    chance = float(re.search(r"atzar: ([0-9.]+)", transfer).group(1))
    accuracies = {k: [float(a) for a in v.split()] for k, v in re.findall(
        r"^\s*(.+?) \(miniatura\): exactitud de validació per època ([0-9. ]+)$", transfer, flags=re.MULTILINE)}
    assert set(accuracies) == {"ResNet", "AlexNet+BN"} and min(a[-1] for a in accuracies.values()) > chance + 0.1, transfer
