"""Run the notebooks' full (Colab) mode here, on stand-in files, in a real kernel.

Two uses, one machinery:

- **Rehearsal** (``coursekit rehearse``, ``make rehearsal``, tests/test_full_mode.py):
  every source notebook (solutions included) runs top to bottom in full mode
  through nbclient, as Colab would run it: torchvision's CIFAR10 and
  FashionMNIST classes read stand-in files of the real formats and sizes, the
  weights API loads a stand-in AlexNet checkpoint from torch.hub's cache, the
  models and configuration are the full-mode ones.  Only the length of the
  training is capped: ``COURSE_REHEARSAL=1`` makes the notebooks' ``fit`` run
  one epoch, and ``COURSE_REHEARSAL_BATCHES`` cuts every DataLoader pass to a
  few batches.
- **Timing** (``coursekit time-full-mode``): the same run without the caps, at
  full size, recording the wall time of every notebook and section into JSON
  and Markdown.  Meant for a GPU machine; on a CPU it takes hours.  With
  ``--one-epoch-per-fit`` every training runs one whole epoch (all batches) and
  ``fit`` logs how many epochs it was asked for (``COURSE_TIMING_LOG``); the
  report then gives, per notebook, the measured time and the estimate for the
  whole run (each missing epoch counted at the measured epoch's time, which
  includes the first epoch's warm-up, so the estimate errs long).

The data root (the kernel's working directory holds ``data/``), torch.hub's
cache (``TORCH_HOME``), the caps and the network guard are set only here, in the
kernel's environment (see ``fullmode_site/sitecustomize.py``): a download
attempt raises instead of fetching anything.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from coursekit.codeprint import file_fingerprint
from coursekit.paths import Course, CourseError

from bncourse import ASSIGNMENTS, standins

SITE_DIR = Path(__file__).resolve().parent / "fullmode_site"
REHEARSAL_BATCHES = 3  # batches per DataLoader pass in a rehearsal: enough for BatchNorm and a few steps


def source_notebooks(course: Course) -> dict[str, Path]:
    """assignment -> its source notebook (the one with the solutions), in course order."""
    found = {}
    for assignment in ASSIGNMENTS:
        notebooks = sorted((course.source / assignment).glob("*.ipynb"))
        if notebooks:
            found[assignment] = notebooks[0]
    return found


def prepare_standins(workdir: Path) -> dict[str, str]:
    """Write every stand-in under ``workdir`` (data/ and torch_home/); return the CIFAR-10 MD5s."""
    return standins.write_all(workdir / "data", workdir / "torch_home")


def kernel_env(workdir: Path, cifar_md5: dict[str, str], rehearsal: bool,
               batches: int = REHEARSAL_BATCHES, base: dict[str, str] | None = None,
               one_epoch_per_fit: bool = False) -> dict[str, str]:
    """The environment of a full-mode kernel: full mode, stand-ins, no network, caps if ``rehearsal``.

    ``one_epoch_per_fit`` (timing only): every ``fit`` runs one epoch over all batches.
    """
    env = dict(os.environ if base is None else base)
    for name in ("NBGRADER_EXECUTION", "COURSE_REHEARSAL", "COURSE_REHEARSAL_BATCHES", "COURSE_TIMING_LOG"):
        env.pop(name, None)
    env["COURSE_MODE"] = "full"
    env["TORCH_HOME"] = str(workdir / "torch_home")
    env["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["COURSE_STANDIN_CIFAR10_MD5"] = json.dumps(cifar_md5)
    env["COURSE_HANG_TRACE"] = str(workdir / "stacks.txt")
    if rehearsal:
        env["COURSE_REHEARSAL"] = "1"
        env["COURSE_REHEARSAL_BATCHES"] = str(batches)
    elif one_epoch_per_fit:
        env["COURSE_REHEARSAL"] = "1"
    return env


def estimate_from_fits(measured: float, fits: list[dict]) -> float:
    """The whole run's time: ``measured`` plus, for each fit cut short, its missing epochs at its epoch time."""
    extra = 0.0
    for fit in fits:
        seconds = fit.get("epoch_seconds") or []
        if seconds:
            extra += max(fit["epochs_requested"] - len(seconds), 0) * (sum(seconds) / len(seconds))
    return measured + extra


def read_fits(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class NotebookFailed(Exception):
    """A notebook raised, or a cell ran past its time limit; the message says which cell and why."""


def _kernel_stacks(client, trace: Path) -> str:
    """Ask the kernel, then each process it forked, for its Python stacks (faulthandler on SIGUSR1)."""
    try:
        pid = client.km.provisioner.process.pid
    except AttributeError:
        return "(kernel process not found)"
    start = trace.stat().st_size if trace.exists() else 0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(p) for p in task.read_text().split()]
    for p in pids:  # one after the other, so that their dumps do not interleave in the shared file
        try:
            os.kill(p, signal.SIGUSR1)
        except ProcessLookupError:
            continue
        time.sleep(1)
    if not trace.exists():
        return "(no stacks written)"
    with open(trace, errors="replace") as f:
        f.seek(start)
        return f"processes {pids} (kernel first):\n" + f.read()[:40000]


def execute(notebook: Path, workdir: Path, env: dict[str, str], cell_timeout: int) -> nbformat.NotebookNode:
    """Execute a copy of ``notebook`` in a fresh kernel whose working directory is ``workdir``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(str(notebook), as_version=4)
    trace = Path(env["COURSE_HANG_TRACE"])
    stacks = {}

    class Client(NotebookClient):
        async def _async_handle_timeout(self, timeout, cell=None):
            stacks["text"] = _kernel_stacks(self, trace)
            return await super()._async_handle_timeout(timeout, cell)

    client = Client(nb, timeout=cell_timeout, kernel_name="python3", record_timing=True,
                    resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=env)
    except CellTimeoutError as e:
        raise NotebookFailed(f"{notebook.name}: a cell ran past {cell_timeout} s ({e}).\n"
                             f"Python stacks of the kernel and its workers:\n{stacks.get('text', '')}") from e
    except CellExecutionError as e:
        raise NotebookFailed(f"{notebook.name}: {e}") from e
    return nb


def _seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def section_times(nb) -> list[dict]:
    """Wall time per section (the cells under each Markdown heading), in notebook order."""
    sections = [{"section": "(start)", "seconds": 0.0}]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            # the first heading of the cell; nbgrader's "### BEGIN SOLUTION" markers are not headings
            heading = next((m.group(1) for m in re.finditer(r"^#{1,3}\s+(.+)$", cell.source, re.M)
                            if not re.match(r"(BEGIN|END) SOLUTION", m.group(1))), None)
            if heading:
                sections.append({"section": heading.strip(), "seconds": 0.0})
        elif cell.cell_type == "code":
            seconds = _seconds(cell)
            if seconds is not None:
                sections[-1]["seconds"] += seconds
    return [dict(s, seconds=round(s["seconds"], 2)) for s in sections if s["seconds"] > 0 or s["section"] != "(start)"]


def run_all(course: Course, rehearsal: bool, only: list[str] | None = None, cell_timeout: int = 900,
            workdir: Path | None = None, save_dir: Path | None = None, one_epoch_per_fit: bool = False,
            after_each=None) -> dict:
    """Run the notebooks in full mode (capped if ``rehearsal``); return the timings.

    ``after_each(result)`` is called after every notebook, so a caller can save partial results
    (a machine lent for a limited time may be taken back before the last notebook ends).

    With ``save_dir``, every executed notebook (outputs and plots) is written there as ``<assignment>.ipynb``.
    """
    notebooks = source_notebooks(course)
    if only:
        unknown = sorted(set(only) - set(notebooks))
        if unknown:
            raise CourseError(f"unknown assignment(s) {', '.join(unknown)}: choose among {', '.join(notebooks)}")
        notebooks = {a: p for a, p in notebooks.items() if a in only}
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="coursekit-fullmode-")) if own_dir else Path(workdir)
    try:
        start = time.perf_counter()
        md5 = prepare_standins(workdir)
        result = {
            "kind": ("rehearsal (epochs and batches capped)" if rehearsal else
                     "full size, one epoch per training (whole run estimated)" if one_epoch_per_fit else
                     "full size"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(),
            "standins_seconds": round(time.perf_counter() - start, 1),
            "notebooks": {},
        }
        env = kernel_env(workdir, md5, rehearsal, one_epoch_per_fit=one_epoch_per_fit)
        for assignment, path in notebooks.items():
            log = workdir / f"fits-{assignment}.jsonl"
            if one_epoch_per_fit:
                env["COURSE_TIMING_LOG"] = str(log)
            print(f"{assignment}: running {path.name} in full mode{' (rehearsal caps)' if rehearsal else ''}...",
                  flush=True)
            start = time.perf_counter()
            try:
                nb = execute(path, workdir, env, cell_timeout)
            except NotebookFailed as e:
                # the other notebooks still run: a machine lent for the measurement is not wasted
                result["notebooks"][assignment] = {"notebook": path.name, "error": str(e)[-4000:]}
                print(f"{assignment}: FAILED\n{e}", flush=True)
                if after_each:
                    after_each(result)
                continue
            total = round(time.perf_counter() - start, 1)
            result["notebooks"][assignment] = {"notebook": path.name, "code": file_fingerprint(path), "seconds": total,
                                               "sections": section_times(nb)}
            if one_epoch_per_fit:
                fits = read_fits(log)
                result["notebooks"][assignment]["fits"] = fits
                result["notebooks"][assignment]["estimated_seconds"] = round(estimate_from_fits(total, fits), 1)
            if save_dir is not None:
                Path(save_dir).mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, str(Path(save_dir) / f"{assignment}.ipynb"))
            print(f"{assignment}: {total:.1f} s", flush=True)
            if after_each:
                after_each(result)
        return result
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"gpu": gpu, "cpu_count": cpus, "platform": platform.platform(),
            "torch": torch.__version__}


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [f"# Full-mode run times ({result['kind']})", "",
             f"{result['date']} · GPU: {machine['gpu'] or 'none (CPU only)'} · {machine['cpu_count']} CPUs · "
             f"torch {machine['torch']}", "",
             "| notebook | section | seconds |", "|---|---|---|"]
    for assignment, entry in result["notebooks"].items():
        if "error" in entry:
            lines.append(f"| **{assignment}** | **failed** (see the JSON) | |")
            continue
        lines.append(f"| **{assignment}** | **total** | **{entry['seconds']:.0f}** |")
        if "estimated_seconds" in entry:
            lines.append(f"| | **estimated, all epochs** | **{entry['estimated_seconds']:.0f}** |")
        for s in entry["sections"]:
            lines.append(f"| | {s['section'].replace('|', '/')} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("assignments", nargs="*", help="assignments to run (default: all)")
    parser.add_argument("--out", default=None, help="JSON output (a .md is written next to it); "
                        "default reports/full_mode_rehearsal.json or reports/full_mode_times.json")
    parser.add_argument("--save-notebooks", default=None, metavar="DIR",
                        help="write the executed notebooks (outputs, plots) to DIR/<assignment>.ipynb")
    parser.add_argument("--one-epoch-per-fit", action="store_true",
                        help="timing only: each training runs one whole epoch; the full run's time is estimated")
    parser.add_argument("--cell-timeout", type=int, default=None,
                        help="seconds one cell may run (default: 900 rehearsing, 21600 timing)")


def _run(args, rehearsal: bool) -> int:
    course = Course.at(args.course)
    timeout = args.cell_timeout or (900 if rehearsal else 6 * 3600)
    out = Path(args.out) if args.out else course.reports / ("full_mode_rehearsal.json" if rehearsal
                                                            else "full_mode_times.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(result):
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        out.with_suffix(".md").write_text(markdown(result))

    try:
        result = run_all(course, rehearsal, args.assignments or None, timeout,
                         save_dir=Path(args.save_notebooks) if args.save_notebooks else None,
                         one_epoch_per_fit=getattr(args, "one_epoch_per_fit", False) and not rehearsal,
                         after_each=save)
    except CourseError as e:
        print(f"error: {e}")
        return 2
    save(result)
    print(markdown(result))
    print(f"written: {out} and {out.with_suffix('.md')}")
    return 1 if any("error" in entry for entry in result["notebooks"].values()) else 0


def run(args) -> int:
    return _run(args, rehearsal=args.command == "rehearse")
