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
"""
from __future__ import annotations

import csv
import datetime as dt
import html
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

from coursekit import events, gradebook
from coursekit.paths import Course, CourseError

HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback preprocessor: a test cell with hidden tests shows no hidden source.

    nbgrader's ``ClearHiddenTests`` (after this one in ``GenerateFeedback``) removes
    the hidden lines from the cell, but a failing cell's traceback quotes the code
    around the failing line; keep only the error's name and message (the Catalan
    message that says what is wrong).
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and HIDDEN_MARKER in cell.source:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources

# Event kinds that are bookkeeping, not something to look at.
QUIET_KINDS = {"intake", "grading_started", "graded"}
# Kinds recorded by intake (its latest report.json is what counts).
INTAKE_KINDS = {"intake", "intake_problem"}
# How the summary orders the kinds it lists (others follow alphabetically).
KIND_ORDER = ["parse_error", "grading_failed", "crash", "crashed", "timeout", "memory", "tamper",
              "suspicious", "intake_problem", "repaired"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def moodle_date(when: dt.datetime) -> str:
    """Moodle's worksheet date format ("27 November 2026, 01:45 PM"), in English whatever the locale."""
    hour = when.hour % 12 or 12
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}, {hour:02d}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"


# ---------------------------------------------------------------- data

def submissions(course: Course, assignment: str) -> dict[str, dict]:
    """Per student: nbgrader's score, penalty, maximum, manual-grade flag and per-cell scores."""
    from nbgrader.api import Gradebook, MissingEntry

    if not course.gradebook.is_file():
        raise CourseError(f"no gradebook at {course.gradebook}: grade first (coursekit grade {assignment})")
    out = {}
    with Gradebook(gradebook.db_url(course)) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise CourseError(f"assignment {assignment!r} is not in the gradebook: run "
                              f"`coursekit release` / nbgrader generate_assignment, then grade") from None
        for sub in gb.assignment_submissions(assignment):
            cells = {}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name] = {"score": grade.score, "auto": grade.auto_score, "max": grade.max_score,
                                         "needs_manual": bool(grade.needs_manual_grade)}
            student = sub.student
            penalty = sub.late_submission_penalty or 0.0
            out[student.id] = {
                "score": max(0.0, (sub.score or 0.0) - penalty), "raw_score": sub.score or 0.0,
                "late_penalty": penalty, "max_score": sub.max_score or 0.0,
                "needs_manual_grade": bool(sub.needs_manual_grade),
                "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "first_name": student.first_name or "", "last_name": student.last_name or "",
                "email": student.email or "", "cells": cells,
            }
    return out


def identities(course: Course, assignment: str, roster_path: Path | None) -> dict[str, dict]:
    """What Moodle knows each student by: intake report (participant id, name), roster, gradebook."""
    from coursekit.intake import Roster, read_report

    out: dict[str, dict] = {}
    roster_path = roster_path or (course.root / "roster.csv")
    roster = Roster.load(roster_path) if roster_path.is_file() else Roster()
    for row in roster.rows:
        out[row["student_id"]] = {k: row.get(k, "") for k in ("full_name", "email", "id_number", "participant_id")}
    for sid, info in read_report(course.root, assignment).get("students", {}).items():
        entry = out.setdefault(sid, {})
        for key in ("full_name", "email", "id_number"):
            if info.get(key):
                entry[key] = info[key]
        if info.get("participant_id"):  # per assignment in Moodle: the intake's value wins
            entry["participant_id"] = info["participant_id"]
    return out


def flagged(course: Course, assignment: str, students: list[str]) -> dict[str, list[dict]]:
    """Events worth a look, per kind: ``{kind: [{student, ...event}]}`` (latest grading run only)."""
    out: dict[str, list[dict]] = {}
    for student in students:
        log = events.read(course.root, assignment, student)
        starts = [i for i, e in enumerate(log) if e.get("kind") == "grading_started"]
        if starts:  # coursekit grade marks each run: older runs' grading events are superseded
            log = [e for i, e in enumerate(log) if i > starts[-1] or e.get("kind") in INTAKE_KINDS]
        seen = set()
        for event in log:
            kind = event.get("kind", "?")
            if kind in QUIET_KINDS or kind in INTAKE_KINDS:
                continue  # intake problems come from the latest intake report instead
            details = {k: v for k, v in event.items() if k not in ("time", "kind", "run", "worker", "stage")}
            key = (kind, json.dumps(details, sort_keys=True, default=str))
            if key in seen:  # plain `nbgrader autograde` run twice records the same repair twice
                continue
            seen.add(key)
            out.setdefault(kind, []).append({"student": student, **details})
    return dict(sorted(out.items(), key=lambda kv: (KIND_ORDER.index(kv[0]) if kv[0] in KIND_ORDER else 99, kv[0])))


def is_autograded(course: Course, assignment: str, student: str) -> bool:
    folder = course.autograded / student / assignment
    return folder.is_dir() and any(folder.glob("*.ipynb"))


def all_students(course: Course, assignment: str, graded: list[str]) -> list[str]:
    names = set(graded)
    folder = course.state / "events" / assignment
    if folder.is_dir():
        names |= {p.stem for p in folder.glob("*.jsonl")}
    if course.submitted.is_dir():
        names |= {p.name for p in course.submitted.iterdir() if (p / assignment).is_dir()}
    return sorted(names)


# ---------------------------------------------------------------- outputs

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one that starts like a formula gets a leading apostrophe
    (what spreadsheets themselves do), so a name such as ``=HYPERLINK(...)`` is never evaluated."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Every CSV coursekit writes goes through here: every cell neutralised (see :func:`csv_cell`)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([csv_cell(c) for c in row] for row in rows)


def grade_status(s: dict, provisional: bool) -> tuple[bool, str]:
    """(whether the grade is exported, the Status column) of one graded submission."""
    if not s["needs_manual_grade"]:
        return True, "graded"
    if provisional:
        return True, "provisional: written answers not graded yet"
    return False, "waiting for manual grading (formgrader); grade left empty"


def write_grades_csv(path: Path, subs: dict[str, dict], who: dict[str, dict], scale: float | None,
                     failed: dict[str, dict] | None = None, provisional: bool = False) -> int:
    """One row per student: graded ones with their grade, the others with an empty grade and why."""
    now = moodle_date(dt.datetime.now())
    header = ["Identifier", "Full name", "Email address", "ID number", "Grade", "Maximum Grade",
              "Last modified (grade)", "Student ID", "Needs manual grade", "Status"]
    rows = []
    for sid in sorted(set(subs) | set(failed or {})):
        ident = who.get(sid, {})
        s = subs.get(sid)
        if s is not None:
            maximum = scale if scale else s["max_score"]
            exported, status = grade_status(s, provisional)
            grade = s["score"] * (scale / s["max_score"]) if scale and s["max_score"] else s["score"]
            name = ident.get("full_name") or f"{s['first_name']} {s['last_name']}".strip()
            email, manual = ident.get("email") or s["email"], "yes" if s["needs_manual_grade"] else "no"
            grade_text, max_text = (f"{grade:.2f}" if exported else ""), f"{maximum:.2f}"
        else:
            name, email, manual = ident.get("full_name", ""), ident.get("email", ""), ""
            grade_text, max_text = "", (f"{scale:.2f}" if scale else "")
            status = f"not graded: {failed[sid]['cause']}"
        rows.append([f"Participant {ident['participant_id']}" if ident.get("participant_id") else "",
                     name, email, ident.get("id_number", ""), grade_text, max_text,
                     now if grade_text else "", sid, manual, status])
    write_csv(path, header, rows)
    return len(rows)


FAILURE_KINDS = ("parse_error", "grading_failed", "crash", "crashed", "timeout", "memory")


def failures(course: Course, assignment: str, students: list[str]) -> dict[str, dict]:
    """Why each submitted but not graded student has no grade: {student: {cause, log}}."""
    out = {}
    for student in students:
        log = events.read(course.root, assignment, student)
        starts = [i for i, e in enumerate(log) if e.get("kind") == "grading_started"]
        recent = log[starts[-1] + 1:] if starts else log
        bad = [e for e in recent if e.get("kind") in FAILURE_KINDS and e.get("scope") != "cell"]
        grading_log = course.state / "grading" / assignment / f"{student}.log"
        where = grading_log if grading_log.is_file() else events.log_path(course.root, assignment, student)
        if bad:
            cause = f"{bad[-1]['kind']}: {_describe(bad[-1]['kind'], bad[-1])}"
        else:
            cause = f"not graded yet (run coursekit grade {assignment})"
        cause = " ".join(cause.split())
        if len(cause) > 300:
            cause = cause[:297] + "..."
        out[student] = {"cause": cause, "log": str(where.relative_to(course.root)) if where.exists() else ""}
    return out


def pass_rates(course: Course, assignment: str, subs: dict[str, dict]) -> list[dict]:
    tests = gradebook.autograded_tests(course, assignment)
    maxima = gradebook.max_scores(course, assignment)
    rows = []
    for t in tests:
        got = [s["cells"].get(t, {}).get("auto") or 0.0 for s in subs.values()]
        passed = sum(1 for g in got if g >= maxima[t] - 1e-9)
        rows.append({"test": t, "points": maxima[t], "passed": passed, "graded": len(got),
                     "rate": passed / len(got) if got else None})
    return rows


def histogram(path: Path, scores: list[float], maximum: float, assignment: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = max(5, min(20, int(maximum) + 1)) if maximum else 10
    ax.hist(scores, bins=bins, range=(0, maximum or max(scores, default=1) or 1), color="#3b6ea5", edgecolor="white")
    ax.set_xlabel(f"score (of {maximum:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{assignment}: {len(scores)} graded submissions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def generate_feedback(course: Course, assignment: str, exclude: list[str] | None = None) -> tuple[bool, str]:
    """nbgrader's own generate_feedback, in the course root, with the course's configuration.

    ``--force``: feedback is written again every time, so that it always shows the gradebook's
    current grades (plain ``generate_feedback`` keeps files written before manual grading)."""
    cmd = [sys.executable, "-m", "nbgrader", "generate_feedback", assignment, "--force"]
    if exclude:
        cmd.append(f"--CourseDirectory.student_id_exclude={','.join(exclude)}")
    proc = subprocess.run(cmd, cwd=course.root, capture_output=True, text=True, env=_env())
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _describe(kind: str, event: dict) -> str:
    """One line about an event, at most ~400 characters (a traceback never fills the summary);
    a trailing "(log: PATH)" is kept."""
    if kind == "repaired":
        text = "; ".join(event.get("actions", []))
    else:
        text = next((str(event[k]) for k in ("message", "detail", "reason", "problem") if event.get(k)), None)
        if text is None:
            rest = {k: v for k, v in event.items() if k != "student"}
            text = json.dumps(rest, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    if len(text) > 400:
        log = re.search(r"\(log: [^()]*\)$", text)
        text = text[:300].rstrip() + " [...]" + (" " + log.group(0) if log else "")
    return text


def md(text) -> str:
    """A student-controlled string inside markdown: shown as text by any markdown viewer."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("|", "\\|").replace("[", "\\[") \
        .replace("]", "\\]")


def render_markdown(summary: dict) -> str:
    a = summary["assignment"]
    st = summary["scores"]
    manual = summary["manual"]
    lines = [f"# {a}: class summary", "", f"Generated {summary['generated']}.", "",
             f"- graded submissions: **{st['count']}**",
             f"- mean score: **{st['mean']:.2f}** / {st['max']:g} (median {st['median']:.2f}, "
             f"min {st['min']:.2f}, max {st['top']:.2f})" if st["count"] else "- no graded submission yet",
             f"- waiting for manual grading: {len(manual['waiting'])}"
             + (f" ({', '.join(md(s) for s in manual['waiting'])}; "
                + ("exported as provisional grades)" if manual["provisional"] else "grade left empty in the CSV)")
                if manual["waiting"] else ""),
             f"- not graded (empty grade in the CSV): {len(summary['failed'])}",
             f"- grades for Moodle: `{summary['files']['grades_csv']}`",
             f"- feedback: {summary['feedback']['count']} HTML files under `feedback/<student>/{a}/`", "",
             "![score histogram](histogram.png)", "", "## Not graded", ""]
    if not summary["failed"]:
        lines.append("Every collected submission was graded.")
    for sid, f in summary["failed"].items():
        lines.append(f"- {md(sid)}: {md(f['cause'])}" + (f" (log: {md(f['log'])})" if f["log"] else ""))
    lines += ["", "## Pass rate per test cell", "", "| test cell | points | passed | rate |", "|---|---:|---:|---:|"]
    for row in summary["pass_rates"]:
        rate = f"{100 * row['rate']:.0f}%" if row["rate"] is not None else "-"
        lines.append(f"| `{row['test']}` | {row['points']:g} | {row['passed']}/{row['graded']} | {rate} |")
    lines += ["", "## Intake (Moodle export)", ""]
    intake = summary["intake"]
    if intake.get("students") is None:
        lines.append("No intake report (submissions were not collected with `coursekit collect` / zip_collect).")
    else:
        lines.append(f"{intake['students']} students collected, {len(intake['problems'])} could not be matched:")
        lines.append("")
        for p in intake["problems"]:
            lines.append(f"- **{md(p['kind'])}** {md(p.get('who') or '?')}"
                         + (f" ({md(p['student'])})" if p.get("student") else "") + f": {md(p['detail'])}")
    lines += ["", "## Submissions to look at", ""]
    if not summary["flagged"]:
        lines.append("Nothing was repaired, timed out, failed or looked suspicious.")
    for kind, items in summary["flagged"].items():
        students = sorted({e["student"] for e in items})
        lines += [f"### {md(kind)} ({len(students)})", ""]
        for e in items:
            lines.append(f"- {md(e['student'])}: {md(_describe(kind, e))}")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_html(summary: dict) -> str:
    """summary.html, built from the summary's data with every string escaped (never from markdown:
    names, file names, events and code excerpts are the students', and must reach the page as text)."""
    e = lambda text: html.escape(str(text))  # noqa: E731
    a, st, manual = summary["assignment"], summary["scores"], summary["manual"]
    out = [f"<h1>{e(a)}: class summary</h1>", f"<p>Generated {e(summary['generated'])}.</p>", "<ul>",
           f"<li>graded submissions: <strong>{st['count']}</strong></li>"]
    if st["count"]:
        out.append(f"<li>mean score: <strong>{st['mean']:.2f}</strong> / {st['max']:g} (median {st['median']:.2f}, "
                   f"min {st['min']:.2f}, max {st['top']:.2f})</li>")
    out.append(f"<li>waiting for manual grading: {len(manual['waiting'])}"
               + (f" ({e(', '.join(manual['waiting']))}; "
                  + ("exported as provisional grades)" if manual["provisional"] else "grade left empty in the CSV)")
                  if manual["waiting"] else "") + "</li>")
    out += [f"<li>not graded (empty grade in the CSV): {len(summary['failed'])}</li>",
            f"<li>grades for Moodle: <code>{e(summary['files']['grades_csv'])}</code></li>",
            f"<li>feedback: {summary['feedback']['count']} HTML files under <code>feedback/&lt;student&gt;/{e(a)}/</code></li>",
            "</ul>", '<p><img src="histogram.png" alt="score histogram"></p>', "<h2>Not graded</h2>"]
    if summary["failed"]:
        out.append("<ul>" + "".join(
            f"<li><code>{e(sid)}</code>: {e(f['cause'])}" + (f" (log: <code>{e(f['log'])}</code>)" if f["log"] else "")
            + "</li>" for sid, f in summary["failed"].items()) + "</ul>")
    else:
        out.append("<p>Every collected submission was graded.</p>")
    out += ["<h2>Pass rate per test cell</h2>",
            "<table><thead><tr><th>test cell</th><th>points</th><th>passed</th><th>rate</th></tr></thead><tbody>"]
    for row in summary["pass_rates"]:
        rate = f"{100 * row['rate']:.0f}%" if row["rate"] is not None else "-"
        out.append(f"<tr><td><code>{e(row['test'])}</code></td><td>{row['points']:g}</td>"
                   f"<td>{row['passed']}/{row['graded']}</td><td>{rate}</td></tr>")
    out += ["</tbody></table>", "<h2>Intake (Moodle export)</h2>"]
    intake = summary["intake"]
    if intake.get("students") is None:
        out.append("<p>No intake report (submissions were not collected with <code>coursekit collect</code>).</p>")
    else:
        out.append(f"<p>{intake['students']} students collected, {len(intake['problems'])} could not be matched:</p>")
        out.append("<ul>" + "".join(
            f"<li><strong>{e(p['kind'])}</strong> {e(p.get('who') or '?')}"
            + (f" (<code>{e(p['student'])}</code>)" if p.get("student") else "") + f": {e(p['detail'])}"
            + "".join(f"<br><code>{e(f)}</code>" for f in p.get("files", [])[:5]) + "</li>"
            for p in intake["problems"]) + "</ul>")
    out.append("<h2>Submissions to look at</h2>")
    if not summary["flagged"]:
        out.append("<p>Nothing was repaired, timed out, failed or looked suspicious.</p>")
    for kind, items in summary["flagged"].items():
        students = sorted({ev["student"] for ev in items})
        out.append(f"<h3>{e(kind)} ({len(students)})</h3><ul>" + "".join(
            f"<li><code>{e(ev['student'])}</code>: {e(_describe(kind, ev))}</li>" for ev in items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{e(a)}: class summary</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}</style></head>"
            "<body>\n" + "\n".join(out) + "\n</body></html>\n")


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


def _env() -> dict:
    env = dict(os.environ)
    # nbgrader runs `alembic` from PATH: make the running interpreter's bin (the venv) visible
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


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
