"""Shared machinery of the claims tests: judge a notebook's claim again in other float orders.

A claim the course teaches must not hinge on the order in which floats are added: the same
measurement is run again in a subprocess with two math threads, and with other CPU kernels
(``ATEN_CPU_CAPABILITY=default`` / ``avx2``).  A claims test module that is also a script (its
``__main__`` prints one JSON object on its last line, with the ``capability`` and ``threads`` it
ran with) uses :func:`run_variant` to get that object from a subprocess, and :func:`supported` to
skip a kernel the CPU lacks (torch would fall back silently).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# (name, environment, math threads): each judged in its own process. Two threads wait passively: on a
# machine whose cores are busy with other work, spinning OpenMP threads make a run many times slower.
FLOAT_ORDER_VARIANTS = (("two-threads", {"OMP_WAIT_POLICY": "PASSIVE"}, 2),
                        ("kernel-default", {"ATEN_CPU_CAPABILITY": "default"}, 1),
                        ("kernel-avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, 1))
VARIANT_IDS = [v[0] for v in FLOAT_ORDER_VARIANTS]


def supported(env: dict) -> bool:
    """Whether this CPU runs the kernel that ``env`` asks for (torch falls back silently otherwise)."""
    want = env.get("ATEN_CPU_CAPABILITY")
    if not want:
        return True
    got = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    return got.lower() == want.lower()


def run_variant(script: str | Path, args: list[str], env: dict, threads: int, timeout: int = 900) -> dict:
    """``python script --threads N args...`` in fast mode with ``env`` added; its last stdout line as JSON,
    after checking that the subprocess really ran with that kernel and that many threads."""
    script = Path(script)
    proc = subprocess.run([sys.executable, str(script), "--threads", str(threads), *map(str, args)],
                          env={**os.environ, **env, "COURSE_MODE": "fast"}, cwd=script.parent,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "ATEN_CPU_CAPABILITY" in env:
        assert report["capability"].lower() == env["ATEN_CPU_CAPABILITY"].lower(), report["capability"]
    assert report["threads"] == threads, report["threads"]
    return report


def script_threads(argv: list[str]) -> tuple[int, list[str]]:
    """(threads, remaining args) from a claims script's command line (``--threads N`` first, default 1)."""
    if argv[:1] == ["--threads"]:
        return int(argv[1]), argv[2:]
    return 1, argv
