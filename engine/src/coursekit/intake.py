"""Intake: from Moodle's "download all submissions" export to ``submitted/<student>/<assignment>/``.

Owns two nbgrader ``zip_collect`` plugins (plugged in by :mod:`coursekit.nbconfig`)
and the ``coursekit collect`` command:

* :class:`MoodleExtractor` replaces nbgrader's extraction with a checked one
  (:mod:`coursekit.archives`: size, ratio, entry count, depth and nesting
  limits; a bad entry or a bad student zip is that student's problem, recorded
  in ``archives.json``), same layout in ``extracted/``, then repairs names in
  that working copy only (``X.IPYNB``, ``X.ipynb.txt``, zip names mangled as
  cp437).
* :class:`MoodleCollector` is the collector.  Moodle names every file
  ``<Full Name>_<participant id>_assignsubmission_<plugin>_<file>`` (flat) or
  puts it in a folder named ``<Full Name>_<participant id>_assignsubmission_<plugin>_``.
  The collector looks at the whole export at once, picks for each student the
  file that is the assignment's notebook (renamed copies such as ``Copy of X``
  in Colab's languages, ``X (1)``, case and spacing changes, a notebook inside the
  student's own zip, or any single notebook whose content is this
  assignment's; a notebook whose content is another assignment's, judged by the
  cells unique to each assignment, is reported, never collected), maps the student to the nbgrader id through the roster CSV
  (trait ``roster``) or a sanitised form of the Moodle name, and lists what it
  could not match (no notebook, wrong file, two different candidates) without
  stopping; it writes each collected student's name, email and ID number into
  nbgrader's student table.  When nbgrader's own ``FileNameCollectorPlugin.named_regexp`` is
  configured, it behaves exactly as nbgrader's collector.

Nothing here modifies or deletes a student's file: nbgrader reads the archive
and copies; the collector also keeps a content-addressed copy of every archive
file under ``.coursekit/originals/<assignment>/`` with a SHA-256 manifest.  The
report of each run is ``.coursekit/intake/<assignment>/report.json`` (and
``problems.txt``); each student gets an ``intake`` or ``intake_problem`` event.

The parts live in :mod:`coursekit.collect` (names, roster, identify, plan,
plugins, record); this module keeps the command and the names it always had.

Roster CSV: a header row; ``student_id`` (the nbgrader id) plus any of
``full_name`` (or ``first_name``/``last_name``), ``email``, ``id_number``,
``username``, ``participant_id``.  Moodle's exported column names ("First
name", "Surname", "Email address", "ID number", "Identifier") are accepted.
Students are matched by full name (accents and case ignored), then by the
participant id in the folder name (Moodle's participant ids are per
assignment: use them for blind marking, with a roster made for that
assignment), then by email or id number in a loose folder's name.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from coursekit import archives
# the parts, under the names this module always had (nbgrader_config.py and other modules use them)
from coursekit.collect.identify import fingerprints, identify, owner  # noqa: F401
from coursekit.collect.names import (COPY_PREFIX, COPY_SUFFIX, JUNK_DIRS, JUNK_FILES, MOODLE_RE,  # noqa: F401
                                     fold, notebook_key, printable, sanitise_id, sha256)
from coursekit.collect.plan import Plan, Submission, group_submissions, plan_intake  # noqa: F401
from coursekit.collect.plugins import MoodleCollector, MoodleExtractor  # noqa: F401
from coursekit.collect.record import keep_originals, read_report, report_dir, write_report  # noqa: F401
from coursekit.collect.roster import ROSTER_COLUMNS, Roster  # noqa: F401
from coursekit.gradebook import fill_students, split_name  # noqa: F401
from coursekit.nbrun import last_line, nbgrader
from coursekit.paths import Course, CourseError


# ---------------------------------------------------------------- coursekit collect

def add_arguments(parser) -> None:
    parser.add_argument("assignment", help="assignment id (a folder of source/)")
    parser.add_argument("source", help="Moodle's 'download all submissions' zip, or a folder of files")
    parser.add_argument("--roster", help="roster CSV (default: <course>/roster.csv if it exists)")
    parser.add_argument("--force", action="store_true",
                        help="collect again: replace earlier collected copies in submitted/ (originals are kept)")


def stage(course: Course, assignment: str, source: Path, force: bool) -> Path:
    """Put ``source`` where ``nbgrader zip_collect`` looks (downloaded/<a>/archive/), without touching it."""
    archive = course.root / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / source.name
    present = [p for p in archive.iterdir()]
    same = target.exists() and (
        (source.is_file() and target.is_file() and sha256(source) == sha256(target)) or
        (source.is_dir() and target.is_dir() and _tree_digest(source) == _tree_digest(target)))
    others = [p for p in present if p != target]
    if others or (target.exists() and not same):
        if not force:
            raise CourseError(f"{archive} already holds {', '.join(p.name for p in present)}; "
                              "pass --force to set them aside (they are moved, not deleted) and collect this one")
        aside = archive.parent / f"archive-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for p in present:
            shutil.move(str(p), aside / p.name)
        print(f"earlier archive files moved to {aside}")
        same = False
    if not same:
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return archive


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(sha256(path).encode())
    return h.hexdigest()


def check_source(source: Path) -> None:
    """Refuse, before anything is staged, what cannot be a class's submissions (one line, naming it)."""
    if not source.exists():
        raise CourseError(f"{source} does not exist: give Moodle's 'download all submissions' zip or a folder")
    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise CourseError(f"{source} is not a .zip: give Moodle's 'download all submissions' zip or a folder")
        try:
            good, bad = archives.inspect(source, archives.Budget(), strict=False)
        except archives.ArchiveError as exc:
            raise CourseError(f"{source} refused, nothing staged: {exc}") from None
        if bad and not good:  # a bad entry among good ones is one student's problem; all bad is no export
            raise CourseError(f"{source} refused, nothing staged: every entry is refused, e.g. "
                              f"{bad[0][0]!r} has {bad[0][1]}")


def run(args) -> int:
    course = Course.at(args.course)
    source = Path(args.source).expanduser().resolve()
    course.source_notebooks(args.assignment)  # a clear error for an unknown assignment
    check_source(source)
    roster = Path(args.roster).expanduser().resolve() if args.roster else None
    if roster is not None:
        Roster.load(roster)  # a missing or unusable roster: one line now, not a failed zip_collect later
    if not (course.release / args.assignment).is_dir():
        raise CourseError(f"no release/{args.assignment}/ to recognise its notebooks by: run "
                          f"`coursekit release` first")
    staged_before = {p.name for p in (course.root / "downloaded" / args.assignment / "archive").glob("*")}
    archive = stage(course, args.assignment, source, args.force)
    # extracted/ is nbgrader's scratch copy of the archive: rebuilt on every run
    shutil.rmtree(archive.parent / "extracted", ignore_errors=True)
    (report_dir(course.root, args.assignment) / "report.json").unlink(missing_ok=True)
    cmd = ["zip_collect", args.assignment,
           "--ZipCollectApp.collector_plugin=coursekit.intake.MoodleCollector",
           "--ZipCollectApp.extractor_plugin=coursekit.intake.MoodleExtractor"]
    if source.is_dir():
        cmd.append("--MoodleCollector.loose_folders=True")
    if roster is not None:
        cmd.append(f"--MoodleCollector.roster={roster}")
    if args.force:
        cmd.append("--force")
    proc = nbgrader(course.root, *cmd)  # nbgrader's own zip_collect with our plugins (see coursekit.nbrun)
    report = read_report(course.root, args.assignment)
    folder = report_dir(course.root, args.assignment)
    log = folder / "zip_collect.log"
    folder.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        if source.name not in staged_before:  # a copy made by this run: do not let it block the next one
            target = archive / source.name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        raise CourseError(f"nbgrader zip_collect {args.assignment} failed (exit {proc.returncode}): {last_line(proc)} "
                          f"(full log: {log})" + ("" if args.force else "; to collect again, pass --force"))
    students = report.get("students", {})
    problems = report.get("problems", [])
    if problems:
        print(f"{len(problems)} problems (also in {folder / 'problems.txt'}):")
        for p in problems:
            print(f"  [{p['kind']}] {printable(p['who'] or '?')}: {printable(p['detail'])}")
            for name in p["files"]:
                print(f"      {printable(name)}")
    if not students:
        print(f"coursekit collect: no notebook of {args.assignment} collected from {source.name}"
              + (f" ({len(problems)} problems above)" if problems else
                 ": it holds no Moodle submission folders or files (is it the 'Download all submissions' zip "
                 "of this assignment?)"), file=sys.stderr)
        return 1
    print(f"collected {len(students)} students into {course.submitted}/<student>/{args.assignment}/")
    return 0
