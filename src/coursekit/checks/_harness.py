"""Child side of the trusted checks: the program that re-runs a student's code.

This file is never imported by the grader.  Its *source text* travels in the
request (see ``coursekit.checks.child``) to a fresh sandboxed kernel, which
executes it with ``REQUEST`` set.  Everything in that kernel is under the
student's control, so the harness only produces DATA: the probe's
measurements of the student's layer (numbers, strings, booleans) and the names
of the aten operators the layer dispatched, written as JSON to
``REQUEST["answer"]``.  The grader compares those numbers with its own
references; nothing computed here is believed.

Request: {"cells": [source, ...], "probe": source defining SCENARIOS,
"target": class name, "spec": {scenario: inputs}, "cell_timeout": s,
"scenario_timeout": s, "answer": file name}.  Answer: {"cells": [{"error":
str|None}, ...], "probe": {scenario: {"error": str|None, ...measurements}},
"ops": [aten op, ...], "error": str|None}.
"""
import contextlib
import json
import os
import signal


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


class _Null:
    """Where the student's prints go while the harness runs (not to the grader)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _quiet():
    null = _Null()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(null))
    stack.enter_context(contextlib.redirect_stderr(null))
    return stack


def _alarm(seconds):
    signal.signal(signal.SIGALRM, _on_alarm)  # again each time: a cell may have replaced it
    signal.alarm(max(1, int(seconds)))


def main(request):
    answer = {"cells": [], "probe": None, "ops": [], "error": None}
    try:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode  # before any student code runs

        class OpRecorder(TorchDispatchMode):
            """Names of the aten operators dispatched while the probe runs."""

            def __init__(self):
                super().__init__()
                self.ops = set()

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.ops.add(str(func.name()))
                return func(*args, **(kwargs or {}))

        probe_ns = {"__name__": "coursekit_probe"}
        exec(compile(request["probe"], "<probe>", "exec"), probe_ns)
        scenarios = probe_ns["SCENARIOS"]
        shell = get_ipython()  # noqa: F821 (the kernel's shell)

        for source in request["cells"]:
            error = None
            try:
                with _quiet():
                    _alarm(request["cell_timeout"])
                    try:
                        result = shell.run_cell(source, store_history=False, silent=True)
                    finally:
                        signal.alarm(0)
                if result.error_before_exec is not None:
                    error = repr(result.error_before_exec)[:300]
                elif result.error_in_exec is not None:
                    error = repr(result.error_in_exec)[:300]
            except BaseException as exc:  # a timeout, SystemExit...: go on like the kernel does
                error = repr(exc)[:300]
            answer["cells"].append({"error": error})

        target = shell.user_ns.get(request["target"])
        torch.set_num_threads(1)  # tiny tensors: a thread pool only costs time
        recorder = OpRecorder()
        answer["probe"] = {}
        for name, scenario in scenarios.items():
            # one alarm per scenario: a hang costs that scenario, not the others
            try:
                with _quiet():
                    _alarm(request["scenario_timeout"])
                    try:
                        with recorder:
                            data = scenario(target, torch, request["spec"][name])
                    finally:
                        signal.alarm(0)
                answer["probe"][name] = {"error": None, **data}
            except _Timeout:
                answer["probe"][name] = {"error": "timeout"}
            except Exception as exc:
                answer["probe"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        answer["ops"] = sorted(recorder.ops)
    except BaseException as exc:
        answer["error"] = repr(exc)[:500]
    data = json.dumps(answer, allow_nan=True)
    partial = request["answer"] + ".part"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(partial, request["answer"])


main(REQUEST)  # noqa: F821 (set by the boot code)
