"""``coursekit grade ASSIGNMENT --scheduler ADDRESS``: the same grading on a Dask cluster.

What it owns: sending each submission to a Dask ``distributed`` cluster as one
task, grading it there exactly as a local worker does, and bringing the result
back to the coordinator, which alone writes ``gradebook.db``, ``autograded/``,
the event log and the per-submission logs (as with local workers).

The coordinator (``DaskGrader``, a ``grading.Grader``) keeps the local path's
planning, resume rule, in-flight markers, progress bar, failure reporting and
gradebook merge unchanged; only *where* a submission is graded changes.

What travels
------------
Nothing assumes a shared file system.  Once per run the coordinator builds a
*course bundle* (``nbgrader_config.py``, ``notebooks/`` and the assignment's
``source/`` and ``release/`` folders, as a tar archive in memory) and a
snapshot of ``gradebook.db`` (SQLite backup API), and scatters both to the
cluster; each task carries one student's submitted folder.  When the
instructor names a shared path instead (``--shared-course PATH``, or
``c.DaskGrading.shared_course``: the course root as the workers see it), the
workers copy the same files from there and only the gradebook snapshot
travels.

On a worker
-----------
Each Dask worker thread keeps a *station* for the run: a private copy of the
course (from the bundle) in the worker's local directory, with the snapshot as
its scratch gradebook, and one long-lived grading process started with
``grading``'s own worker entry point (``python -m coursekit.grading --worker``:
nbgrader's ``Autograde`` with the course's configuration, the memory cap as
``--SandboxKernelManager.memory_mb``).  A worker process shares one warm
kernel server (``grading.WarmKernels``) among its threads.  Per task the
station writes the submission into its copy, grades it, enforces the
``--timeout`` (SIGTERM, then kill, as locally) and returns the result, the
autograded files, the submission's log and the events the extensions recorded.

Sandbox: a course whose configuration runs kernels in the sandbox is only
graded on workers that can start it: each worker process proves it once (a
real sandboxed ``/bin/true`` through ``coursekit.sandbox.wrap_command``) and
refuses every task otherwise (``SandboxRefused``; also when the worker has
``COURSEKIT_SANDBOX=off``); the coordinator then sends the task to the other
workers, and reports it ungraded when none can.  Nothing is ever graded
unsandboxed because a worker lacks bubblewrap.

Failures: a worker process that dies in the middle of a task (killed, out of
memory, node lost) is Dask's business: the scheduler gives the task to another
worker, so it costs a retry, not a grade; past
``distributed.scheduler.allowed-failures`` the submission is reported
``crashed``.  A grading process that dies inside a live worker is ``crashed``,
a submission over ``--timeout`` is ``timeout``, as locally.
"""
from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

from traitlets import Float, Unicode
from traitlets.config import Configurable

from coursekit import events, grading
from coursekit.grading import Summary
from coursekit.paths import MODE_VARIABLE, Course, CourseError

# Seconds the coordinator waits for the scheduler, and for a first worker.
CONNECT_TIMEOUT = 30
# Seconds a station waits for its grading process to load nbgrader.
STARTUP_TIMEOUT = 300
# Environment every worker's grading process and kernels get from the coordinator.
CARRIED_ENV = (MODE_VARIABLE,) + grading.THREAD_VARIABLES
# What a worker needs of the course to grade an assignment (besides the gradebook snapshot).
COURSE_FILES = ("nbgrader_config.py", "notebooks")
PLUGIN_NAME = "coursekit-grading"


class SandboxRefused(RuntimeError):
    """Raised by a worker that cannot start the kernel sandbox: it never grades unsandboxed."""

    def __init__(self, worker: str, reason: str):
        super().__init__(worker, reason)
        self.worker, self.reason = worker, reason

    def __str__(self) -> str:
        return f"worker {self.worker} cannot start the kernel sandbox: {self.reason}"


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


# ---------------------------------------------------------------- what travels

def course_members(course: Course, assignment: str) -> list[Path]:
    """The course files a worker needs, relative to the course root."""
    names = [Path(n) for n in COURSE_FILES] + [Path("source") / assignment, Path("release") / assignment]
    return [n for n in names if (course.root / n).exists()]


def _tar(root: Path, members: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for m in members:
            tar.add(root / m, arcname=str(m),
                    filter=lambda info: None if "__pycache__" in info.name else info)
    return buf.getvalue()


def _untar(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, `..`, links out of dest


def course_bundle(course: Course, assignment: str) -> bytes:
    return _tar(course.root, course_members(course, assignment))


def gradebook_snapshot(course: Course) -> bytes:
    """A consistent copy of gradebook.db (SQLite backup API), as bytes."""
    with tempfile.TemporaryDirectory(prefix="ck-gb-") as tmp:
        dest = Path(tmp) / "gradebook.db"
        src, dst = sqlite3.connect(course.gradebook), sqlite3.connect(dest)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        return dest.read_bytes()


def submission_files(course: Course, assignment: str, student: str) -> bytes:
    return _tar(course.submitted / student, [Path(assignment)])


def _safe_join(base: Path, rel: str) -> Path:
    path = (base / rel).resolve()
    if path != base.resolve() and base.resolve() not in path.parents:
        raise ValueError(f"refusing a path outside {base}: {rel!r}")
    return path


# ---------------------------------------------------------------- on a worker

_lock = threading.Lock()
_stations: dict[int, "Station"] = {}      # worker thread -> its station
_warm: dict[str, grading.WarmKernels] = {}  # thread settings -> the worker process's warm server
_sandbox_verdict: dict[str, str | None] = {}  # "" -> None when the sandbox works here, else why not
_foreign: set[int] = set()                # child processes of the worker that are not ours


def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def sandbox_problem() -> str | None:
    """Why the kernel sandbox cannot start in this process, or None when it can (checked once)."""
    with _lock:
        if "" in _sandbox_verdict:
            return _sandbox_verdict[""]
        from coursekit.sandbox import DISABLE_VARIABLE
        from coursekit.sandbox.manager import disabled, wrap_command
        reason = None
        if disabled():
            reason = f"{DISABLE_VARIABLE}=off on this worker"
        else:
            try:
                argv, env = wrap_command(["/bin/true"])
                proc = subprocess.run(argv, env=env, capture_output=True, timeout=60)
                if proc.returncode != 0:
                    reason = (proc.stderr.decode(errors="replace").strip().splitlines() or
                              [f"exit status {proc.returncode}"])[-1][:500]
            except Exception as exc:  # noqa: BLE001 - any reason means: no sandbox here
                reason = f"{type(exc).__name__}: {exc}"
        _sandbox_verdict[""] = reason
        return reason


def _warm_server(spec: dict) -> grading.WarmKernels | None:
    """The worker process's warm kernel server for these thread settings (started once, in the background)."""
    if not spec.get("warm"):
        return None
    key = json.dumps({k: spec["env"].get(k) for k in grading.THREAD_VARIABLES})
    with _lock:
        if key not in _warm:
            os.environ.update({k: v for k, v in spec["env"].items() if v is not None})
            _warm[key] = grading.WarmKernels(True)
        return _warm[key]


class Station:
    """One worker thread's private copy of the course and its long-lived grading process."""

    def __init__(self, spec: dict, bundle: bytes | None, snapshot: bytes, base: Path):
        self.run_id, self.assignment = spec["run_id"], spec["assignment"]
        self.shared = spec.get("shared_course") or None
        self.root = Path(tempfile.mkdtemp(prefix=f"ck-dask-{self.run_id}-", dir=base)).resolve()
        if self.shared:
            src = Path(self.shared)
            for rel in spec["members"]:
                if (src / rel).is_dir():
                    shutil.copytree(src / rel, self.root / rel, ignore=shutil.ignore_patterns("__pycache__"))
                elif (src / rel).is_file():
                    (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src / rel, self.root / rel)
            if not (self.root / "nbgrader_config.py").is_file():
                raise FileNotFoundError(f"{src / 'nbgrader_config.py'} not found on worker {_worker_address()}: "
                                        "is --shared-course the course root as the workers see it?")
        else:
            _untar(bundle, self.root)
        self.scratch = self.root / ".grading-w0.db"
        self.scratch.write_bytes(snapshot)
        self.log_dir = self.root / ".coursekit" / "grading" / self.assignment
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config = list(spec.get("config", []))
        self.env = {k: v for k, v in spec["env"].items() if v is not None}
        self.proc: subprocess.Popen | None = None
        self.reply_fd = -1
        self.buffer = b""

    # -- the grading process (grading's own worker entry point)
    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        opts = {"root": str(self.root), "assignment": self.assignment, "reply_fd": write_fd,
                "scratch": str(self.scratch), "log_dir": str(self.log_dir), "config": self.config}
        env = dict(os.environ, **self.env)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        with open(self.log_dir / "worker-0.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "coursekit.grading", "--worker", json.dumps(opts)],
                                         stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         pass_fds=(write_fd,), cwd=self.root, env=env, start_new_session=True)
        os.close(write_fd)
        self.reply_fd, self.buffer = read_fd, b""
        ready = self._read(time.monotonic() + STARTUP_TIMEOUT)
        if not ready or not ready.get("ready"):
            tail = (self.log_dir / "worker-0.log").read_text(errors="replace")[-2000:]
            self.stop(kill=True)
            raise RuntimeError(f"the grading process could not start nbgrader on {_worker_address()}:\n{tail}")

    def _read(self, deadline: float) -> dict | None:
        """The next message of the grading process; {"eof": True} when it died; None past the deadline."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reply_fd], [], [], left)[0]:
                return None
            chunk = os.read(self.reply_fd, 1 << 16)
            if not chunk:
                return {"eof": True}
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line) if line.strip() else self._read(deadline)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            grading.kill_tree(self.proc.pid)
        else:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                grading.kill_tree(self.proc.pid)
        os.close(self.reply_fd)
        self.proc, self.reply_fd = None, -1
        if kill:
            _sweep()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- one submission
    def grade(self, spec: dict, warm: grading.WarmKernels | None) -> dict:
        student, assignment = spec["student"], self.assignment
        sub = self.root / "submitted" / student
        shutil.rmtree(sub, ignore_errors=True)
        sub.mkdir(parents=True)
        if self.shared:
            shutil.copytree(Path(self.shared) / "submitted" / student / assignment, sub / assignment)
        else:
            _untar(spec["submission"], sub)
        shutil.rmtree(self.root / "autograded" / student, ignore_errors=True)
        events.clear(self.root, assignment, student)
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.stop(kill=True)
            self._start()
        started = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps({"student": student, "warm": warm.socket if warm else None})
                                   + "\n").encode())
            self.proc.stdin.flush()
            msg = self._read(started + spec["timeout"])
        except OSError:
            msg = {"eof": True}
        if msg is None:
            # Over time: SIGTERM lets nbclient shut the kernel (and its sandbox) down, then it is killed.
            self.proc.send_signal(signal.SIGTERM)
            self._read(time.monotonic() + grading.TERMINATE_GRACE)
            self.stop(kill=True)
            result = {"student": student, "status": "timeout"}
        elif msg.get("eof"):
            code = self.proc.poll()
            self.stop(kill=True)
            result = {"student": student, "status": "crashed", "exit": code}
        else:
            result = msg
        result["seconds"] = result.get("seconds", time.monotonic() - started)
        out = {"result": result, "worker": _worker_address(), "pid": os.getpid(), "files": None,
               "root": str(self.root)}
        graded = self.root / "autograded" / student / assignment
        if result["status"] == "graded" and graded.is_dir():
            out["files"] = _tar(graded.parent, [Path(assignment)])
        log = self.log_dir / f"{student}.log"
        out["log"] = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        out["events"] = [e for e in events.read(self.root, assignment, student)]
        shutil.rmtree(sub, ignore_errors=True)
        shutil.rmtree(self.root / "autograded" / student, ignore_errors=True)
        return out


def _sweep() -> None:
    """Kill what a killed grading process left behind in this worker (see ``grading.become_subreaper``)."""
    keep = set(_foreign)
    keep |= {s.proc.pid for s in _stations.values() if s.proc is not None}
    for w in _warm.values():
        if w.starting:
            return  # its server is a child too, not yet known
        if w.server is not None:
            keep.add(w.server.proc.pid)
    grading.sweep_orphans(keep)


def _base_dir() -> Path:
    try:
        from distributed import get_worker
        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir())


def grade_task(spec: dict, bundle: bytes | None, snapshot: bytes) -> dict:
    """The Dask task: grade one submission on this worker (see the module docstring)."""
    if spec.get("sandboxed"):
        reason = sandbox_problem()
        if reason:
            raise SandboxRefused(_worker_address(), reason)
    me = threading.get_ident()
    with _lock:
        if not _foreign and not _stations:
            import psutil
            grading.become_subreaper()
            _foreign.update(p.pid for p in psutil.Process().children())
            _foreign.add(-1)  # taken
        station = _stations.get(me)
        if station is not None and station.run_id != spec["run_id"]:
            station.close()  # a station of an earlier run
            station = None
    if station is None:
        station = Station(spec, bundle, snapshot, _base_dir())
        with _lock:
            _stations[me] = station
    return station.grade(spec, _warm_server(spec))


def close_worker() -> None:
    """Stop every station and warm server of this worker process."""
    with _lock:
        stations, servers = list(_stations.values()), list(_warm.values())
        _stations.clear()
        _warm.clear()
    for s in stations:
        s.close()
    for w in servers:
        w.close()


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the coordinator says so when --scheduler is used
    WorkerPlugin = object


class GradingPlugin(WorkerPlugin):
    """Closes the worker's stations and warm server when the worker shuts down."""
    name = PLUGIN_NAME

    def teardown(self, worker) -> None:
        close_worker()


def _close_run(run_id: str) -> int:
    """Remove this worker's stations of one run (their course copies); the warm server stays."""
    with _lock:
        done = [k for k, s in _stations.items() if s.run_id == run_id]
        stations = [_stations.pop(k) for k in done]
    for s in stations:
        s.close()
    return len(stations)


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
            slots = sum(self.client.nthreads().values())
            # the warm server costs a few seconds per worker: worth it once a worker grades twice
            warm = self.use_warm and self.sandboxed and len(students) > slots and not grading._sandboxed_off()
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
