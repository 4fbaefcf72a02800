"""What the report knows about the class besides the scores: who each student is for Moodle,
why a submission has no grade, the pass rate of every test cell, the events worth a look."""
from __future__ import annotations

import json
from pathlib import Path

from coursekit import events, gradebook
from coursekit.paths import Course
from coursekit.reporting.render import _describe

# How the summary orders the kinds it lists (kinds it does not know follow alphabetically).
KIND_ORDER = [events.PARSE_ERROR, events.GRADING_FAILED, events.CRASHED, events.TIMEOUT, events.TAMPER,
              events.SUSPICIOUS, events.REPAIRED, events.SANDBOX_REMOVED_LINKS, events.SANDBOX_REMOVED_FILES]


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
        # coursekit grade marks each attempt: older attempts' events are superseded
        log = events.since_last_start(events.read(course.root, assignment, student))
        seen = set()
        for event in log:
            kind = event.get("kind", "?")
            if kind in events.QUIET or kind == events.INTAKE_PROBLEM:
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


def failures(course: Course, assignment: str, students: list[str]) -> dict[str, dict]:
    """Why each submitted but not graded student has no grade: {student: {cause, log}}."""
    out = {}
    for student in students:
        recent = events.since_last_start(events.read(course.root, assignment, student))
        bad = [e for e in recent if e.get("kind") in events.FAILURES and e.get("scope") != "cell"]
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
