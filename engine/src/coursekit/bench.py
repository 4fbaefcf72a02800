"""``coursekit bench`` (``make bench``): how fast a class is graded, measured side by side.

In one run, on one generated class (the catalogue of ``--assignment``, by default
the course's first assignment that has one, repeated under new student ids up to
``--students``, at least 40), in two identical scratch courses
under ``.coursekit/bench/``:

* the floor: a bare ``python -c "import torch"`` (what any kernel of a PyTorch
  course must pay; the warm kernels' fork server preloads it);
* plain serial ``nbgrader autograde`` and ``coursekit grade --jobs N``, wall
  time, their ratio and seconds per submission, and a check that both
  gradebooks hold the same ``auto_score`` for every grade cell;
* ``coursekit grade --scheduler`` on a ``distributed.LocalCluster`` of N
  worker processes, in a third identical course: its wall time, its ratio to
  ``--jobs N`` (the overhead of going through Dask) and whether its grades
  equal ``--jobs N``'s (``coursekit.dask_bench``; ``--no-dask`` skips it);
* where the parallel run's time goes per submission (medians, from the
  events each submission records and the cell timings nbclient records:
  nbgrader set-up + sanitize, kernel start, execution, trusted checks, the
  rest), and how many kernels came warm from the sandbox's fork server;
* the CPU seconds of both runs (processes they waited for) and the load
  average, since the machine is shared;
* the fast-mode execution time of every assignment's solution notebook on one
  core, against the course's targets (``CourseContent.fast_mode_seconds``);
* the sandbox's start-up numbers, when ``coursekit.sandbox`` offers a
  ``measure_startup()`` function.

Prints a table and writes everything to ``reports/bench.json``.  The machine
is shared, so absolute numbers are noisy: compare the two runs of one bench.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from coursekit import classgen, dask_bench, events, gradebook
from coursekit.content import content_of
from coursekit.nbrun import venv_env
from coursekit.paths import MODE_VARIABLE, Course, CourseError

SPEEDUP_TARGET = 3.0


def _env() -> dict:
    env = venv_env()
    env[MODE_VARIABLE] = "fast"
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, log: Path | None = None, check: bool = True,
           cpu: dict | None = None) -> float:
    """Wall seconds of a command; ``cpu["s"]``: CPU seconds of it and the processes it waited for.
    (A process: the bench measures the commands as an instructor runs them, start-up included.)"""
    start, cpu0 = time.perf_counter(), _cpu_children()
    with open(log, "wb") if log else open(os.devnull, "wb") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_env())
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu["s"] = _cpu_children() - cpu0
    if check and proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log else ""
        raise CourseError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return wall


# ---------------------------------------------------------------- pieces

def floor(repeats: int = 3) -> float:
    """Median wall time of a bare ``python -c "import torch"``."""
    times = [_timed([sys.executable, "-c", "import torch"], Path.cwd()) for _ in range(repeats)]
    return statistics.median(times)


def bench_assignment(repo: Course) -> str:
    """The assignment the bench grades by default: the course's first one with a catalogue."""
    for assignment in repo.assignments():
        try:
            if classgen.catalogue(assignment, repo):
                return assignment
        except CourseError:
            continue
    raise CourseError(f"no assignment of {repo.root} has a catalogue of generated submissions to grade "
                      "(CourseContent.package in nbgrader_config.py)")


def bench_class(course: Course, size: int, assignment: str) -> list[classgen.Variant]:
    """The assignment's catalogue, repeated under new student ids until ``size`` submissions."""
    base = classgen.catalogue(assignment, course)
    if not base:
        raise CourseError(f"the catalogue of {assignment} is empty")
    out = []
    for k in range((size + len(base) - 1) // len(base)):
        out += [dataclasses.replace(v, student=f"{v.student}-{k:02d}") for v in base]
    return out[:size]


def make_courses(repo: Course, dest: Path, size: int, assignment: str) -> tuple[Course, Course, int]:
    """Two identical scratch courses (config, source, release, gradebook, the same class)."""
    if dest.exists():
        shutil.rmtree(dest)
    first = Course((dest / "serial").resolve())
    first.root.mkdir(parents=True)
    shutil.copy2(repo.root / "nbgrader_config.py", first.root / "nbgrader_config.py")
    shutil.copytree(repo.source / assignment, first.source / assignment)
    _timed([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"], first.root,
           log=dest / "generate_assignment.log")
    variants = bench_class(first, size, assignment)
    classgen.write_class(first, assignment, variants)
    second = Course((dest / "parallel").resolve())
    shutil.copytree(first.root, second.root)
    return first, second, len(variants)


def compare(serial: Course, parallel: Course, assignment: str) -> dict:
    """Every grade cell's auto_score, read from both gradebooks."""
    a, b = gradebook.scores(serial, assignment), gradebook.scores(parallel, assignment)
    differences = []
    for student in sorted(set(a) | set(b)):
        for cell in sorted(set(a.get(student, {})) | set(b.get(student, {}))):
            x, y = a.get(student, {}).get(cell), b.get(student, {}).get(cell)
            if x != y:
                differences.append({"student": student, "cell": cell, "serial": x, "parallel": y})
    return {"identical": not differences and bool(a), "students": len(a), "differences": differences[:20]}


def _marks(course: Course, student: str, assignment: str) -> dict[str, float]:
    """When one submission's phases began and ended, from the events its last grading attempt
    recorded (:mod:`coursekit.events`): ``graded`` (the worker's start and end), the first
    ``kernel_started`` (when the Execute step began, warm or cold), ``trusted_checked`` (seconds)."""
    log = events.since_last_start(events.read(course.root, assignment, student))
    marks: dict[str, float] = {}
    for e in log:
        kind = e.get("kind")
        if kind == events.GRADED and e.get("started") and e.get("ended"):
            marks["start"], marks["end"] = e["started"], e["ended"]
        elif kind == events.KERNEL_STARTED and "execute" not in marks and e.get("execute_started"):
            marks["execute"] = e["execute_started"]
            marks["warm"] = 1.0 if e.get("mode") == "warm" else 0.0
        elif kind == events.TRUSTED_CHECKED:
            marks["trusted_s"] = marks.get("trusted_s", 0.0) + float(e.get("seconds") or 0.0)
    return marks


def _cell_times(notebook: Path) -> tuple[float, float] | None:
    """(first cell's execute_input, last cell's idle) recorded by nbclient in the autograded notebook."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    stamps = [c.get("metadata", {}).get("execution", {}) for c in cells]
    stamps = [e for e in stamps if "iopub.execute_input" in e and "iopub.status.idle" in e]
    if not stamps:
        return None
    iso = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()  # noqa: E731
    return iso(stamps[0]["iopub.execute_input"]), iso(stamps[-1]["iopub.status.idle"])


def profile(course: Course, assignment: str) -> dict[str, float]:
    """Median seconds of each phase of one submission in a worker: nbgrader set-up and sanitize,
    kernel start, cell execution, trusted checks, the rest (saving grades, writing). From the
    events each submission's grading recorded and the execution times nbclient records in the
    autograded notebooks."""
    phases: dict[str, list[float]] = {k: [] for k in
                                      ("setup+sanitize", "kernel start", "execution", "trusted checks",
                                       "after execution (other)", "total")}
    warm: list[bool] = []
    for folder in sorted((course.state / "events" / assignment).glob("*.jsonl")):
        student = folder.stem
        marks = _marks(course, student, assignment)
        cells = None
        for nb in (course.autograded / student / assignment).glob("*.ipynb"):
            cells = _cell_times(nb)
        if not cells or not {"start", "execute", "end"} <= set(marks):
            continue
        first, last = cells
        trusted = marks.get("trusted_s", 0.0)
        phases["setup+sanitize"].append(marks["execute"] - marks["start"])
        phases["kernel start"].append(first - marks["execute"])
        phases["execution"].append(last - first)
        phases["trusted checks"].append(trusted)
        phases["after execution (other)"].append(marks["end"] - last - trusted)
        phases["total"].append(marks["end"] - marks["start"])
        warm.append(bool(marks.get("warm")))
    out: dict = {k: round(statistics.median(v), 2) for k, v in phases.items() if v}
    out["warm kernels"] = f"{sum(warm)} of {len(warm)}"
    return out


def solution_times(repo: Course, work: Path) -> dict[str, dict]:
    """Fast-mode execution of every assignment's solution (source) notebook, pinned to one core,
    against the course's targets (``CourseContent.fast_mode_seconds``)."""
    targets = content_of(repo.root).fast_mode_seconds
    import nbformat
    from nbclient import NotebookClient

    out: dict[str, dict] = {}
    cpus = sorted(os.sched_getaffinity(0))
    for assignment in repo.assignments():
        for path in repo.source_notebooks(assignment):
            run_dir = work / "solutions" / assignment
            shutil.copytree(path.parent, run_dir, dirs_exist_ok=True)
            nb = nbformat.read(str(path), as_version=4)
            env_before = {k: os.environ.get(k) for k in (MODE_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            os.environ.update({MODE_VARIABLE: "fast", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
            os.sched_setaffinity(0, {cpus[-1]})  # the kernel inherits one core
            error = None
            start = time.perf_counter()
            try:
                client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                        resources={"metadata": {"path": str(run_dir)}})
                client.execute()
            except Exception as exc:  # noqa: BLE001 - reported in the table, the bench goes on
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
            finally:
                wall = time.perf_counter() - start
                os.sched_setaffinity(0, set(cpus))
                for k, v in env_before.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            target = targets.get(assignment)
            out[f"{assignment}/{path.name}"] = {
                "seconds": round(wall, 2), "target_s": target, "error": error,
                "meets_target": (error is None and (target is None or wall <= target)),
            }
    return out


def sandbox_startup() -> dict | None:
    """The sandbox's own kernel start-up measurements (plain, sandboxed cold, sandboxed warm)."""
    try:
        from coursekit.sandbox.check import measure_startup
    except ImportError:
        return None
    try:
        return dict(measure_startup())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- the bench

def bench(repo: Course, size: int = 40, jobs: int = 2, solutions: bool = True, keep: bool = False,
          dask: bool = True, assignment: str | None = None) -> dict:
    assignment = assignment or bench_assignment(repo)
    if size < 40:
        print(f"note: {size} submissions (the bench's reference size is 40)", file=sys.stderr)
    work = repo.state / "bench"
    result: dict = {"when": dt.datetime.now().isoformat(timespec="seconds"), "machine": {
        "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
        "load_avg_at_start": list(os.getloadavg())}}

    print("floor: python -c 'import torch' ...", file=sys.stderr, flush=True)
    result["floor_s"] = round(floor(), 3)

    print(f"class: {size} submissions of {assignment} ...", file=sys.stderr, flush=True)
    serial, parallel, n = make_courses(repo, work, size, assignment)
    result["submissions"] = n
    on_dask = dask_bench.copy_course(serial, work) if dask else None

    print("serial: nbgrader autograde ...", file=sys.stderr, flush=True)
    # nbgrader exits 1 when some submission cannot be graded: the run still counts
    cpu_serial, cpu_parallel = {}, {}
    t_serial = _timed([sys.executable, "-m", "nbgrader", "autograde", assignment], serial.root,
                      log=work / "serial.log", check=False, cpu=cpu_serial)
    print(f"  {t_serial:.1f} s\nparallel: coursekit grade --jobs {jobs} ...", file=sys.stderr, flush=True)
    t_parallel = _timed([sys.executable, "-m", "coursekit", "grade", assignment, "--jobs", str(jobs)],
                        parallel.root, log=work / "parallel.log", cpu=cpu_parallel)
    print(f"  {t_parallel:.1f} s", file=sys.stderr, flush=True)
    result["serial_nbgrader"] = {"wall_s": round(t_serial, 2), "per_submission_s": round(t_serial / n, 3),
                                 "cpu_s": round(cpu_serial["s"], 1)}
    result["coursekit_grade"] = {"jobs": jobs, "wall_s": round(t_parallel, 2),
                                 "per_submission_s": round(t_parallel / n, 3), "cpu_s": round(cpu_parallel["s"], 1)}
    result["speedup"] = round(t_serial / t_parallel, 2)
    result["speedup_target"] = SPEEDUP_TARGET
    result["per_submission_over_floor"] = {
        "serial": round(t_serial / n / result["floor_s"], 2),
        "parallel": round(t_parallel / n / result["floor_s"], 2)}
    result["grades"] = compare(serial, parallel, assignment)
    if on_dask is not None:
        print(f"dask: coursekit grade --scheduler (LocalCluster, {jobs} workers) ...", file=sys.stderr, flush=True)
        result["dask"] = dask_bench.run(on_dask, parallel, jobs, t_parallel, work, _timed,
                                        lambda a, b: compare(a, b, assignment), assignment)
    result["worker_phases_median_s"] = profile(parallel, assignment)
    result["sandbox_startup"] = sandbox_startup()
    if solutions:
        print("solution notebooks, fast mode, one core ...", file=sys.stderr, flush=True)
        result["solution_notebooks_one_core"] = solution_times(repo, work)
    result["machine"]["load_avg_at_end"] = list(os.getloadavg())
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def print_table(r: dict) -> None:
    rows = [
        ("submissions", f"{r['submissions']}"),
        ("floor: python -c 'import torch'", f"{r['floor_s']:.2f} s"),
        ("serial nbgrader autograde", f"{r['serial_nbgrader']['wall_s']:.1f} s "
                                      f"({r['serial_nbgrader']['per_submission_s']:.2f} s/submission, "
                                      f"{r['per_submission_over_floor']['serial']:.1f}x floor)"),
        (f"coursekit grade --jobs {r['coursekit_grade']['jobs']}",
         f"{r['coursekit_grade']['wall_s']:.1f} s ({r['coursekit_grade']['per_submission_s']:.2f} s/submission, "
         f"{r['per_submission_over_floor']['parallel']:.1f}x floor)"),
        ("CPU seconds (serial / coursekit)",
         f"{r['serial_nbgrader'].get('cpu_s', 0):.0f} / {r['coursekit_grade'].get('cpu_s', 0):.0f}"),
        ("machine load average (start / end)",
         f"{r['machine']['load_avg_at_start'][0]:.1f} / {r['machine']['load_avg_at_end'][0]:.1f}"),
        ("speed-up", f"{r['speedup']:.2f}x (target {r['speedup_target']:g}x: "
                     f"{'met' if r['speedup'] >= r['speedup_target'] else 'NOT met'})"),
        ("grades identical", f"{'yes' if r['grades']['identical'] else 'NO'} ({r['grades']['students']} students)"),
    ] + dask_bench.table_rows(r)
    for phase, secs in r.get("worker_phases_median_s", {}).items():
        rows.append((f"  per submission in a worker: {phase}",
                     f"{secs:.2f} s (median)" if isinstance(secs, float) else str(secs)))
    for name, s in (r.get("solution_notebooks_one_core") or {}).items():
        target = f", target {s['target_s']:g} s" if s["target_s"] else ""
        status = f"ERROR {s['error']}" if s["error"] else ("ok" if s["meets_target"] else "over target")
        rows.append((f"solution {name}", f"{s['seconds']:.1f} s ({status}{target})"))
    if r.get("sandbox_startup"):
        for k, v in r["sandbox_startup"].items():
            rows.append((f"sandbox start-up: {k}", str(v)))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if r["grades"]["differences"]:
        print("\ngrade differences (first ones):")
        for d in r["grades"]["differences"]:
            print(f"  {d}")


def add_arguments(parser) -> None:
    parser.add_argument("--students", type=int, default=40, help="size of the generated class (default 40)")
    parser.add_argument("--assignment", default=None,
                        help="assignment whose catalogue makes the class (default: the first one with a catalogue)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs of coursekit grade (default 2)")
    parser.add_argument("--no-solutions", action="store_true", help="skip timing the solution notebooks")
    parser.add_argument("--keep", action="store_true", help="keep the scratch courses in .coursekit/bench")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    parser.add_argument("--out", default=None, help="JSON output (default: reports/bench.json)")


def run(args) -> int:
    repo = Course.at(args.course)
    result = bench(repo, size=args.students, jobs=args.jobs, solutions=not args.no_solutions, keep=args.keep,
                   dask=not args.no_dask, assignment=args.assignment)
    out = Path(args.out) if args.out else repo.reports / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_table(result)
    print(f"\nwritten: {out}")
    return 0 if result["grades"]["identical"] and result.get("dask", {}).get("grades_identical_to_jobs", True) else 1
