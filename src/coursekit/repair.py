"""Repair of submissions damaged by Colab, VS Code or copy-paste, inside ``nbgrader autograde``.

Owns two pieces that :mod:`coursekit.nbconfig` plugs into nbgrader's
``Autograde`` converter:

* :class:`RepairSubmission`, a sanitize preprocessor that runs *first*, before
  nbgrader's own ``ClearOutput``, ``DeduplicateIds``, ``OverwriteKernelspec``,
  ``OverwriteCells`` and ``CheckCellMetadata``.  It matches the submission's
  cells against the release notebook the student received and puts the nbgrader
  metadata back where it belongs: metadata stripped, answer re-pasted into a
  new cell, duplicated cells or grade_ids, deleted test cells, test cells
  retyped as markdown or edited, Colab's own metadata and a foreign kernelspec.
  It only hands nbgrader a notebook whose nbgrader cells are where nbgrader
  expects them; nbgrader then does what it always does (restores locked cells
  and hidden tests from the gradebook, reports changed checksums), so its
  cheat detection keeps working.  Nothing the student wrote is dropped: cells
  that lose their nbgrader role are kept as plain cells.
* :class:`SubmissionExporter`, the converter's exporter, which turns "this file
  is not a notebook" (truncated JSON, a ``.py`` renamed ``.ipynb``) into a clear
  error naming the file and what to do, and records a ``parse_error`` event.
  nbgrader already grades the rest of the class when one submission fails.

Every repair is logged in nbgrader's log and recorded as a ``repaired`` event
(:mod:`coursekit.events`) with the list of actions.
"""
from __future__ import annotations

import ast
import copy
import difflib
import functools
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Unicode

from coursekit import events

# Metadata that Colab and VS Code add and nbgrader never needs (notebook and cell level).
FOREIGN_NB_KEYS = ("colab", "accelerator", "gpuClass", "vscode", "kaggle")
FOREIGN_CELL_KEYS = ("colab", "id", "outputId", "executionInfo", "vscode", "cellView", "pycharm")

# First line of a release stub commented out because the student's answer, above it, would be undone by it.
STUB_NOTE = "[coursekit] enunciat original desactivat: la teva resposta és en una cel·la anterior"

# nbgrader flags that define a cell's role; a cell whose flags differ from the release gets the release's.
ROLE_KEYS = ("grade_id", "grade", "solution", "locked", "task", "points", "schema_version")


@functools.lru_cache(maxsize=4096)
def _norm(text: str) -> str:
    """Source text compared modulo whitespace (Colab and editors reflow trailing spaces and blank lines)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())


def _nbg(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell) -> str | None:
    gid = _nbg(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


@functools.lru_cache(maxsize=4096)
def defined_names(source: str) -> frozenset[str]:
    """Top-level names a code cell defines (functions, classes, assigned variables)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # half-written code: fall back to the def/class lines
        return frozenset(re.findall(r"^\s*(?:def|class)\s+([A-Za-z_]\w*)", source, re.MULTILINE))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return frozenset(names)


@dataclass
class TemplateCell:
    """One cell of the release notebook, with its nbgrader role."""
    index: int
    cell: dict

    @property
    def grade_id(self) -> str | None:
        return _grade_id(self.cell)

    @property
    def role(self) -> str:
        meta = _nbg(self.cell)
        if not self.grade_id:
            return "plain"
        if meta.get("solution"):
            return "answer"
        if meta.get("grade"):
            return "test"
        if meta.get("task"):
            return "task"
        if meta.get("locked"):
            return "locked"
        return "plain"

    @property
    def text(self) -> str:
        if getattr(self, "_text", None) is None:
            self._text = _norm(self.cell.get("source", ""))
        return self._text


def _has_work(source: str, template: TemplateCell) -> bool:
    """Whether an answer cell holds something other than the release stub."""
    text = _norm(source)
    return bool(text) and text != template.text


@functools.lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[Counter, list[str]]:
    words = re.findall(r"\w+|[^\w\s]", text)
    return Counter(words), words


def similarity(t: TemplateCell, cell) -> float:
    """How well a submission cell matches a release cell, 0..1 (0: never the same cell)."""
    source = _norm(cell.get("source", ""))
    if t.role == "answer":
        if source == t.text:
            return 1.0
        if t.cell.get("cell_type") == "code" and cell.get("cell_type") == "code":
            stub_names = defined_names(t.cell.get("source", ""))
            if stub_names and stub_names <= defined_names(cell.get("source", "")):
                return 0.9
        return 0.0
    if source == t.text:
        return 1.0 if t.text or t.cell.get("cell_type") == cell.get("cell_type") else 0.5
    if not t.text or not source:
        return 0.0
    if t.role != "test" and t.cell.get("cell_type") != cell.get("cell_type"):
        return 0.0  # only test cells come back retyped
    # word tokens: fine enough for an edited assert, cheap enough for long cells
    (ca, a), (cb, b) = _tokens(t.text), _tokens(source)
    common = sum((ca & cb).values())
    if 2 * common < 0.5 * (len(a) + len(b)):
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _align(template: list[TemplateCell], cells: list[tuple[int, dict]], threshold: float) -> list[tuple[TemplateCell, int, float]]:
    """Order-preserving matching of release cells to submission cells maximising total similarity."""
    n, m = len(template), len(cells)
    if not n or not m:
        return []
    sim = [[similarity(t, c) for _, c in cells] for t in template]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            options = [best[i + 1][j], best[i][j + 1]]
            if sim[i][j] >= threshold:
                options.append(sim[i][j] + best[i + 1][j + 1])
            best[i][j] = max(options)
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if sim[i][j] >= threshold and abs(best[i][j] - (sim[i][j] + best[i + 1][j + 1])) < 1e-12:
            pairs.append((template[i], cells[j][0], sim[i][j]))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The largest subset of (template, submission) anchors that agree on the order."""
    pairs = sorted(pairs)
    if not pairs:
        return []
    length = [1] * len(pairs)
    prev = [-1] * len(pairs)
    for k in range(len(pairs)):
        for q in range(k):
            if pairs[q][1] < pairs[k][1] and length[q] + 1 > length[k]:
                length[k], prev[k] = length[q] + 1, q
    k = max(range(len(pairs)), key=length.__getitem__)
    out = []
    while k != -1:
        out.append(pairs[k])
        k = prev[k]
    return out[::-1]


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
    meta["nbgrader"] = copy.deepcopy(_nbg(t.cell))
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


def repair_notebook(nb, release, test_threshold: float = 0.6) -> list[str]:
    """Repair ``nb`` in place against the ``release`` notebook; return what was done (one line each).

    Cells that already carry the right nbgrader metadata are left alone, so a
    clean submission comes out untouched (an empty list).
    """
    actions: list[str] = []
    template = [TemplateCell(i, c) for i, c in enumerate(release.cells)]
    by_id = {t.grade_id: t for t in template if t.grade_id}
    if not by_id:
        return actions

    # 1. Colab / VS Code metadata and kernelspec.
    # (keys the release itself carries, e.g. Colab's GPU accelerator, are the course's own)
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

    cells = nb.cells

    # nbgrader metadata without a grade_id (an editor kept half of it) has no role, and nbgrader's
    # metadata validator stops the whole class's run on it ("old version of the metadata format")
    husks = [k for k, cell in enumerate(cells) if "nbgrader" in cell.get("metadata", {}) and not _grade_id(cell)]
    for k in husks:
        _drop_role(cells[k])
    if husks:
        actions.append(f"removed nbgrader metadata without a grade_id from cells {husks}")

    # 2. Duplicated grade_ids: keep the cell with the student's work, the others become plain cells.
    positions: dict[str, list[int]] = {}
    for k, cell in enumerate(cells):
        gid = _grade_id(cell)
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
                        _neutralise(cells[k], STUB_NOTE)
                        note = "; the untouched stub copy after it was commented out"
            actions.append(f"{gid}: duplicated in cells {where}; kept cell {keep}, the others stay as plain cells{note}")
        else:
            keep = where[0]
        anchor[gid] = keep

    # 3. Metadata lost: match the remaining release cells by content, in order, between anchors.
    claimed = set(anchor.values())
    matched: dict[int, int] = {by_id[g].index: k for g, k in anchor.items()}  # template index -> cell index
    fence = _longest_increasing(list(matched.items()))
    bounds = [(-1, -1)] + fence + [(len(template), len(cells))]
    for (t0, s0), (t1, s1) in zip(bounds, bounds[1:]):
        t_gap = [t for t in template[t0 + 1:t1] if t.index not in matched]
        s_gap = [(k, cells[k]) for k in range(s0 + 1, s1) if k not in claimed and not _grade_id(cells[k])]
        for t, k, score in _align(t_gap, s_gap, test_threshold):
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

    # 4. Role flags and cell types of every matched nbgrader cell (retyped test cells, edited flags).
    for t_index, k in sorted(matched.items()):
        t = template[t_index]
        if not t.grade_id:
            continue
        cell = cells[k]
        have = _nbg(cell)
        if any(have.get(key) != _nbg(t.cell).get(key) for key in ROLE_KEYS):
            _give_role(cell, t)
            actions.append(f"{t.grade_id}: nbgrader flags restored on cell {k}")
        if cell.get("cell_type") != t.cell.get("cell_type"):
            actions.append(f"{t.grade_id}: cell {k} was {cell.get('cell_type')}, restored as {t.cell.get('cell_type')}")
            _set_cell_type(cell, t.cell.get("cell_type"))

    # 5. Answer re-pasted into a new cell: the release stub (or an emptied cell) holds the role,
    #    a plain cell nearby defines the same names.  Move the role to the student's cell.
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
                 and cells[j].get("cell_type") == "code" and not _grade_id(cells[j])
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
            _neutralise(cells[k], STUB_NOTE)
            note = "; the untouched stub after it was commented out"
        actions.append(f"{t.grade_id}: answer found in new cell {j}, role moved from cell {k} (kept as plain){note}")

    # 6. Deleted test (and read-only) cells: re-insert the release cell at its place.
    #    nbgrader's OverwriteCells then restores its full source (hidden tests included) from the gradebook.
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

    if actions:
        _fix_cell_ids(nb)
    return actions


class RepairSubmission(NbGraderPreprocessor):
    """Sanitize preprocessor: restore the nbgrader structure of a damaged submission (see module doc)."""

    match_threshold = Float(
        0.6, help="minimum text similarity (0..1) for a cell without metadata to be taken for a release cell"
    ).tag(config=True)

    release_notebook = Unicode(
        "", help="release notebook to match against (default: <release>/<assignment>/<notebook>.ipynb)"
    ).tag(config=True)

    def _release_path(self, resources) -> Path:
        if self.release_notebook:
            return Path(self.release_notebook)
        info = resources["nbgrader"]
        parent, coursedir = self.parent, None
        while parent is not None and coursedir is None:
            coursedir = getattr(parent, "coursedir", None)
            parent = getattr(parent, "parent", None)
        if coursedir is not None:
            folder = coursedir.format_path(coursedir.release_directory, ".", info["assignment"])
        else:  # nbgrader runs converters from the course root
            folder = os.path.join(os.getcwd(), "release", info["assignment"])
        return Path(folder) / f"{info['notebook']}.ipynb"

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        path = self._release_path(resources)
        if not path.is_file():
            self.log.warning("coursekit repair: no release notebook %s; submission not checked", path)
            return nb, resources
        release = nbformat.read(str(path), as_version=4)
        actions = repair_notebook(nb, release, self.match_threshold)
        if actions:
            who = f"{info.get('student')}/{info.get('assignment')}/{info.get('notebook')}"
            for action in actions:
                self.log.warning("coursekit repair %s: %s", who, action)
            events.record(events.course_root_from_resources(resources), info.get("assignment", "?"),
                          info.get("student", "?"), "repaired", notebook=info.get("notebook"), actions=actions)
        return nb, resources


class NotANotebookError(Exception):
    """A submitted file that cannot be read as a Jupyter notebook."""


def describe_unreadable(path: str | Path, exc: Exception) -> str:
    """One clear message: which file, what is wrong with it, what to do."""
    path = Path(path)
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        head = b""
    text = head.decode("utf-8", "replace").lstrip()
    if not head:
        what = "the file is empty"
    elif text.startswith("{"):
        what = f"the JSON is broken or truncated ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    elif head.startswith(b"PK"):
        what = "it is a zip archive renamed .ipynb"
    elif re.search(r"^(import |from |def |class |#)", text, re.MULTILINE):
        what = "it looks like a Python script renamed .ipynb"
    else:
        what = f"it is not JSON ({type(exc).__name__})"
    return (f"{path} is not a Jupyter notebook: {what}. It was not graded. Ask the student for the "
            f"notebook itself (Colab: File > Download > Download .ipynb), put it in place of this file "
            f"and grade this student again (nbgrader autograde ASSIGNMENT --student ID --force).")


def check_readable(path: str | Path) -> str | None:
    """``None`` if ``path`` reads as a notebook, else the message :func:`describe_unreadable` gives."""
    try:
        with open(path, encoding="utf-8") as f:
            nbformat.read(f, as_version=4)
    except Exception as exc:  # any failure to read is the same problem for the grader
        return describe_unreadable(path, exc)
    return None


class SubmissionExporter(NotebookExporter):
    """Autograde's exporter: a clear error (and a ``parse_error`` event) for files that are not notebooks."""

    def from_file(self, file_stream, resources=None, **kw):
        try:
            nb = nbformat.read(file_stream, as_version=4)
        except Exception as exc:  # only the read is guarded: preprocessor errors pass through untouched
            meta = (resources or {}).get("metadata", {})
            path = os.path.join(meta.get("path", ""), f"{meta.get('name', '?')}.ipynb")
            message = describe_unreadable(path, exc)
            info = (resources or {}).get("nbgrader", {})
            if info.get("student"):
                events.record(events.course_root_from_resources(resources), info.get("assignment", "?"),
                              info["student"], "parse_error", notebook=info.get("notebook"), message=message)
            self.log.error("%s", message)
            raise NotANotebookError(message) from None
        return self.from_notebook_node(nb, resources=resources, **kw)
