"""One Catalan voice in everything a student reads (glossary: notebooks/README.md).

Scanned: the Markdown cells of every release notebook, the comments and string literals of their code
cells, the student guide texts and the shared code in notebooks/, and the string literals of the course's
package whose words reach students (its messages for the engine, its checks).  The engine itself
speaks no Catalan: its strings hold none, and its components' default words are English; the course
gives its words through its nbgrader_config.py (``bncourse.messages.configure``).  Code spans
(`...`), italic glosses in parentheses «(*batch*)» and identifiers are not prose and are skipped.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

from conftest import REPO
from bncourse import ASSIGNMENTS

# variant -> what the glossary uses instead
BANNED = {
    r"\b(?:teu|teva|teus|teves|tu)\b": "vosaltres (vostre, vostra)",
    r"\bbatch(?:es)?\b": "lot / lots / mida del lot",
    r"\bllibret(?:a|es)\b": "quadern",
    r"\bvàreu\b": "vau",
    r"\blearning rates?\b": "taxa d'aprenentatge",
    r"\btransfer learning\b": "aprenentatge per transferència",
    r"\bdues xifres\b": "dos valors",
    r"\bca\b": "gos",
}
_NOT_PROSE = [
    re.compile(r"`[^`\n]*`"),                       # code spans
    re.compile(r"\(\s*\*[^*\n]+\*\s*\)"),           # italic glosses in parentheses: (*batch*)
    re.compile(r"\bBatch[ -]Normali[sz]ation\b", re.I),
    re.compile(r"\]\([^)\s]*\)"),                   # link targets
    re.compile(r"https?://\S+"),
]
# In the strings of Python files (docstrings and patterns are English, for developers) only the Catalan
# variants count: the English words batch / learning rate are legitimate there.
ENGINE_BANNED = {p: w for p, w in BANNED.items() if "batch" not in p and "learning" not in p}
# Where Catalan words for students live in Python: the course's package (its messages for the engine,
# its checks' details).
CODE_FILES = ["src/bncourse/messages.py", "src/bncourse/checks/__init__.py",
              "src/bncourse/checks/a1_batchnorm1d.py", "src/bncourse/checks/a2_batchnorm2d.py",
              "src/bncourse/checks/a3_alexnet_bn.py", "src/bncourse/checks/a4_hyperparameters.py",
              "src/bncourse/checks/a4_hyperparameters_probe.py", "src/bncourse/checks/a5_modern_architectures.py",
              "src/bncourse/checks/a5_modern_architectures_probe.py"]
# (the engine writes no Catalan of its own: tests/test_course_utils.py checks that its strings hold none)


def _prose(text: str) -> str:
    for pattern in _NOT_PROSE:
        text = pattern.sub(" ", text)
    return text


def _code_text(source: str) -> str:
    """Comments and string literals of Python code (IPython magics and shell lines are dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.type == tokenize.COMMENT:
                out.append(tok.string)
            elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out.append(source)
    return "\n".join(out)


def _violations(where: str, text: str, banned: dict[str, str] = BANNED) -> list[str]:
    found = []
    for n, line in enumerate(_prose(text).splitlines(), 1):
        for pattern, instead in banned.items():
            for m in re.finditer(pattern, line, re.I):
                found.append(f"{where}:{n}: «{m.group(0)}» → {instead}: …{line.strip()[:120]}")
    return found


def _notebook_violations(path: Path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        text = cell.source if cell.cell_type == "markdown" else _code_text(cell.source)
        found += _violations(f"{path.relative_to(REPO)} cell {i}", text)
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_notebook_speaks_with_the_glossary_voice(assignment):
    found = []
    for path in sorted((REPO / "release" / assignment).glob("*.ipynb")):
        found += _notebook_violations(path)
    assert not found, "variants the glossary (notebooks/README.md) replaces:\n" + "\n".join(found)


def test_shared_texts_and_student_messages_speak_with_the_glossary_voice():
    found = []
    for path in sorted((REPO / "notebooks").glob("*.md")):
        if path.name == "README.md":
            continue  # the glossary itself names the variants
        found += _violations(str(path.relative_to(REPO)), path.read_text(encoding="utf-8"))
    for path in sorted((REPO / "notebooks").glob("*.py")):
        found += _violations(str(path.relative_to(REPO)), _code_text(path.read_text(encoding="utf-8")))
    for name in CODE_FILES:
        path = REPO / name
        strings = [t for t in _code_text(path.read_text(encoding="utf-8")).splitlines()
                   if not t.lstrip().startswith("#")]  # engine comments are English, for developers
        found += _violations(str(path.relative_to(REPO)), "\n".join(strings), ENGINE_BANNED)
    assert not found, "variants the glossary (notebooks/README.md) replaces:\n" + "\n".join(found)


def test_the_glossary_test_catches_each_variant_and_spares_code_and_glosses():
    """The scanner itself: each banned variant is found in prose, and nothing in code spans or glosses."""
    for sample in ("Desa la teva còpia", "la mida del batch", "aquesta llibreta", "com vàreu veure",
                   "el learning rate", "fem transfer learning", "dues xifres", "un ca"):
        assert _violations("x", sample), sample
    for sample in ("la mida del lot (*batch*)", "`batch_size`", "Batch Normalization", "taxa (*learning rate*)"):
        assert not _violations("x", sample), sample
    assert not _violations("x", _code_text("batch_size = 64  # mida del lot\nx_batch = 1"))
    assert _violations("x", _code_text('print("la teva xarxa")'))


# ---------------------------------------------------------------------------------------------------------
# the engine speaks no Catalan of its own

ENGINE = REPO / "engine" / "src" / "coursekit"
CATALAN_LETTERS = re.compile(r"[àèéíòóúïüç·ÀÈÉÍÒÓÚÏÜÇ]")
CATALAN_WORDS = re.compile(r"\b(?:quaderns?|sortides|vostr[ea]s?|executeu|comprovaci[oó]|pràctiques?|"
                           r"cel·les?|Prova|lliurar-lo)\b")
# Where the engine may hold Catalan: the patterns that recognise what Moodle and Colab name in the
# students' languages (collect/names.py, collect/roster.py), and the synthetic classes of classgen/damage.py,
# which imitate such a class (students' names with diacritics, Colab's "Còpia de" renames, a text typed in
# Moodle).  None of them is a word the engine writes for students.
RECOGNITION = {"collect/names.py", "collect/roster.py", "classgen/damage.py"}


def _strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (docstrings included) of Python code."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            out.append((tok.start[0], tok.string))
    return out


def test_the_engine_strings_hold_no_catalan():
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE).as_posix()
        if rel in RECOGNITION:
            continue
        for line, text in _strings(path.read_text(encoding="utf-8")):
            if CATALAN_LETTERS.search(text) or CATALAN_WORDS.search(text):
                found.append(f"{rel}:{line}: {text[:100]!r}")
    assert not found, "Catalan in the engine (give it to the course: src/bncourse/messages.py):\n" + "\n".join(found)
    # (the scan can fail: the course's own words would be found)
    messages = (REPO / "src" / "bncourse" / "messages.py").read_text(encoding="utf-8")
    assert sum(bool(CATALAN_LETTERS.search(t)) for _, t in _strings(messages)) >= 20


def _components(config):
    """{(component, trait): its value} for every engine word a student reads, built with ``config``."""
    from coursekit.evidence import KeepSubmittedOutputs, ShowSubmittedOutputs
    from coursekit.inert import InertAutogradedOutputs, InertOutputs
    from coursekit.nbshared import SharedCells
    from coursekit.publish import StudentReadme
    from coursekit.repair import RepairSubmission
    from coursekit.sandbox import SandboxKernelManager
    from coursekit.student_guide import StudentGuide
    from coursekit.trusted import MESSAGES, TrustedChecks

    traits = {TrustedChecks: ("messages", "error_name"), SandboxKernelManager: ("output_notices",),
              RepairSubmission: ("stub_note",), InertOutputs: ("removed_note",),
              InertAutogradedOutputs: ("removed_note",), KeepSubmittedOutputs: ("words",),
              ShowSubmittedOutputs: ("words",), StudentGuide: ("self_check", "run_time"),
              SharedCells: ("title",), StudentReadme: ("title", "intro", "badge_text")}
    words = {}
    for cls, names in traits.items():
        component = cls(config=config)
        for name in names:
            words[cls.__name__, name] = getattr(component, name)
    # (TrustedChecks.messages holds the course's words only: the English ones fill the keys it leaves out)
    words["TrustedChecks", "messages"] = {**MESSAGES, **words["TrustedChecks", "messages"]}
    return words


def _texts(value) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    return [value]


def _fields(text: str) -> set[str]:
    import string

    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def test_without_the_course_words_the_engine_speaks_english_and_the_course_gives_all_of_its_own():
    from traitlets.config import Config

    from coursekit.content import course_config

    english = _components(Config())
    catalan = _components(course_config(REPO))
    for key, value in english.items():
        for text in _texts(value):
            assert not CATALAN_LETTERS.search(text) and not CATALAN_WORDS.search(text), (key, text[:100])
        # the course sets every one of them, in Catalan, with the same format fields
        assert catalan[key] != value, key
        if isinstance(value, dict):
            assert set(catalan[key]) == set(value), (key, set(value) ^ set(catalan[key]))
            pairs = [(value[k], catalan[key][k]) for k in value if isinstance(value[k], str)]
        else:
            pairs = [(value, catalan[key])]
        for default, course in pairs:
            if key != ("StudentGuide", "self_check"):  # (the runner's code: its f-strings are not placeholders)
                assert _fields(default) == _fields(course), (key, default[:60], course[:60])
    assert any(CATALAN_LETTERS.search(t) for v in catalan.values() for t in _texts(v))
