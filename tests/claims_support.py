"""Shared machinery of the claims tests: a claim must not hinge on float order.

A claims test module computes its runs with the notebook's own code, judges them, and is also a script:
``python tests/test_X_claims.py [--threads N] SEED ...`` prints those runs as JSON on its last line
(:func:`script_main`). :func:`run_in_subprocess` runs that script with another number of math threads or
another CPU kernel (``ATEN_CPU_CAPABILITY``), so the same judge can be applied to runs whose float
operations happened in a different order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

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


def start_single_thread_variants(script: Path, seeds) -> None:
    """Start now, in the background, the one-thread float-order variants of ``script`` that this machine runs,
    so that they use the second core while this process computes its own runs on one thread (the variant's
    test then waits for its process instead of starting it).  The same processes, arguments and judge as
    :func:`run_in_subprocess` alone; the two-thread variant is not started ahead (it would take both cores).
    :func:`stop_started` ends what no test waited for (tests deselected)."""
    for _, env, threads in FLOAT_ORDER_VARIANTS:
        key = _key(script, seeds, env, threads)
        if threads == 1 and key not in _STARTED and _skip_reason(env, threads) is None:
            _STARTED[key] = _start(script, seeds, env, threads)


def stop_started() -> None:
    """Kill and forget the processes started ahead that no test collected."""
    while _STARTED:
        _, proc = _STARTED.popitem()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


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
