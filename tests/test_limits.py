"""Per-submission limits that protect the rest of the class, on real sandboxed
kernels (no torch: the mechanisms are what is tested; the corpus graded end to
end is in tests/test_hostile_resources.py):

- output caps count messages, per cell and per notebook, not only bytes; a
  cell past a cap is interrupted, and a failing cell's error always shows;
- what a kernel makes in its working copy is removed once it ends (nbgrader
  would copy every file to feedback/), and the event log says how much;
- two concurrent sandboxes do not share one process budget: one holding all
  of its processes does not stop another from forking.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

from coursekit import events
from coursekit.sandbox import SandboxKernelManager, wrap_command
from coursekit.sandbox._enter import process_budget
from bncourse.messages import OUTPUT_NOTICES

pytestmark = pytest.mark.slow


def run_cells(cells: list[str], workdir: Path, **traits) -> nbformat.NotebookNode:
    c = Config()
    # the course's words for the notes on dropped output (the engine's own are English)
    # cold kernels (no torch imported): 768 MB is room for the flood tests, not for a fork of a warm server
    for k, v in {"memory_mb": 768, "processes": 64, "output_notices": OUTPUT_NOTICES, "start_warm_server": False,
                 **traits}.items():
        setattr(c.SandboxKernelManager, k, v)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True, kernel_manager_class=SandboxKernelManager,
                   config=c, resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def course_workdir(tmp_path: Path) -> tuple[Path, Path]:
    """(course root, autograded/eve/a1 working copy) of a scratch course layout."""
    root = tmp_path / "course"
    workdir = root / "autograded" / "eve" / "a1"
    workdir.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("")
    return root, workdir


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


FLOOD = "from IPython.display import display\nfor _ in range({n}):\n    display({{'text/plain': ''}}, raw=True)"


def test_output_caps_count_messages(tmp_path):
    _, workdir = course_workdir(tmp_path)
    start = time.monotonic()
    # floods long enough that the interrupt lands while the kernel still floods
    nb = run_cells([FLOOD.format(n=30000), "print('cel·la següent')", FLOOD.format(n=30000), "print('massa tard')"],
                   workdir, output_cell_messages=300, output_messages=500)
    first, after, second, late = nb.cells
    # the first cell: cut at its own cap, with a note, and interrupted; the next cell is not affected
    assert len(first.outputs) <= 302 and "aquesta cel·la ha enviat més de 300 sortides" in _text(first)
    assert [o.ename for o in first.outputs if o.output_type == "error"] == ["KeyboardInterrupt"]
    assert _text(after) == "cel·la següent\n"
    # the notebook's cap (messages passed on): reached in the third cell, nothing after it is kept
    assert "aquest quadern ha enviat més de 500 sortides" in _text(second)
    assert len(second.outputs) <= 500 - 301 + 2 and late.outputs == []
    print(f"\ntwo floods of 30,000 messages, cut and interrupted, in {time.monotonic() - start:.1f} s")


def test_a_flood_never_hides_a_failing_cell(tmp_path):
    # nbgrader scores a test cell by its error output: past every cap, one error per cell still passes
    _, workdir = course_workdir(tmp_path)
    nb = run_cells([FLOOD.format(n=400) + "\nraise AssertionError('la prova falla' + 'x' * 10**5)",
                    "import sys\nsys.stdout.write('y' * 2**21)", "assert False, 'aquesta també'"],
                   workdir, output_cell_messages=100, output_limit_mb=1, interrupt_floods=False)
    errors = [[o for o in c.outputs if o.output_type == "error"] for c in nb.cells]
    assert [e.ename for e in errors[0]] == ["AssertionError"] and len(errors[0][0].evalue) <= 2000
    assert errors[1] == [] and [e.ename for e in errors[2]] == ["AssertionError"]


def test_files_a_kernel_makes_are_removed_after_it(tmp_path):
    root, workdir = course_workdir(tmp_path)
    (workdir / "dades.csv").write_text("a,b\n1,2\n")  # what nbgrader copied there: stays
    (workdir / "carpeta").mkdir()
    nb = run_cells(["import os\nos.makedirs('sortida/molts', exist_ok=True)\n"
                    "for i in range(3000):\n    open(f'sortida/molts/{i}.txt', 'w').write('x')\n"
                    "open('carpeta/nou.txt', 'w').write('y' * 100)\nopen('dades.csv', 'a').write('3,4\\n')\n"
                    "print(sum(len(f) for _, _, f in os.walk('.')))"], workdir)
    assert _text(nb.cells[0]).strip() == "3002"  # the kernel saw its files
    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert left == ["carpeta", "dades.csv"]
    assert (workdir / "dades.csv").read_text() == "a,b\n1,2\n3,4\n"  # a file it changed is not one it made
    logged = [e for e in events.read(root, "a1", "eve") if e["kind"] == "sandbox_removed_files"]
    assert len(logged) == 1 and logged[0]["files"] == 3001 and logged[0]["dirs"] == 2
    assert logged[0]["bytes"] == 3000 + 100 and len(logged[0]["sample"]) == 10


HOG = r'''
import errno, os, sys, time
held = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print("full", held, errno.errorcode[e.errno], flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    held += 1
time.sleep(60)
'''

PROBE = r'''
import errno, os, subprocess, sys, threading
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    t = threading.Thread(target=lambda: None)
    t.start(); t.join()
    out = subprocess.run([sys.executable, "-c", "print('fill')"], capture_output=True, text=True).stdout.strip()
    print("forks", out)
except OSError as e:
    print("blocked", errno.errorcode.get(e.errno, e.errno))
'''


def test_concurrent_sandboxes_do_not_share_a_process_budget():
    c = Config()
    c.SandboxKernelManager.processes = 24
    argv, env = wrap_command([sys.executable, "-c", HOG], config=c)
    hog = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = hog.stdout.readline().split()
        # the hog holds its whole budget (so this test could fail) ...
        assert line[0] == "full" and line[2] == "EAGAIN" and 10 < int(line[1]) < 24, line
        # ... and a second sandbox, same limits, same host uid, still forks, threads and execs
        argv, env = wrap_command([sys.executable, "-c", PROBE], config=c)
        probe = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert probe.stdout.strip() == "forks fill", probe.stdout + probe.stderr
        cgroups = _sandbox_cgroups(hog.pid)
        if "pids cgroup" in process_budget()[1]:
            # the hog's kernel and its children sit in a pids cgroup of their own
            assert len(cgroups) == 1 and int((cgroups[0] / "pids.current").read_text()) >= int(line[1])
            assert (cgroups[0] / "pids.max").read_text().strip() == "24"
    finally:
        hog.terminate()  # forwarded to the command; the launcher then takes the sandbox down
        try:
            hog.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hog.kill()
            hog.wait()
    assert _sandbox_cgroups(hog.pid) == []  # removed with the sandbox


def _sandbox_cgroups(launcher_pid: int) -> list[Path]:
    from coursekit.sandbox._enter import PIDS_CGROUP_BASES

    return [p for base in PIDS_CGROUP_BASES for p in Path(base).glob(f"coursekit-{launcher_pid}-*")]


def test_this_machine_gives_each_sandbox_its_own_process_budget():
    per_sandbox, how = process_budget()
    print("\nprocess budget:", how)
    assert per_sandbox, how
