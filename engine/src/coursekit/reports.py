"""``coursekit report ASSIGNMENT``: what an instructor takes away after grading.

Owns ``reports/<assignment>/``:

* ``grades.csv``: one row per graded submission, in the shape Moodle imports.
  Columns ``Identifier`` ("Participant N", from the intake of the Moodle
  export), ``Full name``, ``Email address``, ``ID number``, ``Grade``,
  ``Maximum Grade``, ``Last modified (grade)`` (now) and, ignored by Moodle,
  ``Student ID``, ``Needs manual grade`` and ``Status``.  Every collected
  student has a row: one that could not be graded, or (unless
  ``--provisional``) still waits for manual grading, has an empty ``Grade`` and
  says why in ``Status``.  Every cell is neutralised against spreadsheet
  formulas (:func:`csv_cell`).  Two ways to import it:

  - Assignment > *View all submissions* > *Upload grading worksheet*: Moodle
    matches ``Identifier`` and reads ``Grade`` (needs an English-language
    session, because it looks for these exact column names; tick "Allow
    updating records that have been modified more recently in Moodle" if grades
    were edited there after this report);
  - Gradebook > *Import* > *CSV file*: map "Identify user by" to ``Email
    address`` (or ``ID number``) and the ``Grade`` column to the assignment's
    grade item.

  ``Grade`` is nbgrader's score minus its late penalty, rescaled to
  ``--scale`` points if given (Moodle's "Maximum grade" of the assignment).
* feedback HTML per student: nbgrader's own ``generate_feedback`` writes it to
  ``feedback/<student>/<assignment>/`` (ready for ``nbgrader release_feedback``
  or to be uploaded); the summary links to it.
* ``summary.json`` / ``summary.md`` / ``summary.html``: score statistics, the
  pass rate of every autograded test cell, ``histogram.png`` (matplotlib,
  Agg), what intake could not match, and every submission the event log flags
  (repaired, parse errors, timeouts, memory, crashes, suspicious, tampering,
  any other kind), read generically from :mod:`coursekit.events`.  The HTML is
  built from the data with every string escaped (names, file names, events and
  code excerpts are the students').

The parts live in :mod:`coursekit.reporting`; their names stay importable from here.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from coursekit import gradebook
from coursekit.paths import Course
# the parts, under the names this module always had (nbgrader_config.py plugs in HideHiddenTests)
from coursekit.reporting.classdata import (KIND_ORDER, all_students, failures, flagged, identities,  # noqa: F401
                                           is_autograded, pass_rates)
from coursekit.reporting.feedback import HIDDEN_MARKER, HideHiddenTests, generate_feedback  # noqa: F401
from coursekit.reporting.moodle import (FORMULA_START, MONTHS, csv_cell, grade_status, moodle_date,  # noqa: F401
                                        write_csv, write_grades_csv)
from coursekit.reporting.render import _describe, histogram, md, render_html, render_markdown  # noqa: F401

submissions = gradebook.submissions  # the scores, read from the gradebook


def report(course: Course, assignment: str, scale: float | None = None, feedback: bool = True,
           roster: Path | None = None, provisional: bool = False) -> dict:
    """Write everything in ``reports/<assignment>/`` (and nbgrader's feedback); return the summary.

    A submission still waiting for manual grading (a written answer not yet marked in formgrader)
    gets an empty grade and no feedback unless ``provisional`` (then its current points, marked as
    provisional, and feedback saying so).  Feedback is regenerated on every run, so running the
    report again after manual grading brings grades and feedback up to date."""
    from coursekit.intake import read_report

    course.source_notebooks(assignment)  # a clear error for an unknown assignment
    everything = submissions(course, assignment)
    # nbgrader keeps a gradebook entry (score 0) for a submission it failed to grade, but removes
    # its autograded copy: only submissions with an autograded copy have a grade to export
    subs = {sid: s for sid, s in everything.items() if is_autograded(course, assignment, sid)}
    ungraded = sorted(set(everything) - set(subs))
    submitted = {p.name for p in course.submitted.iterdir() if (p / assignment).is_dir()} \
        if course.submitted.is_dir() else set()
    failed = failures(course, assignment, sorted((submitted | set(everything)) - set(subs)))
    waiting = sorted(sid for sid, s in subs.items() if s["needs_manual_grade"])
    out = course.reports / assignment
    out.mkdir(parents=True, exist_ok=True)
    who = identities(course, assignment, roster)
    grades_csv = out / "grades.csv"
    write_grades_csv(grades_csv, subs, who, scale, failed, provisional)

    fb = {"generated": False, "count": 0, "log": "", "withheld": []}
    if feedback and subs:
        withheld = [] if provisional else waiting
        for sid in withheld:  # feedback written before manual grading would show provisional points
            for page in (course.feedback / sid / assignment).glob("*.html"):
                page.unlink()
        if set(withheld) != set(subs):
            ok, log = generate_feedback(course, assignment, exclude=withheld)
            fb["generated"], fb["log"] = ok, ("" if ok else log)
        fb["withheld"] = withheld
    fb_files = {sid: [str(p.relative_to(course.root)) for p in sorted((course.feedback / sid / assignment).glob("*.html"))]
                for sid in subs}
    fb["count"] = sum(len(v) for v in fb_files.values())

    scores = sorted(s["score"] for s in subs.values())
    maximum = max((s["max_score"] for s in subs.values()), default=0.0)
    histogram(out / "histogram.png", scores, maximum, assignment)
    intake = read_report(course.root, assignment)
    students = all_students(course, assignment, list(subs))
    summary = {
        "assignment": assignment,
        "generated": dt.datetime.now().isoformat(timespec="seconds"),
        "scores": {"count": len(scores), "max": maximum,
                   "mean": sum(scores) / len(scores) if scores else 0.0,
                   "median": (scores[(len(scores) - 1) // 2] + scores[len(scores) // 2]) / 2 if scores else 0.0,
                   "min": scores[0] if scores else 0.0, "top": scores[-1] if scores else 0.0,
                   "per_student": {sid: s["score"] for sid, s in sorted(subs.items())}},
        "not_graded": ungraded,
        "failed": failed,
        "needs_manual_grade": len(waiting),
        "manual": {"waiting": waiting, "provisional": provisional},
        "pass_rates": pass_rates(course, assignment, subs),
        "intake": {"students": len(intake["students"]) if intake else None,
                   "problems": intake.get("problems", []) if intake else []},
        "flagged": flagged(course, assignment, students),
        "feedback": {**fb, "files": fb_files},
        "files": {"grades_csv": str(grades_csv.relative_to(course.root)), "histogram": "histogram.png"},
    }
    summary["flag_counts"] = {k: len({e["student"] for e in v}) for k, v in summary["flagged"].items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str))
    (out / "summary.md").write_text(render_markdown(summary), encoding="utf-8")
    (out / "summary.html").write_text(render_html(summary), encoding="utf-8")
    return summary


def add_arguments(parser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("--scale", type=float, default=None, metavar="POINTS",
                        help="rescale grades to this maximum (Moodle's 'Maximum grade'; default: nbgrader's points)")
    parser.add_argument("--provisional", action="store_true",
                        help="export the current points of submissions still waiting for manual grading, "
                             "marked 'provisional' in the Status column (default: their grade is left empty)")
    parser.add_argument("--no-feedback", action="store_true", help="skip nbgrader generate_feedback")
    parser.add_argument("--roster", type=Path, default=None,
                        help="roster CSV for emails / ID numbers (default: <course>/roster.csv if present)")


def run(args) -> int:
    course = Course.at(args.course)
    summary = report(course, args.assignment, scale=args.scale, feedback=not args.no_feedback,
                     roster=args.roster, provisional=args.provisional)
    out = course.reports / args.assignment
    st = summary["scores"]
    print(f"{args.assignment}: {st['count']} graded submissions, mean {st['mean']:.2f}/{st['max']:g}")
    print(f"  grades for Moodle: {out / 'grades.csv'}")
    waiting = summary["manual"]["waiting"]
    if waiting:
        print(f"  {len(waiting)} wait for manual grading in formgrader: {', '.join(waiting)}; "
              + ("exported as provisional grades" if args.provisional else
                 "their grade is left empty and they get no feedback yet (grade them, then run this again; "
                 "--provisional exports their current points)"))
    for sid, f in summary["failed"].items():
        print(f"  not graded: {sid}: {f['cause']}" + (f" (log: {f['log']})" if f["log"] else ""))
    print(f"  summary: {out / 'summary.html'} (also .md, .json), histogram: {out / 'histogram.png'}")
    print(f"  feedback: {summary['feedback']['count']} HTML files in {course.feedback}/<student>/{args.assignment}/")
    if summary["feedback"]["log"]:
        print("  nbgrader generate_feedback reported errors:\n" + summary["feedback"]["log"], file=sys.stderr)
    for kind, n in summary["flag_counts"].items():
        print(f"  {kind}: {n} submissions")
    if not st["count"]:
        print(f"coursekit report: no graded submission of {args.assignment}"
              + (f" ({len(summary['failed'])} failed, listed above)" if summary["failed"] else
                 f": grade first (coursekit grade {args.assignment})"), file=sys.stderr)
        return 1
    return 0
