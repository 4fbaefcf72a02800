"""What belongs to one course, found through the course's own configuration.

The engine grades any nbgrader course.  What is particular to a course, its
trusted re-checks, its generated submissions, its extra commands, lives in a
Python package of the course's, which the course names in its
``nbgrader_config.py``, the way nbgrader itself is told the course's stubs
(``ClearSolutions.code_stub``)::

    c.CourseContent.package = "bncourse"
    c.CourseContent.commands = {"rehearse": "bncourse.fullmode"}

The engine then looks for

- ``<package>.checks.<assignment>``: the assignment's trusted re-checks
  (a module with ``CHECKS``, see :mod:`coursekit.checks`);
- ``<package>.classgen.<assignment>``: its generated submissions (a module with
  ``VARIANTS``, see :mod:`coursekit.classgen`).

A course without a package still grades: it has no re-checks and no catalogue.
Student-facing words of the engine (the messages it writes into a notebook or a
feedback page) are traits of the components that write them, set in the same
file (e.g. ``c.TrustedChecks.delegation_message``).
"""
from __future__ import annotations

import importlib
import re
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from traitlets import Dict, Float, Unicode
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

from coursekit.paths import CourseError

CONFIG_FILE = "nbgrader_config.py"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CourseContent(Configurable):
    """Where the engine finds the course's own content (set in the course's nbgrader_config.py)."""

    package = Unicode("", help="Python package of the course's content: <package>.checks.<assignment> holds an "
                               "assignment's trusted re-checks, <package>.classgen.<assignment> its generated "
                               "submissions.  Empty: the course has neither.").tag(config=True)
    commands = Dict(value_trait=Unicode(), help="Extra `coursekit` commands of the course: name -> module "
                                                "exposing add_arguments(parser) and run(args).").tag(config=True)
    fast_mode_seconds = Dict(value_trait=Float(), help="assignment -> seconds its solution notebook may take in "
                                                       "fast mode on one core (`coursekit bench` reports it)"
                             ).tag(config=True)


def course_config(root: str | Path) -> Config:
    """The configuration a course's ``nbgrader_config.py`` sets (read once per file version)."""
    path = Path(root).resolve() / CONFIG_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return Config()
    return _load(str(path), stamp)


@lru_cache(maxsize=16)
def _load(path: str, stamp: int) -> Config:
    folder, name = Path(path).parent, Path(path).name
    try:
        return PyFileConfigLoader(name, path=str(folder)).load_config()
    except Exception as exc:  # a broken config file: say which one, no traceback
        raise CourseError(f"{path} cannot be read ({type(exc).__name__}: {exc}); fix the file") from exc


def content_of(root: str | Path | None = None, config: Config | None = None) -> CourseContent:
    """The course's content settings: from ``config`` when it sets them (a running nbgrader app),
    else from the course root's ``nbgrader_config.py`` (the working directory by default)."""
    if config is not None and "CourseContent" in config:
        return CourseContent(config=config)
    return CourseContent(config=course_config(Path.cwd() if root is None else root))


def module(content: CourseContent, kind: str, assignment: str) -> ModuleType | None:
    """``<package>.<kind>.<assignment>``, or None when the course has none for that assignment."""
    if not content.package or not _NAME.fullmatch(assignment or ""):
        return None
    name = f"{content.package}.{kind}.{assignment}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # only the module itself missing means "none"; a missing import inside it is a real error
        if exc.name in (name, f"{content.package}.{kind}", content.package):
            return None
        raise
