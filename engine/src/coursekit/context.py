"""The course a piece of code works on, found one way: nbgrader's ``CourseDirectory``.

nbgrader's apps and converters hold a ``CourseDirectory`` (``coursedir``): the
course root and where ``source/``, ``release/``, ``submitted/``,
``autograded/``, ``feedback/`` and the gradebook are, as the course's
``nbgrader_config.py`` configures them.  Everything that runs inside nbgrader
(preprocessors, exporters, zip_collect plugins) asks :meth:`CourseContext.of`
for it, which finds, in this order:

1. the ``coursedir`` of the component's own parents (a preprocessor's parent
   is its exporter, whose parent is the converter that holds ``coursedir``;
   a zip_collect plugin's parent is the app);
2. the running nbgrader application's ``coursedir`` (``nbgrader autograde``,
   ``coursekit grade``'s workers, ``zip_collect``: nbgrader's apps are
   singletons);
3. a ``CourseDirectory`` rooted at the working directory (nbgrader runs in the
   course root).

Commands that start in a folder (``coursekit ... --course PATH``) use
:class:`coursekit.paths.Course`, which :meth:`CourseContext.course` gives from
here too, so both views name the same root.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coursekit.paths import Course


@dataclass(frozen=True)
class CourseContext:
    coursedir: object  # nbgrader.coursedir.CourseDirectory

    @classmethod
    def of(cls, component=None, resources: dict | None = None) -> "CourseContext":
        """The course of an nbgrader component (see the module docstring for the order)."""
        parent = component
        while parent is not None:
            coursedir = getattr(parent, "coursedir", None)
            if coursedir is not None:
                return cls(coursedir)
            parent = getattr(parent, "parent", None)
        from nbgrader.apps.baseapp import NbGrader
        if NbGrader.initialized():
            coursedir = getattr(NbGrader.instance(), "coursedir", None)
            if coursedir is not None:
                return cls(coursedir)
        from nbgrader.coursedir import CourseDirectory
        return cls(CourseDirectory(root=str(Path.cwd())))

    @property
    def root(self) -> Path:
        return Path(self.coursedir.root).resolve()

    def course(self) -> Course:
        return Course(self.root)

    def release_folder(self, assignment: str) -> Path:
        return Path(self.coursedir.format_path(self.coursedir.release_directory, ".", assignment))

    def release_notebook(self, assignment: str, notebook: str) -> Path:
        return self.release_folder(assignment) / f"{notebook}.ipynb"


def course_root(resources: dict | None = None, component=None) -> Path:
    """The course root for code running inside nbgrader (what the event log is kept under)."""
    return CourseContext.of(component, resources).root
