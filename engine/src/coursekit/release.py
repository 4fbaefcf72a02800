"""Release generation: ``source/`` -> ``release/`` through nbgrader.

Owns the ``ColabBadge`` preprocessor (plugged into nbgrader's
``GenerateAssignment.preprocessors`` by :mod:`coursekit.nbconfig`) and the
``coursekit release`` command, which runs plain ``nbgrader generate_assignment``
for every assignment, or, with ``--check``, regenerates into a scratch copy of
the course and fails if the committed ``release/`` differs.
"""
from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from coursekit.nbrun import nbgrader, venv_env  # noqa: F401 (venv_env: its former home)
from coursekit.paths import Course, CourseError

BADGE_ROLE = "colab-badge"


class ColabBadge(NbGraderPreprocessor):
    """Put an "Open in Colab" badge, pointing at the release copy, on top of each release notebook."""

    repository = Unicode("", help="GitHub <owner>/<repo> that holds the committed release/").tag(config=True)
    branch = Unicode("main", help="git branch the badge points at").tag(config=True)

    def badge_url(self, assignment: str, notebook: str) -> str:
        return (
            f"https://colab.research.google.com/github/{self.repository}/blob/"
            f"{self.branch}/release/{assignment}/{notebook}.ipynb"
        )

    def preprocess(self, nb, resources):
        if not self.repository:
            return nb, resources
        info = resources["nbgrader"]
        url = self.badge_url(info["assignment"], info["notebook"])
        nb.cells = [c for c in nb.cells if c.metadata.get("coursekit", {}).get("role") != BADGE_ROLE]
        cell = nbformat.v4.new_markdown_cell(
            f'<a target="_blank" href="{url}">\n'
            '  <img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Obre a Colab"/>\n'
            "</a>",
            metadata={"coursekit": {"role": BADGE_ROLE}},
        )
        if nb.get("nbformat_minor", 0) >= 5:
            cell["id"] = BADGE_ROLE  # fixed id: a regenerated release must be byte-identical
        else:
            cell.pop("id", None)
        nb.cells.insert(0, cell)
        return nb, resources


def generate(course: Course, assignments: list[str]) -> None:
    """Run ``nbgrader generate_assignment`` for each assignment in the course root."""
    for assignment in assignments:
        course.source_notebooks(assignment)  # clear error for an unknown id
        proc = nbgrader(course.root, "generate_assignment", assignment, "--force")  # see coursekit.nbrun
        if proc.returncode != 0:
            raise CourseError(
                f"nbgrader generate_assignment {assignment} failed in {course.root}:\n{proc.stdout}{proc.stderr}"
            )


def scratch_copy(course: Course, dest: Path) -> Course:
    """A copy of the course's instructor files (config, source/, the shared notebooks/ material that
    generation inserts into releases) in ``dest``, without any student data."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(course.root / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copytree(course.source, dest / "source", dirs_exist_ok=True)
    if (course.root / "notebooks").is_dir():
        shutil.copytree(course.root / "notebooks", dest / "notebooks", dirs_exist_ok=True)
    return Course(dest.resolve())


def release_differences(course: Course, assignments: list[str]) -> list[str]:
    """Files of release/ that a fresh generation would change (empty list: in sync)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="coursekit-release-") as tmp:
        fresh = scratch_copy(course, Path(tmp))
        generate(fresh, assignments)
        for assignment in assignments:
            new_dir, old_dir = fresh.release / assignment, course.release / assignment
            new = {p.relative_to(new_dir) for p in new_dir.rglob("*") if p.is_file()}
            old = {p.relative_to(old_dir) for p in old_dir.rglob("*") if p.is_file()} if old_dir.is_dir() else set()
            for rel in sorted(new | old):
                if rel not in old:
                    problems.append(f"release/{assignment}/{rel}: missing (run `make release`)")
                elif rel not in new:
                    problems.append(f"release/{assignment}/{rel}: not produced by source/ any more (delete it)")
                elif not filecmp.cmp(new_dir / rel, old_dir / rel, shallow=False):
                    problems.append(f"release/{assignment}/{rel}: differs from a fresh generation (run `make release`)")
    return problems


def add_arguments(parser) -> None:
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: all in source/)")
    parser.add_argument("--check", action="store_true",
                        help="do not write: fail if the committed release/ differs from a fresh generation")


def run(args) -> int:
    course = Course.at(args.course)
    assignments = args.assignments or course.assignments()
    if args.check:
        problems = release_differences(course, assignments)
        for p in problems:
            print(p, file=sys.stderr)
        print("release/ is in sync with source/" if not problems else f"{len(problems)} release file(s) out of sync")
        return 1 if problems else 0
    from coursekit.nbshared import sync

    for nb_path in sync(course):  # shared helper code first, so that releases carry the current one
        print(f"updated shared cells of {nb_path.relative_to(course.root)}")
    generate(course, assignments)
    for a in assignments:
        print(f"generated release/{a}")
    return 0
