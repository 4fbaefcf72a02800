"""nbgrader's metadata of a notebook cell, read defensively.

Role questions (is it a grade / solution / locked / task cell?) go to
``nbgrader.utils`` (``is_grade``, ``is_solution``, ``is_locked``, ``is_task``)
where the cell is a trusted ``NotebookNode`` (the release or source notebook).
nbgrader has no reader for a cell's ``grade_id``, and a submitted notebook is
hostile input (its ``metadata.nbgrader`` may be a list, a string, missing, or
the cell a plain dict read as JSON), so the two readers below never raise.
"""
from __future__ import annotations


def nbgrader_meta(cell) -> dict:
    """The cell's ``metadata.nbgrader`` when it is a dict, else an empty dict."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str | None:
    """The cell's nbgrader ``grade_id`` when it is a non-empty string, else None."""
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None
