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
               "suspicious": {"message": "calls nn.functional.batch_norm"},
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
    archive = course.root / "downloaded" / T.ASSIGNMENT / "archive"
    export = damage.moodle_export(course, T.ASSIGNMENT, variants, archive / "moodle.zip", damage=True, broken=True)
    nbgrader(course, "zip_collect", T.ASSIGNMENT)
    proc = nbgrader(course, "autograde", T.ASSIGNMENT, check=False)
    assert proc.returncode == 1  # the two broken files; the others are graded
    for i, (kind, details) in enumerate(OTHER_KINDS.items()):
        events.record(course.root, T.ASSIGNMENT, variants[i].student, kind, **details)
    summary = report(course, T.ASSIGNMENT, scale=10)
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
    assert set(by_student) == {v.student for v in reported["variants"]}  # broken files: no grade exported
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
    assert {r["Grade"] for r in rows} >= {"7.50", "0.00"}  # right answers (3 of 4 points autograded), none


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
    assert rates == {"test_double": (4, 6), "test_inc": (2, 6)}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["pass_rates"] == summary["pass_rates"]
    assert on_disk["scores"]["count"] == 6 and sorted(on_disk["not_graded"]) == ["broken_script", "broken_truncated"]
    png = (out / "histogram.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| `test_inc` | 1 | 2/6 | 33% |" in md
    assert "<table>" in (out / "summary.html").read_text(encoding="utf-8")


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


def test_moodle_date_format():
    import datetime as dt
    assert moodle_date(dt.datetime(2026, 3, 5, 14, 7)) == "5 March 2026, 02:07 PM"
    assert moodle_date(dt.datetime(2026, 3, 5, 0, 30)) == "5 March 2026, 12:30 AM"
