"""The coordinator side of Dask grading: what runs in `coursekit grade --scheduler`.

``DaskGrader`` is a ``grading.Grader`` (same planning, resume rule, in-flight
markers, progress bar, failure reporting and gradebook merge as local grading)
whose submissions are Dask tasks; it alone writes ``gradebook.db``,
``autograded/``, the event log and the per-submission logs, from what the
workers send back.  Also here: the configuration (``c.DaskGrading``), the
connection to the scheduler, ``grade`` and ``scheduler_choice`` (local or Dask).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from traitlets import Float, Unicode
from traitlets.config import Configurable

from coursekit import events, grading
from coursekit.grading import Summary
from coursekit.paths import MODE_VARIABLE, Course, CourseError

from .transfer import _untar, course_bundle, course_members, gradebook_snapshot, submission_files
from .worker import PLUGIN_NAME, GradingPlugin, SandboxRefused, _close_run, grade_task

# Seconds the coordinator waits for the scheduler, and for a first worker.
CONNECT_TIMEOUT = 30
# Environment every worker's grading process and kernels get from the coordinator.
CARRIED_ENV = (MODE_VARIABLE,) + grading.THREAD_VARIABLES


# ---------------------------------------------------------------- configuration

class DaskGrading(Configurable):
    """Where `coursekit grade` grades: ``c.DaskGrading.scheduler`` in nbgrader_config.py."""

    scheduler = Unicode("", config=True,
                        help="address of a Dask scheduler: `coursekit grade` grades there (like --scheduler)")
    shared_course = Unicode("", config=True,
                            help="the course root as the Dask workers see it (a shared file system); "
                                 "empty: the course's files travel with the tasks")
    connect_timeout = Float(CONNECT_TIMEOUT, config=True,
                            help="seconds to wait for the scheduler and for a first worker")


def settings(course: Course) -> dict:
    """``c.DaskGrading.*`` from the course's nbgrader configuration, as nbgrader loads it."""
    from nbgrader.apps.baseapp import NbGrader

    app = NbGrader()
    app.initialize([], root=str(course.root))
    conf = DaskGrading(config=app.config)
    app.clear_instance()
    return {"scheduler": conf.scheduler, "shared_course": conf.shared_course,
            "connect_timeout": conf.connect_timeout}


# ---------------------------------------------------------------- coordinator

def connect(address: str, timeout: float):
    try:
        from distributed import Client
    except ImportError:
        raise CourseError("--scheduler needs Dask's `distributed` package: pip install distributed "
                          "(see requirements.txt)") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise CourseError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise CourseError(f"the Dask scheduler at {address} has no worker (waited {timeout:g} s): "
                          "start some (`dask worker {address}`)") from None
    return client


class DaskGrader(grading.Grader):
    """``grading.Grader`` whose workers are a Dask cluster's."""

    def __init__(self, *args, client, shared_course: str | None = None, warm: bool = True,
                 sandboxed: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.client, self.shared_course = client, shared_course
        self.use_warm, self.sandboxed = warm, sandboxed
        self.where: dict[str, str] = {}  # student -> "worker address (pid)" that graded it

    def _spec(self, student: str, warm: bool, members: list[str]) -> dict:
        spec = {"run_id": self.run_id, "assignment": self.assignment, "student": student,
                "timeout": self.timeout, "config": self._config_args(), "sandboxed": self.sandboxed,
                "warm": warm, "env": {k: os.environ.get(k) for k in CARRIED_ENV},
                "shared_course": self.shared_course, "members": members}
        if not self.shared_course:
            spec["submission"] = submission_files(self.course, self.assignment, student)
        return spec

    def _submit(self, spec: dict, bundle, snapshot, workers: list[str] | None = None):
        return self.client.submit(grade_task, spec, bundle, snapshot, pure=False,
                                  key=f"grade-{self.assignment}-{spec['student']}-{uuid.uuid4().hex[:8]}",
                                  workers=workers, allow_other_workers=False)

    def run(self, students: list[str], summary: Summary) -> Summary:
        from distributed import as_completed
        from nbgrader.api import Gradebook
        from tqdm import tqdm

        self.state.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        bar = tqdm(total=len(students), desc=f"grading {self.assignment}", unit="sub", file=sys.stderr,
                   disable=not self.progress or not students, dynamic_ncols=True, mininterval=0.5,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                              "[{elapsed}, ETA {remaining}, {rate_fmt}]{postfix}")
        futures: dict = {}   # future -> spec
        refused: dict[str, str] = {}  # worker address -> why it cannot start the sandbox
        try:
            if not students:
                return summary
            self.client.register_plugin(GradingPlugin(), name=PLUGIN_NAME)
            members = [str(m) for m in course_members(self.course, self.assignment)]
            bundle = None if self.shared_course else self.client.scatter(
                course_bundle(self.course, self.assignment), broadcast=True, hash=False)
            snapshot = self.client.scatter(gradebook_snapshot(self.course), broadcast=True, hash=False)
            # a warm server per worker process: each submission starts two kernels (its notebook's and
            # its trusted re-check's child), so it pays from a worker's first submission
            warm = self.use_warm and self.sandboxed and not grading._sandboxed_off()
            for student in students:
                self._inflight(student).write_text(self.run_id)
                events.record(self.course.root, self.assignment, student, "grading_started",
                              stage="grading", run=self.run_id, worker="dask")
                futures[self._submit(self._spec(student, warm, members), bundle, snapshot)] = student
            done = as_completed(list(futures), loop=self.client.loop)
            with Gradebook(f"sqlite:///{self.course.gradebook}", self.course_id) as gb:
                for future in done:
                    student = futures.pop(future)
                    spec_student = student
                    if future.status == "finished":
                        self._receive(summary, gb, future.result())
                    else:
                        exc = future.exception() if future.status == "error" else None
                        if isinstance(exc, SandboxRefused):
                            refused[exc.worker] = exc.reason
                            allowed = [w for w in self.client.nthreads() if w not in refused]
                            if allowed:
                                retry = self._submit(self._spec(spec_student, warm, members), bundle, snapshot,
                                                     workers=allowed)
                                futures[retry] = student
                                done.add(retry)
                                continue
                            self._fail(summary, student, "grading_failed",
                                       "no worker of the Dask cluster can start the kernel sandbox "
                                       f"(never graded unsandboxed): {exc}")
                        else:
                            self._fail(summary, student, "crashed", _describe(exc, future.status))
                    future.release()
                    bar.update(1)
                    self._postfix(bar, summary, student)
        finally:
            bar.close()
            if futures:  # interrupted: forget what was not graded
                self.client.cancel(list(futures))
                for student in futures.values():
                    self._cleanup_failed(student)
                    self._inflight(student).unlink(missing_ok=True)
            if students:
                try:
                    self.client.run(_close_run, self.run_id)
                except Exception:  # noqa: BLE001 - a worker gone meanwhile keeps nothing of ours
                    pass
        for address, reason in refused.items():
            print(f"warning: Dask worker {address} refused to grade: it cannot start the kernel sandbox "
                  f"({reason})", file=sys.stderr)
        summary.wall = time.monotonic() - t0
        return summary

    def _receive(self, summary: Summary, gb, out: dict) -> None:
        """Write what a worker sent back (files, log, events), then account for it as the local path does."""
        out = _rebase(out, out.get("root"), str(self.course.root))
        result = out["result"]
        student = result["student"]
        self.where[student] = f"{out['worker']} (pid {out['pid']})"
        (self.state / f"{student}.log").write_text(
            f"graded on Dask worker {self.where[student]}\n{out.get('log', '')}", encoding="utf-8")
        _append_events(self.course.root, self.assignment, student, out.get("events", []))
        if result["status"] == "timeout":
            self._fail(summary, student, "timeout",
                       f"grading took more than {self.timeout:g} s (--timeout); its kernel was stopped",
                       scope="notebook", limit_s=self.timeout)
            summary.seconds[student] = result["seconds"]
            return
        if result["status"] == "crashed":
            self._fail(summary, student, "crashed",
                       f"the grading process died (exit status {result.get('exit')}) while grading it "
                       f"on Dask worker {out['worker']}")
            summary.seconds[student] = result["seconds"]
            return
        if result["status"] == "graded":
            dest = self.course.autograded / student
            shutil.rmtree(dest / self.assignment, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)
            if out.get("files"):
                _untar(out["files"], dest)
        self._finish(summary, gb, result)


def _rebase(out: dict, worker_root: str | None, root: str) -> dict:
    """Messages, events and logs name the worker's copy of the course: make them name the course."""
    if not worker_root:
        return out
    files = out.get("files")
    text = json.dumps({k: v for k, v in out.items() if k != "files"}, default=str)
    rebased = json.loads(text.replace(json.dumps(worker_root)[1:-1], json.dumps(root)[1:-1]))
    rebased["files"] = files
    return rebased


def _append_events(root: Path, assignment: str, student: str, recorded: list[dict]) -> None:
    """Add the events the extensions recorded on the worker to the course's log, as they were written."""
    if not recorded:
        return
    path = events.log_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in recorded)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _describe(exc, status: str) -> str:
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        KilledWorker = ()
    if isinstance(exc, KilledWorker):
        return ("the Dask workers grading it died again and again "
                "(distributed.scheduler.allowed-failures); see the workers' logs")
    if exc is None:
        return f"the Dask task ended as {status!r} (scheduler or worker lost)"
    return f"the Dask task failed: {type(exc).__name__}: {exc}"


def grade(course: Course, assignment: str, scheduler: str, force: bool = False,
          timeout: float = grading.DEFAULT_TIMEOUT, memory_mb: int | None = None,
          students: list[str] | None = None, progress: bool = True, warm: bool = True,
          threads: int | None = None, shared_course: str | None = None,
          connect_timeout: float = CONNECT_TIMEOUT) -> Summary:
    """``grading.grade`` on the Dask cluster whose scheduler is at ``scheduler``."""
    course.source_notebooks(assignment)  # clear error for an unknown assignment
    course_id, sandboxed = grading.read_config(course)
    todo, done = grading.plan(course, assignment, course_id, students, force)
    summary = Summary(skipped=done)
    client = connect(scheduler, connect_timeout) if todo else None
    saved = {k: os.environ.get(k) for k in grading.THREAD_VARIABLES}
    if threads or not os.environ.get("OMP_NUM_THREADS"):
        # one math thread per kernel, as locally (see grading.grade); carried to the workers
        os.environ.update({k: str(threads or 1) for k in grading.THREAD_VARIABLES})
    try:
        if client is None:
            return summary
        grader = DaskGrader(course, assignment, 1, timeout, memory_mb, course_id, progress,
                            client=client, shared_course=shared_course, warm=warm, sandboxed=sandboxed)
        return grader.run(todo, summary)
    finally:
        if client is not None:
            client.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def scheduler_choice(args, course: Course) -> dict | None:
    """The Dask settings of this `coursekit grade` run, or None to grade with local workers."""
    conf = settings(course)
    scheduler = getattr(args, "scheduler", None) or conf["scheduler"]
    if not scheduler or getattr(args, "scheduler", None) == "local":
        return None
    return {"scheduler": scheduler, "shared_course": getattr(args, "shared_course", None) or conf["shared_course"]
            or None, "connect_timeout": conf["connect_timeout"]}
