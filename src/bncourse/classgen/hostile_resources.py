"""Hostile submissions of assignment 1 that attack the instructor's views and
the class's time: live HTML in outputs and answers, files left by the
thousand, floods of tiny messages, a process budget held to the end.

Each variant sits on top of an implementation whose honest score is known (as
in ``bncourse.classgen.hostile``): the grader must give it exactly that score
(``AT_MOST``: at most, where the attack costs its author points by itself),
show none of its markup live in feedback or formgrader, copy none of its files
to feedback, and cost the other students nothing but this student's own time
slot.  ``tests/test_hostile_resources.py`` grades the corpus with honest
submissions through plain ``nbgrader autograde`` + ``generate_feedback`` and
through ``coursekit grade`` + ``coursekit report``.

Every string the attacks try to bring alive carries ``MARKER``, so a test can
tell the student's markup from the course's own in the HTML.
"""
from __future__ import annotations

import nbformat

from coursekit.classgen import Variant
from bncourse.classgen import a1_batchnorm1d as a1
from bncourse.classgen.hostile import (ALL, ANSWER, ASSIGNMENT, EPS_FAILS, MOMENTUM_FAILS, _both, _eps_outside,
                                        _insert_after_answer, _reversed_momentum, _without_second_part)

__all__ = ["ASSIGNMENT", "MARKER", "FILES_LEFT", "MESSAGES_SENT", "AT_MOST", "FLAGS", "variants", "honest", "ALL"]

MARKER = "ckxss"
FILES_LEFT = 20_000 + 500 + 1   # what r02_files leaves in its working copy
MESSAGES_SENT = 150_000         # empty display messages of r03_messages

# r04: a kernel at its own process limit may fail its own tests.  honest_forks: code that starts a process
# itself makes the out-of-kernel re-check untrusted (processes are refused there, so a delegation cannot hide
# in one), which costs the implementation's points; what this variant proves is that the class is unaffected.
AT_MOST = {"r04_processes", "honest_forks"}
FLAGS = {"r02_files": {"sandbox_removed_files"}}

# ------------------------------------------------------------------ markup

# Output that a browser would run if it were shown raw: HTML with scripts and
# event handlers, JavaScript, SVG with a script, markdown with raw HTML, a
# widget view, a rich repr of the student's own class.
MARKUP_OUTPUT = r'''
# Resultats "amb format" (i alguna cosa més).
from IPython.display import HTML, SVG, Javascript, Markdown, display
display(HTML('<img src=x onerror="document.title=\'ckxss-img\'">'
             '<script>document.title="ckxss-script"</script>'
             '<a href="javascript:alert(\'ckxss-link\')">ckxss-link</a>'
             '<a href=" JaVaScRiPt:alert(1)">ckxss-link2</a>'
             '<b onmouseover="alert(\'ckxss-b\')">ckxss-bold</b>'
             '<iframe src="data:text/html,<script>alert(1)</script>">ckxss-iframe</iframe>'
             '<form action="javascript:alert(1)"><button>ckxss-form</button></form>'
             '<style>body{background:url("javascript:alert(1)")}</style>'))
display(Javascript('document.title = "ckxss-js"'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'ckxss-svg-onload\')">'
            '<script>document.title="ckxss-svg"</script><circle r="5"/></svg>'))
display(Markdown('[ckxss-md](javascript:alert(1)) <img src=x onerror="alert(\'ckxss-md-img\')">'))
display({"application/vnd.jupyter.widget-view+json": {"model_id": "ckxss", "version_major": 2, "version_minor": 0},
         "text/html": "<iframe src=\"javascript:alert('ckxss-widget')\"></iframe>",
         "text/plain": "ckxss-widget"}, raw=True)
display({"text/html": "<script>alert('ckxss-isolated')</script>"},
        metadata={"text/html": {"isolated": True}}, raw=True)
print('<script>alert("ckxss-print")</script>')


class _Taula:
    def _repr_html_(self):
        return '<div onclick="alert(\'ckxss-repr\')" style="background:url(javascript:alert(1))">ckxss-repr</div>'


_Taula()
'''

# A written answer with raw HTML and links a browser would follow.
MARKUP_MARKDOWN = r'''**Anàlisi** (ckxss-answer): la normalització redueix la variància.

<img src=x onerror="alert('ckxss-mdcell')"> <script>alert('ckxss-mdscript')</script>
<a href="javascript:alert('ckxss-mdlink')">ckxss-mdlink</a> [ckxss-mdlink2](javascript:alert(1))
<svg onload="alert('ckxss-mdsvg')"></svg> <iframe src="javascript:alert(1)"></iframe>
<details open ontoggle="alert('ckxss-toggle')">x</details>

$\href{javascript:alert('ckxss-mathjax')}{x}$ i $a < b$ es mostren com a matemàtiques.
'''


def _add_markdown(source: str):
    def mutate(nb):
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWER)
        nb.cells.insert(at + 1, nbformat.v4.new_markdown_cell(source))
    return mutate


# ------------------------------------------------------------------ resources

FILES = r'''
# Desem "resultats parcials": molts fitxers petits a la carpeta de treball.
import os
os.makedirs("resultats/parcials", exist_ok=True)
for _i in range(20000):
    with open(f"resultats/parcials/{_i:05d}.txt", "w") as _f:
        _f.write("x")
for _i in range(500):
    with open(f"part_{_i}.txt", "w") as _f:
        _f.write("y" * 100)
with open("extra.ipynb", "w") as _f:      # un quadern que nbgrader voldria convertir
    _f.write('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
print("ATAC: fitxers escrits:", sum(len(f) for _, _, f in os.walk(".")))
'''

MESSAGES = r'''
# Moltes sortides buides: cadascuna per sota del límit de mida.
from IPython.display import display
for _ in range(150000):
    display({"text/plain": ""}, raw=True)
print("ATAC: missatges enviats")
'''

PROCESSES = r'''
# Ens quedem tots els processos que ens deixen, i no els alliberem.
import os, time
_held = 0
try:
    while _held < 5000:                      # com a molt 5000
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        _held += 1
except OSError as _e:
    print("ATAC: processos retinguts:", _held, ":", _e)
'''

# An honest student whose notebook starts a process (a shell command).
FORKS = r'''
import subprocess, sys
print(subprocess.run([sys.executable, "-c", "print('procés fill correcte')"], capture_output=True,
                     text=True).stdout.strip())
'''


def variants() -> list[Variant]:
    """The corpus (see module docstring)."""
    solution = a1.solution()
    corpus = [
        Variant("r01_markup", "scripts, event handlers, javascript: links, SVG, widgets in outputs and in a "
                "written answer (solution)", {ANSWER: solution},
                mutate=_both(_insert_after_answer(MARKUP_OUTPUT), _add_markdown(MARKUP_MARKDOWN))),
        Variant("r02_files", "leaves 20,501 files and a notebook in its working copy (eps outside sqrt)",
                {ANSWER: _eps_outside()}, fails=EPS_FAILS, mutate=_insert_after_answer(FILES)),
        Variant("r03_messages", "150,000 empty display messages (reversed momentum)",
                {ANSWER: _reversed_momentum()}, fails=MOMENTUM_FAILS, mutate=_insert_after_answer(MESSAGES)),
        Variant("r04_processes", "holds every process it may have until its kernel ends (solution)",
                {ANSWER: solution}, mutate=_insert_after_answer(PROCESSES)),
    ]
    for variant in corpus:
        variant.mutate = _both(_without_second_part, variant.mutate)
    return corpus


def honest() -> list[Variant]:
    """Honest submissions graded in the same runs (exact grades, normal feedback)."""
    return [
        Variant("honest_solution", "the instructor's solution", {ANSWER: a1.solution()},
                mutate=_without_second_part),
        Variant("honest_forks", "the solution, plus a cell that runs a child process",
                {ANSWER: a1.solution()}, mutate=_both(_without_second_part, _insert_after_answer(FORKS))),
        Variant("honest_eps_outside", "eps outside the square root", {ANSWER: _eps_outside()},
                fails=EPS_FAILS, mutate=_without_second_part),
    ]
