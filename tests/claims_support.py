"""Shared machinery of the claims tests: a claim must not hinge on float order.

A claims test module computes its runs with the notebook's own code, judges them, and is also a script:
``python tests/test_X_claims.py [--threads N] SEED ...`` prints those runs as JSON on its last line
(:func:`script_main`). :func:`run_in_subprocess` runs that script with another number of math threads or
another CPU kernel (``ATEN_CPU_CAPABILITY``), so the same judge can be applied to runs whose float
operations happened in a different order.  A module's float-order tests get those runs through the
:func:`float_orders` fixture, which is ``thorough`` (tests/tiers.py): every variant re-runs the claims.

The script side reads its notebook with :func:`read_notebook` (plain JSON, as nbformat reads a v4 notebook)
instead of nbformat: importing nbformat (its JSON-schema validator compiles grammars) and nbgrader costs every
float-order process seconds before its first run.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tiers import thorough

# (name, environment, math threads): each judged in its own process. Two threads wait passively: on a
# machine whose cores are busy with other work, spinning OpenMP threads make a run many times slower.
FLOAT_ORDER_VARIANTS = (("two-threads", {"OMP_WAIT_POLICY": "PASSIVE"}, 2),
                        ("kernel-default", {"ATEN_CPU_CAPABILITY": "default"}, 1),
                        ("kernel-avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, 1))
VARIANT_IDS = [v[0] for v in FLOAT_ORDER_VARIANTS]


def cpu_kernel_supported(env: dict) -> bool:
    """Whether this CPU runs the kernel that ``env`` asks for (torch falls back silently otherwise)."""
    want = env.get("ATEN_CPU_CAPABILITY")
    if not want:
        return True
    if want not in _CAPABILITY:
        _CAPABILITY[want] = _capability_with(env)
    return _CAPABILITY[want].lower() == want.lower()


_CAPABILITY: dict = {}  # ATEN_CPU_CAPABILITY asked -> the one torch runs with (one probe process each)


def _capability_with(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()


def _own_kernel(env: dict) -> bool:
    """Whether ``env`` asks for the CPU kernel this process already runs with (its default)."""
    import torch

    want = env.get("ATEN_CPU_CAPABILITY")
    return bool(want) and torch.backends.cpu.get_cpu_capability().lower() == want.lower()


def _skip_reason(env: dict, threads: int) -> str | None:
    """Why the float-order variant (``env``, ``threads``) is not run here, or None."""
    if threads == 1 and _own_kernel(env):  # asked before starting a process to probe the kernel
        return (f"{env['ATEN_CPU_CAPABILITY']} with one thread is this process's own float order: "
                "the in-process runs of the same seeds judged it")
    if not cpu_kernel_supported(env):
        return f"this CPU has no {env['ATEN_CPU_CAPABILITY']} kernels"
    return None


def _start(script: Path, seeds, env: dict, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), "--threads", str(threads), *map(str, seeds)],
                            env={**os.environ, **env, "COURSE_MODE": "fast"}, cwd=Path(script).parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Variants started ahead (see start_single_thread_variants): (script, seeds, env, threads) -> process.
_STARTED: dict = {}


def _key(script: Path, seeds, env: dict, threads: int):
    return (str(script), tuple(seeds), tuple(sorted(env.items())), threads)


def selected_variants(items, script: Path) -> set[str]:
    """The names of the float-order variants whose tests of ``script`` are among ``items`` (a session's
    selected tests, after ``-k`` and ``-m``): the tests parametrized by ``name, env, threads``."""
    script = Path(script).resolve()
    names = set()
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("name") in VARIANT_IDS and "env" in params and "threads" in params \
                and Path(str(item.path)).resolve() == script:
            names.add(params["name"])
    return names


def start_single_thread_variants(script: Path, seeds, items) -> None:
    """Start now, in the background, the one-thread float-order variants of ``script`` that this machine runs
    and whose tests are among ``items`` (the session's selected tests: a variant whose test ``-k`` or ``-m``
    deselected is never started), so that they use the second core while this process computes its own runs
    on one thread (the variant's test then waits for its process instead of starting it).  The same processes,
    arguments and judge as :func:`run_in_subprocess` alone; the two-thread variant is not started ahead (it
    would take both cores).  :func:`stop_started` ends what no test waited for (the session stopped first)."""
    wanted = selected_variants(items, script)
    for name, env, threads in FLOAT_ORDER_VARIANTS:
        key = _key(script, seeds, env, threads)
        if name in wanted and threads == 1 and key not in _STARTED and _skip_reason(env, threads) is None:
            _STARTED[key] = _start(script, seeds, env, threads)


def stop_started(script: Path | None = None) -> None:
    """Kill and forget the processes started ahead (of ``script`` only, when given) that no test waited for."""
    for key in [k for k in _STARTED if script is None or k[0] == str(script)]:
        proc = _STARTED.pop(key)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
@thorough
def float_orders(request):
    """``run(env, threads) -> runs``: the requesting module's claims script run as a float-order variant on the
    module's ``VARIANT_SEEDS`` (:func:`run_in_subprocess`).  Its setup starts the one-thread variants that this
    session's selected tests of the module ask for (:func:`start_single_thread_variants`): a module's in-process
    ``runs`` fixture asks for this one first, so they compute on the other core meanwhile; its teardown kills
    what no test waited for.  Thorough: every variant re-runs the module's claims."""
    script = Path(request.module.__file__).resolve()
    seeds = tuple(getattr(request.module, "VARIANT_SEEDS", ()))
    start_single_thread_variants(script, seeds, request.session.items)
    yield functools.partial(run_in_subprocess, script, seeds)
    stop_started(script)


def run_in_subprocess(script: Path, seeds, env: dict, threads: int, timeout: float = 900):
    """Run ``script`` as a claims script under ``env`` with ``threads`` math threads; return its runs.

    Skips when this CPU lacks the kernel ``env`` asks for; fails when the child did not run with the kernel
    and the number of threads it was asked for."""
    reason = _skip_reason(env, threads)
    if reason:
        pytest.skip(reason)
    proc = _STARTED.pop(_key(script, seeds, env, threads), None) or _start(script, seeds, env, threads)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    if "ATEN_CPU_CAPABILITY" in env:
        assert report["capability"].lower() == env["ATEN_CPU_CAPABILITY"].lower(), report["capability"]
    assert report["threads"] == threads
    return report["runs"]


class StreamedRuns:
    """A claims script started now in the background that computes ``runs`` (names it understands) one after the
    other under ``env`` and ``threads`` math threads, printing one JSON line per run as it finishes
    (:func:`stream_main`); :meth:`get` waits for one run's line only, so a test can judge its run while the script
    goes on with the next ones.  A watchdog kills the script after ``timeout`` seconds."""

    def __init__(self, script: Path, runs: list[str], env: dict, threads: int, timeout: float = 1800):
        import tempfile
        import threading

        self.threads, self.results = threads, {}
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: nobody reads it until the end
        self.proc = subprocess.Popen([sys.executable, str(script), "--threads", str(threads), *runs],
                                     env={**os.environ, **env, "COURSE_MODE": "fast"}, cwd=Path(script).parent,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._watchdog = threading.Timer(timeout, self.proc.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def get(self, run: str):
        """The result of ``run``: waits for its line; fails when the script ends without it."""
        import torch

        while run not in self.results:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self._stderr.seek(0)
                raise AssertionError(f"the script ended ({self.proc.returncode}) without run {run!r}:\n"
                                     + self._stderr.read()[-3000:])
            if line.startswith("{"):
                report = json.loads(line)
                self.results[report["run"]] = report
        report = self.results[run]
        assert report["threads"] == self.threads, report["threads"]
        # the same CPU kernel as this process: only the number of threads differs
        assert report["capability"] == torch.backends.cpu.get_cpu_capability(), report["capability"]
        return report["result"]

    def stop(self) -> None:
        """Kill the script if it still runs (its remaining runs' tests were not reached)."""
        self._watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        self._stderr.close()


def stream_main(argv: list[str], setup: Callable[[], object], run: Callable[[object, str], object]) -> None:
    """The script side of :class:`StreamedRuns`: ``--threads N RUN ...`` -> ``state = setup()``, the math threads
    set (after the setup, which may ask for one thread in fast mode), then per RUN one JSON line
    {run, threads, capability, result: run(state, RUN)} on stdout as soon as it is computed."""
    import torch

    threads = 1
    if argv[:1] == ["--threads"]:
        threads, argv = int(argv[1]), argv[2:]
    state = setup()
    torch.set_num_threads(threads)
    for name in argv:
        result = run(state, name)
        print(json.dumps({"run": name, "threads": torch.get_num_threads(),
                          "capability": torch.backends.cpu.get_cpu_capability(), "result": result}), flush=True)


def script_main(argv: list[str], compute: Callable[[list[int]], object]) -> None:
    """The script side: ``[--threads N] SEED ...`` -> JSON {capability, threads, runs} on the last line.

    ``compute(seeds)`` must set up the notebook (which may ask for one thread in fast mode) and return
    JSON-able runs; the number of threads is set again after the setup, before any run."""
    import torch

    threads = 1
    if argv[:1] == ["--threads"]:
        threads, argv = int(argv[1]), argv[2:]
    runs = compute([int(s) for s in argv], threads)
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                      "runs": runs}))


def notebook_fixture(make_namespace: Callable[[], dict]):
    """Body of a module-scoped ``notebook`` fixture: the notebook's namespace, then the math threads, the
    ``COURSE_MODE`` and matplotlib's figures put back as they were (``yield from`` it in the fixture)."""
    import torch

    threads, mode = torch.get_num_threads(), os.environ.get("COURSE_MODE")
    ns = make_namespace()
    yield ns
    import matplotlib.pyplot as plt

    plt.close("all")
    torch.set_num_threads(threads)
    if mode is not None:
        os.environ["COURSE_MODE"] = mode


def notebook_runs(make_namespace: Callable[[], dict], claim_runs: Callable[[dict, list[int]], object]):
    """The ``compute`` of :func:`script_main` for a claims module whose runs are ``claim_runs(ns, seeds)``."""
    def compute(seeds, threads):
        import torch

        ns = make_namespace()
        torch.set_num_threads(threads)  # after the notebook's setup, which asks for one thread in fast mode
        return claim_runs(ns, seeds)

    return compute


# ---------------------------------------------------------------------------------------------------------
# the notebook as the scripts read it

# coursekit.classgen.SOLUTION_RE (nbgrader's solution markers), here so that a script need not import coursekit's
# classgen (nbformat); test_a1_claims checks that the two stay the same
SOLUTION_RE = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


class NotebookNode(dict):
    """A dict whose keys read as attributes, as nbformat's NotebookNode."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


def _node(value):
    if isinstance(value, dict):
        return NotebookNode({k: _node(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def read_notebook(path: Path) -> NotebookNode:
    """The v4 notebook at ``path`` as ``nbformat.read(path, as_version=4)`` gives it (cells, metadata, sources as
    one string), read as plain JSON: without nbformat's import or validation (test_a1_claims compares the two)."""
    nb = _node(json.loads(Path(path).read_text(encoding="utf-8")))
    if nb.get("nbformat") != 4:
        raise ValueError(f"{path}: nbformat {nb.get('nbformat')}, not 4")
    for cell in nb.cells:
        if isinstance(cell.get("source"), list):
            cell.source = "".join(cell.source)
    return nb


def cell_by_grade_id(nb, grade_id: str):
    """The cell whose nbgrader grade_id is ``grade_id`` (coursekit.classgen.cell_by_grade_id)."""
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)
