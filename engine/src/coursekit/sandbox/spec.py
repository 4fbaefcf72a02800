"""What one sandbox is: the kernel's environment, the paths it may read, and the spec ``_enter`` builds.

Owns the environment switches (``COURSEKIT_SANDBOX``, ``COURSEKIT_WARM_KERNELS``,
``COURSEKIT_BWRAP``), the allow-list environment of a kernel (``kernel_env``), the
read-only paths its Python needs, the submission a kernel runs (``Submission``:
which release folder it may mount, whose events), the refusals of a working
folder or interpreter the sandbox could not safely use, and ``build_spec``: the
JSON spec (bwrap, mounts, uid, limits) that both the cold launcher and the warm
fork server turn into the same bubblewrap sandbox.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

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
