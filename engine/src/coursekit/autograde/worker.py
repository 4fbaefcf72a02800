"""A long-lived grading worker process (``python -m coursekit.autograde.worker``).

It runs nbgrader's own ``Autograde`` converter with the course's
``nbgrader_config.py`` loaded (so the repair, sandbox and trusted-check
extensions apply exactly as under ``nbgrader autograde``), one student at a
time, paying nbgrader's import and start-up once.  It autogrades into its own
scratch gradebook (a snapshot of the course gradebook, see
:mod:`coursekit.autograde.pool`), reads back the autograder-owned fields of
that submission (:func:`coursekit.gradebook.extract_from`) and sends them to the
coordinator, which alone writes the course gradebook.

Protocol: one JSON object per line.  The coordinator writes
``{"student", "warm"}`` on stdin; the worker answers on the file descriptor
``reply_fd`` with ``{"ready", "course_id", "startup"}`` once, then one result
per student: ``{"student", "status": "graded" | "failed", "seconds", ...}``
(graded: the extracted fields and ``cell_timeouts``; both: ``started``, ``ended``; failed:
``error`` and ``parse_errors``).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from coursekit.cells import grade_id
from coursekit.gradebook import extract_from

# Environment variable naming the warm kernel server's socket (coursekit.sandbox.spec).
WARM_VARIABLE = "COURSEKIT_WARM_KERNELS"
# Name nbgrader gives the error of a cell it interrupted (Execute.error_on_timeout).
CELL_TIMEOUT_ENAME = "CellTimeoutError"


class StopGrading(Exception):
    """Raised in a worker when the coordinator stops the submission it grades."""


def _worker_main(argv: list[str]) -> int:
    """A long-lived grading worker: reads student ids (JSON lines) on stdin, answers on fd ``--reply-fd``."""
    import traceback

    opts = json.loads(argv[0])
    reply = os.fdopen(opts["reply_fd"], "w", buffering=1)
    root = Path(opts["root"])
    os.chdir(root)
    t0 = time.perf_counter()
    from nbgrader.apps.autogradeapp import AutogradeApp
    from nbgrader.converters import Autograde

    def _stop(signum, frame):
        # raised inside nbgrader's Execute: nbclient's `finally` shuts the kernel (and its sandbox) down
        raise StopGrading("stopped by the coordinator (--timeout)")

    signal.signal(signal.SIGTERM, _stop)
    app = AutogradeApp.instance()  # as `nbgrader autograde` does: kernel managers log to it too
    app.initialize([f"--CourseDirectory.db_url=sqlite:///{opts['scratch']}",
                    f"--CourseDirectory.root={root}", "--log-level=INFO"] + opts.get("config", []))
    app.coursedir.assignment_id = opts["assignment"]
    course_id = app.coursedir.course_id
    assignment = opts["assignment"]
    log_dir = Path(opts["log_dir"])
    reply.write(json.dumps({"ready": True, "course_id": course_id, "startup": time.perf_counter() - t0}) + "\n")
    _preload(app, assignment)

    for line in sys.stdin:
        task = json.loads(line)
        student = task["student"]
        # the sandbox's kernel manager forks warm kernels from this server when set
        if task.get("warm"):
            os.environ[WARM_VARIABLE] = task["warm"]
        else:
            os.environ.pop(WARM_VARIABLE, None)
        start, started = time.perf_counter(), time.time()
        handler = logging.FileHandler(log_dir / f"{student}.log", mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.addFilter(_log_filter)
        errors: list[str] = []

        class _Errors(logging.Handler):
            def emit(self, record):
                errors.append(record.getMessage())

        catcher = _Errors(level=logging.ERROR)
        app.log.addHandler(handler)
        app.log.addHandler(catcher)
        result: dict = {"student": student}
        try:
            app.coursedir.student_id = student
            converter = Autograde(coursedir=app.coursedir, parent=app)
            converter.force = True  # the coordinator already decided this one needs grading
            converter.start()
            result.update(extract_from(app.coursedir.db_url, course_id, assignment, student))
            result["status"] = "graded"
            result["cell_timeouts"] = _cell_timeouts(root / "autograded" / student / assignment)
        except BaseException as exc:  # noqa: BLE001 - one submission never stops the worker
            if isinstance(exc, KeyboardInterrupt):
                raise
            result["status"] = "failed"
            result["error"] = "\n".join(errors[-3:]) or "".join(
                traceback.format_exception_only(type(exc), exc)).strip()
            result["parse_errors"] = _unreadable(root / "submitted" / student / assignment)
        finally:
            app.log.removeHandler(handler)
            app.log.removeHandler(catcher)
            handler.close()
        result["seconds"] = time.perf_counter() - start
        result["started"], result["ended"] = started, time.time()
        reply.write(json.dumps(result, default=str) + "\n")
    return 0


def _preload(app, assignment: str) -> None:
    """Import, in the background, what grading the first submission would import anyway: the
    trusted re-checks of the assignment (the course's module and torch, whose references are
    computed here).  The coordinator holds the first submissions back until its warm kernel server
    is up, so this uses that wait instead of lengthening the first submission; a submission that
    arrives meanwhile waits for the same imports (Python's import lock), never imports twice."""
    import threading

    def run():
        try:
            from coursekit import checks
            from coursekit.content import content_of

            if checks.load(assignment, content_of(app.coursedir.root, app.config)) is not None:
                import torch  # noqa: F401  (the references' library)
        except Exception:  # noqa: BLE001 - the first submission imports it again and reports any error
            pass

    threading.Thread(target=run, name="preload", daemon=True).start()


def _log_filter(record) -> bool:
    """INFO and above, plus the DEBUG lines that time the phases (kernel messages stay out)."""
    return record.levelno >= 20 or str(record.msg).startswith(("Applying preprocessor", "sandbox:"))


def _cell_timeouts(folder: Path) -> list[str]:
    """Cells of the autograded notebooks that nbgrader interrupted (Execute.timeout)."""
    out = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for i, cell in enumerate(nb.get("cells", [])):
            if any(o.get("ename") == CELL_TIMEOUT_ENAME for o in cell.get("outputs", [])):
                gid = grade_id(cell)
                out.append(f"{path.name}:{gid or f'cell {i}'}")
    return out


def _unreadable(folder: Path) -> list[str]:
    """Submitted notebooks that are not readable notebooks, with the reason."""
    import nbformat
    out = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nbformat.read(str(path), as_version=4)
        except Exception as exc:  # noqa: BLE001 - any reason makes it unreadable
            out.append(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    return out


def exit_now(code: int) -> None:
    """End a worker whose work is done without the interpreter's teardown: tearing down nbgrader's
    and torch's modules takes one to three seconds per worker at the end of every run, for nothing
    (every kernel was shut down with its submission; the coordinator removes the scratch
    gradebook).  The atexit handlers still run and the streams are flushed first."""
    import atexit

    logging.shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        exit_now(_worker_main(sys.argv[1:]))
    sys.exit("usage: python -m coursekit.autograde.worker OPTIONS_JSON (internal: started by coursekit grade)")
