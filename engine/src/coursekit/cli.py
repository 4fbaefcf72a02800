"""The single command-line entry point (``coursekit`` / ``python -m coursekit``).

Each capability module that offers a command exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this file only maps command
names to modules, importing a module when its command is used so that
``coursekit --help`` stays fast.  A course adds commands of its own the same
way, in its ``nbgrader_config.py`` (``c.CourseContent.commands``, see
:mod:`coursekit.content`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from coursekit.content import content_of
from coursekit.paths import CourseError

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "release": ("coursekit.release", "regenerate release/ from source/ (nbgrader generate_assignment)"),
    "publish": ("coursekit.publish", "write release/ and a student README into the public mirror"),
    "sync": ("coursekit.nbshared", "inline the shared notebook code into the source notebooks"),
    "classgen": ("coursekit.classgen", "write a generated class of submissions into submitted/"),
    "collect": ("coursekit.intake", "map an LMS export to submitted/<student>/<assignment>/"),
    "grade": ("coursekit.grading", "autograde every submission of an assignment in parallel"),
    "report": ("coursekit.reports", "grades CSV, feedback and class summary for an assignment"),
    "demo": ("coursekit.demo", "end-to-end demo: releases, a generated class, grades"),
    "bench": ("coursekit.bench", "measure grading speed against serial nbgrader"),
    "sandbox-check": ("coursekit.sandbox", "check that the kernel sandbox can start here"),
}


def course_commands(argv: list[str]) -> dict[str, tuple[str, str]]:
    """The engine's commands and those the course of ``--course`` (default: .) adds."""
    commands = dict(COMMANDS)
    root = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--course"),
                next((a.split("=", 1)[1] for a in argv if a.startswith("--course=")), "."))
    try:
        added = content_of(root).commands
    except CourseError:
        added = {}
    for name, module in added.items():
        commands.setdefault(name, (module, f"the course's own command ({module})"))
    return commands


def build_parser(commands: dict[str, tuple[str, str]] = COMMANDS
                 ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="coursekit", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=".", help="course root (holds nbgrader_config.py); default: .")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_, help_text) in commands.items():
        subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = course_commands(argv)
    parser, subparsers = build_parser(commands)
    # Find the command first so that only its module is imported.
    command = next((a for a in argv if a in commands), None)
    if command is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        module = importlib.import_module(commands[command][0])
    except ImportError as exc:
        print(f"coursekit {command}: cannot import {commands[command][0]} ({exc}); "
              "check CourseContent.commands in nbgrader_config.py", file=sys.stderr)
        return 2
    module.add_arguments(subparsers[command])
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except CourseError as exc:
        # an ordinary mistake (a missing file, an unknown assignment, no gradebook yet): one line
        print(f"coursekit {command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a file the command was pointed at cannot be read or written: name it, no traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"coursekit {command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The error's message as one line (messages that quote a log keep their first line here)."""
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text or type(exc).__name__
