"""What every release notebook tells the student around the exercises.

``StudentGuide`` is a preprocessor of ``nbgrader generate_assignment`` (plugged
in last by :mod:`coursekit.nbconfig`, after nbgrader has removed solutions and
hidden tests).  It adds to each release notebook:

- right after the Colab badge, the "before you start" text (save a copy to
  Drive, pick a GPU runtime, what to do after a disconnect), read from
  ``notebooks/abans_de_comencar.md``; its ``{temps_mode_complet}`` line says
  how long that notebook's full mode took when measured on a GPU machine
  (``notebooks/full_mode_times.json``, written by ``coursekit time-full-mode``),
  as this notebook's time while its code is the one measured, as an earlier
  version's once the code has changed (:mod:`coursekit.codeprint`);
- at the end, the "self-check and hand-in" text (``notebooks/comprovacio_i_entrega.md``)
  and a self-check code cell.  The self-check re-runs the *visible* part of
  every autograded test cell of that release notebook, each in a copy of the
  student's namespace with its output captured, and prints one Catalan line per
  graded part: passes, still blank, or the first line of what failed.  It then
  lists the written answers, which only a person can grade.

The texts are course content and live beside the shared code in ``notebooks/``;
since they are inserted at generation time, every release carries the current
text (``coursekit release --check`` fails otherwise).

The self-check is not an nbgrader cell: autograding keeps it as the student
left it, and it does nothing when nbgrader executes the notebook
(``NBGRADER_EXECUTION`` set), so it costs the grader no time and cannot change
a score.  It only contains what the release already shows (visible tests), so
it reveals no hidden test.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Unicode

from coursekit.codeprint import file_fingerprint

ROLE_BEFORE = "abans-de-comencar"
ROLE_HANDIN_TEXT = "comprovacio-i-entrega"
ROLE_SELF_CHECK = "comprovacio-final"
BEFORE_FILE = "abans_de_comencar.md"
TIMES_FILE = "full_mode_times.json"
TIMES_PLACEHOLDER = "{temps_mode_complet}"
HANDIN_FILE = "comprovacio_i_entrega.md"

# The self-check's code, after the table of parts.  Kept small and without
# dependencies beyond the standard library and IPython, as Colab ships them.
_RUNNER = r'''
def _comprovacio_final(parts, respostes):
    import contextlib, io, os, traceback
    if os.environ.get("NBGRADER_EXECUTION"):
        print("Comprovació final omesa: el corrector automàtic ja executa totes les proves.")
        return
    try:
        shell = get_ipython()  # noqa: F821 (IPython defines it in a notebook)
    except NameError:
        shell = None
    total = fets = 0
    for nom, punts, descripcio, codi in parts:
        total += punts
        if shell is not None:
            codi = shell.transform_cell(codi)
        espai = dict(globals())
        sortida = io.StringIO()
        try:
            with contextlib.redirect_stdout(sortida), contextlib.redirect_stderr(sortida):
                exec(compile(codi, f"<comprovació {nom}>", "exec"), espai)
        except NotImplementedError:
            estat = "· en blanc: hi queda el codi inicial (NotImplementedError) per completar"
        except NameError as error:
            estat = f"· falta alguna cosa: {error}. Heu executat (i completat) les cel·les d'abans?"
        except AssertionError as error:
            missatge = (str(error).strip().splitlines() or ["una comprovació no es compleix"])[0]
            estat = f"✘ falla: {missatge[:300]}"
        except Exception as error:  # any other error of the student's code: say which, never crash
            linia = traceback.format_exception_only(type(error), error)[-1].strip()
            estat = f"✘ error: {linia[:300]}"
        else:
            estat = "✔ passa les comprovacions visibles"
            fets += punts
        print(f"{nom} ({punts} p.) — {descripcio}\n    {estat}")
    print(f"\nComprovacions visibles superades: {fets} de {total} punts automàtics.")
    if respostes:
        print("Respostes escrites (les corregeix el professorat; reviseu que no en quedi cap en blanc):")
        for nom, punts in respostes:
            print(f"  - {nom} ({punts} p.)")


_comprovacio_final(_PARTS, _RESPOSTES)
'''


def _describe(source: str) -> str:
    """What the part checks: the test cell's leading comment, without its "Prova" prefix, to its first sentence."""
    comment = []
    for line in source.lstrip().split("\n"):
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    text = " ".join(comment)
    for prefix in ("Prova:", "Prova"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip(" -—:")
            break
    # "(2 punts) - sortida ..." keeps only the description: the points are printed anyway
    if text.startswith("(") and ")" in text:
        text = text[text.index(")") + 1:].strip(" -—:")
    for end in (". ", "; "):
        if end in text:
            text = text[:text.index(end)]
    text = text.rstrip(".;")
    return (text[:137] + "…" if len(text) > 140 else text) or "comprovació"


def self_check_source(nb) -> str:
    """The self-check cell of a release notebook: its visible tests and written answers, then the runner."""
    parts, answers = [], []
    for cell in nb.cells:
        if not is_grade(cell):
            continue
        meta = cell.metadata["nbgrader"]
        points = meta.get("points", 0)
        points = int(points) if float(points).is_integer() else float(points)
        if cell.cell_type == "code" and not is_solution(cell):
            parts.append((meta["grade_id"], points, _describe(cell.source), cell.source))
        elif cell.cell_type == "markdown":
            answers.append((meta["grade_id"], points))
    # Colab shows a cell whose first line is a "@title" form as its title only, code folded away.
    lines = ['# @title Comprovació final (executeu-la; no cal llegir-ne el codi) { display-mode: "form" }',
             "# Torna a executar les comprovacions visibles de cada part i en fa un resum. No la modifiqueu.",
             "_PARTS = ["]
    for part in parts:
        lines.append(f"    {json.dumps(list(part), ensure_ascii=False)},")
    lines.append("]")
    lines.append(f"_RESPOSTES = {json.dumps([list(a) for a in answers], ensure_ascii=False)}")
    return "\n".join(lines) + "\n" + _RUNNER.rstrip("\n")


def full_mode_minutes(times: dict, assignment: str) -> int | None:
    """Whole minutes (rounded up) that ``assignment``'s full mode took in the measurement, if it was measured."""
    entry = times.get("notebooks", {}).get(assignment, {})
    seconds = entry.get("estimated_seconds", entry.get("seconds"))
    return None if seconds is None or "error" in entry else max(1, math.ceil(seconds / 60))


def time_line(times: dict, assignment: str, code: str | None = None) -> str:
    """The "how long it takes" item of the before-you-start text (empty if the notebook was never measured).

    ``code`` is the fingerprint of the source notebook now (:mod:`coursekit.codeprint`): the time is
    stated as this notebook's only while it equals the fingerprint recorded with the measurement;
    otherwise it is stated as an earlier version's, with the notebook not measured since."""
    minutes = full_mode_minutes(times, assignment)
    if minutes is None:
        return ""
    entry = times["notebooks"][assignment]
    machine = times.get("machine", {})
    gpu = str(machine.get("gpu") or "GPU").replace("NVIDIA ", "")
    cpus = machine.get("cpu_count")
    where = f"una GPU {gpu} amb {cpus} nuclis de CPU, com els de Colab" if cpus else f"una GPU {gpu}"
    amount = f"**{minutes} minut{'s' if minutes != 1 else ''}**"
    slower = "La GPU T4 gratuïta de Colab és més lenta: compteu-hi més temps."
    if code is not None and entry.get("code") == code:
        return (f"6. **Quant triga.** En mode complet, executar aquest quadern sencer va trigar uns {amount} "
                f"en {where} (sense comptar la baixada de les dades). {slower}")
    return (f"6. **Quant triga.** En mode complet, una versió anterior d'aquest quadern va trigar uns {amount} "
            f"en {where} (sense comptar la baixada de les dades); el codi ha canviat des d'aleshores i encara no "
            f"s'ha tornat a mesurar. {slower}")


def _role(cell) -> str | None:
    return cell.metadata.get("coursekit", {}).get("role")


def _new_cell(kind: str, source: str, role: str, minor: int):
    make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
    cell = make(source, metadata={"coursekit": {"role": role}, "editable": False, "deletable": False})
    if minor >= 5:
        cell["id"] = role  # fixed id: a regenerated release must be byte-identical
    else:
        cell.pop("id", None)
    return cell


class StudentGuide(NbGraderPreprocessor):
    """Add the "before you start" text after the badge and the self-check and hand-in section at the end."""

    folder = Unicode("notebooks", help="folder of the course root that holds the guide's texts").tag(config=True)

    def _text(self, filename: str) -> str:
        from nbgrader.coursedir import CourseDirectory

        path = Path(CourseDirectory(config=self.config).root) / self.folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the student guide of every release notebook is read from it")
        return path.read_text(encoding="utf-8").strip("\n")

    @staticmethod
    def _source_fingerprint(coursedir, assignment: str, resources) -> str | None:
        """The code fingerprint of the source notebook this release notebook is generated from."""
        name = resources.get("unique_key") or ""
        path = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{name}.ipynb"
        return file_fingerprint(path) if assignment and name and path.is_file() else None

    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        folder = Path(coursedir.root) / self.folder
        if not any((folder / f).is_file() for f in (BEFORE_FILE, HANDIN_FILE)):
            return nb, resources  # a course without a student guide (nbgrader's own test courses)
        minor = nb.get("nbformat_minor", 0)
        nb.cells = [c for c in nb.cells if _role(c) not in (ROLE_BEFORE, ROLE_HANDIN_TEXT, ROLE_SELF_CHECK)]
        times_path = folder / TIMES_FILE
        times = json.loads(times_path.read_text(encoding="utf-8")) if times_path.is_file() else {}
        assignment = resources.get("nbgrader", {}).get("assignment", "")
        line = time_line(times, assignment, self._source_fingerprint(coursedir, assignment, resources))
        before_text = self._text(BEFORE_FILE).replace(TIMES_PLACEHOLDER, line).rstrip("\n")
        before = _new_cell("markdown", before_text, ROLE_BEFORE, minor)
        at = 1 if nb.cells and _role(nb.cells[0]) == "colab-badge" else 0
        nb.cells.insert(at, before)
        nb.cells.append(_new_cell("markdown", self._text(HANDIN_FILE), ROLE_HANDIN_TEXT, minor))
        nb.cells.append(_new_cell("code", self_check_source(nb), ROLE_SELF_CHECK, minor))
        return nb, resources
