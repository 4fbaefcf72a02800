"""Running a student's code once more, in a fresh sandboxed kernel, for the trusted checks.

The grader writes one JSON request (the harness program, the student's code
cells, the assignment's probe, the test inputs) into an empty folder, starts a
kernel there with the course's sandboxed kernel manager
(``coursekit.sandbox.SandboxKernelManager``: same isolation and limits as the
kernel that executed the notebook, and its warm fork server when one is
running, so the child costs milliseconds, not a torch import), and asks it to
run the harness (``_harness.py``).  The harness answers with JSON data in
``answer.json``, a file the grader creates and opens for reading *before* the
kernel starts: the harness opens it and removes its name before any student
code runs, so the grader reads the very file the harness wrote, whatever the
student's code did to the folder (renamed, replaced or recreated files).  The
grader never unpickles or executes anything that comes back; it reads at most
``max_bytes`` after the kernel replied within ``timeout`` seconds and was shut
down.  Any failure (timeout, dead
kernel, oversized or malformed answer) is reported, never guessed around: the
caller fails closed.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HARNESS = Path(__file__).with_name("_harness.py")
REQUEST, ANSWER = "request.json", "answer.json"
# What the kernel is asked to execute: read the request, forget it, run the harness.
BOOT = (
    "import json as _j, os as _o\n"
    f"_r = _j.load(open({REQUEST!r}, encoding='utf-8')); _o.remove({REQUEST!r})\n"
    "exec(compile(_r.pop('harness'), '<coursekit-harness>', 'exec'), "
    "{'__name__': 'coursekit_harness', 'REQUEST': _r})\n"
)


@dataclass
class ChildResult:
    answer: dict | None      # the child's JSON answer, when one came back whole
    failure: str | None      # why no usable answer came back (English, for logs)
    wall: float              # seconds
    mode: str | None = None  # how the child's kernel started: "warm", "cold" (None: it never started)


def run_student_code(cells: list[str], probe: str, target, spec: dict, *,
                     timeout: float = 90, cell_timeout: float = 30, scenario_timeout: float = 20,
                     max_bytes: int = 8 << 20, config=None, guard=None,
                     preload: tuple[str, ...] = ()) -> ChildResult:
    """Execute ``cells`` in a fresh sandboxed kernel, then each of the probe's
    ``SCENARIOS[name](target_class, torch, spec[name])`` there.

    ``config``: the traitlets config of the grading app (limits of
    ``SandboxKernelManager``); ``guard``: the library kernels to disable while the
    code runs (a :class:`coursekit.checks.KernelGuard`, None for none); ``preload``: modules
    imported before the student's code runs (the course's, see ``AssignmentChecks.preload``)."""
    start = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="ck-trusted-"))  # the kernel's only writable folder
    try:
        request = {"harness": HARNESS.read_text(encoding="utf-8"), "cells": cells, "probe": probe,
                   "target": target, "spec": spec, "cell_timeout": cell_timeout,
                   "scenario_timeout": scenario_timeout, "answer": ANSWER,
                   "guard_ops": guard.ops if guard else None, "guard_probe": guard.probe if guard else None,
                   "preload": list(preload)}
        (folder / REQUEST).write_text(json.dumps(request), encoding="utf-8")
        # the answer channel: created and held open here, before any code of the kernel runs
        answer_path = folder / ANSWER
        answer_path.touch(mode=0o666)
        os.chmod(answer_path, 0o666)  # the kernel may run as another uid (root graders)
        reader = os.open(answer_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        started: dict = {}
        try:
            try:
                failure = _run_sync(_execute(folder, timeout, config, started))
            except Exception as exc:  # SandboxError, a kernel that never came up: no sandbox, no run
                failure = f"could not run the sandboxed kernel: {type(exc).__name__}: {exc}"
            wall = time.monotonic() - start
            if failure:
                return ChildResult(None, failure, wall, started.get("mode"))
            result = _read_answer(reader, max_bytes, wall)
            result.mode = started.get("mode")
            return result
        finally:
            os.close(reader)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_answer(fd: int, max_bytes: int, wall: float) -> ChildResult:
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return ChildResult(None, "the child died without answering", wall)
        if size > max_bytes:
            return ChildResult(None, f"answer larger than {max_bytes} bytes", wall)
        data = os.pread(fd, max_bytes + 1, 0)
        answer = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return ChildResult(None, "the child's answer is not valid JSON", wall)
    if not isinstance(answer, dict):
        return ChildResult(None, "the child's answer is not a JSON object", wall)
    return ChildResult(answer, None, wall)


async def _execute(folder: Path, timeout: float, config, started: dict) -> str | None:
    """Start the kernel in ``folder``, run BOOT, wait for its reply; None when it replied.
    ``started["mode"]``: how the kernel started (warm or cold)."""
    from coursekit.sandbox import SandboxKernelManager

    km = SandboxKernelManager(config=config) if config is not None else SandboxKernelManager()
    deadline = time.monotonic() + timeout
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde", "COURSE_MODE": "fast"}
    await km.start_kernel(cwd=str(folder), env=env)
    started["mode"] = km.sandbox_mode
    kc = km.client()
    kc.start_channels()
    try:
        await asyncio.wait_for(kc.wait_for_ready(), timeout=max(1.0, deadline - time.monotonic()))
        msg_id = kc.execute(BOOT, silent=True, store_history=False, allow_stdin=False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"timeout after {timeout:.0f} s"
            try:
                reply = await kc.get_shell_msg(timeout=min(left, 1.0))
            except Exception:  # queue.Empty: nothing yet
                await _drain(kc)
                if not await km.is_alive():
                    return "the child died without answering (kernel died)"
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return None
    finally:
        kc.stop_channels()
        try:
            await km.shutdown_kernel(now=True)
        except Exception:
            pass


async def _drain(kc) -> None:
    """Throw away what the student's cells printed (bounded by the client's output cap)."""
    try:
        while True:
            await kc.get_iopub_msg(timeout=0)
    except Exception:
        return


def _run_sync(coro):
    from jupyter_core.utils import run_sync

    async def wrapper():
        return await coro
    return run_sync(wrapper)()
