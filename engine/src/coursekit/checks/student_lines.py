"""Which lines of a submission the student wrote (what the static scan judges).

Cell roles from nbgrader's metadata (test, answer, locked cells, ``grade_id``) and
``student_lines``: each code cell compared with the notebook the student started from
(by ``grade_id``, else by identical text), keeping only inserted or changed lines.
"""
from __future__ import annotations

import difflib


def is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_answer_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_locked(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("locked")) and not meta.get("solution")


def student_lines(nb, given=None) -> dict[int, set[int] | None]:
    """For each non-test code cell: the 1-based lines the student wrote (None: all of them).

    ``given``: the notebook(s) the student started from (release, source).  Locked
    cells are given by definition: nbgrader restores them before execution."""
    given = [] if given is None else given if isinstance(given, (list, tuple)) else [given]
    by_id, texts = {}, set()
    for reference in given:
        for cell in reference.cells:
            if cell.cell_type == "code":
                texts.add(cell.source.strip())
                if grade_id(cell) and grade_id(cell) not in by_id:
                    by_id[grade_id(cell)] = cell.source
    out: dict[int, set[int] | None] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or is_test_cell(cell):
            continue
        if is_locked(cell):
            out[index] = set()
            continue
        if not given:
            out[index] = None
            continue
        old = by_id.get(grade_id(cell)) if grade_id(cell) else None
        if old is None:
            out[index] = set() if cell.source.strip() in texts else None
            continue
        changed: set[int] = set()
        matcher = difflib.SequenceMatcher(None, old.splitlines(), cell.source.splitlines(), autojunk=False)
        for op, _, _, j1, j2 in matcher.get_opcodes():
            if op in ("replace", "insert"):
                changed.update(range(j1 + 1, j2 + 1))
        out[index] = changed
    return out
