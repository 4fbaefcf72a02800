"""Damaged and renamed submissions, as Colab, VS Code, browsers and Moodle produce them.

Owns the damage catalogue used by the repair tests and ``make demo``:

* :func:`mutate` returns a ``Variant.mutate`` function applying one named damage
  (``DAMAGES``) to a rendered submission; every damage keeps the student's
  answers, so a repaired submission must score exactly as its clean original;
* :func:`moodle_export` writes a class of variants as a Moodle "download all
  submissions" zip (one folder per submission, or flat files), with renamed
  notebooks, a notebook inside the student's own zip, optional broken uploads,
  and a roster CSV mapping Moodle's names to the variants' student ids.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import random
import unicodedata
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import nbformat

from coursekit.paths import Course, CourseError


def _nbg(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _answers(nb) -> list[int]:
    return [k for k, c in enumerate(nb.cells) if _nbg(c).get("solution") and c.cell_type == "code"]


def _tests(nb) -> list[int]:
    return [k for k, c in enumerate(nb.cells)
            if _nbg(c).get("grade") and not _nbg(c).get("solution") and c.cell_type == "code"]


def _stub(release, grade_id: str) -> str:
    for cell in release.cells:
        if _nbg(cell).get("grade_id") == grade_id:
            return cell.source
    raise CourseError(f"release notebook has no cell {grade_id!r}")


def _plain(source: str):
    return nbformat.v4.new_code_cell(source)  # a new cell, as Jupyter makes it (fresh id)


def _twin(cell):
    twin = copy.deepcopy(cell)
    twin["id"] = nbformat.v4.new_code_cell().id
    return twin


def _strip(nb) -> None:
    """VS Code / old Colab: every cell loses its nbgrader metadata and lock flags."""
    for cell in nb.cells:
        for key in ("nbgrader", "editable", "deletable"):
            cell.metadata.pop(key, None)


def _colab(nb) -> None:
    """What Colab writes back: its own metadata, its kernelspec, nbformat 4.0 without cell ids."""
    rng = random.Random(len(nb.cells))
    nb.metadata = {
        "colab": {"provenance": [], "name": "batchnorm.ipynb", "gpuType": "T4"},
        "accelerator": "GPU",
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"},
    }
    nb.nbformat_minor = 0
    for cell in nb.cells:
        cell.pop("id", None)
        cell.metadata["id"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP0123456789") for _ in range(12))
        if cell.cell_type == "code":
            cell.metadata["colab"] = {"base_uri": "https://localhost:8080/"}


def _answer_below(nb, release) -> None:
    """The answer typed into a new cell under the answer cell, which was emptied (metadata kept)."""
    k = _answers(nb)[0]
    answer = nb.cells[k].source
    nb.cells[k].source = ""
    nb.cells.insert(k + 1, _plain(answer))


def _answer_above(nb, release) -> None:
    """The answer pasted into a new cell above the untouched stub (which, run after it, would undo it)."""
    k = _answers(nb)[0]
    answer = nb.cells[k].source
    nb.cells[k].source = _stub(release, _nbg(nb.cells[k])["grade_id"])
    nb.cells.insert(k, _plain(answer))


def _duplicate_answer(nb, release) -> None:
    """Colab's copy cell: two cells with the same grade_id, the student's work first, the stub after."""
    k = _answers(nb)[0]
    twin = _twin(nb.cells[k])
    twin.source = _stub(release, _nbg(twin)["grade_id"])
    nb.cells.insert(k + 1, twin)


def _duplicate_test(nb) -> None:
    k = _tests(nb)[0]
    twin = _twin(nb.cells[k])
    nb.cells.insert(k + 1, twin)


def _delete_test(nb) -> None:
    del nb.cells[_tests(nb)[0]]


def _test_markdown(nb, keep_metadata: bool) -> None:
    cell = nb.cells[_tests(nb)[-1]]
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    if not keep_metadata:
        for key in ("nbgrader", "editable", "deletable"):
            cell.metadata.pop(key, None)


def _edit_test(nb) -> None:
    """A test cell the student 'fixed' (its asserts commented out); nbgrader restores it."""
    cell = nb.cells[_tests(nb)[0]]
    cell.source = "\n".join("# " + line if line.strip().startswith("assert") else line
                            for line in cell.source.split("\n"))


def _kernelspec(nb) -> None:
    nb.metadata["kernelspec"] = {"name": "conda-env-dl-py", "display_name": "Python [conda env:dl]", "language": "python"}


def _everything(nb, release) -> None:
    """The worst case seen in a class: Colab, stripped metadata, answer moved, a test deleted, one retyped."""
    _answer_above(nb, release)
    _delete_test(nb)
    _test_markdown(nb, keep_metadata=True)
    _strip(nb)
    _colab(nb)


# name -> (description, function(nb, release))
DAMAGES: dict[str, tuple[str, Callable]] = {
    "strip_metadata": ("nbgrader metadata stripped from every cell", lambda nb, r: _strip(nb)),
    "colab": ("saved by Colab (its metadata, kernelspec, nbformat 4.0)", lambda nb, r: _colab(nb)),
    "colab_stripped": ("Colab metadata and no nbgrader metadata", lambda nb, r: (_strip(nb), _colab(nb))),
    "answer_below": ("answer typed in a new cell below the emptied answer cell", _answer_below),
    "answer_above": ("answer pasted in a new cell above the untouched stub", _answer_above),
    "answer_above_stripped": ("answer above the stub, metadata stripped",
                              lambda nb, r: (_answer_above(nb, r), _strip(nb))),
    "duplicate_answer": ("answer cell duplicated (same grade_id), stub copy after it", _duplicate_answer),
    "duplicate_test": ("test cell duplicated (same grade_id)", lambda nb, r: _duplicate_test(nb)),
    "delete_test": ("a test cell deleted", lambda nb, r: _delete_test(nb)),
    "test_markdown": ("a test cell retyped as markdown", lambda nb, r: _test_markdown(nb, True)),
    "test_markdown_stripped": ("a test cell retyped as markdown, metadata lost",
                               lambda nb, r: _test_markdown(nb, False)),
    "edit_test": ("asserts of a test cell commented out", lambda nb, r: _edit_test(nb)),
    "kernelspec": ("foreign kernelspec", lambda nb, r: _kernelspec(nb)),
    "everything": ("Colab, stripped, answer moved, test deleted and retyped", _everything),
}


def mutate(kind: str, release) -> Callable:
    """A ``Variant.mutate`` function applying damage ``kind`` (needs the release notebook for stubs)."""
    if kind not in DAMAGES:
        raise CourseError(f"unknown damage {kind!r} (known: {', '.join(DAMAGES)})")
    fn = DAMAGES[kind][1]

    def apply(nb) -> None:
        fn(nb, release)
    apply.__name__ = f"damage_{kind}"
    return apply


def chain(*fns: Callable | None) -> Callable:
    """Apply several ``mutate`` functions in turn (a variant's own one first)."""
    def apply(nb) -> None:
        for fn in fns:
            if fn is not None:
                fn(nb)
    return apply


# ---------------------------------------------------------------- Moodle export

# (a synthetic class as Moodle would export it: names with diacritics test the intake's name folding)
FIRST = ["Júlia", "Marc", "Núria", "Pau", "Laia", "Jordi", "Aina", "Arnau", "Mireia", "Oriol",
         "Èlia", "Guillem", "Carla", "Biel", "Queralt", "Roger", "Martina", "Àlex", "Berta", "Ferran"]
LAST = ["Puig", "Soler", "Vidal", "Ferrer", "Serra", "Roca", "Mas", "Font", "Casals", "Pujol",
        "Vila", "Riera", "Bosch", "Camps", "Oliver", "Sala", "Mir", "Coll", "Prat", "Pons"]

# How students rename the notebook they hand in (Colab copies, browser downloads, hand edits).
# "<zip>|<name>": the student zipped the notebook (and macOS junk) before uploading it.
RENAMES = ["{nb}.ipynb", "Copy of {nb}.ipynb", "Còpia de {nb}.ipynb", "{nb} (1).ipynb",
           "{Nb}.ipynb", "entrega.zip|{nb}.ipynb", "{nb}_entrega.ipynb", "Copia de {nb} (2).ipynb"]

# Damages the demo class receives in turn (all repairable: same score as the clean original).
DEMO_DAMAGES = ["colab", "strip_metadata", "answer_above", "duplicate_answer", "delete_test",
                "test_markdown_stripped", "edit_test", "everything"]


def person(student: str, index: int) -> dict:
    """A stable, realistic Moodle identity for a generated student id."""
    h = zlib.crc32(student.encode())
    first, last = FIRST[(index + h) % len(FIRST)], LAST[(h // 7) % len(LAST)]
    second = LAST[(h // 131) % len(LAST)]
    full = f"{first} {last} {second}"
    ascii_name = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore").decode().lower()
    return {
        "student_id": student,
        "participant_id": str(100000 + h % 900000),
        "full_name": full,
        "email": f"{ascii_name}.{h % 1000}@estudiant.example.edu",
        "id_number": f"{h % 100000000:08d}",
    }


def _prefix(p: dict, plugin: str = "file") -> str:
    # Moodle: "<full name>_<participant id>_assignsubmission_<plugin>_"
    return f"{p['full_name'].replace('_', ' ')}_{p['participant_id']}_assignsubmission_{plugin}_"


def write_roster(path: Path, people: list[dict]) -> None:
    """Write (or merge into) a roster CSV: student_id, participant_id, full_name, email, id_number."""
    rows: dict[str, dict] = {}
    fields = ["student_id", "participant_id", "full_name", "email", "id_number"]
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows[row.get("student_id", "")] = row
    for p in people:
        rows[p["student_id"]] = {k: p.get(k, "") for k in fields}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows.values():
            writer.writerow(row)


def moodle_export(course: Course, assignment: str, variants, dest_zip: Path, damage: bool = True,
                  folders: bool = True, extras: bool | None = None, broken: bool = False,
                  roster: Path | None | bool = None, damages: list[str] | None = None,
                  renames: list[str] | None = None) -> dict:
    """Write ``variants`` as a Moodle "download all submissions" zip at ``dest_zip``.

    ``damage``: apply ``damages`` (default ``DEMO_DAMAGES``) and ``renames``
    (default ``RENAMES``; one student's notebook goes inside a zip of their
    own) in turn; ``folders``: Moodle's "download
    submissions in folders" layout, else flat ``<prefix><file>`` names;
    ``extras`` (default: ``damage``): add students who uploaded the wrong file,
    two different notebooks, or only online text; ``broken``: add a truncated
    notebook and a ``.py`` renamed ``.ipynb``.  ``roster`` (default
    ``<course>/roster.csv``; ``False``: none) receives the Moodle identities.

    Returns ``{"people": {student: identity}, "files": {student: [names in the zip]},
    "damage": {student: kind}, "extras": {student: what}}``.
    """
    from coursekit import classgen  # the generator core; imported late (it imports this module's users)

    dest_zip = Path(dest_zip)
    dest_zip.parent.mkdir(parents=True, exist_ok=True)
    extras = damage if extras is None else extras
    release_paths = sorted((course.release / assignment).glob("*.ipynb"))
    if not release_paths:
        raise CourseError(f"no release notebook in {course.release / assignment}: run `coursekit release` first")
    releases = {p.stem: nbformat.read(str(p), as_version=4) for p in release_paths}
    out = {"people": {}, "files": {}, "damage": {}, "extras": {}}
    entries: list[tuple[str, bytes]] = []

    def add(p: dict, filename: str, data: bytes, plugin: str = "file") -> None:
        name = f"{_prefix(p, plugin)}/{filename}" if folders else f"{_prefix(p, plugin)}{filename}"
        entries.append((name, data))
        out["files"].setdefault(p["student_id"], []).append(name)

    damages = damages or DEMO_DAMAGES
    renames = renames or RENAMES
    for index, variant in enumerate(variants):
        p = person(variant.student, index)
        out["people"][variant.student] = p
        if damage:
            kind = damages[index % len(damages)]
            name = classgen._notebook_path(course.release, assignment, variant.notebook).stem
            v = copy.copy(variant)
            v.mutate = chain(variant.mutate, mutate(kind, releases[name]))
            out["damage"][variant.student] = kind
        else:
            v = variant
        name, nb = classgen.render(course, assignment, v)
        data = nbformat.writes(nb).encode("utf-8") if not damage else json.dumps(nb, indent=1, ensure_ascii=False).encode()
        filename = renames[index % len(renames)].format(nb=name, Nb=name.capitalize()) if damage else f"{name}.ipynb"
        if "|" in filename:  # this student zipped the notebook before uploading it
            zipname, filename = filename.split("|", 1)
            folder = zipname[:-len(".zip")]
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(f"{folder}/{filename}", data)
                z.writestr(f"__MACOSX/{folder}/._{filename}", b"\x00\x05\x16\x07 not a notebook")
            add(p, zipname, buf.getvalue())
        else:
            add(p, filename, data)

    if extras:
        stem = release_paths[0].stem
        base = len(variants)
        wrong = person("extra_wrong_file", base)
        add(wrong, "informe.pdf", b"%PDF-1.4\n% not a notebook\n")
        add(wrong, "notes.txt", "m'he equivocat de fitxer".encode())
        out["extras"]["extra_wrong_file"] = "uploaded a PDF and a text file, no notebook"
        text_only = person("extra_online_text", base + 1)
        add(text_only, "onlinetext.html", "<p>No sé fer-ho</p>".encode(), plugin="onlinetext")
        out["extras"]["extra_online_text"] = "online text only"
        two = person("extra_two_notebooks", base + 2)
        nb = releases[stem]
        first = copy.deepcopy(nb)
        second = copy.deepcopy(nb)
        second.cells.append(nbformat.v4.new_markdown_cell("versió nova"))
        add(two, f"{stem}.ipynb", nbformat.writes(first).encode())
        add(two, f"Copy of {stem}.ipynb", nbformat.writes(second).encode())
        out["extras"]["extra_two_notebooks"] = "two different candidate notebooks"
        out["people"].update({"extra_wrong_file": wrong, "extra_online_text": text_only,
                              "extra_two_notebooks": two})
    if broken:
        stem = release_paths[0].stem
        base = len(variants) + 3
        truncated = person("broken_truncated", base)
        text = nbformat.writes(releases[stem]).encode()
        add(truncated, f"{stem}.ipynb", text[: len(text) // 2])
        script = person("broken_script", base + 1)
        add(script, f"{stem}.ipynb", b"import math\n\ndef answer(x):\n    return math.sqrt(x)\n")
        out["people"]["broken_truncated"], out["people"]["broken_script"] = truncated, script
        out["extras"]["broken_truncated"] = "truncated notebook JSON"
        out["extras"]["broken_script"] = "a .py script renamed .ipynb"

    with zipfile.ZipFile(dest_zip, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    if roster is not False:
        write_roster(Path(roster) if roster else course.root / "roster.csv", list(out["people"].values()))
    return out
