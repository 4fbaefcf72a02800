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

This module owns the manager, its configuration traits (``c.SandboxKernelManager.*``),
``wrap_command`` and ``SandboxExecute``; what a sandbox is lives in ``spec``, how a
kernel is started in it and cleaned up after in ``launch``, and the bounded output
(the notes written where output is cut) in ``output``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid

from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode, default

from ._enter import SandboxError
# The parts of a sandboxed kernel live in sibling modules (spec: what a sandbox is; launch: starting
# and tearing down; output: bounded output); their names stay importable from here, where
# configs, other modules and the tests have always found them.
from .launch import SandboxProvisioner, WarmProcess, WarmUnavailable, _sweep_rundirs
from .output import OUTPUT_NOTICES, CappedIOPubChannel, SandboxKernelClient, _BoundedSockets
from .spec import (_ENTER_SCRIPT, BWRAP_VARIABLE, DISABLE_VARIABLE, FIXED_ENV, PASS_ENV, PER_KERNEL_ENV,
                   WARM_VARIABLE, Submission, build_spec, check_interpreter, check_workdir, course_layout,
                   disabled, kernel_env, python_paths, submission_of)

__all__ = ["SandboxKernelManager", "SandboxExecute", "wrap_command",
           "SandboxProvisioner", "WarmProcess", "WarmUnavailable",
           "CappedIOPubChannel", "SandboxKernelClient", "OUTPUT_NOTICES",
           "BWRAP_VARIABLE", "DISABLE_VARIABLE", "WARM_VARIABLE", "FIXED_ENV", "PASS_ENV", "PER_KERNEL_ENV",
           "Submission", "SandboxError", "build_spec", "check_interpreter", "check_workdir", "course_layout",
           "disabled", "kernel_env", "python_paths", "submission_of"]


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
    start_warm_server = Bool(True, config=True,
                             help="when no warm fork server is running (plain `nbgrader autograde`), start "
                                  "one for this process at its first kernel, so that every later kernel and "
                                  "every trusted re-check's child fork warm instead of importing the course's "
                                  "libraries again (`coursekit grade` starts its own for a whole run)")
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
        return "coursekit.sandbox.output.SandboxKernelClient"

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
        if not self.use_warm:
            return None
        path = os.environ.get(WARM_VARIABLE)
        if path:  # a run's server (`coursekit grade`, a Dask worker): that one or none
            return path if os.path.exists(path) else None
        if self.start_warm_server:
            from .forkserver import process_server
            return process_server(self.log)
        return None

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
