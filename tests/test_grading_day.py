"""The teaching assistant's grading day, from a fresh clone to Moodle, through the README's commands.

A Moodle export built by hand (renamed Colab copies, a blank notebook, students
who uploaded another assignment's notebook, a zip bomb, a zip that climbs out
of its folder, HTML and a spreadsheet formula in names, a roster) goes through
``coursekit collect`` / ``grade`` / ``report`` run as commands in a course
that, like a fresh clone, has ``source/`` and ``release/`` but no gradebook.
Every ordinary mistake a TA can make prints one line and exits non-zero.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import make_course
from coursekit import classgen, demo, gradebook
from coursekit.archives import Budget, Limits, extract
from coursekit.classgen import damage

A1, A2 = "a1_batchnorm1d", "a2_batchnorm2d"
HTML_NAME = "<img src=x onerror=alert(1)>"
FORMULA_NAME = "=1+2 Cmd"


def ck(course, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), *args],
                          capture_output=True, text=True, timeout=timeout)


def _nb_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _bomb(megabytes: int = 40) -> bytes:
    """A small zip whose one notebook-named entry expands to ``megabytes`` of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("batchnorm1d.ipynb", "w", force_zip64=True) as f:
            block = b"\0" * 2**20
            for _ in range(megabytes):
                f.write(block)
    return buf.getvalue()


def _folder(name: str, pid: int) -> str:
    return f"{name}_{pid}_assignsubmission_file_/"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading_day")
    course = make_course(base / "course")  # source/ and release/ of every assignment, no gradebook
    assert not course.gradebook.exists()
    solution = next(v for v in classgen.catalogue(A1) if v.student == "solution")
    _, solved = classgen.render(course, A1, solution)
    colab = copy.deepcopy(solved)
    damage._colab(colab)  # Colab's metadata and kernelspec, nbgrader metadata kept
    release1 = nbformat.read(str(course.release / A1 / "batchnorm1d.ipynb"), as_version=4)
    release2 = (course.release / A2 / "batchnorm2d.ipynb").read_bytes()
    blank = _nb_bytes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")]))
    bomb = _bomb()
    entries = {
        _folder("Anna Vidal", 1001) + "Copy of batchnorm1d.ipynb": _nb_bytes(colab),
        _folder("Pere Mas", 1002) + "batchnorm1d (1).ipynb": _nb_bytes(release1),
        _folder(HTML_NAME, 1003) + "Untitled<svg onload=alert(2)>.ipynb": blank,
        _folder("Marc Soler", 1004) + "batchnorm2d.ipynb": release2,
        _folder("Núria Font", 1005) + "batchnorm1d.ipynb": release2,  # A2's notebook renamed to A1's
        _folder("Ona Ribes", 1006) + "entrega.zip": bomb,
        _folder("Jan Serra", 1007) + "entrega.zip": _zip({"batchnorm1d.ipynb": _nb_bytes(solved),
                                                          "../../../escaped.ipynb": _nb_bytes(solved)}),
        _folder(FORMULA_NAME, 1008) + "Còpia de batchnorm1d.ipynb": _nb_bytes(release1),
    }
    export = base / "moodle_download_all.zip"
    export.write_bytes(_zip(entries))
    with (course.root / "roster.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "First name", "Surname", "Email address", "ID number"])
        w.writerow(["avidal", "Anna", "Vidal", "anna.vidal@uni.example.edu", "u1001"])
        w.writerow(["pmas", "Pere", "Mas", "pere.mas@uni.example.edu", "u1002"])
        w.writerow(["msoler", "Marc", "Soler", "marc.soler@uni.example.edu", "u1004"])
        w.writerow(["nfont", "Núria", "Font", "nuria.font@uni.example.edu", "u1005"])
        w.writerow(["oribes", "Ona", "Ribes", "ona.ribes@uni.example.edu", "u1006"])
        w.writerow(["jserra", "Jan", "Serra", "jan.serra@uni.example.edu", "u1007"])
    collect = ck(course, "collect", A1, str(export))
    grade = ck(course, "grade", A1, "--jobs", "2")
    report = ck(course, "report", A1)
    return {"course": course, "base": base, "export": export, "collect": collect, "grade": grade,
            "report": report, "solution": solution,
            "intake": json.loads((course.state / "intake" / A1 / "report.json").read_text(encoding="utf-8"))}


def test_the_right_students_are_collected(day):
    course, proc = day["course"], day["collect"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    collected = {p.name for p in course.submitted.iterdir()}
    assert collected == {"avidal", "pmas", "1_2_cmd"}
    assert "collected 3 students" in proc.stdout


def test_wrong_uploads_are_named_as_problems(day):
    problems = {(p["kind"], p.get("who")): p for p in day["intake"]["problems"]}
    for who in ("Marc Soler", "Núria Font"):  # A2's notebook, under its own name and renamed to A1's
        p = problems[("other_assignment", who)]
        assert p["detail"].startswith(f"notebook of {A2}"), p
    assert f"notebook of {A2}" in day["collect"].stdout and "Núria Font" in day["collect"].stdout
    assert ("wrong_file", HTML_NAME) in problems  # the blank notebook
    bomb = problems[("bad_archive", "Ona Ribes")]
    assert "compression ratio" in bomb["detail"]
    climb = problems[("bad_archive", "Jan Serra")]
    assert "climbs out of its folder" in climb["detail"]
    # nothing was written outside the extraction folder, and the zip bomb was never expanded
    downloaded = day["course"].root / "downloaded"
    assert not list(day["base"].rglob("escaped.ipynb"))
    assert sum(p.stat().st_size for p in downloaded.rglob("*") if p.is_file()) < 10 * 2**20


def test_roster_fills_nbgraders_student_table(day):
    from nbgrader.api import Gradebook
    with Gradebook(gradebook.db_url(day["course"])) as gb:
        anna = gb.find_student("avidal")
        assert (anna.first_name, anna.last_name, anna.email, anna.lms_user_id) == \
            ("Anna", "Vidal", "anna.vidal@uni.example.edu", "u1001")
        other = gb.find_student("1_2_cmd")  # not in the roster: the Moodle full name
        assert (other.first_name, other.last_name) == ("=1+2", "Cmd")


def test_grading_works_on_a_fresh_clone_and_grades_are_right(day):
    proc = day["grade"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{A1} added to" in proc.stdout  # the gradebook was filled from source/, release/ untouched
    course = day["course"]
    tests = gradebook.autograded_tests(course, A1)
    maxima = gradebook.max_scores(course, A1)
    scores = gradebook.scores(course, A1)
    full = sum(maxima[t] for t in tests)
    assert sum(scores["avidal"].get(t, 0) for t in tests) == pytest.approx(full)
    assert sum(scores["pmas"].get(t, 0) for t in tests) == 0
    assert sum(scores["1_2_cmd"].get(t, 0) for t in tests) == 0


def test_report_escapes_names_and_neutralises_formulas(day):
    proc = day["report"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = day["course"].reports / A1
    with (out / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = {r["Student ID"]: r for r in csv.DictReader(f)}
    assert rows["1_2_cmd"]["Full name"] == "'" + FORMULA_NAME
    assert rows["avidal"]["Email address"] == "anna.vidal@uni.example.edu"
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<svg" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f"notebook of {A2}" in page


@pytest.mark.parametrize("case", ["missing_zip", "not_a_zip", "txt_file", "not_moodle", "outer_bomb",
                                  "unknown_assignment", "missing_roster"])
def test_collect_mistakes_say_one_line(day, tmp_path, case):
    course = type(day["course"])(tmp_path / "course")
    course.root.mkdir()
    for name in ("nbgrader_config.py",):
        (course.root / name).write_bytes((day["course"].root / name).read_bytes())
    import shutil
    for folder in ("source", "release"):
        shutil.copytree(day["course"].root / folder / A1, course.root / folder / A1)
    args = ["collect", A1]
    if case == "missing_zip":
        args.append(str(tmp_path / "nowhere.zip"))
    elif case == "not_a_zip":
        (tmp_path / "fake.zip").write_text("this is not a zip")
        args.append(str(tmp_path / "fake.zip"))
    elif case == "txt_file":
        (tmp_path / "notes.txt").write_text("hola")
        args.append(str(tmp_path / "notes.txt"))
    elif case == "not_moodle":
        (tmp_path / "other.zip").write_bytes(_zip({"readme.txt": b"hola"}))
        args.append(str(tmp_path / "other.zip"))
    elif case == "outer_bomb":
        (tmp_path / "bomb.zip").write_bytes(_bomb(8))
        args += [str(tmp_path / "bomb.zip")]
    elif case == "unknown_assignment":
        args = ["collect", "a9_nothing", str(day["export"])]
    elif case == "missing_roster":
        args += [str(day["export"]), "--roster", str(tmp_path / "roster.csv")]
    proc = ck(course, *args)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if case in ("not_a_zip", "txt_file", "outer_bomb", "missing_zip"):
        archive = course.root / "downloaded" / A1 / "archive"
        assert not archive.exists() or not any(archive.iterdir()), "a refused file was staged"


def test_report_and_grade_mistakes_say_one_line(day, tmp_path):
    import shutil
    course = type(day["course"])(tmp_path / "course")
    course.root.mkdir()
    (course.root / "nbgrader_config.py").write_bytes((day["course"].root / "nbgrader_config.py").read_bytes())
    for folder in ("source", "release"):
        shutil.copytree(day["course"].root / folder / A1, course.root / folder / A1)
    for args in (["report", A1], ["report", "a9_nothing"], ["grade", A1], ["grade", "a9_nothing"]):
        proc = ck(course, *args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    # a class where nothing can be graded: non-zero exit, and why
    broken = course.submitted / "eve" / A1 / "batchnorm1d.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text("{ not json")
    proc = ck(course, "grade", A1, "--jobs", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no submission of a1_batchnorm1d could be graded" in proc.stderr
    proc = ck(course, "report", A1, "--no-feedback")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    with (course.reports / A1 / "grades.csv").open(newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["Student ID"] == "eve" and row["Grade"] == "" and row["Status"].startswith("not graded: parse_error")


def test_archive_limits_refuse_before_writing(tmp_path):
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_bomb(4))
    dest = tmp_path / "out"
    refused = extract(bomb, dest, Budget(Limits(ratio=50)), strict=False)
    assert refused and "compression ratio" in refused[0][1] and not any(dest.rglob("*.ipynb"))
    many = tmp_path / "many.zip"
    many.write_bytes(_zip({f"f{i}.txt": b"x" for i in range(30)}))
    with pytest.raises(Exception, match="30 entries"):
        extract(many, tmp_path / "out2", Budget(Limits(entries=20)), strict=False)
    assert not (tmp_path / "out2").exists()
    big = tmp_path / "big.zip"
    big.write_bytes(_zip({f"f{i}.bin": os.urandom(2 * 2**20) for i in range(3)}))  # 3 x 2 MB
    with pytest.raises(Exception, match="would unpack to 6 MB"):
        extract(big, tmp_path / "out4", Budget(Limits(archive_bytes=4 * 2**20)), strict=True)
    deep = tmp_path / "deep.zip"
    deep.write_bytes(_zip({"/".join(["d"] * 30) + "/x.ipynb": b"{}"}))
    with pytest.raises(Exception, match="folders deep"):
        extract(deep, tmp_path / "out3", Budget(), strict=True)


def test_demo_delivers_a1_through_moodle_intake(tmp_path):
    """`make demo`'s intake step on its own (the demo itself grades every catalogue: too slow here)."""
    course = make_course(tmp_path / "course", [A1])
    variants = classgen.catalogue(A1)
    demo.deliver(course, A1, variants, moodle=True)
    report = json.loads((course.state / "intake" / A1 / "report.json").read_text(encoding="utf-8"))
    assert {v.student for v in variants} <= set(report["students"])
    assert any(info["files"][0]["how"] != "exact" for info in report["students"].values())
