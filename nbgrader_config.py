"""nbgrader configuration of the Batch Normalization course (course root).

Instructors keep using nbgrader's own commands here (generate_assignment,
zip_collect, autograde, generate_feedback, export, formgrader); the course's
extensions (Colab badge, intake plugin, notebook repair, sandboxed kernel,
trusted re-checks) are plugged in by ``coursekit.nbconfig.apply_extensions``,
so plain ``nbgrader ...`` benefits from them.  Edit the values below, not the
extension wiring.
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

from coursekit.nbconfig import apply_extensions  # noqa: E402

apply_extensions(c)
