"""Running one of nbgrader's own commands in a course root, as a separate process.

Every place that runs ``nbgrader <command>`` goes through :func:`nbgrader`, and every
place that starts this Python's tools gets its environment from :func:`venv_env`.

Why a process and not nbgrader's ``NbGraderAPI`` in this process: the commands run
here (``generate_assignment``, ``zip_collect``, ``generate_feedback``) load the
course's ``nbgrader_config.py`` and its extensions, and nbgrader's apps and
converters are traitlets singletons configured once per process
(``NbGrader.instance()``, class-level ``config``); running them in the caller's
process would leave that configuration (and a second course's, in tests and the
bench) applied to every later app there.  A process also gives each command
nbgrader's own logging and exit status, which the callers turn into one line.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def venv_env(base: dict | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this Python's ``bin/`` first on PATH:
    nbgrader runs ``alembic`` from PATH when it creates a gradebook, and the shell that started
    us may not have the virtual environment active."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS...`` in the course root ``root``, output captured as text."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True,
                          text=True, env=venv_env(env))


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The last non-blank line a command printed (what it says went wrong), at most 300 characters."""
    return next((ln for ln in reversed((proc.stdout + proc.stderr).splitlines()) if ln.strip()), "").strip()[:300]
