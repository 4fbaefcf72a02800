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
  file that is the assignment's notebook (renamed copies such as ``Copy of X``,
  ``Còpia de X``, ``X (1)``, case and spacing changes, a notebook inside the
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

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Bool, Float, Integer, Unicode

from coursekit import archives, events
from coursekit.paths import Course, CourseError

MOODLE_RE = re.compile(r"^(?P<name>.+?)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z0-9]+)_(?P<rest>.*)$", re.DOTALL)
JUNK_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
# What students and their tools add to a notebook's name.
COPY_PREFIX = re.compile(r"^(copy of|copia de|còpia de|copie de|kopie von|copia di)\s+", re.IGNORECASE)
COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*(copy|copia|còpia)(\s*\d+)?|[\s_-]+(copy|copia|còpia)\d*)$", re.IGNORECASE)


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: how two spellings of a name are compared."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().split())


def printable(text) -> str:
    """A student-controlled string for the console and text reports: control characters (terminal
    escape sequences, carriage returns that overwrite a line) shown as escapes, never interpreted."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def sanitise_id(text: str) -> str:
    """A student id nbgrader accepts everywhere (folder names, URLs): ascii, lower case, underscores."""
    out = re.sub(r"[^a-z0-9]+", "_", fold(text)).strip("_")
    return out or "student"


def notebook_key(filename: str) -> str:
    """A notebook's name with copy markers, numbering, case, accents and spacing removed."""
    stem = filename[:-len(".ipynb")] if filename.lower().endswith(".ipynb") else os.path.splitext(filename)[0]
    stem = stem.strip()
    for _ in range(3):
        stem = COPY_SUFFIX.sub("", COPY_PREFIX.sub("", stem)).strip()
    return re.sub(r"[^a-z0-9]", "", fold(stem))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- roster

ROSTER_COLUMNS = {
    "student_id": ("student_id", "student", "nbgrader_id", "id"),
    "full_name": ("full_name", "full name", "fullname", "name", "nom complet", "nom"),
    "first_name": ("first_name", "first name", "firstname", "nom de pila"),
    "last_name": ("last_name", "last name", "surname", "lastname", "cognoms"),
    "email": ("email", "email address", "e-mail", "adreça electrònica", "correu"),
    "id_number": ("id_number", "id number", "idnumber", "número d'identificació", "niub", "dni"),
    "username": ("username", "user name", "nom d'usuari"),
    "participant_id": ("participant_id", "participant", "identifier", "identificador"),
}


@dataclass
class Roster:
    """Students of the course, looked up by any identifier Moodle shows."""
    rows: list[dict] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> "Roster":
        if not path:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise CourseError(f"roster {path} not found: give the path of a CSV with a student_id column "
                              "(see `coursekit collect --help`), or none")
        with path.open(newline="", encoding="utf-8-sig") as f:
            sample = f.read(4096)
            f.seek(0)
            try:  # Moodle and spreadsheets write ',' or ';' (or tabs)
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.DictReader(f, dialect=dialect)
            header = {fold(h or ""): h for h in reader.fieldnames or []}
            columns = {}
            for key, names in ROSTER_COLUMNS.items():
                for name in names:
                    if name in header:
                        columns[key] = header[name]
                        break
            if "student_id" not in columns and not {"username", "id_number", "email"} & set(columns):
                raise CourseError(f"roster {path}: no student_id column (nor username / id_number / email "
                                  f"to derive it from); columns found: {', '.join(reader.fieldnames or [])}")
            rows = []
            for raw in reader:
                row = {key: (raw.get(col) or "").strip() for key, col in columns.items()}
                if not row.get("full_name") and (row.get("first_name") or row.get("last_name")):
                    row["full_name"] = f"{row.get('first_name', '')} {row.get('last_name', '')}".strip()
                if row.get("participant_id"):
                    row["participant_id"] = re.sub(r"\D", "", row["participant_id"])
                if not row.get("student_id"):
                    base = row.get("username") or row.get("id_number") or row.get("email", "").split("@")[0]
                    row["student_id"] = sanitise_id(base)
                if row["student_id"]:
                    rows.append(row)
        return cls(rows, path)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def by_name(self, full_name: str) -> list[dict]:
        key = fold(full_name)
        return [r for r in self.rows if r.get("full_name") and fold(r["full_name"]) == key]

    def find(self, name: str = "", pid: str = "", key: str = "") -> dict | None:
        """The roster row of a submission: by full name, else participant id, else any identifier."""
        if name:
            hits = self.by_name(name)
            if len(hits) == 1:
                return hits[0]
        if pid:
            hits = [r for r in self.rows if r.get("participant_id") == pid]
            if len(hits) == 1:
                return hits[0]
        if key:
            k = fold(key)
            for column in ("student_id", "email", "id_number", "username", "full_name"):
                hits = [r for r in self.rows if r.get(column) and fold(r[column]) == k]
                if len(hits) == 1:
                    return hits[0]
        return None


# ---------------------------------------------------------------- planning (pure: paths in, decisions out)

@dataclass
class Submission:
    """Everything one student handed in, as found in the export."""
    key: str                      # Moodle prefix "Name_pid" or the loose folder name
    full_name: str = ""
    participant_id: str = ""
    files: list[Path] = field(default_factory=list)


@dataclass
class Plan:
    collect: dict[str, dict] = field(default_factory=dict)      # extracted file -> {student_id, file_id}
    students: dict[str, dict] = field(default_factory=dict)     # student id -> what was collected, identity
    problems: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _walk(root: Path):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in JUNK_DIRS)
        for name in sorted(files):
            if name in JUNK_FILES or name.startswith("._"):
                continue
            yield Path(folder) / name


def group_submissions(root: Path, loose_folders: bool = False) -> tuple[dict[str, Submission], list[Path]]:
    """Files under ``root`` grouped per student (Moodle names, or loose ``<student>/`` folders)."""
    groups: dict[str, Submission] = {}
    orphans: list[Path] = []
    for path in _walk(root):
        parts = path.relative_to(root).parts
        for part in parts:
            m = MOODLE_RE.match(part)
            if m:
                name = m.group("name").strip()
                key = f"{name}_{m.group('pid')}"
                sub = groups.setdefault(key, Submission(key, name, m.group("pid")))
                sub.files.append(path)
                break
        else:
            # loose layout: <container>/<student>/.../file (the container is the copied folder or zip)
            if loose_folders and len(parts) >= 3:
                key = parts[1]
                groups.setdefault(key, Submission(key)).files.append(path)
            else:
                orphans.append(path)
    return groups, orphans


def _original_name(path: Path) -> str:
    """The file's name as the student gave it (without Moodle's prefix in flat exports)."""
    m = MOODLE_RE.match(path.name)
    return m.group("rest") if m else path.name


def _load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _content_matches(path: Path, release_nb: dict) -> bool:
    """Without the other assignments to compare with: grade_ids or most of the markdown text in common."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb.get("cells", [])
    except (OSError, ValueError, AttributeError):
        return False
    ids = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in release_nb.get("cells", [])} - {None}
    theirs = {(c.get("metadata") or {}).get("nbgrader", {}).get("grade_id") for c in cells if isinstance(c, dict)}
    if ids & theirs:
        return True
    wanted = {_cell_text(c) for c in release_nb.get("cells", []) if c.get("cell_type") == "markdown" and _cell_text(c)}
    got = {_cell_text(c) for c in cells if isinstance(c, dict)}
    return bool(wanted) and len(wanted & got) >= max(1, len(wanted) // 2)


def _cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return ("".join(source) if isinstance(source, list) else source if isinstance(source, str) else "").strip()


def _marks(nb: dict) -> set[str]:
    """What identifies a notebook: its grade_ids and the text of its cells (long enough to mean something)."""
    out = set()
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if not isinstance(cell, dict):
            continue
        grade_id = ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
        if isinstance(grade_id, str):
            out.add("id:" + grade_id)
        text = _cell_text(cell)
        if len(text) >= 20:
            out.add("text:" + text)
    return out


def fingerprints(releases: dict[str, list[dict]]) -> dict[str, set[str]]:
    """Per assignment, the marks found in its release notebooks and in no other assignment's.

    The helper cells shared by every notebook of the course (same grade_ids, same code) are in
    several assignments, so they say nothing about which assignment a notebook is."""
    marks = {a: set().union(*(_marks(nb) for nb in nbs)) if nbs else set() for a, nbs in releases.items()}
    return {a: m - set().union(*(o for b, o in marks.items() if b != a)) for a, m in marks.items()}


def identify(path: Path, prints: dict[str, set[str]]) -> dict[str, int]:
    """How many of each assignment's own marks a notebook file carries (only assignments with some)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    theirs = _marks(nb)
    return {a: n for a, m in prints.items() if (n := len(m & theirs))}


def owner(path: Path, assignment: str, prints: dict[str, set[str]]) -> str | None:
    """The assignment a notebook's content belongs to: this one if it carries any of its own marks,
    else the other assignment whose marks it carries most, else None (blank, unrelated)."""
    found = identify(path, prints)
    if not found:
        return None
    best = max(found.values())
    return assignment if found.get(assignment, 0) >= best else max(found, key=found.get)


def _group_of(rel: str, groups: dict[str, Submission]) -> Submission | None:
    """The student whose Moodle folder or file name a path (relative to extracted/) is under."""
    for part in Path(rel).parts:
        m = MOODLE_RE.match(part)
        if m:
            return groups.get(f"{m.group('name').strip()}_{m.group('pid')}")
    return None


def plan_intake(root: Path, release: dict[str, Path], roster: Roster | None = None,
                loose_folders: bool = False, assignment: str = "",
                others: dict[str, dict[str, Path]] | None = None, refused: list[dict] | None = None) -> Plan:
    """Decide, for every file under ``root`` (nbgrader's ``extracted/``), whether and where it is collected.

    ``release`` maps notebook names (``batchnorm1d``) to the release notebooks of ``assignment``;
    ``others`` gives the other assignments' release notebooks the same way, so that a notebook of
    another assignment (under its own name or renamed to this one's) is recognised and not
    collected; ``refused`` lists the archives and entries the extractor would not unpack.
    """
    from coursekit.repair import check_readable

    roster = roster or Roster()
    plan = Plan()
    groups, orphans = group_submissions(root, loose_folders)
    # archives (or entries) the extractor refused: the problem of the student they belong to
    refused_by: dict[str, list[dict]] = {}
    for item in refused or []:
        where = item["archive"] if not item.get("outer") else item.get("entry", "")
        sub = _group_of(where, groups) if where else None
        if sub is None and item.get("outer") and item.get("entry"):
            m = next((MOODLE_RE.match(part) for part in Path(item["entry"]).parts if MOODLE_RE.match(part)), None)
            if m:  # the student's only file was refused: nothing of them was extracted
                sub = groups.setdefault(f"{m.group('name').strip()}_{m.group('pid')}",
                                        Submission(f"{m.group('name').strip()}_{m.group('pid')}",
                                                   m.group("name").strip(), m.group("pid")))
        if sub is None:
            plan.problems.append({"kind": "bad_archive", "who": "", "files": [item["archive"]],
                                  "detail": item["reason"] + "; nothing of it was collected"})
        else:
            refused_by.setdefault(sub.key, []).append(item)
    prints = {}
    if others:
        loaded = {name: [_load_json(p) for p in nbs.values()] for name, nbs in others.items()}
        loaded[assignment] = [_load_json(p) for p in release.values()]
        prints = fingerprints(loaded)
    for path in orphans:
        if path.suffix.lower() == ".ipynb":
            plan.problems.append({"kind": "unmatched", "who": "", "files": [str(path.relative_to(root))],
                                  "detail": "cannot tell whose file this is (not named as Moodle names files)"})
        else:
            plan.ignored.append(str(path.relative_to(root)))
    release_json = {}
    for stem, path in release.items():
        try:
            release_json[stem] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            release_json[stem] = {}
    keys = {notebook_key(stem): stem for stem in release}

    # student ids first, so that two people with the same name never share a folder
    ids: dict[str, tuple[str, dict | None]] = {}
    for gkey, sub in groups.items():
        row = roster.find(sub.full_name, sub.participant_id, "" if sub.full_name else sub.key) if roster else None
        sid = row["student_id"] if row else sanitise_id(sub.full_name or sub.key)
        ids[gkey] = (sid, row)
    taken: dict[str, list[str]] = {}
    for gkey, (sid, row) in ids.items():
        taken.setdefault(sid, []).append(gkey)
    for sid, gkeys in taken.items():
        if len(gkeys) > 1:
            for gkey in gkeys:
                sub = groups[gkey]
                if ids[gkey][1] is None:
                    ids[gkey] = (f"{sid}_{sub.participant_id or sanitise_id(gkey)}", None)

    for gkey, sub in sorted(groups.items()):
        sid, row = ids[gkey]
        who = sub.full_name or sub.key
        rel = lambda p: str(p.relative_to(root))
        if roster and row is None:
            plan.problems.append({"kind": "not_in_roster", "who": who, "student": sid, "files": [rel(p) for p in sub.files],
                                  "detail": f"not found in the roster {roster.path}; collected as {sid!r}"})
        for item in refused_by.get(gkey, []):
            plan.problems.append({"kind": "bad_archive", "who": who, "student": sid,
                                  "files": [item.get("entry") or item["archive"]],
                                  "detail": f"{item['reason']}; not extracted, the rest of the class is collected"})
        notebooks = [p for p in sub.files if p.name.lower().endswith(".ipynb")]
        non_notebooks = [p for p in sub.files if p not in notebooks]
        plan.ignored += [rel(p) for p in non_notebooks]
        if not notebooks and gkey in refused_by:
            continue  # the refused archive is the whole story
        if not notebooks:
            plan.problems.append({"kind": "no_notebook", "who": who, "student": sid, "files": [rel(p) for p in sub.files],
                                  "detail": "handed in no notebook: " + (", ".join(_original_name(p) for p in sub.files) or "nothing")})
            continue
        by_stem: dict[str, list[tuple[Path, str]]] = {stem: [] for stem in release}
        unnamed = []
        for p in notebooks:
            k = notebook_key(_original_name(p))
            stem = keys.get(k) or next((s for kk, s in keys.items() if kk and kk in k), None)
            if stem:
                how = "exact" if _original_name(p) == f"{stem}.ipynb" else "renamed"
                by_stem[stem].append((p, how))
            else:
                unnamed.append(p)
        # a notebook whose content is another assignment's is not this one's, whatever its name
        foreign = []
        if prints:
            for stem, found in by_stem.items():
                for p, how in list(found):
                    belongs = owner(p, assignment, prints)
                    if belongs not in (None, assignment):
                        found.remove((p, how))
                        foreign.append((p, belongs))
            for p in list(unnamed):
                belongs = owner(p, assignment, prints)
                if belongs == assignment and len(release) == 1 and not next(iter(by_stem.values())):
                    by_stem[next(iter(release))].append((p, "content"))
                    unnamed.remove(p)
                elif belongs is not None and belongs != assignment:
                    unnamed.remove(p)
                    foreign.append((p, belongs))
        else:
            for p in list(unnamed):
                hits = [s for s in release if _content_matches(p, release_json[s])]
                if len(hits) == 1 and not by_stem[hits[0]]:
                    by_stem[hits[0]].append((p, "content"))
                    unnamed.remove(p)
        for p, belongs in foreign:
            plan.problems.append({"kind": "other_assignment", "who": who, "student": sid, "files": [rel(p)],
                                  "detail": f"notebook of {belongs} (handed in as {_original_name(p)}); "
                                            f"not collected for {assignment or 'this assignment'}"})
        for p in unnamed:
            plan.problems.append({"kind": "wrong_file", "who": who, "student": sid, "files": [rel(p)],
                                  "detail": f"{_original_name(p)} is not a notebook of this assignment "
                                            f"(expected {', '.join(s + '.ipynb' for s in release)})"})
        info = plan.students.setdefault(sid, {"full_name": sub.full_name or (row or {}).get("full_name", ""), "participant_id": sub.participant_id,
                                              "moodle_folder": sub.key, "files": [],
                                              **({k: row.get(k, "") for k in ("email", "id_number", "username",
                                                                              "first_name", "last_name")}
                                                 if row else {})})
        for stem, found in by_stem.items():
            if not found:
                if (len(release) > 1 or not unnamed) and not foreign:
                    plan.problems.append({"kind": "missing_notebook", "who": who, "student": sid, "files": [],
                                          "detail": f"no {stem}.ipynb among the files handed in"})
                continue
            digests = {sha256(p) for p, _ in found}
            if len(found) > 1 and len(digests) > 1:
                plan.problems.append({"kind": "ambiguous", "who": who, "student": sid, "files": [rel(p) for p, _ in found],
                                      "detail": f"{len(found)} different candidates for {stem}.ipynb: "
                                                + ", ".join(_original_name(p) for p, _ in found)
                                                + "; none collected, keep only the right one and collect again"})
                continue
            p, how = found[0]
            if any((a.parent / f"{a.name}.zip").is_file() for a in p.parents if root in a.parents):
                how += "+zip"  # nbgrader unpacked the student's own zip next to it
            plan.collect[os.path.normpath(str(p))] = {"student_id": sid, "file_id": f"{stem}.ipynb"}
            entry = {"notebook": f"{stem}.ipynb", "source": rel(p), "handed_in_as": _original_name(p), "how": how,
                     "sha256": sha256(p)}
            problem = check_readable(p)
            if problem:
                entry["unreadable"] = True
                plan.problems.append({"kind": "not_a_notebook", "who": who, "student": sid, "files": [rel(p)],
                                      "detail": f"{_original_name(p)} collected but it is not a readable notebook; "
                                                "autograde will report it and grade the others"})
            info["files"].append(entry)
        if not info["files"]:
            del plan.students[sid]
    return plan


# ---------------------------------------------------------------- nbgrader plugins

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
        coursedir = getattr(self.parent, "coursedir", None)
        return Path(coursedir.root) if coursedir is not None else Path.cwd()

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


def split_name(full_name: str) -> tuple[str, str]:
    """(first, last) of a Moodle full name ("First Last Last"): Moodle shows first names first."""
    parts = full_name.split()
    return (parts[0], " ".join(parts[1:])) if parts else ("", "")


def fill_students(db_url: str, students: dict[str, dict]) -> None:
    """Write who each collected student is into nbgrader's student table (formgrader's students
    page, ``nbgrader export``): first and last name, email, and the Moodle identity (ID number,
    else username, as nbgrader's ``lms_user_id``).  Known values are never replaced by empty ones."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        for sid, info in students.items():
            first, last = info.get("first_name", ""), info.get("last_name", "")
            if not (first or last):
                first, last = split_name(info.get("full_name", ""))
            fields = {"first_name": first, "last_name": last, "email": info.get("email", ""),
                      "lms_user_id": info.get("id_number") or info.get("username", "")}
            try:
                known = gb.find_student(sid)
                fields = {k: v or getattr(known, k) for k, v in fields.items()}
            except MissingEntry:
                pass
            gb.update_or_create_student(sid, **{k: v or None for k, v in fields.items()})


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
        events.record(root, assignment, sid, "intake", files=info["files"], renamed=bool(renamed))
    for p in plan.problems:
        if p.get("student"):
            events.record(root, assignment, p["student"], "intake_problem", problem=p["kind"], detail=p["detail"],
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


# ---------------------------------------------------------------- coursekit collect

def add_arguments(parser) -> None:
    parser.add_argument("assignment", help="assignment id, e.g. a1_batchnorm1d")
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


def _env() -> dict:
    env = dict(os.environ)
    # nbgrader runs `alembic` from PATH: make the running interpreter's bin (the venv) visible
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


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
    cmd = [sys.executable, "-m", "nbgrader", "zip_collect", args.assignment,
           "--ZipCollectApp.collector_plugin=coursekit.intake.MoodleCollector",
           "--ZipCollectApp.extractor_plugin=coursekit.intake.MoodleExtractor"]
    if source.is_dir():
        cmd.append("--MoodleCollector.loose_folders=True")
    if roster is not None:
        cmd.append(f"--MoodleCollector.roster={roster}")
    if args.force:
        cmd.append("--force")
    proc = subprocess.run(cmd, cwd=course.root, capture_output=True, text=True, env=_env())
    report = read_report(course.root, args.assignment)
    folder = report_dir(course.root, args.assignment)
    log = folder / "zip_collect.log"
    folder.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        if source.name not in staged_before:  # a copy made by this run: do not let it block the next one
            target = archive / source.name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        last = next((line for line in reversed((proc.stdout + proc.stderr).splitlines()) if line.strip()), "")
        raise CourseError(f"nbgrader zip_collect {args.assignment} failed (exit {proc.returncode}): {last.strip()[:300]} "
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
