"""The sandboxed kernel manager that nbgrader uses to execute submissions.

``SandboxKernelManager`` is a jupyter_client ``AsyncKernelManager`` whose
kernels run inside the sandbox of ``_enter`` (bubblewrap + namespaces +
rlimits, see the package docstring), talking ZMQ over IPC sockets in a private
socket folder that is the only thing besides the working copy the kernel may
write.  It starts each kernel either

* cold: ``python -I -S _enter.py SPEC STATUS_FD -- <kernel argv>`` (the
  launcher stays as the kernel's supervisor and forwards signals), or
* warm: through the fork server of ``forkserver`` when one is running
  (``warm_kernels()`` sets ``COURSEKIT_WARM_KERNELS``), which forks an already
  imported ipykernel + torch process into the same sandbox.

Both paths build the same sandbox from the same spec (same mounts, env, limits,
cwd), so a notebook gets the same results either way.  ``SandboxExecute`` is
nbgrader's Execute preprocessor with this manager (nbgrader's Execute ignores
``c.Execute.kernel_manager_class``, it passes its own default as a keyword).
"""
from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode, default

from . import _enter
from ._enter import SandboxError

# Environment switches (documented in the package docstring / README).
DISABLE_VARIABLE = "COURSEKIT_SANDBOX"  # "off": run kernels unsandboxed (development only)
WARM_VARIABLE = "COURSEKIT_WARM_KERNELS"  # socket of a running fork server
BWRAP_VARIABLE = "COURSEKIT_BWRAP"  # path of bwrap (default: the one on PATH)

# Variables of the grader's environment a kernel may see; everything else
# (tokens, passwords, GRADER_SECRET, ...) stays outside.
PASS_ENV = ("NBGRADER_EXECUTION", "COURSE_MODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "TZ")
# Of those, the ones that may differ between two kernels of one warm server
# (read after start-up, never at import time).
PER_KERNEL_ENV = ("NBGRADER_EXECUTION", "COURSE_MODE")

# Fixed part of every kernel's environment, same on both start-up paths.
FIXED_ENV = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "USER": "nobody",
    "LOGNAME": "nobody",
    "SHELL": "/bin/sh",
    "LANG": "C.UTF-8",
    # same hash order in every kernel, warm or cold
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    # what ipykernel would set; set before matplotlib is imported anywhere
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}

_ENTER_SCRIPT = str(Path(_enter.__file__).resolve())


def disabled() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() in ("off", "0", "no", "false", "disabled")


def kernel_env(parent_env: dict, kernel_cmd: list[str], extra_pass: tuple = ()) -> dict:
    """The environment a sandboxed kernel gets, from the grader's."""
    env = dict(FIXED_ENV)
    bindir = os.path.dirname(kernel_cmd[0]) if kernel_cmd and os.path.isabs(kernel_cmd[0]) else ""
    env["PATH"] = ":".join(p for p in (bindir, "/usr/local/bin", "/usr/bin", "/bin") if p)
    for name in (*PASS_ENV, *extra_pass):
        if name in parent_env:
            env[name] = parent_env[name]
    return env


def python_paths(kernel_cmd: list[str]) -> list[str]:
    """Read-only paths the kernel's Python needs (installation + venv)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    if kernel_cmd and os.path.isabs(kernel_cmd[0]):
        exe = kernel_cmd[0]
        paths.add(os.path.dirname(os.path.dirname(exe)))  # venv root
        paths.add(os.path.dirname(os.path.dirname(os.path.realpath(exe))))  # installation
    # A venv or interpreter reached through a symlink (a course folder linked from the home, a
    # venv linked to a shared one) is mounted at both its link path, which the kernel command and
    # sys.prefix name, and its target, which its own links lead to.
    out = set()
    for p in paths:
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if q in ("/", "/usr") or q.startswith("/usr/") or not os.path.isdir(q):
                continue  # /usr is bound anyway
            out.add(q)
    return sorted(out)


def check_interpreter(cmd: list[str], ro_paths: list[str]) -> None:
    """Refuse to start a kernel whose interpreter the sandbox would not see, naming it."""
    if not cmd or not os.path.isabs(cmd[0]):
        return
    visible = ("/usr/", "/bin/", "/lib/", "/lib64/", "/sbin/")
    for path in (os.path.abspath(cmd[0]), os.path.realpath(cmd[0])):
        if path.startswith(visible) or any(path.startswith(p.rstrip("/") + "/") for p in ro_paths):
            continue
        raise SandboxError(f"the kernel's interpreter {path} is not under any folder the sandbox mounts; "
                           "add its folder to c.SandboxKernelManager.extra_ro_paths")


class Submission(NamedTuple):
    """The submission a kernel runs: where its course is, whose it is, and the release folder the
    kernel may read.  ``SandboxExecute`` passes it down from nbgrader's ``CourseDirectory``."""
    root: Path
    student: str
    assignment: str
    release: Path | None = None


def submission_of(km, workdir: str) -> Submission | None:
    """What the kernel manager was told (``km.submission``), else what the working folder's path
    says: a kernel started outside nbgrader's Execute (a bare nbclient client) in nbgrader's
    ``<root>/autograded/<student>/<assignment>`` layout."""
    given = getattr(km, "submission", None)
    if given is not None:
        return given
    layout = course_layout(workdir)
    return Submission(layout[0], layout[1], layout[2], layout[0] / "release" / layout[2]) if layout else None


def course_layout(workdir: str):
    """(course root, student, assignment) when workdir is nbgrader's
    ``<root>/autograded/<student>/<assignment>``, else None."""
    p = Path(workdir)
    if len(p.parts) >= 4 and p.parent.parent.name == "autograded":
        root = p.parent.parent.parent
        if (root / "nbgrader_config.py").is_file() or (root / "gradebook.db").exists():
            return root, p.parent.name, p.name
    return None


def check_workdir(workdir: str) -> None:
    """Refuse a working folder that holds the grader's own files: the kernel
    may write all of it."""
    home = os.path.realpath(os.path.expanduser("~"))
    here = os.path.realpath(os.getcwd())
    if workdir in ("/", home) or here == workdir or here.startswith(workdir.rstrip("/") + "/"):
        raise SandboxError(
            f"refusing to start a sandboxed kernel in {workdir}: the kernel may write its "
            "working folder, and this one is the root, your home, or holds the folder you run from "
            "(the course root). Execute notebooks from a copy, as nbgrader autograde does "
            "(autograded/<student>/<assignment>).")


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


# --------------------------------------------------------------------------
# client side: bounded output
# --------------------------------------------------------------------------

_OUTPUT_TYPES = {"stream", "display_data", "execute_result", "update_display_data", "error",
                 "comm_open", "comm_msg", "comm_close", "clear_output"}


def _content_size(content) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return sum(_content_size(v) + len(k) for k, v in content.items())
    if isinstance(content, (list, tuple)):
        return sum(_content_size(v) for v in content)
    return 8


# The note that takes the place of dropped output, in English unless the course sets its own words
# (``c.SandboxKernelManager.output_notices``): ``cut`` wraps one of the others ({what}).
OUTPUT_NOTICES = {
    "cut": "\n[output truncated: {what}; the rest was not saved]\n",
    "notebook_bytes": "this notebook wrote more than {mb} MB",
    "notebook_messages": "this notebook sent more than {count} outputs",
    "cell_messages": "this cell sent more than {count} outputs",
}


class CappedIOPubChannel(AsyncZMQSocketChannel):
    """IOPub channel that stops passing output on once a kernel has sent more
    than ``limit`` bytes, or more than ``max_messages`` output messages in all or
    ``max_cell_messages`` for one cell, so that a flood (of bytes, or of tiny
    messages: each one costs the kernel and nbclient time and the notebook a
    JSON object) cannot fill the grader's memory (nbgrader's LimitOutput only
    trims the notebook afterwards).

    Past a cap:
    * the first dropped output of a cell (or of the notebook) becomes a note
      that says what was cut (``notices``: the kernel manager's ``output_notices``,
      the course's words);
    * a cell past its own cap is interrupted once (``on_flood``, set by the
      kernel manager): the flood costs its author the rest of that cell, not
      minutes of the grader's time reading messages it drops (nbgrader fails a
      whole submission whose output is still arriving 4 s after its cell
      ended); a kernel that ignores the interrupt still meets the cell timeout.
      The interrupt may land in the next cell when the flood ends just then:
      only a flooding notebook can see that;
    * one error per cell still passes, shortened: nbgrader scores a test cell
      by its error output, so a flood must never turn a failing test into a
      pass."""

    limit = 32 * 1024 * 1024
    max_messages = 20_000
    max_cell_messages = 5_000
    used = 0
    notified = False  # the byte or notebook-message cap was announced
    on_flood = None   # called once per cell that goes past its own cap (interrupts the kernel)
    notices = OUTPUT_NOTICES  # what the notes say (SandboxKernelManager.output_notices)

    def _cut(self, msg: dict, text: str) -> dict:
        msg["msg_type"] = msg["header"]["msg_type"] = "stream"
        msg["content"] = {"name": "stderr", "text": self.notices["cut"].format(what=text)}
        return msg

    def _flooded(self, cell: str) -> None:
        if cell in self._interrupted or self.on_flood is None:
            return
        self._interrupted.add(cell)
        result = self.on_flood()
        if asyncio.iscoroutine(result):
            self._tasks.add(asyncio.ensure_future(result))  # (a reference, so it is not collected)

    def _cap(self, msg: dict) -> dict:
        mtype = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        if mtype not in _OUTPUT_TYPES:
            return msg
        if not hasattr(self, "_per_cell"):
            self._per_cell, self._cell_notified, self.messages = {}, set(), 0
            self._errors, self._interrupted, self._tasks = set(), set(), set()
        cell = (msg.get("parent_header") or {}).get("msg_id", "")
        count = self._per_cell[cell] = self._per_cell.get(cell, 0) + 1
        self.used += _content_size(msg.get("content", {}))
        over_bytes = self.used > self.limit
        over_cell = count > self.max_cell_messages
        # the notebook's cap counts the messages passed on (a cell cut at its own
        # cap does not use up the rest of the notebook's)
        over_notebook = not over_cell and self.messages >= self.max_messages
        if not (over_bytes or over_notebook or over_cell):
            self.messages += 1
            return msg
        if over_cell:
            self._flooded(cell)  # (not for the notebook's caps: later cells' first outputs would interrupt them)
        if mtype == "error" and cell not in self._errors:
            self._errors.add(cell)
            content = msg.get("content", {})
            tb = [str(line)[:2000] for line in (content.get("traceback") or [])[-5:] if isinstance(line, str)]
            msg["content"] = {"ename": str(content.get("ename", "Error"))[:200],
                              "evalue": str(content.get("evalue", ""))[:2000], "traceback": tb}
            return msg
        announce = mtype in ("stream", "display_data", "execute_result", "update_display_data")
        if announce and (over_bytes or over_notebook) and not self.notified:
            self.notified = True
            self._cell_notified.add(cell)
            return self._cut(msg, self.notices["notebook_bytes"].format(mb=self.limit // 2**20)
                             if over_bytes else self.notices["notebook_messages"].format(count=self.max_messages))
        if announce and over_cell and cell not in self._cell_notified:
            self._cell_notified.add(cell)
            return self._cut(msg, self.notices["cell_messages"].format(count=self.max_cell_messages))
        # past a limit: turn it into a message nbclient ignores
        msg["msg_type"] = msg["header"]["msg_type"] = "execute_input"
        msg["content"] = {"code": "", "execution_count": None}
        return msg

    async def get_msg(self, timeout: float | None = None):
        return self._cap(await super().get_msg(timeout))

    async def get_msgs(self):
        return [self._cap(m) for m in await super().get_msgs()]


class _BoundedSockets:
    """Refuse single ZMQ messages larger than ``max_message_bytes``."""

    max_message_bytes = 256 * 1024 * 1024

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # the kernel binds its sockets a few ms after start: retry every 10 ms, not 100
        sock.setsockopt(zmq.RECONNECT_IVL, 10)
        if identity:
            sock.identity = identity
        if getattr(self, "curve_publickey", None) is not None:
            sock.curve_secretkey = self.curve_secretkey
            sock.curve_publickey = self.curve_publickey
            sock.curve_serverkey = self.curve_publickey
        sock.connect(url)
        return sock


class SandboxKernelClient(_BoundedSockets, AsyncKernelClient):
    iopub_channel_class = CappedIOPubChannel  # type: ignore[assignment]
    output_limit = 32 * 1024 * 1024
    output_messages = CappedIOPubChannel.max_messages
    output_cell_messages = CappedIOPubChannel.max_cell_messages
    on_flood = None  # set by SandboxKernelManager.client: interrupts the kernel
    output_notices = None  # set by SandboxKernelManager.client: the course's words for the notes

    @property
    def iopub_channel(self):
        channel = super().iopub_channel
        channel.limit = self.output_limit
        channel.max_messages = self.output_messages
        channel.max_cell_messages = self.output_cell_messages
        channel.on_flood = self.on_flood
        channel.notices = {**OUTPUT_NOTICES, **(self.output_notices or {})}
        return channel


# --------------------------------------------------------------------------
# the manager
# --------------------------------------------------------------------------

class SandboxKernelManager(_BoundedSockets, AsyncKernelManager):
    """AsyncKernelManager whose kernels run sandboxed (see module docstring).

    Configure in nbgrader_config.py as ``c.SandboxKernelManager.<trait>``.
    """

    bwrap = Unicode("", config=True, help="bwrap executable (default: $COURSEKIT_BWRAP or bwrap on PATH)")
    sandbox_uid = Integer(65534, config=True, help="uid the kernel runs as when the grader is root")
    sandbox_gid = Integer(65534, config=True, help="gid the kernel runs as when the grader is root")
    # The submission this kernel runs, set by SandboxExecute (what it may mount, whose events);
    # None: read from the working folder's path (see submission_of).
    submission: Submission | None = None
    cpu_seconds = Integer(900, config=True, help="CPU seconds per kernel (RLIMIT_CPU)")
    memory_mb = Integer(4096, config=True, help="private memory per kernel process, MiB (RLIMIT_DATA)")
    address_space_mb = Integer(16384, config=True,
                               help="address space per kernel process, MiB (RLIMIT_AS; torch maps ~3 GiB)")
    processes = Integer(256, config=True, help="processes+threads in one sandbox (RLIMIT_NPROC)")
    file_size_mb = Integer(256, config=True, help="largest file a kernel may write, MiB (RLIMIT_FSIZE)")
    open_files = Integer(1024, config=True, help="open files per process (RLIMIT_NOFILE)")
    tmp_mb = Integer(512, config=True, help="size of the kernel's private /tmp, MiB")
    shm_mb = Integer(256, config=True, help="size of the kernel's private /dev/shm, MiB")
    output_limit_mb = Integer(32, config=True, help="output a kernel may send before the rest is dropped, MiB")
    output_messages = Integer(20_000, config=True,
                              help="output messages a kernel may send in all before the rest is dropped")
    output_cell_messages = Integer(5_000, config=True,
                                   help="output messages one cell may send before the rest of its output is dropped")
    output_notices = Dict(OUTPUT_NOTICES, config=True,
                          help="what the note in place of dropped output says (keys of OUTPUT_NOTICES; "
                               "keys left out keep the English default)")
    extra_ro_paths = List(Unicode(), config=True, help="more host paths the kernel may read (datasets, ...)")
    pass_env = List(Unicode(), config=True, help="more environment variables passed to the kernel")
    use_warm = Bool(True, config=True, help="use the warm fork server when one is running")
    interrupt_floods = Bool(True, config=True,
                            help="interrupt a cell once its output goes past a cap (else it floods on, unseen, "
                                 "until it ends or times out)")
    remove_kernel_files = Bool(True, config=True,
                               help="after the kernel, remove the files it made in its working copy when that "
                                    "is nbgrader's autograded/<student>/<assignment> (else generate_feedback "
                                    "copies every one of them to feedback/)")

    @default("shutdown_wait_time")
    def _default_shutdown_wait_time(self):
        # A sandbox is disposable: after the shutdown request give the kernel
        # 0.5 s (torch makes a clean interpreter exit take seconds), then
        # SIGTERM, then SIGKILL; everything in the sandbox dies with it.
        return 1.0

    @default("transport")
    def _default_transport(self):
        return "ipc"  # the kernel has no network: ZMQ over unix sockets

    @default("client_class")
    def _default_client_class(self):
        return "coursekit.sandbox.manager.SandboxKernelClient"

    @default("client_factory")
    def _default_client_factory(self):
        return SandboxKernelClient

    def client(self, **kwargs):
        kc = super().client(**kwargs)
        if isinstance(kc, SandboxKernelClient):
            kc.output_limit = self.output_limit_mb * 2**20
            kc.output_messages = self.output_messages
            kc.output_cell_messages = self.output_cell_messages
            kc.output_notices = dict(self.output_notices)
            if self.interrupt_floods:
                kc.on_flood = self.interrupt_kernel
        return kc

    # -- configuration -> spec ------------------------------------------
    def warm_socket(self) -> str | None:
        path = os.environ.get(WARM_VARIABLE)
        return path if self.use_warm and path and os.path.exists(path) else None

    def sandbox_spec(self, workdir: str, cmd: list[str], env: dict) -> dict:
        return build_spec(self, workdir, cmd, kernel_env(env, cmd, tuple(self.pass_env)), self._rundir)

    # -- lifecycle --------------------------------------------------------
    _rundir = None

    async def _async_pre_start_kernel(self, **kw):
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self._rundir is None or not os.path.isdir(self._rundir):
            _sweep_rundirs()
            # short path: unix socket names are limited to ~100 bytes
            self._rundir = tempfile.mkdtemp(prefix=f"ck-{os.getpid()}-", dir="/tmp")
        self.connection_file = os.path.join(self._rundir, "kernel.json")
        self.ip = os.path.join(self._rundir, "k")
        if disabled():
            self.log.warning(
                "%s=off: the kernel runs WITHOUT the sandbox, with your rights and files "
                "(development only; never grade real submissions like this)", DISABLE_VARIABLE)
        elif self.provisioner is None:
            self.provisioner = SandboxProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                  parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._rundir and not isinstance(self.provisioner, SandboxProvisioner):
            shutil.rmtree(self._rundir, ignore_errors=True)  # (the sandbox removes its own)

    cleanup_resources = _async_cleanup_resources

    pre_start_kernel = _async_pre_start_kernel

    def _sandbox_state(self) -> dict:
        return (getattr(self.provisioner, "sandbox", None)
                or getattr(self.provisioner, "last_sandbox", None) or {})

    @property
    def sandbox_mode(self) -> str | None:
        """'warm' or 'cold' for the current (or last) kernel; None when unsandboxed."""
        return self._sandbox_state().get("mode")

    @property
    def startup_ms(self) -> float | None:
        """Milliseconds from launch request to the sandboxed kernel running."""
        return self._sandbox_state().get("startup_ms")


def build_spec(settings, workdir: str, cmd: list[str], env: dict, rundir: str | None) -> dict:
    """The sandbox of one kernel (or wrapped command), for ``_enter``.

    ``settings`` has the traits of ``SandboxKernelManager`` (an instance)."""
    ro = python_paths(cmd)
    submission = submission_of(settings, workdir)
    if submission and submission.release and submission.release.is_dir():
        ro.append(str(submission.release.resolve()))
    ro += [os.path.realpath(p) for p in settings.extra_ro_paths if os.path.exists(p)]
    check_interpreter(cmd, ro)
    bwrap = settings.bwrap or os.environ.get(BWRAP_VARIABLE) or shutil.which("bwrap") or "/usr/bin/bwrap"
    return {
        "bwrap": bwrap,
        "workdir": workdir,
        "rundir": rundir,
        "ro_paths": sorted(set(ro) - {workdir}),
        "rw_paths": [p for p in (workdir, rundir) if p],
        "env": env,
        "uid": settings.sandbox_uid,
        "gid": settings.sandbox_gid,
        "tmp_bytes": settings.tmp_mb * 2**20,
        "shm_bytes": settings.shm_mb * 2**20,
        "limits": {
            "cpu_seconds": settings.cpu_seconds,
            "data_bytes": settings.memory_mb * 2**20,
            "address_space_bytes": settings.address_space_mb * 2**20,
            "processes": settings.processes,
            "file_size_bytes": settings.file_size_mb * 2**20,
            "open_files": settings.open_files,
            "core_bytes": 0,
        },
    }


def wrap_command(argv: list[str], workdir=None, env: dict | None = None, config=None) -> tuple[list[str], dict]:
    """``argv`` wrapped so that it runs in the kernel sandbox: returns
    ``(wrapped_argv, launcher_env)`` for ``subprocess.Popen``.

    The command keeps the stdio it is given, runs with ``env`` (default: the
    kernel allow-list of this process's environment) in ``workdir`` (its only
    writable folder besides its private /tmp; default: a fresh empty folder,
    removed afterwards), under the limits of ``SandboxKernelManager`` (its
    defaults, or those of the traitlets ``config`` given).  If the sandbox
    cannot be built the command does not run: the launcher exits 70 with the
    reason on stderr.  Killing the launcher kills the command and its sandbox.
    """
    if disabled():
        raise SandboxError(f"{DISABLE_VARIABLE}=off does not apply to wrapped commands: "
                           "they always run sandboxed")
    settings = SandboxKernelManager(config=config) if config is not None else SandboxKernelManager()
    argv = list(argv)
    if not os.path.isabs(argv[0]):
        argv[0] = shutil.which(argv[0]) or argv[0]
    remove = workdir is None
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="ck-cmd-") if remove else str(workdir))
    check_workdir(workdir)
    if env is None:
        env = kernel_env(os.environ, argv, tuple(settings.pass_env))
    spec = build_spec(settings, workdir, argv, dict(env), None)
    spec["remove_workdir"] = remove
    wrapped = [sys.executable, "-I", "-S", _ENTER_SCRIPT, json.dumps(spec), "-", "--", *argv]
    return wrapped, {"PATH": "/usr/bin:/bin"}


class SandboxExecute(Execute):
    """nbgrader's Execute preprocessor, running every kernel in the sandbox.

    Being the nbgrader-side part (it knows which submission it executes), it also records a
    ``kernel_started`` event per kernel: warm or cold, start-up in ms, and when the Execute
    step began (the bench reads these to time the phases of a submission)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        """The kernel manager, told which submission it runs (course, student, release folder to mount),
        from nbgrader's own ``CourseDirectory`` instead of the working folder's path."""
        km = super().create_kernel_manager()
        info = (getattr(self, "resources", None) or {}).get("nbgrader", {})
        if info.get("student") and info.get("assignment"):
            from coursekit.context import CourseContext

            ctx = CourseContext.of(self, self.resources)
            km.submission = Submission(ctx.root, info["student"], info["assignment"],
                                       ctx.release_folder(info["assignment"]))
        return km

    def preprocess(self, nb, resources=None, km=None):
        self._execute_started = time.time()
        return super().preprocess(nb, resources, km)

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        self._record_kernel_start()
        return kc

    # nbclient's synchronous wrapper is bound to the base class's coroutine: wrap ours
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _record_kernel_start(self) -> None:
        info = (getattr(self, "resources", None) or {}).get("nbgrader", {})
        if not info.get("student") or not info.get("assignment"):
            return  # not a submission (a test client, a validation run)
        from coursekit import events
        from coursekit.context import course_root

        km = self.km
        events.record(course_root(self.resources, self), info["assignment"], info["student"],
                      events.KERNEL_STARTED, notebook=info.get("notebook"),
                      mode=getattr(km, "sandbox_mode", None) or "unsandboxed",
                      startup_ms=getattr(km, "startup_ms", None),
                      execute_started=getattr(self, "_execute_started", None))
