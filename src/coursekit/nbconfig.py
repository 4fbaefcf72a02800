"""How the course's extensions plug into nbgrader's configuration.

``apply_extensions(c)`` is called from the course's ``nbgrader_config.py`` (and
from ``jupyter_config/nbgrader_config.py`` when nbgrader's own test suite runs
with the course's extensions).  It only *adds* to nbgrader's default
preprocessor lists, so nbgrader keeps doing everything it already does.
"""
from __future__ import annotations


def _default(cls, trait: str) -> list:
    return list(cls.class_traits()[trait].default())


def apply_extensions(c) -> None:
    from nbgrader.converters import Autograde, GenerateAssignment

    # Release: a Colab badge pointing at the committed release copy.
    c.GenerateAssignment.preprocessors = ["coursekit.release.ColabBadge"] + _default(
        GenerateAssignment, "preprocessors"
    )

    # Autograde, sanitize phase (before execution).
    c.Autograde.sanitize_preprocessors = _default(Autograde, "sanitize_preprocessors")

    # Autograde, execution phase.
    c.Autograde.autograde_preprocessors = _default(Autograde, "autograde_preprocessors")
