"""``coursekit sandbox-check``: prove the sandbox's guarantees here, and
measure kernel start-up (``--bench``).

The check builds a scratch course in a temporary folder (a fake source/,
gradebook.db, another student's folders, .coursekit/), starts a sandboxed
kernel in ``autograded/alice/a1`` exactly as nbgrader would, runs one probe
per guarantee inside it and prints a table.  Exit status 0 only if every
probe passes.  ``--warm`` repeats the probes on a warm (forked) kernel.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECRET_VAR = "COURSEKIT_CHECK_SECRET"

HELPERS = r'''
import json, os, socket, resource, errno
def _denied(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return True, f"{type(e).__name__} ({errno.errorcode.get(e.errno, e.errno)})"
    return False, "allowed"
def _read(p):
    with open(p, "rb") as f:
        return f.read()
def _write(p):
    with open(p, "w") as f:
        f.write("x")
def _report(ok, detail):
    print(json.dumps({"ok": bool(ok), "detail": str(detail)}))
'''


def make_scratch_course(base: Path) -> dict:
    """A course root with things the kernel must not see; returns its paths."""
    root = base / "course"
    paths = {
        "root": root,
        "source": root / "source" / "a1" / "solution.txt",
        "gradebook": root / "gradebook.db",
        "config": root / "nbgrader_config.py",
        "other_submitted": root / "submitted" / "bob" / "a1" / "answer.txt",
        "other_autograded": root / "autograded" / "bob" / "a1" / "answer.txt",
        "state": root / ".coursekit" / "events.jsonl",
        "release": root / "release" / "a1" / "data.txt",
        "workdir": root / "autograded" / "alice" / "a1",
    }
    for key, p in paths.items():
        if key in ("root", "workdir"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"secret {key}\n")
    (paths["workdir"] / "mine.txt").write_text("my own file\n")
    return paths


def _bound_under(folder: str) -> set[str]:
    """Names directly inside ``folder`` that the sandbox shows because a
    read-only path (the Python installation) lies below them."""
    from .spec import python_paths

    folder = os.path.realpath(folder)
    return {p[len(folder) + 1:].split("/")[0] for p in python_paths([sys.executable])
            if p.startswith(folder + "/")}


def probes(paths: dict, grader_port: int, host_tmp_file: str, limits: dict) -> list[tuple[str, str]]:
    """(guarantee, code) pairs; each code prints one JSON result line."""
    q = {k: str(v) for k, v in paths.items()}
    home = os.path.expanduser("~")
    return [
        ("reads its working copy", f"_report(_read({q['workdir'] + '/mine.txt'!r}) == b'my own file\\n', 'read ok')"),
        ("writes its working copy", f"_write({q['workdir'] + '/out.txt'!r}); _report(True, 'write ok')"),
        ("reads the release files (read-only)",
         f"_report(_read({q['release']!r}).startswith(b'secret'), 'read ok')"),
        ("cannot read source/", f"_report(*_denied(_read, {q['source']!r}))"),
        ("cannot read gradebook.db", f"_report(*_denied(_read, {q['gradebook']!r}))"),
        ("cannot read nbgrader_config.py", f"_report(*_denied(_read, {q['config']!r}))"),
        ("cannot read other students' submitted/",
         f"_report(*_denied(_read, {q['other_submitted']!r}))"),
        ("cannot read other students' autograded/",
         f"_report(*_denied(_read, {q['other_autograded']!r}))"),
        ("cannot read .coursekit/", f"_report(*_denied(_read, {q['state']!r}))"),
        ("sees nothing of the grader's home but the Python install",
         f"ok, d = _denied(os.listdir, {home!r}); "
         f"_report(ok or set(os.listdir({home!r})) <= set({sorted(_bound_under(home))!r}), "
         f"d if ok else os.listdir({home!r}))"),
        ("cannot write the release files", f"_report(*_denied(_write, {q['release']!r}))"),
        ("cannot write the course root", f"_report(*_denied(_write, {q['root'] + '/planted.txt'!r}))"),
        ("cannot write the Python installation",
         f"_report(*_denied(_write, os.path.join({sys.prefix!r}, 'planted.txt')))"),
        ("has a private /tmp",
         f"_write('/tmp/own.txt'); _report(not os.path.exists({host_tmp_file!r}), 'grader /tmp invisible')"),
        ("no network (loopback of the grader)",
         f"s = socket.socket(); s.settimeout(2); _report(*_denied(s.connect, ('127.0.0.1', {grader_port})))"),
        ("no network (internet)",
         "s = socket.socket(); s.settimeout(2); _report(*_denied(s.connect, ('1.1.1.1', 53)))"),
        ("no DNS", "_report(*_denied(socket.getaddrinfo, 'pypi.org', 443))"),
        ("environment has no grader secrets",
         f"_report({SECRET_VAR!r} not in os.environ, sorted(os.environ))"),
        ("runs as an unprivileged uid, no capabilities",
         "st = dict(l.split(':', 1) for l in open('/proc/self/status')); "
         "_report(os.getuid() != 0 and int(st['CapEff'], 16) == 0 and int(st['CapBnd'], 16) == 0 "
         "and st['NoNewPrivs'].strip() == '1', "
         "f\"uid {os.getuid()}, CapEff {st['CapEff'].strip()}, NoNewPrivs {st['NoNewPrivs'].strip()}\")"),
        ("cannot see or signal the grader (pid namespace)",
         f"ok, d = _denied(os.kill, {os.getpid()}, 0); "
         "pids = [p for p in os.listdir('/proc') if p.isdigit()]; "
         "_report(ok and os.getppid() == 0 and len(pids) < 10, f'{d}; sees pids {sorted(pids, key=int)}')"),
        ("kill -9 of every visible process spares the grader",
         "os.kill(-1, 9); _report(True, 'kill(-1, SIGKILL) sent')"),
        ("CPU time limited",
         f"_report(resource.getrlimit(resource.RLIMIT_CPU)[1] == {limits['cpu_seconds']}, "
         "resource.getrlimit(resource.RLIMIT_CPU))"),
        ("memory limited (64 GiB allocation fails)",
         "try:\n    b = bytearray(64 * 2**30); _report(False, 'allocated')\n"
         "except MemoryError:\n    _report(True, 'MemoryError')"),
        ("shared memory mapping limited",
         "import mmap\ntry:\n    m = mmap.mmap(-1, 64 * 2**30); _report(False, 'mapped')\n"
         "except OSError as e:\n    _report(True, type(e).__name__)"),
        ("process count limited (fork bomb stops)",
         "import time\npids, err = [], None\ntry:\n    for i in range(5000):\n        pid = os.fork()\n"
         "        if pid == 0:\n            time.sleep(20); os._exit(0)\n        pids.append(pid)\n"
         "except OSError as e:\n    err = e\nfor p in pids:\n    os.kill(p, 9)\nfor p in pids:\n"
         "    os.waitpid(p, 0)\n"
         "_report(err is not None, f'{len(pids)} forks, then {type(err).__name__}')"),
        ("file size limited",
         f"f = open('big.bin', 'wb', buffering=0); f.seek({limits['file_size_bytes']}); "
         "ok, d = _denied(f.write, b'x'); f.close(); os.remove('big.bin'); _report(ok, d)"),
    ]


def _parse(outputs: list) -> dict:
    for out in outputs:
        if out.get("output_type") == "stream":
            for line in out.get("text", "").splitlines():
                if line.startswith("{"):
                    try:
                        return json.loads(line)
                    except json.JSONDecodeError:
                        pass
        if out.get("output_type") == "error":
            return {"ok": False, "detail": f"{out.get('ename')}: {out.get('evalue')}"}
    return {"ok": False, "detail": "no result"}


def run_checks(warm: bool = False) -> tuple[list[tuple[str, bool, str]], dict]:
    """Run every probe in one sandboxed kernel; returns (rows, info)."""
    import nbformat
    from nbclient import NotebookClient

    from .manager import SandboxKernelManager

    base = Path(tempfile.mkdtemp(prefix="ck-check-"))
    os.environ[SECRET_VAR] = "s3cret-" + os.urandom(4).hex()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host_tmp = tempfile.NamedTemporaryFile(prefix="ck-visible-", dir="/tmp", delete=False)
    host_tmp.close()
    info = {}
    try:
        paths = make_scratch_course(base)
        km_probe = SandboxKernelManager()
        limits = {"cpu_seconds": km_probe.cpu_seconds, "file_size_bytes": km_probe.file_size_mb * 2**20}
        cells = [("helpers", HELPERS)] + probes(paths, listener.getsockname()[1], host_tmp.name, limits)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code) for _, code in cells]
        nb.cells.append(nbformat.v4.new_code_cell("_report(True, 'kernel still answering')"))
        from traitlets.config import Config

        # cold means cold: no server of this process's own either
        config = Config({"SandboxKernelManager": {"start_warm_server": bool(warm)}})
        client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True,
                                kernel_manager_class=SandboxKernelManager, config=config,
                                resources={"metadata": {"path": str(paths["workdir"])}})

        def run():
            from contextlib import nullcontext

            from .forkserver import warm_kernels

            with (warm_kernels() if warm else nullcontext()):
                client.execute()
            return client

        t0 = time.perf_counter()
        run()
        info["seconds"] = time.perf_counter() - t0
        rows = []
        for (name, _), cell in zip(cells[1:], nb.cells[1:-1]):
            res = _parse(cell.outputs)
            rows.append((name, res["ok"], res["detail"]))
        last = _parse(nb.cells[-1].outputs)
        rows.append(("kernel survives all of the above", last["ok"], last["detail"]))
        grader_files = [paths[k] for k in ("source", "gradebook", "config", "other_submitted",
                                           "other_autograded", "state", "release")]
        intact = all(p.read_text() == f"secret {k}\n" for k, p in zip(
            ("source", "gradebook", "config", "other_submitted", "other_autograded", "state", "release"),
            grader_files))
        rows.append(("course files unchanged afterwards", intact, "checked from outside"))
        from ._enter import process_budget

        rows.append(("process budget not shared with other sandboxes", *process_budget()))
        return rows, info
    finally:
        listener.close()
        os.unlink(host_tmp.name)
        os.environ.pop(SECRET_VAR, None)
        shutil.rmtree(base, ignore_errors=True)


def print_table(rows, title: str) -> None:
    width = max(len(r[0]) for r in rows)
    print(title)
    for name, ok, detail in rows:
        print(f"  {'PASS' if ok else 'FAIL'}  {name.ljust(width)}  {detail[:90]}")


# --------------------------------------------------------------------------
# start-up measurements (for `make bench` and --bench)
# --------------------------------------------------------------------------

async def _kernel_start(km_class, cwd: str, import_torch: bool, **traits) -> tuple[float, float]:
    km = km_class(kernel_name="python3", **traits)
    t0 = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        ready = time.perf_counter() - t0
        total = ready
        if import_torch:
            await kc.execute_interactive("import torch", timeout=120)
            total = time.perf_counter() - t0
    finally:
        await km.shutdown_kernel(now=True)
        kc.stop_channels()
    return ready * 1000, total * 1000


def measure_startup(repeat: int = 3) -> dict:
    """Median seconds of: bare ``python -c "import torch"``; an unsandboxed
    ipykernel started by jupyter_client (until ready; until ready and
    ``import torch`` done); the same for a sandboxed cold start and a sandboxed
    warm start; and the warm server's own start."""
    from statistics import median

    from jupyter_client import AsyncKernelManager

    from .forkserver import warm_kernels
    from .manager import SandboxKernelManager

    base = Path(tempfile.mkdtemp(prefix="ck-bench-"))
    workdir = base / "course" / "autograded" / "alice" / "a1"
    workdir.mkdir(parents=True)
    results: dict = {}

    def series(name, km_class, **traits):
        ready, total = [], []
        for _ in range(repeat):
            r, t = asyncio.run(_kernel_start(km_class, str(workdir), True, **traits))
            ready.append(r)
            total.append(t)
        results[f"{name}_ready_s"] = round(median(ready) / 1000, 3)
        results[f"{name}_ready_torch_s"] = round(median(total) / 1000, 3)

    try:
        floor = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            # the floor is what a fresh process pays: it has to be one
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            floor.append((time.perf_counter() - t0) * 1000)
        results["python_import_torch_s"] = round(median(floor) / 1000, 3)
        series("plain_kernel", AsyncKernelManager)
        # cold means cold: without a run's server, a kernel manager would start this process's own
        series("sandbox_cold", SandboxKernelManager, start_warm_server=False)
        t0 = time.perf_counter()
        with warm_kernels():
            results["warm_server_start_s"] = round(time.perf_counter() - t0, 2)
            series("sandbox_warm", SandboxKernelManager)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--warm", action="store_true", help="also check a warm (forked) kernel")
    parser.add_argument("--bench", action="store_true",
                        help="measure kernel start-up: unsandboxed, sandboxed cold, sandboxed warm (ms)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (--bench)")


def run(args) -> int:
    from ._enter import SandboxError

    if args.bench:
        results = measure_startup(args.repeat)
        print("kernel start-up (median of %d):" % args.repeat)
        for key, value in results.items():
            if key.endswith("_s") and key != "warm_server_start_s":
                print(f"  {key[:-2]:28s} {value * 1000:8.0f} ms")
            else:
                print(f"  {key:28s} {value:8.2f} s")
        return 0
    ok = True
    for warm in ([False, True] if args.warm else [False]):
        try:
            rows, info = run_checks(warm=warm)
        except SandboxError as e:
            print(f"FAIL  the sandbox cannot start here: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # noqa: BLE001 - e.g. the kernel died at start: say so in one line
            cause = " ".join(str(e).split()) or type(e).__name__
            print(f"FAIL  no sandboxed kernel answered ({type(e).__name__}: {cause[:300]}); "
                  f"kernel command: {sys.executable} -m ipykernel_launcher", file=sys.stderr)
            return 1
        print_table(rows, f"kernel sandbox, {'warm' if warm else 'cold'} start ({info['seconds']:.1f} s):")
        ok = ok and all(r[1] for r in rows)
    print("all guarantees hold" if ok else "SOME GUARANTEES DO NOT HOLD")
    return 0 if ok else 1
