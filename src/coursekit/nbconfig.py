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

    # Repair (coursekit.repair): first of the sanitize phase, so that nbgrader's own
    # DeduplicateIds / OverwriteCells / CheckCellMetadata see cells where they expect
    # them; the exporter turns "not a notebook" into a clear per-student error.
    c.Autograde.sanitize_preprocessors = ["coursekit.repair.RepairSubmission"] + list(
        c.Autograde.sanitize_preprocessors
    )
    c.Autograde.exporter_class = "coursekit.repair.SubmissionExporter"

    # Intake (coursekit.intake): `nbgrader zip_collect` understands Moodle's
    # "download all submissions" zip; a roster CSV maps Moodle names to student ids
    # (c.MoodleCollector.roster, default <course>/roster.csv when present).
    c.ZipCollectApp.extractor_plugin = "coursekit.intake.MoodleExtractor"
    c.ZipCollectApp.collector_plugin = "coursekit.intake.MoodleCollector"

    # Autograde, execution phase.
    c.Autograde.autograde_preprocessors = _default(Autograde, "autograde_preprocessors")
