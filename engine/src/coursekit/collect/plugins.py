"""nbgrader ``zip_collect`` plugins for Moodle exports (plugged in by :mod:`coursekit.nbconfig`)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Bool, Float, Integer, Unicode

from coursekit import archives
from coursekit.collect.plan import Plan, plan_intake
from coursekit.collect.record import keep_originals, report_dir, write_report
from coursekit.collect.roster import Roster
from coursekit.context import CourseContext
from coursekit.gradebook import fill_students

class MoodleExtractor(ExtractorPlugin):
    """Safe unpacking of the archive folder (see :mod:`coursekit.archives`), then name repairs in the
    extracted working copy (never in the archive).

    Replaces nbgrader's extraction (same layout: ``X.zip`` unpacked into a folder ``X`` beside it, zips
    inside zips too) because nbgrader's has no size, ratio, entry or depth limit and stops the whole
    class on one bad entry.  What was refused goes to ``.coursekit/intake/<assignment>/archives.json``,
    which the collector turns into each student's problem.
    """

    max_total_mb = Integer(4096, help="most MB unpacked from one intake, nested zips included").tag(config=True)
    max_archive_mb = Integer(256, help="most MB unpacked from one zip a student uploaded").tag(config=True)
    max_entries = Integer(20000, help="most entries in one intake, nested zips included").tag(config=True)
    max_ratio = Float(200.0, help="highest compression ratio of one entry over 1 MB").tag(config=True)
    max_depth = Integer(16, help="most path components of one entry's name").tag(config=True)
    max_nesting = Integer(3, help="most levels of zips inside zips (Moodle's export counts as 1)").tag(config=True)

    def limits(self) -> archives.Limits:
        return archives.Limits(total_bytes=self.max_total_mb * archives.MB,
                               archive_bytes=self.max_archive_mb * archives.MB, entries=self.max_entries,
                               ratio=self.max_ratio, depth=self.max_depth, nesting=self.max_nesting)

    def extract(self, archive_path: str, extracted_path: str) -> None:
        budget = archives.Budget(self.limits())
        refused: list[dict] = []
        if not os.listdir(archive_path):
            self.log.warning("No files found in directory: %s", archive_path)
        for folder, _, files in os.walk(archive_path):
            extract_to = Path(extracted_path) / os.path.relpath(folder, archive_path)
            extract_to.mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                src = Path(folder) / name
                rel = str(src.relative_to(archive_path))
                if archives.is_zip_name(name):
                    self.log.info("Extracting from: %s", src)
                    try:
                        bad = archives.extract(src, extract_to / name[:-4], budget, strict=False)
                    except archives.ArchiveError as exc:
                        self.log.error("coursekit intake: archive %s refused: %s", rel, exc)
                        refused.append({"archive": rel, "reason": str(exc), "outer": True})
                        continue
                    for entry, why in bad:
                        self.log.warning("coursekit intake: %s: entry %r not extracted: it has %s", rel, entry, why)
                        refused.append({"archive": rel, "entry": entry, "reason": f"entry has {why}", "outer": True})
                else:
                    shutil.copy(src, extract_to / name)
        for item in archives.extract_nested(Path(extracted_path), budget):
            self.log.warning("coursekit intake: %s not extracted: %s", item["archive"], item["reason"])
            refused.append(item)
        for folder, dirs, files in os.walk(extracted_path, topdown=False):
            for name in files + dirs:
                new = _repair_name(name)
                if new != name and not os.path.exists(os.path.join(folder, new)):
                    os.rename(os.path.join(folder, name), os.path.join(folder, new))
                    self.log.info("Renamed %s -> %s in the extracted copy", name, new)
                    for item in refused:
                        if item["archive"].endswith(name) and not item.get("outer"):
                            item["archive"] = item["archive"][:-len(name)] + new
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is not None:
            folder = report_dir(Path(coursedir.root), coursedir.assignment_id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "archives.json").write_text(json.dumps(refused, indent=1, ensure_ascii=False))


def _repair_name(name: str) -> str:
    try:  # zips made without the UTF-8 flag: Python decoded them as cp437
        fixed = name.encode("cp437").decode("utf-8")
        if fixed != name:
            name = fixed
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    m = re.match(r"^(.*)\.ipynb(\.txt|\.json)?$", name, re.IGNORECASE)
    if m and (m.group(2) or not name.endswith(".ipynb")):
        name = m.group(1) + ".ipynb"
    return name


class MoodleCollector(FileNameCollectorPlugin):
    """zip_collect collector for Moodle exports (see the module doc)."""

    roster = Unicode(
        "", help="roster CSV (student_id plus full_name / email / id_number / participant_id); "
                 "default: <course>/roster.csv when it exists"
    ).tag(config=True)

    loose_folders = Bool(
        False, help="also accept a folder of per-student folders <student>/<files> (not Moodle names)"
    ).tag(config=True)

    _plan: Plan | None = None

    # where things are, asked of the ZipCollectApp that owns this plugin
    def _course_root(self) -> Path:
        return CourseContext.of(self).root

    def _assignment(self) -> str:
        coursedir = getattr(self.parent, "coursedir", None)
        return coursedir.assignment_id if coursedir is not None else "unknown"

    def _collect_path(self, step: str, fallback: Path) -> Path:
        fmt = getattr(self.parent, "_format_collect_path", None)
        return Path(fmt(getattr(self.parent, step))) if fmt else fallback

    def _release(self, assignment: str | None = None) -> dict[str, Path]:
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is None:
            return {}
        folder = Path(coursedir.format_path(coursedir.release_directory, ".", assignment or coursedir.assignment_id))
        return {p.stem: p for p in sorted(folder.glob("*.ipynb"))}

    def _other_releases(self) -> dict[str, dict[str, Path]]:
        """The release notebooks of every other assignment of the course (to recognise their notebooks)."""
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is None:
            return {}
        folder = Path(coursedir.format_path(coursedir.release_directory, ".", coursedir.assignment_id)).parent
        others = {p.name: self._release(p.name) for p in sorted(folder.iterdir())
                  if p.is_dir() and p.name != coursedir.assignment_id} if folder.is_dir() else {}
        return {name: nbs for name, nbs in others.items() if nbs}

    def collect(self, submitted_file: str):
        if self.named_regexp:  # the instructor configured nbgrader's own file-name matching
            return super().collect(submitted_file)
        if self._plan is None:
            self._plan = self._make_plan(Path(submitted_file))
        return self._plan.collect.get(os.path.normpath(str(submitted_file)))

    def _make_plan(self, first_file: Path) -> Plan:
        root = self._course_root()
        assignment = self._assignment()
        extracted = self._collect_path("extracted_directory", first_file.parent)
        archive = self._collect_path("archive_directory", extracted)
        roster_path = Path(self.roster) if self.roster else root / "roster.csv"
        if not roster_path.is_absolute():
            roster_path = root / roster_path
        roster = Roster.load(roster_path if (self.roster or roster_path.is_file()) else None)
        release = self._release()
        if not release:
            self.log.warning("No release notebook for %s: notebooks can only be matched by exact name", assignment)
        refused_path = report_dir(root, assignment) / "archives.json"
        refused = json.loads(refused_path.read_text(encoding="utf-8")) if refused_path.is_file() else []
        plan = plan_intake(extracted, release, roster, self.loose_folders, assignment=assignment,
                           others=self._other_releases(), refused=refused)
        keep_originals(archive, root / ".coursekit" / "originals" / assignment, self.log)
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is not None and plan.students:
            try:
                fill_students(coursedir.db_url, plan.students)
            except Exception as exc:  # noqa: BLE001 - names are a convenience: collection goes on
                self.log.warning("coursekit intake: students' names not written to the gradebook: %s", exc)
        write_report(root, assignment, plan, extracted, self.log)
        return plan
