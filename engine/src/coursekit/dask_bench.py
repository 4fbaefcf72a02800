"""The Dask part of ``make bench``: the same class through a ``distributed.LocalCluster``.

Side by side with ``coursekit grade --jobs N`` on the same machine, in an
identical scratch course: a LocalCluster with N worker processes of one
thread each (one per core, as the README's recipes start workers) is started
first (its start-up is reported apart: a real cluster is already running),
then ``coursekit grade --scheduler ADDRESS`` is timed as a whole (connecting,
shipping the course and the submissions, grading, bringing the results back,
merging).  Reported: wall time, its ratio to ``--jobs N`` (the overhead of
going through Dask on one machine; target within 25 %), and whether every
grade equals the ``--jobs N`` run's.
"""
from __future__ import annotations

import resource
import shutil
import sys
import time
from pathlib import Path

from coursekit.paths import Course

OVERHEAD_TARGET = 1.25


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def copy_course(ungraded: Course, work: Path) -> Course:
    """An identical, not yet graded copy of the bench course (take it before grading ``ungraded``)."""
    dest = Course((work / "dask").resolve())
    shutil.rmtree(dest.root, ignore_errors=True)
    shutil.copytree(ungraded.root, dest.root)
    return dest


def run(course: Course, reference: Course, jobs: int, reference_wall: float, work: Path, timed, compare,
        assignment: str) -> dict:
    """Grade ``course`` on a fresh LocalCluster of ``jobs`` workers; compare with ``reference`` (--jobs)."""
    try:
        from distributed import LocalCluster
    except ImportError as exc:
        return {"error": f"distributed is not installed ({exc}): pip install -r requirements.txt"}
    cpu0 = _cpu_children()
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    startup = time.perf_counter() - t0
    try:
        cpu: dict = {}
        wall = timed([sys.executable, "-m", "coursekit", "grade", assignment, "--scheduler",
                      cluster.scheduler_address], course.root, log=work / "dask.log", cpu=cpu)
    finally:
        cluster.close()  # its worker processes are reaped here: their CPU counts below
    cpu["s"] = _cpu_children() - cpu0
    ratio = wall / reference_wall
    grades = compare(reference, course)
    return {"workers": jobs, "cluster_start_s": round(startup, 2), "wall_s": round(wall, 2),
            "cpu_s": round(cpu.get("s", 0.0), 1),
            "ratio_to_jobs": round(ratio, 3), "ratio_target": OVERHEAD_TARGET,
            "meets_target": ratio <= OVERHEAD_TARGET,
            "grades_identical_to_jobs": grades["identical"], "grade_differences": grades["differences"]}


def table_rows(r: dict) -> list[tuple[str, str]]:
    d = r.get("dask")
    if not d:
        return []
    if "error" in d:
        return [("coursekit grade --scheduler (LocalCluster)", f"not run: {d['error']}")]
    jobs = r["runs"]["coursekit"]["jobs"]
    return [
        (f"coursekit grade --scheduler (LocalCluster, {d['workers']} workers)",
         f"{d['wall_s']:.1f} s (cluster start {d['cluster_start_s']:.1f} s, apart; "
         f"CPU {d['cpu_s']:.0f} s with the workers)"),
        (f"Dask / --jobs {jobs}", f"{d['ratio_to_jobs']:.2f}x (target <= {d['ratio_target']:g}x: "
                                  f"{'met' if d['meets_target'] else 'NOT met'})"),
        ("Dask grades identical to --jobs", "yes" if d["grades_identical_to_jobs"] else "NO"),
    ]
