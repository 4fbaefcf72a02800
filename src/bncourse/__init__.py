"""The Batch Normalization course's own content, which the ``coursekit`` engine reaches through the
course's ``nbgrader_config.py`` (``c.CourseContent.package = "bncourse"``):

- ``checks/``: the trusted re-checks of every autograded test cell (``checks.<assignment>.CHECKS``);
- ``classgen/``: generated submissions, the catalogues of wrong and right answers of every
  assignment, and the hostile classes;
- ``messages.py``: every Catalan word the engine writes for students (set as the engine's traits);
- ``fullmode.py``, ``standins.py``, ``fullmode_site/``: the notebooks' full (Colab) mode rehearsed
  and timed on stand-in data (the ``coursekit rehearse`` / ``time-full-mode`` commands).
"""
from __future__ import annotations

from pathlib import Path

# The assignments of the series, in order (ASCII ids, stable once released).
ASSIGNMENTS = ("a1_batchnorm1d", "a2_batchnorm2d", "a3_alexnet_bn", "a4_hyperparameters",
               "a5_modern_architectures")

# The course repository this package belongs to (src/bncourse of an editable install).
ROOT = Path(__file__).resolve().parents[2]
