"""``coursekit grade``: parallel autograde equals serial nbgrader, resumes, survives broken submissions.

One scratch course with the real assignment 1 and a small class (two students of the catalogue,
``solution`` and ``eps_outside_sqrt``, plus a truncated notebook and an answer that asks for 3 GB)
is graded once by ``coursekit grade --jobs 2``.  Plain serial ``nbgrader autograde`` grades the
same two submissions (same student ids, same answers) once per session in the graded catalogue
(conftest's ``graded_catalogue``): the scores are compared with those.  Lateness is compared with
what nbgrader's own autograde computes for the same timestamps and due date: a copy of the course
taken before grading re-runs nbgrader's autograde on the notebooks ``coursekit grade`` executed,
with every preprocessor that runs code (or clears outputs) left out, so nbgrader reads the
timestamps, scores the outputs and assigns late penalties itself without a kernel.  A later run
with an answer that loops forever (``--timeout``: it waits out its timeout) and one with ``--force`` (a
whole grading run for one submission) are in the thorough tier.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import psutil
import pytest
from nbgrader.api import Gradebook

from assignment_checks import catalogue_of
from coursekit import classgen, events, grading
from coursekit.nbrun import venv_env
from coursekit.paths import Course
from tiers import thorough

from conftest import generated_course, nbgrader

pytestmark = pytest.mark.slow

A = "a1_batchnorm1d"
ANSWER = "bn1d_impl"          # the answer cell of MyBatchNorm1d
CORRECT = "solution"          # catalogue student: full marks
PARTIAL = "eps_outside_sqrt"  # catalogue student: partial credit (fails test_eps and test_constant_feature)
STUDENTS = (CORRECT, PARTIAL)
TIMEOUT = 15                  # --timeout of the run that meets the looping submission
MEMORY_MB = 1500              # --memory of the first run: torch fits, 3 GB do not

# Appended to the nbgrader_config.py of the copy that replays nbgrader's autograde on notebooks
# already executed: the course's preprocessors minus those that run the student's code, re-check
# it, or clear or stash its outputs; what is left (nbgrader's sanitizers, SaveAutoGrades,
# AssignLatePenalties, ...) runs as in a real autograde.
REPLAY_CONFIG = '''
_RUNS_OR_CLEARS = {"ClearOutput", "KeepSubmittedOutputs", "ScanSubmission", "SandboxExecute", "TrustedChecks",
                   "ShowSubmittedOutputs"}


def _kept(procs):
    return [p for p in procs if (getattr(p, "__name__", None) or str(p).rsplit(".", 1)[-1]) not in _RUNS_OR_CLEARS]


c.Autograde.sanitize_preprocessors = _kept(c.Autograde.sanitize_preprocessors)
c.Autograde.autograde_preprocessors = _kept(c.Autograde.autograde_preprocessors)
'''


def _env() -> dict:
    return venv_env(dict(os.environ, COURSE_MODE="fast"))


def coursekit(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursekit", "grade", A, *args], cwd=course.root,
                          capture_output=True, text=True, timeout=600, env=_env())


def auto_scores(course: Course) -> dict[str, dict[str, float | None]]:
    """{student: {grade cell: auto_score}} exactly as stored (None stays None)."""
    with Gradebook(f"sqlite:///{course.gradebook}", "batchnorm-pytorch") as gb:
        return {sub.student.id: {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades}
                for sub in gb.assignment_submissions(A)}


def lateness(course: Course) -> dict[str, tuple]:
    """{student: (submission timestamp, seconds late, late penalty of each notebook)}."""
    with Gradebook(f"sqlite:///{course.gradebook}", "batchnorm-pytorch") as gb:
        return {sub.student.id: (sub.timestamp, sub.total_seconds_late,
                                 tuple(nb.late_submission_penalty for nb in sub.notebooks))
                for sub in gb.assignment_submissions(A)}


def _class() -> list[classgen.Variant]:
    """The catalogue's own variants (the graded catalogue grades the same ones by plain nbgrader)."""
    variants = {v.student: v for v in catalogue_of(A)[0]}
    return [variants[s] for s in STUDENTS]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the class with ``coursekit grade --jobs 2``; ``replay`` is a copy of the course as it was
    before grading (configuration, due date, timestamps, submissions)."""
    root = tmp_path_factory.mktemp("grading")
    course = generated_course(root / "parallel", [A])
    classgen.write_class(course, A, _class())
    # nbgrader's late-submission rules apply unchanged: a due date, a late student, penalty "zero"
    with (course.root / "nbgrader_config.py").open("a") as f:
        f.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    with Gradebook(f"sqlite:///{course.gradebook}", "batchnorm-pytorch") as gb:
        gb.update_or_create_assignment(A, duedate="2026-03-01 12:00:00 UTC")
    for student, stamp in ((CORRECT, "2026-03-01 11:00:00 UTC"), (PARTIAL, "2026-03-02 12:00:00 UTC")):
        (course.submitted / student / A / "timestamp.txt").write_text(stamp)
    broken = course.submitted / "k_broken" / A / "batchnorm1d.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text((course.release / A / "batchnorm1d.ipynb").read_text()[:700])  # truncated JSON
    replay = Course(root / "replay")
    shutil.copytree(course.root, replay.root)
    # only in the graded course: a submission that asks for more memory than --memory allows
    hog = "hog = bytearray(3 * 1024 ** 3)  # 3 GB\n"
    classgen.write_class(course, A, [classgen.Variant("k_hog", "too much memory", {ANSWER: hog})])

    first = coursekit(course, "--jobs", "2", "--memory", str(MEMORY_MB))
    return {"course": course, "replay": replay, "first": first, "scores_after_first": auto_scores(course),
            "students": sorted(STUDENTS) + ["k_broken", "k_hog"]}


@pytest.fixture(scope="module")
def replayed(graded):
    """nbgrader's own autograde in the copy taken before grading, on the notebooks that ``coursekit
    grade`` executed (submitted in their place), without any kernel (REPLAY_CONFIG): nbgrader reads each
    timestamp.txt against the due date, scores the outputs and assigns its late penalties itself."""
    course, replay = graded["course"], graded["replay"]
    for student in STUDENTS:
        for nb in (course.autograded / student / A).glob("*.ipynb"):
            shutil.copy2(nb, replay.submitted / student / A / nb.name)
    with (replay.root / "nbgrader_config.py").open("a") as f:
        f.write(REPLAY_CONFIG)
    proc = nbgrader(replay, "autograde", A, check=False)  # k_broken fails there, as in a real run
    started = [e for s in STUDENTS for e in events.read(replay.root, A, s) if e["kind"] == events.KERNEL_STARTED]
    assert not started, started  # a replay: nothing executed
    return {"proc": proc, "scores": auto_scores(replay), "lateness": lateness(replay)}


@pytest.fixture(scope="module")
@thorough
def looped(graded):
    """A late submission that loops forever, graded with the rest of the class already done, under
    --timeout (it sleeps in its loop: the test spends wall time on it, not CPU)."""
    course = graded["course"]
    loop = "import time\nwhile True:\n    time.sleep(0.5)\n"
    classgen.write_class(course, A, [classgen.Variant("k_loop", "loops", {ANSWER: loop})])
    return coursekit(course, "--jobs", "2", "--timeout", str(TIMEOUT))


@pytest.fixture(scope="module")
@thorough
def forced(graded):
    """``--force`` grades a graded submission again (a whole grading run of its own)."""
    path = graded["course"].autograded / CORRECT / A / "batchnorm1d.ipynb"
    before = path.stat().st_mtime
    proc = coursekit(graded["course"], "--jobs", "2", "--force", "--students", CORRECT)
    return {"proc": proc, "before": before, "after": path.stat().st_mtime}


def nbgrader_scores(graded_class, students) -> dict[str, dict[str, float | None]]:
    """What plain serial nbgrader stored for ``students`` in the graded catalogue, None kept."""
    out: dict = {}
    for course in graded_class.courses:
        out.update({s: v for s, v in auto_scores(course).items() if s in students})
    return out


@pytest.mark.catalogue(A, *STUDENTS)
def test_parallel_grades_equal_serial_nbgrader(graded, replayed, graded_catalogue):
    assert graded["first"].returncode == 0, graded["first"].stdout + graded["first"].stderr
    mine = dict(graded["scores_after_first"])
    mine.pop("k_hog")  # graded only here, under --memory (test below)
    assert mine, "no s'ha qualificat cap lliurament"
    # coursekit leaves no submission for the file it cannot read; nbgrader leaves an empty one (no scores)
    theirs = dict(replayed["scores"])
    assert "k_broken" not in mine and all(v is None for v in theirs.pop("k_broken", {}).values())
    assert set(mine) == set(STUDENTS), sorted(mine)
    serial = nbgrader_scores(graded_catalogue(A), STUDENTS)
    assert set(serial) == set(STUDENTS), sorted(serial)
    for student in mine:
        assert mine[student] == serial[student], (
            f"{student}: notes diferents de les de nbgrader en sèrie\n  paral·lel: {mine[student]}\n"
            f"  sèrie:     {serial[student]}")
    # nbgrader's replay scored the stored outputs as the gradebook holds them
    assert theirs == mine, (theirs, mine)
    # the same timestamps, lateness and late penalties as nbgrader's own
    late_mine, late_theirs = lateness(graded["course"]), replayed["lateness"]
    for student in mine:
        assert late_mine[student] == late_theirs[student], (student, late_mine[student], late_theirs[student])
    assert late_mine[PARTIAL][1] == 86400 and late_mine[PARTIAL][2][0] > 0, late_mine[PARTIAL]
    assert late_mine[CORRECT][1] == 0, late_mine[CORRECT]
    # the class discriminates: every test passed by the solution, some failed by the other
    tests = [t for t in mine[CORRECT] if t.startswith("test_")]
    assert all(mine[CORRECT][t] > 0 for t in tests), mine[CORRECT]
    assert any(mine[PARTIAL][t] == 0 for t in tests) and any(mine[PARTIAL][t] > 0 for t in tests)
    for student in mine:
        assert (graded["course"].autograded / student / A / "batchnorm1d.ipynb").is_file(), student
    assert not list(graded["course"].root.glob(".grading-w*.db")), "queden gradebooks temporals"


def test_each_graded_submission_records_its_phases(graded):
    """What the bench reads instead of log lines: per merged submission, the coordinator's ``graded``
    event (the worker's start and end), the Execute step's ``kernel_started`` (warm or cold, when
    the step began) and the trusted checks' ``trusted_checked``; ``bench.profile`` times the phases."""
    from coursekit import bench

    course = graded["course"]
    merged = []
    for student in sorted(p.name for p in course.submitted.iterdir()):
        log = events.since_last_start(events.read(course.root, A, student))
        done = [e for e in log if e["kind"] == events.GRADED]
        if not done:
            continue
        merged.append(student)
        kernel = next(e for e in log if e["kind"] == events.KERNEL_STARTED)
        assert done[0]["started"] <= kernel["execute_started"] <= kernel["time"] <= done[0]["ended"], log
        assert kernel["mode"] in ("warm", "cold") and kernel["startup_ms"] > 0, kernel
        assert any(e["kind"] == events.TRUSTED_CHECKED and e["cells"] > 0 for e in log), log
    assert set(STUDENTS) <= set(merged), merged
    phases = bench.profile(course, A)
    assert phases["warm kernels"].endswith(f" of {len(merged)}"), phases
    assert phases["execution"] > 0 and phases["kernel start"] > 0 and phases["trusted checks"] > 0, phases
    assert phases["total"] > phases["execution"], phases  # each total holds its execution


def test_memory_cap_reaches_the_kernel(graded):
    """--memory 1500: torch and the notebook fit, the student's 3 GB do not (MemoryError, graded 0)."""
    course = graded["course"]
    hog = json.loads((course.autograded / "k_hog" / A / "batchnorm1d.ipynb").read_text())
    cell = next(c for c in hog["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == ANSWER)
    assert [o.get("ename") for o in cell["outputs"]] == ["MemoryError"], cell["outputs"]
    scores = graded["scores_after_first"]["k_hog"]
    assert not any(scores[t] for t in scores if t.startswith("test_")), scores


def test_progress_bar_with_eta(graded):
    err = graded["first"].stderr
    n = len(graded["students"])
    assert f"grading {A}" in err and "ETA" in err and f"{n}/{n}" in err, err[-2000:]


def test_broken_submission_is_listed_and_does_not_stop_the_batch(graded):
    first = graded["first"].stdout
    assert "k_broken" in first and f"graded {len(graded['students']) - 1}, skipped 0" in first, first
    assert "parse_error" in [e["kind"] for e in events.read(graded["course"].root, A, "k_broken")]


def test_resume_skips_what_is_graded(graded):
    """A second run over the graded submissions grades nothing (no worker, no kernel)."""
    again = coursekit(graded["course"], "--jobs", "2", "--students", *STUDENTS, "k_hog")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "graded 0, skipped 3 (already graded), failed 0" in again.stdout, again.stdout


def test_looping_submission_is_stopped_and_the_batch_goes_on(graded, looped):
    course, second = graded["course"], looped
    assert second.returncode == 0, second.stdout + second.stderr
    # graded ones skipped; the unreadable one retried; the loop stopped at --timeout
    done = len(graded["scores_after_first"])
    assert f"graded 0, skipped {done} (already graded), failed 2" in second.stdout, second.stdout
    kinds = {s: [e["kind"] for e in events.read(course.root, A, s)] for s in ("k_broken", "k_loop")}
    assert "parse_error" in kinds["k_broken"], kinds
    # the submission's outcome is the timeout: the last event that is not bookkeeping (a kernel that
    # finished starting while its worker was being stopped may still log its start afterwards)
    assert [k for k in kinds["k_loop"] if k not in events.QUIET][-1] == "timeout", kinds
    assert events.GRADED not in kinds["k_loop"], kinds
    assert "k_loop" not in auto_scores(course)
    assert not any((course.autograded / "k_loop").rglob("*.ipynb"))
    assert auto_scores(course) == graded["scores_after_first"]
    # the killed submission left no process behind (kernels run in their own sessions)
    leftovers = []
    for p in psutil.process_iter(["cwd"]):
        try:
            if p.info["cwd"] and p.info["cwd"].startswith(str(course.root)):
                leftovers.append(p)
        except (psutil.Error, TypeError):
            continue
    assert not leftovers, f"processos encara vius dins del curs: {leftovers}"


def test_what_counts_as_graded(graded):
    """A newer file, a newer timestamp.txt or an interrupted run make a graded submission due again."""
    course = graded["course"]
    course_id = grading.read_course_id(course)
    student = PARTIAL
    assert grading.plan(course, A, course_id, [student], force=False)[0] == []
    assert grading.plan(course, A, course_id, [student], force=True)[0] == [student]

    nb = course.submitted / student / A / "batchnorm1d.ipynb"
    stamp = course.submitted / student / A / "timestamp.txt"
    marker = grading.state_dir(course, A) / f"{student}.inflight"
    graded_at = (course.autograded / student / A / "batchnorm1d.ipynb").stat().st_mtime
    original, original_stamp = nb.stat(), stamp.read_text()
    try:
        os.utime(nb, (graded_at + 60, graded_at + 60))
        assert grading.plan(course, A, course_id, [student], force=False)[0] == [student]
        os.utime(nb, (original.st_atime, original.st_mtime))

        stamp.write_text("2030-01-01 10:00:00.000000 UTC")  # handed in again, later
        assert grading.plan(course, A, course_id, [student], force=False)[0] == [student]
        stamp.write_text(original_stamp)

        marker.write_text("x")
        assert grading.plan(course, A, course_id, [student], force=False)[0] == [student]
    finally:
        marker.unlink(missing_ok=True)
        stamp.write_text(original_stamp)
        os.utime(nb, (original.st_atime, original.st_mtime))
    assert grading.plan(course, A, course_id, [student], force=False)[0] == []


def test_force_grades_again(graded, forced):
    course = graded["course"]
    assert forced["proc"].returncode == 0, forced["proc"].stdout + forced["proc"].stderr
    assert "graded 1, skipped 0" in forced["proc"].stdout, forced["proc"].stdout
    assert forced["after"] > forced["before"]
    scores = auto_scores(course)
    assert {s: scores[s] for s in graded["scores_after_first"]} == graded["scores_after_first"]
