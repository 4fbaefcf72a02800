"""Per-submission event log shared by every grading stage.

Intake, repair, grading, the sandbox and the trusted checks each record what
happened to a submission (``repaired``, ``parse_error``, ``timeout``,
``suspicious``, ...) as JSON lines in
``<course>/.coursekit/events/<assignment>/<student>.jsonl``; reports read them
back.  Appends are single ``write`` calls of one line, safe across processes.

The kinds are the constants below: a stage records only these, and the reports
and the bench read only these (an unknown kind, e.g. from a newer stage, is
still listed by the reports, generically).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

# ---------------------------------------------------------------- kinds, by the stage that records them
# intake (coursekit.intake.report)
INTAKE = "intake"                      # collected: which files, renamed or not
INTAKE_PROBLEM = "intake_problem"      # could not be matched (no notebook, wrong file, ...)
# repair (coursekit.repair): before nbgrader's own sanitizers
REPAIRED = "repaired"                  # nbgrader metadata restored: the actions
PARSE_ERROR = "parse_error"            # a submitted file that is not a notebook
# grading (coursekit.autograde)
GRADING_STARTED = "grading_started"    # one attempt of one submission begins (``run``: the run id)
GRADED = "graded"                      # merged into the gradebook: seconds and the phases' times
GRADING_FAILED = "grading_failed"      # nbgrader could not grade it, or its grades could not be merged
CRASHED = "crashed"                    # the grading worker died while grading it
TIMEOUT = "timeout"                    # --timeout (scope notebook) or nbgrader's Execute.timeout (scope cell)
# sandbox (recorded by the Execute preprocessor, from what the kernel manager reports)
KERNEL_STARTED = "kernel_started"      # warm or cold, start-up in ms
SANDBOX_REMOVED_LINKS = "sandbox_removed_links"  # symlinks, fifos, sockets left in the working copy
SANDBOX_REMOVED_FILES = "sandbox_removed_files"  # files the kernel made in its working copy
# trusted re-checks (coursekit.trusted)
TAMPER = "tamper"                      # the submission tried to fool the grader
SUSPICIOUS = "suspicious"              # it did something a grader should look at
TRUSTED_CHECKED = "trusted_checked"    # the out-of-kernel re-checks ran: cells, seconds

# Bookkeeping kinds: not something an instructor needs to look at.
QUIET = frozenset({INTAKE, GRADING_STARTED, GRADED, KERNEL_STARTED, TRUSTED_CHECKED})
# Kinds that leave a submission without a grade (the latest one is its cause).
FAILURES = (PARSE_ERROR, GRADING_FAILED, CRASHED, TIMEOUT)


def course_root_from_resources(resources: dict) -> Path:
    """The course root as seen from inside an nbgrader preprocessor (see :mod:`coursekit.context`)."""
    from coursekit.context import course_root
    return course_root(resources)


def log_path(root: Path, assignment: str, student: str) -> Path:
    return Path(root) / ".coursekit" / "events" / assignment / f"{student}.jsonl"


def record(root: Path, assignment: str, student: str, kind: str, **details) -> None:
    path = log_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "kind": kind, **details}, ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(root: Path, assignment: str, student: str) -> list[dict]:
    path = log_path(root, assignment, student)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line never hides the others
    return events


def since_last_start(log: list[dict], run: str | None = None) -> list[dict]:
    """The events after the latest ``grading_started`` (of run ``run`` when given); all of them
    when no grading started.  Each grading attempt supersedes what earlier attempts recorded."""
    starts = [i for i, e in enumerate(log)
              if e.get("kind") == GRADING_STARTED and (run is None or e.get("run") == run)]
    if starts:
        return log[starts[-1] + 1:]
    return [] if run is not None else log


def clear(root: Path, assignment: str, student: str) -> None:
    """Forget a submission's events before it is graded again."""
    log_path(root, assignment, student).unlink(missing_ok=True)
