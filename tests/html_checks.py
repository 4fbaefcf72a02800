"""Reading an HTML page the way a browser would, to find what could run in it."""
from __future__ import annotations

from html.parser import HTMLParser

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background"}
# Elements no student content may bring into a page (the course's templates use none of them).
ACTIVE_ELEMENTS = {"iframe", "object", "embed", "form", "svg", "base", "details"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data


def live_parts(html: str, marker: str | None = None) -> list[str]:
    """What in ``html`` a browser could run or follow: event-handler attributes,
    javascript:/vbscript:/data:text URLs, elements from ``ACTIVE_ELEMENTS`` and,
    when ``marker`` is given, scripts or style sheets containing it (the page's
    own scripts, without the marker, are the template's)."""
    page = _Page()
    page.feed(html)
    found = []
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            if name.startswith("on"):
                found.append(f"<{tag} {name}={value!r}>")
            squashed = "".join(value.split()).lower()
            if name in URL_ATTRIBUTES and squashed.startswith(("javascript:", "vbscript:", "data:text")):
                found.append(f"<{tag} {name}={value!r}>")
            if name == "style" and "javascript:" in squashed:
                found.append(f"<{tag} style={value!r}>")
        if tag in ACTIVE_ELEMENTS:
            found.append(f"<{tag}>")
    if marker:
        found += [f"<script>{s[:80]}" for s in page.scripts if marker in s]
        found += [f"<style>{s[:80]}" for s in page.styles if marker in s]
    return found


def elements(html: str, tag: str) -> list[dict]:
    page = _Page()
    page.feed(html)
    return [attrs for t, attrs in page.elements if t == tag]


def headings(html: str) -> list[str]:
    """Text of every h1-h3 element."""
    class _H(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.out, self._depth = [], 0

        def handle_starttag(self, tag, attrs):
            if tag in ("h1", "h2", "h3"):
                self.out.append("")
                self._depth += 1

        def handle_endtag(self, tag):
            if tag in ("h1", "h2", "h3") and self._depth:
                self._depth -= 1

        def handle_data(self, data):
            if self._depth:
                self.out[-1] += data

    h = _H()
    h.feed(html)
    return [t.replace("¶", "").strip() for t in h.out]
