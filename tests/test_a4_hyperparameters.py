"""Assignment 4 (hyperparameter optimisation, with and without BatchNorm), end to end through real nbgrader.

- the source notebook: nbgrader metadata, five autograded answer cells (one function each), locked test
  cells with their points, written answers with a rubric whose points add up, `evidence` tags on the
  experiment cells the questions discuss, `nbgrader validate`;
- the committed release: equal to a fresh generation, five blanks, no solution, hidden test or rubric;
  run alone in a fresh kernel it fails only with NotImplementedError raised from the answer cells' code;
- the catalogue of generated submissions (bncourse.classgen.a4_hyperparameters: correct styles, partial
  hand-ins, one plausible mistake per answer cell), graded ONCE by `nbgrader autograde` in a scratch
  course: each variant gets exactly the test cells its ``fails`` set allows, read from the gradebook;
- faked submissions (``catalogue.faked()``: functions right only inside the notebook's test cells, an AST
  transformer that swallows every error), graded in the same run: their kernel passes every test cell, and
  the trusted re-check out of the kernel (``bncourse.checks.a4_hyperparameters``) takes exactly the points
  of the functions they faked;
- the protocol: the search never iterates the test split, the chosen model is evaluated on it once;
- the claims of the notebook on the generated data: test_a4_claims.py.
(What all five share is the table of test_assignments.py; here, what is this assignment's own.)
"""
from __future__ import annotations

import itertools
import math
import re

import pytest
from assignment_checks import grade_cells as _test_cells, nbg as _nbg, read_nb as _read
from conftest import REPO, shared_module

from coursekit import classgen, gradebook
from bncourse.classgen import a4_hyperparameters as catalogue
from coursekit.release import BADGE_ROLE

ASSIGNMENT = "a4_hyperparameters"
NOTEBOOK = "hyperparameters.ipynb"
SOURCE = REPO / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = REPO / "release" / ASSIGNMENT / NOTEBOOK
STUB = "# EL VOSTRE CODI AQUÍ\nraise NotImplementedError()"
TEXT_STUB = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"
QUESTIONS = {"answer_random_vs_grid": 3, "answer_batchnorm_lr": 3, "answer_seeds_protocol": 2}
EXPERIMENTS = ("experiment_search", "experiment_halving", "experiment_heatmap", "experiment_lr_range",
               "experiment_seeds")
VARIANTS = catalogue.VARIANTS
FAKED = catalogue.faked()
HIDDEN_RE = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n?", re.MULTILINE | re.DOTALL)


# ---------------------------------------------------------------------------------------------------------
# the source notebook

def test_source_cells_and_metadata():
    nb = _read(SOURCE)
    answers = [c for c in nb.cells if _nbg(c).get("solution")]
    assert [_nbg(c)["grade_id"] for c in answers] == list(catalogue.ANSWERS) + list(QUESTIONS)
    for cell in answers[:5]:
        assert cell.cell_type == "code" and not _nbg(cell)["grade"]
        assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") == 1
    for cell in answers[5:]:
        grade_id = _nbg(cell)["grade_id"]
        assert cell.cell_type == "markdown" and _nbg(cell)["points"] == QUESTIONS[grade_id]
        rubric = re.search(r"\*\*Rúbrica \((\d+) punts\)\*\*\n(.*?)### END SOLUTION", cell.source, re.DOTALL)
        assert rubric and int(rubric.group(1)) == QUESTIONS[grade_id], grade_id
        bullets = [int(p) for p in re.findall(r"^- (\d+) punts?:", rubric.group(2), re.MULTILINE)]
        assert sum(bullets) == QUESTIONS[grade_id], (grade_id, bullets)
    # the APIs of the issue, visible to the student
    signatures = ("def log_uniform(low, high, n, generator):", "def sample_config(space, generator):",
                  "def grid_configs(grid):", 'def select_best(trials, metric="val_acc"):',
                  "def successive_halving(configs, train_fn, min_epochs=1, eta=3):")
    for cell_id, signature in zip(catalogue.ANSWERS, signatures):
        assert classgen.cell_by_grade_id(nb, cell_id).source.startswith(signature), cell_id

    tests = _test_cells(nb)
    assert tuple(_nbg(c)["grade_id"] for c in tests) == catalogue.TESTS
    ids = [_nbg(c).get("grade_id") for c in nb.cells]
    for answer, cell_tests in catalogue.TESTS_OF.items():  # each function is followed by its own tests
        assert ids.index(answer) < ids.index(cell_tests[0]) and ids.index(cell_tests[-1]) < ids.index("experiment_code")
    for c in tests:
        meta = _nbg(c)
        assert c.cell_type == "code" and meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert c.source.startswith("# Prova ("), meta["grade_id"]
        assert f"({meta['points']} punt" in c.source.split("\n", 1)[0], meta["grade_id"]
        assert c.source.count("### BEGIN HIDDEN TESTS") == c.source.count("### END HIDDEN TESTS") >= 1
        assert "FAST" not in c.source, f"{meta['grade_id']}: graded results must not depend on the mode"
    assert sum(_nbg(c)["points"] for c in tests) == 16
    shared = nb.cells[ids.index("shared_course_utils")]
    assert shared.source.split("\n", 1)[1].startswith("# coursekit: shared course_utils.py\n") and _nbg(shared)["locked"]
    for read_only in ("setup", "experiment_code", "experiment_data", *EXPERIMENTS):
        assert _nbg(nb.cells[ids.index(read_only)])["locked"], read_only
    for experiment in EXPERIMENTS:
        assert "evidence" in nb.cells[ids.index(experiment)].metadata.get("tags", []), experiment


# ---------------------------------------------------------------------------------------------------------
# the committed release

def test_release_has_five_blanks_and_nothing_hidden():
    source, release = _read(SOURCE), _read(RELEASE)
    text = RELEASE.read_text(encoding="utf-8")
    badge = release.cells[0]
    assert badge.metadata.get("coursekit", {}).get("role") == BADGE_ROLE
    assert f"/release/{ASSIGNMENT}/{NOTEBOOK}" in badge.source
    for answer in catalogue.ANSWERS:
        assert STUB.replace("\n", "\n    ") in classgen.cell_by_grade_id(release, answer).source \
            or STUB.replace("\n", "\n        ") in classgen.cell_by_grade_id(release, answer).source, answer
    # (the final self-check cell that the release adds mentions the stub too: it is not a blank)
    assert sum(c.source.count("raise NotImplementedError()") for c in release.cells
               if not c.metadata.get("coursekit", {}).get("role")) == 5
    for question in QUESTIONS:
        assert classgen.cell_by_grade_id(release, question).source.strip() == TEXT_STUB
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "Rúbrica", "_reference_log_uniform", "_reference_select_best",
                   "_own_log_uniform"):
        assert marker not in text, marker
    for answer in catalogue.ANSWERS:
        src = classgen.cell_by_grade_id(source, answer).source
        released = classgen.cell_by_grade_id(release, answer).source
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, flags=re.DOTALL):
            for line in region.strip().splitlines():
                assert line.strip() not in released, line
    for cell in release.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # what the student sees of a test cell is its source without the hidden regions
    for src_cell in _test_cells(source):
        rel_cell = classgen.cell_by_grade_id(release, _nbg(src_cell)["grade_id"])
        visible = HIDDEN_RE.sub("", src_cell.source)
        assert re.sub(r"\n+", "\n", rel_cell.source).strip() == re.sub(r"\n+", "\n", visible).strip(), \
            _nbg(src_cell)["grade_id"]
        assert _nbg(rel_cell)["locked"] and _nbg(rel_cell)["points"] == _nbg(src_cell)["points"]


def _errors(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                yield cell, out


def test_release_alone_fails_only_in_the_blanks(release_alone):
    """The release, alone in a folder and a fresh kernel (fast mode), runs top to bottom; every error is the
    stub's NotImplementedError raised from an answer cell's code, except the seed experiment, which needs
    the configuration that the (blank) search would have chosen. The experiments that do not depend on
    the answers (heat map, learning-rate range test) run and plot."""
    nb, work = release_alone(ASSIGNMENT)  # run once per session (conftest), shared with the student guide's test
    answer_counts = {classgen.cell_by_grade_id(nb, a).execution_count for a in catalogue.ANSWERS}
    failing = []
    for cell, out in _errors(nb):
        grade_id = _nbg(cell).get("grade_id")
        failing.append(grade_id)
        if grade_id == "experiment_seeds":
            assert out.ename == "NameError" and "chosen" in out.evalue, out.evalue
            continue
        assert out.ename == "NotImplementedError", (grade_id, out.ename, out.evalue)
        frames = re.findall(r"Cell In\[(\d+)\]", re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.traceback)))
        assert frames and int(frames[-1]) in answer_counts, (grade_id, out.traceback)
    assert failing == [*catalogue.TESTS, "experiment_search", "experiment_halving", "experiment_seeds"]
    for independent in ("experiment_heatmap", "experiment_lr_range"):
        assert any("image/png" in o.get("data", {}) for o in classgen.cell_by_grade_id(nb, independent).outputs)
    assert not any(work.iterdir()), "fast mode must not download or write anything"


# ---------------------------------------------------------------------------------------------------------
# the catalogue of generated submissions

def test_catalogue_is_consistent():
    # what every catalogue must be (unique students, solution and blank first, the source's test cells)
    # is checked for all five in test_assignments.py; here, what this assignment's must hold
    solutions = {a: catalogue.solution(a) for a in catalogue.ANSWERS}
    full_marks = [v for v in VARIANTS if v.fails == frozenset() and v.student != "solution"]
    assert len(full_marks) >= 2
    for answer in catalogue.ANSWERS:  # two correct styles of each answer cell, different from the solution
        styles = {v.answers[answer] for v in full_marks}
        assert len(styles) == len(full_marks) and solutions[answer] not in styles
    for v in VARIANTS:
        classgen.expected_pass(v, list(catalogue.TESTS))  # raises on an unknown grade_id
        if v.fails != "all":
            assert set(v.fails) < set(catalogue.TESTS), v.student  # a mistake never costs everything
        # a mistake is seen only by the tests of its own answer cell
        for answer, source in v.answers.items():
            if source != solutions[answer] and v.fails not in ("all",) and v not in full_marks:
                assert set(v.fails) & set(catalogue.TESTS_OF[answer]), (v.student, answer)
    required = {"uniform_not_log", "global_rng", "randint_upper_inclusive", "returns_tensors", "log_as_uniform",
                "first_key_fastest", "sorted_keys", "selects_by_test", "selects_by_train", "last_of_ties",
                "plain_max_nan", "keeps_worst", "no_epoch_growth", "epochs_plus_eta", "budget_per_round",
                "keeps_ceil"}
    assert required <= catalogue.mistake_names()


@pytest.fixture(scope="module")
def graded(graded_catalogue):
    """The whole catalogue (and its faked submissions) graded once by plain nbgrader, shared with the
    table of test_assignments.py (conftest's ``graded_catalogue``)."""
    return graded_catalogue(ASSIGNMENT)


def test_gradebook_lists_the_tests_of_the_notebook(graded):
    for course in graded.courses:
        assert tuple(gradebook.autograded_tests(course, ASSIGNMENT)) == catalogue.TESTS
    assert {"solution", "blank"} <= set(graded.scores) <= {v.student for v in VARIANTS + FAKED}
    for question, points in QUESTIONS.items():
        assert graded.maxima[question] == points


def test_solution_notebook_runs_whole_and_tests_once(graded):
    """In the graded (fast-mode) solution every cell ran without error, every experiment printed and
    plotted, and the chosen model was evaluated on the sealed test loader exactly once (the loader
    raises if anything else iterates it)."""
    nb = _read(graded.autograded("solution", ASSIGNMENT, NOTEBOOK))
    assert not [_nbg(c).get("grade_id") for c, _ in _errors(nb)]
    for experiment in EXPERIMENTS:
        outputs = classgen.cell_by_grade_id(nb, experiment).outputs
        assert any(o.get("text") for o in outputs), experiment
    for plotted in ("experiment_search", "experiment_heatmap", "experiment_lr_range"):
        assert any("image/png" in o.get("data", {}) for o in classgen.cell_by_grade_id(nb, plotted).outputs)
    text = "".join(o.get("text", "") for o in classgen.cell_by_grade_id(nb, "experiment_halving").outputs)
    assert re.search(r"exactitud de test \(una sola avaluació\): [0-9.]+", text), text


# ---------------------------------------------------------------------------------------------------------
# the protocol and the claims, with the notebook's own code on generated data

@pytest.fixture(scope="module")
def notebook():
    """The solution's functions and the read-only experiment code, in one namespace (no plots)."""
    import torch

    course_utils = shared_module("course_utils.py", "course_loops.py")
    namespace = dict(vars(course_utils))
    namespace.update(torch=torch, nn=torch.nn, math=math, itertools=itertools, plt=None)
    for answer in catalogue.ANSWERS:
        exec(catalogue.solution(answer), namespace)
    exec(classgen.cell_by_grade_id(_read(SOURCE), "experiment_code").source, namespace)
    return namespace


class _RaisingLoader:
    """A test loader that fails the test if anything iterates it."""

    def __iter__(self):
        raise AssertionError("the hyperparameter search iterated the test split")

    def __len__(self):
        return 1


def test_search_never_touches_test_and_final_test_reads_it_once(notebook):
    """The notebook's search cells (grid, random, successive halving, selection) run with a test loader
    that raises when iterated; then `final_test` reads the sealed test loader exactly once."""
    import torch

    torch.set_num_threads(1)
    source = _read(SOURCE)
    train, val, test = notebook["get_datasets"](fast=True, image_size=12, num_classes=2, synthetic_sizes=(48, 32, 32))
    namespace = dict(notebook, train_set=train, val_set=val, test_set=test, num_classes=2, epochs=1,
                     test_loader=_RaisingLoader(), plot_random_vs_grid=lambda *args: None)
    namespace["train_fn"] = notebook["make_train_fn"](train, val, 2)
    exec(classgen.cell_by_grade_id(source, "experiment_search").source, namespace)
    halving = classgen.cell_by_grade_id(source, "experiment_halving").source
    search_part, final_part = halving.split("test_acc = final_test(", 1)
    exec(search_part, namespace)  # successive halving and the choice: the raising loader is never touched

    class CountingDataset(torch.utils.data.Dataset):
        """The test images, counting how many times any of them is read."""

        def __init__(self, base):
            self.base, self.reads = base, 0

        def __len__(self):
            return len(self.base)

        def __getitem__(self, index):
            self.reads += 1
            return self.base[index]

    counting = CountingDataset(test)
    sealed = notebook["SealedTestLoader"](counting)
    with pytest.raises(RuntimeError, match="precintat"):
        iter(sealed)
    accuracy = notebook["final_test"](namespace["chosen"], sealed)
    assert 0.0 <= accuracy <= 1.0 and counting.reads == len(test)  # one pass over the test split
    with pytest.raises(RuntimeError):
        notebook["final_test"](namespace["chosen"], sealed)  # a second look at test is refused
    with pytest.raises(RuntimeError):
        iter(sealed)


def test_model_answer_facts(notebook):
    """Facts the model answer of question 1 states: the grid tries 3 distinct learning rates and random
    search 9 for the same 9 runs; successive halving on 9 configurations with eta 3 spends 18 epochs
    where training all 9 for the final 3 epochs costs 27."""
    import torch

    source = _read(SOURCE)
    cell = classgen.cell_by_grade_id(source, "experiment_search").source
    space = eval(re.search(r"^SEARCH_SPACE = (.*)$", cell, re.MULTILINE).group(1))
    grid = eval(re.search(r"^SEARCH_GRID = (.*)$", cell, re.MULTILINE).group(1))
    configs = notebook["grid_configs"](grid)
    generator = torch.Generator().manual_seed(0)
    random_configs = [notebook["sample_config"](space, generator) for _ in range(len(configs))]
    assert len(configs) == 9 and len({c["lr"] for c in configs}) == 3 and len({c["lr"] for c in random_configs}) == 9
    calls = []
    trial, spent = notebook["successive_halving"](
        list(range(9)), lambda c, e: calls.append(e) or {"config": c, "val_acc": c / 10, "epochs": e}, 1, 3)
    assert spent == 18 and trial["epochs"] == 3 and 9 * trial["epochs"] == 27
    answer = classgen.cell_by_grade_id(source, "answer_random_vs_grid").source
    assert "18 èpoques" in answer and "27" in answer and "3 taxes d'aprenentatge" in answer and "9 de diferents" in answer


# The claims of the notebook (random search vs grid, BatchNorm and the learning rate) are judged in
# test_a4_claims.py, on several seeds and in several float orders.
