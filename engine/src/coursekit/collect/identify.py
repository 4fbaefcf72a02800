"""Which assignment a notebook's content belongs to, judged by the cells unique to each assignment."""
from __future__ import annotations

import json
from pathlib import Path

from coursekit.cells import grade_id

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
    ids = {grade_id(c) for c in release_nb.get("cells", [])} - {None}
    theirs = {grade_id(c) for c in cells if isinstance(c, dict)}
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
        gid = grade_id(cell)
        if gid:
            out.add("id:" + gid)
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
