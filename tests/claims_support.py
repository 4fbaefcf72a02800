"""What the claims tests share: judging a notebook's claims again under other float orders.

A claim the course makes must not hinge on the order in which floats are
added. A claims test module that can run as a script (``python
tests/test_X_claims.py [--threads N] SEED ...``, printing its runs as JSON on
the last line) is run again here in subprocesses with two math threads and
with other CPU kernels (``ATEN_CPU_CAPABILITY``), and its own judge is applied
to what they return.
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


def run_script(script: Path, seeds, env: dict, threads: int, timeout: int = 900) -> dict:
    """Run ``script`` as a claims script under ``env`` with ``threads`` math threads; its JSON report, checked to
    have run with the kernel and the threads asked for."""
    proc = subprocess.run([sys.executable, str(script), "--threads", str(threads), *map(str, seeds)],
                          env={**os.environ, **env, "COURSE_MODE": "fast"}, cwd=Path(script).parent,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "ATEN_CPU_CAPABILITY" in env:
        assert report["capability"].lower() == env["ATEN_CPU_CAPABILITY"].lower(), report["capability"]
    assert report["threads"] == threads
    return report


def report(runs) -> str:
    """The last line a claims script prints: its runs, the CPU kernel and the math threads it ran with."""
    import torch

    return json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                       "runs": runs})
