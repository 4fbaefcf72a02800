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
"scenario_timeout": s, "answer": file name, "guard_ops": regex or null,
"guard_probe": one line of Python, "preload": [module, ...]}.  Each scenario is
called as ``scenario(target, torch, inputs)`` (``torch`` is None where PyTorch is
not installed).  Answer: {"cells": [{"error":
str|None}, ...], "probe": {scenario: {"error": str|None, ...measurements}},
"ops": [aten op, ...], "guard": bool, "spawned": [str, ...], "threads": [int, int],
"error": str|None}.

Before the first line of the student's code runs, the harness:

- when the course asks for a guard (``guard_ops``, e.g. every aten
  normalisation kernel: batch / layer / group / instance / rms norm, forward
  and backward, every overload), makes those kernels raise, by registering
  kernels of its own at the dispatcher for every dispatch key that has one.
  Dispatcher registrations are global, so this holds for every thread and
  every way of reaching the op (``F.batch_norm`` by any name,
  ``torch.ops.aten``, the autograd graph, TorchScript); PyTorch's Python
  decompositions of those ops (``torch._refs``, ``torch._decomp``) are
  replaced too.  The registration is held by no Python name the student's
  code could reach to undo it; after the student's code, the course's
  ``guard_probe`` line must still meet the guard;
- installs an audit hook (it cannot be removed) that refuses to start a
  process (fork, exec, spawn, subprocess, system), to load or call native code
  through ctypes, and to walk the garbage collector's objects; and counts the
  threads started;
- opens its answer channel: ``answer.json`` was created and opened by the
  grader before the kernel started; the harness opens it for writing and
  removes its name, so later code cannot replace, rename or reopen it by path.
  The answer is serialised with functions taken before the student's code
  runs (a patched ``json.dumps`` or ``os.replace`` changes nothing).

A submission can still forge numbers in its own process, but forged numbers
only score when they equal the grader's references for inputs it draws after
the code was written: without the built-in kernels, another process or native
code, the only way to produce them is an implementation of its own.
"""
import contextlib
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
    """Nothing the student's code prints or displays leaves the child: the re-check reads no output, and a
    flood of display messages would each cross the kernel's iopub socket and eat the child's time."""
    null = _Null()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(null))
    stack.enter_context(contextlib.redirect_stderr(null))
    import builtins
    from unittest import mock

    shell = getattr(builtins, "get_ipython", lambda: None)()
    if shell is not None and getattr(shell, "display_pub", None) is not None:
        stack.enter_context(mock.patch.object(shell.display_pub, "publish", lambda *args, **kwargs: None))
    return stack


def _alarm(seconds):
    signal.signal(signal.SIGALRM, _on_alarm)  # again each time: a cell may have replaced it
    signal.alarm(max(1, int(seconds)))


GUARD_MESSAGE = "coursekit: this library kernel is disabled in the trusted re-check"
# audit events refused while the student's code runs: other processes, native code, the object graph
REFUSED = ("os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.startfile",
           "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
           "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata",
           "ctypes.cdata/buffer", "ctypes.PyObj_FromPtr", "ctypes.addressof", "ctypes.string_at",
           "ctypes.wstring_at", "ctypes.create_string_buffer",
           "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.setprofile", "sys.settrace",
           "sys.monitoring.register_callback", "cpython.PyInterpreterState_New", "cpython.run_command",
           "cpython.run_file", "cpython.run_module", "cpython.run_startup", "cpython.run_stdin",
           "mmap.__new__")


def _disable_kernels(torch, ops):
    """Every aten kernel whose operator name matches ``ops`` raises from now on, in every
    thread.  Returns the number of kernels replaced (0 means the guard is not in place)."""
    import re
    import sys
    import warnings

    pattern = re.compile(ops)

    def refuse(*args, **kwargs):
        raise RuntimeError(GUARD_MESSAGE)

    # every dispatch key of this build: CPU and accelerators, nested and quantized
    # tensors, composites, autograd, functorch, autocast
    keys = list(torch._C.DispatchKey.__members__)
    registrar = torch._C._dispatch_library("IMPL", "aten", "", "<coursekit-guard>", 0)
    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
        for name in sorted(torch._C._dispatch_get_all_op_names()):
            if not name.startswith("aten::") or not pattern.search(name):
                continue
            for key in keys:
                try:
                    if torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
                        registrar.impl(name[len("aten::"):], key, refuse, False)
                        count += 1
                except Exception:
                    pass  # a key this build does not know
    # Keep the registration alive with no Python name pointing at it: nothing the
    # student's code can reach (the object graph is refused below) can reset it.
    import ctypes
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(registrar))
    del registrar
    # PyTorch's own Python implementations of the same layers
    for module_name in [m for m in list(sys.modules) if m.startswith(("torch._refs", "torch._decomp", "torch._prims"))]:
        module = sys.modules.get(module_name)
        for attr in list(getattr(module, "__dict__", {})):
            if pattern.search(attr) and callable(getattr(module, attr, None)):
                try:
                    setattr(module, attr, refuse)
                except Exception:
                    pass
    try:
        from torch._decomp import decomposition_table
        for op in list(decomposition_table):
            if pattern.search(str(op)):
                decomposition_table[op] = refuse
    except Exception:
        pass
    return count


def _guard_works(torch, probe):
    """True when the course's probe line (which reaches a guarded kernel) raises the guard's error
    (checked after the student's code too)."""
    try:
        exec(probe, {"torch": torch})
    except RuntimeError as exc:
        return GUARD_MESSAGE in str(exc)
    except Exception:
        return False
    return False


def _install_audit(spawned):
    """Refuse processes, native code and the object graph; note threads (an audit hook cannot be removed)."""
    import sys

    refused = frozenset(REFUSED)
    prefix = ("os.exec", "os.spawn", "ctypes.")

    def hook(event, args):
        if event in refused or event.startswith(prefix):
            if len(spawned) < 50:
                spawned.append(event)
            raise PermissionError(f"{event} is not allowed in the trusted re-check")
    sys.addaudithook(hook)

    import _thread
    import threading

    def counted(original):
        def start(*args, **kwargs):
            if len(spawned) < 50:
                spawned.append("thread")
            return original(*args, **kwargs)
        return start
    for module, name in ((_thread, "start_new_thread"), (_thread, "start_joinable_thread"),
                         (threading, "_start_new_thread"), (threading, "_start_joinable_thread")):
        if hasattr(module, name):
            setattr(module, name, counted(getattr(module, name)))


def _preload(names):
    """Import, before the audit starts, what the course's given code imports and what
    starts helpers on first use (matplotlib's font cache runs a subprocess and a
    thread when it is built): those are the course's (``preload`` of the request), not
    the student's."""
    import importlib
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _threads():
    import os
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _serialiser():
    """A JSON writer made of references taken now (the student's code may patch json, float, repr...)."""
    from json.encoder import encode_basestring_ascii as quote
    float_repr, int_repr = float.__repr__, int.__repr__
    isinstance_, dict_, list_, tuple_, str_, bool_, int_, float_ = isinstance, dict, list, tuple, str, bool, int, float
    join, items = str.join, dict.items

    def dump(value, depth=0):
        if depth > 64:
            raise ValueError("too deep")
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if type(value) is str_:
            return quote(value)
        if type(value) is int_:
            return int_repr(value)
        if type(value) is float_:
            if value != value:
                return "NaN"
            if value in (float("inf"), float("-inf")):
                return "Infinity" if value > 0 else "-Infinity"
            return float_repr(value)
        if type(value) is dict_:
            return "{" + join(",", [quote(str_(k)) + ":" + dump(v, depth + 1) for k, v in items(value)]) + "}"
        if type(value) in (list_, tuple_):
            return "[" + join(",", [dump(v, depth + 1) for v in value]) + "]"
        return quote(f"<{type(value).__name__}>")
    return dump


def _answer_channel(path):
    """The answer file the grader created and holds open: opened here, its name removed."""
    import os
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    os.unlink(path)
    write, truncate, close, encode = os.pwrite, os.ftruncate, os.close, str.encode

    def send(text):
        data = encode(text, "utf-8")
        truncate(fd, 0)
        done = 0
        while done < len(data):
            done += write(fd, data[done:], done)
        close(fd)
    return send


def main(request):
    answer = {"cells": [], "probe": None, "ops": [], "guard": False, "spawned": [], "threads": [0, 0],
              "error": None}
    send = _answer_channel(request["answer"])
    dump = _serialiser()
    try:
        try:
            import torch
            from torch.utils._python_dispatch import TorchDispatchMode  # before any student code runs
        except ImportError:  # a course without PyTorch: no operators to trace, no kernels to guard
            torch = TorchDispatchMode = None

        class OpRecorder(TorchDispatchMode or object):
            """Names of the aten operators dispatched while the probe runs (none without PyTorch)."""

            def __init__(self):
                super().__init__()
                self.ops = set()

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.ops.add(str(func.name()))
                return func(*args, **(kwargs or {}))

            if TorchDispatchMode is None:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return False

        probe_ns = {"__name__": "coursekit_probe"}
        exec(compile(request["probe"], "<probe>", "exec"), probe_ns)
        scenarios = probe_ns["SCENARIOS"]
        shell = get_ipython()  # noqa: F821 (the kernel's shell)
        guard_ops, guard_probe = request.get("guard_ops"), request.get("guard_probe") or ""
        if guard_ops and torch is None:
            raise RuntimeError("the course asks for a kernel guard, and PyTorch is not installed")
        guarded = _disable_kernels(torch, guard_ops) > 0 and _guard_works(torch, guard_probe) if guard_ops else None
        _preload(request.get("preload") or ())
        # Shell escapes (`!nvidia-smi`, `files = !ls`, common in Colab notebooks) become no-ops here: the
        # re-check needs the student's Python definitions, not their shell commands, and a refused process
        # would otherwise make an honest submission untrusted.  Code that calls subprocess itself still counts.
        shell.system = lambda *args, **kwargs: None
        shell.getoutput = lambda *args, **kwargs: []
        spawned = []
        threads_before = _threads()
        _install_audit(spawned)

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

        wanted = request["target"]  # one class name, or several: then a {name: object} dict
        target = ({str(n): shell.user_ns.get(str(n)) for n in wanted} if isinstance(wanted, list)
                  else shell.user_ns.get(wanted))
        if torch is not None:
            torch.set_num_threads(1)  # tiny tensors: a thread pool only costs time
        recorder = OpRecorder()
        answer["probe"], answer["scenario_ops"], all_ops = {}, {}, set()
        for name, scenario in scenarios.items():
            recorder.ops = set()
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
            answer["scenario_ops"][name] = sorted(recorder.ops)
            all_ops |= recorder.ops
        answer["ops"] = sorted(all_ops)
        answer["guard"] = bool(guarded and _guard_works(torch, guard_probe)) if guard_ops else "off"
        answer["spawned"] = list(spawned)
        answer["threads"] = [threads_before, _threads()]
    except BaseException as exc:
        answer["error"] = repr(exc)[:500]
    try:
        text = dump(answer)
    except BaseException as exc:
        text = dump({"error": f"answer not serialisable: {type(exc).__name__}"})
    send(text)


main(REQUEST)  # noqa: F821 (set by the boot code)
