"""Warm kernels: a fork server that has already imported ipykernel and torch.

A cold kernel spends most of its start-up importing (python + ipykernel
~0.4 s, torch ~1.3 s, matplotlib ~0.4 s here).  The fork server (the
*zygote*) imports all that once, never runs student code nor starts a torch
thread pool, and forks one process per kernel request.  That child is the
kernel's supervisor: it builds the very same sandbox as the cold launcher
(``_enter.start``), forks the kernel process into it, and the kernel process
-- after leaving root, dropping capabilities and setting its limits -- runs
ipykernel in-process on the connection file, as ``python -m
ipykernel_launcher -f FILE`` would.

``warm_kernels()`` starts a server for the duration of a ``with`` block and
sets ``COURSEKIT_WARM_KERNELS`` so that every ``SandboxKernelManager`` (in
this process and in the worker processes it starts) uses it; without a
server, kernels start cold, sandboxed just the same.

Protocol (one unix stream connection per kernel, JSON first line):
request ``{"spec": ..., "argv": [...]}``; replies ``pids K I``, then ``ok`` or
``error: ...``, later ``exit N``; the manager may send ``signal N``.  Closing
the connection kills the kernel and its sandbox.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from . import _enter
from .spec import PER_KERNEL_ENV, WARM_VARIABLE, kernel_env

# What the zygote imports: first what every kernel imports while it starts
# (the environment variables these set are given to each warm kernel, as a
# cold one sets them itself), then the course's libraries (their import-time
# variables are not: a cold kernel only gets them once the notebook imports
# them).  Not matplotlib_inline's backend: importing it outside a running
# kernel would skip its IPython hook-up.
KERNEL_MODULES = ("IPython", "ipykernel_launcher", "ipykernel.kernelapp", "ipykernel.ipkernel",
                  "ipykernel.zmqshell", "ipykernel.iostream", "ipykernel.debugger", "jupyter_client.session",
                  "zmq", "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
                  "IPython.extensions.storemagic", "sqlite3", "pydoc", "tornado.ioloop")
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "torchvision", "matplotlib",
           "matplotlib.pyplot")


def _kernel_argv_ok(argv: list[str]) -> bool:
    """The warm path can stand in for ``<this python> -m ipykernel_launcher -f F [--opt=..]``."""
    if len(argv) < 5 or argv[1:4] != ["-m", "ipykernel_launcher", "-f"]:
        return False
    if os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        return False
    return all(a.startswith("--") for a in argv[5:])


def _reset_matplotlib_dirs() -> None:
    """matplotlib memoised its config/cache folders from the zygote's private
    HOME; forget them so the kernel computes its own, as a cold one does."""
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return
    for name in ("get_configdir", "get_cachedir"):
        fn = getattr(mpl, name, None)
        names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
        if fn is not None and "called" in names and "ret" in names:
            cells = dict(zip(names, fn.__closure__))
            cells["called"].cell_contents = False
            cells["ret"].cell_contents = None


def _run_kernel(spec: dict, argv: list[str], base_path: list[str], import_env: dict, status_fd: int) -> None:
    """In the sandboxed kernel process: become ``python -m ipykernel_launcher``."""
    os.environ.clear()
    os.environ.update(spec["env"])
    os.environ.update(import_env)  # what the preloaded modules set when a cold kernel imports them
    # sys.path as a fresh interpreter would have it here: .pth entries that do
    # not exist in the sandbox (e.g. an editable coursekit) are not there
    sys.path[:] = [p for p in base_path if os.path.exists(p) or p.endswith(".zip")]
    sys.path_importer_cache.clear()
    for name in [m for m in sys.modules if m == "coursekit" or m.startswith("coursekit.")]:
        del sys.modules[name]
    # a fresh process has fresh random generators (python's random reseeds itself after fork)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    _reset_matplotlib_dirs()
    import ipykernel_launcher

    sys.argv = [ipykernel_launcher.__file__, *argv[3:]]
    os.write(status_fd, b"ok\n")
    os.close(status_fd)
    code = 0
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _supervise(conn: socket.socket, base_env: dict, base_path: list[str], import_env: dict) -> None:
    """In a child of the zygote: start one kernel and look after it."""
    fd = conn.fileno()

    def send(text: str) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(text.encode() + b"\n")

    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    request = json.loads(line)
    spec, argv = request["spec"], request["argv"]
    if not _kernel_argv_ok(argv):
        send("error: unsupported kernel command for the warm server: " + " ".join(argv[:4]))
        return
    env_fixed = {k: v for k, v in spec["env"].items() if k not in PER_KERNEL_ENV}
    if env_fixed != base_env:
        diff = sorted(set(env_fixed.items()) ^ set(base_env.items()))
        send(f"error: unsupported environment for this warm server (differs in {diff[:3]})")
        return

    def child_main():
        _run_kernel(spec, argv, base_path, import_env, fd)

    try:
        holder, pid = _enter.start(spec, child_main, fd)
    except _enter.SandboxError as e:
        send(f"error: {e}")
        return
    # the kernel process writes ok/error on the connection itself
    pidfd = os.pidfd_open(pid)
    buf = rest
    status = None
    try:
        while status is None:
            ready = select.select([conn, pidfd], [], [])[0]
            if pidfd in ready:
                _, st = os.waitpid(pid, 0)
                status = _enter.exit_code(st)
                break
            chunk = conn.recv(4096)
            if not chunk:  # the manager is gone: take the sandbox down
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -9
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                parts = line.split()
                if len(parts) == 2 and parts[0] == b"signal":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, int(parts[1]))
    finally:
        holder.kill()
        send(f"exit {status if status is not None else -9}")


def serve(sock_path: str, base_env: dict, base_path: list[str], preload=PRELOAD) -> None:
    """The zygote's main loop (runs in its own process, see ``warm_kernels``).

    ``base_path``: sys.path of a fresh interpreter, taken before any import."""
    env_before = dict(os.environ)
    for name in KERNEL_MODULES:
        importlib.import_module(name)
    import_env = {k: v for k, v in os.environ.items() if env_before.get(k) != v}
    for name in preload:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # keep the imported objects' pages shared with every child
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()  # EOF here: whoever started us is gone
    children = set()
    while True:
        ready = select.select([listener, stdin], [], [], 1.0)[0]
        for child in list(children):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(child, os.WNOHANG)[0]:
                    children.discard(child)
        if stdin in ready:
            if not os.read(stdin, 1):
                return
        if listener in ready:
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    listener.close()
                    os.close(stdin)
                    _supervise(conn, base_env, base_path, import_env)
                except BaseException:  # noqa: BLE001
                    code = 1
                finally:
                    os._exit(code)
            conn.close()
            children.add(pid)


# --------------------------------------------------------------------------
# starting a server
# --------------------------------------------------------------------------

class WarmServer:
    """A running fork server (a subprocess of this process)."""

    def __init__(self, preload=PRELOAD, startup_timeout: float = 120.0):
        self.dir = tempfile.mkdtemp(prefix="ck-warm-")  # 0700: only we can connect
        self.socket = os.path.join(self.dir, "s")
        home = os.path.join(self.dir, "home")
        os.mkdir(home)
        python_cmd = [sys.executable, "-m", "ipykernel_launcher"]
        # the environment every kernel of this server will get, minus the
        # per-kernel variables; the zygote imports under the same environment
        self.base_env = {k: v for k, v in kernel_env(os.environ, python_cmd).items() if k not in PER_KERNEL_ENV}
        env = dict(self.base_env, HOME=home)  # private HOME: nothing to hijack in /tmp
        # sys.path is taken before anything is imported (imports may extend
        # it), without the '' of -c
        code = ("import sys; path = sys.path[1:]; import json; from coursekit.sandbox.forkserver import serve; "
                "serve(sys.argv[1], json.loads(sys.argv[2]), path, tuple(sys.argv[3:]))")
        self.log = os.path.join(self.dir, "server.log")  # import-time chatter (debugpy, ...)
        with open(self.log, "wb") as log:
            # the warm server forks kernels: it must be a process apart from the grader's
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, self.socket, json.dumps(self.base_env), *preload],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=home,
                start_new_session=True)
        t0 = time.monotonic()
        ready = select.select([self.proc.stdout], [], [], startup_timeout)[0]
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            with open(self.log, "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            self.close()
            raise _enter.SandboxError(f"the warm kernel server did not start (exit {self.proc.poll()}): {tail}")
        self.startup_s = time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# The server of this process when a kernel manager started it itself (plain ``nbgrader autograde``,
# where no ``coursekit grade`` run started one): one per process, at its first kernel, closed when
# the process exits (the zygote also exits when its stdin, a pipe from this process, closes).
_process_server: dict = {}
_process_lock = threading.Lock()


def process_server(log=None) -> str | None:
    """The socket of this process's own warm server, started at the first call; None when it cannot
    start (the reason is logged once, and every kernel of the process then starts cold, sandboxed the
    same).  Every later kernel of the process, the notebook's and each trusted re-check's child,
    forks from it instead of importing the course's libraries again."""
    with _process_lock:
        if "socket" not in _process_server:
            try:
                server = WarmServer()
            except Exception as exc:  # noqa: BLE001 - cold kernels are the fallback, said once
                _process_server["socket"] = None
                if log is not None:
                    log.warning("sandbox: no warm kernel server for this run (%s: %s); kernels start cold",
                                type(exc).__name__, exc)
            else:
                _process_server["socket"] = server.socket
                _process_server["server"] = server
                atexit.register(server.close)
                if log is not None:
                    log.info("sandbox: warm kernel server started in %.1f s", server.startup_s)
        return _process_server["socket"]


@contextlib.contextmanager
def warm_kernels(preload=PRELOAD):
    """Run a warm kernel server for the ``with`` block; every sandboxed
    kernel started meanwhile (here or in child processes, which inherit
    ``COURSEKIT_WARM_KERNELS``) forks from it instead of starting cold."""
    server = WarmServer(preload)
    previous = os.environ.get(WARM_VARIABLE)
    os.environ[WARM_VARIABLE] = server.socket
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop(WARM_VARIABLE, None)
        else:
            os.environ[WARM_VARIABLE] = previous
        server.close()
