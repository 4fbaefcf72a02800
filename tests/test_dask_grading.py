"""``coursekit grade --scheduler``: grading on a Dask cluster equals serial nbgrader, survives a killed worker.

A ``distributed.LocalCluster`` with two worker processes (one thread each, as
one would start one worker per core) grades a small class of the real
assignment 1 through the real command line: three students of the catalogue
(``correct_rewritten``, ``biased_running_var``, ``solution``), a truncated
notebook and an answer that asks for 3 GB (the run has ``--memory``).  Plain
serial ``nbgrader autograde`` grades the same three submissions (same student
ids, same answers) once per session in the graded catalogue (conftest's
``graded_catalogue``): the tests compare with its gradebooks and autograded
folders.  A second run skips what is graded and stops an answer that loops
forever (``--timeout``).  Then the class is graded again with ``--force`` while
one worker process is killed in the middle of a submission: the scheduler hands
that submission to another worker and every grade comes out the same.  Every
test that starts a cluster is in the thorough tier (the fixtures are ``@thorough``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")  # in requirements.txt; skip only outside the venv

from nbgrader.api import Gradebook  # noqa: E402

from assignment_checks import catalogue_of  # noqa: E402
from coursekit import classgen, dask_grading, events  # noqa: E402
from coursekit.paths import Course  # noqa: E402
from tiers import thorough  # noqa: E402

from conftest import generated_course  # noqa: E402

pytestmark = pytest.mark.slow

A = "a1_batchnorm1d"
ANSWER = "bn1d_impl"
# catalogue students: full marks in another style, partial credit (fails test_running_var), full marks;
# the first two are outside the quick sample, so the thorough session grades them once, here and in
# the catalogue
STUDENTS = ("correct_rewritten", "biased_running_var", "solution")
HOG = "hog = bytearray(3 * 1024 ** 3)  # 3 GB\n"
MEMORY_MB = 1500              # --memory of the first run: torch fits, 3 GB do not


def _env() -> dict:
    env = dict(os.environ, COURSE_MODE="fast")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def coursekit(course: Course, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "coursekit", "grade", A, *args]
    if wait:
        return subprocess.run(cmd, cwd=course.root, capture_output=True, text=True, timeout=900, env=_env())
    return subprocess.Popen(cmd, cwd=course.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def auto_scores(course: Course) -> dict[str, dict[str, float | None]]:
    with Gradebook(f"sqlite:///{course.gradebook}", "batchnorm-pytorch") as gb:
        return {sub.student.id: {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades}
                for sub in gb.assignment_submissions(A)}


def variants(*students: str) -> list[classgen.Variant]:
    """The catalogue's own variants of ``students`` (the graded catalogue grades the same ones)."""
    by_id = {v.student: v for v in catalogue_of(A)[0]}
    return [by_id[s] for s in students]


def nbgrader_scores(graded_class, students) -> dict[str, dict[str, float | None]]:
    """What plain serial nbgrader stored for ``students`` in the graded catalogue, None kept."""
    out: dict = {}
    for course in graded_class.courses:
        out.update({s: v for s, v in auto_scores(course).items() if s in students})
    return out


@pytest.fixture(scope="module")
@thorough
def cluster():
    # two worker processes with one thread each; the test process is their parent, so they inherit
    # COURSE_MODE=fast and the venv's PATH (a real cluster gets them from the coordinator's tasks)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def graded(tmp_path_factory, cluster):
    root = tmp_path_factory.mktemp("dask")
    course = generated_course(root / "dask", [A])
    classgen.write_class(course, A, variants(*STUDENTS))
    broken = course.submitted / "d_broken" / A / "batchnorm1d.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text((course.release / A / "batchnorm1d.ipynb").read_text()[:700])  # truncated JSON
    # a submission that asks for more memory than --memory allows (torch and the notebook fit)
    classgen.write_class(course, A, [classgen.Variant("d_hog", "too much memory", {ANSWER: HOG})])
    first = coursekit(course, "--scheduler", cluster.scheduler_address, "--memory", str(MEMORY_MB))
    return {"course": course, "first": first, "scores": auto_scores(course)}


@pytest.mark.catalogue(A, *STUDENTS)
def test_dask_grades_equal_serial_nbgrader(graded, graded_catalogue):
    first = graded["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    serial = graded_catalogue(A)
    mine, theirs = dict(graded["scores"]), nbgrader_scores(serial, STUDENTS)
    mine.pop("d_hog")  # graded only here, under --memory (test below)
    assert "d_broken" not in mine
    assert set(mine) == set(theirs) == set(STUDENTS), (sorted(mine), sorted(theirs))
    for student in mine:
        assert mine[student] == theirs[student], (student, mine[student], theirs[student])
    tests = [t for t in mine["solution"] if t.startswith("test_")]
    assert all(mine["solution"][t] > 0 for t in tests) and all(mine["correct_rewritten"][t] > 0 for t in tests)
    assert any(mine["biased_running_var"][t] == 0 for t in tests)
    course = graded["course"]
    # the coordinator alone wrote autograded/ and the logs; the workers' copies are gone
    for student in mine:
        files = sorted(p.name for p in (course.autograded / student / A).iterdir())
        nbgrader_folder = serial.autograded(student, A, "batchnorm1d.ipynb").parent
        assert files == sorted(p.name for p in nbgrader_folder.iterdir()), student
        assert "batchnorm1d.ipynb" in files
        log = (course.state / "grading" / A / f"{student}.log").read_text()
        assert log.startswith("graded on Dask worker tcp://"), log[:200]
    assert not list(course.root.glob(".grading-w*.db"))
    # failures are reported as locally: the unreadable file listed with its cause, events recorded
    assert "graded 4, skipped 0 (already graded), failed 1" in first.stdout, first.stdout
    assert "d_broken" in first.stdout and "parse_error" in first.stdout, first.stdout
    assert "parse_error" in [e["kind"] for e in events.read(course.root, A, "d_broken")]
    # ... naming the course's own file, not the worker's copy of it
    assert str(course.submitted / "d_broken" / A / "batchnorm1d.ipynb") in first.stdout, first.stdout
    assert "dask-scratch-space" not in first.stdout
    # events the extensions recorded on the worker reached the course's log, after grading_started
    kinds = [e["kind"] for e in events.read(course.root, A, "solution")]
    assert kinds and kinds[0] == "grading_started", kinds
    assert f"grading {A}" in first.stderr and "ETA" in first.stderr and "5/5" in first.stderr


def test_resume_and_timeout_on_workers(graded, cluster):
    """A second run: what is graded is skipped, the unreadable submission is retried (and fails again),
    and --timeout stops a new submission that loops forever on its worker (no grade, a timeout event,
    no process left)."""
    course = graded["course"]
    loop = "import time\nwhile True:\n    time.sleep(0.5)\n"
    classgen.write_class(course, A, [classgen.Variant("d_loop", "loops", {ANSWER: loop})])
    again = coursekit(course, "--scheduler", cluster.scheduler_address, "--timeout", "20")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "graded 0, skipped 4 (already graded), failed 2" in again.stdout, out
    assert "d_loop: timeout: grading took more than 20 s" in again.stdout, out
    assert [e["kind"] for e in events.read(course.root, A, "d_broken")].count("parse_error") >= 2
    # the submission's outcome is the timeout: the last event that is not bookkeeping (a kernel that
    # finished starting while it was being stopped may still log its start afterwards)
    kinds = [e["kind"] for e in events.read(course.root, A, "d_loop")]
    assert [k for k in kinds if k not in events.QUIET][-1] == "timeout", kinds
    assert events.GRADED not in kinds, kinds
    assert auto_scores(course) == graded["scores"]
    assert not (course.autograded / "d_loop").exists() or not any((course.autograded / "d_loop").rglob("*"))
    assert not (course.state / "grading" / A / "d_loop.inflight").exists()
    # the stopped submission left no kernel behind on its worker
    import psutil
    left = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("d_loop" in part for part in p.info["cmdline"] or []):
                left.append(p)
        except psutil.Error:
            continue
    assert not left, left


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def test_killed_worker_costs_a_retry_not_a_grade(graded, cluster):
    """A worker process killed while it grades: the scheduler gives the submission to another worker."""
    course = graded["course"]
    students = list(STUDENTS)
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    try:
        before = _worker_pids(client)
        proc = coursekit(course, "--scheduler", cluster.scheduler_address, "--force", "--students", *students,
                         wait=False)
        victim = None
        deadline = time.monotonic() + 300
        busy_since: dict[str, float] = {}
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            now = time.monotonic()
            for address, keys in client.processing().items():
                if any(k.startswith(f"grade-{A}-") for k in keys):
                    busy_since.setdefault(address, now)
                    # well inside a submission: nbgrader loaded, the notebook running
                    if now - busy_since[address] > 6 and address in before:
                        victim = (address, [k for k in keys if k.startswith(f"grade-{A}-")][0])
                else:
                    busy_since.pop(address, None)
            time.sleep(0.2)
        assert victim, "cap worker no ha començat a qualificar"
        address, key = victim
        victim_student = key[len(f"grade-{A}-"):].rsplit("-", 1)[0]
        os.kill(before[address], signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
    finally:
        client.close()
    assert proc.returncode == 0, out + err
    assert "graded 3, skipped 0 (already graded), failed 0" in out, out + err
    assert auto_scores(course) == {**graded["scores"]}, "un worker mort ha canviat alguna nota"
    log = (course.state / "grading" / A / f"{victim_student}.log").read_text()
    assert f"(pid {before[address]})" not in log.splitlines()[0], log[:300]
    assert not (course.state / "grading" / A / f"{victim_student}.inflight").exists()


def test_worker_without_sandbox_refuses(tmp_path, monkeypatch):
    """A worker whose sandbox cannot start refuses the task with the reason; it never grades."""
    monkeypatch.setenv("COURSEKIT_BWRAP", str(tmp_path / "no-bwrap"))
    monkeypatch.setattr(dask_grading.worker, "_sandbox_verdict", {})
    spec = {"sandboxed": True, "run_id": "x", "assignment": A, "student": "s"}
    with pytest.raises(dask_grading.SandboxRefused) as caught:
        dask_grading.grade_task(spec, None, b"")
    assert "sandbox" in str(caught.value) and caught.value.reason
    monkeypatch.setenv("COURSEKIT_BWRAP", "")
    monkeypatch.setenv("COURSEKIT_SANDBOX", "off")
    monkeypatch.setattr(dask_grading.worker, "_sandbox_verdict", {})
    with pytest.raises(dask_grading.SandboxRefused, match="COURSEKIT_SANDBOX=off"):
        dask_grading.grade_task(spec, None, b"")


def test_scheduler_from_configuration_and_unreachable_scheduler(tmp_path):
    """c.DaskGrading.scheduler in nbgrader_config.py chooses Dask; --scheduler local overrides it;
    a scheduler that does not answer is one clear error."""
    import argparse

    from coursekit.paths import CourseError

    course = generated_course(tmp_path / "c", [A])
    with (course.root / "nbgrader_config.py").open("a") as f:
        f.write('\nc.DaskGrading.scheduler = "tcp://127.0.0.1:9"\nc.DaskGrading.connect_timeout = 2\n')
    args = argparse.Namespace(scheduler=None, shared_course=None)
    choice = dask_grading.scheduler_choice(args, course)
    assert choice == {"scheduler": "tcp://127.0.0.1:9", "shared_course": None, "connect_timeout": 2}
    assert dask_grading.scheduler_choice(argparse.Namespace(scheduler="local", shared_course=None), course) is None
    with pytest.raises(CourseError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        dask_grading.connect(choice["scheduler"], choice["connect_timeout"])


@pytest.fixture
@thorough
def lonely():
    """A cluster with no worker of its own: the test brings its workers."""
    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.mark.catalogue(A, "solution")
def test_cluster_without_sandbox_grades_nothing_then_routes_around(tmp_path, lonely, graded_catalogue):
    """A worker that cannot start the sandbox refuses: alone, nothing is graded (one clear cause per
    submission); next to a worker that can, the submission is graded there, as nbgrader grades it."""
    course = generated_course(tmp_path / "course", [A])
    classgen.write_class(course, A, variants("solution"))
    env = _env()
    env["COURSEKIT_BWRAP"] = str(tmp_path / "no-bwrap")  # no bubblewrap on this "node"
    bad = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", lonely.scheduler_address,
                            "--nthreads", "1", "--no-nanny", "--no-dashboard"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lonely.wait_for_workers(1, timeout=120)
        refused = coursekit(course, "--scheduler", lonely.scheduler_address)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "graded 0, skipped 0 (already graded), failed 1" in refused.stdout, refused.stdout
        assert "cannot start the kernel sandbox" in refused.stdout, refused.stdout
        assert "refused to grade" in refused.stderr, refused.stderr
        assert not course.autograded.exists() or not any(course.autograded.rglob("*.ipynb"))
        assert auto_scores(course) == {}
        lonely.scale(1)  # a worker that can (the test's environment has bubblewrap)
        lonely.wait_for_workers(2, timeout=120)
        routed = coursekit(course, "--scheduler", lonely.scheduler_address)
    finally:
        bad.kill()
        bad.wait()
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert "graded 1, skipped 0 (already graded), failed 0" in routed.stdout, routed.stdout + routed.stderr
    scores = auto_scores(course)["solution"]
    assert all(scores[t] > 0 for t in scores if t.startswith("test_")), scores
    assert scores == nbgrader_scores(graded_catalogue(A), ["solution"])["solution"], scores


def test_memory_cap_reaches_the_kernel_on_workers(graded):
    """--memory 1500 reaches the kernel on its worker: the student's 3 GB are refused (MemoryError, graded 0)."""
    course = graded["course"]
    hog = json.loads((course.autograded / "d_hog" / A / "batchnorm1d.ipynb").read_text())
    cell = next(c for c in hog["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == ANSWER)
    assert [o.get("ename") for o in cell["outputs"]] == ["MemoryError"], cell["outputs"]
    scores = graded["scores"]["d_hog"]
    assert not any(scores[t] for t in scores if t.startswith("test_")), scores
