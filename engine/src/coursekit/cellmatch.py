"""Which cell of a submission is which cell of the release notebook, by content and order.

Used by the repair (:mod:`coursekit.restore`) to put nbgrader's metadata back
where an editor lost it, and by :mod:`coursekit.evidence` to find the cells
whose submitted outputs are kept.  Release cells are trusted (their roles are
read with ``nbgrader.utils``); submission cells are hostile input, read with
:mod:`coursekit.cells`.
"""
from __future__ import annotations

import ast
import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode
from nbgrader.utils import is_grade, is_locked, is_solution, is_task

from coursekit.cells import grade_id


@functools.lru_cache(maxsize=4096)
def _norm(text: str) -> str:
    """Source text compared modulo whitespace (Colab and editors reflow trailing spaces and blank lines)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())


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
        return grade_id(self.cell)

    @property
    def role(self) -> str:
        if not self.grade_id:
            return "plain"
        cell = self.cell if isinstance(self.cell, NotebookNode) else nbformat.from_dict(self.cell)
        if is_solution(cell):
            return "answer"
        if is_grade(cell):
            return "test"
        if is_task(cell):
            return "task"
        if is_locked(cell):
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
