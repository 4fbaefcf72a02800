"""A Jupyter config directory that pulls the course's extensions into nbgrader.

Used to run nbgrader's own test suite with the course's preprocessors,
plugins and sandbox loaded (``make test-nbgrader``): put this folder on
``JUPYTER_CONFIG_PATH`` and every nbgrader command reads it, whatever its
working directory.
"""
c = get_config()  # noqa: F821

from coursekit.nbconfig import apply_extensions  # noqa: E402

apply_extensions(c)
