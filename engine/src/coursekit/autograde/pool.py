"""The grading coordinator: N worker processes, one writer of the course gradebook.

Gradebook design (SQLite has one writer)
-----------------------------------------
nbgrader's autograde opens the gradebook many times per submission and mixes
reads and writes in one transaction; two processes doing that on one SQLite
file dead-lock ("database is locked").  So:

* when a worker starts, the coordinator snapshots the course gradebook
  (:func:`coursekit.gradebook.snapshot`) into the worker's scratch gradebook,
  placed in the course root (``.grading-w<N>.db``);
* the worker (:mod:`coursekit.autograde.worker`) runs nbgrader's ``Autograde``
  against *its* scratch gradebook, which holds exactly what the course
  gradebook held for that student (assignment, due date, extensions, earlier
  manual grades), so nbgrader computes the same scores, ``needs_manual_grade``
  flags, comments, timestamps and late penalties it would compute serially;
* the worker reads back the autograder-owned fields of that one submission and
  sends them here; the coordinator alone writes them into the course
  ``gradebook.db`` (:func:`coursekit.gradebook.merge`, nbgrader's
  ``Gradebook`` API), as each submission finishes (its grades in one
  transaction).  A submission reaches the course gradebook only once fully
  graded; manual scores there are never touched.

Failures
--------
A submission that nbgrader cannot grade (a file that is not a notebook, a
crashed worker, a submission that exceeds ``--timeout`` seconds in total) is
recorded in the event log (``parse_error``, ``grading_failed``, ``crashed``,
``timeout``; ``grading_started`` marks each attempt, ``graded`` each merge)
and listed at the end; the batch goes on and the submission gets no grade (as
under nbgrader), so the next run retries it.  ``--timeout`` bounds a whole
submission: past it the worker gets SIGTERM (nbclient shuts the kernel and its
sandbox down), then is killed and replaced.  Cells that nbgrader itself
interrupted (``Execute.timeout``) are graded by nbgrader as usual and also
recorded as ``timeout`` events (scope ``cell``).  Each submission's nbgrader
log is kept in ``.coursekit/grading/<assignment>/``.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coursekit import events, gradebook
from coursekit.autograde.plan import state_dir
from coursekit.autograde.warm import WarmKernels
from coursekit.nbrun import venv_env
from coursekit.paths import Course, CourseError

# Seconds a worker stopped for --timeout gets to shut its kernel down before it is killed.
TERMINATE_GRACE = 10


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
        gradebook.snapshot(self.course, self._scratch(index))

    def _config_args(self) -> list[str]:
        """Traitlets config for the workers' nbgrader on top of the course's (the memory cap).

        A worker never starts a warm kernel server of its own (which plain ``nbgrader autograde``
        does at its first kernel): the run decides, its one server (``self.warm``) or cold kernels
        (``--cold``, or a server that could not start), so torch is imported once per run, not
        once more per worker, and ``--cold`` stays cold."""
        args = ["--SandboxKernelManager.start_warm_server=False"]
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
        # a process per worker: nbgrader's apps are per-process singletons, and a worker that a
        # submission's kernel wedges or that --timeout stops must be killable on its own
        proc = subprocess.Popen([sys.executable, "-m", "coursekit.autograde.worker", json.dumps(opts)],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(write_fd,), cwd=self.course.root, env=venv_env(),
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

    def _stop_workers(self, workers: list[Worker]) -> None:
        """Stop every worker at the end of a run: the idle ones all told at once (their
        stdin closed, so each exits while the others do), then waited for; busy or
        stopping ones killed."""
        idle = [w for w in workers if not (w.student or w.terminating)]
        for w in idle:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
        for w in workers:
            self._stop_worker(w, kill=w not in idle)

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
                gradebook.merge(gb, self.assignment, student, result)
            except Exception as exc:  # noqa: BLE001 - e.g. the gradebook locked for too long
                self._fail(summary, student, events.GRADING_FAILED,
                           f"graded, but its grades could not be written to {self.course.gradebook}: "
                           f"{type(exc).__name__}: {exc}")
                return
            self._inflight(student).unlink(missing_ok=True)
            summary.graded.append(student)
            events.record(self.course.root, self.assignment, student, events.GRADED, stage="grading",
                          run=self.run_id, seconds=result.get("seconds"), started=result.get("started"),
                          ended=result.get("ended"))
            for cell in result.get("cell_timeouts", []):
                events.record(self.course.root, self.assignment, student, events.TIMEOUT, stage="grading",
                              run=self.run_id, scope="cell", cell=cell,
                              message=f"nbgrader interrupted {cell} (Execute.timeout); graded as nbgrader does")
        elif result.get("parse_errors"):
            # the repair extension's exporter may already have recorded it, with a clearer message
            earlier = [e for e in self._events_this_run(student) if e.get("kind") == events.PARSE_ERROR]
            if earlier:
                self._cleanup_failed(student)
                self._inflight(student).unlink(missing_ok=True)
                summary.failed[student] = f"{events.PARSE_ERROR}: " + " / ".join(e.get("message", "") for e in earlier)
            else:
                files = result["parse_errors"]
                self._fail(summary, student, events.PARSE_ERROR,
                           f"not a readable notebook: {'; '.join(files)}. Ask the student for the notebook "
                           "itself (Colab: File > Download > Download .ipynb) and grade again.", files=files)
        else:
            self._fail(summary, student, events.GRADING_FAILED,
                       f"nbgrader could not grade it: {result.get('error', 'unknown error')} "
                       f"(log: {self.state / (student + '.log')})")

    def _events_this_run(self, student: str) -> list[dict]:
        return events.since_last_start(events.read(self.course.root, self.assignment, student), self.run_id)

    # -- the run
    def run(self, students: list[str], summary: Summary) -> Summary:
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
            with gradebook.open_gradebook(self.course, self.course_id) as gb:
                if students:
                    self.workers = [self._start_worker(i) for i in range(min(self.jobs, len(students)))]
                while pending or any(w.student or w.terminating for w in self.workers):
                    # while the run's warm server starts, workers that are ready wait for it (see WarmKernels)
                    warm_starting = self.warm.starting
                    for w in self.workers:
                        if w.ready and w.student is None and not w.terminating and pending and not warm_starting:
                            student = pending.pop(0)
                            self._inflight(student).write_text(self.run_id)
                            events.record(self.course.root, self.assignment, student, events.GRADING_STARTED,
                                          stage="grading", run=self.run_id, worker=w.index)
                            try:
                                w.send(student, self.warm.socket)
                            except OSError:  # the worker just died: _poll replaces it
                                w.student = None
                                pending.insert(0, student)
                    self._poll(summary, gb, bar, max_wait=0.1 if warm_starting else 1.0)
        finally:
            bar.close()
            for w in self.workers:
                for student in (w.student, w.abandoned):
                    if student:  # interrupted: forget the half-graded submission
                        self._cleanup_failed(student)
                        self._inflight(student).unlink(missing_ok=True)
            self._stop_workers(self.workers)
            self.workers = []
            if self._sweep_due:
                self.warm.close()  # waits for a server still starting, so that it is not swept
                self._sweep()
        summary.wall = time.monotonic() - t0
        return summary

    def _poll(self, summary: Summary, gb, bar, max_wait: float = 1.0) -> None:
        if self._sweep_due:
            self._sweep()
        now = time.monotonic()
        deadlines = [w.started + self.timeout - now for w in self.workers if w.student]
        deadlines += [w.terminating - now for w in self.workers if w.terminating]
        wait = max(0.05, min(deadlines + [max_wait]))
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
                self._fail(summary, student, events.TIMEOUT,
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
            self._fail(summary, student, events.CRASHED,
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
