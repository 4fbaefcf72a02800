"""``coursekit grade ASSIGNMENT``: nbgrader's autograde, N submissions at a time.

What it owns: the command, and one grading run put together from its parts in
:mod:`coursekit.autograde`:

1. :mod:`~coursekit.autograde.plan` reads the course's nbgrader configuration
   (course id, whether kernels run in the sandbox) and decides which
   submissions need grading (resuming an interrupted run; ``--force``
   regrades);
2. :mod:`~coursekit.autograde.pool` (the coordinator) runs them over
   long-lived :mod:`~coursekit.autograde.worker` processes, each running
   nbgrader's own ``Autograde`` converter with the course's configuration (so
   the repair, sandbox and trusted-check extensions apply exactly as under
   ``nbgrader autograde``) on its own scratch gradebook, enforces
   ``--timeout``, and merges each finished submission into ``gradebook.db``
   serially (:func:`coursekit.gradebook.merge`: SQLite has one writer);
3. :mod:`~coursekit.autograde.warm` starts the sandbox's warm fork server once
   per run, so that kernels come with ipykernel and torch already imported.

Speed: besides running N submissions at once, a run removes per-submission
start-up costs (nbgrader imported and configured once per worker, warm
kernels), and each kernel gets one math thread (``OMP_NUM_THREADS`` unless
set, ``--threads``): several threads per kernel oversubscribe the cores as
soon as anything else runs, which makes small torch operations tens of times
slower.

The names of the former single module stay importable from here.
"""
from __future__ import annotations

import argparse
import os
import sys

from coursekit.autograde.plan import (is_graded, plan, read_config, read_course_id, state_dir,  # noqa: F401
                                      submitted_students)
from coursekit.autograde.pool import (TERMINATE_GRACE, Grader, Summary, Worker, become_subreaper,  # noqa: F401
                                      kill_tree, sweep_orphans)
from coursekit.autograde.warm import WarmKernels, sandbox_disabled  # noqa: F401
from coursekit.autograde.worker import (CELL_TIMEOUT_ENAME, WARM_VARIABLE, StopGrading,  # noqa: F401
                                        _cell_timeouts, _log_filter, _unreadable, _worker_main)
from coursekit.gradebook import extract, merge  # noqa: F401
from coursekit.paths import Course, CourseError

_sandboxed_off = sandbox_disabled  # its former name

# Default wall-clock limit of one submission (all its notebooks), seconds.
DEFAULT_TIMEOUT = 600
# Threads of each kernel's math libraries (see grade()).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cpus() -> int:
    """The cores this process may run on (Linux: its affinity; elsewhere: all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def grade(course: Course, assignment: str, jobs: int | None = None, force: bool = False,
          timeout: float = DEFAULT_TIMEOUT, memory_mb: int | None = None,
          students: list[str] | None = None, progress: bool = True, warm: bool = True,
          threads: int | None = None) -> Summary:
    """Grade every (not yet graded) submission of ``assignment``; see the module docstring."""
    course.source_notebooks(assignment)  # clear error for an unknown assignment
    course_id, sandboxed = read_config(course)
    todo, done = plan(course, assignment, course_id, students, force)
    summary = Summary(skipped=done)
    jobs = max(1, jobs or usable_cpus())
    grader = Grader(course, assignment, jobs, timeout, memory_mb, course_id, progress)
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if threads or not os.environ.get("OMP_NUM_THREADS"):
        # Several threads per kernel oversubscribe the cores as soon as anything else runs
        # (other kernels, other users): torch's small operations then get tens of times slower
        # (an MLP cell of assignment 1: 0.3 s on one thread, 10 s on two under load). One thread
        # per kernel, parallelism across submissions. Workers and the warm server inherit it; the
        # sandbox passes it to the kernels.
        os.environ.update({k: str(threads or 1) for k in THREAD_VARIABLES})
    # One server for the whole run, started while the workers start: each submission starts two
    # kernels (its notebook's and its trusted re-check's child), so it pays from the first one.
    grader.warm = WarmKernels(warm and sandboxed and bool(todo) and not sandbox_disabled())
    try:
        return grader.run(todo, summary)
    finally:
        grader.warm.close()
        summary.warm_server_s = grader.warm.startup_s
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def print_summary(summary: Summary, assignment: str, course: Course) -> None:
    n = len(summary.graded)
    per = sum(summary.seconds[s] for s in summary.graded) / n if n else 0.0
    print(f"{assignment}: graded {n}, skipped {len(summary.skipped)} (already graded), "
          f"failed {len(summary.failed)} in {summary.wall:.1f} s"
          + (f" ({per:.1f} s per submission in a worker)" if n else "")
          + (f"; warm kernels (server start {summary.warm_server_s:.1f} s)" if summary.warm_server_s else ""))
    if summary.failed:
        print("not graded (recorded in .coursekit/events; fix and run again to retry):")
        for student, reason in sorted(summary.failed.items()):
            print(f"  {student}: {reason}")


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("--jobs", "-j", type=int, default=usable_cpus(),
                        help="submissions graded at the same time (default: the number of cores)")
    parser.add_argument("--force", action="store_true", help="grade again what is already graded")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds one submission may take in total before it is killed (default {DEFAULT_TIMEOUT}); "
                             "single cells are interrupted earlier by nbgrader's Execute.timeout")
    parser.add_argument("--memory", type=int, default=None, metavar="MB",
                        help="memory cap of each submission's kernel, in MB (default: the sandbox's)")
    parser.add_argument("--students", nargs="+", default=None, help="grade only these students")
    parser.add_argument("--threads", type=int, default=None,
                        help="math-library threads per kernel (default: $OMP_NUM_THREADS, else 1)")
    parser.add_argument("--cold", action="store_true",
                        help="no warm kernel server: every kernel imports torch itself (slower; for comparison)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any submission could not be graded")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="grade on the Dask cluster of this scheduler (tcp://host:8786; default: "
                             "c.DaskGrading.scheduler, else local workers; `local` forces local workers)")
    parser.add_argument("--shared-course", default=None, metavar="PATH",
                        help="with --scheduler: the course root as the Dask workers see it (shared file "
                             "system); default: the course's files travel with the tasks")


def run(args) -> int:
    try:
        return _run(args)
    except CourseError as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from coursekit.gradebook import ensure_assignment

    course = Course.at(args.course)
    course.source_notebooks(args.assignment)  # a clear error for an unknown assignment
    if not submitted_students(course, args.assignment):
        raise CourseError(f"nothing to grade: no {course.submitted}/<student>/{args.assignment}/ folder; "
                          f"collect first (coursekit collect {args.assignment} MOODLE.zip)")
    if ensure_assignment(course, args.assignment):  # a fresh clone: gradebook.db is not committed
        print(f"{args.assignment} added to {course.gradebook} (nbgrader generate_assignment; release/ untouched)")
    from coursekit import dask_grading
    cluster = dask_grading.scheduler_choice(args, course)
    if cluster:  # the same grading, on a Dask cluster (coursekit.dask_grading)
        summary = dask_grading.grade(course, args.assignment, force=args.force, timeout=args.timeout,
                                     memory_mb=args.memory, students=args.students, warm=not args.cold,
                                     threads=args.threads, **cluster)
    else:
        summary = grade(course, args.assignment, jobs=args.jobs, force=args.force, timeout=args.timeout,
                        memory_mb=args.memory, students=args.students, warm=not args.cold,
                        threads=args.threads)
    print_summary(summary, args.assignment, course)
    if summary.failed and not summary.graded and not summary.skipped:
        print(f"coursekit grade: no submission of {args.assignment} could be graded "
              f"({len(summary.failed)} failed, causes above)", file=sys.stderr)
        return 1
    return 1 if (args.strict and summary.failed) else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":  # the worker's former entry point
        from coursekit.autograde.worker import exit_now
        exit_now(_worker_main(sys.argv[2:]))
    sys.exit("usage: coursekit grade ASSIGNMENT")
