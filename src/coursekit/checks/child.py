"""Running a student's code in a sandboxed child process, for the trusted checks.

The parent (the grader) sends the student's code cells, the assignment's probe
and the test inputs as one JSON request; the child (``_harness.py``, run by a
fresh interpreter inside the kernel sandbox) executes the cells, probes the
student's layer and answers with JSON data.  The parent never unpickles or
executes anything that comes back; it reads at most ``max_bytes`` within
``timeout`` seconds, then kills the child's whole process group.  Any failure
(timeout, crash, oversized or malformed answer) is reported, never guessed
around: the caller fails closed.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HARNESS = Path(__file__).with_name("_harness.py")
# The child reads its request, then execs the harness it contains: the sandbox
# only has to expose the interpreter and its packages, never the course tree.
BOOT = (
    "import json,sys;r=json.loads(sys.stdin.buffer.read(1<<24).decode('utf-8'));"
    "exec(compile(r.pop('harness'),'<coursekit-harness>','exec'),"
    "{'__name__':'coursekit_harness','REQUEST':r})"
)


@dataclass
class ChildResult:
    answer: dict | None      # the child's JSON answer, when one came back whole
    failure: str | None      # why no usable answer came back (English, for logs)
    wall: float              # seconds


def run_student_code(cells: list[str], probe: str, target: str, spec: dict, *,
                     timeout: float = 90, cell_timeout: float = 30, scenario_timeout: float = 20,
                     max_bytes: int = 8 << 20, workdir: Path | None = None) -> ChildResult:
    """Execute ``cells`` in a sandboxed child, then each of the probe's
    ``SCENARIOS[name](target_class, torch, spec[name])`` there."""
    request = json.dumps({
        "harness": HARNESS.read_text(encoding="utf-8"),
        "cells": cells, "probe": probe, "target": target, "spec": spec,
        "cell_timeout": cell_timeout, "scenario_timeout": scenario_timeout,
    }).encode("utf-8")
    argv = [sys.executable, "-I", "-c", BOOT]
    start = time.monotonic()
    try:
        proc = _launch(argv, workdir)
    except OSError as exc:
        return ChildResult(None, f"could not start the sandboxed child: {exc}", 0.0)
    try:
        out, failure = _exchange(proc, request, timeout, max_bytes)
    finally:
        _kill_group(proc)
    wall = time.monotonic() - start
    if failure:
        return ChildResult(None, failure, wall)
    try:
        answer = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ChildResult(None, "the child's answer is not valid JSON", wall)
    if not isinstance(answer, dict):
        return ChildResult(None, "the child's answer is not a JSON object", wall)
    return ChildResult(answer, None, wall)


def _exchange(proc: subprocess.Popen, request: bytes, timeout: float, max_bytes: int) -> tuple[bytes, str | None]:
    deadline = time.monotonic() + timeout
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        return b"", "the child exited before reading its request"
    chunks, size = [], 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", f"timeout after {timeout:.0f} s"
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                return b"", f"answer larger than {max_bytes} bytes"
            chunks.append(chunk)
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass  # the answer is complete; the group is killed anyway
    if not chunks:
        return b"", f"the child died without answering (exit status {proc.poll()})"
    return b"".join(chunks), None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except Exception:
            pass


def _launch(argv: list[str], workdir: Path | None) -> subprocess.Popen:
    """Start ``argv`` inside the kernel sandbox (fail closed: no sandbox, no run)."""
    wrapped, env = sandbox_argv(argv, workdir)
    return subprocess.Popen(wrapped, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def child_env() -> dict[str, str]:
    """A minimal environment: nothing of the instructor's (paths, tokens) leaks in."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "IPYTHONDIR": "/tmp/.ipython",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/.mpl",
        "NBGRADER_EXECUTION": "autograde",   # fast mode, as in the kernel
        "COURSE_MODE": "fast",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return env


def sandbox_argv(argv: list[str], workdir: Path | None) -> tuple[list[str], dict[str, str]]:
    """``argv`` wrapped by the course's kernel sandbox, and the environment to run it in."""
    try:
        from coursekit import sandbox  # the sandbox owns the isolation policy
        wrap = sandbox.wrap_command
    except (ImportError, AttributeError):
        wrap = _bwrap_minimal
    return wrap(argv, workdir=workdir, env=child_env())


def _bwrap_minimal(argv: list[str], workdir: Path | None, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Stand-in until the kernel sandbox offers ``wrap_command``: bubblewrap with
    only the system, the interpreter and its packages visible (read-only), no
    network, its own pid namespace, an empty private /tmp."""
    import shutil

    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise OSError("bubblewrap (bwrap) is not installed: run `make setup`")
    binds = ["/usr", "/bin", "/lib", "/lib64", "/etc/alternatives", "/etc/ssl",
             sys.base_prefix, sys.prefix]
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in dict.fromkeys(binds):
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    args += ["--chdir", "/tmp", "--"]
    return args + argv, env
