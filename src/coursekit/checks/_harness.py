"""Child side of the trusted checks: the program that runs a student's code.

This file is never imported by the grader.  Its *source text* is sent, with the
student's cells and the assignment's probe, to a fresh interpreter started in
the kernel sandbox (see ``coursekit.checks.child``).  Everything in that
process is under the student's control, so it only produces DATA: the probe's
measurements of the student's layer as JSON (numbers, strings, booleans) plus
the names of the aten operators the layer dispatched.  The grader compares
those numbers with its own references; nothing computed here is believed.

Protocol: one JSON object on stdin (read by the boot line, handed over as
``REQUEST``)
    {"cells": [source, ...], "probe": source defining SCENARIOS,
     "target": class name, "spec": {scenario: inputs},
     "cell_timeout": s, "scenario_timeout": s}
and one JSON object on the original stdout, written once at the end
    {"cells": [{"error": str|None}, ...],
     "probe": {scenario: {"error": str|None, ...measurements}},
     "ops": [aten op, ...], "error": str|None}.
The student's own prints go to /dev/null, so they cannot corrupt the answer
by accident (on purpose they can, and the grader then fails closed).
"""
import json
import os
import signal
import sys


class _CellTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _CellTimeout()


def _quiet_shell():
    """An IPython shell like the kernel's (magics, get_ipython), without history or colours."""
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):  # %matplotlib inline: nothing to show here
            pass

    return Shell.instance(config=config)


def main(request):
    # Keep a private copy of stdout for the answer; silence the student's output.
    answer_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    answer = {"cells": [], "probe": None, "ops": [], "error": None}
    try:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

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

        shell = _quiet_shell()
        for source in request["cells"]:
            error = None
            signal.signal(signal.SIGALRM, _on_alarm)  # again: a cell may have replaced it
            signal.alarm(int(request.get("cell_timeout", 30)))
            try:
                result = shell.run_cell(source, store_history=False, silent=True)
                if result.error_before_exec is not None:
                    error = repr(result.error_before_exec)[:300]
                elif result.error_in_exec is not None:
                    error = repr(result.error_in_exec)[:300]
            except _CellTimeout:
                error = "timeout"
            except BaseException as exc:  # SystemExit and friends: go on like the kernel does
                error = repr(exc)[:300]
            finally:
                signal.alarm(0)
            answer["cells"].append({"error": error})

        target = shell.user_ns.get(request["target"])
        recorder = OpRecorder()
        answer["probe"] = {}
        for name, scenario in scenarios.items():
            # one alarm per scenario: a hang costs that scenario, not the others
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.alarm(int(request.get("scenario_timeout", 20)))
            try:
                with recorder:
                    data = scenario(target, torch, request["spec"][name])
                answer["probe"][name] = {"error": None, **data}
            except _CellTimeout:
                answer["probe"][name] = {"error": "timeout"}
            except Exception as exc:
                answer["probe"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            finally:
                signal.alarm(0)
        answer["ops"] = sorted(recorder.ops)
    except BaseException as exc:
        answer["error"] = repr(exc)[:500]
    data = json.dumps(answer, allow_nan=True).encode("utf-8")
    view = memoryview(data)
    while view:
        written = os.write(answer_fd, view)
        view = view[written:]
    os._exit(0)  # skip the student's atexit handlers and threads


main(REQUEST)  # noqa: F821 (set by the boot line)
