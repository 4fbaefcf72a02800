"""Hostile submissions of assignment 1: one per class of the threat model.

Each variant is a simulated student who attacks the grader (see
../shared/GRADING.md, "Threat model"), on top of an implementation whose honest
score is known: the instructor's solution, the release stub (0 points), or a
mistake of the A1 catalogue (``bncourse.classgen.a1_batchnorm1d``), whose
``fails`` set is the score the submission deserves.  A grader that resists
gives each of them exactly that score (``AT_MOST``: at most that score, for
attacks whose own side effects legitimately cost points, e.g. a kernel that
kills itself) and lets no attack touch anything outside the submission's
working copy.

``tests/test_hostile.py`` grades this corpus, together with honest
submissions, through plain ``nbgrader autograde`` and through ``coursekit
grade``.  NEVER grade it outside a scratch course, or with the kernel sandbox
switched off: the attacks are real (they write the gradebook, the course
files and other students' folders they can reach, kill processes, fork,
allocate memory).  Their reach is bounded where a bug of the sandbox could hurt
the machine or other people's work: writes go only to the course found above
the kernel's own working folder, kills only to the kernel's own parent and
process group, the fork and memory bombs stop at a fixed size.

Every attack prints what it achieved, so the autograded notebook shows what
happened (``ATAC:`` lines).
"""
from __future__ import annotations

import json
from functools import lru_cache

import nbformat

from coursekit.classgen import Variant
from bncourse.classgen import a1_batchnorm1d as a1
from bncourse.classgen import hostile_delegation
from coursekit.paths import CourseError
from bncourse.classgen.hostile_attacks import (
    BOMBS, DELEGATE, FLOOD, FORGE, HARDCODE, IPYTHON, KILL, LOOP, NETWORK, PATCH, PATCH_REFERENCE, READ,
    WRITE,
)

ASSIGNMENT = "a1_batchnorm1d"
ANSWER = a1.ANSWER
ALL = frozenset(a1.TESTS)
# What the honest mistakes under the attacks cost, as assignment 1's catalogue says for eps_outside_sqrt and
# reversed_momentum (the Keras momentum convention costs only test_momentum: the running-statistics tests
# judge what is accumulated); tests/test_hostile.py checks that the two agree.
EPS_FAILS = frozenset({"test_eps", "test_constant_feature"})
MOMENTUM_FAILS = frozenset({"test_momentum"})
DEFAULT_PORT = 47361   # where hostile_network tries to send what it found (tests pass their own)

# Variants whose score may legitimately be lower than the honest one (their attack
# costs them points by itself); every other variant must get exactly the honest score.
AT_MOST = {"h08_loop", "h10_kill"}

# What the event log of each submission must show (coursekit.events kinds);
# hard-coded outputs and output floods leave no sign that can be told apart.
FLAGS = {
    "h01_read": {"suspicious"}, "h02_write": {"suspicious"}, "h03_patch": {"tamper"},
    "h04_ipython": {"tamper"}, "h05_forge": {"tamper"}, "h06_delegate": {"tamper"},
    "h08_loop": {"suspicious"}, "h10_kill": {"suspicious"}, "h11_network": {"suspicious"},
    "h12_patch_reference": {"tamper"},
    # static evasion findings are logged as "tamper", the out-of-kernel verdicts too
    "h13_thread_lookup": {"tamper"}, "h14_forge_answer": {"tamper"}, "h15_writefile": {"tamper"},
    "h16_forked": {"tamper"},
}


def _eps_outside() -> str:
    return a1.edit(*a1.EPS_OUTSIDE)


def _reversed_momentum() -> str:
    return a1.edit(*a1.REVERSED_MOMENTUM)


def _stub() -> str:
    """The answer cell as released (raises NotImplementedError in forward)."""
    from coursekit.classgen import _notebook_path, cell_by_grade_id, read_notebook

    path = _notebook_path(a1._course().release, ASSIGNMENT, None)
    return cell_by_grade_id(read_notebook(path), ANSWER).source


def _insert_after_answer(*sources: str):
    """A mutate function adding student code cells right after the answer cell."""
    def mutate(nb):
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWER)
        for offset, source in enumerate(sources, 1):
            nb.cells.insert(at + offset, nbformat.v4.new_code_cell(source))
    return mutate


def _append(*sources: str):
    """A mutate function adding student code cells at the end of the notebook (after every test)."""
    def mutate(nb):
        for source in sources:
            nb.cells.append(nbformat.v4.new_code_cell(source))
    return mutate


def _without_second_part(nb) -> None:
    """Drop the given (non-nbgrader) code cells after the last test cell: the MLP
    experiment, ungraded by the autograder.  Students may delete them; the corpus
    does, so that grading it costs the attacks, not a training run each."""
    last = max(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") in a1.TESTS)
    nb.cells[last + 1:] = [c for c in nb.cells[last + 1:]
                           if not (c.cell_type == "code" and "nbgrader" not in c.metadata)]


def _both(*mutates):
    def mutate(nb):
        for m in mutates:
            m(nb)
    return mutate


@lru_cache(maxsize=1)
def _visible_constant_case() -> tuple[list, list]:
    """The visible test of constant features: its input (run from the release's own
    lines, up to where the layers are built) and the right output for it."""
    import torch

    from coursekit.classgen import _notebook_path, cell_by_grade_id, read_notebook

    path = _notebook_path(a1._course().release, ASSIGNMENT, None)
    source = cell_by_grade_id(read_notebook(path), "test_constant_feature").source
    lines = source.split("### BEGIN HIDDEN TESTS")[0].splitlines()
    upto = next((i for i, line in enumerate(lines) if line.startswith("bn, ref")), None)
    if upto is None:
        raise CourseError("hostile corpus: the visible test_constant_feature no longer builds `bn, ref = ...`; "
                          "update coursekit/classgen/hostile.py")
    namespace = {"torch": torch, "nn": torch.nn}
    exec("\n".join(lines[:upto]), namespace)
    x = namespace["x"]
    y = torch.nn.BatchNorm1d(x.shape[1])(x)
    return x.tolist(), y.detach().tolist()


def variants(port: int = DEFAULT_PORT) -> list[Variant]:
    """The hostile corpus (``port``: where ``h11_network`` sends its data)."""
    x, y = _visible_constant_case()
    hardcoded = _eps_outside() + HARDCODE.format(x=json.dumps(x), y=json.dumps(y))
    solution = a1.solution()
    corpus = [
        Variant("h01_read", "reads source/, the gradebook, other students and the environment; "
                "defines its layer from what it finds (release stub otherwise)",
                {ANSWER: _stub()}, fails=ALL, mutate=_insert_after_answer(READ)),
        Variant("h02_write", "writes the gradebook, the course files, other students' folders, "
                "its own event log (eps outside sqrt)",
                {ANSWER: _eps_outside()}, fails=EPS_FAILS, mutate=_insert_after_answer(WRITE)),
        Variant("h03_patch", "patches torch/numpy/math comparisons and builtins.max (eps outside sqrt)",
                {ANSWER: _eps_outside() + PATCH}, fails=EPS_FAILS),
        Variant("h04_ipython", "input and AST transformers empty the test cells, showtraceback off, "
                "outputs cleared (release stub)",
                {ANSWER: _stub()}, fails=ALL, mutate=_insert_after_answer(IPYTHON)),
        Variant("h05_forge", "a pre-run hook shows a result in every test cell (reversed momentum)",
                {ANSWER: _reversed_momentum()}, fails=MOMENTUM_FAILS, mutate=_insert_after_answer(FORGE)),
        Variant("h06_delegate", "F.batch_norm through a computed name, detached input, "
                "PyTorch's dispatch modes blinded", {ANSWER: DELEGATE}, fails=ALL),
        Variant("h07_hardcode", "outputs memorised for the visible test's input (eps outside sqrt)",
                {ANSWER: hardcoded}, fails=EPS_FAILS),
        Variant("h08_loop", "a last cell that never ends and ignores interrupts (solution)",
                {ANSWER: solution}, mutate=_append(LOOP)),
        Variant("h09_flood", "floods the output before the tests (eps outside sqrt)",
                {ANSWER: _eps_outside()}, fails=EPS_FAILS, mutate=_insert_after_answer(FLOOD)),
        Variant("h10_kill", "memory and fork bombs, then kills its parent and its process group (solution)",
                {ANSWER: solution}, mutate=_insert_after_answer(BOMBS, KILL)),
        Variant("h11_network", "sends data to a local port and tries the internet (solution)",
                {ANSWER: solution}, mutate=_insert_after_answer(NETWORK.replace("{port}", str(int(port))))),
        Variant("h12_patch_reference", "the reference layer computes the same mistake, its code relabelled "
                "(reversed momentum)", {ANSWER: _reversed_momentum() + PATCH_REFERENCE}, fails=ALL),
    ]
    hidden = hostile_delegation.sources("MyBatchNorm1d")
    corpus += [
        Variant("h13_thread_lookup", "F.batch_norm found by pkgutil.resolve_name with a name built from character "
                "codes, run in a new thread at every call", {ANSWER: hidden["RESOLVE_THREAD"]}, fails=ALL),
        Variant("h14_forge_answer", "F.batch_norm by pydoc.locate in a worker thread; an aliased shell empties "
                "the test cells, and in the re-check the answer file is rewritten",
                {ANSWER: hidden["THREAD_LOOKUP"]}, fails=ALL, mutate=_insert_after_answer(hidden["FORGE_ANSWER"])),
        Variant("h15_writefile", "the delegating helper (worker thread) written by %%writefile and imported",
                {ANSWER: hidden["WRITEFILE_LAYER"]}, fails=ALL,
                mutate=_insert_after_answer(hidden["WRITEFILE_HELPER"])),
        Variant("h16_forked", "F.batch_norm computed in a forked process reached by a computed name",
                {ANSWER: hidden["FORKED"]}, fails=ALL),
    ]
    for variant in corpus:
        variant.mutate = _both(_without_second_part, variant.mutate) if variant.mutate else _without_second_part
    return corpus


def honest() -> list[Variant]:
    """Honest submissions graded in the same run (they must keep their exact grades)."""
    return [
        Variant("honest_solution", "the instructor's solution", {ANSWER: a1.solution()}),
        Variant("honest_eps_outside", "eps outside the square root", {ANSWER: _eps_outside()}, fails=EPS_FAILS),
    ]


def __getattr__(name: str):
    if name == "VARIANTS":   # built on use: it reads the course's notebooks
        return variants()
    raise AttributeError(name)
