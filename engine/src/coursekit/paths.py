"""Where things live in a course root.

The course root is the directory holding ``nbgrader_config.py`` (the repository
root for the real course, a temporary copy in tests).  Everything that needs a
path asks a :class:`Course` instead of hard-coding one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Environment variable that asks notebooks for fast mode (besides nbgrader's own
# NBGRADER_EXECUTION).  Value "fast" or "full".
MODE_VARIABLE = "COURSE_MODE"


class CourseError(Exception):
    """A problem with the course's files, with a message that says what to do."""


@dataclass(frozen=True)
class Course:
    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> "Course":
        root = Path(root).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise CourseError(
                f"{root} is not a course root: nbgrader_config.py not found there. "
                "Run the command from the repository root or pass --course PATH."
            )
        return cls(root)

    # nbgrader's standard directories
    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    # the project's own output
    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def state(self) -> Path:
        """Private working state of coursekit (logs, originals kept safe, locks)."""
        return self.root / ".coursekit"

    def assignments(self) -> list[str]:
        return sorted(p.name for p in self.source.iterdir() if p.is_dir()) if self.source.is_dir() else []

    def source_notebooks(self, assignment: str) -> list[Path]:
        folder = self.source / assignment
        if not folder.is_dir():
            raise CourseError(
                f"unknown assignment {assignment!r}: {folder} does not exist "
                f"(known: {', '.join(self.assignments()) or 'none'})"
            )
        return sorted(folder.glob("*.ipynb"))
