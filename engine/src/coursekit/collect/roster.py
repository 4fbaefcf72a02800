"""The course roster (``roster.csv``): students looked up by any identifier Moodle shows.

A header row; ``student_id`` (the nbgrader id) plus any of ``full_name`` (or
``first_name``/``last_name``), ``email``, ``id_number``, ``username``,
``participant_id``.  Moodle's exported column names ("First name", "Surname",
"Email address", "ID number", "Identifier") are accepted.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from coursekit.collect.names import fold, sanitise_id
from coursekit.paths import CourseError

# Column headers as Moodle and teachers write them, in several languages (recognised, never written:
# the only non-English words the engine holds besides those of collect/names.py).
ROSTER_COLUMNS = {
    "student_id": ("student_id", "student", "nbgrader_id", "id"),
    "full_name": ("full_name", "full name", "fullname", "name", "nom complet", "nom"),
    "first_name": ("first_name", "first name", "firstname", "nom de pila"),
    "last_name": ("last_name", "last name", "surname", "lastname", "cognoms"),
    "email": ("email", "email address", "e-mail", "adreça electrònica", "correu"),
    "id_number": ("id_number", "id number", "idnumber", "número d'identificació", "niub", "dni"),
    "username": ("username", "user name", "nom d'usuari"),
    "participant_id": ("participant_id", "participant", "identifier", "identificador"),
}


@dataclass
class Roster:
    """Students of the course, looked up by any identifier Moodle shows."""
    rows: list[dict] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> "Roster":
        if not path:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise CourseError(f"roster {path} not found: give the path of a CSV with a student_id column "
                              "(see `coursekit collect --help`), or none")
        with path.open(newline="", encoding="utf-8-sig") as f:
            sample = f.read(4096)
            f.seek(0)
            try:  # Moodle and spreadsheets write ',' or ';' (or tabs)
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.DictReader(f, dialect=dialect)
            header = {fold(h or ""): h for h in reader.fieldnames or []}
            columns = {}
            for key, names in ROSTER_COLUMNS.items():
                for name in names:
                    if name in header:
                        columns[key] = header[name]
                        break
            if "student_id" not in columns and not {"username", "id_number", "email"} & set(columns):
                raise CourseError(f"roster {path}: no student_id column (nor username / id_number / email "
                                  f"to derive it from); columns found: {', '.join(reader.fieldnames or [])}")
            rows = []
            for raw in reader:
                row = {key: (raw.get(col) or "").strip() for key, col in columns.items()}
                if not row.get("full_name") and (row.get("first_name") or row.get("last_name")):
                    row["full_name"] = f"{row.get('first_name', '')} {row.get('last_name', '')}".strip()
                if row.get("participant_id"):
                    row["participant_id"] = re.sub(r"\D", "", row["participant_id"])
                if not row.get("student_id"):
                    base = row.get("username") or row.get("id_number") or row.get("email", "").split("@")[0]
                    row["student_id"] = sanitise_id(base)
                if row["student_id"]:
                    rows.append(row)
        return cls(rows, path)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def by_name(self, full_name: str) -> list[dict]:
        key = fold(full_name)
        return [r for r in self.rows if r.get("full_name") and fold(r["full_name"]) == key]

    def find(self, name: str = "", pid: str = "", key: str = "") -> dict | None:
        """The roster row of a submission: by full name, else participant id, else any identifier."""
        if name:
            hits = self.by_name(name)
            if len(hits) == 1:
                return hits[0]
        if pid:
            hits = [r for r in self.rows if r.get("participant_id") == pid]
            if len(hits) == 1:
                return hits[0]
        if key:
            k = fold(key)
            for column in ("student_id", "email", "id_number", "username", "full_name"):
                hits = [r for r in self.rows if r.get(column) and fold(r[column]) == k]
                if len(hits) == 1:
                    return hits[0]
        return None
