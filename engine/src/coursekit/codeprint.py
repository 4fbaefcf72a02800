"""A fingerprint of the code a notebook runs, to tell whether a measurement still describes it.

``coursekit time-full-mode`` records, next to each notebook's measured run time,
the fingerprint of the source notebook it ran; the student guide states that
time as measured only while the source notebook still has the same fingerprint.

The fingerprint covers every code cell (solutions and shared cells included),
parsed into Python's syntax tree: comments, blank lines and layout do not
change it (a shared cell gaining a Colab form title does not make a run time
stale), any change of the code or of its string constants does.  Lines that
IPython handles itself (``%magic``, ``!shell``) are kept as text; a cell that
is still not Python is hashed as written.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import nbformat


def _cell_form(source: str) -> str:
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    magics = [line.strip() for line in source.splitlines() if line.lstrip().startswith(("%", "!"))]
    try:
        return ast.dump(ast.parse(python)) + "\n" + "\n".join(magics)
    except SyntaxError:
        return source


def code_fingerprint(nb) -> str:
    """sha256 (first 16 hex digits) over the syntax trees of the notebook's code cells, in order."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(_cell_form(cell.source).encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    return code_fingerprint(nbformat.read(str(path), as_version=4))
