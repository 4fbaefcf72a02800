"""The repair itself: a damaged submission's nbgrader structure restored against the release notebook.

:func:`repair_notebook` runs six steps, each a function below, each adding one
line per thing it did to the list of actions; :mod:`coursekit.repair` plugs it
into nbgrader's ``Autograde`` as the first sanitize preprocessor.
"""
from __future__ import annotations

import copy
import re
import uuid

import nbformat

from coursekit.cellmatch import TemplateCell, _align, _has_work, _longest_increasing, _norm, defined_names, similarity
from coursekit.cells import grade_id, nbgrader_meta

# Metadata that Colab and VS Code add and nbgrader never needs (notebook and cell level).
FOREIGN_NB_KEYS = ("colab", "accelerator", "gpuClass", "vscode", "kaggle")
FOREIGN_CELL_KEYS = ("colab", "id", "outputId", "executionInfo", "vscode", "cellView", "pycharm")

# First line of a release stub commented out because the student's answer, above it, would be undone by it
# (English unless the course sets its own words: ``c.RepairSubmission.stub_note``).
STUB_NOTE = "[coursekit] original exercise cell disabled: your answer is in an earlier cell"

# nbgrader flags that define a cell's role; a cell whose flags differ from the release gets the release's.
ROLE_KEYS = ("grade_id", "grade", "solution", "locked", "task", "points", "schema_version")


def repair_notebook(nb, release, test_threshold: float = 0.6, stub_note: str = STUB_NOTE) -> list[str]:
    """Repair ``nb`` in place against the ``release`` notebook; return what was done (one line each).

    ``stub_note`` is the first line of a stub commented out (the course's words, :data:`STUB_NOTE`).

    Cells that already carry the right nbgrader metadata are left alone, so a
    clean submission comes out untouched (an empty list).
    """
    actions: list[str] = []
    template = [TemplateCell(i, c) for i, c in enumerate(release.cells)]
    by_id = {t.grade_id: t for t in template if t.grade_id}
    if not by_id:
        return actions
    _remove_editor_metadata(nb, release, actions)
    cells = nb.cells
    _drop_husks(cells, actions)
    anchor = _deduplicate_grade_ids(cells, by_id, actions, stub_note)
    matched = _match_by_content(template, cells, by_id, anchor, test_threshold, actions)
    _restore_roles(template, cells, matched, actions)
    _move_repasted_answers(template, cells, matched, actions, stub_note)
    _reinsert_missing(template, cells, matched, actions)
    if actions:
        _fix_cell_ids(nb)
    return actions


def _remove_editor_metadata(nb, release, actions: list[str]) -> None:
    """1. Colab / VS Code metadata and a foreign kernelspec (keys the release itself carries, e.g.
    Colab's GPU accelerator, are the course's own)."""
    removed = [k for k in FOREIGN_NB_KEYS if k in nb.metadata and nb.metadata[k] != release.metadata.get(k)]
    for key in removed:
        del nb.metadata[key]
    n_cells = 0
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        hit = [k for k in FOREIGN_CELL_KEYS if k in meta]
        for key in hit:
            del meta[key]
        n_cells += bool(hit)
    if removed or n_cells:
        actions.append(f"removed editor metadata ({', '.join(removed) or 'cells only'}; {n_cells} cells)")
    want_kernel = release.metadata.get("kernelspec")
    if want_kernel and nb.metadata.get("kernelspec", {}).get("name") != want_kernel.get("name"):
        actions.append(f"kernelspec {nb.metadata.get('kernelspec', {}).get('name')!r} -> {want_kernel.get('name')!r}")
        nb.metadata["kernelspec"] = copy.deepcopy(want_kernel)


def _drop_husks(cells, actions: list[str]) -> None:
    """nbgrader metadata without a grade_id (an editor kept half of it) has no role, and nbgrader's
    metadata validator stops the whole class's run on it ("old version of the metadata format")."""
    husks = [k for k, cell in enumerate(cells) if "nbgrader" in cell.get("metadata", {}) and not grade_id(cell)]
    for k in husks:
        _drop_role(cells[k])
    if husks:
        actions.append(f"removed nbgrader metadata without a grade_id from cells {husks}")


def _deduplicate_grade_ids(cells, by_id: dict[str, TemplateCell], actions: list[str],
                           stub_note: str = STUB_NOTE) -> dict[str, int]:
    """2. Duplicated grade_ids: keep the cell with the student's work, the others become plain cells.
    Returns {grade_id: the cell that keeps it} (the anchors of the matching)."""
    positions: dict[str, list[int]] = {}
    for k, cell in enumerate(cells):
        gid = grade_id(cell)
        if gid in by_id:
            positions.setdefault(gid, []).append(k)
    anchor: dict[str, int] = {}
    for gid, where in positions.items():
        t = by_id[gid]
        if len(where) > 1:
            if t.role == "answer":
                worked = [k for k in where if _has_work(cells[k].get("source", ""), t)]
                keep = worked[-1] if worked else where[0]  # the last definition is the one that runs
            else:
                keep = max(where, key=lambda k: (similarity(t, cells[k]), -k))
            note = ""
            for k in where:
                if k != keep:
                    _drop_role(cells[k])
                    if t.role == "answer" and k > keep and _norm(cells[k].get("source", "")) == t.text:
                        _neutralise(cells[k], stub_note)
                        note = "; the untouched stub copy after it was commented out"
            actions.append(f"{gid}: duplicated in cells {where}; kept cell {keep}, the others stay as plain cells{note}")
        else:
            keep = where[0]
        anchor[gid] = keep
    return anchor


def _match_by_content(template: list[TemplateCell], cells, by_id: dict[str, TemplateCell], anchor: dict[str, int],
                      threshold: float, actions: list[str]) -> dict[int, int]:
    """3. Metadata lost: match the remaining release cells by content, in order, between anchors.
    Returns {template index: cell index} of every matched release cell."""
    claimed = set(anchor.values())
    matched: dict[int, int] = {by_id[g].index: k for g, k in anchor.items()}  # template index -> cell index
    fence = _longest_increasing(list(matched.items()))
    bounds = [(-1, -1)] + fence + [(len(template), len(cells))]
    for (t0, s0), (t1, s1) in zip(bounds, bounds[1:]):
        t_gap = [t for t in template[t0 + 1:t1] if t.index not in matched]
        s_gap = [(k, cells[k]) for k in range(s0 + 1, s1) if k not in claimed and not grade_id(cells[k])]
        for t, k, score in _align(t_gap, s_gap, threshold):
            matched[t.index] = k
            claimed.add(k)
        # an answer cell whose stub defines nothing: the one leftover cell of its type, if unique
        left_t = [t for t in t_gap if t.index not in matched and t.role == "answer"]
        left_s = [k for k, c in s_gap if k not in claimed and _norm(c.get("source", ""))]
        if len(left_t) == 1 and len(left_s) == 1 and \
                cells[left_s[0]].get("cell_type") == left_t[0].cell.get("cell_type"):
            matched[left_t[0].index] = left_s[0]
            claimed.add(left_s[0])
    for t_index, k in sorted(matched.items()):
        t = template[t_index]
        if not t.grade_id or t.grade_id in anchor:
            continue
        _give_role(cells[k], t)
        actions.append(f"{t.grade_id}: nbgrader metadata restored on cell {k} (matched by content)")
    return matched


def _restore_roles(template: list[TemplateCell], cells, matched: dict[int, int], actions: list[str]) -> None:
    """4. Role flags and cell types of every matched nbgrader cell (retyped test cells, edited flags)."""
    for t_index, k in sorted(matched.items()):
        t = template[t_index]
        if not t.grade_id:
            continue
        cell = cells[k]
        have = nbgrader_meta(cell)
        if any(have.get(key) != nbgrader_meta(t.cell).get(key) for key in ROLE_KEYS):
            _give_role(cell, t)
            actions.append(f"{t.grade_id}: nbgrader flags restored on cell {k}")
        if cell.get("cell_type") != t.cell.get("cell_type"):
            actions.append(f"{t.grade_id}: cell {k} was {cell.get('cell_type')}, restored as {t.cell.get('cell_type')}")
            _set_cell_type(cell, t.cell.get("cell_type"))


def _move_repasted_answers(template: list[TemplateCell], cells, matched: dict[int, int], actions: list[str],
                           stub_note: str = STUB_NOTE) -> None:
    """5. Answer re-pasted into a new cell: the release stub (or an emptied cell) holds the role,
    a plain cell nearby defines the same names.  Move the role to the student's cell."""
    owner = {k: t_index for t_index, k in matched.items()}
    for t_index, k in sorted(matched.items()):
        t = template[t_index]
        if t.role != "answer" or t.cell.get("cell_type") != "code" or _has_work(cells[k].get("source", ""), t):
            continue
        names = defined_names(t.cell.get("source", ""))
        if not names:
            continue
        lo = max([kk for tt, kk in matched.items() if tt < t_index and kk < k], default=-1)
        hi = min([kk for tt, kk in matched.items() if tt > t_index and kk > k], default=len(cells))
        found = [j for j in range(lo + 1, hi) if j != k and j not in owner
                 and cells[j].get("cell_type") == "code" and not grade_id(cells[j])
                 and names <= defined_names(cells[j].get("source", ""))]
        if len(found) != 1:
            continue
        j = found[0]
        _give_role(cells[j], t)
        _drop_role(cells[k])
        owner[j] = t_index
        owner.pop(k, None)
        matched[t_index] = j
        note = ""
        if j < k and _norm(cells[k].get("source", "")) == t.text:
            _neutralise(cells[k], stub_note)
            note = "; the untouched stub after it was commented out"
        actions.append(f"{t.grade_id}: answer found in new cell {j}, role moved from cell {k} (kept as plain){note}")


def _reinsert_missing(template: list[TemplateCell], cells, matched: dict[int, int], actions: list[str]) -> None:
    """6. Deleted test (and read-only) cells: re-insert the release cell at its place.  nbgrader's
    OverwriteCells then restores its full source (hidden tests included) from the gradebook."""
    inserts: list[tuple[int, TemplateCell]] = []
    for t in template:
        if t.index in matched or t.role not in ("test", "locked"):
            continue
        before = [k for tt, k in matched.items() if tt < t.index]
        after = [k for tt, k in matched.items() if tt > t.index]
        at = max(before) + 1 if before else (min(after) if after else len(cells))
        inserts.append((at, t))
    for at, t in sorted(inserts, key=lambda x: (x[0], x[1].index), reverse=True):
        new = copy.deepcopy(t.cell)
        if new.get("cell_type") == "code":
            new["outputs"], new["execution_count"] = [], None
        new.pop("id", None)
        cells.insert(at, nbformat.from_dict(new))
    for at, t in sorted(inserts, key=lambda x: x[1].index):
        actions.append(f"{t.grade_id}: {t.role} cell was missing, re-inserted from the release")


# ---------------------------------------------------------------- cell edits

def _set_cell_type(cell, cell_type: str) -> None:
    """Turn a cell into a clean code or markdown cell (what nbformat's schema accepts)."""
    if cell.get("cell_type") == cell_type:
        return
    cell["cell_type"] = cell_type
    cell.pop("attachments", None)
    if cell_type == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _give_role(cell, t: TemplateCell) -> None:
    """Put the release cell's nbgrader metadata (and lock flags) on a submission cell."""
    meta = cell.setdefault("metadata", {})
    meta["nbgrader"] = copy.deepcopy(nbgrader_meta(t.cell))
    for key in ("editable", "deletable"):
        if key in t.cell.get("metadata", {}):
            meta[key] = t.cell["metadata"][key]
        else:
            meta.pop(key, None)


def _drop_role(cell) -> None:
    meta = cell.get("metadata", {})
    meta.pop("nbgrader", None)
    meta.pop("editable", None)
    meta.pop("deletable", None)


def _neutralise(cell, note: str) -> None:
    """Comment out a release stub so that running it cannot undo the student's answer."""
    lines = cell.get("source", "").split("\n")
    cell["source"] = "\n".join([f"# {note}"] + ["# " + line if line else "#" for line in lines])


def _fix_cell_ids(nb) -> None:
    """nbformat >= 4.5 wants unique cell ids; older notebooks must have none."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        seen = set()
        for cell in nb.cells:
            cid = cell.get("id")
            if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cid) or cid in seen:
                cid = uuid.uuid4().hex[:8]
                while cid in seen:
                    cid = uuid.uuid4().hex[:8]
                cell["id"] = cid
            seen.add(cid)
    else:
        for cell in nb.cells:
            cell.pop("id", None)
