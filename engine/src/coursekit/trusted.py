"""Trusted re-checks of autograded test cells, outside the student's kernel.

Everything computed inside the kernel that executed a submission can be forged
by the submission (patched ``torch.allclose`` or ``nn.BatchNorm1d``, a silenced
``showtraceback``, input transformers that empty the test cells, hooks that
clear error outputs...), and nbgrader scores a test cell by the mere absence of
an error output.  ``TrustedChecks`` runs right after nbgrader's ``Execute`` and,
for every test cell with a check registered by the course (``<package>.checks.<assignment>``,
:mod:`coursekit.content`):

1. runs the student's code cells (never the test cells) once more, in a fresh
   sandboxed child, which answers with measurements of the student's layer as
   JSON data (``coursekit.checks.child``);
2. computes the references here, with the grader's own untouched libraries;
3. reads the student's lines statically (``coursekit.checks.scan``) and looks
   at what the child reports: the aten operators the code dispatched, whether
   the library kernels the course guards stayed disabled (they raise, in every
   thread, for the whole run: ``_harness.py``), and whether the code started
   threads or tried to start processes.  Delegation, code that hides from the
   reading and code that runs where the re-check does not look all cost the
   implementation checks;
4. for a test cell that passed in the kernel but fails here, puts an error
   output (the course's words, ``TrustedChecks.messages``) first in the cell, so that nbgrader's own
   ``SaveAutoGrades`` scores it 0.  A cell that failed in the kernel is left
   alone: this layer only ever turns a pass into a fail.

``ScanSubmission``, right before ``Execute``, does step 3's static reading
and records what the submission attempted (``tamper`` / ``suspicious``
events, ``coursekit.events``) for the per-submission report, so the flags
exist even when the kernel dies or never finishes.  The child fails closed: no
usable answer (timeout, crash, flood, malformed data) fails the checked cells
that passed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from traitlets import Bool, Dict, Integer, Unicode

from nbgrader.preprocessors import NbGraderPreprocessor

from coursekit import checks, content, events
from coursekit.checks import scan
from coursekit.checks.child import run_student_code

# What a failed re-check says to the student, in English unless the course sets its own words
# (``c.TrustedChecks.messages`` in nbgrader_config.py; keys it leaves out keep these).
MESSAGES = {
    "unverified": "your implementation could not be verified outside the kernel ({why}); run the notebook "
                  "again from top to bottom and check that it neither fails nor hangs",
    "timeout": "the code did not finish in time",
    "no_results": "the code gave no results",
    "forged": "this test failed; the result the cell shows before the error does not count as partial credit",
    "delegation": "the implementation must be your own: {what} was found. Do not use the library's own "
                  "version of the exercise, nor hide code (eval, exec, getattr or pydoc.locate with computed "
                  "names, torch._C, torch.ops, %%writefile, modules of your own, threads or processes...)",
    "guard_lost": "that the library kernels could not be kept disabled during the check",
    "threads": "code that starts threads or processes ({kinds}), where the check does not reach",
    "new_threads": "new threads",
    "operator": "the internal operation {op}",
    "finding": "«{rule}» on line {line} of one of your cells",
    "invalid": "invalid result ({name})",
}

SCAN_KEY = "coursekit_static_findings"  # resources key: ScanSubmission -> TrustedChecks


class _Submission:
    """What both preprocessors need to know about the notebook being graded."""

    def __init__(self, nb: NotebookNode, resources: dict, component):
        info = resources.get("nbgrader", {})
        self.assignment, self.student = info.get("assignment"), info.get("student")
        self.notebook = info.get("notebook")
        self.ours = bool(self.student)
        if not self.ours:
            return
        self.root = events.course_root_from_resources(resources)
        loaded = checks.load(self.assignment, content.content_of(self.root, getattr(component, "config", None)))
        # only the course's assignments that have re-checks are read and re-checked
        self.ours = loaded is not None
        if not self.ours:
            return
        # what counts as delegation is the assignment's, whichever of its notebooks this is
        self.builtin, self.own_implementation = loaded.builtin, loaded.own_implementation
        registry = loaded if loaded.notebook in (None, self.notebook) else None
        self.registry = registry
        self.by_id = registry.by_grade_id() if registry else {}
        positions = {scan.grade_id(c): i for i, c in enumerate(nb.cells) if scan.is_test_cell(c)}
        self.checked = {g: i for g, i in positions.items() if g in self.by_id}
        self.last = max(self.checked.values()) if self.checked else None

    def record(self, kind: str, **details) -> None:
        events.record(self.root, self.assignment, self.student, kind, notebook=self.notebook, **details)

    def scan(self, nb: NotebookNode, resources: dict) -> list[scan.Finding]:
        """The static findings (once per notebook: recorded by whichever preprocessor runs first)."""
        if SCAN_KEY not in resources:
            given = _given_notebooks(self.root, self.assignment, self.notebook)
            findings = scan.scan_notebook(nb, given, costly_until=self.last, builtin=self.builtin)
            if not self.own_implementation:
                # using the library's own layers is allowed there (the exercise uses them)
                findings = [f for f in findings if f.kind != "delegation"]
            grouped: dict[str, list[dict]] = defaultdict(list)
            for f in findings:
                grouped[f.kind].append(f.as_dict())
            for kind, items in grouped.items():
                self.record(events.TAMPER if kind in ("tamper", "evasion") else events.SUSPICIOUS, source="static",
                            finding=kind, rules=sorted({i["rule"] for i in items})[:20], where=items[:20])
            resources[SCAN_KEY] = findings
        return resources[SCAN_KEY]


class ScanSubmission(NbGraderPreprocessor):
    """Before execution: read the student's code and record what it attempts, so
    that the flags exist even when the kernel dies or never finishes."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        sub = _Submission(nb, resources, self)
        if sub.ours:
            sub.scan(nb, resources)
        return nb, resources


class TrustedChecks(NbGraderPreprocessor):
    """Re-check registered test cells out of the kernel; only ever turn a pass into a fail."""

    enabled = Bool(True, help="Run the trusted checks after execution").tag(config=True)
    timeout = Integer(120, help="Seconds the sandboxed child may run (cells and probe)").tag(config=True)
    cell_timeout = Integer(30, help="Seconds one student cell may run in the child").tag(config=True)
    error_name = Unicode("IndependentCheck", help="Name of the error a failed re-check puts in a test cell "
                                                  "(what the student sees first)").tag(config=True)
    messages = Dict(value_trait=Unicode(), help="The course's words for a failed re-check, by key of "
                                                "coursekit.trusted.MESSAGES (missing keys: English)").tag(config=True)

    def say(self, key: str, **fields) -> str:
        return {**MESSAGES, **self.messages}[key].format(**fields)

    def error_output(self, message: str) -> NotebookNode:
        return nbformat.v4.new_output("error", ename=self.error_name, evalue=message,
                                      traceback=[f"{self.error_name}: {message}"])

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        sub = _Submission(nb, resources, self)
        if not sub.ours:
            return nb, resources
        findings = sub.scan(nb, resources)
        for sign in output_signs(nb):
            sub.record(events.TAMPER, source="outputs", **sign)
            # nbgrader takes partial credit from the first execute_result, even when an
            # error follows: in the course's test cells (asserts, no partial credit) the
            # error comes first, checked or not
            cell = nb.cells[sign["index"]]
            cell.outputs.insert(0, self.error_output(self.say("forged")))
        if not sub.checked:
            return nb, resources
        registry, by_id, checked, last = sub.registry, sub.by_id, sub.checked, sub.last
        root, assignment, student = sub.root, sub.assignment, sub.student

        started = time.monotonic()
        cells = [c.source for i, c in enumerate(nb.cells[:last])
                 if c.cell_type == "code" and not scan.is_test_cell(c)]
        answer_cells = {i: scan.grade_id(c) for i, c in enumerate(nb.cells) if scan.is_answer_cell(c)}
        verdicts, notes = self.verdicts(registry, cells, findings, salt=_course_salt(root), answer_cells=answer_cells)
        for grade_id, index in checked.items():
            cell, reason = nb.cells[index], verdicts.get(grade_id)
            # An error already first scores 0; an error behind a forged result
            # (nbgrader reads partial credit from the first output) does not.
            if reason is None or _first_output_fails(cell):
                continue
            cell.outputs.insert(0, self.error_output(f"{by_id[grade_id].what}: {reason}"))
            sub.record(events.TAMPER, source="trusted", grade_id=grade_id, detail=reason,
                       reason="a test cell that passed in the kernel fails the out-of-kernel check")
        seconds = time.monotonic() - started
        self.log.info("trusted checks of %s/%s: %d cells, %.1f s%s", student, assignment, len(checked),
                      seconds, f" ({'; '.join(notes)})" if notes else "")
        sub.record(events.TRUSTED_CHECKED, cells=len(checked), seconds=round(seconds, 3),
                   child=getattr(self, "child_mode", None))
        return nb, resources

    def verdicts(self, registry: checks.AssignmentChecks, cells: list[str], findings: list[scan.Finding],
                 salt: bytes = b"", answer_cells: dict[int, str] | None = None
                 ) -> tuple[dict[str, str | None], list[str]]:
        """{grade_id: None if right, else a reason in the course's words} for every registered check.

        The inputs are drawn from the submission's code and the course's secret
        ``salt``: the same for a re-grade, unknowable to the student in advance.
        ``answer_cells``: notebook index -> grade_id of the answer cells, to charge
        a static finding only to the checks of the cell it is in (see ``Check.cells``)."""
        digest = hashlib.sha256(salt + b"\0" + "\0".join(cells).encode("utf-8")).digest()
        seed = int.from_bytes(digest[:4], "big")
        spec = registry.spec(seed)
        result = run_student_code(cells, registry.probe_source, registry.target, spec,
                                  timeout=self.timeout, cell_timeout=self.cell_timeout, config=self.config,
                                  guard=registry.guard, preload=registry.preload)
        self.child_mode = result.mode
        notes = [f"child {result.wall:.1f} s ({result.mode or 'never started'})"]
        answer = result.answer or {}
        probe = answer.get("probe")
        if result.failure or not isinstance(probe, dict):
            why = result.failure or f"error {str(answer.get('error'))[:200]}"
            notes.append(f"unverified: {why}")
            short = self.say("timeout" if "timeout" in why else "no_results")
            return {c.grade_id: self.say("unverified", why=short) for c in registry.checks}, notes

        ops = answer.get("ops") if isinstance(answer.get("ops"), list) else []
        by_scenario = answer.get("scenario_ops") if isinstance(answer.get("scenario_ops"), dict) else {}
        costly = [f for f in findings if f.kind in scan.COSTLY]
        answer_cells = answer_cells or {}
        spawned = answer.get("spawned") if isinstance(answer.get("spawned"), list) else ["?"]
        threads = answer.get("threads")
        more_threads = not (isinstance(threads, list) and len(threads) == 2
                            and all(isinstance(t, int) for t in threads) and threads[1] <= threads[0])
        notes.append(f"guard {answer.get('guard')!r}, spawned {spawned[:5]}, threads {threads!r}")
        general = None
        guard = answer.get("guard")
        if not (guard is True if registry.guard else guard == "off"):
            # the guarded kernels were not disabled for the whole run: nothing it computed is trusted
            general = self.say("guard_lost")
        elif spawned or more_threads:
            kinds = sorted({str(s)[:40] for s in spawned}) or [self.say("new_threads")]
            general = self.say("threads", kinds=", ".join(kinds[:3]))

        def delegation(check: checks.Check) -> str | None:
            if general:
                return general
            if check.scenarios is None:
                seen = ops
            else:
                seen = [op for name in check.scenarios
                        for op in (by_scenario.get(name) if isinstance(by_scenario.get(name), list) else ["?"])]
            delegated = sorted({str(op) for op in seen if registry.forbidden_ops.search(str(op))})
            if delegated:
                return self.say("operator", op=delegated[0])
            mine = [f for f in costly if check.cells is None or answer_cells.get(f.cell) in (None, *check.cells)]
            if mine:
                return self.say("finding", rule=mine[0].rule, line=mine[0].line)
            return None

        reference = registry.reference(spec)
        out: dict[str, str | None] = {}
        for check in registry.checks:
            what = delegation(check) if check.implementation else None
            if what:
                notes.append(f"delegation in {check.grade_id}: {what}")
                out[check.grade_id] = self.say("delegation", what=what)
                continue
            try:
                out[check.grade_id] = check.compare(probe, reference)
            except Exception as exc:  # malformed student data must fail, never crash the grader
                out[check.grade_id] = self.say("invalid", name=type(exc).__name__)
        return out, notes


def _course_salt(root: Path) -> bytes:
    """The course's secret for drawing trusted inputs (``.coursekit/trusted_salt``,
    created on first use; the sandbox never shows .coursekit/ to student code).
    Without a writable course, a fresh secret per run: safe, not reproducible."""
    path = Path(root) / ".coursekit" / "trusted_salt"
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".salt-")
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
            try:
                os.link(tmp, path)  # atomic: the first writer wins, complete
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_bytes()
    except OSError:
        return os.urandom(32)


def _given_notebooks(root: Path, assignment: str, notebook: str | None) -> list:
    """The release and source versions of the notebook: what the student was given."""
    out = []
    for folder in ("release", "source"):
        try:
            out.append(nbformat.read(str(Path(root) / folder / assignment / f"{notebook}.ipynb"), as_version=4))
        except Exception:
            pass  # without them every line of an unlocked code cell counts as the student's
    return out


def _fails(output) -> bool:
    return output.get("output_type") == "error" or (
        output.get("output_type") == "stream" and output.get("name") == "stderr")


def _first_output_fails(cell) -> bool:
    """True when nbgrader will score this test cell 0 (it reads the first telling output)."""
    for output in cell.get("outputs", []):
        if _fails(output):
            return True
        if output.get("output_type") == "execute_result":
            return False
    return False


def output_signs(nb) -> list[dict]:
    """Test cells whose outputs look forged: a result shown before an error."""
    signs = []
    for index, cell in enumerate(nb.cells):
        if not scan.is_test_cell(cell):
            continue
        kinds = [o.get("output_type") for o in cell.get("outputs", [])]
        if "execute_result" in kinds and any(_fails(o) for o in cell.outputs) and not _first_output_fails(cell):
            signs.append({"grade_id": scan.grade_id(cell), "index": index,
                          "sign": "a result shown before an error"})
    return signs
