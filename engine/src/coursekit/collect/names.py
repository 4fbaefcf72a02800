"""Names in a Moodle export: Moodle's file and folder names, what students call their
notebooks, and the student ids derived from names."""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

MOODLE_RE = re.compile(r"^(?P<name>.+?)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z0-9]+)_(?P<rest>.*)$", re.DOTALL)
JUNK_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
# What students and their tools add to a notebook's name (Colab's "Copy of" in the languages it speaks:
# recognised, never written).
COPY_PREFIX = re.compile(r"^(copy of|copia de|còpia de|copie de|kopie von|copia di)\s+", re.IGNORECASE)
COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*(copy|copia|còpia)(\s*\d+)?|[\s_-]+(copy|copia|còpia)\d*)$", re.IGNORECASE)


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: how two spellings of a name are compared."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().split())


def printable(text) -> str:
    """A student-controlled string for the console and text reports: control characters (terminal
    escape sequences, carriage returns that overwrite a line) shown as escapes, never interpreted."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def sanitise_id(text: str) -> str:
    """A student id nbgrader accepts everywhere (folder names, URLs): ascii, lower case, underscores."""
    out = re.sub(r"[^a-z0-9]+", "_", fold(text)).strip("_")
    return out or "student"


def notebook_key(filename: str) -> str:
    """A notebook's name with copy markers, numbering, case, accents and spacing removed."""
    stem = filename[:-len(".ipynb")] if filename.lower().endswith(".ipynb") else os.path.splitext(filename)[0]
    stem = stem.strip()
    for _ in range(3):
        stem = COPY_SUFFIX.sub("", COPY_PREFIX.sub("", stem)).strip()
    return re.sub(r"[^a-z0-9]", "", fold(stem))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
