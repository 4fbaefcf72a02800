"""Isolation of the kernel that runs student code, and its fast start.

Every kernel that executes a submission -- plain ``nbgrader autograde`` in the
course root (``SandboxExecute`` in ``nbconfig``), ``coursekit grade``, the
trusted re-checks -- runs inside a sandbox built with bubblewrap (``bwrap``)
and Linux namespaces:

* files: it sees a read-only system (/usr, /etc), the Python installation and
  venv, its assignment's release folder, and read-write only its working copy
  (``autograded/<student>/<assignment>``) and its socket folder; plus a private
  /tmp and /dev/shm (size-capped tmpfs).  Not source/, gradebook.db, other
  students' folders, .coursekit/, the grader's home;
* no network (own network namespace; ZMQ runs over unix sockets);
* own pid namespace: it cannot see or signal the grader or its supervisor;
* runs as an unprivileged uid (65534) inside a user namespace, with no
  capabilities and ``no_new_privs``;
* limits: CPU time, memory (RLIMIT_DATA + RLIMIT_AS), processes
  (RLIMIT_NPROC in the kernel's own user namespace, plus a pids cgroup per
  kernel where the grader may make one: a budget per sandbox), file size
  (RLIMIT_FSIZE), open files, /tmp size; output to the grader is capped
  (client side: bytes, and messages per cell and per notebook) and single
  messages are size-bounded; what the kernel made in its working copy is
  removed once it ends (nbgrader would copy it all to feedback/);
* environment: an allow-list only (no secrets of the grader's environment).

If the sandbox cannot be built the kernel does not start and the error says
why (fail closed).  ``COURSEKIT_SANDBOX=off`` runs kernels unsandboxed, with a
warning, for development only.

Modules: ``_enter`` (stdlib-only sandbox entry, also the cold launcher; one
self-contained script, run as ``python -I -S _enter.py``), ``spec`` (what one
sandbox is: environment, mounts, limits), ``launch`` (the provisioner: cold and
warm start, teardown), ``output`` (the client side: bounded output),
``manager`` (the jupyter_client kernel manager and nbgrader preprocessor),
``forkserver`` (warm kernels: ``warm_kernels()``), ``check`` (``coursekit
sandbox-check`` and start-up measurements).
"""
from __future__ import annotations

from ._enter import SandboxError
from .manager import (BWRAP_VARIABLE, DISABLE_VARIABLE, WARM_VARIABLE, SandboxExecute,
                      SandboxKernelManager, wrap_command)

__all__ = ["SandboxError", "SandboxKernelManager", "SandboxExecute", "warm_kernels", "wrap_command",
           "measure_startup",
           "DISABLE_VARIABLE", "WARM_VARIABLE", "BWRAP_VARIABLE", "add_arguments", "run"]


def warm_kernels(*args, **kwargs):
    """See ``coursekit.sandbox.forkserver.warm_kernels``."""
    from .forkserver import warm_kernels as _warm

    return _warm(*args, **kwargs)


def measure_startup(repeat: int = 3) -> dict:
    """See ``coursekit.sandbox.check.measure_startup`` (seconds)."""
    from .check import measure_startup as _measure

    return _measure(repeat)


def add_arguments(parser) -> None:
    from .check import add_arguments as _add

    _add(parser)


def run(args) -> int:
    from .check import run as _run

    return _run(args)
