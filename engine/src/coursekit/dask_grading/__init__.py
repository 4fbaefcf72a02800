"""``coursekit grade ASSIGNMENT --scheduler ADDRESS``: the same grading on a Dask cluster.

What it owns: sending each submission to a Dask ``distributed`` cluster as one
task, grading it there exactly as a local worker does, and bringing the result
back to the coordinator, which alone writes ``gradebook.db``, ``autograded/``,
the event log and the per-submission logs (as with local workers).

The coordinator (``DaskGrader``, a ``grading.Grader``) keeps the local path's
planning, resume rule, in-flight markers, progress bar, failure reporting and
gradebook merge unchanged; only *where* a submission is graded changes.

What travels
------------
Nothing assumes a shared file system.  Once per run the coordinator builds a
*course bundle* (``nbgrader_config.py``, ``notebooks/`` and the assignment's
``source/`` and ``release/`` folders, as a tar archive in memory) and a
snapshot of ``gradebook.db`` (SQLite backup API), and scatters both to the
cluster; each task carries one student's submitted folder.  When the
instructor names a shared path instead (``--shared-course PATH``, or
``c.DaskGrading.shared_course``: the course root as the workers see it), the
workers copy the same files from there and only the gradebook snapshot
travels.

On a worker
-----------
Each Dask worker thread keeps a *station* for the run: a private copy of the
course (from the bundle) in the worker's local directory, with the snapshot as
its scratch gradebook, and one long-lived grading process started with
``grading``'s own worker entry point (``python -m coursekit.grading --worker``:
nbgrader's ``Autograde`` with the course's configuration, the memory cap as
``--SandboxKernelManager.memory_mb``).  A worker process shares one warm
kernel server (``grading.WarmKernels``) among its threads.  Per task the
station writes the submission into its copy, grades it, enforces the
``--timeout`` (SIGTERM, then kill, as locally) and returns the result, the
autograded files, the submission's log and the events the extensions recorded.

Sandbox: a course whose configuration runs kernels in the sandbox is only
graded on workers that can start it: each worker process proves it once (a
real sandboxed ``/bin/true`` through ``coursekit.sandbox.wrap_command``) and
refuses every task otherwise (``SandboxRefused``; also when the worker has
``COURSEKIT_SANDBOX=off``); the coordinator then sends the task to the other
workers, and reports it ungraded when none can.  Nothing is ever graded
unsandboxed because a worker lacks bubblewrap.

Failures: a worker process that dies in the middle of a task (killed, out of
memory, node lost) is Dask's business: the scheduler gives the task to another
worker, so it costs a retry, not a grade; past
``distributed.scheduler.allowed-failures`` the submission is reported
``crashed``.  A grading process that dies inside a live worker is ``crashed``,
a submission over ``--timeout`` is ``timeout``, as locally.

Modules: ``transfer`` (what travels: the course bundle, the gradebook snapshot,
a submission's files), ``worker`` (on a worker: stations, the sandbox proof,
the Dask task ``grade_task`` and the worker plugin), ``coordinator`` (the
configuration ``c.DaskGrading``, ``DaskGrader``, ``grade`` and the choice of
local or Dask grading).  Every name stays importable from
``coursekit.dask_grading``.
"""
from __future__ import annotations

from .coordinator import (CARRIED_ENV, CONNECT_TIMEOUT, DaskGrader, DaskGrading, connect, grade,
                          scheduler_choice, settings)
from .transfer import COURSE_FILES, course_bundle, course_members, gradebook_snapshot, submission_files
from .worker import (PLUGIN_NAME, STARTUP_TIMEOUT, GradingPlugin, SandboxRefused, Station, close_worker,
                     grade_task, sandbox_problem)

__all__ = ["CARRIED_ENV", "CONNECT_TIMEOUT", "COURSE_FILES", "PLUGIN_NAME", "STARTUP_TIMEOUT",
           "DaskGrader", "DaskGrading", "GradingPlugin", "SandboxRefused", "Station",
           "close_worker", "connect", "course_bundle", "course_members", "grade", "grade_task",
           "gradebook_snapshot", "sandbox_problem", "scheduler_choice", "settings", "submission_files"]
