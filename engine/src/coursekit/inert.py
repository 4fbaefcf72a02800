"""Student content made inert in every HTML view of a graded notebook.

Everything a submission's kernel prints is the student's: ``display(HTML(...))``,
``Javascript``, SVG, widgets, a ``_repr_html_`` of their own class, even the
text of an exception.  nbgrader exports feedback and formgrader pages with
nbconvert's HTML templates, which emit ``text/html`` and ``text/markdown``
outputs and markdown cells raw and run ``application/javascript``.  The
course's extensions therefore pass every graded notebook through
``InertOutputs``:

* at the end of autograde (``Autograde.autograde_preprocessors``), so the
  stored ``autograded/`` notebook holds no live output whatever opens it;
* in every ``HTMLExporter`` that nbgrader builds from the course's
  configuration (``generate_feedback`` and formgrader), so notebooks graded
  before this existed are made inert too, and student markdown is rendered
  safely.

What it does to a code cell's outputs: ``text/html`` is cleaned with bleach (an allow-list of tags, attributes and URL schemes: no
``<script>``, no ``on*`` attribute, no ``javascript:`` URL), ``text/markdown`` is rendered and cleaned the same way
and kept as ``text/html``; PNG, JPEG and
plain text stay; any other MIME type (JavaScript, SVG, widgets, LaTeX, PDF,
vendor types) is dropped, and when that leaves nothing to show, a plain-text
note (Catalan) says what was removed.  ``stream`` and ``error`` outputs are
text the templates escape.

Markdown cells the student could write (all but nbgrader's locked cells, which
nbgrader restores from the gradebook) are rendered with nbconvert's own
markdown renderer, cleaned with the same allow-list, and stored back as one
HTML block that the template passes through unchanged; MathJax link commands
(``\\href``, ``\\url``) are disarmed.  Only the render path does this: the
stored ``autograded/`` notebook keeps the student's markdown as written.
"""
from __future__ import annotations

import re

import bleach
from bleach.css_sanitizer import CSSSanitizer
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

from coursekit.cells import nbgrader_meta

# What survives in student HTML: enough for text, tables (pandas), images by URL.
TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q",
    "s", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "u", "ul", "var",
})
ATTRIBUTES = {
    "*": ["class", "title", "align"],
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align", "scope"],
    "ol": ["start"],
}
PROTOCOLS = frozenset({"http", "https", "mailto"})
# CSS properties allowed in style attributes: none (no style attribute is allowed at all).
_CSS = CSSSanitizer(allowed_css_properties=())

# Output MIME types shown as they are: the templates escape text, images are data.
SAFE_KEYS = frozenset({"text/plain", "image/png", "image/jpeg"})
MARK = "coursekit_inert"  # cell metadata: this cell's markdown is already the cleaned HTML

# What takes the place of removed output types, in English unless the course sets its own words
# (``c.InertOutputs.removed_note``; {types}: the MIME types removed).
REMOVED_NOTE = "[output removed: the grader shows no active content ({types}); only text and PNG/JPEG images]"

_MATHJAX_LINKS = re.compile(r"\\(href|url|class|cssId|style|data|unicode)\b")


def clean_html(html: str) -> str:
    """``html`` with only the allow-listed tags, attributes and URL schemes."""
    return bleach.clean(str(html), tags=TAGS, attributes=ATTRIBUTES, protocols=PROTOCOLS,
                        strip=False, strip_comments=True, css_sanitizer=_CSS)


def disarm_mathjax(text: str) -> str:
    """MathJax commands that make links or set attributes, spelt so MathJax shows them as text."""
    return _MATHJAX_LINKS.sub(lambda m: r"\backslash\text{" + m.group(1) + "}", text)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def inert_output(output, removed_note: str = REMOVED_NOTE) -> None:
    """Make one code-cell output inert, in place (``removed_note``: what replaces removed types)."""
    if output.get("output_type") not in ("display_data", "execute_result", "update_display_data"):
        return  # stream and error outputs are plain text, escaped by every template
    data = output.get("data", {})
    removed = []
    for key in list(data):
        if key in SAFE_KEYS:
            continue
        if key == "text/html":
            data[key] = clean_html(_text(data[key]))
            continue
        if key == "text/markdown":
            # rendered here and cleaned (markdown link syntax makes URLs the
            # renderer would not clean); shown as the cleaned HTML
            markdown = _text(data.pop(key))
            if "text/html" not in data:
                data["text/html"] = inert_markdown(markdown)
            continue
        removed.append(key)
        del data[key]
    if removed:
        note = removed_note.format(types=", ".join(sorted(removed)))
        plain = _text(data.get("text/plain", ""))
        data["text/plain"] = f"{plain}\n{note}" if plain.strip() else note
    meta = output.get("metadata")
    if isinstance(meta, dict):
        for key in removed:
            meta.pop(key, None)
        html_meta = meta.get("text/html")
        if isinstance(html_meta, dict):
            html_meta.pop("isolated", None)  # the template would put it in a data: iframe


def _student_writable(cell) -> bool:
    return not nbgrader_meta(cell).get("locked")


def inert_markdown(source: str) -> str:
    """Student markdown as one cleaned HTML block that markdown renderers pass through."""
    from nbconvert.filters.markdown import markdown2html

    html = clean_html(markdown2html(disarm_mathjax(source)))
    # One line, no blank line: a CommonMark HTML block ends at a blank line, and
    # whatever followed would be parsed as markdown again.
    html = html.replace("\r", "").replace("\n", "&#10;")
    return f'<div class="coursekit-student-markdown">{html}</div>'


class InertOutputs(Preprocessor):
    """Clean student outputs (and, for HTML views, student markdown); see module docstring."""

    # on wherever it is listed (nbconvert's default is off; nbgrader registers
    # its converters' preprocessors without switching them on)
    enabled = Bool(True, config=True, help="clean student content")
    markdown = Bool(True, config=True,
                    help="also render the student's markdown cells as cleaned HTML (HTML views only)")
    removed_note = Unicode(REMOVED_NOTE, config=True,
                           help="what replaces output types the grader does not show ({types}: which)")

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                inert_output(output, self.removed_note)
        elif cell.cell_type == "markdown" and self.markdown and _student_writable(cell):
            if not cell.metadata.get(MARK):
                cell.source = inert_markdown(cell.source)
                cell.metadata[MARK] = True
            for name, attachment in list(cell.get("attachments", {}).items()):
                # attachments render as <img src=data:...>: images only
                for key in list(attachment):
                    if key not in ("image/png", "image/jpeg"):
                        del attachment[key]
        elif cell.cell_type == "raw" and _student_writable(cell):
            # raw cells with an HTML format are emitted verbatim
            fmt = cell.metadata.get("format") or cell.metadata.get("raw_mimetype") or ""
            if "html" in fmt.lower() or "markdown" in fmt.lower():
                cell.source = clean_html(cell.source)
        return cell, resources


class InertAutogradedOutputs(InertOutputs):
    """``InertOutputs`` for the stored autograded notebook: outputs only; the
    student's markdown stays as written (the HTML views clean it)."""

    markdown = Bool(False, config=True, help="render student markdown as cleaned HTML (off: kept as written)")
