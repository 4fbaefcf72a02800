"""Student content is inert in the HTML nbgrader renders with the course's
configuration (feedback and formgrader use nbconvert's HTMLExporter), and the
course's own content still renders.

No kernel here: the notebook is the A1 release with the outputs a hostile
kernel would send and a hostile written answer, rendered by the HTMLExporter
that nbgrader builds from the course's configuration (the same one
``generate_feedback`` uses).  tests/test_hostile_resources.py checks the real
thing end to end (plain nbgrader autograde + generate_feedback, coursekit
grade + report).
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from html_checks import elements, headings, live_parts
from nbconvert import HTMLExporter
from traitlets.config import Config

from bncourse.classgen import hostile_resources as R
from coursekit.inert import InertAutogradedOutputs, clean_html, inert_markdown
from coursekit.nbconfig import apply_extensions
from bncourse.messages import configure

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "release" / "a1_batchnorm1d" / "batchnorm1d.ipynb"
M = R.MARKER


def _display(data: dict, metadata: dict | None = None):
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})


# What the kernel of r01_markup sends (bncourse.classgen.hostile_resources.MARKUP_OUTPUT).
HOSTILE_OUTPUTS = [
    _display({"text/html": f'<img src=x onerror="document.title=\'{M}\'"><script>document.title="{M}"</script>'
                           f'<a href="javascript:alert(1)">{M}</a><a href=" JaVaScRiPt:alert(1)">{M}</a>'
                           f'<iframe src="data:text/html,x">{M}</iframe><style>b{{color:red}} /*{M}*/</style>',
              "text/plain": "<IPython.core.display.HTML object>"}),
    _display({"application/javascript": f'document.title = "{M}"', "text/plain": "<Javascript>"}),
    _display({"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>{M}</script></svg>',
              "text/plain": "<SVG>"}),
    _display({"text/markdown": f'[{M}](javascript:alert(1)) <img src=x onerror="alert(\'{M}\')">',
              "text/plain": "<Markdown>"}),
    _display({"application/vnd.jupyter.widget-view+json": {"model_id": M, "version_major": 2, "version_minor": 0},
              "text/html": f"<iframe src=\"javascript:alert('{M}')\"></iframe>"}),
    _display({"text/html": f"<script>alert('{M}')</script>"}, {"text/html": {"isolated": True}}),
    _display({"text/latex": rf"$\href{{javascript:alert(1)}}{{{M}}}$", "text/plain": "latex"}),
    nbformat.v4.new_output("execute_result", data={
        "text/html": f'<div onclick="alert(1)" style="background:url(javascript:alert(1))">{M}</div>'},
        execution_count=3),
    nbformat.v4.new_output("stream", name="stdout", text=f'<script>alert("{M}")</script>\n'),
    nbformat.v4.new_output("error", ename="ValueError", evalue=f"<img src=x onerror=alert('{M}')>",
                           traceback=[f"<script>{M}</script>"]),
]


def hostile_notebook():
    nb = nbformat.read(str(RELEASE), as_version=4)
    code = nbformat.v4.new_code_cell("# cel·la de l'estudiant", execution_count=3)
    code.outputs = copy.deepcopy(HOSTILE_OUTPUTS)
    answer = nbformat.v4.new_markdown_cell(R.MARKUP_MARKDOWN)
    raw = nbformat.v4.new_raw_cell(f"<script>alert('{M}')</script>", metadata={"format": "text/html"})
    nb.cells[5:5] = [code, answer, raw]
    return nb


def course_exporter() -> HTMLExporter:
    c = Config()
    apply_extensions(c)
    configure(c)  # the course's words (the note on removed outputs)
    return HTMLExporter(config=c)


def test_without_the_course_config_the_page_would_be_live():
    # the check below can fail: nbconvert's plain export keeps the student's markup
    html, _ = HTMLExporter().from_notebook_node(hostile_notebook())
    assert len(live_parts(html, M)) >= 8


def test_student_outputs_and_answers_render_inert():
    html, _ = course_exporter().from_notebook_node(hostile_notebook())
    assert live_parts(html, M) == []
    # still shown, as text: the grader sees what the student tried
    assert html.count(M) >= 8
    assert "sortida eliminada" in html


def test_the_course_content_still_renders():
    release = nbformat.read(str(RELEASE), as_version=4)
    plain, _ = HTMLExporter().from_notebook_node(copy.deepcopy(release))
    ours, _ = course_exporter().from_notebook_node(copy.deepcopy(release))
    assert headings(ours) == headings(plain) and len(headings(ours)) >= 5
    badge = [a for a in elements(ours, "img") if "colab-badge" in a.get("src", "")]
    assert badge and any("colab.research.google.com" in a.get("href", "") for a in elements(ours, "a"))
    assert "$" in ours  # math left for MathJax
    assert live_parts(ours, M) == []


def test_autograded_notebook_keeps_no_active_output():
    nb = hostile_notebook()
    # as nbgrader's Autograde registers it: through the exporter, not switched on explicitly
    from nbconvert.exporters import NotebookExporter

    exporter = NotebookExporter()
    exporter.register_preprocessor(InertAutogradedOutputs)
    nb, _ = exporter.from_notebook_node(nb)
    nb = nbformat.reads(nb, as_version=4)
    kinds = {k for c in nb.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
    assert kinds <= {"text/plain", "text/html", "image/png", "image/jpeg"}
    for c in nb.cells:
        for o in c.get("outputs", []):
            for key in ("text/html",):
                if key in o.get("data", {}):
                    assert "<script" not in o.data[key] and "onerror=" not in o.data[key]
            assert not o.get("metadata", {}).get("text/html", {}).get("isolated")
    # the student's written answer stays as written in the stored notebook
    assert R.MARKUP_MARKDOWN in [c.source for c in nb.cells]


def test_cleaning_keeps_tables_and_is_idempotent():
    table = "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>"
    assert clean_html(table) == table
    once = inert_markdown("# Títol\n\nText *amb* `codi`\n\n\n```\nx\n\n\n[a](javascript:b)\n```")
    assert live_parts(once) == []
    from nbconvert.filters.markdown import markdown2html
    assert live_parts(markdown2html(once)) == [] and "<h1" in markdown2html(once)
