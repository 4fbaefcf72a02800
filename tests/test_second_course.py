"""A second, tiny course on the same engine, with its own assignment, language and content package.

``tests/second_course/`` is a whole nbgrader course that has nothing of Batch Normalization: one
assignment (``w1_mean``: a mean and a variance written by hand), Spanish stubs and messages, and its
own package ``tinystats`` (trusted re-checks in which the ``statistics`` module is the library's own
version of the exercise; a catalogue of right and wrong answers).  It is released, handed in,
graded and reported with the engine's commands exactly as the Batch Normalization course is, and
nothing in ``engine/`` knows it exists.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from tiers import thorough

from coursekit import classgen, gradebook
from coursekit.content import content_of, course_config
from coursekit.nbrun import venv_env
from coursekit.paths import Course
from coursekit.trusted import MESSAGES, TrustedChecks

REPO = Path(__file__).resolve().parents[1]
SECOND = Path(__file__).resolve().parent / "second_course"
ASSIGNMENT = "w1_mean"
TESTS = ("test_media", "test_varianza")

pytestmark = pytest.mark.slow


def coursekit(course: Course, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), *args],
                          cwd=course.root, env=venv_env(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"coursekit {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
@thorough
def graded(tmp_path_factory) -> Course:
    """The second course copied to a scratch folder, released, handed in (its catalogue) and graded."""
    root = tmp_path_factory.mktemp("second") / "course"
    shutil.copytree(SECOND, root, ignore=shutil.ignore_patterns("__pycache__"))
    course = Course.at(root)
    coursekit(course, "release")
    coursekit(course, "classgen", ASSIGNMENT)
    coursekit(course, "grade", ASSIGNMENT, "--jobs", "2")
    coursekit(course, "report", ASSIGNMENT)
    return course


def test_the_engine_does_not_know_either_course():
    engine = REPO / "engine" / "src" / "coursekit"
    named = []
    for path in engine.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for word in ("tinystats", "w1_mean", "estadistica", "a1_batchnorm1d", "a2_batchnorm2d", "a3_alexnet_bn",
                     "a4_hyperparameters", "a5_modern_architectures", "MyBatchNorm"):
            if word in text and not (path.name == "content.py" and word == "bncourse"):
                named.append(f"{path.relative_to(REPO)}: {word}")
    assert not named, named


def test_the_course_sets_its_own_content_and_words(tmp_path):
    root = tmp_path / "course"
    shutil.copytree(SECOND, root, ignore=shutil.ignore_patterns("__pycache__"))
    assert content_of(root).package == "tinystats"
    config = course_config(root)
    trusted = TrustedChecks(config=config)
    assert trusted.error_name == "ComprobacionIndependiente"
    assert trusted.say("finding", rule="import statistics", line=2) == "«import statistics» en la línea 2 de una celda tuya"
    # what the course leaves out stays in the engine's English
    assert trusted.say("timeout") == MESSAGES["timeout"] == "the code did not finish in time"
    assert [v.student for v in classgen.catalogue(ASSIGNMENT, Course(root))][0] == "solucion"


def test_release_speaks_the_course_language(graded):
    release = nbformat.read(str(graded.release / ASSIGNMENT / "mean.ipynb"), as_version=4)
    text = "\n".join(c.source for c in release.cells)
    assert "# TU CÓDIGO AQUÍ" in text and "ESCRIBE AQUÍ TU RESPUESTA" in text
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "sum(xs) / len(xs)" not in text
    assert "colab.research.google.com/github/ejemplo/estadistica-minima/blob/main/release/w1_mean/mean.ipynb" in text
    # the Batch Normalization course's guide (Catalan, from its notebooks/ folder) is not this course's
    assert "quadern" not in text.lower() and "vosaltres" not in text.lower()


def test_every_answer_gets_the_score_of_its_work(graded):
    scores = gradebook.scores(graded, ASSIGNMENT)
    maxima = gradebook.max_scores(graded, ASSIGNMENT)
    assert maxima["test_media"] == 2 and maxima["test_varianza"] == 2 and maxima["respuesta"] == 1
    wrong = {}
    for variant in classgen.catalogue(ASSIGNMENT, graded):
        want = classgen.expected_pass(variant, list(TESTS))
        got = {t: scores[variant.student][t] == maxima[t] for t in TESTS}
        if got != want:
            wrong[variant.student] = {"got": got, "want": want}
    assert not wrong, wrong
    assert set(scores) == {v.student for v in classgen.catalogue(ASSIGNMENT, graded)}


def test_delegation_by_the_course_rules_fails_with_the_course_words(graded):
    """``statistics.fmean`` gives the right numbers in the kernel; the course's re-check (its own rule
    of what is delegation) fails that cell, in Spanish, and only that cell."""
    nb = nbformat.read(str(graded.autograded / "delega" / ASSIGNMENT / "mean.ipynb"), as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    first = cells["test_media"].outputs[0]
    assert first.output_type == "error" and first.ename == "ComprobacionIndependiente"
    assert first.evalue.startswith("la media: la implementación debe ser tuya: se ha detectado «import statistics»")
    assert not [o for o in cells["test_varianza"].outputs if o.output_type == "error"]


def test_the_report_lists_the_class(graded):
    files = sorted(graded.reports.rglob("*.csv"))
    assert files, list(graded.reports.rglob("*"))
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    for variant in classgen.catalogue(ASSIGNMENT, graded):
        assert variant.student in text
    rows = list(csv.reader(files[0].read_text(encoding="utf-8").splitlines()))
    assert len(rows) >= 2
