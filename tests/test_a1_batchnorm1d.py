"""Assignment 1 (BatchNorm1d from scratch), end to end through real nbgrader.

- the source notebook: nbgrader metadata, one autograded answer cell with four
  solution regions, locked test cells, a common hidden guard, `nbgrader validate`;
- the committed release: equal to a fresh generation, four blanks, no solution
  or hidden test, no outputs, the Colab badge; run alone in a fresh kernel it
  fails only with NotImplementedError raised from the answer cell's code;
- the catalogue of generated submissions (bncourse.classgen.a1_batchnorm1d),
  graded ONCE by plain `nbgrader autograde` (two scratch courses side by side): each variant gets
  exactly the test cells its ``fails`` set allows, read from the gradebook.
(What all five share is the table of test_assignments.py; here, what is this assignment's own.)
"""
from __future__ import annotations

import re

import pytest
from assignment_checks import grade_cells as _test_cells, nbg as _nbg, outside_solutions as _outside_solutions, read_nb as _read
from conftest import REPO, make_course

from coursekit import classgen, gradebook, nbshared
from bncourse.classgen import a1_batchnorm1d as catalogue
from coursekit.paths import Course
from coursekit.release import BADGE_ROLE

ASSIGNMENT = "a1_batchnorm1d"
NOTEBOOK = "batchnorm1d.ipynb"
SOURCE = REPO / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = REPO / "release" / ASSIGNMENT / NOTEBOOK
STUB_RE = re.compile(r"^([ \t]*)# EL VOSTRE CODI AQUÍ\n\1raise NotImplementedError\(\)$", re.MULTILINE)  # the code_stub
TEXT_STUB = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"
GUARD_RE = re.compile(r"# ── guarda comuna.*?# ── fi de la guarda comuna ──", re.DOTALL)
VARIANTS = catalogue.VARIANTS


# ---------------------------------------------------------------------------------------------------------
# the source notebook

def test_source_cells_and_metadata():
    nb = _read(SOURCE)
    answers = [c for c in nb.cells if _nbg(c).get("solution")]
    assert [(_nbg(c)["grade_id"], c.cell_type, bool(_nbg(c).get("grade"))) for c in answers] == [
        ("bn1d_impl", "code", False), ("answer_mlp", "markdown", True), ("answer_experiments", "markdown", True)]
    assert _nbg(answers[1])["points"] == _nbg(answers[2])["points"] == 2
    impl = answers[0].source
    assert impl.count("### BEGIN SOLUTION") == impl.count("### END SOLUTION") == 4
    assert sum(c.source.count("### BEGIN SOLUTION") for c in nb.cells if c.cell_type == "code") == 4
    for written in answers[1:]:
        assert written.source.count("### BEGIN SOLUTION") == written.source.count("### END SOLUTION") == 1
    # the seed's API is given, not to be written
    for given in ("class MyBatchNorm1d(nn.Module)", "def __init__(self, num_features, eps=1e-5, momentum=0.1)",
                  'register_buffer("running_mean"', 'register_buffer("running_var"',
                  "self.gamma = nn.Parameter", "self.beta = nn.Parameter",
                  "batch_mean = x.mean(dim=0)", "batch_var = x.var(dim=0, unbiased=False)",
                  "y = self.gamma * x_hat + self.beta"):
        assert given in _outside_solutions(impl), given

    tests = _test_cells(nb)
    assert tuple(_nbg(c)["grade_id"] for c in tests) == catalogue.TESTS
    for c in tests:
        meta = _nbg(c)
        assert c.cell_type == "code" and meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert c.source.startswith("# Prova: "), f"{meta['grade_id']}: first line must say what it checks"
        assert c.source.count("### BEGIN HIDDEN TESTS") == c.source.count("### END HIDDEN TESTS") == 1
        assert "FAST" not in c.source, f"{meta['grade_id']}: graded results must not depend on the mode"
    # the notebook order: shared code, answer, tests, then the second part
    ids = [_nbg(c).get("grade_id") for c in nb.cells]
    assert ids.index("shared_course_utils") < ids.index("bn1d_impl") < ids.index(catalogue.TESTS[0])
    assert ids.index(catalogue.TESTS[-1]) < ids.index("answer_mlp")
    shared = nb.cells[ids.index("shared_course_utils")]
    assert shared.source.split("\n", 1)[1].startswith("# coursekit: shared course_utils.py\n") and _nbg(shared)["locked"]
    assert not _nbg(shared)["grade"] and not _nbg(shared)["solution"]
    # Colab opens the notebook on a GPU runtime, as the other assignments
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    # the tests' helper is a locked given cell right before the first test
    tools = nb.cells[ids.index("test_tools")]
    assert ids.index("test_tools") + 1 == ids.index(catalogue.TESTS[0]) and _nbg(tools)["locked"]


def test_questions_show_their_points_and_students_see_no_authors_text():
    """Every written question states its points; what students see names no grade_id (text for authors) and no
    solution line of the skeleton (the failure messages point where to look, they do not dictate the code)."""
    nb = _read(RELEASE)
    ids = [_nbg(c).get("grade_id") for c in _read(SOURCE).cells]
    for gid in ("answer_mlp", "answer_experiments"):
        question = _read(SOURCE).cells[ids.index(gid) - 1].source
        points = _nbg(_read(SOURCE).cells[ids.index(gid)])["points"]
        assert re.match(rf"### Pregunta \d \({points} punts, correcció manual\)", question), question[:80]
    # the final self-check (added by the student guide, folded in Colab) lists the parts by grade_id in its data
    visible = "\n".join(c.source for c in nb.cells if "coursekit" not in c.metadata)
    for gid in catalogue.TESTS:
        assert gid not in visible, gid
    dictated = ("(1 - momentum) * running_mean", "sqrt(batch_var + eps)", "sqrt(var + eps)", "batch_mean.detach()",
                "n/(n-1)) i running_var =", "no feu servir torch.no_grad()")
    for cell in nb.cells:
        if cell.cell_type == "code" and (_nbg(cell).get("grade") or _nbg(cell).get("solution")):  # skeleton, tests
            for text in dictated:
                assert text not in cell.source, (cell.get("id"), text)
    # the skeleton leaves how to keep the buffers out of autograd to the student (the tests may use no_grad)
    assert "no_grad" not in classgen.cell_by_grade_id(nb, "bn1d_impl").source


def test_shared_cells_are_titled_colab_forms(tmp_path):
    """The shared helper cells open folded in Colab (first line a "@title" form); a cell still in the old form
    (marker on the first line) is recognised and rewritten by sync."""
    release = _read(RELEASE)
    for cell, filename in nbshared.shared_cells(release):
        first = cell.source.split("\n", 1)[0]
        assert first.startswith("# @title ") and first.endswith('{ display-mode: "form" }') and filename in first
    course = make_course(tmp_path / "course", [ASSIGNMENT])
    path = course.source / ASSIGNMENT / NOTEBOOK
    nb = _read(path)
    cell = classgen.cell_by_grade_id(nb, "shared_course_utils")
    cell.source = "# coursekit: shared course_utils.py\nold = 1\n"
    import nbformat
    nbformat.write(nb, str(path))
    assert [(c.source, f) for c, f in nbshared.shared_cells(_read(path)) if f == "course_utils.py"] == [
        (cell.source, "course_utils.py")]
    assert path in nbshared.sync(course)
    synced = classgen.cell_by_grade_id(_read(path), "shared_course_utils").source
    assert synced == nbshared.expected_source(course, "course_utils.py") and synced.startswith("# @title ")
    # the title in the course's words, read from its nbgrader_config.py (the engine's own are English)
    from bncourse.messages import SHARED_TITLE
    assert synced.split("\n", 1)[0] == SHARED_TITLE.format(filename="course_utils.py")
    assert nbshared.TITLE.format(filename="x.py").split("\n", 1)[0] != SHARED_TITLE.format(filename="x.py")


def test_hidden_guard_is_identical_in_every_test_cell():
    # the guard (trusted reference, delegation probe, float comparison) is repeated in each cell on purpose,
    # so that a student's cell placed between two test cells cannot replace it; it must not drift
    guards = {GUARD_RE.search(c.source).group(0) for c in _test_cells(_read(SOURCE))}
    assert len(guards) == 1
    guard = guards.pop()
    assert ".allclose(" not in guard and "assert_close(" not in guard and ".equal(" not in guard


# ---------------------------------------------------------------------------------------------------------
# the committed release

def test_release_has_four_blanks_and_nothing_hidden():
    source, release = _read(SOURCE), _read(RELEASE)
    text = RELEASE.read_text(encoding="utf-8")
    badge = release.cells[0]
    assert badge.metadata.get("coursekit", {}).get("role") == BADGE_ROLE
    assert f"/release/{ASSIGNMENT}/{NOTEBOOK}" in badge.source and "colab.research.google.com/github/" in badge.source

    impl = classgen.cell_by_grade_id(release, "bn1d_impl").source
    assert len(STUB_RE.findall(impl)) == 4
    assert sum(c.source.count("raise NotImplementedError()") for c in release.cells) == 4
    for gid in ("answer_mlp", "answer_experiments"):
        assert classgen.cell_by_grade_id(release, gid).source.strip() == TEXT_STUB
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "guarda comuna", "_Ref"):
        assert marker not in text, marker
    # no line of the instructor's solutions (code or written answer) survives
    src_impl = classgen.cell_by_grade_id(source, "bn1d_impl").source
    for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src_impl, flags=re.DOTALL):
        for line in region.strip().splitlines():
            assert line.strip() not in impl, line
    for gid in ("answer_mlp", "answer_experiments"):
        for line in classgen.cell_by_grade_id(source, gid).source.splitlines():
            assert not line.strip() or line.strip() not in text
    for cell in release.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # the visible part of each test cell is what the student sees of it; the grader restores the rest
    for src_cell in _test_cells(source):
        rel_cell = classgen.cell_by_grade_id(release, _nbg(src_cell)["grade_id"])
        assert rel_cell.source.strip() == src_cell.source.split("### BEGIN HIDDEN TESTS")[0].strip()
        assert _nbg(rel_cell)["locked"] and _nbg(rel_cell)["points"] == _nbg(src_cell)["points"]
    # the shared helper cells carry the current notebooks/ files (the release opens alone in Colab)
    shared = [(cell, f) for cell, f in nbshared.shared_cells(release)]
    assert "course_utils.py" in [f for _, f in shared]
    for cell, filename in shared:
        assert cell.source == nbshared.expected_source(Course.at(REPO), filename), filename
        assert _nbg(cell)["locked"] and not _nbg(cell)["grade"], filename


def test_release_alone_fails_only_in_the_blanks(release_alone):
    """The release, alone in a folder and a fresh kernel (fast mode), runs top to bottom; every error is the
    stub's NotImplementedError raised from the answer cell's code (through the tests and the BN training)."""
    nb, work = release_alone(ASSIGNMENT)  # run once per session (conftest), shared with the student guide's test
    answer_count = classgen.cell_by_grade_id(nb, "bn1d_impl").execution_count
    failing = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type != "error":
                continue
            failing.append(cell.get("id"))
            assert out.ename == "NotImplementedError", (cell.get("id"), out.ename, out.evalue)
            frames = re.findall(r"Cell In\[(\d+)\]", re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.traceback)))
            assert frames and int(frames[-1]) == answer_count, (cell.get("id"), out.traceback)
    expected = [c.get("id") for c in _test_cells(nb)] + ["part2-train-bn", "part3-init-scale", "part3-placement"]
    assert failing == expected
    assert not any(work.iterdir()), "fast mode must not download or write anything"


# ---------------------------------------------------------------------------------------------------------
# the catalogue of generated submissions

def test_catalogue_is_consistent():
    # what every catalogue must be (unique students, solution and blank first, the source's test cells)
    # is checked for all five in test_assignments.py; here, what this assignment's must hold
    solution = catalogue.solution()
    full_marks = [v for v in VARIANTS if v.fails == frozenset() and v.student != "solution"]
    assert len(full_marks) >= 2 and len({v.answers["bn1d_impl"] for v in full_marks}) == len(full_marks)
    for v in VARIANTS:
        assert set(v.answers) <= {"bn1d_impl"}
        classgen.expected_pass(v, list(catalogue.TESTS))  # raises on an unknown grade_id
        if v.student != "solution" and v.answers:
            assert v.answers["bn1d_impl"] != solution, v.student
        if v.fails != "all":
            assert set(v.fails) < set(catalogue.TESTS), v.student  # a mistake never costs everything
    required = {"eps_outside_sqrt", "biased_running_var", "reversed_momentum", "batch_stats_in_eval",
                "stats_never_updated", "unbiased_var_normalise", "hardcoded_momentum", "hardcoded_eps",
                "running_stats_history", "input_modified_inplace", "delegates_f_batch_norm",
                "subclass_batchnorm1d", "patched_allclose", "eval_no_grad", "eval_detach"}
    assert required <= {v.student for v in VARIANTS}
    delegations = [v for v in VARIANTS if "delegat" in v.student or v.student in ("subclass_batchnorm1d", "wraps_batchnorm1d")]
    assert delegations and all(v.fails == "all" for v in delegations)


@pytest.fixture(scope="module")
def graded(graded_catalogue):
    """The whole catalogue (and its faked submissions) graded once by plain nbgrader, shared with the
    table of test_assignments.py (conftest's ``graded_catalogue``)."""
    return graded_catalogue(ASSIGNMENT)


def test_gradebook_lists_the_tests_of_the_notebook(graded):
    courses, scores, maxima = graded.courses, graded.scores, graded.maxima
    for course in courses:
        assert tuple(gradebook.autograded_tests(course, ASSIGNMENT)) == catalogue.TESTS
    assert {"solution", "blank"} <= set(scores) <= {v.student for v in VARIANTS}  # what this session reads
    assert maxima["answer_mlp"] == maxima["answer_experiments"] == 2 and all(maxima[t] > 0 for t in catalogue.TESTS)


def test_solution_notebook_runs_whole_and_bn_trains_faster(graded):
    """In the graded (fast-mode) solution every cell ran without error, and on the generated data the
    notebook's claim holds: with MyBatchNorm1d the MLP ends with a lower training loss and a higher
    validation accuracy than without."""
    nb = _read(graded.autograded("solution", ASSIGNMENT, NOTEBOOK))
    assert not [c.get("id") for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    results_cell = next(c for c in nb.cells if c.get("id") == "part2-results")
    text = "".join(o.get("text", "") for o in results_cell.outputs)
    line = r"^(sense BN|amb BN): pèrdua d'entrenament final ([0-9.]+) · exactitud de validació ([0-9.]+)"
    results = {name: (float(loss), float(acc)) for name, loss, acc in re.findall(line, text, flags=re.MULTILINE)}
    assert set(results) == {"sense BN", "amb BN"}, text
    (loss_plain, acc_plain), (loss_bn, acc_bn) = results["sense BN"], results["amb BN"]
    assert loss_bn < 0.5 * loss_plain and acc_bn > acc_plain, results
    assert any("image/png" in o.get("data", {}) for o in results_cell.outputs)
