"""The class summary as markdown and HTML, built from the summary's data.

Every string that comes from students (names, file names, events, code excerpts) is escaped:
it reaches the page as text, never as markup.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

def _describe(kind: str, event: dict) -> str:
    """One line about an event, at most ~400 characters (a traceback never fills the summary);
    a trailing "(log: PATH)" is kept."""
    if kind == "repaired":
        text = "; ".join(event.get("actions", []))
    else:
        text = next((str(event[k]) for k in ("message", "detail", "reason", "problem") if event.get(k)), None)
        if text is None:
            rest = {k: v for k, v in event.items() if k != "student"}
            text = json.dumps(rest, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    if len(text) > 400:
        log = re.search(r"\(log: [^()]*\)$", text)
        text = text[:300].rstrip() + " [...]" + (" " + log.group(0) if log else "")
    return text


def md(text) -> str:
    """A student-controlled string inside markdown: shown as text by any markdown viewer."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("|", "\\|").replace("[", "\\[") \
        .replace("]", "\\]")


def render_markdown(summary: dict) -> str:
    a = summary["assignment"]
    st = summary["scores"]
    manual = summary["manual"]
    lines = [f"# {a}: class summary", "", f"Generated {summary['generated']}.", "",
             f"- graded submissions: **{st['count']}**",
             f"- mean score: **{st['mean']:.2f}** / {st['max']:g} (median {st['median']:.2f}, "
             f"min {st['min']:.2f}, max {st['top']:.2f})" if st["count"] else "- no graded submission yet",
             f"- waiting for manual grading: {len(manual['waiting'])}"
             + (f" ({', '.join(md(s) for s in manual['waiting'])}; "
                + ("exported as provisional grades)" if manual["provisional"] else "grade left empty in the CSV)")
                if manual["waiting"] else ""),
             f"- not graded (empty grade in the CSV): {len(summary['failed'])}",
             f"- grades for Moodle: `{summary['files']['grades_csv']}`",
             f"- feedback: {summary['feedback']['count']} HTML files under `feedback/<student>/{a}/`", "",
             "![score histogram](histogram.png)", "", "## Not graded", ""]
    if not summary["failed"]:
        lines.append("Every collected submission was graded.")
    for sid, f in summary["failed"].items():
        lines.append(f"- {md(sid)}: {md(f['cause'])}" + (f" (log: {md(f['log'])})" if f["log"] else ""))
    lines += ["", "## Pass rate per test cell", "", "| test cell | points | passed | rate |", "|---|---:|---:|---:|"]
    for row in summary["pass_rates"]:
        rate = f"{100 * row['rate']:.0f}%" if row["rate"] is not None else "-"
        lines.append(f"| `{row['test']}` | {row['points']:g} | {row['passed']}/{row['graded']} | {rate} |")
    lines += ["", "## Intake (Moodle export)", ""]
    intake = summary["intake"]
    if intake.get("students") is None:
        lines.append("No intake report (submissions were not collected with `coursekit collect` / zip_collect).")
    else:
        lines.append(f"{intake['students']} students collected, {len(intake['problems'])} could not be matched:")
        lines.append("")
        for p in intake["problems"]:
            lines.append(f"- **{md(p['kind'])}** {md(p.get('who') or '?')}"
                         + (f" ({md(p['student'])})" if p.get("student") else "") + f": {md(p['detail'])}")
    lines += ["", "## Submissions to look at", ""]
    if not summary["flagged"]:
        lines.append("Nothing was repaired, timed out, failed or looked suspicious.")
    for kind, items in summary["flagged"].items():
        students = sorted({e["student"] for e in items})
        lines += [f"### {md(kind)} ({len(students)})", ""]
        for e in items:
            lines.append(f"- {md(e['student'])}: {md(_describe(kind, e))}")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_html(summary: dict) -> str:
    """summary.html, built from the summary's data with every string escaped (never from markdown:
    names, file names, events and code excerpts are the students', and must reach the page as text)."""
    e = lambda text: html.escape(str(text))  # noqa: E731
    a, st, manual = summary["assignment"], summary["scores"], summary["manual"]
    out = [f"<h1>{e(a)}: class summary</h1>", f"<p>Generated {e(summary['generated'])}.</p>", "<ul>",
           f"<li>graded submissions: <strong>{st['count']}</strong></li>"]
    if st["count"]:
        out.append(f"<li>mean score: <strong>{st['mean']:.2f}</strong> / {st['max']:g} (median {st['median']:.2f}, "
                   f"min {st['min']:.2f}, max {st['top']:.2f})</li>")
    out.append(f"<li>waiting for manual grading: {len(manual['waiting'])}"
               + (f" ({e(', '.join(manual['waiting']))}; "
                  + ("exported as provisional grades)" if manual["provisional"] else "grade left empty in the CSV)")
                  if manual["waiting"] else "") + "</li>")
    out += [f"<li>not graded (empty grade in the CSV): {len(summary['failed'])}</li>",
            f"<li>grades for Moodle: <code>{e(summary['files']['grades_csv'])}</code></li>",
            f"<li>feedback: {summary['feedback']['count']} HTML files under <code>feedback/&lt;student&gt;/{e(a)}/</code></li>",
            "</ul>", '<p><img src="histogram.png" alt="score histogram"></p>', "<h2>Not graded</h2>"]
    if summary["failed"]:
        out.append("<ul>" + "".join(
            f"<li><code>{e(sid)}</code>: {e(f['cause'])}" + (f" (log: <code>{e(f['log'])}</code>)" if f["log"] else "")
            + "</li>" for sid, f in summary["failed"].items()) + "</ul>")
    else:
        out.append("<p>Every collected submission was graded.</p>")
    out += ["<h2>Pass rate per test cell</h2>",
            "<table><thead><tr><th>test cell</th><th>points</th><th>passed</th><th>rate</th></tr></thead><tbody>"]
    for row in summary["pass_rates"]:
        rate = f"{100 * row['rate']:.0f}%" if row["rate"] is not None else "-"
        out.append(f"<tr><td><code>{e(row['test'])}</code></td><td>{row['points']:g}</td>"
                   f"<td>{row['passed']}/{row['graded']}</td><td>{rate}</td></tr>")
    out += ["</tbody></table>", "<h2>Intake (Moodle export)</h2>"]
    intake = summary["intake"]
    if intake.get("students") is None:
        out.append("<p>No intake report (submissions were not collected with <code>coursekit collect</code>).</p>")
    else:
        out.append(f"<p>{intake['students']} students collected, {len(intake['problems'])} could not be matched:</p>")
        out.append("<ul>" + "".join(
            f"<li><strong>{e(p['kind'])}</strong> {e(p.get('who') or '?')}"
            + (f" (<code>{e(p['student'])}</code>)" if p.get("student") else "") + f": {e(p['detail'])}"
            + "".join(f"<br><code>{e(f)}</code>" for f in p.get("files", [])[:5]) + "</li>"
            for p in intake["problems"]) + "</ul>")
    out.append("<h2>Submissions to look at</h2>")
    if not summary["flagged"]:
        out.append("<p>Nothing was repaired, timed out, failed or looked suspicious.</p>")
    for kind, items in summary["flagged"].items():
        students = sorted({ev["student"] for ev in items})
        out.append(f"<h3>{e(kind)} ({len(students)})</h3><ul>" + "".join(
            f"<li><code>{e(ev['student'])}</code>: {e(_describe(kind, ev))}</li>" for ev in items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{e(a)}: class summary</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}</style></head>"
            "<body>\n" + "\n".join(out) + "\n</body></html>\n")


def histogram(path: Path, scores: list[float], maximum: float, assignment: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = max(5, min(20, int(maximum) + 1)) if maximum else 10
    ax.hist(scores, bins=bins, range=(0, maximum or max(scores, default=1) or 1), color="#3b6ea5", edgecolor="white")
    ax.set_xlabel(f"score (of {maximum:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{assignment}: {len(scores)} graded submissions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
