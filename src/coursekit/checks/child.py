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
import shutil
import signal
import subprocess
import sys
import tempfile
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
                     max_bytes: int = 8 << 20) -> ChildResult:
    """Execute ``cells`` in a sandboxed child, then each of the probe's
    ``SCENARIOS[name](target_class, torch, spec[name])`` there."""
    request = json.dumps({
        "harness": HARNESS.read_text(encoding="utf-8"),
        "cells": cells, "probe": probe, "target": target, "spec": spec,
        "cell_timeout": cell_timeout, "scenario_timeout": scenario_timeout,
    }).encode("utf-8")
    argv = [sys.executable, "-I", "-c", BOOT]
    start = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="ck-trusted-"))  # the child's only writable folder
    try:
        try:
            proc = _launch(argv, folder)
        except Exception as exc:  # SandboxError, OSError: no sandbox, no run
            return ChildResult(None, f"could not start the sandboxed child: {exc}", 0.0)
        try:
            out, failure = _exchange(proc, request, timeout, max_bytes)
        finally:
            _kill_group(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
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


def _launch(argv: list[str], workdir: Path) -> subprocess.Popen:
    """Start ``argv`` inside the kernel sandbox (fail closed: no sandbox, no run)."""
    wrapped, env = sandbox_argv(argv, workdir)
    return subprocess.Popen(wrapped, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=str(workdir), start_new_session=True)


def child_env(argv: list[str]) -> dict[str, str]:
    """The kernel's allow-listed environment (nothing of the grader's leaks in),
    in fast mode, with a non-interactive matplotlib."""
    from coursekit.sandbox.manager import kernel_env

    env = kernel_env(os.environ, argv)
    env.update({"NBGRADER_EXECUTION": "autograde", "COURSE_MODE": "fast", "MPLBACKEND": "Agg",
                "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.matplotlib", "OMP_NUM_THREADS": "1"})
    return env


def sandbox_argv(argv: list[str], workdir: Path) -> tuple[list[str], dict[str, str]]:
    """``argv`` wrapped by the course's kernel sandbox (``coursekit.sandbox``), and
    the environment to start the wrapper with.

    With the sandbox switched off for development (``COURSEKIT_SANDBOX=off``,
    when kernels run unsandboxed too) the child runs unsandboxed as well, with
    the same scrubbed environment, in its own empty folder."""
    from coursekit import sandbox
    from coursekit.sandbox.manager import disabled

    env = child_env(argv)
    if disabled():
        return argv, env
    return sandbox.wrap_command(argv, workdir=str(workdir), env=env)
