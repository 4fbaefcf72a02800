"""``coursekit publish DEST``: what students may see, written into a public mirror.

This repository holds the solutions and hidden tests (``source/``), so it stays
private; the Colab badges of the release notebooks point at a public
repository that only receives ``release/``.  This command writes exactly that
into DEST (a folder, or a git checkout of the mirror):

- ``release/<assignment>/...`` as generated (stale files of earlier releases
  under DEST's ``release/`` are removed, so the mirror holds the current
  release and nothing else);
- a ``README.md`` for students listing every notebook with its badge.

Before writing anything it refuses to publish when a release file carries
solution, hidden-test or mark-scheme text of ``source/`` (markers, or lines
that only occur inside those regions), or when a badge points at a path the
published tree would not contain or at another repository than DEST's git
remote.  It never commits or pushes: it prints the git commands to run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from traitlets import Unicode
from traitlets.config import Configurable

from coursekit.content import course_config
from coursekit.paths import Course, CourseError

BADGE_RE = re.compile(r"https://colab\.research\.google\.com/github/(?P<repo>[^/\s\"']+/[^/\s\"']+)/blob/"
                      r"(?P<branch>[^/\s\"']+)/(?P<path>[^\s\"'<>]+\.ipynb)")
REGION_RE = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS|MARK SCHEME)[ \t]*$(?P<body>.*?)"
                       r"^[ \t]*### END \1[ \t]*$", re.MULTILINE | re.DOTALL)
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS",
           "### BEGIN MARK SCHEME", "### END MARK SCHEME")
# Lines shorter than this (``return x``, ``pass``) are too common to prove a leak.
MIN_SECRET_LINE = 24


def secret_lines(course: Course) -> set[str]:
    """Lines of source/ that occur only inside solution, hidden-test or mark-scheme regions."""
    inside: set[str] = set()
    outside: set[str] = set()
    for path in sorted(course.source.glob("*/*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            text = cell.source
            for m in REGION_RE.finditer(text):
                inside.update(line.strip() for line in m.group("body").splitlines())
            outside.update(line.strip() for line in REGION_RE.sub("", text).splitlines())
    return {line for line in inside - outside if len(line) >= MIN_SECRET_LINE}


def leaks(text: str, secrets: set[str]) -> list[str]:
    """What of ``text`` is secret: markers, and secret lines (first few)."""
    found = [m for m in MARKERS if m in text]
    lines = {line.strip() for line in text.splitlines()}
    found += sorted(lines & secrets)[:3]
    return found


def _notebook_text(path: Path) -> str:
    """Every cell source of a notebook (outputs included), as the text a reader of the mirror would see."""
    nb = nbformat.read(str(path), as_version=4)
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def badges(path: Path) -> list[re.Match]:
    nb = nbformat.read(str(path), as_version=4)
    return [m for cell in nb.cells if cell.cell_type == "markdown" for m in BADGE_RE.finditer(cell.source)]


def git_remote(dest: Path) -> str | None:
    if not (dest / ".git").exists():
        return None
    # git has no Python API in this environment: ask the git command
    proc = subprocess.run(["git", "-C", str(dest), "remote", "get-url", "origin"], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def remote_repository(url: str) -> str:
    """owner/name of a git remote URL (https://github.com/o/n.git, git@github.com:o/n)."""
    path = re.split(r"[:/]", url.strip().removesuffix("/").removesuffix(".git"))
    return "/".join(path[-2:]).lower()


class StudentReadme(Configurable):
    """The words of the mirror's README for students, in English unless the course sets its own
    (``c.StudentReadme.<trait>`` in nbgrader_config.py; ``coursekit publish`` reads that file)."""

    title = Unicode("Assignments", help="the README's heading").tag(config=True)
    intro = Unicode("Open each assignment in Colab with its button, and **save a copy to your Drive** before "
                    "you start (*File → Save a copy in Drive*). Each notebook explains how to hand it in.",
                    help="the paragraph under the heading").tag(config=True)
    badge_text = Unicode("Open in Colab", help="the alternative text of the Colab badges").tag(config=True)


def student_readme(course: Course, notebooks: list[tuple[str, Path, str]], words: StudentReadme | None = None) -> str:
    words = words or StudentReadme(config=course_config(course.root))
    lines = [f"# {words.title}", "", words.intro, ""]
    for assignment, rel, url in notebooks:
        lines.append(f"- **{assignment}** (`{rel.as_posix()}`): "
                     f"[![{words.badge_text}](https://colab.research.google.com/assets/colab-badge.svg)]({url})")
    return "\n".join(lines) + "\n"


def plan(course: Course, dest: Path) -> tuple[list[tuple[Path, Path]], str, list[str]]:
    """(files to copy (source, relative destination), student README, problems)."""
    problems: list[str] = []
    secrets = secret_lines(course)
    files: list[tuple[Path, Path]] = []
    listed: list[tuple[str, Path, str]] = []
    if not course.release.is_dir() or not any(course.release.iterdir()):
        raise CourseError(f"{course.release} is empty: run `make release` first")
    for path in sorted(p for p in course.release.rglob("*") if p.is_file()):
        rel = path.relative_to(course.root)
        files.append((path, rel))
        if path.suffix == ".ipynb":
            text = _notebook_text(path)
            for leak in leaks(text, secrets):
                problems.append(f"{rel}: carries text of source/ that students must not see: {leak[:80]!r}")
            found = badges(path)
            if not found:
                problems.append(f"{rel}: no Colab badge (set c.ColabBadge.repository and run `make release`)")
            for m in found:
                listed.append((rel.parts[1], rel, m.group(0)))
        else:
            if any(marker in path.read_text(encoding="utf-8", errors="replace") for marker in MARKERS):
                problems.append(f"{rel}: carries solution or hidden-test markers")
    published = {rel.as_posix() for _, rel in files}
    remote = git_remote(dest)
    for _, rel, url in listed:
        m = BADGE_RE.match(url)
        if m.group("path") not in published:
            problems.append(f"{rel}: its badge points at {m.group('path')}, which the published tree does not contain")
        if remote and m.group("repo").lower() != remote_repository(remote):
            problems.append(f"{rel}: its badge points at github.com/{m.group('repo')}, "
                            f"but {dest} is a checkout of {remote} (fix c.ColabBadge.repository)")
    return files, student_readme(course, listed), problems


def publish(course: Course, dest: Path) -> list[str]:
    """Write the public tree into ``dest``; return the problems that stopped it (nothing written then)."""
    dest = dest.resolve()
    if dest == course.root or course.root in dest.parents or dest in course.root.parents:
        raise CourseError(f"{dest} is inside (or holds) the course repository: publish into a separate folder "
                          "or a checkout of the public mirror")
    if (dest / "source").exists() or (dest / "nbgrader_config.py").exists():
        raise CourseError(f"{dest} looks like a course repository (source/ or nbgrader_config.py): "
                          "publish only into the public mirror")
    files, readme, problems = plan(course, dest)
    if problems:
        return problems
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "release").exists():
        shutil.rmtree(dest / "release")  # the mirror holds the current release, nothing stale
    for src, rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    (dest / "README.md").write_text(readme, encoding="utf-8")
    return []


def add_arguments(parser) -> None:
    parser.add_argument("dest", help="folder or git checkout of the public mirror the badges point at")


def run(args) -> int:
    course = Course.at(args.course)
    dest = Path(args.dest)
    try:
        problems = publish(course, dest)
    except CourseError as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"publish refused: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"published release/ and README.md into {dest}")
    if (dest / ".git").exists():
        print(f"now: cd {dest} && git add -A && git commit -m 'release' && git push")
    return 0
