"""What every release notebook tells the student around the exercises.

``StudentGuide`` is a preprocessor of ``nbgrader generate_assignment`` (plugged
in last by :mod:`coursekit.nbconfig`, after nbgrader has removed solutions and
hidden tests).  It adds to each release notebook:

- right after the Colab badge, the "before you start" text (save a copy to
  Drive, pick a GPU runtime, what to do after a disconnect), read from
  ``notebooks/<before_file>``; its ``<times_placeholder>`` line says
  how long that notebook's full mode took when measured on a GPU machine
  (``notebooks/full_mode_times.json``, written by ``coursekit time-full-mode``),
  as this notebook's time while its code is the one measured, as an earlier
  version's once the code has changed (:mod:`coursekit.codeprint`);
- at the end, the "self-check and hand-in" text (``notebooks/<handin_file>``)
  and a self-check code cell.  The self-check re-runs the *visible* part of
  every autograded test cell of that release notebook, each in a copy of the
  student's namespace with its output captured, and prints one line per
  graded part (in the course's words: ``StudentGuide.self_check``): passes,
  still blank, or the first line of what failed.  It then lists the written
  answers, which only a person can grade.

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
from traitlets import Dict, Unicode

from coursekit.codeprint import file_fingerprint

# The guide's names, English unless the course names them itself (StudentGuide's traits of the same
# names, lower case): the roles of the cells it adds (also their cell ids: coursekit metadata "role"),
# its two texts in the course's notebooks/ folder, and the placeholder of the run-time line in the first.
ROLE_BEFORE = "before-you-start"
ROLE_HANDIN_TEXT = "self-check-and-hand-in"
ROLE_SELF_CHECK = "final-self-check"
BEFORE_FILE = "before_you_start.md"
TIMES_FILE = "full_mode_times.json"
TIMES_PLACEHOLDER = "{full_mode_time}"
HANDIN_FILE = "self_check_and_hand_in.md"

# The self-check's code, after the table of parts.  Kept small and without
# dependencies beyond the standard library and IPython, as Colab ships them.
_RUNNER = r'''
def _self_check(parts, answers):
    import contextlib, io, os, traceback
    if os.environ.get("NBGRADER_EXECUTION"):
        print("Final self-check skipped: the automatic grader runs every test itself.")
        return
    try:
        shell = get_ipython()  # noqa: F821 (IPython defines it in a notebook)
    except NameError:
        shell = None
    total = passed = 0
    for name, points, description, code in parts:
        total += points
        if shell is not None:
            code = shell.transform_cell(code)
        namespace = dict(globals())
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                exec(compile(code, f"<self-check {name}>", "exec"), namespace)
        except NotImplementedError:
            status = "- blank: the starting code (NotImplementedError) is still there to complete"
        except NameError as error:
            status = f"- something is missing: {error}. Did you run (and complete) the cells above?"
        except AssertionError as error:
            message = (str(error).strip().splitlines() or ["a check does not hold"])[0]
            status = f"✘ fails: {message[:300]}"
        except Exception as error:  # any other error of the student's code: say which, never crash
            line = traceback.format_exception_only(type(error), error)[-1].strip()
            status = f"✘ error: {line[:300]}"
        else:
            status = "✔ passes the visible checks"
            passed += points
        print(f"{name} ({points} p.) — {description}\n    {status}")
    print(f"\nVisible checks passed: {passed} of {total} automatic points.")
    if answers:
        print("Written answers (marked by the teachers; check that none is left blank):")
        for name, points in answers:
            print(f"  - {name} ({points} p.)")


_self_check(_PARTS, _ANSWERS)
'''

# The self-check cell's words, in English unless the course sets its own (``c.StudentGuide.self_check``):
# its Colab title line and comment line, the name of its table of written answers (the runner reads it),
# the runner itself, what a part without a description is called, and the prefixes that the leading
# comment of a test cell may start with (dropped from the description).
SELF_CHECK = {
    "title": '# @title Final self-check (run it; no need to read its code) { display-mode: "form" }',
    "comment": "# Runs the visible checks of every part again and sums them up. Do not change it.",
    "answers_variable": "_ANSWERS",
    "runner": _RUNNER,
    "no_description": "check",
    "test_prefixes": ["Test:", "Test"],
}

# The "how long it takes" item of the before-you-start text, in English unless the course sets its own
# words (``c.StudentGuide.run_time``): ``same`` while the code is the one measured, ``earlier`` after it
# changed; {amount} is ``amount_one`` or ``amount_many``, {where} ``where_cpus`` or ``where``.
RUN_TIME = {
    "where_cpus": "a {gpu} GPU with {cpus} CPU cores, like Colab's",
    "where": "a {gpu} GPU",
    "amount_one": "**{minutes} minute**",
    "amount_many": "**{minutes} minutes**",
    "slower": "Colab's free T4 GPU is slower: allow more time.",
    "same": "6. **How long it takes.** In full mode, running this whole notebook took about {amount} on {where} "
            "(not counting the data download). {slower}",
    "earlier": "6. **How long it takes.** In full mode, an earlier version of this notebook took about {amount} "
               "on {where} (not counting the data download); the code has changed since and has not been "
               "measured again. {slower}",
}


def _describe(source: str, prefixes=tuple(SELF_CHECK["test_prefixes"]),
              fallback: str = SELF_CHECK["no_description"]) -> str:
    """What the part checks: the test cell's leading comment, without its "Test" prefix (``prefixes``), to its
    first sentence (``fallback`` when there is none)."""
    comment = []
    for line in source.lstrip().split("\n"):
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    text = " ".join(comment)
    for prefix in prefixes:
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
    return (text[:137] + "…" if len(text) > 140 else text) or fallback


def self_check_source(nb, words: dict | None = None) -> str:
    """The self-check cell of a release notebook: its visible tests and written answers, then the runner
    (``words``: the course's, keys of :data:`SELF_CHECK`; those left out keep the English default)."""
    words = {**SELF_CHECK, **(words or {})}
    parts, answers = [], []
    for cell in nb.cells:
        if not is_grade(cell):
            continue
        meta = cell.metadata["nbgrader"]
        points = meta.get("points", 0)
        points = int(points) if float(points).is_integer() else float(points)
        if cell.cell_type == "code" and not is_solution(cell):
            parts.append((meta["grade_id"], points,
                          _describe(cell.source, tuple(words["test_prefixes"]), words["no_description"]), cell.source))
        elif cell.cell_type == "markdown":
            answers.append((meta["grade_id"], points))
    # Colab shows a cell whose first line is a "@title" form as its title only, code folded away.
    lines = [words["title"], words["comment"], "_PARTS = ["]
    for part in parts:
        lines.append(f"    {json.dumps(list(part), ensure_ascii=False)},")
    lines.append("]")
    lines.append(f"{words['answers_variable']} = {json.dumps([list(a) for a in answers], ensure_ascii=False)}")
    return "\n".join(lines) + "\n" + words["runner"].rstrip("\n")


def full_mode_minutes(times: dict, assignment: str) -> int | None:
    """Whole minutes (rounded up) that ``assignment``'s full mode took in the measurement, if it was measured."""
    entry = times.get("notebooks", {}).get(assignment, {})
    seconds = entry.get("estimated_seconds", entry.get("seconds"))
    return None if seconds is None or "error" in entry else max(1, math.ceil(seconds / 60))


def time_line(times: dict, assignment: str, code: str | None = None, words: dict | None = None) -> str:
    """The "how long it takes" item of the before-you-start text (empty if the notebook was never measured).

    ``code`` is the fingerprint of the source notebook now (:mod:`coursekit.codeprint`): the time is
    stated as this notebook's only while it equals the fingerprint recorded with the measurement;
    otherwise it is stated as an earlier version's, with the notebook not measured since.  ``words``: the
    course's (keys of :data:`RUN_TIME`; those left out keep the English default)."""
    words = {**RUN_TIME, **(words or {})}
    minutes = full_mode_minutes(times, assignment)
    if minutes is None:
        return ""
    entry = times["notebooks"][assignment]
    machine = times.get("machine", {})
    gpu = str(machine.get("gpu") or "GPU").replace("NVIDIA ", "")
    cpus = machine.get("cpu_count")
    where = words["where_cpus"].format(gpu=gpu, cpus=cpus) if cpus else words["where"].format(gpu=gpu)
    amount = words["amount_one" if minutes == 1 else "amount_many"].format(minutes=minutes)
    sentence = words["same" if code is not None and entry.get("code") == code else "earlier"]
    return sentence.format(amount=amount, where=where, slower=words["slower"])


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
    self_check = Dict(SELF_CHECK, help="the self-check cell's words and code (keys of "
                                       "coursekit.student_guide.SELF_CHECK)").tag(config=True)
    run_time = Dict(RUN_TIME, help="the run-time sentence of the before-you-start text (keys of "
                                   "coursekit.student_guide.RUN_TIME)").tag(config=True)
    before_file = Unicode(BEFORE_FILE, help="the before-you-start text, in the folder").tag(config=True)
    handin_file = Unicode(HANDIN_FILE, help="the self-check and hand-in text, in the folder").tag(config=True)
    times_placeholder = Unicode(TIMES_PLACEHOLDER, help="what the run-time line replaces in the "
                                                        "before-you-start text").tag(config=True)
    role_before = Unicode(ROLE_BEFORE, help="role (and cell id) of the before-you-start cell").tag(config=True)
    role_handin = Unicode(ROLE_HANDIN_TEXT, help="role (and cell id) of the hand-in text cell").tag(config=True)
    role_self_check = Unicode(ROLE_SELF_CHECK, help="role (and cell id) of the self-check cell").tag(config=True)

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
        if not any((folder / f).is_file() for f in (self.before_file, self.handin_file)):
            return nb, resources  # a course without a student guide (nbgrader's own test courses)
        minor = nb.get("nbformat_minor", 0)
        nb.cells = [c for c in nb.cells if _role(c) not in (self.role_before, self.role_handin, self.role_self_check)]
        times_path = folder / TIMES_FILE
        times = json.loads(times_path.read_text(encoding="utf-8")) if times_path.is_file() else {}
        assignment = resources.get("nbgrader", {}).get("assignment", "")
        line = time_line(times, assignment, self._source_fingerprint(coursedir, assignment, resources),
                         self.run_time)
        before_text = self._text(self.before_file).replace(self.times_placeholder, line).rstrip("\n")
        before = _new_cell("markdown", before_text, self.role_before, minor)
        at = 1 if nb.cells and _role(nb.cells[0]) == "colab-badge" else 0
        nb.cells.insert(at, before)
        nb.cells.append(_new_cell("markdown", self._text(self.handin_file), self.role_handin, minor))
        nb.cells.append(_new_cell("code", self_check_source(nb, self.self_check), self.role_self_check, minor))
        return nb, resources
