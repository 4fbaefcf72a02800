"""Trusted checks (coursekit.trusted), piece by piece, on real code.

- the static scan judges only the student's lines and tells delegation, evasion,
  tampering and suspicious code apart;
- the sandboxed child runs cells with IPython syntax, reports cell errors, and
  fails closed (hangs, floods of its answer channel, garbage, a dead child);
- for EVERY submission of the A1 catalogue (correct variants, realistic
  mistakes, delegation, patched comparisons) the out-of-kernel verdicts are the
  catalogue's ``fails`` set, i.e. exactly what the notebook's own hidden tests
  decide: the layer never costs an honest student a point;
- the preprocessor on an executed notebook: a test cell that "passed" with a
  wrong implementation gets an error output first (nbgrader then scores it 0),
  a forged result before an error is neutralised, a right cell is untouched,
  and events are recorded;
- delegation hidden from every check (bncourse.classgen.hostile_delegation:
  computed lookups, worker threads, a rewritten answer, %%writefile modules, a
  forked process) fails every re-checked cell of A1 and A2 from the runtime
  guard alone, and the scan names the hiding;
- A2's and A3's re-checks on their whole catalogues: never harsher than the
  notebooks' hidden tests (A3: exactly as strict);
- A4's and A5's re-checks (every test cell) on their correct styles, some
  mistaken submissions and faked ones (kernel tests made to pass by patched
  comparisons, functions that detect the notebook's tests, emptied test cells,
  swallowed errors): exactly as strict as the hidden tests on honest work, and
  the faked cells fail.  The whole catalogues and the faked submissions are
  graded through nbgrader in test_a4_hyperparameters.py and
  test_a5_modern_architectures.py.
"""
from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config
from conftest import make_course

from coursekit import classgen, events, sandbox
from bncourse.checks import a1_batchnorm1d as a1checks
from coursekit.checks import scan

from bncourse.checks import NORM_NAMES, close
from coursekit.checks.child import run_student_code
from bncourse.classgen import a1_batchnorm1d as catalogue
from coursekit.content import course_config
from coursekit.trusted import TrustedChecks

from bncourse.messages import TRUSTED_ERROR_NAME as ERROR_NAME

ASSIGNMENT = "a1_batchnorm1d"


# ------------------------------------------------------------------ static scan

ALIASES = scan.DEFAULT_MODULE_ALIASES
# the re-checks as the course's configuration sets them up (its Catalan words)
COURSE_CONFIG = course_config(Path(__file__).resolve().parents[1])


def trusted() -> TrustedChecks:
    return TrustedChecks(config=COURSE_CONFIG)


def _rules(source, answer_cell=True, lines=None):
    return {(f.kind, f.rule) for f in scan.scan_source(source, 0, lines, ALIASES, answer_cell=answer_cell,
                                                       builtin=NORM_NAMES)}


def test_scan_delegation_only_inside_definitions():
    inside = "class L(nn.Module):\n    def forward(self, x):\n        return F.batch_norm(x, None, None, training=True)\n"
    assert ("delegation", "F.batch_norm") in _rules(inside)
    # a comparison with the built-in layer at module level is allowed (recorded only)
    outside = "ref = nn.BatchNorm1d(3)\nprint(ref(torch.ones(2, 3)))\n"
    assert {k for k, _ in _rules(outside)} == {"suspicious"}
    assert ("delegation", "base class nn.BatchNorm1d") in _rules("class L(nn.BatchNorm1d):\n    pass\n")
    # the student's own names that merely contain the words are fine
    assert _rules("class L(nn.Module):\n    def forward(self, x):\n        self.batch_norm_out = x\n        return x\n") == set()


def test_scan_evasion_tamper_suspicious():
    found = _rules('f = getattr(F, "batch" + "_norm")\nexec("x = 1")\nimport torch._C\n'
                   'torch.allclose = lambda *a, **k: True\n'
                   'get_ipython().input_transformers_cleanup.append(lambda l: l)\n'
                   'import os\nos.kill(os.getppid(), 9)\nopen("../../source/a.ipynb").read()\n'
                   'import socket\nwhile True:\n    pass\n', answer_cell=False)
    kinds = {rule: kind for kind, rule in found}
    assert kinds["getattr() with a computed name"] == "evasion"
    assert kinds["exec()"] == "evasion"
    assert kinds["import torch._C"] == "evasion"
    assert kinds["patch torch.allclose"] == "tamper"
    assert kinds["get_ipython().input_transformers_cleanup"] == "tamper"
    assert kinds["os.kill"] == "suspicious"
    assert kinds["path '../../source/a.ipynb'"] == "suspicious"
    assert kinds["import socket"] == "suspicious"
    assert kinds["endless loop"] == "suspicious"
    # magics are IPython's own, not tampering; a shell escape is recorded
    assert _rules("%matplotlib inline\nimport torch\n") == set()
    assert ("suspicious", "shell command") in _rules("!ls /\n")


def test_scan_only_the_students_lines():
    release = nbformat.read(str(catalogue._course().release / ASSIGNMENT / "batchnorm1d.ipynb"), as_version=4)
    nb = copy.deepcopy(release)
    answer = classgen.cell_by_grade_id(nb, catalogue.ANSWER)
    answer.source = answer.source + "\nimport importlib\n"
    nb.cells.append(nbformat.v4.new_code_cell("x = eval('1')"))
    lines = scan.student_lines(nb, release)
    index = nb.cells.index(answer)
    assert lines[index] and max(lines[index]) == len(answer.source.splitlines())
    assert lines[len(nb.cells) - 1] is None          # a cell the student added: all of it
    assert all(not v for i, v in lines.items() if i not in (index, len(nb.cells) - 1))  # given cells untouched
    findings = scan.scan_notebook(nb, release, builtin=NORM_NAMES)
    assert {(f.cell, f.rule) for f in findings} == {(index, "import importlib"), (len(nb.cells) - 1, "eval()")}


# ------------------------------------------------------------------ the child

PROBE = '''
def look(Layer, torch, spec):
    import os
    return {"value": Layer(spec["n"]).value, "cwd": sorted(os.listdir(".")), "uid": os.getuid()}
SCENARIOS = {"look": look}
'''


# The children of this module fork from the warm server this process starts at its first kernel, as under
# plain `nbgrader autograde` (SandboxKernelManager.start_warm_server); the cold case keeps the cold path
# proven (a server that cannot start, or a configuration that turns it off).
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_child_runs_cells_like_a_kernel_inside_the_sandbox(tmp_path, monkeypatch, mode):
    course = make_course(tmp_path / "course", [ASSIGNMENT])
    cells = ["%matplotlib inline\nimport torch", "raise ValueError('x')",
             "class Layer:\n    def __init__(self, n):\n        self.value = n * 2\n",
             f"import os\nSEEN = os.path.exists({str(course.source)!r})"]
    monkeypatch.delenv(sandbox.WARM_VARIABLE, raising=False)
    config = Config({"SandboxKernelManager": {"start_warm_server": mode == "warm"}})
    result = run_student_code(cells, PROBE, "Layer", {"look": {"n": 21}}, config=config)
    assert result.failure is None, result.failure
    assert result.mode == mode
    assert [c["error"] is None for c in result.answer["cells"]] == [True, False, True, True]
    look = result.answer["probe"]["look"]
    assert look["error"] is None and look["value"] == 42
    assert "request.json" not in look["cwd"] and look["uid"] != 0   # inputs gone from disk; not root


# a layer whose measurement is enormous (the probe reports it as is)
FLOOD = "class Layer:\n    def __init__(self, n):\n        self.value = 'x' * (1 << 20)\n"
# closes the harness's answer channel (found through /proc), so that nothing can be written back
CUT = ("import os\nfor fd in range(3, 1024):\n    try:\n        if 'answer' in os.readlink(f'/proc/self/fd/{fd}'):\n"
       "            os.close(fd)\n    except OSError:\n        pass\n")


@pytest.mark.parametrize("cells, why", [
    (["import time\nwhile True:\n    time.sleep(1)"], "timeout"),                            # hangs
    ([FLOOD], "larger"),                                                                      # floods the answer
    ([CUT], "without answering"),                                                             # cuts the channel
    (["import os\nos._exit(3)"], "died"),                                                    # kills its kernel
])
def test_child_fails_closed(cells, why):
    result = run_student_code(cells, PROBE, "Layer", {"look": {"n": 1}}, timeout=20, cell_timeout=60,
                              max_bytes=1 << 16)
    assert result.answer is None and why in result.failure, result.failure


# ------------------------------------------------------------------ verdicts = the notebook's hidden tests

def _recheck_problems(gen, assignment: str, checks, variants, every_cell: bool = False) -> list[str]:
    """Re-check each generated ``variants`` of ``gen`` (a class generator) with ``checks`` in the child:
    the test cells whose trusted verdict differs from what the variant's work deserves. With
    ``every_cell``, every test cell of the assignment must have a verdict."""
    course = gen._course()
    problems = []
    for variant in variants:
        _, nb = classgen.render(course, assignment, variant)
        last = max(i for i, c in enumerate(nb.cells) if scan.grade_id(c) in checks.CHECKS.by_grade_id())
        cells = [c.source for c in nb.cells[:last] if c.cell_type == "code" and not scan.is_test_cell(c)]
        verdicts, notes = trusted().verdicts(checks.CHECKS, cells, [])
        expected = classgen.expected_pass(variant, list(gen.TESTS))
        if every_cell:
            assert set(verdicts) == set(gen.TESTS), variant.student   # every test cell is re-checked
        for grade_id, reason in verdicts.items():
            if (reason is None) != expected[grade_id]:
                problems.append(f"{variant.student}/{grade_id}: expected {'pass' if expected[grade_id] else 'fail'}, "
                                f"trusted says {reason or 'pass'} ({notes})")
    return problems


def _cells_before_tests(variant) -> list[str]:
    _, nb = classgen.render(catalogue._course(), ASSIGNMENT, variant)
    last = max(i for i, c in enumerate(nb.cells) if scan.grade_id(c) in a1checks.CHECKS.by_grade_id())
    return [c.source for c in nb.cells[:last] if c.cell_type == "code" and not scan.is_test_cell(c)]


def _verdict(variant):
    cells = _cells_before_tests(variant)
    _, nb = classgen.render(catalogue._course(), ASSIGNMENT, variant)
    findings = scan.scan_notebook(nb, nbformat.read(str(catalogue._course().release / ASSIGNMENT / "batchnorm1d.ipynb"),
                                                    as_version=4), builtin=NORM_NAMES)
    verdicts, notes = trusted().verdicts(a1checks.CHECKS, cells, findings)
    return variant, verdicts, notes


# Catalogue variants whose extra failures come from the notebook's in-kernel guard
# (PyTorch's reference modified: every cell fails there), not from the implementation:
# out of the kernel only the implementation's own failures (reversed momentum) are required.
GUARD_ONLY = {"patched_reference": {"test_momentum"}}


def test_verdicts_agree_with_the_hidden_tests_on_the_whole_catalogue():
    variants = catalogue.VARIANTS
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_verdict, variants))
    disagreements = []
    for variant, verdicts, notes in results:
        expected = classgen.expected_pass(variant, list(catalogue.TESTS))
        must_fail = GUARD_ONLY.get(variant.student, {g for g, ok in expected.items() if not ok})
        for grade_id, passes in expected.items():
            trusted_passes = verdicts[grade_id] is None
            # never harsher than the hidden tests; as strict as they are on the implementation
            if (passes and not trusted_passes) or (grade_id in must_fail and trusted_passes):
                disagreements.append(f"{variant.student}/{grade_id}: expected {'pass' if passes else 'fail'}, "
                                     f"trusted says {verdicts[grade_id] or 'pass'} ({notes})")
    assert not disagreements, "\n".join(disagreements)


def test_comparisons_reject_malformed_student_data():
    ref = [[1.0, 2.0], [3.0, 4.0]]
    assert close([[1.0, 2.0], [3.0, 4.0]], ref, 1e-6, 1e-6) is None
    for bad in (None, "1", [[1.0, 2.0]], [[1.0, 2.0], [3.0, float("nan")]], [[True, 2.0], [3.0, 4.0]],
                {"a": 1}, [[1.0, 2.0], [3.0, [4.0]]]):
        assert close(bad, ref, 1e-6, 1e-6) is not None, bad


# ------------------------------------------------------------------ the preprocessor

def test_preprocessor_turns_passes_into_fails_only(tmp_path, monkeypatch):
    course = make_course(tmp_path / "course", [ASSIGNMENT])
    # outside an nbgrader app a preprocessor finds its course in the working folder, as nbgrader runs there
    monkeypatch.chdir(course.root)
    variant = next(v for v in catalogue.VARIANTS if v.student == "stats_never_updated")
    _, nb = classgen.render(course, ASSIGNMENT, variant)
    cells = {scan.grade_id(c): c for c in nb.cells if scan.is_test_cell(c)}
    # what a tampered kernel reported: every test cell "passed" ...
    for cell in cells.values():
        cell.outputs = []
    # ... except one that failed but showed a forged result first, and one honest failure
    cells["test_momentum"].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "'ok'"},
                                                             execution_count=1),
                                      nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])]
    cells["test_running_var"].outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="x",
                                                                traceback=[])]
    resources = {"nbgrader": {"assignment": ASSIGNMENT, "student": "s1", "notebook": "batchnorm1d",
                              "db_url": f"sqlite:///{course.gradebook}"}}
    trusted().preprocess(nb, resources)

    def first(grade_id):
        outputs = cells[grade_id].outputs
        return outputs[0].get("ename") if outputs else None

    assert first("test_running_mean") == ERROR_NAME          # wrong, "passed": now fails
    assert first("test_momentum") == ERROR_NAME              # forged result neutralised
    assert first("test_running_var") == "AssertionError"     # already failing: untouched
    assert len(cells["test_running_var"].outputs) == 1
    for grade_id in set(cells) - {"test_running_mean", "test_running_var", "test_momentum"}:
        assert cells[grade_id].outputs == [], grade_id       # right: untouched
    logged = events.read(course.root, ASSIGNMENT, "s1")
    overrides = {e.get("grade_id") for e in logged if e["kind"] == "tamper" and e.get("source") == "trusted"}
    assert overrides == {"test_running_mean"}
    forged = {e.get("grade_id") for e in logged if e["kind"] == "tamper" and e.get("source") == "outputs"}
    assert forged == {"test_momentum"}   # error first whether the cell has a check or not
    json.dumps(nb)  # still a valid notebook


def test_preprocessor_is_a_no_op_for_other_assignments(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert False")])
    before = copy.deepcopy(nb)
    resources = {"nbgrader": {"assignment": "ps1", "student": "s", "notebook": "p",
                              "db_url": f"sqlite:///{tmp_path / 'gradebook.db'}"}}
    trusted().preprocess(nb, resources)
    assert nb == before and not Path(tmp_path / ".coursekit").exists()


def test_builtin_norm_layers_are_delegation_only_where_built_by_hand(tmp_path, monkeypatch):
    """Naming nn.BatchNorm2d is delegation in assignment 1, but the point of assignment 3."""
    from coursekit.trusted import ScanSubmission

    course = make_course(tmp_path / "course", ["a1_batchnorm1d", "a3_alexnet_bn"])
    monkeypatch.chdir(course.root)  # the course of a preprocessor run outside an nbgrader app
    code = "import torch.nn as nn\n\ndef block(c):\n    return nn.Sequential(nn.Conv2d(c, c, 3), nn.BatchNorm2d(c))\n"
    flagged = {}
    for assignment in ("a1_batchnorm1d", "a3_alexnet_bn"):
        answer = {"nbgrader": {"grade": False, "grade_id": "impl", "locked": False, "schema_version": 3,
                               "solution": True, "task": False}}
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code, metadata=answer)])
        resources = {"nbgrader": {"assignment": assignment, "student": "s", "notebook": "nb",
                                  "db_url": f"sqlite:///{course.gradebook}"}}
        ScanSubmission(config=COURSE_CONFIG).preprocess(nb, resources)
        flagged[assignment] = {e.get("finding") for e in events.read(course.root, assignment, "s")}
    assert "delegation" in flagged["a1_batchnorm1d"]
    assert "delegation" not in flagged["a3_alexnet_bn"]


# ------------------------------------------------------------------ delegation that hides from every check

def _hostile_a1(name):
    return next(v for v in __import__("bncourse.classgen.hostile", fromlist=["x"]).variants()
                if v.student == name)


@pytest.mark.parametrize("name", ["h13_thread_lookup", "h14_forge_answer", "h15_writefile", "h16_forked"])
def test_hidden_delegation_fails_out_of_the_kernel_even_unseen_by_the_scan(name):
    """The runtime guard alone (no static findings) fails every implementation check:
    the built-in kernels raise in every thread, processes are refused, the answer
    cannot be rewritten; with the scan, the hiding itself is a finding."""
    variant = _hostile_a1(name)
    cells = _cells_before_tests(variant)
    verdicts, notes = trusted().verdicts(a1checks.CHECKS, cells, [])
    passed = [g for g, reason in verdicts.items() if reason is None]
    assert not passed, f"{name}: passes {passed} out of the kernel ({notes})"
    _, _, notes_scanned = _verdict(variant)
    assert any("delegation in" in n for n in notes_scanned), notes_scanned


def test_scan_sees_lookups_hiding_magics_and_aliased_shells():
    from bncourse.classgen import hostile_delegation

    hidden = hostile_delegation.sources("MyBatchNorm1d")
    expected = {
        "THREAD_LOOKUP": {"import pydoc", "name-to-object lookup pydoc.locate"},
        "RESOLVE_THREAD": {"import pkgutil", "name-to-object lookup pkgutil.resolve_name"},
        "FORGE_ANSWER": {"_shell.input_transformers_cleanup", "patch os.replace"},
        "WRITEFILE_HELPER": {"cell magic %%writefile"},
        "WRITEFILE_LAYER": {"import bn_helpers (not installed: a module written by the submission)"},
        "FORKED": {"getattr() with a computed name"},
    }
    for piece, rules in expected.items():
        found = {rule for kind, rule in _rules(hidden[piece]) if kind in ("evasion", "tamper")}
        assert rules <= found, f"{piece}: {sorted(found)}"
    # honest spellings stay clean: IPython's own magics, installed modules, !pip
    assert _rules("%matplotlib inline\nimport numpy as np\nfrom tqdm.auto import tqdm\n!pip install tqdm\n") \
        <= {("suspicious", "shell command")}
    # the shell reached by another name is the shell
    assert ("tamper", "sh.ast_transformers") in _rules("import IPython\nsh = IPython.get_ipython()\n"
                                                       "sh.ast_transformers.append(None)\n")
    assert ("evasion", "magic %run") in _rules("%run helper.py\n")


def test_child_answer_cannot_be_rewritten_by_name(tmp_path):
    """Code that replaces answer.json, patches json.dumps and os.replace: the grader
    still reads what the harness measured."""
    forge = ("import json, os\n"
             "_dumps = json.dumps\n"   # the kernel's own messages still go through
             "json.dumps = lambda obj, **kw: '{\"probe\": {\"look\": {\"error\": null, \"value\": 7}}}' "
             "if isinstance(obj, dict) and 'probe' in obj else _dumps(obj, **kw)\n"
             "os.replace = lambda *a, **k: None\n"
             "for name in os.listdir('.'):\n"
             "    if name.startswith('answer'):\n"
             "        os.remove(name)\n"
             "open('answer.json', 'w').write(json.dumps({}))\n")
    cells = [forge, "class Layer:\n    def __init__(self, n):\n        self.value = n * 2\n"]
    result = run_student_code(cells, PROBE, "Layer", {"look": {"n": 21}})
    assert result.failure is None, result.failure
    assert result.answer["probe"]["look"]["value"] == 42


# ------------------------------------------------------------------ assignment 2

def _a2_inputs(variant):
    """What TrustedChecks.preprocess hands to verdicts() (read here, in one thread: the
    parser of CPython 3.11 is not safe to run in several threads at once)."""
    from bncourse.checks import a2_batchnorm2d as a2checks
    from bncourse.classgen import a2_batchnorm2d as a2

    course = a2._course()
    release = nbformat.read(str(course.release / "a2_batchnorm2d" / "batchnorm2d.ipynb"), as_version=4)
    _, nb = classgen.render(course, "a2_batchnorm2d", variant)
    last = max(i for i, c in enumerate(nb.cells) if scan.grade_id(c) in a2checks.CHECKS.by_grade_id())
    cells = [c.source for c in nb.cells[:last] if c.cell_type == "code" and not scan.is_test_cell(c)]
    findings = scan.scan_notebook(nb, release, costly_until=last, builtin=NORM_NAMES)
    answer_cells = {i: scan.grade_id(c) for i, c in enumerate(nb.cells) if scan.is_answer_cell(c)}
    return variant, cells, findings, answer_cells


def _a2_verdict(inputs):
    from bncourse.checks import a2_batchnorm2d as a2checks

    variant, cells, findings, answer_cells = inputs
    verdicts, notes = trusted().verdicts(a2checks.CHECKS, cells, findings, answer_cells=answer_cells)
    return variant, verdicts, notes


def _a2_hostile():
    """The hidden-delegation corpus written for MyBatchNorm2d (BatchNorm2dFunction right)."""
    from coursekit.classgen import Variant
    from bncourse.classgen import hostile_delegation
    from bncourse.classgen import a2_batchnorm2d as a2

    hidden = hostile_delegation.sources("MyBatchNorm2d")

    def after_layer(*sources):
        def mutate(nb):
            at = next(i for i, c in enumerate(nb.cells) if scan.grade_id(c) == a2.LAYER)
            for offset, source in enumerate(sources, 1):
                nb.cells.insert(at + offset, nbformat.v4.new_code_cell(source))
        return mutate

    function = a2.solution(a2.FUNCTION)
    norms = a2.solution(a2.NORMS)
    # a child that started threads or processes is not trusted: every re-checked cell fails,
    # the Function's too (gradcheck and vs_autograd are not re-checked: the kernel decides them)
    layer_tests = set(a2.LAYER_TESTS) | set(a2.NORM_TESTS) | {"test_function_forward", "test_function_no_autograd"}
    return [
        Variant("a2_thread_lookup", "", {a2.LAYER: hidden["THREAD_LOOKUP"], a2.FUNCTION: function, a2.NORMS: norms}, fails=layer_tests),
        Variant("a2_resolve_thread", "", {a2.LAYER: hidden["RESOLVE_THREAD"], a2.FUNCTION: function, a2.NORMS: norms}, fails=layer_tests),
        Variant("a2_forge_answer", "", {a2.LAYER: hidden["THREAD_LOOKUP"], a2.FUNCTION: function, a2.NORMS: norms},
                fails=layer_tests, mutate=after_layer(hidden["FORGE_ANSWER"])),
        Variant("a2_writefile", "", {a2.LAYER: hidden["WRITEFILE_LAYER"], a2.FUNCTION: function, a2.NORMS: norms},
                fails=layer_tests, mutate=after_layer(hidden["WRITEFILE_HELPER"])),
        Variant("a2_forked", "", {a2.LAYER: hidden["FORKED"], a2.FUNCTION: function, a2.NORMS: norms}, fails=layer_tests),
    ]


def test_a2_verdicts_never_harsher_than_the_hidden_tests_and_catch_hidden_delegation():
    """Assignment 2's out-of-kernel check on its whole catalogue plus the hidden-delegation
    corpus: never fails a cell the notebook's hidden tests pass (honest and mistaken
    submissions keep their grades); fails every cell of a layer that delegates however
    it hides it; fails the delegation variants of the catalogue where the notebook does."""
    from bncourse.classgen import a2_batchnorm2d as a2

    catalogue_variants, hostile_variants = a2.VARIANTS, _a2_hostile()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_a2_verdict, [_a2_inputs(v) for v in catalogue_variants + hostile_variants]))
    problems = []
    hostile_names = {v.student for v in hostile_variants}
    must_catch = {"delegates_f_batch_norm", "eval_delegates_torch_batch_norm", "subclass_batchnorm2d",
                  "wraps_batchnorm2d", "unbiased_var_normalise__forward_delegates_f_batch_norm__gn_unbiased_var",
                  "hardcoded_eps__backward_builtin__ln_delegates_f_layer_norm", "gn_delegates_f_group_norm"} | hostile_names
    for variant, verdicts, notes in results:
        expected = classgen.expected_pass(variant, list(a2.TESTS))
        for grade_id, reason in verdicts.items():
            if reason is not None and expected[grade_id]:
                problems.append(f"{variant.student}/{grade_id}: harsher than the hidden tests: {reason} ({notes})")
            if reason is None and not expected[grade_id] and variant.student in must_catch:
                problems.append(f"{variant.student}/{grade_id}: delegation passes out of the kernel ({notes})")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ assignment 3

def test_a3_loops_are_rechecked_out_of_the_kernel_like_the_hidden_tests():
    """train_one_epoch and evaluate of A3, re-run in the child with the built-in norm layers
    allowed (using them is the exercise): each catalogue variant fails exactly the loop
    tests the notebook's hidden tests fail (the loss kept as a tensor fails only the graph test;
    the accuracy from a second forward pass is correct)."""
    from bncourse.checks import a3_alexnet_bn as a3checks
    from bncourse.classgen import a3_alexnet_bn as a3

    wanted = {"solution", "correct_style_b", "correct_style_c", "no_zero_grad", "softmax_before_ce", "eval_with_grad",
              "no_train_mode", "loss_as_tensor"}
    problems = _recheck_problems(a3, "a3_alexnet_bn", a3checks, [v for v in a3.VARIANTS if v.student in wanted])
    assert not problems, "\n".join(problems)


def test_scan_an_import_that_fails_is_a_mistake_unless_the_submission_writes_modules():
    def scanned(*sources):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        return {(f.kind, f.rule) for f in scan.scan_notebook(nb)}

    missing = "import bn_helpers_not_installed\n"
    assert scanned(missing) == {("suspicious", "import bn_helpers_not_installed (not installed)")}
    written = "import bn_helpers_not_installed (not installed: a module written by the submission)"
    assert ("evasion", written) in scanned("%%writefile bn_helpers_not_installed.py\nx = 1\n", missing)
    assert ("evasion", written) in scanned("open('bn_helpers_not_installed.py', 'w').write(src)\n", missing)


def test_shell_escapes_of_an_honest_notebook_do_not_make_it_untrusted():
    """`!nvidia-smi` and `files = !ls` (Colab habits) are skipped in the re-check, not refused as processes."""
    solution = next(v for v in catalogue.VARIANTS if v.student == "solution")
    cells = ["!nvidia-smi\nfiles = !ls"] + _cells_before_tests(solution)
    verdicts, notes = trusted().verdicts(a1checks.CHECKS, cells, [])
    assert all(reason is None for reason in verdicts.values()), (verdicts, notes)


# ------------------------------------------------------------------ assignment 5

def test_a5_rechecks_keep_honest_and_wrong_points_and_catch_faked_tests():
    """BasicBlock, make_resnet18, fold_bn, fold_resnet and freeze_bn of A5, re-run in the child with fresh
    random inputs (the built-in layers allowed: using them is the exercise): correct submissions written
    differently pass every cell, mistaken and delegating ones fail exactly the cells the notebook's hidden
    tests fail, and faked ones (comparisons patched, a freeze_bn that detects the notebook's tests, test cells
    emptied) fail exactly the cells of the functions they faked."""
    from bncourse.checks import a5_modern_architectures as a5checks
    from bncourse.classgen import a5_modern_architectures as a5

    wanted = {"correct_style_a", "correct_style_b", "relu_before_sum", "delegates", "fold_in_place"}
    variants = [v for v in a5.VARIANTS if v.student in wanted] + a5.faked()
    assert len(variants) == len(wanted) + 2
    problems = _recheck_problems(a5, "a5_modern_architectures", a5checks, variants, every_cell=True)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ assignment 4

def test_a4_rechecks_keep_honest_and_wrong_points_and_catch_faked_tests():
    """The five search helpers of A4, re-run in the child on fresh random intervals, spaces, grids, trials
    and qualities (the statistics computed here from the raw draws): correct submissions written differently
    pass every cell, mistaken ones fail exactly the cells the notebook's hidden tests fail, and faked ones
    (functions right only inside the notebook's tests, errors swallowed) fail exactly the faked cells."""
    from bncourse.checks import a4_hyperparameters as a4checks
    from bncourse.classgen import a4_hyperparameters as a4

    correct = [v for v in a4.VARIANTS if v.student.startswith("correct")]
    # the generated students with one mistake in every answer cell
    mistaken = [v for v in a4.VARIANTS if v.student not in ("solution", "blank", "only_sampling", "only_halving")
                and not v.student.startswith("correct")]
    variants = correct + mistaken[:2] + a4.faked()
    assert len(correct) == 2 and len(mistaken) >= 2
    problems = _recheck_problems(a4, "a4_hyperparameters", a4checks, variants, every_cell=True)
    assert not problems, "\n".join(problems)
