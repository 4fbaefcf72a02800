"""``coursekit report``: grades CSV for Moodle, nbgrader feedback, class summary (coursekit.reports).

One small class (tiny assignment, delivered as a damaged Moodle export with two
broken files) is collected by ``nbgrader zip_collect``, graded once by plain
``nbgrader autograde``, given a few events that other stages record
(timeout, memory, suspicious, tamper, and a kind nobody planned for), and
reported; every figure of the report is checked against the gradebook.
"""
from __future__ import annotations

import copy
import csv
import json

import pytest

import tiny_assignment as T
from conftest import make_course, nbgrader
from coursekit import events, gradebook
from coursekit.classgen import damage
from coursekit.reports import moodle_date, report

OTHER_KINDS = {"timeout": {"scope": "cell", "cell": "tiny.ipynb:test_inc", "message": "interrupted"},
               "memory": {"message": "kernel killed at 2048 MB"},
               "suspicious": {"message": "calls nn.functional.batch_norm <img src=x onerror=alert(1)>",
                              "code": "open('/etc/<script>alert(2)</script>')"},
               "tamper": {"message": "redefined torch.allclose"},
               "made_up_kind": {"note": "recorded by a future stage"}}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("reports") / "course", [])
    T.install(course)
    variants = []
    for i in range(6):
        base = T.variants()[i % 3]
        v = copy.copy(base)
        v.student = f"s{i}_{base.student}"
        variants.append(v)
    # one student also wrote the written answer: nbgrader leaves it for manual grading
    written = copy.copy(T.variants()[0])
    written.student, written.answers = "s6_written", {**written.answers, "explain": "Suma u al nombre."}
    variants.append(written)
    archive = course.root / "downloaded" / T.ASSIGNMENT / "archive"
    export = damage.moodle_export(course, T.ASSIGNMENT, variants, archive / "moodle.zip", damage=True, broken=True)
    nbgrader(course, "zip_collect", T.ASSIGNMENT)
    proc = nbgrader(course, "autograde", T.ASSIGNMENT, check=False)
    assert proc.returncode == 1  # the two broken files; the others are graded
    for i, (kind, details) in enumerate(OTHER_KINDS.items()):
        events.record(course.root, T.ASSIGNMENT, variants[i].student, kind, **details)
    summary = report(course, T.ASSIGNMENT, scale=10, provisional=True)
    return {"course": course, "variants": variants, "export": export, "summary": summary,
            "out": course.reports / T.ASSIGNMENT}


def test_grades_csv_is_what_moodle_imports(reported):
    course, export = reported["course"], reported["export"]
    with (reported["out"] / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # the columns Moodle's grading-worksheet upload looks for, with these exact names
    assert {"Identifier", "Grade", "Last modified (grade)"} <= set(rows[0])
    assert {"Email address", "ID number", "Full name", "Maximum Grade"} <= set(rows[0])
    by_student = {r["Student ID"]: r for r in rows}
    # the broken files: a row with an empty grade and the cause
    assert set(by_student) == {v.student for v in reported["variants"]} | {"broken_script", "broken_truncated"}
    for sid in ("broken_script", "broken_truncated"):
        broken = by_student.pop(sid)
        assert broken["Grade"] == "" and broken["Status"].startswith("not graded: parse_error"), broken
    # the written answer waits for manual grading: exported (asked for) as provisional
    assert by_student["s6_written"]["Status"] == "provisional: written answers not graded yet"
    assert {r["Status"] for s, r in by_student.items() if s != "s6_written"} == {"graded"}
    gb_scores = gradebook.scores(course, T.ASSIGNMENT)
    maxima = gradebook.max_scores(course, T.ASSIGNMENT)
    for v in reported["variants"]:
        row, who = by_student[v.student], export["people"][v.student]
        assert row["Identifier"] == f"Participant {who['participant_id']}"
        assert row["Email address"] == who["email"] and row["ID number"] == who["id_number"]
        assert row["Full name"] == who["full_name"]
        points = sum(gb_scores[v.student].values())
        assert float(row["Grade"]) == pytest.approx(round(10 * points / sum(maxima.values()), 2))
        assert row["Maximum Grade"] == "10.00"
    assert {r["Grade"] for r in by_student.values()} >= {"7.50", "0.00"}  # right answers (3 of 4 points autograded), none


def test_feedback_html_per_graded_student(reported):
    course = reported["course"]
    for v in reported["variants"]:
        page = course.feedback / v.student / T.ASSIGNMENT / "tiny.html"
        html = page.read_text(encoding="utf-8") if page.is_file() else ""
        assert "test_double" in html, f"no feedback for {v.student}"
        # hidden tests stay hidden: their source is not in what students take home
        # (the marker comment survives syntax highlighting as one span; nbgrader's default keeps it)
        assert "HIDDEN TESTS" not in html
    assert reported["summary"]["feedback"]["count"] == len(reported["variants"])


def test_summary_pass_rates_and_histogram(reported):
    out, summary = reported["out"], reported["summary"]
    rates = {r["test"]: (r["passed"], r["graded"]) for r in summary["pass_rates"]}
    # s0/s3 right, s1/s4 inc wrong, s2/s5 untouched
    assert rates == {"test_double": (5, 7), "test_inc": (3, 7)}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["pass_rates"] == summary["pass_rates"]
    assert on_disk["scores"]["count"] == 7 and sorted(on_disk["not_graded"]) == ["broken_script", "broken_truncated"]
    png = (out / "histogram.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| `test_inc` | 1 | 3/7 | 43% |" in md
    assert "<table>" in (out / "summary.html").read_text(encoding="utf-8")
    assert "(s6_written; exported as provisional grades)" in md


def test_summary_lists_what_needs_a_look(reported):
    summary = reported["summary"]
    flagged = summary["flagged"]
    assert {e["student"] for e in flagged["parse_error"]} == {"broken_script", "broken_truncated"}
    damaged = {s for s, kind in reported["export"]["damage"].items() if kind != "edit_test"}
    assert {e["student"] for e in flagged["repaired"]} == damaged
    for i, kind in enumerate(OTHER_KINDS):  # other stages' kinds, read generically
        assert [e["student"] for e in flagged[kind]] == [reported["variants"][i].student]
    problems = {p["kind"] for p in summary["intake"]["problems"]}
    assert {"no_notebook", "ambiguous", "not_a_notebook"} <= problems
    md = (reported["out"] / "summary.md").read_text(encoding="utf-8")
    for kind in ("parse_error", "repaired", "timeout", "memory", "suspicious", "tamper", "made_up_kind"):
        assert f"### {kind} (" in md
    assert "kernel killed at 2048 MB" in md and "ambiguous" in md
    # what a student wrote reaches the instructor's page as text, never as live HTML
    page = (reported["out"] / "summary.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page and "<script" not in page and "<img src=x" not in md
    # and the failed submissions have one line each, with the cause and where the log is
    assert "broken_script</code>: parse_error:" in page and "(log: <code>.coursekit/events/" in page


def test_moodle_date_format():
    import datetime as dt
    assert moodle_date(dt.datetime(2026, 3, 5, 14, 7)) == "5 March 2026, 02:07 PM"
    assert moodle_date(dt.datetime(2026, 3, 5, 0, 30)) == "5 March 2026, 12:30 AM"


def test_manual_grading_then_report_again(reported, tmp_path):
    """By default a grade waiting for manual grading is left empty and gets no feedback; once it is
    marked (as formgrader does, through nbgrader's Gradebook), the next report exports it and
    regenerates the feedback with the new score."""
    import shutil

    from nbgrader.api import Gradebook

    course = type(reported["course"])(tmp_path / "course")
    shutil.copytree(reported["course"].root, course.root)
    summary = report(course, T.ASSIGNMENT)
    rows = {r["Student ID"]: r for r in csv.DictReader((course.reports / T.ASSIGNMENT / "grades.csv").open())}
    assert rows["s6_written"]["Grade"] == "" and rows["s6_written"]["Status"].startswith("waiting for manual grading")
    assert rows["s0_ok"]["Grade"] == "3.00" and rows["s0_ok"]["Status"] == "graded"
    assert summary["manual"]["waiting"] == ["s6_written"]
    page = course.feedback / "s6_written" / T.ASSIGNMENT / "tiny.html"
    assert not page.exists()  # no feedback with provisional points
    with Gradebook(gradebook.db_url(course)) as gb:
        grade = gb.find_grade("explain", "tiny", T.ASSIGNMENT, "s6_written")
        grade.manual_score = 1.0  # what formgrader's grade API does
        grade.needs_manual_grade = False
        gb.db.commit()
    summary = report(course, T.ASSIGNMENT)
    rows = {r["Student ID"]: r for r in csv.DictReader((course.reports / T.ASSIGNMENT / "grades.csv").open())}
    assert rows["s6_written"]["Grade"] == "4.00" and rows["s6_written"]["Status"] == "graded"
    assert summary["manual"]["waiting"] == []
    assert "4.0 / 4.0" in page.read_text(encoding="utf-8")


def test_a_traceback_is_one_line_in_the_summary():
    from coursekit.reports import _describe
    trace = "nbgrader could not grade it: Traceback (most recent call last):\n" + "  File x, line 1\n" * 40 \
        + "RuntimeError: boom (log: .coursekit/grading/a1/eve.log)"
    line = _describe("grading_failed", {"student": "eve", "message": trace})
    assert "\n" not in line and len(line) < 400 and line.endswith("(log: .coursekit/grading/a1/eve.log)")
