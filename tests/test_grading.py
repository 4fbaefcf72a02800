"""``coursekit grade``: parallel autograde equals serial nbgrader, resumes, survives broken submissions.

One scratch course with the real assignment 1 and a small generated class
(some of the catalogue's students, plus a truncated notebook and an answer
that loops forever) is graded once by ``coursekit grade --jobs 2`` and, in an
identical copy, once by plain serial ``nbgrader autograde``; the tests read
both gradebooks.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import psutil
import pytest
from nbgrader.api import Gradebook

from coursekit import classgen, events, grading
from coursekit.nbrun import venv_env
from coursekit.paths import Course

from conftest import make_course, nbgrader

pytestmark = pytest.mark.slow

A = "a1_batchnorm1d"
ANSWER = "bn1d_impl"          # the answer cell of MyBatchNorm1d
TIMEOUT = 8                   # --timeout of the run that meets the looping submission
MEMORY_MB = 1500              # --memory of the first run: torch fits, 3 GB do not


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


def _class(course: Course) -> list[classgen.Variant]:
    """Two real submissions (each costs a notebook run): full marks, and partial credit."""
    solution = classgen.solution_source(course, A, ANSWER)
    partial = next(v for v in classgen.catalogue(A) if v.fails and v.fails != "all" and not v.mutate)
    return [classgen.Variant("k_correct", "the instructor's solution", {ANSWER: solution}),
            dataclasses.replace(partial, student="k_partial")]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade one class in parallel (course) and serially (its twin), then meet a looping submission."""
    root = tmp_path_factory.mktemp("grading")
    course = make_course(root / "parallel", [A])
    os.environ["PATH"] = _env()["PATH"]
    nbgrader(course, "generate_assignment", A, "--force")
    variants = _class(course)
    classgen.write_class(course, A, variants)
    # nbgrader's late-submission rules apply unchanged: a due date, a late student, penalty "zero"
    with (course.root / "nbgrader_config.py").open("a") as f:
        f.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    with Gradebook(f"sqlite:///{course.gradebook}", "batchnorm-pytorch") as gb:
        gb.update_or_create_assignment(A, duedate="2026-03-01 12:00:00 UTC")
    for student, stamp in (("k_correct", "2026-03-01 11:00:00 UTC"), ("k_partial", "2026-03-02 12:00:00 UTC")):
        (course.submitted / student / A / "timestamp.txt").write_text(stamp)
    broken = course.submitted / "k_broken" / A / "batchnorm1d.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text((course.release / A / "batchnorm1d.ipynb").read_text()[:700])  # truncated JSON
    twin = Course(root / "serial")
    shutil.copytree(course.root, twin.root)
    # only in the parallel course: a submission that asks for more memory than --memory allows
    hog = "hog = bytearray(3 * 1024 ** 3)  # 3 GB\n"
    classgen.write_class(course, A, [classgen.Variant("k_hog", "too much memory", {ANSWER: hog})])

    first = coursekit(course, "--jobs", "2", "--memory", str(MEMORY_MB))
    # serial nbgrader with one thread per kernel too (several oversubscribe a busy machine)
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        serial = nbgrader(twin, "autograde", A, check=False)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    scores_after_first = auto_scores(course)

    # a late submission that loops forever, graded with the rest of the class already done
    # (it sleeps in its loop: the test spends wall time on it, not CPU)
    loop = "import time\nwhile True:\n    time.sleep(0.5)\n"
    classgen.write_class(course, A, [classgen.Variant("k_loop", "loops", {ANSWER: loop})])
    second = coursekit(course, "--jobs", "2", "--timeout", str(TIMEOUT))
    return {"course": course, "twin": twin, "first": first, "serial": serial, "second": second,
            "scores_after_first": scores_after_first,
            "students": sorted(v.student for v in variants) + ["k_broken", "k_hog"]}


def test_parallel_grades_equal_serial_nbgrader(graded):
    assert graded["first"].returncode == 0, graded["first"].stdout + graded["first"].stderr
    mine, theirs = dict(graded["scores_after_first"]), auto_scores(graded["twin"])
    mine.pop("k_hog")  # graded only here, under --memory (test below)
    assert mine, "no s'ha qualificat cap lliurament"
    # nbgrader leaves an empty submission (no scores) for the file it cannot read; coursekit leaves none
    assert "k_broken" not in mine and all(v is None for v in theirs.pop("k_broken", {}).values())
    assert set(mine) == set(theirs), f"qualificats: paral·lel {sorted(mine)}, nbgrader {sorted(theirs)}"
    for student in mine:
        assert mine[student] == theirs[student], (
            f"{student}: notes diferents de les de nbgrader en sèrie\n  paral·lel: {mine[student]}\n"
            f"  sèrie:     {theirs[student]}")
    # the same timestamps, lateness and late penalties as nbgrader's own
    late_mine, late_theirs = lateness(graded["course"]), lateness(graded["twin"])
    for student in mine:
        assert late_mine[student] == late_theirs[student], (student, late_mine[student], late_theirs[student])
    assert late_mine["k_partial"][1] == 86400 and late_mine["k_partial"][2][0] > 0, late_mine["k_partial"]
    assert late_mine["k_correct"][1] == 0, late_mine["k_correct"]
    # the class discriminates: every test passed by the solution, some failed by the other
    tests = [t for t in mine["k_correct"] if t.startswith("test_")]
    assert all(mine["k_correct"][t] > 0 for t in tests), mine["k_correct"]
    assert any(mine["k_partial"][t] == 0 for t in tests) and any(mine["k_partial"][t] > 0 for t in tests)
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
    assert {"k_correct", "k_partial"} <= set(merged), merged
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


def test_broken_and_looping_submissions_are_recorded_and_do_not_stop_the_batch(graded):
    course, first, second = graded["course"], graded["first"].stdout, graded["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    # first run: the unreadable file is listed, the others graded
    assert "k_broken" in first and f"graded {len(graded['students']) - 1}," in first, first
    # second run: graded ones skipped; the unreadable one retried; the loop stopped at --timeout
    done = len(graded["scores_after_first"])
    assert f"graded 0, skipped {done} (already graded), failed 2" in second.stdout, second.stdout
    kinds = {s: [e["kind"] for e in events.read(course.root, A, s)] for s in ("k_broken", "k_loop")}
    assert "parse_error" in kinds["k_broken"], kinds
    assert kinds["k_loop"][-1] == "timeout", kinds
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
    student = "k_partial"
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


def test_force_grades_again(graded):
    course = graded["course"]
    path = course.autograded / "k_correct" / A / "batchnorm1d.ipynb"
    before = path.stat().st_mtime
    forced = coursekit(course, "--jobs", "2", "--force", "--students", "k_correct")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "graded 1, skipped 0" in forced.stdout, forced.stdout
    assert path.stat().st_mtime > before
    scores = auto_scores(course)
    assert {s: scores[s] for s in graded["scores_after_first"]} == graded["scores_after_first"]
