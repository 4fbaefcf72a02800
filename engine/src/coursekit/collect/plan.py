"""Intake's decision (pure: paths in, decisions out): for every file nbgrader extracted from the
Moodle export, whether it is collected, as which student's which notebook, and what is a problem.

Moodle names every file ``<Full Name>_<participant id>_assignsubmission_<plugin>_<file>`` (flat)
or puts it in a folder named that way.  Per student, the file that is the assignment's notebook
is picked (renamed copies, a notebook inside the student's own zip, or any single notebook whose
content is this assignment's); a notebook whose content is another assignment's is reported,
never collected.  Student ids come from the roster, else from the Moodle name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from coursekit.collect.identify import _content_matches, _load_json, fingerprints, owner
from coursekit.collect.names import JUNK_DIRS, JUNK_FILES, MOODLE_RE, notebook_key, sanitise_id, sha256
from coursekit.collect.roster import Roster


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

    ``release`` maps notebook names (without ``.ipynb``) to the release notebooks of ``assignment``;
    ``others`` gives the other assignments' release notebooks the same way, so that a notebook of
    another assignment (under its own name or renamed to this one's) is recognised and not
    collected; ``refused`` lists the archives and entries the extractor would not unpack.
    """
    roster = roster or Roster()
    plan = Plan()
    groups, orphans = group_submissions(root, loose_folders)
    refused_by = _refused_per_student(refused or [], groups, plan)
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
    ctx = _Context(root, release, assignment, prints, roster, plan)
    ids = _student_ids(groups, roster)
    for gkey, sub in sorted(groups.items()):
        sid, row = ids[gkey]
        _plan_student(ctx, sub, sid, row, refused_by.get(gkey, []))
    return plan


@dataclass
class _Context:
    """What every student's decision needs: the export, this assignment's release, the others' marks."""
    root: Path
    release: dict[str, Path]
    assignment: str
    prints: dict[str, set[str]]
    roster: Roster
    plan: Plan

    def __post_init__(self):
        self.keys = {notebook_key(stem): stem for stem in self.release}
        self.release_json = {}
        for stem, path in self.release.items():
            try:
                self.release_json[stem] = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.release_json[stem] = {}

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def _refused_per_student(refused: list[dict], groups: dict[str, Submission], plan: Plan) -> dict[str, list[dict]]:
    """Archives (or entries) the extractor refused, as the problem of the student they belong to;
    one that belongs to nobody is a problem of its own."""
    refused_by: dict[str, list[dict]] = {}
    for item in refused:
        where = item["archive"] if not item.get("outer") else item.get("entry", "")
        sub = _group_of(where, groups) if where else None
        if sub is None and item.get("outer") and item.get("entry"):
            m = next((MOODLE_RE.match(part) for part in Path(item["entry"]).parts if MOODLE_RE.match(part)), None)
            if m:  # the student's only file was refused: nothing of them was extracted
                key = f"{m.group('name').strip()}_{m.group('pid')}"
                sub = groups.setdefault(key, Submission(key, m.group("name").strip(), m.group("pid")))
        if sub is None:
            plan.problems.append({"kind": "bad_archive", "who": "", "files": [item["archive"]],
                                  "detail": item["reason"] + "; nothing of it was collected"})
        else:
            refused_by.setdefault(sub.key, []).append(item)
    return refused_by


def _student_ids(groups: dict[str, Submission], roster: Roster) -> dict[str, tuple[str, dict | None]]:
    """{group key: (student id, roster row)}; two people with the same name never share a folder."""
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
    return ids


def _plan_student(ctx: _Context, sub: Submission, sid: str, row: dict | None, refused: list[dict]) -> None:
    """One student's files: problems, and what is collected."""
    plan, rel, release = ctx.plan, ctx.rel, ctx.release
    who = sub.full_name or sub.key
    if ctx.roster and row is None:
        plan.problems.append({"kind": "not_in_roster", "who": who, "student": sid, "files": [rel(p) for p in sub.files],
                              "detail": f"not found in the roster {ctx.roster.path}; collected as {sid!r}"})
    for item in refused:
        plan.problems.append({"kind": "bad_archive", "who": who, "student": sid,
                              "files": [item.get("entry") or item["archive"]],
                              "detail": f"{item['reason']}; not extracted, the rest of the class is collected"})
    notebooks = [p for p in sub.files if p.name.lower().endswith(".ipynb")]
    plan.ignored += [rel(p) for p in sub.files if p not in notebooks]
    if not notebooks and refused:
        return  # the refused archive is the whole story
    if not notebooks:
        plan.problems.append({"kind": "no_notebook", "who": who, "student": sid, "files": [rel(p) for p in sub.files],
                              "detail": "handed in no notebook: " + (", ".join(_original_name(p) for p in sub.files) or "nothing")})
        return
    by_stem, unnamed, foreign = _sort_notebooks(ctx, notebooks)
    for p, belongs in foreign:
        plan.problems.append({"kind": "other_assignment", "who": who, "student": sid, "files": [rel(p)],
                              "detail": f"notebook of {belongs} (handed in as {_original_name(p)}); "
                                        f"not collected for {ctx.assignment or 'this assignment'}"})
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
        entry = _collect_one(ctx, who, sid, stem, found)
        if entry is not None:
            info["files"].append(entry)
    if not info["files"]:
        del plan.students[sid]


def _sort_notebooks(ctx: _Context, notebooks: list[Path]):
    """(release notebook name -> [(file, how)], files of no known name, [(file, other assignment)])."""
    by_stem: dict[str, list[tuple[Path, str]]] = {stem: [] for stem in ctx.release}
    unnamed = []
    for p in notebooks:
        k = notebook_key(_original_name(p))
        stem = ctx.keys.get(k) or next((s for kk, s in ctx.keys.items() if kk and kk in k), None)
        if stem:
            how = "exact" if _original_name(p) == f"{stem}.ipynb" else "renamed"
            by_stem[stem].append((p, how))
        else:
            unnamed.append(p)
    # a notebook whose content is another assignment's is not this one's, whatever its name
    foreign = []
    if ctx.prints:
        for stem, found in by_stem.items():
            for p, how in list(found):
                belongs = owner(p, ctx.assignment, ctx.prints)
                if belongs not in (None, ctx.assignment):
                    found.remove((p, how))
                    foreign.append((p, belongs))
        for p in list(unnamed):
            belongs = owner(p, ctx.assignment, ctx.prints)
            if belongs == ctx.assignment and len(ctx.release) == 1 and not next(iter(by_stem.values())):
                by_stem[next(iter(ctx.release))].append((p, "content"))
                unnamed.remove(p)
            elif belongs is not None and belongs != ctx.assignment:
                unnamed.remove(p)
                foreign.append((p, belongs))
    else:
        for p in list(unnamed):
            hits = [s for s in ctx.release if _content_matches(p, ctx.release_json[s])]
            if len(hits) == 1 and not by_stem[hits[0]]:
                by_stem[hits[0]].append((p, "content"))
                unnamed.remove(p)
    return by_stem, unnamed, foreign


def _collect_one(ctx: _Context, who: str, sid: str, stem: str, found: list[tuple[Path, str]]) -> dict | None:
    """Collect the one candidate for ``stem``.ipynb (several identical copies count as one); None when
    the candidates differ."""
    from coursekit.repair import check_readable

    plan, rel = ctx.plan, ctx.rel
    digests = {sha256(p) for p, _ in found}
    if len(found) > 1 and len(digests) > 1:
        plan.problems.append({"kind": "ambiguous", "who": who, "student": sid, "files": [rel(p) for p, _ in found],
                              "detail": f"{len(found)} different candidates for {stem}.ipynb: "
                                        + ", ".join(_original_name(p) for p, _ in found)
                                        + "; none collected, keep only the right one and collect again"})
        return None
    p, how = found[0]
    if any((a.parent / f"{a.name}.zip").is_file() for a in p.parents if ctx.root in a.parents):
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
    return entry
