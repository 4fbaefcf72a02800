"""The student's own results survive autograding, as inert data, next to the fast-mode re-run.

Students run the notebooks in full mode in Colab and answer the written
questions from the plots and numbers they see there; ``nbgrader autograde``
clears every output and re-runs the notebook in fast mode (generated data, a
couple of epochs).  So that the person grading in formgrader, and the student
reading the feedback, see the results the answers talk about:

* the source notebook marks the cells whose results a written answer discusses
  (experiments, plots, summary tables) with the cell tag ``evidence``;
* :class:`KeepSubmittedOutputs`, a sanitize preprocessor placed right before
  nbgrader's ``ClearOutput``, finds those cells in the submission (matched
  against the release notebook's tagged cells, never trusting the student's
  own tags or metadata), and stores a sanitised copy of their outputs in the
  cell's metadata;
* :class:`ShowSubmittedOutputs`, placed right after nbgrader's
  ``SaveAutoGrades`` (scores are already saved when it runs), puts them back
  into the cell after the fast-mode outputs, each group under a Catalan label.

Only inert data is kept: text (``text/plain``, streams, error tracebacks as
text) and PNG/JPEG images whose base64 payload decodes to a real PNG/JPEG.
HTML becomes its visible text, SVG, JavaScript, widgets and every other type
are dropped, output metadata (image sizes, ...) is dropped, every output
becomes ``display_data`` or ``stream`` (never ``error``, never an execution
count), and sizes are capped per output, per cell and per notebook.  Cells
that nbgrader grades (test and answer cells) are never touched.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Integer, Unicode

from coursekit.cellmatch import TemplateCell, _align
from coursekit.cells import nbgrader_meta
from coursekit.context import CourseContext

EVIDENCE_TAG = "evidence"
# Cell metadata key holding the sanitised submitted outputs between the two phases.
STASH_KEY = "coursekit_submitted_outputs"
# Output metadata that marks the labels this module adds (tests and later tools find them by it).
LABEL_KEY = "coursekit_evidence_label"

# Everything these preprocessors write for the student, in English unless the course sets its own words
# (``c.EvidenceWords.words`` in nbgrader_config.py; keys it leaves out keep these).  The labels head
# the two sets of outputs of an evidence cell; the rest are the notes on what was left out.
COLAB_TITLE = "Outputs of your own run (Colab)"
FAST_TITLE = "The automatic grader's re-run (fast mode)"
WORDS = {
    "colab_label": f"**{COLAB_TITLE}**: the outputs as you submitted them, not run again (text and images "
                   "only). These are the ones the written answers are marked on.",
    "colab_empty": f"**{COLAB_TITLE}**: this cell had no output when you submitted it (did you not run it "
                   "before saving the notebook?).",
    "fast_label": f"**{FAST_TITLE}**: generated data and few epochs. It checks that the code runs from top to "
                  "bottom; the numbers and plots are not Colab's.",
    "clipped": "\n… [output clipped: {total} characters, {shown} shown]",
    "omitted": "{what} omitted: {why}",
    "text_output": "text output",
    "error": "error",
    "image": "image",
    "image_text": "<image {mime}>",
    "invalid_image": "image {mime} omitted: the content is not a valid image",
    "other_omitted": "output omitted ({types}): only text and PNG/JPEG images are shown",
    "over_limit": "the cell is over the output limit",
    "notebook_over": "the notebook is over the limit of {kb} kB of outputs",
    "cell_over": "the cell is over the limit of {kb} kB",
}

IMAGE_MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",)}
BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# text-like types shown as their source text when an output has no text/plain
TEXT_FALLBACKS = ("text/markdown", "text/latex")


class _VisibleText(HTMLParser):
    """The text a browser would show for an HTML fragment (tables as tab-separated lines)."""

    BREAKS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in ("td", "th"):
            self.parts.append("\t")
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    parser = _VisibleText()
    try:
        parser.feed(fragment)
        parser.close()
    except Exception:  # noqa: BLE001 - malformed HTML: fall back to dropping every tag
        return html.unescape(re.sub(r"<[^>]*>", "", fragment))
    lines = [re.sub(r"[ \t]+", lambda m: "\t" if "\t" in m.group() else " ", line).strip()
             for line in "".join(parser.parts).split("\n")]
    return "\n".join(line for line in lines if line)


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else str(value)


def _clip(text: str, limit: int, note: str = WORDS["clipped"]) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + note.format(total=len(text), shown=limit)


def valid_image(mime: str, payload) -> str | None:
    """The payload as clean base64 if it decodes to an image of that type, else None."""
    if not isinstance(payload, (str, list)):
        return None
    compact = re.sub(r"\s+", "", _text(payload))
    if not compact or not BASE64_RE.fullmatch(compact):
        return None
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not any(raw.startswith(magic) for magic in IMAGE_MAGIC[mime]):
        return None
    return base64.b64encode(raw).decode("ascii")


def _display(data: dict) -> NotebookNode:
    return from_dict({"output_type": "display_data", "data": data, "metadata": {}})


def _stream(name, text: str) -> NotebookNode:
    return from_dict({"output_type": "stream", "name": "stderr" if name == "stderr" else "stdout", "text": text})


def inert_outputs(outputs, max_text: int, max_bytes: int, too_big: str | None = None,
                  words: dict | None = None) -> tuple[list[NotebookNode], list[str], int]:
    """Sanitised copies of a cell's outputs (see the module doc), notes on what was left out
    (``too_big`` says why when ``max_bytes`` is reached) and the bytes kept.  ``words``: the
    course's words (keys of :data:`WORDS`; those left out keep the English default)."""
    words = {**WORDS, **(words or {})}
    too_big = words["over_limit"] if too_big is None else too_big
    kept: list[NotebookNode] = []
    notes: list[str] = []
    used = 0

    def add(output: NotebookNode, size: int, what: str) -> None:
        nonlocal used
        if used + size > max_bytes:
            notes.append(words["omitted"].format(what=what, why=too_big))
            return
        used += size
        kept.append(output)

    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream":
            text = _clip(_text(out.get("text", "")), max_text, words["clipped"])
            add(_stream(out.get("name"), text), len(text), words["text_output"])
        elif kind == "error":
            tb = out.get("traceback")
            text = "\n".join(_text(t) for t in tb) if isinstance(tb, list) and tb else \
                f"{_text(out.get('ename', 'Error'))}: {_text(out.get('evalue', ''))}"
            text = _clip(text, max_text, words["clipped"])
            add(_stream("stderr", text), len(text), words["error"])
        elif kind in ("display_data", "execute_result"):
            data = out.get("data") if isinstance(out.get("data"), dict) else {}
            for mime in ("image/png", "image/jpeg"):
                if mime in data:
                    image = valid_image(mime, data[mime])
                    if image is None:
                        notes.append(words["invalid_image"].format(mime=mime))
                    else:
                        add(_display({mime: image, "text/plain": words["image_text"].format(mime=mime)}),
                            len(image), words["image"])
            if any(m in data for m in ("image/png", "image/jpeg")):
                continue
            if "text/plain" in data:
                text = _text(data["text/plain"])
            elif "text/html" in data:
                text = html_to_text(_text(data["text/html"]))
            else:
                text = next((_text(data[m]) for m in TEXT_FALLBACKS if m in data), None)
            if text is None:
                if data:
                    notes.append(words["other_omitted"].format(types=", ".join(sorted(str(m) for m in data)[:3])))
                continue
            text = _clip(text, max_text, words["clipped"])
            add(_display({"text/plain": text}), len(text), words["text_output"])
    return kept, notes, used


def _label(markdown: str) -> NotebookNode:
    plain = markdown.replace("**", "")
    return from_dict({"output_type": "display_data", "data": {"text/markdown": markdown, "text/plain": plain},
                      "metadata": {LABEL_KEY: True}})


def is_graded(cell) -> bool:
    """Cells nbgrader scores or treats as answers: kept outputs never go there.  (A submission's
    cell: its metadata is read defensively, not with nbgrader.utils, which expects it well formed.)"""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade") or meta.get("solution") or meta.get("task"))


def evidence_cells(nb) -> list[int]:
    """Indices of the cells tagged ``evidence`` (in a source or release notebook)."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and EVIDENCE_TAG in (c.get("metadata", {}).get("tags") or [])]


def match_evidence(nb, release, threshold: float = 0.6) -> dict[int, int]:
    """{submission cell index: release cell index} for the release's evidence cells.

    Matched by content, in order (the repair's alignment), among the submission's
    ungraded code cells: the student's own tags and metadata are not trusted.
    """
    template = [TemplateCell(i, release.cells[i]) for i in evidence_cells(release)]
    candidates = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and not is_graded(c)]
    return {j: t.index for t, j, _ in _align(template, candidates, threshold)}


def _release_path(preprocessor, resources) -> Path:
    info = resources.get("nbgrader", {})
    return CourseContext.of(preprocessor, resources).release_notebook(info.get("assignment", ""),
                                                                      info.get("notebook", ""))


class EvidenceWords(NbGraderPreprocessor):
    """What both evidence preprocessors write for the student (``c.EvidenceWords.words`` sets it for both)."""

    words = Dict(WORDS, help="labels and notes of the evidence cells (keys of coursekit.evidence.WORDS; "
                             "keys left out keep the English default)").tag(config=True)

    @property
    def all_words(self) -> dict:
        return {**WORDS, **self.words}


class KeepSubmittedOutputs(EvidenceWords):
    """Sanitize phase, before ``ClearOutput``: stash the evidence cells' submitted outputs, made inert."""

    max_output_chars = Integer(20_000, help="characters kept of one text output").tag(config=True)
    max_cell_bytes = Integer(1_500_000, help="bytes kept per evidence cell (text + base64 images)").tag(config=True)
    max_notebook_bytes = Integer(5_000_000, help="bytes kept per notebook, all evidence cells").tag(config=True)
    release_notebook = Unicode("", help="release notebook with the evidence tags "
                                        "(default: <release>/<assignment>/<notebook>.ipynb)").tag(config=True)

    def preprocess(self, nb, resources):
        for cell in nb.cells:  # whatever the submission carries under this key is not ours
            cell.get("metadata", {}).pop(STASH_KEY, None)
        path = Path(self.release_notebook) if self.release_notebook else _release_path(self, resources)
        if not path.is_file():
            return nb, resources
        release = nbformat.read(str(path), as_version=4)
        budget, words = self.max_notebook_bytes, self.all_words
        for index in sorted(match_evidence(nb, release)):
            cell = nb.cells[index]
            if budget < self.max_cell_bytes:
                cap, why = budget, words["notebook_over"].format(kb=self.max_notebook_bytes // 1000)
            else:
                cap, why = self.max_cell_bytes, words["cell_over"].format(kb=self.max_cell_bytes // 1000)
            kept, notes, used = inert_outputs(cell.get("outputs", []), self.max_output_chars, cap, why, words)
            budget -= used
            cell.metadata[STASH_KEY] = {"outputs": kept, "notes": notes}
        return nb, resources


class ShowSubmittedOutputs(EvidenceWords):
    """Autograde phase, after ``SaveAutoGrades``: the stashed outputs go back, labelled, after the re-run."""

    max_output_chars = Integer(20_000, help="characters kept of one text output").tag(config=True)
    max_cell_bytes = Integer(1_500_000, help="bytes kept per evidence cell (text + base64 images)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        stash = cell.get("metadata", {}).pop(STASH_KEY, None)
        if not isinstance(stash, dict) or cell.cell_type != "code" or is_graded(cell):
            return cell, resources
        # sanitised again: the stash went through a file between the two phases
        words = self.all_words
        kept, notes, _ = inert_outputs(stash.get("outputs", []), self.max_output_chars, self.max_cell_bytes,
                                       words=words)
        notes = [n for n in stash.get("notes", []) if isinstance(n, str)][:20] + notes
        colab = [_label(words["colab_label"] if kept or notes else words["colab_empty"])] + kept
        if notes:  # after the outputs: what was left out, and why
            colab.append(_stream("stdout", "\n".join(f"[{n}]" for n in notes)))
        cell.outputs = [_label(words["fast_label"])] + list(cell.get("outputs", [])) + colab
        return cell, resources
