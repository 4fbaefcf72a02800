"""Assignment 2 (BatchNorm2d, the backward pass by hand, small batches), end to end through real nbgrader.

- the source notebook: nbgrader metadata, three autograded answer cells (four solution regions in
  MyBatchNorm2d, two in BatchNorm2dFunction, two in MyLayerNorm/MyGroupNorm), locked test cells whose hidden tools are identical
  within each part, `nbgrader validate`;
- the committed release: equal to a fresh generation, eight blanks, no solution or hidden test, no
  outputs, the Colab badge; run alone in a fresh kernel it fails only with NotImplementedError
  raised from the answer cells' code;
- the catalogue of generated submissions (bncourse.classgen.a2_batchnorm2d: correct styles,
  partial submissions, one mistake in each answer cell, delegation, patching), graded ONCE by
  `nbgrader autograde` in a scratch course: each variant gets exactly the test cells its ``fails``
  set allows, read from the gradebook; when the student's code raises, the failing cells say so in
  Catalan (which operation failed, then the original error).

The claims of part 3 and of the model answer: tests/test_a2_claims.py.
(What all five share is the table of test_assignments.py; here, what is this assignment's own.)
"""
from __future__ import annotations

import re

import pytest
from assignment_checks import grade_cells as _test_cells, nbg as _nbg, outside_solutions as _outside_solutions, read_nb as _read
from conftest import REPO

from coursekit import classgen, gradebook
from bncourse.classgen import a2_batchnorm2d as catalogue
from coursekit.release import BADGE_ROLE

ASSIGNMENT = "a2_batchnorm2d"
NOTEBOOK = "batchnorm2d.ipynb"
SOURCE = REPO / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = REPO / "release" / ASSIGNMENT / NOTEBOOK
STUB = "# EL VOSTRE CODI AQUÍ\nraise NotImplementedError()"
TEXT_STUB = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"
ANSWERS = (catalogue.LAYER, catalogue.FUNCTION, catalogue.NORMS)
QUESTION = "answer_small_batches"
TOOLS_RE = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?# --- fi de les eines comunes ---)", re.DOTALL)
VARIANTS = catalogue.VARIANTS


# ---------------------------------------------------------------------------------------------------------
# the source notebook

def test_source_cells_and_metadata():
    nb = _read(SOURCE)
    answers = [c for c in nb.cells if _nbg(c).get("solution")]
    assert [(_nbg(c)["grade_id"], c.cell_type, bool(_nbg(c).get("grade"))) for c in answers] == [
        (catalogue.LAYER, "code", False), (catalogue.FUNCTION, "code", False), (catalogue.NORMS, "code", False),
        (QUESTION, "markdown", True)]
    assert _nbg(answers[3])["points"] == 3
    layer, function, norms = answers[0].source, answers[1].source, answers[2].source
    assert layer.count("### BEGIN SOLUTION") == layer.count("### END SOLUTION") == 4
    assert function.count("### BEGIN SOLUTION") == function.count("### END SOLUTION") == 2
    assert norms.count("### BEGIN SOLUTION") == norms.count("### END SOLUTION") == 2
    assert sum(c.source.count("### BEGIN SOLUTION") for c in nb.cells) == 9
    # the API and the given code stay visible
    for given in ("class MyBatchNorm2d(nn.Module)", "def __init__(self, num_features, eps=1e-5, momentum=0.1)",
                  'self.register_buffer("running_mean", torch.zeros(num_features))',
                  'self.register_buffer("running_var", torch.ones(num_features))',
                  "self.gamma = nn.Parameter(torch.ones(num_features))",
                  "self.beta = nn.Parameter(torch.zeros(num_features))", "if self.training:",
                  "y = self.gamma.view(1, -1, 1, 1) * x_hat + self.beta.view(1, -1, 1, 1)"):
        assert given in _outside_solutions(layer), given
    for given in ("class BatchNorm2dFunction(torch.autograd.Function)", "def forward(ctx, x, gamma, beta, eps)",
                  "return gamma.view(1, -1, 1, 1) * x_hat + beta.view(1, -1, 1, 1)",
                  "def backward(ctx, grad_out)", "return dx, dgamma, dbeta, None", "def bn2d_train("):
        assert given in _outside_solutions(function), given
    for given in ("class MyLayerNorm(nn.Module)", "def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True)",
                  "class MyGroupNorm(nn.Module)", "def __init__(self, num_groups, num_channels, eps=1e-5, affine=True)",
                  "return x_hat * self.weight + self.bias"):
        assert given in _outside_solutions(norms), given

    tests = _test_cells(nb)
    assert tuple(_nbg(c)["grade_id"] for c in tests) == catalogue.TESTS
    for c in tests:
        meta = _nbg(c)
        assert c.cell_type == "code" and meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert c.source.startswith("# Prova ("), f"{meta['grade_id']}: the first lines must say what it checks"
        assert f"({meta['points']} punt" in c.source.split("\n", 1)[0], f"{meta['grade_id']}: points in the comment"
        assert c.source.count("### BEGIN HIDDEN TESTS") == c.source.count("### END HIDDEN TESTS") == 1
        assert "FAST" not in c.source, f"{meta['grade_id']}: graded results must not depend on the mode"
    ids = [_nbg(c).get("grade_id") for c in nb.cells]
    assert ids.index("shared_course_utils") < ids.index(catalogue.LAYER) < ids.index(catalogue.LAYER_TESTS[0])
    assert ids.index(catalogue.LAYER_TESTS[-1]) < ids.index(catalogue.FUNCTION) < ids.index(catalogue.FUNCTION_TESTS[0])
    assert ids.index(catalogue.FUNCTION_TESTS[-1]) < ids.index(catalogue.NORMS) < ids.index(catalogue.NORM_TESTS[0])
    assert ids.index(catalogue.NORM_TESTS[-1]) < ids.index("experiment_code") < ids.index(QUESTION)
    shared = nb.cells[ids.index("shared_course_utils")]
    assert shared.source.split("\n", 1)[1].startswith("# coursekit: shared course_utils.py\n") and _nbg(shared)["locked"]
    assert not _nbg(shared)["grade"] and not _nbg(shared)["solution"]
    for read_only in ("setup", "experiment_code", "experiment_run"):
        assert _nbg(nb.cells[ids.index(read_only)])["locked"], read_only


def test_hidden_tools_are_identical_within_each_part():
    # the hidden tools (delegation detector, references written from scratch, comparisons) are repeated in
    # every test cell on purpose, so that a student's cell placed between two test cells cannot replace
    # them; within a part they must not drift
    cells = {_nbg(c)["grade_id"]: c.source for c in _test_cells(_read(SOURCE))}
    for part in (catalogue.LAYER_TESTS, catalogue.FUNCTION_TESTS, catalogue.NORM_TESTS):
        tools = {TOOLS_RE.search(cells[t]).group(1) for t in part}
        assert len(tools) == 1, part
        text = tools.pop()
        assert "allclose" not in text and "torch.testing" not in text
        assert not any(f"nn.{k}(" in text for k in ("BatchNorm2d", "LayerNorm", "GroupNorm"))


# ---------------------------------------------------------------------------------------------------------
# the committed release

def test_release_has_eight_blanks_and_nothing_hidden():
    source, release = _read(SOURCE), _read(RELEASE)
    text = RELEASE.read_text(encoding="utf-8")
    badge = release.cells[0]
    assert badge.metadata.get("coursekit", {}).get("role") == BADGE_ROLE
    assert f"/release/{ASSIGNMENT}/{NOTEBOOK}" in badge.source and "colab.research.google.com/github/" in badge.source

    layer = classgen.cell_by_grade_id(release, catalogue.LAYER).source
    function = classgen.cell_by_grade_id(release, catalogue.FUNCTION).source
    assert layer.count(STUB.replace("\n", "\n" + " " * 12)) == 4
    norms = classgen.cell_by_grade_id(release, catalogue.NORMS).source
    assert function.count(STUB.replace("\n", "\n" + " " * 8)) == 2
    assert norms.count(STUB.replace("\n", "\n" + " " * 8)) == 2
    assert sum(c.source.count("raise NotImplementedError()") for c in release.cells) == 8
    assert classgen.cell_by_grade_id(release, QUESTION).source.strip() == TEXT_STUB
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "eines comunes", "_AtenOps", "_NoEngine"):
        assert marker not in text, marker
    # no line of the instructor's solutions (code or written answer) survives
    for grade_id, released in ((catalogue.LAYER, layer), (catalogue.FUNCTION, function), (catalogue.NORMS, norms)):
        src = classgen.cell_by_grade_id(source, grade_id).source
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, flags=re.DOTALL):
            for line in region.strip().splitlines():
                assert line.strip() not in released, line
    for line in classgen.cell_by_grade_id(source, QUESTION).source.splitlines():
        assert not line.strip() or "SOLUTION" in line or line.strip() not in text
    for cell in release.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # the visible part of each test cell is what the student sees of it; the grader restores the rest
    for src_cell in _test_cells(source):
        rel_cell = classgen.cell_by_grade_id(release, _nbg(src_cell)["grade_id"])
        assert rel_cell.source.strip() == src_cell.source.split("### BEGIN HIDDEN TESTS")[0].strip()
        assert _nbg(rel_cell)["locked"] and _nbg(rel_cell)["points"] == _nbg(src_cell)["points"]
    shared = classgen.cell_by_grade_id(release, "shared_course_utils").source
    assert shared.split("\n", 1)[1] == "# coursekit: shared course_utils.py\n" + \
        (REPO / "notebooks" / "course_utils.py").read_text(encoding="utf-8").rstrip("\n")


def test_release_alone_fails_only_in_the_blanks(release_alone):
    """The release, alone in a folder and a fresh kernel (fast mode), runs top to bottom; every error is the
    stub's NotImplementedError raised from an answer cell's code (through the test cells), and the
    experiment of part 3, which does not depend on the answers, runs and plots."""
    nb, work = release_alone(ASSIGNMENT)  # run once per session (conftest), shared with the student guide's test
    answer_counts = {classgen.cell_by_grade_id(nb, a).execution_count for a in ANSWERS}
    failing = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type != "error":
                continue
            failing.append(_nbg(cell).get("grade_id"))
            assert out.ename == "NotImplementedError", (_nbg(cell).get("grade_id"), out.ename, out.evalue)
            frames = re.findall(r"Cell In\[(\d+)\]", re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.traceback)))
            assert frames and int(frames[-1]) in answer_counts, (_nbg(cell).get("grade_id"), out.traceback)
    assert failing == list(catalogue.TESTS)
    run = classgen.cell_by_grade_id(nb, "experiment_run")
    assert any("image/png" in o.get("data", {}) for o in run.outputs)
    assert not any(work.iterdir()), "fast mode must not download or write anything"


# ---------------------------------------------------------------------------------------------------------
# the catalogue of generated submissions

def test_catalogue_is_consistent():
    # what every catalogue must be (unique students, solution and blank first, the source's test cells)
    # is checked for all five in test_assignments.py; here, what this assignment's must hold
    solutions = {a: catalogue.solution(a) for a in ANSWERS}
    full_marks = [v for v in VARIANTS if v.fails == frozenset() and v.student != "solution"]
    assert len(full_marks) >= 2
    for answer in ANSWERS:  # two correct styles of each answer cell, different from the solution
        styles = {v.answers[answer] for v in full_marks}
        assert len(styles) == len(full_marks) and solutions[answer] not in styles
    for v in VARIANTS:
        assert set(v.answers) <= set(ANSWERS)
        classgen.expected_pass(v, list(catalogue.TESTS))  # raises on an unknown grade_id
        if v.student != "solution" and set(v.answers) == set(ANSWERS):
            assert any(v.answers[a] != solutions[a] for a in ANSWERS), v.student
        if v.fails != "all":
            assert set(v.fails) < set(catalogue.TESTS), v.student  # a mistake never costs everything
    mistakes = (set(catalogue._layer_mistakes()) | set(catalogue._function_mistakes()) | set(catalogue._norm_mistakes())
                | {v.student for v in VARIANTS})
    required = {"per_image_stats", "biased_running_var", "eps_outside_sqrt", "batch_stats_in_eval",
                "dx_missing_xhat_term", "dgamma_not_summed_over_hw", "backward_calls_autograd",
                "delegates_f_batch_norm", "subclass_batchnorm2d", "wraps_batchnorm2d", "patched_allclose",
                "eval_no_grad", "eval_detached", "bessel_with_batch_size", "ln_last_dim_only", "gn_interleaved_groups",
                "ln_unbiased_var", "gn_unbiased_var", "ln_delegates_f_layer_norm", "gn_delegates_f_group_norm",
                "ln_stats_without_keepdim"}
    assert required <= mistakes
    # a student with three mistakes has one in each answer cell, each seen only by that cell's tests
    for v in VARIANTS:
        if "__" in v.student:
            for part in (catalogue.LAYER_TESTS, catalogue.FUNCTION_TESTS, catalogue.NORM_TESTS):
                assert set(v.fails) & set(part), v.student
    # delegating MyBatchNorm2d loses every point of the layer and none of the Function
    for name in ("delegates_f_batch_norm", "eval_delegates_torch_batch_norm", "subclass_batchnorm2d",
                 "wraps_batchnorm2d"):
        assert set(next(v for v in VARIANTS if v.student == name).fails) == set(catalogue.LAYER_TESTS), name


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
    assert maxima[QUESTION] == 3 and all(maxima[t] > 0 for t in catalogue.TESTS)


def _errors(graded, student):
    """grade_id -> (ename, evalue) of each cell of the student's autograded notebook that ended in an error."""
    nb = _read(graded.autograded(student, ASSIGNMENT, NOTEBOOK))
    return {_nbg(c).get("grade_id"): (o.ename, o.evalue) for c in nb.cells for o in c.get("outputs", [])
            if o.output_type == "error"}


@pytest.mark.catalogue(ASSIGNMENT, "ln_stats_without_keepdim", "input_modified_inplace",
                       "eps_outside_sqrt__dgamma_not_summed_over_hw__norms_eps_outside_sqrt")
def test_a_crash_in_the_students_code_is_reported_in_catalan(graded):
    """When the student's code raises, the test cell fails with the notebook's Catalan message naming the
    operation that failed (check_call), with the original error after it, instead of a bare traceback; only
    the cells that use the failing class fail, and an in-place error adds its hint."""
    errors = _errors(graded, "ln_stats_without_keepdim")
    layernorm = {"test_layernorm_output", "test_layernorm_gradients", "test_norms_no_lot"}
    assert set(errors) == layernorm, errors
    for grade_id, (ename, evalue) in errors.items():
        assert ename == "AssertionError", (grade_id, ename, evalue)
        assert re.match(r"La passada endavant de MyLayerNorm\b.*: el vostre codi ha fallat\. "
                        r"Error original: RuntimeError: The size of tensor", evalue), (grade_id, evalue)
    # x -= mean on an input that requires grad: the cells where autograd refuses it say so in Catalan
    errors = _errors(graded, "input_modified_inplace")
    assert {"test_bn2d_gradients", "test_bn2d_channels_last", "test_bn2d_buffers_input"} <= set(errors), errors
    for grade_id in ("test_bn2d_gradients", "test_bn2d_channels_last", "test_bn2d_buffers_input"):
        ename, evalue = errors[grade_id]
        assert ename == "AssertionError" and "el vostre codi ha fallat (l'autograd no permet modificar in place" in evalue, \
            (grade_id, evalue)
    # a backward that returns dgamma of the wrong shape: autograd's error, reported as the backward's failure
    errors = _errors(graded, "eps_outside_sqrt__dgamma_not_summed_over_hw__norms_eps_outside_sqrt")
    for grade_id, operation in (("test_function_gradcheck", "gradcheck"), ("test_function_vs_autograd", "El backward")):
        ename, evalue = errors[grade_id]
        assert ename == "AssertionError" and evalue.startswith(operation) and "el vostre codi ha fallat" in evalue, \
            (grade_id, evalue)


def test_solution_notebook_runs_whole_with_the_plot(graded):
    """In the graded (fast-mode) solution every cell ran without error and the experiment plotted."""
    nb = _read(graded.autograded("solution", ASSIGNMENT, NOTEBOOK))
    assert not [_nbg(c).get("grade_id") for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    run = classgen.cell_by_grade_id(nb, "experiment_run")
    text = "".join(o.get("text", "") for o in run.outputs)
    for kind in ("BatchNorm", "LayerNorm", "GroupNorm"):
        assert re.search(rf"^\s*{kind}: lot 2: [0-9.]+ .*lot 128: [0-9.]+$", text, flags=re.MULTILINE), text
    assert any("image/png" in o.get("data", {}) for o in run.outputs)
