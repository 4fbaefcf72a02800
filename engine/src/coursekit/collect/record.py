"""What intake leaves behind: the originals kept read-only, the report, the events."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from coursekit import events
from coursekit.collect.names import printable, sha256

if TYPE_CHECKING:
    from coursekit.collect.plan import Plan

def keep_originals(archive: Path, dest: Path, log=None) -> dict:
    """Content-addressed copy of every archive file (``<sha256[:16]>-<name>``) plus ``manifest.json``."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if archive.is_dir():
        for folder, _, files in os.walk(archive):
            for name in sorted(files):
                src = Path(folder) / name
                digest = sha256(src)
                copy = dest / f"{digest[:16]}-{name}"
                if not copy.exists():
                    shutil.copy2(src, copy)
                    os.chmod(copy, 0o444)
                manifest[str(src.relative_to(archive))] = {"sha256": digest, "size": src.stat().st_size,
                                                           "copy": copy.name}
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    if log:
        log.info("Original files kept in %s (%d files)", dest, len(manifest))
    return manifest


def report_dir(root: Path, assignment: str) -> Path:
    return Path(root) / ".coursekit" / "intake" / assignment


def write_report(root: Path, assignment: str, plan: Plan, extracted: Path, log=None) -> Path:
    """Write report.json and problems.txt, record events, and say the problems on the console."""
    folder = report_dir(root, assignment)
    folder.mkdir(parents=True, exist_ok=True)
    report = {"assignment": assignment, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "extracted": str(extracted),
              "students": plan.students, "problems": plan.problems, "ignored": plan.ignored}
    (folder / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    lines = [f"Intake of {assignment}: {len(plan.students)} students collected, {len(plan.problems)} problems", ""]
    for p in plan.problems:
        lines.append(f"[{p['kind']}] {printable(p['who'] or '?')}"
                     + (f" ({p['student']})" if p.get("student") else "") + f": {printable(p['detail'])}")
        lines += [f"    {printable(f)}" for f in p["files"]]
    (folder / "problems.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for sid, info in plan.students.items():
        renamed = [f for f in info["files"] if f["how"] != "exact"]
        events.record(root, assignment, sid, events.INTAKE, files=info["files"], renamed=bool(renamed))
    for p in plan.problems:
        if p.get("student"):
            events.record(root, assignment, p["student"], events.INTAKE_PROBLEM, problem=p["kind"], detail=p["detail"],
                          files=p["files"])
    if log:
        for p in plan.problems:
            log.warning("coursekit intake [%s] %s: %s", p["kind"], printable(p["who"] or "?"), printable(p["detail"]))
        log.info("coursekit intake: %d students collected, %d problems (see %s)",
                 len(plan.students), len(plan.problems), folder / "problems.txt")
    return folder


def read_report(root: Path, assignment: str) -> dict:
    path = report_dir(root, assignment) / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
