"""``coursekit demo`` (``make demo``): the main job, end to end, on generated data.

In a scratch course under ``.coursekit/demo/`` (a copy of the instructor's
files, never the real ``submitted/``): generate the releases, build a class of
generated submissions for every assignment that has a catalogue (for
assignment 1 delivered as a Moodle export with renamed and Colab-damaged
files, collected by the intake plugin), grade it with ``coursekit grade``,
write the reports, and print per-student scores (with the score each
simulated student should get) and per-test pass rates.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from coursekit import classgen, gradebook
from coursekit.classgen import damage
from coursekit.nbrun import venv_env
from coursekit.paths import Course, CourseError


def _run(cmd: list[str], cwd: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    # the demo shows the commands an instructor types, run as the instructor runs them
    proc = subprocess.run(cmd, cwd=cwd, env=venv_env())
    if proc.returncode != 0:
        raise CourseError(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def scratch_course(repo: Course, dest: Path) -> Course:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(repo.root / "nbgrader_config.py", dest / "nbgrader_config.py")
    for folder in ("source", "notebooks"):
        if (repo.root / folder).is_dir():
            shutil.copytree(repo.root / folder, dest / folder)
    return Course(dest.resolve())


def deliver(course: Course, assignment: str, variants: list[classgen.Variant], moodle: bool) -> None:
    """Hand the class in: as a damaged Moodle export collected by `coursekit collect` (with the
    roster the export comes with; the first assignment of the demo), or straight into submitted/.
    Any failure stops the demo."""
    if moodle:
        export = course.root / "downloads" / f"{assignment}_moodle.zip"
        export.parent.mkdir(parents=True, exist_ok=True)
        damage.moodle_export(course, assignment, variants, export, damage=True)
        _run([sys.executable, "-m", "coursekit", "--course", str(course.root), "collect", assignment,
              str(export), "--force"], course.root)
        missing = [v.student for v in variants if not (course.submitted / v.student / assignment).is_dir()]
        if missing:
            raise CourseError(f"the Moodle intake of {assignment} did not collect {', '.join(missing)}")
    else:
        classgen.write_class(course, assignment, variants)


def expected_points(variant: classgen.Variant, tests: list[str], maxima: dict[str, float]) -> float:
    passes = classgen.expected_pass(variant, tests)
    return sum(maxima[t] for t, ok in passes.items() if ok)


def print_tables(course: Course, assignment: str, variants: list[classgen.Variant]) -> int:
    tests = gradebook.autograded_tests(course, assignment)
    maxima = gradebook.max_scores(course, assignment)
    scores = gradebook.scores(course, assignment)
    total_max = sum(maxima[t] for t in tests)
    mismatches = 0
    print(f"\n== {assignment}: autograded points per student (of {total_max:g})")
    print(f"{'student':<28} {'score':>6} {'expected':>8}  description")
    for v in variants:
        got = sum(scores.get(v.student, {}).get(t, 0.0) for t in tests)
        want = expected_points(v, tests, maxima)
        flag = "" if abs(got - want) < 1e-9 else "   <-- differs"
        mismatches += bool(flag)
        print(f"{v.student:<28} {got:>6g} {want:>8g}  {v.description}{flag}")
    print(f"\n== {assignment}: pass rate per test cell")
    for t in tests:
        passed = sum(1 for s in scores.values() if s.get(t, 0.0) >= maxima[t] - 1e-9)
        print(f"{t:<32} {passed:>3}/{len(scores):<3} ({maxima[t]:g} pts)")
    return mismatches


def add_arguments(parser) -> None:
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel grading jobs")
    parser.add_argument("--dest", default=None, help="scratch course folder (default: .coursekit/demo)")
    parser.add_argument("assignments", nargs="*", help="assignments to include (default: all with a catalogue)")


def run(args) -> int:
    repo = Course.at(args.course)
    course = scratch_course(repo, Path(args.dest) if args.dest else repo.state / "demo")
    print(f"demo course: {course.root}")
    ck = [sys.executable, "-m", "coursekit", "--course", str(course.root)]
    _run(ck + ["release"], course.root)
    assignments = args.assignments or [a for a in course.assignments() if _has_catalogue(course, a)]
    mismatches = 0
    for n, assignment in enumerate(assignments):
        variants = classgen.catalogue(assignment, course)
        deliver(course, assignment, variants, moodle=n == 0)
        _run(ck + ["grade", assignment, "--jobs", str(args.jobs)], course.root)
        _run(ck + ["report", assignment], course.root)
        mismatches += print_tables(course, assignment, variants)
    print(f"\nreports: {course.reports}")
    if mismatches:
        print(f"{mismatches} student(s) did not get the score their simulated work deserves", file=sys.stderr)
        return 1
    return 0


def _has_catalogue(course: Course, assignment: str) -> bool:
    try:
        classgen.catalogue(assignment, course)
        return True
    except CourseError:
        return False
