"""``grades.csv`` in the shape Moodle imports (see :mod:`coursekit.reports`)."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def moodle_date(when: dt.datetime) -> str:
    """Moodle's worksheet date format ("27 November 2026, 01:45 PM"), in English whatever the locale."""
    hour = when.hour % 12 or 12
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}, {hour:02d}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"


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
