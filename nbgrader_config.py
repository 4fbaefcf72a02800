"""nbgrader configuration of the Batch Normalization course (course root).

Instructors keep using nbgrader's own commands here (generate_assignment,
zip_collect, autograde, generate_feedback, export, formgrader); the course's
extensions (Colab badge, intake plugin, notebook repair, sandboxed kernel,
trusted re-checks) are plugged in by ``coursekit.nbconfig.apply_extensions``,
so plain ``nbgrader ...`` benefits from them.  Edit the values below, not the
extension wiring.

The course's own content (trusted re-checks, generated classes, the Catalan words of
the engine's messages, the full-mode commands) is the Python package ``bncourse``
(src/bncourse); the engine (``coursekit``, engine/) finds it through the settings below.
"""
c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "batchnorm-pytorch"

# Student-facing stubs (Catalan): what replaces ### BEGIN/END SOLUTION.
c.ClearSolutions.code_stub = {
    "python": "# EL VOSTRE CODI AQUÍ\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "ESCRIVIU AQUÍ LA VOSTRA RESPOSTA"

# A notebook cell that runs longer than this (seconds) is stopped and scored 0.
c.Execute.timeout = 120

# Where the committed release/ lives on GitHub: the Colab badges of every
# release notebook point at
# https://colab.research.google.com/github/<repository>/blob/<branch>/release/...
c.ColabBadge.repository = "miquelmn/aa_2526"
c.ColabBadge.branch = "main"

# The course's package, and its own commands (`coursekit rehearse`, `coursekit time-full-mode`).
c.CourseContent.package = "bncourse"
c.CourseContent.commands = {"rehearse": "bncourse.fullmode", "time-full-mode": "bncourse.fullmode"}
# What a solution notebook may take in fast mode on one core (`make bench` reports it).
c.CourseContent.fast_mode_seconds = {"a2_batchnorm2d": 30.0, "a3_alexnet_bn": 60.0, "a4_hyperparameters": 60.0,
                                     "a5_modern_architectures": 60.0}

from coursekit.nbconfig import apply_extensions  # noqa: E402
from bncourse.messages import configure  # noqa: E402

apply_extensions(c)
configure(c)  # every word the engine writes for students, in Catalan
