"""Intake of a Moodle export through nbgrader's ``zip_collect`` (coursekit.intake).

A generated class is written as Moodle writes it (folders or flat names,
renamed notebooks, a zip inside the zip, wrong uploads, broken files) and
collected by the real ``nbgrader zip_collect`` and ``coursekit collect``; the
submitted copies must be byte-identical to what the students uploaded, every
original must stay untouched, and what could not be matched must be listed.
No grading here: these tests run in seconds.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import shutil

import pytest

import tiny_assignment as T
from conftest import make_course, nbgrader
from coursekit import events
from coursekit.classgen import damage
from coursekit.intake import Roster, notebook_key, plan_intake, printable, sanitise_id


def _class(n: int = 8):
    out = []
    for i in range(n):
        base = T.variants()[i % 2]
        v = copy.copy(base)
        v.student = f"s{i:02d}_{base.student}"
        out.append(v)
    return out


def _uploaded(zip_path: Path) -> dict[str, bytes]:
    """What each student uploaded, by Moodle entry name (a student's own zip opened)."""
    out = {}
    with zipfile.ZipFile(zip_path) as z:
        for name in z.namelist():
            data = z.read(name)
            if name.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(data)) as inner:
                    for n in inner.namelist():
                        if n.endswith(".ipynb") and "__MACOSX" not in n:
                            out[f"{name}!{n}"] = inner.read(n)
            else:
                out[name] = data
    return out


def _run_cli(course, *args):
    return subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A scratch course with the tiny assignment released (copied by each test: cheaper than releasing)."""
    course = make_course(tmp_path_factory.mktemp("intake_base") / "course", [])
    T.install(course)
    return course


def _copy(installed, dest: Path):
    shutil.copytree(installed.root, dest)
    return type(installed)(dest.resolve())


@pytest.fixture(scope="module")
def folders(installed, tmp_path_factory):
    """A Moodle zip in folders (with extras and broken uploads) collected by plain `nbgrader zip_collect`."""
    course = _copy(installed, tmp_path_factory.mktemp("intake") / "course")
    variants = _class()
    archive = course.root / "downloaded" / T.ASSIGNMENT / "archive"
    export = damage.moodle_export(course, T.ASSIGNMENT, variants, archive / "moodle.zip", damage=True, broken=True)
    before = T.digests(archive)
    proc = nbgrader(course, "zip_collect", T.ASSIGNMENT)
    report = json.loads((course.state / "intake" / T.ASSIGNMENT / "report.json").read_text())
    return {"course": course, "variants": variants, "export": export, "before": before, "proc": proc,
            "report": report, "zip": archive / "moodle.zip"}


def test_every_student_lands_in_submitted_with_the_bytes_they_uploaded(folders):
    course, export = folders["course"], folders["export"]
    uploaded = _uploaded(folders["zip"])
    for v in folders["variants"] + [damage.person("broken_truncated", 0) | {"student": "broken_truncated"}]:
        student = getattr(v, "student", None) or v["student"]
        path = course.submitted / student / T.ASSIGNMENT / "tiny.ipynb"
        assert path.is_file(), f"{student} not collected"
        (entry,) = export["files"][student]
        candidates = [data for name, data in uploaded.items() if name.split("!")[0] == entry]
        assert path.read_bytes() in candidates, f"{student}: collected bytes differ from the upload"
    # the renamed copies were recognised (Copy of, Còpia de, (1), case, _entrega, in a zip)
    how = {sid: info["files"][0]["how"] for sid, info in folders["report"]["students"].items()}
    assert how["s00_ok"] == "exact" and how["s05_half"] == "exact+zip"
    assert {how[f"s0{i}_{'ok' if i % 2 == 0 else 'half'}"] for i in (1, 2, 3, 4, 6, 7)} == {"renamed"}


def test_what_could_not_be_matched_is_listed_without_stopping(folders):
    course, report = folders["course"], folders["report"]
    problems = {(p["kind"], p.get("student")) for p in report["problems"]}
    assert ("no_notebook", "extra_wrong_file") in problems
    assert ("no_notebook", "extra_online_text") in problems
    assert ("ambiguous", "extra_two_notebooks") in problems
    assert ("not_a_notebook", "broken_truncated") in problems and ("not_a_notebook", "broken_script") in problems
    assert not (course.submitted / "extra_two_notebooks").exists()  # two different candidates: none chosen
    text = (course.state / "intake" / T.ASSIGNMENT / "problems.txt").read_text()
    assert "informe.pdf" in text and "Copy of tiny.ipynb" in text
    log = folders["proc"].stdout + folders["proc"].stderr
    assert "coursekit intake [ambiguous]" in log  # said on the console too
    kinds = [e["problem"] for e in events.read(course.root, T.ASSIGNMENT, "extra_wrong_file")
             if e["kind"] == "intake_problem"]
    assert kinds == ["no_notebook"]
    assert [e["kind"] for e in events.read(course.root, T.ASSIGNMENT, "s02_ok")] == ["intake"]


def test_originals_are_kept_untouched(folders):
    course = folders["course"]
    archive = course.root / "downloaded" / T.ASSIGNMENT / "archive"
    assert T.digests(archive) == folders["before"]
    kept = course.state / "originals" / T.ASSIGNMENT
    manifest = json.loads((kept / "manifest.json").read_text())
    entry = manifest["moodle.zip"]
    assert T.digests(kept)[entry["copy"]] == entry["sha256"] == folders["before"]["moodle.zip"]


def test_roster_maps_moodle_names_to_student_ids(folders):
    # moodle_export wrote a roster; without it the ids come from the names
    course = folders["course"]
    roster = Roster.load(course.root / "roster.csv")
    p = folders["export"]["people"]["s03_half"]
    assert roster.find(name=p["full_name"].upper())["student_id"] == "s03_half"
    assert roster.find(pid=p["participant_id"])["student_id"] == "s03_half"
    assert roster.find(key=p["email"])["student_id"] == "s03_half"
    assert folders["report"]["students"]["s03_half"]["participant_id"] == p["participant_id"]


def test_flat_export_and_coursekit_collect(installed, tmp_path):
    """Flat Moodle names, no roster: `coursekit collect ZIP` runs the same plugin; ids from the names."""
    course = _copy(installed, tmp_path / "course")
    variants = _class(4)
    zip_path = tmp_path / "download_all.zip"
    export = damage.moodle_export(course, T.ASSIGNMENT, variants, zip_path, damage=True, folders=False,
                                  extras=False, roster=False)
    with zipfile.ZipFile(zip_path) as z:
        assert all("/" not in n for n in z.namelist())  # flat
    before = zip_path.read_bytes()
    proc = _run_cli(course, "collect", T.ASSIGNMENT, str(zip_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collected 4 students" in proc.stdout
    for v in variants:
        sid = sanitise_id(export["people"][v.student]["full_name"])
        assert (course.submitted / sid / T.ASSIGNMENT / "tiny.ipynb").is_file(), sid
    assert zip_path.read_bytes() == before
    # collecting again replaces the collected copies only when asked to
    forced = _run_cli(course, "collect", T.ASSIGNMENT, str(zip_path), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr


def test_loose_folder_with_roster(installed, tmp_path):
    """A folder of per-student folders named by email or id, mapped through a roster given on the command line."""
    course = _copy(installed, tmp_path / "course")
    nb = (course.release / T.ASSIGNMENT / "tiny.ipynb").read_bytes()
    loose = tmp_path / "lliuraments"
    (loose / "anna.vidal@uni.example.edu").mkdir(parents=True)
    (loose / "anna.vidal@uni.example.edu" / "Copy of tiny.ipynb").write_bytes(nb)
    (loose / "u1002").mkdir()
    (loose / "u1002" / "TINY (1).ipynb").write_bytes(nb)
    (loose / "u1002" / ".ipynb_checkpoints").mkdir()
    (loose / "u1002" / ".ipynb_checkpoints" / "tiny-checkpoint.ipynb").write_bytes(nb)
    (loose / "stray.ipynb").write_bytes(nb)
    roster = tmp_path / "roster.csv"
    with roster.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["First name", "Surname", "ID number", "Email address", "student_id"])
        w.writerow(["Anna", "Vidal", "u1001", "anna.vidal@uni.example.edu", "avidal"])
        w.writerow(["Pere", "Mas", "u1002", "pere.mas@uni.example.edu", "pmas"])
    proc = _run_cli(course, "collect", T.ASSIGNMENT, str(loose), "--roster", str(roster))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (course.submitted / "avidal" / T.ASSIGNMENT / "tiny.ipynb").read_bytes() == nb
    assert (course.submitted / "pmas" / T.ASSIGNMENT / "tiny.ipynb").read_bytes() == nb
    assert "stray.ipynb" in proc.stdout and "unmatched" in proc.stdout


def test_nbgrader_regexp_configuration_still_works(installed, tmp_path):
    """An instructor who configures nbgrader's own named_regexp gets nbgrader's collector behaviour."""
    course = _copy(installed, tmp_path / "course")
    archive = course.root / "downloaded" / T.ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    nb = (course.release / T.ASSIGNMENT / "tiny.ipynb").read_bytes()
    (archive / "t0_hacker_attempt_2016-01-30-15-30-10_tiny.ipynb").write_bytes(nb)
    nbgrader(course, "zip_collect", T.ASSIGNMENT,
             r"--FileNameCollectorPlugin.named_regexp=.*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>\w+)")
    assert (course.submitted / "hacker" / T.ASSIGNMENT / "tiny.ipynb").read_bytes() == nb
    assert (course.submitted / "hacker" / T.ASSIGNMENT / "timestamp.txt").is_file()


def test_notebook_names_students_produce():
    for name in ["batchnorm1d.ipynb", "Copy of batchnorm1d.ipynb", "Còpia de batchnorm1d.ipynb",
                 "batchnorm1d (1).ipynb", "Copia de batchnorm1d (2).ipynb", "BatchNorm1d.ipynb",
                 "batchnorm 1d.ipynb", "batchnorm1d - còpia.ipynb", "batchnorm1d_copy.ipynb"]:
        assert notebook_key(name) == "batchnorm1d", name
    assert notebook_key("batchnorm2d.ipynb") != "batchnorm1d"


def test_same_name_twice_gets_two_ids(tmp_path):
    root = tmp_path / "extracted"
    for pid in ("111111", "222222"):
        folder = root / "moodle" / f"Maria Garcia_{pid}_assignsubmission_file_"
        folder.mkdir(parents=True)
        (folder / "tiny.ipynb").write_text("{}")
    plan = plan_intake(root, {"tiny": tmp_path / "none.ipynb"})
    assert set(plan.students) == {"maria_garcia_111111", "maria_garcia_222222"}


def test_names_reach_the_console_as_text():
    assert printable("Anna\x1b[2J\rVidal") == "Anna\\x1b[2J\\rVidal"
    assert printable("Núria Font") == "Núria Font"


def test_another_assignments_notebook_is_recognised_despite_shared_cells(tmp_path):
    """A2's notebook carries the helper cells (same grade_ids) of A1: only the cells unique to an
    assignment decide, so it is reported as A2's, under its own name or renamed to A1's."""
    from conftest import REPO

    release = {a: {p.stem: p for p in (REPO / "release" / a).glob("*.ipynb")}
               for a in ("a1_batchnorm1d", "a2_batchnorm2d", "a3_alexnet_bn")}
    a1_nb, a2_nb = release["a1_batchnorm1d"]["batchnorm1d"], release["a2_batchnorm2d"]["batchnorm2d"]
    ids = lambda p: {c["metadata"].get("nbgrader", {}).get("grade_id") for c in json.loads(p.read_text())["cells"]}
    assert ids(a1_nb) & ids(a2_nb) - {None}  # the shared helper cells
    root = tmp_path / "extracted"
    for name, pid, file, src in (("Marc Soler", 1, "batchnorm2d.ipynb", a2_nb),
                                 ("Nuria Font", 2, "batchnorm1d.ipynb", a2_nb),
                                 ("Anna Vidal", 3, "Untitled.ipynb", a1_nb)):
        folder = root / "moodle" / f"{name}_{pid}_assignsubmission_file_"
        folder.mkdir(parents=True)
        (folder / file).write_bytes(src.read_bytes())
    plan = plan_intake(root, release["a1_batchnorm1d"], assignment="a1_batchnorm1d",
                       others={a: r for a, r in release.items() if a != "a1_batchnorm1d"})
    assert set(plan.students) == {"anna_vidal"}  # A1's notebook under any name: by its content
    wrong = {p["who"]: p["detail"] for p in plan.problems if p["kind"] == "other_assignment"}
    assert set(wrong) == {"Marc Soler", "Nuria Font"}
    assert all(d.startswith("notebook of a2_batchnorm2d") for d in wrong.values())
