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
(:mod:`coursekit.events`) with the list of actions.  The matching of cells is
:mod:`coursekit.cellmatch`, the repair's steps :mod:`coursekit.restore`; their
names stay importable from here.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Unicode

from coursekit import events
# the parts, under the names this module always had
from coursekit.cellmatch import (TemplateCell, _align, _has_work, _longest_increasing, _norm,  # noqa: F401
                                 defined_names, similarity)
from coursekit.context import CourseContext, course_root
from coursekit.restore import FOREIGN_CELL_KEYS, FOREIGN_NB_KEYS, ROLE_KEYS, STUB_NOTE, repair_notebook  # noqa: F401


class RepairSubmission(NbGraderPreprocessor):
    """Sanitize preprocessor: restore the nbgrader structure of a damaged submission (see module doc)."""

    match_threshold = Float(
        0.6, help="minimum text similarity (0..1) for a cell without metadata to be taken for a release cell"
    ).tag(config=True)

    release_notebook = Unicode(
        "", help="release notebook to match against (default: <release>/<assignment>/<notebook>.ipynb)"
    ).tag(config=True)

    stub_note = Unicode(
        STUB_NOTE, help="first line (commented) of a release stub disabled because the answer is in an earlier cell"
    ).tag(config=True)

    def _release_path(self, resources) -> Path:
        if self.release_notebook:
            return Path(self.release_notebook)
        info = resources["nbgrader"]
        return CourseContext.of(self, resources).release_notebook(info["assignment"], info["notebook"])

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        path = self._release_path(resources)
        if not path.is_file():
            self.log.warning("coursekit repair: no release notebook %s; submission not checked", path)
            return nb, resources
        release = nbformat.read(str(path), as_version=4)
        actions = repair_notebook(nb, release, self.match_threshold, self.stub_note)
        if actions:
            who = f"{info.get('student')}/{info.get('assignment')}/{info.get('notebook')}"
            for action in actions:
                self.log.warning("coursekit repair %s: %s", who, action)
            events.record(course_root(resources, self), info.get("assignment", "?"),
                          info.get("student", "?"), events.REPAIRED, notebook=info.get("notebook"), actions=actions)
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
                events.record(course_root(resources, self), info.get("assignment", "?"),
                              info["student"], events.PARSE_ERROR, notebook=info.get("notebook"), message=message)
            self.log.error("%s", message)
            raise NotANotebookError(message) from None
        return self.from_notebook_node(nb, resources=resources, **kw)
