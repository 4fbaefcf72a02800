"""``coursekit grade ASSIGNMENT``: nbgrader's autograde, N submissions at a time.

What it owns: scheduling a class's submissions over long-lived worker
processes, the per-submission time limit, resuming an interrupted run, and the
single writer of the course gradebook.  The grading itself is nbgrader's:
every worker runs nbgrader's own ``Autograde`` converter with the course's
``nbgrader_config.py`` loaded (so the repair, sandbox and trusted-check
extensions apply exactly as under ``nbgrader autograde``), one student at a
time, paying nbgrader's import and start-up once per worker.

Gradebook design (SQLite has one writer)
-----------------------------------------
nbgrader's autograde opens the gradebook many times per submission and mixes
reads and writes in one transaction; two processes doing that on one SQLite
file dead-lock ("database is locked").  So:

* at the start of a run the coordinator snapshots the course gradebook
  (SQLite backup API) into one scratch gradebook per worker, placed in the
  course root (``.grading-w<N>.db``) because the course's preprocessors find the
  course root from the gradebook's folder;
* a worker runs nbgrader's ``Autograde`` against *its* scratch gradebook, which
  holds exactly what the course gradebook held for that student (assignment,
  due date, extensions, earlier manual grades), so nbgrader computes the same
  scores, ``needs_manual_grade`` flags, comments, timestamps and late
  penalties it would compute serially;
* the worker then reads back the autograder-owned fields of that one
  submission (submission timestamp; per notebook the late penalty and flag;
  per cell ``auto_score``/``needs_manual_grade``/``auto_comment``) and sends
  them to the coordinator, which alone writes them into the course
  ``gradebook.db`` through ``nbgrader.api.Gradebook``, as each submission
  finishes (its grades in one transaction).  A submission reaches the course
  gradebook only once fully graded; manual scores there are never touched.

Speed
-----
Besides running N submissions at once, a run removes per-submission start-up
costs: nbgrader is imported and configured once per worker; when the course
runs kernels in the sandbox, the sandbox's warm fork server (started once per
run, ``coursekit.sandbox.forkserver``) hands out kernels that already imported
ipykernel and torch; and each kernel gets one math thread (``OMP_NUM_THREADS``
unless set, ``--threads``): several threads per kernel oversubscribe the cores
as soon as anything else runs, which makes small torch operations tens of
times slower.

Resuming
--------
A submission counts as graded (skipped unless ``--force``) when the course
gradebook has its submission, every submitted notebook nbgrader knows has an
autograded copy newer than the submitted file, the submitted ``timestamp.txt``
is not newer than the autograded one (nbgrader's own rule) and no in-flight
marker (``.coursekit/grading/<assignment>/<student>.inflight``, written before a
submission is handed to a worker and removed once its grades are merged) says a
previous run died while grading it.

Failures
--------
A submission that nbgrader cannot grade (a file that is not a notebook, a
crashed worker, a submission that exceeds ``--timeout`` seconds in total) is
recorded in the event log (``coursekit.events``: ``parse_error``,
``grading_failed``, ``crashed``, ``timeout``; ``grading_started`` marks each
attempt) and listed at the end; the batch
goes on and the submission gets no grade (as under nbgrader), so the next run
retries it.  ``--timeout`` bounds a whole submission: past it the worker gets
SIGTERM (nbclient shuts the kernel and its sandbox down), then is killed and
replaced.  Cells that nbgrader itself interrupted (``Execute.timeout``) are
graded by nbgrader as usual and also recorded as ``timeout`` events.  Each
submission's nbgrader log is kept in ``.coursekit/grading/<assignment>/``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coursekit import events
from coursekit.paths import Course, CourseError

# Default wall-clock limit of one submission (all its notebooks), seconds.
DEFAULT_TIMEOUT = 600
# Threads of each kernel's math libraries (see grade()).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Seconds a worker stopped for --timeout gets to shut its kernel down before it is killed.
TERMINATE_GRACE = 10
# Environment variable naming the warm kernel server's socket (coursekit.sandbox.manager).
WARM_VARIABLE = "COURSEKIT_WARM_KERNELS"
# Name nbgrader gives the error of a cell it interrupted (Execute.error_on_timeout).
CELL_TIMEOUT_ENAME = "CellTimeoutError"


# ---------------------------------------------------------------- planning

def state_dir(course: Course, assignment: str) -> Path:
    return course.state / "grading" / assignment


def submitted_students(course: Course, assignment: str) -> list[str]:
    """Students with at least one notebook in submitted/<student>/<assignment>/."""
    if not course.submitted.is_dir():
        return []
    return sorted(p.name for p in course.submitted.iterdir()
                  if p.is_dir() and any((p / assignment).glob("*.ipynb")))


def _read_timestamp(folder: Path) -> dt.datetime | None:
    from nbgrader.utils import parse_utc
    path = folder / "timestamp.txt"
    try:
        text = path.read_text().strip()
        return parse_utc(text) if text else None
    except (OSError, ValueError):
        return None


def is_graded(course: Course, gb, assignment: str, student: str, notebooks: set[str]) -> bool:
    """True when this submission's current files were graded and merged (see module docstring)."""
    from nbgrader.api import MissingEntry
    if (state_dir(course, assignment) / f"{student}.inflight").exists():
        return False
    src = course.submitted / student / assignment
    out = course.autograded / student / assignment
    for nb in src.glob("*.ipynb"):
        if nb.stem not in notebooks:
            continue  # nbgrader skips notebooks it does not know
        graded = out / nb.name
        if not graded.is_file() or graded.stat().st_mtime < nb.stat().st_mtime:
            return False
    new, old = _read_timestamp(src), _read_timestamp(out)
    if new is not None and (old is None or new > old):
        return False
    try:
        gb.find_submission(assignment, student)
    except MissingEntry:
        return False
    return True


def plan(course: Course, assignment: str, course_id: str, students: list[str] | None,
         force: bool) -> tuple[list[str], list[str]]:
    """(to grade, already graded) among the submitted students."""
    from nbgrader.api import Gradebook, MissingEntry
    found = submitted_students(course, assignment)
    if students:
        missing = sorted(set(students) - set(found))
        if missing:
            raise CourseError(f"no submission of {assignment} in {course.submitted} for: {', '.join(missing)}")
        found = [s for s in found if s in set(students)]
    if not course.gradebook.is_file():
        raise CourseError(f"{course.gradebook} does not exist: run `nbgrader generate_assignment {assignment}` "
                          "(or `coursekit release`) in the course root first")
    with Gradebook(f"sqlite:///{course.gradebook}", course_id) as gb:
        try:
            notebooks = {nb.name for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            raise CourseError(f"assignment {assignment!r} is not in {course.gradebook}: run "
                              f"`nbgrader generate_assignment {assignment}` (or `coursekit release`) first") from None
        if force:
            return found, []
        todo, done = [], []
        for s in found:
            (done if is_graded(course, gb, assignment, s, notebooks) else todo).append(s)
    return todo, done


def read_config(course: Course) -> tuple[str, bool]:
    """(course id, whether autograde runs kernels in the sandbox), from the
    course's nbgrader configuration as nbgrader itself loads it."""
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.converters import Autograde
    from traitlets.utils.importstring import import_item
    app = NbGrader()
    app.initialize([], root=str(course.root))
    course_id = app.coursedir.course_id or "default_course"
    preprocessors = Autograde(coursedir=app.coursedir, parent=app).autograde_preprocessors
    app.clear_instance()
    sandboxed = False
    try:
        from coursekit.sandbox import SandboxExecute
        for pp in preprocessors:
            cls = import_item(pp) if isinstance(pp, str) else pp
            sandboxed |= isinstance(cls, type) and issubclass(cls, SandboxExecute)
    except ImportError:
        pass
    return course_id, sandboxed


def read_course_id(course: Course) -> str:
    return read_config(course)[0]


# ---------------------------------------------------------------- merging

def merge(gb, assignment: str, student: str, result: dict) -> None:
    """Write one submission's autograder-owned fields into the course gradebook.

    The student and submission rows first (nbgrader's API commits them), then all
    grades, comments and penalties in one transaction.  A failure here fails the
    submission, whose autograded copy is then removed, so the next run grades it again."""
    gb.update_or_create_student(student)
    kwargs = {"timestamp": result["timestamp"]} if result.get("timestamp") else {}
    gb.update_or_create_submission(assignment, student, **kwargs)
    try:
        for nb_name, nb in result["notebooks"].items():
            sub_nb = gb.find_submission_notebook(nb_name, assignment, student)
            sub_nb.late_submission_penalty = nb["late_submission_penalty"]
            sub_nb.flagged = nb["flagged"]
            for name, (auto_score, needs_manual) in nb["grades"].items():
                grade = gb.find_grade(name, nb_name, assignment, student)
                grade.auto_score = auto_score
                grade.needs_manual_grade = needs_manual
            for name, auto_comment in nb["comments"].items():
                gb.find_comment(name, nb_name, assignment, student).auto_comment = auto_comment
        gb.db.commit()
    except Exception:
        gb.db.rollback()
        raise


def extract(gb, assignment: str, student: str) -> dict:
    """The autograder-owned fields of one submission, as plain data (the inverse of merge)."""
    sub = gb.find_submission(assignment, student)
    out = {"timestamp": sub.timestamp.isoformat() if sub.timestamp else None, "notebooks": {}}
    for nb in sub.notebooks:
        out["notebooks"][nb.name] = {
            "late_submission_penalty": nb.late_submission_penalty,
            "flagged": nb.flagged,
            "grades": {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
            "comments": {c.name: c.auto_comment for c in nb.comments},
        }
    return out


# ---------------------------------------------------------------- worker process

class StopGrading(Exception):
    """Raised in a worker when the coordinator stops the submission it grades."""


def _worker_main(argv: list[str]) -> int:
    """A long-lived grading worker: reads student ids (JSON lines) on stdin, answers on fd ``--reply-fd``."""
    import logging
    import traceback

    opts = json.loads(argv[0])
    reply = os.fdopen(opts["reply_fd"], "w", buffering=1)
    root = Path(opts["root"])
    os.chdir(root)
    t0 = time.perf_counter()
    from nbgrader.api import Gradebook
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

    for line in sys.stdin:
        task = json.loads(line)
        student = task["student"]
        # the sandbox's kernel manager forks warm kernels from this server when set
        if task.get("warm"):
            os.environ[WARM_VARIABLE] = task["warm"]
        else:
            os.environ.pop(WARM_VARIABLE, None)
        start = time.perf_counter()
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
            with Gradebook(app.coursedir.db_url, course_id) as gb:
                result.update(extract(gb, assignment, student))
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
        reply.write(json.dumps(result, default=str) + "\n")
    return 0


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
                gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
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


# ---------------------------------------------------------------- coordinator

@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    reply_fd: int
    buffer: bytes = b""
    ready: bool = False
    student: str | None = None
    started: float = 0.0
    startup: float = 0.0
    terminating: float = 0.0           # when being stopped: the moment it gets killed
    abandoned: str | None = None       # the submission it was stopped on

    def send(self, student: str, warm_socket: str | None) -> None:
        self.student, self.started = student, time.monotonic()
        self.proc.stdin.write((json.dumps({"student": student, "warm": warm_socket}) + "\n").encode())
        self.proc.stdin.flush()

    def read_messages(self) -> list[dict]:
        try:
            chunk = os.read(self.reply_fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return [{"eof": True}]
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


@dataclass
class Summary:
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # student -> reason
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    worker_startup: list[float] = field(default_factory=list)
    warm_server_s: float | None = None   # start-up of the warm kernel server, when one ran


def become_subreaper() -> None:
    """Orphans of a killed worker (a kernel's sandbox launcher, in its own
    session) are re-parented to this process instead of init, so that
    ``sweep_orphans`` can find and stop them (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def sweep_orphans(keep: set[int]) -> None:
    """Kill every child of this process (and its descendants) that is not in ``keep``."""
    import psutil
    for child in psutil.Process().children():
        if child.pid not in keep:
            kill_tree(child.pid)


def kill_tree(pid: int) -> None:
    """Kill a worker and everything it started (kernels run in their own sessions)."""
    import psutil
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class Grader:
    """Coordinator: hands students to workers, enforces time limits, merges grades serially."""

    def __init__(self, course: Course, assignment: str, jobs: int, timeout: float,
                 memory_mb: int | None, course_id: str, progress: bool = True):
        self.course, self.assignment, self.jobs = course, assignment, max(1, jobs)
        self.timeout, self.memory_mb, self.course_id = timeout, memory_mb, course_id
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:12]
        self.state = state_dir(course, assignment)
        self.workers: list[Worker] = []
        self.selector = selectors.DefaultSelector()
        self.warm = WarmKernels(False)
        self.pending: list[str] = []
        self._foreign: set[int] = set()
        self._sweep_due = False

    # -- workers
    def _scratch(self, index: int) -> Path:
        return self.course.root / f".grading-w{index}.db"

    def _snapshot(self, index: int) -> None:
        dest = self._scratch(index)
        dest.unlink(missing_ok=True)
        src = sqlite3.connect(self.course.gradebook)
        dst = sqlite3.connect(dest)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()

    def _config_args(self) -> list[str]:
        """Traitlets config for the workers' nbgrader on top of the course's (the memory cap)."""
        args = []
        if self.memory_mb:
            args.append(f"--SandboxKernelManager.memory_mb={int(self.memory_mb)}")
        return args

    def _start_worker(self, index: int) -> Worker:
        self._snapshot(index)
        read_fd, write_fd = os.pipe()
        opts = {"root": str(self.course.root), "assignment": self.assignment, "reply_fd": write_fd,
                "scratch": str(self._scratch(index)), "log_dir": str(self.state),
                "config": self._config_args()}
        log = open(self.state / f"worker-{index}.log", "ab")
        env = dict(os.environ)
        proc = subprocess.Popen([sys.executable, "-m", "coursekit.grading", "--worker", json.dumps(opts)],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(write_fd,), cwd=self.course.root, env=env,
                                start_new_session=True)
        log.close()
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = Worker(index, proc, read_fd)
        self.selector.register(read_fd, selectors.EVENT_READ, worker)
        return worker

    def _sweep(self, exclude: Worker | None = None) -> None:
        """Stop what a killed worker left behind (see ``become_subreaper``)."""
        if self.warm.starting:  # its server process is a child too, not yet known: later
            self._sweep_due = True
            return
        self._sweep_due = False
        keep = self._foreign | {w.proc.pid for w in self.workers if w is not exclude}
        if self.warm.server is not None:
            keep.add(self.warm.server.proc.pid)
        sweep_orphans(keep)

    def _stop_worker(self, worker: Worker, kill: bool = False) -> None:
        try:
            self.selector.unregister(worker.reply_fd)
        except (KeyError, ValueError):
            pass
        if kill:
            kill_tree(worker.proc.pid)
        else:
            try:
                worker.proc.stdin.close()
                worker.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                kill_tree(worker.proc.pid)
        os.close(worker.reply_fd)
        self._scratch(worker.index).unlink(missing_ok=True)

    # -- bookkeeping of one submission
    def _inflight(self, student: str) -> Path:
        return self.state / f"{student}.inflight"

    def _cleanup_failed(self, student: str) -> None:
        # like nbgrader's own _handle_failure: no half-written autograded copy stays behind
        dest = self.course.autograded / student / self.assignment
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)

    def _fail(self, summary: Summary, student: str, kind: str, reason: str, cleanup: bool = True,
              **details) -> None:
        if cleanup:
            self._cleanup_failed(student)
            self._inflight(student).unlink(missing_ok=True)
        events.record(self.course.root, self.assignment, student, kind, stage="grading",
                      run=self.run_id, message=reason, **details)
        summary.failed[student] = f"{kind}: {reason}"

    def _finish(self, summary: Summary, gb, result: dict) -> None:
        student = result["student"]
        summary.seconds[student] = result.get("seconds", 0.0)
        if result["status"] == "graded":
            try:
                merge(gb, self.assignment, student, result)
            except Exception as exc:  # noqa: BLE001 - e.g. the gradebook locked for too long
                self._fail(summary, student, "grading_failed",
                           f"graded, but its grades could not be written to {self.course.gradebook}: "
                           f"{type(exc).__name__}: {exc}")
                return
            self._inflight(student).unlink(missing_ok=True)
            summary.graded.append(student)
            for cell in result.get("cell_timeouts", []):
                events.record(self.course.root, self.assignment, student, "timeout", stage="grading",
                              run=self.run_id, scope="cell", cell=cell,
                              message=f"nbgrader interrupted {cell} (Execute.timeout); graded as nbgrader does")
        elif result.get("parse_errors"):
            # the repair extension's exporter may already have recorded it, with a clearer message
            earlier = [e for e in self._events_this_run(student) if e.get("kind") == "parse_error"]
            if earlier:
                self._cleanup_failed(student)
                self._inflight(student).unlink(missing_ok=True)
                summary.failed[student] = "parse_error: " + " / ".join(e.get("message", "") for e in earlier)
            else:
                files = result["parse_errors"]
                self._fail(summary, student, "parse_error",
                           f"not a readable notebook: {'; '.join(files)}. Ask the student for the notebook "
                           "itself (Colab: File > Download > Download .ipynb) and grade again.", files=files)
        else:
            self._fail(summary, student, "grading_failed",
                       f"nbgrader could not grade it: {result.get('error', 'unknown error')} "
                       f"(log: {self.state / (student + '.log')})")

    def _events_this_run(self, student: str) -> list[dict]:
        log = events.read(self.course.root, self.assignment, student)
        starts = [i for i, e in enumerate(log) if e.get("kind") == "grading_started" and e.get("run") == self.run_id]
        return log[starts[-1] + 1:] if starts else []

    # -- the run
    def run(self, students: list[str], summary: Summary) -> Summary:
        from nbgrader.api import Gradebook
        from tqdm import tqdm

        import psutil
        self.state.mkdir(parents=True, exist_ok=True)
        self.pending = pending = list(students)
        become_subreaper()
        self._foreign = {p.pid for p in psutil.Process().children()}  # not ours to sweep
        t0 = time.monotonic()
        bar = tqdm(total=len(students), desc=f"grading {self.assignment}", unit="sub", file=sys.stderr,
                   disable=not self.progress or not students, dynamic_ncols=True, mininterval=0.5,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                              "[{elapsed}, ETA {remaining}, {rate_fmt}]{postfix}")
        try:
            with Gradebook(f"sqlite:///{self.course.gradebook}", self.course_id) as gb:
                if students:
                    self.workers = [self._start_worker(i) for i in range(min(self.jobs, len(students)))]
                while pending or any(w.student or w.terminating for w in self.workers):
                    for w in self.workers:
                        if w.ready and w.student is None and not w.terminating and pending:
                            student = pending.pop(0)
                            self._inflight(student).write_text(self.run_id)
                            events.record(self.course.root, self.assignment, student, "grading_started",
                                          stage="grading", run=self.run_id, worker=w.index)
                            try:
                                w.send(student, self.warm.socket)
                            except OSError:  # the worker just died: _poll replaces it
                                w.student = None
                                pending.insert(0, student)
                    self._poll(summary, gb, bar)
        finally:
            bar.close()
            for w in self.workers:
                for student in (w.student, w.abandoned):
                    if student:  # interrupted: forget the half-graded submission
                        self._cleanup_failed(student)
                        self._inflight(student).unlink(missing_ok=True)
                self._stop_worker(w, kill=bool(w.student or w.terminating))
            self.workers = []
            if self._sweep_due:
                self.warm.close()  # waits for a server still starting, so that it is not swept
                self._sweep()
        summary.wall = time.monotonic() - t0
        return summary

    def _poll(self, summary: Summary, gb, bar) -> None:
        if self._sweep_due:
            self._sweep()
        now = time.monotonic()
        deadlines = [w.started + self.timeout - now for w in self.workers if w.student]
        deadlines += [w.terminating - now for w in self.workers if w.terminating]
        wait = max(0.05, min(deadlines + [1.0]))
        for key, _ in self.selector.select(timeout=wait):
            worker: Worker = key.data
            if worker not in self.workers:
                continue
            for msg in worker.read_messages():
                if msg.get("eof") or worker.terminating:
                    # a stopped worker's last word (or its exit) is not a grade: replace it
                    self._worker_died(worker, summary, bar)
                    break
                if msg.get("ready"):
                    worker.ready, worker.startup = True, msg["startup"]
                    summary.worker_startup.append(msg["startup"])
                    continue
                worker.student = None
                self._finish(summary, gb, msg)
                bar.update(1)
                self._postfix(bar, summary, msg["student"])
        now = time.monotonic()
        for w in list(self.workers):
            if w.student and now - w.started > self.timeout:
                # Over time: SIGTERM lets nbclient shut the kernel (and its sandbox) down
                # cleanly; the worker is killed for good when it answers or after a grace period.
                student, w.student, w.abandoned = w.student, None, w.student
                w.terminating = now + TERMINATE_GRACE
                w.proc.send_signal(signal.SIGTERM)
                self._fail(summary, student, "timeout",
                           f"grading took more than {self.timeout:g} s (--timeout); its kernel was stopped",
                           cleanup=False, scope="notebook", limit_s=self.timeout)
                summary.seconds[student] = now - w.started
                bar.update(1)
                self._postfix(bar, summary, student)
            elif w.terminating and now > w.terminating:
                self._worker_died(w, summary, bar)
            elif w.proc.poll() is not None:
                self._worker_died(w, summary, bar)

    def _worker_died(self, worker: Worker, summary: Summary, bar) -> None:
        if worker not in self.workers:
            return
        if not worker.ready and not worker.terminating:
            log = (self.state / f"worker-{worker.index}.log").read_text(errors="replace")[-3000:]
            raise CourseError(f"a grading worker could not start nbgrader; its log "
                              f"({self.state / f'worker-{worker.index}.log'}) ends with:\n{log}")
        student = worker.student
        code = worker.proc.poll()
        self._replace(worker)
        if student:
            self._fail(summary, student, "crashed",
                       f"the grading process died (exit status {code}) while grading it")
            bar.update(1)
            self._postfix(bar, summary, student)

    def _replace(self, worker: Worker) -> None:
        """Kill a worker (and its kernel); start a fresh one only if work is left."""
        self._stop_worker(worker, kill=True)
        self._sweep(exclude=worker)
        if worker.abandoned:  # the submission it was stopped on: no half-written copy stays
            self._cleanup_failed(worker.abandoned)
            self._inflight(worker.abandoned).unlink(missing_ok=True)
        if self.pending:
            self.workers[self.workers.index(worker)] = self._start_worker(worker.index)
        else:
            self.workers.remove(worker)

    @staticmethod
    def _postfix(bar, summary: Summary, last: str) -> None:
        bar.set_postfix_str(f"ok {len(summary.graded)}, failed {len(summary.failed)}, last {last}")
        if last in summary.failed:
            bar.write(f"  {last}: {summary.failed[last]}")


class WarmKernels:
    """The sandbox's warm fork server for one run: kernels fork from an
    interpreter that already imported ipykernel and torch instead of paying
    that import per submission.

    Started once per run in a background thread, so that the workers start
    meanwhile; each task message carries the server's socket once it is ready
    (until then, and if it cannot start, kernels start cold in the same sandbox,
    with the same results)."""

    def __init__(self, enabled: bool):
        self.server = None
        self.error: str | None = None
        self.startup_s: float | None = None
        self._thread = None
        if enabled:
            self._thread = threading.Thread(target=self._start, name="warm-kernels", daemon=True)
            self._thread.start()

    def _start(self) -> None:
        t0 = time.monotonic()
        try:
            from coursekit.sandbox.forkserver import WarmServer
            self.server = WarmServer()
            self.startup_s = time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - cold kernels are the fallback
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def starting(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def socket(self) -> str | None:
        return self.server.socket if self.server is not None else None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.error:
            print(f"warning: warm kernels unavailable, kernels started cold: {self.error}", file=sys.stderr)
            self.error = None


def _sandboxed_off() -> bool:
    try:
        from coursekit.sandbox.manager import disabled
    except ImportError:
        return True
    return disabled()


def grade(course: Course, assignment: str, jobs: int | None = None, force: bool = False,
          timeout: float = DEFAULT_TIMEOUT, memory_mb: int | None = None,
          students: list[str] | None = None, progress: bool = True, warm: bool = True,
          threads: int | None = None) -> Summary:
    """Grade every (not yet graded) submission of ``assignment``; see the module docstring."""
    course.source_notebooks(assignment)  # clear error for an unknown assignment
    course_id, sandboxed = read_config(course)
    todo, done = plan(course, assignment, course_id, students, force)
    summary = Summary(skipped=done)
    jobs = max(1, jobs or len(os.sched_getaffinity(0)))
    grader = Grader(course, assignment, jobs, timeout, memory_mb, course_id, progress)
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if threads or not os.environ.get("OMP_NUM_THREADS"):
        # Several threads per kernel oversubscribe the cores as soon as anything else runs
        # (other kernels, other users): torch's small operations then get tens of times slower
        # (an MLP cell of assignment 1: 0.3 s on one thread, 10 s on two under load). One thread
        # per kernel, parallelism across submissions. Workers and the warm server inherit it; the
        # sandbox passes it to the kernels.
        os.environ.update({k: str(threads or 1) for k in THREAD_VARIABLES})
    # the warm server costs a few seconds of start-up: worth it once a worker grades twice
    grader.warm = WarmKernels(warm and sandboxed and len(todo) > jobs and not _sandboxed_off())
    try:
        return grader.run(todo, summary)
    finally:
        grader.warm.close()
        summary.warm_server_s = grader.warm.startup_s
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def print_summary(summary: Summary, assignment: str, course: Course) -> None:
    n = len(summary.graded)
    per = sum(summary.seconds[s] for s in summary.graded) / n if n else 0.0
    print(f"{assignment}: graded {n}, skipped {len(summary.skipped)} (already graded), "
          f"failed {len(summary.failed)} in {summary.wall:.1f} s"
          + (f" ({per:.1f} s per submission in a worker)" if n else "")
          + (f"; warm kernels (server start {summary.warm_server_s:.1f} s)" if summary.warm_server_s else ""))
    if summary.failed:
        print("not graded (recorded in .coursekit/events; fix and run again to retry):")
        for student, reason in sorted(summary.failed.items()):
            print(f"  {student}: {reason}")


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("--jobs", "-j", type=int, default=len(os.sched_getaffinity(0)),
                        help="submissions graded at the same time (default: the number of cores)")
    parser.add_argument("--force", action="store_true", help="grade again what is already graded")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds one submission may take in total before it is killed (default {DEFAULT_TIMEOUT}); "
                             "single cells are interrupted earlier by nbgrader's Execute.timeout")
    parser.add_argument("--memory", type=int, default=None, metavar="MB",
                        help="memory cap of each submission's kernel, in MB (default: the sandbox's)")
    parser.add_argument("--students", nargs="+", default=None, help="grade only these students")
    parser.add_argument("--threads", type=int, default=None,
                        help="math-library threads per kernel (default: $OMP_NUM_THREADS, else 1)")
    parser.add_argument("--cold", action="store_true",
                        help="no warm kernel server: every kernel imports torch itself (slower; for comparison)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any submission could not be graded")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="grade on the Dask cluster of this scheduler (tcp://host:8786; default: "
                             "c.DaskGrading.scheduler, else local workers; `local` forces local workers)")
    parser.add_argument("--shared-course", default=None, metavar="PATH",
                        help="with --scheduler: the course root as the Dask workers see it (shared file "
                             "system); default: the course's files travel with the tasks")


def run(args) -> int:
    try:
        return _run(args)
    except CourseError as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from coursekit.gradebook import ensure_assignment

    course = Course.at(args.course)
    course.source_notebooks(args.assignment)  # a clear error for an unknown assignment
    if not submitted_students(course, args.assignment):
        raise CourseError(f"nothing to grade: no {course.submitted}/<student>/{args.assignment}/ folder; "
                          f"collect first (coursekit collect {args.assignment} MOODLE.zip)")
    if ensure_assignment(course, args.assignment):  # a fresh clone: gradebook.db is not committed
        print(f"{args.assignment} added to {course.gradebook} (nbgrader generate_assignment; release/ untouched)")
    from coursekit import dask_grading
    cluster = dask_grading.scheduler_choice(args, course)
    if cluster:  # the same grading, on a Dask cluster (coursekit.dask_grading)
        summary = dask_grading.grade(course, args.assignment, force=args.force, timeout=args.timeout,
                                     memory_mb=args.memory, students=args.students, warm=not args.cold,
                                     threads=args.threads, **cluster)
    else:
        summary = grade(course, args.assignment, jobs=args.jobs, force=args.force, timeout=args.timeout,
                        memory_mb=args.memory, students=args.students, warm=not args.cold,
                        threads=args.threads)
    print_summary(summary, args.assignment, course)
    if summary.failed and not summary.graded and not summary.skipped:
        print(f"coursekit grade: no submission of {args.assignment} could be graded "
              f"({len(summary.failed)} failed, causes above)", file=sys.stderr)
        return 1
    return 1 if (args.strict and summary.failed) else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit("usage: coursekit grade ASSIGNMENT (python -m coursekit.grading --worker is internal)")
