"""Starting a sandboxed kernel and cleaning up after it: the jupyter_client provisioner.

``SandboxProvisioner`` launches the kernel inside the sandbox either cold
(``python -I -S _enter.py SPEC STATUS_FD -- <kernel argv>``, ``_cold_start``:
the launcher stays as the kernel's supervisor) or warm (``WarmProcess``: a
Popen-like handle on a kernel the fork server of ``forkserver`` started), reads
the launcher's status lines, and after the kernel (``_teardown``) makes sure
nothing of the sandbox still runs, gives the working copy back to the grader and
removes what the kernel made there (recording the removals as events).
"""
from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import sys
import time

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from . import _enter
from ._enter import SandboxError
from .spec import _ENTER_SCRIPT, check_workdir, submission_of

_swept = False
_budget_checked = False


def _check_process_budget(log) -> None:
    """Say once, loudly, when concurrent sandboxes share one process budget here."""
    global _budget_checked
    if _budget_checked:
        return
    _budget_checked = True
    per_sandbox, how = _enter.process_budget()
    if not per_sandbox:
        log.warning("sandbox: process budget %s", how)


def _sweep_rundirs() -> None:
    """Remove socket folders left by grader processes that died without
    cleaning up (killed workers): ``/tmp/ck-<pid>-*`` whose pid is gone."""
    global _swept
    if _swept:
        return
    _swept = True
    for name in os.listdir("/tmp"):
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "ck" and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)


class SandboxProvisioner(LocalProvisioner):
    """Launches the kernel inside the sandbox (cold or warm) and cleans up."""

    sandbox = None  # per-launch state: spec, ownership, pids
    last_sandbox: dict = {}  # mode and start-up time of the previous kernel

    async def launch_kernel(self, cmd: list[str], **kwargs):
        km = self.parent
        if not sys.platform.startswith("linux"):
            raise SandboxError(f"the kernel sandbox needs Linux (bubblewrap, Linux namespaces), not {sys.platform}: "
                               "grade on a Linux machine (README \"Sandbox\")")
        env = kwargs.get("env") or os.environ
        cwd = kwargs.get("cwd") or os.getcwd()
        workdir = os.path.realpath(cwd)
        if not os.path.isdir(workdir):
            raise SandboxError(f"working folder {workdir} does not exist")
        check_workdir(workdir)
        _check_process_budget(km.log)
        spec = km.sandbox_spec(workdir, cmd, env)
        submission = submission_of(km, workdir)
        state = {"spec": spec, "workdir": workdir, "owner": None, "pidfds": [], "mode": "cold",
                 "submission": submission,
                 # only for a submission's kernel, whose extra files generate_feedback copies;
                 # other callers (the trusted re-checks) read what their kernel wrote
                 "before": _enter.snapshot(workdir) if km.remove_kernel_files and submission else None}
        self.sandbox = state
        # the kernel runs as an unprivileged uid: lend it its working copy
        state["owner"] = _enter.take_workdir(spec)
        t0 = time.perf_counter()
        try:
            process = await self._start(km, spec, cmd, state)
        except BaseException:
            # nothing started: give the working copy back, keep no state
            self.sandbox = None
            _enter.release_workdir(workdir, state["owner"])
            shutil.rmtree(spec["rundir"], ignore_errors=True)
            raise
        state["startup_ms"] = (time.perf_counter() - t0) * 1000
        state["pidfds"] = process.pidfds
        km.log.debug("sandbox: %s kernel start %.0f ms in %s", state["mode"], state["startup_ms"], workdir)
        self.process = process
        self.pid = process.pid
        self.pgid = None  # signals go to the supervisor, which forwards them
        self.cwd = workdir
        return self.connection_info

    @staticmethod
    async def _start(km, spec: dict, cmd: list[str], state: dict):
        warm = km.warm_socket()
        if warm:
            try:
                process = await _blocking(WarmProcess.start, warm, spec, cmd)
                state["mode"] = "warm"
                return process
            except WarmUnavailable as e:
                # correct, but slow: say so (e.g. a worker whose OMP_NUM_THREADS
                # differs from the server's)
                km.log.warning("sandbox: warm start not possible (%s); starting this kernel cold", e)
        return await _blocking(_cold_start, spec, cmd)

    async def wait(self):
        ret = await super().wait()
        if self.sandbox is not None:
            self.sandbox["exit"] = ret
        return ret

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        state, self.sandbox = self.sandbox, None
        if not state:
            return
        self.last_sandbox = {"mode": state["mode"], "startup_ms": state.get("startup_ms")}
        await _blocking(_teardown, self.process, state, restart)
        if state.get("log_tail") and not self.parent.shutting_down:
            self.log.warning("sandboxed kernel exited with status %s; its last words:\n%s",
                             state["exit"], state["log_tail"])


async def _blocking(fn, *args):
    """Run a short blocking step off the event loop (inline when the loop's
    executor is gone, e.g. in nbclient's atexit clean-up)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    except RuntimeError:
        return fn(*args)


def _teardown(process, state: dict, restart: bool) -> None:
    """After the kernel: make sure nothing of the sandbox still runs, then make
    the working copy safe for nbgrader (which writes there as the grader)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    for fd in state["pidfds"]:
        # the sandbox's init exits only after every process in it is gone
        select.select([fd], [], [], 10)
        os.close(fd)
    state["pidfds"] = []
    if os.geteuid() == 0:
        _enter.sweep_cgroups()  # the pids cgroup of a supervisor killed before it removed it
    workdir = state["workdir"]
    removed = _enter.release_workdir(workdir, state["owner"])
    code = process.poll() if process is not None else state.get("exit")
    state["exit"] = code
    log = os.path.join(state["spec"]["rundir"] or "", "kernel.log")
    if code not in (None, 0) and os.path.isfile(log):
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 2000))
            state["log_tail"] = f.read().decode(errors="replace")
    # What the kernel made in its working copy (files it wrote, however many)
    # goes: nbgrader would copy each of them to feedback/.
    made = _enter.remove_new(workdir, state["before"]) if state.get("before") is not None and not restart else {}
    # The event log is the only course file the sandbox writes (a kernel started by a bare nbclient
    # client has no Execute preprocessor above it to hand the news to).
    sub = state.get("submission")
    if sub and (removed or made):
        from coursekit import events
        if removed:
            events.record(sub.root, sub.assignment, sub.student, events.SANDBOX_REMOVED_LINKS, paths=removed)
        if made:
            events.record(sub.root, sub.assignment, sub.student, events.SANDBOX_REMOVED_FILES, **made)
    if not restart:
        shutil.rmtree(state["spec"]["rundir"], ignore_errors=True)


def _read_status(fd: int, timeout: float) -> list[str]:
    """Lines from a status pipe until ``ok``/``error``/EOF."""
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            lines.append("error: the sandbox did not report within %.0f s" % timeout)
            return lines
        chunk = os.read(fd, 4096)
        if not chunk:
            lines.append("error: the sandbox launcher exited without starting the kernel")
            return lines
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace")
            lines.append(text)
            if text == "ok" or text.startswith("error"):
                return lines


def _pidfds(lines: list[str]) -> list[int]:
    fds = []
    for line in lines:
        if line.startswith("pids "):
            for pid in line.split()[1:]:
                try:
                    fds.append(os.pidfd_open(int(pid)))
                except OSError:
                    pass
    return fds


class _ColdProcess:
    """The launcher's Popen, plus the pidfds of what it started."""

    def __init__(self, popen, pidfds):
        self._p = popen
        self.pidfds = pidfds
        self.pid = popen.pid
        self.stdin = self.stdout = self.stderr = None

    def __getattr__(self, name):
        return getattr(self._p, name)


def _cold_start(spec: dict, cmd: list[str]):
    import subprocess

    r, w = os.pipe()
    try:
        # the cold launcher is the kernel's supervisor inside the sandbox: a process of its own
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _ENTER_SCRIPT, json.dumps(spec), str(w), "--", *cmd],
            pass_fds=[w], stdin=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": "/usr/bin:/bin"}, close_fds=True)
    except OSError as e:
        os.close(r)
        os.close(w)
        raise SandboxError(f"cannot run the sandbox launcher: {e}") from e
    os.close(w)
    try:
        lines = _read_status(r, spec.get("setup_timeout", 30.0))
    finally:
        os.close(r)
    pidfds = _pidfds(lines)
    if lines[-1] != "ok":
        proc.kill()
        proc.wait()
        for fd in pidfds:
            select.select([fd], [], [], 10)  # until the sandbox is empty
            os.close(fd)
        raise SandboxError(f"the kernel sandbox could not start, so the kernel was not started: "
                           f"{lines[-1][len('error: '):] if lines[-1].startswith('error: ') else lines[-1]}")
    return _ColdProcess(proc, pidfds)


class WarmUnavailable(Exception):
    """The warm server cannot start this kernel (the cold path can)."""


class WarmProcess:
    """Popen-like handle on a kernel started by the warm fork server: the
    kernel is not our child; its supervisor takes commands over a socket and
    kills the whole sandbox when that socket closes."""

    stdin = stdout = stderr = None

    def __init__(self, sock: socket.socket, pid: int, pidfds: list[int]):
        self.sock = sock
        self.pid = pid
        self.pidfds = pidfds
        self.returncode = None
        self._buf = b""

    @classmethod
    def start(cls, path: str, spec: dict, cmd: list[str]) -> "WarmProcess":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            sock.sendall(json.dumps({"spec": spec, "argv": cmd}).encode() + b"\n")
        except OSError as e:
            sock.close()
            raise WarmUnavailable(f"warm server at {path} unreachable: {e}") from e
        lines = _read_status(sock.fileno(), spec.get("setup_timeout", 30.0))
        pidfds = _pidfds(lines)
        last = lines[-1]
        if last != "ok":
            # the supervisor sends "exit" (and closes) once the sandbox is empty
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and select.select([sock], [], [], 1)[0]:
                if not sock.recv(4096):
                    break
            sock.close()
            for fd in pidfds:
                select.select([fd], [], [], 10)
                os.close(fd)
            if last.startswith("error: unsupported"):
                raise WarmUnavailable(last[len("error: "):])
            raise SandboxError(f"the kernel sandbox could not start, so the kernel was not started: "
                               f"{last[len('error: '):] if last.startswith('error: ') else last}")
        pid = next((int(line.split()[1]) for line in lines if line.startswith("pids ")), 0)
        return cls(sock, pid, pidfds)

    def _read(self, timeout: float | None) -> None:
        while self.returncode is None:
            ready = select.select([self.sock], [], [], timeout)[0]
            if not ready:
                return
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                self.returncode = -9  # supervisor gone: the sandbox died with it
                return
            self._buf += chunk
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(b"exit "):
                    self.returncode = int(line.split()[1])
            timeout = 0

    def poll(self):
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None):
        self._read(timeout)
        if self.returncode is not None:
            self.sock.close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                self.sock.sendall(f"signal {int(signum)}\n".encode())
            except OSError:
                pass

    def kill(self) -> None:
        self.send_signal(9)

    def terminate(self) -> None:
        self.send_signal(15)
