"""Feedback for students: nbgrader's own ``generate_feedback``, without the hidden tests' source."""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor

from coursekit.nbrun import nbgrader
from coursekit.paths import Course

HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback preprocessor: a test cell with hidden tests shows no hidden source.

    nbgrader's ``ClearHiddenTests`` (after this one in ``GenerateFeedback``) removes
    the hidden lines from the cell, but a failing cell's traceback quotes the code
    around the failing line; keep only the error's name and message (the Catalan
    message that says what is wrong).
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and HIDDEN_MARKER in cell.source:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


def generate_feedback(course: Course, assignment: str, exclude: list[str] | None = None) -> tuple[bool, str]:
    """nbgrader's own generate_feedback, in the course root, with the course's configuration.

    ``--force``: feedback is written again every time, so that it always shows the gradebook's
    current grades (plain ``generate_feedback`` keeps files written before manual grading)."""
    args = ["generate_feedback", assignment, "--force"]
    if exclude:
        args.append(f"--CourseDirectory.student_id_exclude={','.join(exclude)}")
    proc = nbgrader(course.root, *args)  # a process: see coursekit.nbrun
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
