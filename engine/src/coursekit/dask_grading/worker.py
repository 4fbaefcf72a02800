"""The worker side of Dask grading: what runs inside a Dask worker process.

Each worker thread keeps a ``Station`` per run (a private copy of the course and
one long-lived grading process, ``python -m coursekit.grading --worker``); a
worker process shares one warm kernel server among its threads, proves once
that it can start the kernel sandbox (``sandbox_problem``; else every task is
refused with ``SandboxRefused``), and kills what a killed grading process left
behind.  ``grade_task`` is the Dask task, ``GradingPlugin`` closes everything
when the worker shuts down, ``_close_run`` removes one run's stations.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from coursekit import events, grading

from .transfer import _tar, _untar

# Seconds a station waits for its grading process to load nbgrader.
STARTUP_TIMEOUT = 300
PLUGIN_NAME = "coursekit-grading"


class SandboxRefused(RuntimeError):
    """Raised by a worker that cannot start the kernel sandbox: it never grades unsandboxed."""

    def __init__(self, worker: str, reason: str):
        super().__init__(worker, reason)
        self.worker, self.reason = worker, reason

    def __str__(self) -> str:
        return f"worker {self.worker} cannot start the kernel sandbox: {self.reason}"


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
            # the worker process's warm server, once it is up (its first tasks wait for it: a kernel
            # started cold meanwhile, and its trusted re-check's child, would import torch themselves)
            socket = warm.wait() if warm else None
            self.proc.stdin.write((json.dumps({"student": student, "warm": socket}) + "\n").encode())
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
