"""How the course's extensions plug into nbgrader's configuration.

``apply_extensions(c)`` is called from the course's ``nbgrader_config.py`` (and
from ``jupyter_config/nbgrader_config.py`` when nbgrader's own test suite runs
with the course's extensions).  It only *adds* to nbgrader's default
preprocessor lists, so nbgrader keeps doing everything it already does.
"""
from __future__ import annotations


def _default(cls, trait: str) -> list:
    return list(cls.class_traits()[trait].default())


def _position(procs: list, name: str, default: int) -> int:
    """Index of nbgrader's preprocessor ``name`` (given as a class or a dotted string) in ``procs``."""
    return next((i for i, p in enumerate(procs)
                 if getattr(p, "__name__", None) == name or str(p).rsplit(".", 1)[-1] == name), default)


def keep_submitted_evidence(c) -> None:
    """The outputs a student submitted from Colab for the cells tagged ``evidence``
    (coursekit.evidence) survive autograding, made inert: stashed right before
    nbgrader's ClearOutput, shown again (labelled, after the fast-mode re-run) right
    after SaveAutoGrades, so they can never change a score."""
    sanitize = list(c.Autograde.sanitize_preprocessors)
    sanitize.insert(_position(sanitize, "ClearOutput", 0), "coursekit.evidence.KeepSubmittedOutputs")
    c.Autograde.sanitize_preprocessors = sanitize
    autograde = list(c.Autograde.autograde_preprocessors)
    autograde.insert(_position(autograde, "SaveAutoGrades", len(autograde) - 1) + 1,
                     "coursekit.evidence.ShowSubmittedOutputs")
    c.Autograde.autograde_preprocessors = autograde


def apply_extensions(c) -> None:
    from nbgrader.converters import Autograde, GenerateAssignment

    # Release: a Colab badge pointing at the committed release copy.
    # Last, once solutions and hidden tests are gone: the student guide (before you
    # start, self-check, hand-in; coursekit.student_guide).
    c.GenerateAssignment.preprocessors = ["coursekit.release.ColabBadge"] + _default(
        GenerateAssignment, "preprocessors"
    ) + ["coursekit.student_guide.StudentGuide"]

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

    # Trusted checks (coursekit.trusted): ScanSubmission right before Execute reads
    # the student's code statically and records what it attempts (so the flags
    # exist even when the kernel never finishes); TrustedChecks right after Execute
    # re-checks the test cells registered in coursekit.checks.<assignment> OUTSIDE
    # the student's kernel (their code re-run in a sandboxed child, references from
    # the grader's own torch) and detects delegation to the built-in layer.  A
    # failed check puts an error output first in the test cell, so nbgrader's own
    # SaveAutoGrades scores it 0: it only ever turns a pass into a fail.  Both are
    # no-ops for assignments that are not the course's (nbgrader's own test suite).
    from nbgrader.preprocessors import Execute as _Execute

    _procs = list(c.Autograde.autograde_preprocessors)
    _at = next(i for i, p in enumerate(_procs) if p is _Execute or str(p).endswith("Execute"))
    c.Autograde.autograde_preprocessors = (_procs[:_at] + ["coursekit.trusted.ScanSubmission", _procs[_at],
                                                           "coursekit.trusted.TrustedChecks"] + _procs[_at + 1:])

    # Sandbox (coursekit.sandbox): the kernel that executes each submission runs
    # isolated (bubblewrap namespaces, unprivileged uid, no network, rlimits; see
    # README "Sandbox").  nbgrader's Execute passes its own kernel_manager_class as
    # a keyword, which wins over c.Execute.kernel_manager_class, so swap in its
    # sandboxed subclass wherever the list has Execute.  Limits are traits of
    # c.SandboxKernelManager (memory_mb, cpu_seconds, processes, ...).  Keep this
    # block after every block that sets Autograde.autograde_preprocessors.
    from nbgrader.preprocessors import Execute

    c.Autograde.autograde_preprocessors = [
        "coursekit.sandbox.SandboxExecute"
        if p is Execute or p in ("nbgrader.preprocessors.Execute", "nbgrader.preprocessors.execute.Execute")
        else p
        for p in c.Autograde.autograde_preprocessors
    ]

    keep_submitted_evidence(c)

    # Inert student content (coursekit.inert): whatever a kernel displayed (HTML,
    # JavaScript, SVG, widgets) is cleaned or dropped in the stored autograded
    # notebook, and every HTMLExporter nbgrader builds from this configuration
    # (generate_feedback, formgrader) also renders the student's markdown as
    # cleaned HTML: no student <script>, on* attribute or javascript: URL reaches
    # an instructor's or a student's browser.
    c.Autograde.autograde_preprocessors = list(c.Autograde.autograde_preprocessors) + [
        "coursekit.inert.InertAutogradedOutputs"]
    c.HTMLExporter.preprocessors = ["coursekit.inert.InertOutputs"]

    # Feedback: students get their graded notebook without the hidden tests' source
    # (the failing assertion's message still shows), so hidden tests stay hidden
    # for the next class.  nbgrader's default would show them.
    from nbgrader.converters import GenerateFeedback

    feedback = _default(GenerateFeedback, "preprocessors")
    c.GenerateFeedback.preprocessors = feedback[:1] + [
        "coursekit.reports.HideHiddenTests",  # also from the failing cells' tracebacks
        "nbgrader.preprocessors.ClearHiddenTests",
    ] + feedback[1:]
