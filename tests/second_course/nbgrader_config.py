"""A second, tiny course graded by the same engine (tests/test_second_course.py).

Its own assignment (w1_mean: a mean and a variance written by hand), its own
language (Spanish) and its own content package (tinystats, next to this file):
everything particular to it is set here, none of it in the engine.
"""
import os
import sys

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# the course's package lives next to its configuration
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "estadistica-minima"
c.ClearSolutions.code_stub = {"python": "# TU CÓDIGO AQUÍ\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "ESCRIBE AQUÍ TU RESPUESTA"
c.Execute.timeout = 60
c.ColabBadge.repository = "ejemplo/estadistica-minima"
c.ColabBadge.branch = "main"

c.CourseContent.package = "tinystats"

from coursekit.nbconfig import apply_extensions  # noqa: E402

apply_extensions(c)

# The course's words for a failed out-of-kernel re-check (the keys it leaves out stay English).
c.TrustedChecks.error_name = "ComprobacionIndependiente"
c.TrustedChecks.messages = {
    "delegation": "la implementación debe ser tuya: se ha detectado {what}. No uses el módulo statistics.",
    "finding": "«{rule}» en la línea {line} de una celda tuya",
}
