"""``coursekit bench`` (``make bench``): how fast a class is graded, measured side by side.

In one run, on one generated class (the catalogue of ``--assignment``, by default
the course's first assignment that has one, repeated under new student ids up to
``--students``, default 40), in identical scratch courses under
``.coursekit/bench/``:

* the floor: a bare ``python -c "import torch"`` (what any kernel of a PyTorch
  course must pay; the warm kernels' fork server preloads it);
* four ways of grading it, each timed as an instructor runs it (one command,
  start-up and exit included):

  - ``vanilla``: plain serial ``nbgrader autograde`` with no extension (a
    configuration holding only the course id and ``Execute.timeout``): no
    sandbox, no trusted re-checks, the baseline the product goal is stated
    against;
  - ``nbgrader cold`` / ``nbgrader warm``: plain serial ``nbgrader autograde``
    with the course's ``nbgrader_config.py`` (sandbox, trusted re-checks),
    once with ``--SandboxKernelManager.start_warm_server=False`` (every kernel
    and every trusted re-check's child imports torch itself) and once as
    configured (one warm fork server per process, started at its first kernel).
    Serial runs of the course's configuration cost minutes per ten submissions,
    so these two grade the first ``--sample`` submissions of the class (the
    same ones), not all of it;
  - ``coursekit grade --jobs N`` on the whole class;

  and for each: wall time, CPU seconds, the seconds each submission took
  (nbgrader's log, time-stamped for the purpose: from "Creating/updating
  student" to its last line; ``coursekit grade``: the worker's own start and
  end, from the ``graded`` events), their sum and median, the run's fixed
  overhead (wall minus the sum of the submissions' seconds divided by the jobs:
  start-up, the wait for warm kernels, the tail, idle workers at the end), how
  its kernels and trusted re-check children started (events), and its
  effective seconds per submission against vanilla's;
* the product goal: ``coursekit grade --jobs N`` at least 3x faster than
  vanilla on the whole class, with a fixed overhead under 10 s;
* that the grades agree: nbgrader cold = nbgrader warm, and ``coursekit
  grade`` = nbgrader warm on the sample (every grade cell's ``auto_score``);
  vanilla's differ where the trusted re-checks fail what the kernel passed
  (counted, not an error);
* ``coursekit grade --scheduler`` on a ``distributed.LocalCluster`` of N
  worker processes, in one more identical course: its wall time, its ratio to
  ``--jobs N`` (the overhead of going through Dask) and whether its grades
  equal ``--jobs N``'s (``coursekit.dask_bench``; ``--no-dask`` skips it);
* where ``coursekit grade``'s time goes per submission (medians, from the
  events each submission records and the cell timings nbclient records:
  nbgrader set-up + sanitize, kernel start, execution, trusted checks, the
  rest);
* the load average, since the machine may be shared;
* the fast-mode execution time of every assignment's solution notebook on one
  core, against the course's targets (``CourseContent.fast_mode_seconds``);
  ``--no-solutions`` skips it;
* the sandbox's start-up numbers, when ``coursekit.sandbox`` offers a
  ``measure_startup()`` function.

Prints a table and writes everything to ``reports/bench.json``.  The machine
may be shared, so absolute numbers are noisy: compare the runs of one bench.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
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

# The product goal: `coursekit grade --jobs N` this many times faster than vanilla serial nbgrader on
# the whole class, with a fixed overhead (start-up, waits, tail) under OVERHEAD_TARGET seconds.
SPEEDUP_TARGET = 3.0
OVERHEAD_TARGET = 10.0
# Submissions the two serial runs with the course's extensions grade (the first ones of the class).
DEFAULT_SAMPLE = 8


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


# Plain nbgrader's log lines, time-stamped (``--NbGrader.log_format``) so that each submission's
# seconds can be read from it: a submission begins at nbgrader's "Creating/updating student" line
# and ends at the last line before the next one begins.
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(color)s[%(name)s | %(levelname)s]%(end_color)s %(message)s"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ")
_STUDENT = re.compile(r"Creating/updating student with ID '([^']*)'")


def vanilla_config(repo: Course) -> str:
    """An ``nbgrader_config.py`` with no extension: the course id and ``Execute.timeout`` of the course's."""
    from coursekit.content import course_config

    config = course_config(repo.root)
    course_id = config.get("CourseDirectory", {}).get("course_id", "default_course")
    timeout = config.get("Execute", {}).get("timeout", 30)
    return ('"""Plain nbgrader, none of the course\'s extensions (coursekit bench\'s baseline)."""\n'
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.course_id = {course_id!r}\n"
            f"c.Execute.timeout = {timeout!r}\n")


def make_courses(repo: Course, dest: Path, size: int, assignment: str,
                 sample: int) -> tuple[dict[str, Course], list[str], list[str]]:
    """Identical scratch courses (config, source, release, gradebook, the same class): ``coursekit``
    (the whole class, the course's configuration), ``vanilla`` (the whole class, no extension),
    ``nbgrader_cold`` and ``nbgrader_warm`` (the first ``sample`` submissions of the class, the
    course's configuration).  Returns them, the class's students and the sample's."""
    if dest.exists():
        shutil.rmtree(dest)
    first = Course((dest / "coursekit").resolve())
    first.root.mkdir(parents=True)
    shutil.copy2(repo.root / "nbgrader_config.py", first.root / "nbgrader_config.py")
    shutil.copytree(repo.source / assignment, first.source / assignment)
    _timed([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"], first.root,
           log=dest / "generate_assignment.log")
    variants = bench_class(first, size, assignment)
    classgen.write_class(first, assignment, variants)
    students = [v.student for v in variants]
    chosen = students[:max(0, sample)]
    courses = {"coursekit": first}
    vanilla = courses["vanilla"] = Course((dest / "vanilla").resolve())
    shutil.copytree(first.root, vanilla.root)
    (vanilla.root / "nbgrader_config.py").write_text(vanilla_config(repo))
    if chosen:
        for name in ("nbgrader_cold", "nbgrader_warm"):
            course = courses[name] = Course((dest / name).resolve())
            shutil.copytree(first.root, course.root)
            for student in set(students) - set(chosen):
                shutil.rmtree(course.submitted / student)
    return courses, students, chosen


def compare(serial: Course, parallel: Course, assignment: str, students: list[str] | None = None) -> dict:
    """Every grade cell's auto_score, read from both gradebooks (only ``students``' when given)."""
    a, b = gradebook.scores(serial, assignment), gradebook.scores(parallel, assignment)
    if students is not None:
        a = {s: a[s] for s in students if s in a}
        b = {s: b[s] for s in students if s in b}
        missing = set(students) - (set(a) & set(b))
    else:
        missing = set()
    differences = [{"student": s, "missing": True} for s in sorted(missing)]
    for student in sorted(set(a) | set(b)):
        for cell in sorted(set(a.get(student, {})) | set(b.get(student, {}))):
            x, y = a.get(student, {}).get(cell), b.get(student, {}).get(cell)
            if x != y:
                differences.append({"student": student, "cell": cell, "serial": x, "parallel": y})
    students_differing = sorted({d["student"] for d in differences})
    return {"identical": not differences and bool(a), "students": len(a), "students_differing": students_differing,
            "differences": differences[:20]}


def nbgrader_seconds(log: Path) -> dict[str, float]:
    """Seconds of each submission of a plain ``nbgrader autograde`` run, from its log (``LOG_FORMAT``)."""
    out: dict[str, float] = {}
    student, start, last = None, 0.0, 0.0
    for line in log.read_text(errors="replace").splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
        who = _STUDENT.search(line)
        if who:
            if student is not None:
                out[student] = last - start
            student, start = who.group(1), t
        last = t
    if student is not None:
        out[student] = last - start
    return out


def worker_seconds(course: Course, assignment: str) -> dict[str, float]:
    """Seconds of each submission of a ``coursekit grade`` run in its worker (the ``graded`` events)."""
    out: dict[str, float] = {}
    for path in sorted((course.state / "events" / assignment).glob("*.jsonl")):
        for e in events.since_last_start(events.read(course.root, assignment, path.stem)):
            if e.get("kind") == events.GRADED and e.get("seconds") is not None:
                out[path.stem] = float(e["seconds"])
    return out


def kernel_modes(course: Course, assignment: str) -> dict[str, str]:
    """How a run's kernels started: the notebooks' (``kernel_started``) and the trusted re-checks'
    children (``trusted_checked``), "W warm of N"."""
    kernels, children = [], []
    for path in sorted((course.state / "events" / assignment).glob("*.jsonl")):
        for e in events.since_last_start(events.read(course.root, assignment, path.stem)):
            if e.get("kind") == events.KERNEL_STARTED:
                kernels.append(e.get("mode"))
            elif e.get("kind") == events.TRUSTED_CHECKED:
                children.append(e.get("child"))
    return {"kernels": f"{kernels.count('warm')} warm of {len(kernels)}",
            "children": f"{children.count('warm')} warm of {len(children)}"}


def summarise(wall: float, cpu: float, seconds: dict[str, float], jobs: int = 1) -> dict:
    """One run's numbers: per-submission seconds (their sum and median), the effective seconds per
    submission (sum / submissions / jobs) and the fixed overhead (wall - sum / jobs)."""
    n = len(seconds)
    work = sum(seconds.values())
    return {"submissions": n, "jobs": jobs, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1),
            "work_s": round(work, 2),
            "per_submission_s": round(work / n, 3) if n else None,
            "median_s": round(statistics.median(seconds.values()), 3) if n else None,
            "effective_s": round(work / n / jobs, 3) if n else None,
            "fixed_overhead_s": round(wall - work / jobs, 2),
            "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())}}


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
    from coursekit.sandbox.check import measure_startup

    try:
        return dict(measure_startup())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- the bench

RUNS = {  # key: what the table calls it
    "vanilla": "vanilla nbgrader autograde (serial, no extension)",
    "nbgrader_cold": "nbgrader autograde + extensions, cold (serial)",
    "nbgrader_warm": "nbgrader autograde + extensions, warm (serial)",
    "coursekit": "coursekit grade --jobs {jobs}",
    "dask": "coursekit grade --scheduler (LocalCluster, {jobs} workers)",
}


def _nbgrader_run(course: Course, assignment: str, log: Path, extra: tuple[str, ...] = ()) -> dict:
    """A plain ``nbgrader autograde`` run, timed, with each submission's seconds from its log."""
    cpu: dict = {}
    # nbgrader exits 1 when some submission cannot be graded: the run still counts
    wall = _timed([sys.executable, "-m", "nbgrader", "autograde", assignment, f"--NbGrader.log_format={LOG_FORMAT}",
                   *extra], course.root, log=log, check=False, cpu=cpu)
    return summarise(wall, cpu["s"], nbgrader_seconds(log))


def _ratios(result: dict) -> None:
    """Each run's effective seconds per submission against vanilla's, and the product goal."""
    runs = result["runs"]
    base = runs["vanilla"]
    for name, r in runs.items():
        if r.get("effective_s") and base.get("effective_s"):
            r["vs_vanilla"] = round(base["effective_s"] / r["effective_s"], 2)
    ck = runs["coursekit"]
    result["speedup"] = round(base["wall_s"] / ck["wall_s"], 2)  # the same class, wall against wall
    result["goal"] = {"speedup_target": SPEEDUP_TARGET, "overhead_target_s": OVERHEAD_TARGET,
                      "speedup_met": result["speedup"] >= SPEEDUP_TARGET,
                      "overhead_met": ck["fixed_overhead_s"] < OVERHEAD_TARGET}


def bench(repo: Course, size: int = 40, jobs: int = 2, solutions: bool = True, keep: bool = False,
          dask: bool = True, assignment: str | None = None, sample: int = DEFAULT_SAMPLE) -> dict:
    assignment = assignment or bench_assignment(repo)
    if size < 40:
        print(f"note: {size} submissions (the bench's reference size is 40)", file=sys.stderr)
    sample = min(sample, size)
    work = repo.state / "bench"
    result: dict = {"when": dt.datetime.now().isoformat(timespec="seconds"), "machine": {
        "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
        "load_avg_at_start": list(os.getloadavg())}, "assignment": assignment}
    started = time.perf_counter()

    print("floor: python -c 'import torch' ...", file=sys.stderr, flush=True)
    result["floor_s"] = round(floor(), 3)

    print(f"class: {size} submissions of {assignment} ...", file=sys.stderr, flush=True)
    courses, students, chosen = make_courses(repo, work, size, assignment, sample)
    result["submissions"], result["sample"] = len(students), chosen
    on_dask = dask_bench.copy_course(courses["coursekit"], work) if dask else None
    runs = result["runs"] = {}

    def say(what: str) -> None:
        print(f"{what} ...", file=sys.stderr, flush=True)

    def done(name: str) -> None:
        r = runs[name]
        print(f"  {r['wall_s']:.1f} s, {r['submissions']} submissions, overhead {r['fixed_overhead_s']:.1f} s",
              file=sys.stderr, flush=True)

    # vanilla and coursekit grade (the headline ratio) one after the other, then the sample's runs
    say(f"vanilla: nbgrader autograde, no extension, {len(students)} submissions")
    runs["vanilla"] = _nbgrader_run(courses["vanilla"], assignment, work / "vanilla.log")
    done("vanilla")
    say(f"coursekit grade --jobs {jobs}, {len(students)} submissions")
    cpu: dict = {}
    wall = _timed([sys.executable, "-m", "coursekit", "grade", assignment, "--jobs", str(jobs)],
                  courses["coursekit"].root, log=work / "coursekit.log", cpu=cpu)
    runs["coursekit"] = summarise(wall, cpu["s"], worker_seconds(courses["coursekit"], assignment), jobs)
    runs["coursekit"].update(kernel_modes(courses["coursekit"], assignment))
    done("coursekit")
    if chosen:
        say(f"nbgrader autograde + extensions, warm, {len(chosen)} submissions")
        runs["nbgrader_warm"] = _nbgrader_run(courses["nbgrader_warm"], assignment, work / "nbgrader_warm.log")
        runs["nbgrader_warm"].update(kernel_modes(courses["nbgrader_warm"], assignment))
        done("nbgrader_warm")
        say(f"nbgrader autograde + extensions, cold, {len(chosen)} submissions")
        runs["nbgrader_cold"] = _nbgrader_run(courses["nbgrader_cold"], assignment, work / "nbgrader_cold.log",
                                              ("--SandboxKernelManager.start_warm_server=False",))
        runs["nbgrader_cold"].update(kernel_modes(courses["nbgrader_cold"], assignment))
        done("nbgrader_cold")
    _ratios(result)

    grades = result["grades"] = {
        "coursekit_vs_vanilla": compare(courses["vanilla"], courses["coursekit"], assignment)}
    if chosen:
        grades["warm_vs_cold"] = compare(courses["nbgrader_cold"], courses["nbgrader_warm"], assignment, chosen)
        grades["coursekit_vs_warm"] = compare(courses["nbgrader_warm"], courses["coursekit"], assignment, chosen)
    # vanilla has no trusted re-checks: its grades differ wherever they fail what the kernel passed
    result["grades_identical"] = all(g["identical"] for k, g in grades.items() if k != "coursekit_vs_vanilla")
    if on_dask is not None:
        print(f"dask: coursekit grade --scheduler (LocalCluster, {jobs} workers) ...", file=sys.stderr, flush=True)
        result["dask"] = dask_bench.run(on_dask, courses["coursekit"], jobs, runs["coursekit"]["wall_s"], work,
                                        _timed, lambda a, b: compare(a, b, assignment), assignment)
        if "wall_s" in result["dask"]:
            runs["dask"] = summarise(result["dask"]["wall_s"], result["dask"]["cpu_s"],
                                     worker_seconds(on_dask, assignment), jobs)
            runs["dask"].update(kernel_modes(on_dask, assignment))
            _ratios(result)
    result["worker_phases_median_s"] = profile(courses["coursekit"], assignment)
    result["sandbox_startup"] = sandbox_startup()
    if solutions:
        print("solution notebooks, fast mode, one core ...", file=sys.stderr, flush=True)
        result["solution_notebooks_one_core"] = solution_times(repo, work)
    result["machine"]["load_avg_at_end"] = list(os.getloadavg())
    result["bench_wall_s"] = round(time.perf_counter() - started, 1)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def run_rows(r: dict) -> list[list[str]]:
    """The side-by-side table: one row per run."""
    rows = [["run", "subs", "wall s", "s/sub", "median", "eff. s/sub", "overhead s", "CPU s", "vs vanilla",
             "kernels / children warm"]]
    jobs = r["runs"]["coursekit"]["jobs"]
    for name, label in RUNS.items():
        x = r["runs"].get(name)
        if not x:
            continue
        num = lambda v, f=".2f": "-" if v is None else format(v, f)  # noqa: E731
        modes = "-"
        if "kernels" in x:  # "W warm of N" -> "W/N"
            modes = ", ".join("/".join(x[k].split(" warm of ")) for k in ("kernels", "children"))
        rows.append([label.format(jobs=jobs), str(x["submissions"]), num(x["wall_s"], ".1f"),
                     num(x["per_submission_s"]), num(x["median_s"]), num(x["effective_s"]),
                     num(x["fixed_overhead_s"], ".1f"), num(x["cpu_s"], ".0f"),
                     f"{x['vs_vanilla']:.2f}x" if x.get("vs_vanilla") else "-", modes])
    return rows


def print_table(r: dict) -> None:
    table = run_rows(r)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print("(s/sub: seconds each submission took, mean; eff. s/sub: that / jobs; overhead: wall - sum / jobs; "
          "vs vanilla: vanilla's eff. s/sub / this run's)")
    goal = r["goal"]
    ck = r["runs"]["coursekit"]
    grades = r["grades"]
    rows = [
        ("class", f"{r['submissions']} submissions of {r['assignment']}; serial runs with extensions: "
                  f"the first {len(r['sample'])}"),
        ("floor: python -c 'import torch'", f"{r['floor_s']:.2f} s"),
        (f"speed-up, coursekit grade --jobs {ck['jobs']} vs vanilla (wall, {r['submissions']} submissions)",
         f"{r['speedup']:.2f}x (target {goal['speedup_target']:g}x: {'met' if goal['speedup_met'] else 'NOT met'})"),
        ("coursekit grade's fixed overhead", f"{ck['fixed_overhead_s']:.1f} s (target < {goal['overhead_target_s']:g} s: "
                                             f"{'met' if goal['overhead_met'] else 'NOT met'})"),
        ("machine load average (start / end)",
         f"{r['machine']['load_avg_at_start'][0]:.1f} / {r['machine']['load_avg_at_end'][0]:.1f} "
         f"on {r['machine']['usable_cpus']} cores"),
        ("bench wall time", f"{r.get('bench_wall_s', 0):.0f} s"),
    ]
    if "warm_vs_cold" in grades:
        rows.append(("grades: nbgrader warm = cold (sample)", "yes" if grades["warm_vs_cold"]["identical"] else "NO"))
        rows.append(("grades: coursekit grade = nbgrader warm (sample)",
                     "yes" if grades["coursekit_vs_warm"]["identical"] else "NO"))
    differing = grades["coursekit_vs_vanilla"]["students_differing"]
    rows.append(("grades: vanilla differs from coursekit grade (no trusted re-checks there)",
                 f"{len(differing)} of {r['submissions']} submissions"))
    rows += dask_bench.table_rows(r)
    for phase, secs in r.get("worker_phases_median_s", {}).items():
        rows.append((f"  coursekit grade, per submission in a worker: {phase}",
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
    for key in ("warm_vs_cold", "coursekit_vs_warm"):
        if key in grades and grades[key]["differences"]:
            print(f"\ngrade differences, {key} (first ones):")
            for d in grades[key]["differences"]:
                print(f"  {d}")


def add_arguments(parser) -> None:
    parser.add_argument("--students", type=int, default=40, help="size of the generated class (default 40)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help="submissions of the class the serial runs with the course's extensions (cold, warm) "
                             f"grade (default {DEFAULT_SAMPLE}; 0 skips them)")
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
                   dask=not args.no_dask, assignment=args.assignment, sample=args.sample)
    out = Path(args.out) if args.out else repo.reports / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_table(result)
    print(f"\nwritten: {out}")
    return 0 if result["grades_identical"] and result.get("dask", {}).get("grades_identical_to_jobs", True) else 1
