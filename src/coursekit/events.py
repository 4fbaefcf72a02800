"""Per-submission event log shared by every grading stage.

Intake, repair, grading, the sandbox and the trusted checks each record what
happened to a submission (``repaired``, ``parse_error``, ``timeout``,
``suspicious``, ...) as JSON lines in
``<course>/.coursekit/events/<assignment>/<student>.jsonl``; reports read them
back.  Appends are single ``write`` calls of one line, safe across processes.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse


def course_root_from_resources(resources: dict) -> Path:
    """The course root as seen from inside an nbgrader preprocessor.

    nbgrader runs in the course root and passes the gradebook URL; prefer the
    gradebook's folder (an sqlite URL) and fall back to the working directory.
    """
    url = resources.get("nbgrader", {}).get("db_url", "")
    if url.startswith("sqlite:///"):
        return Path(urlparse(url).path).resolve().parent
    return Path.cwd()


def log_path(root: Path, assignment: str, student: str) -> Path:
    return Path(root) / ".coursekit" / "events" / assignment / f"{student}.jsonl"


def record(root: Path, assignment: str, student: str, kind: str, **details) -> None:
    path = log_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "kind": kind, **details}, ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(root: Path, assignment: str, student: str) -> list[dict]:
    path = log_path(root, assignment, student)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line never hides the others
    return events


def clear(root: Path, assignment: str, student: str) -> None:
    """Forget a submission's events before it is graded again."""
    log_path(root, assignment, student).unlink(missing_ok=True)
