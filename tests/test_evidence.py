"""The student's Colab results survive autograding (coursekit.evidence), as inert, labelled data.

- unit: what is kept of each kind of output (text, tables, PNG/JPEG, errors), what is
  dropped or turned into text (HTML, SVG, JavaScript, forged images, output metadata),
  the caps per output, per cell and per notebook, and that the student's own tags or a
  forged stash never decide what is kept;
- end to end, for every assignment: the instructor's solution and a catalogue variant
  that fails some tests, handed in with realistic Colab outputs (a real matplotlib PNG,
  a table, progress text, hostile HTML/SVG/JS, Colab's metadata and tags stripped) in
  the cells the source tags ``evidence``, graded ONCE by plain ``nbgrader autograde``
  in scratch courses side by side.  The autograded notebook, its formgrader rendering
  (nbgrader's own ``formgrade`` template) and the ``nbgrader generate_feedback`` HTML
  show those outputs under the Catalan label, after the fast-mode re-run, for every
  manually graded answer; no student HTML or script survives; the scores in the
  gradebook are exactly what the code deserves.
"""
from __future__ import annotations

import base64
import copy
import io
import os
import subprocess
import sys

import nbformat
import pytest
from assignment_checks import nbg, read_nb
from conftest import REPO, generated_course, make_course, nbgrader
from tiers import thorough
from nbformat.notebooknode import from_dict

from coursekit import classgen, gradebook
from coursekit.evidence import (EVIDENCE_TAG, LABEL_KEY, STASH_KEY, KeepSubmittedOutputs, ShowSubmittedOutputs,
                                evidence_cells, inert_outputs)
from bncourse import ASSIGNMENTS
# the course's words (what graded notebooks of this course show; the engine's defaults are English)
from bncourse.messages import COLAB_TITLE, EVIDENCE, FAST_TITLE

NOTEBOOKS = {a: next((REPO / "release" / a).glob("*.ipynb")) for a in ASSIGNMENTS}
# assignments whose every manually graded answer must have evidence cells already
MUST_HAVE_EVIDENCE = ("a1_batchnorm1d", "a2_batchnorm2d")


def png_bytes() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=60)
    ax.plot([0, 1, 2], [0.3, 0.7, 0.87], "o-")
    ax.set_title("val_acc")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


PNG = base64.b64encode(png_bytes()).decode("ascii")
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 64).decode("ascii")


def colab_outputs(marker: str) -> list:
    """What a Colab run leaves in an experiment cell, plus what a hostile student may add."""
    return [from_dict(o) for o in [
        {"output_type": "stream", "name": "stdout", "text": f"{marker} epoch 15: val_acc 0.873\n"},
        {"output_type": "stream", "name": "stdout\" onclick=\"alert(7)", "text": "tqdm 100%|####| 469/469\n"},
        {"output_type": "execute_result", "execution_count": 7, "metadata": {},
         "data": {"text/plain": f"{marker}-table  sense BN 0.861\n  amb BN 0.874",
                  "text/html": "<table><tr><td>x</td></tr></table><script>alert('xss')</script>"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"text/html": f"<b>{marker}-html</b><img src=x onerror=alert(1)><script>alert(8)</script>"}},
        {"output_type": "display_data", "metadata": {"image/png": {"width": "1 onerror=alert(2)"}},
         "data": {"image/png": PNG, "text/plain": "<Figure size 700x400 with 1 Axes>"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"image/svg+xml": "<svg onload=alert(3)></svg>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "alert(4)"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"image/png": "\"><script>alert(5)</script>", "text/plain": "<Figure>"}},
        {"output_type": "error", "ename": "RuntimeError", "evalue": "<script>alert(6)</script>",
         "traceback": ["RuntimeError: <script>alert(6)</script>"]},
    ]]


HOSTILE = ("<script>alert", "alert(1)", "alert(2)", "alert(3)", "alert(4)", "alert(5)", "alert(7)", "<svg", "<img src=x")


# ---------------------------------------------------------------------------------------------------------
# unit: what is kept

def test_only_inert_data_is_kept():
    kept, notes, used = inert_outputs(colab_outputs("M"), max_text=10_000, max_bytes=10**7, words=EVIDENCE)
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in kept]
    assert kinds == [("stream", []), ("stream", []), ("display_data", ["text/plain"]),
                     ("display_data", ["text/plain"]), ("display_data", ["image/png", "text/plain"]),
                     ("stream", [])]
    assert all(o.get("metadata", {}) == {} for o in kept)
    assert kept[1].name == "stdout" and kept[-1].name == "stderr"
    assert kept[2].data["text/plain"].startswith("M-table")  # text/plain wins over text/html
    assert kept[3].data["text/plain"] == "M-html"            # HTML-only: its visible text
    assert kept[4].data["image/png"] == PNG
    assert "alert(6)" in kept[5].text                       # the error stays, as text, never as an error
    flat = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=kept)]))
    for bad in ("<script>", "onerror", "onload", "alert(3)", "alert(4)", "alert(5)", "alert(8)", "image/svg"):
        assert bad not in flat.replace("<script>alert(6)", ""), bad
    assert len(notes) == 3 and used > len(PNG)


def test_images_are_checked_and_caps_hold():
    bad_magic = base64.b64encode(b"GIF89a" + b"\0" * 20).decode()
    outs = [from_dict({"output_type": "display_data", "metadata": {}, "data": {"image/jpeg": JPEG}}),
            from_dict({"output_type": "display_data", "metadata": {}, "data": {"image/png": bad_magic}}),
            from_dict({"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG[:-3] + "!!!"}})]
    kept, notes, _ = inert_outputs(outs, 100, 10**6, words=EVIDENCE)
    assert [sorted(o.data) for o in kept] == [["image/jpeg", "text/plain"]] and len(notes) == 2
    # one long text is clipped; a cell over its byte cap keeps what fits and says what it left out
    long = from_dict({"output_type": "stream", "name": "stdout", "text": "x" * 5000})
    kept, notes, used = inert_outputs([long], 100, 10**6, words=EVIDENCE)
    assert len(kept[0].text) < 200 and "retallada" in kept[0].text
    image = from_dict({"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG}})
    kept, notes, used = inert_outputs([image, image, image], 10_000, 2 * len(PNG) + 10, "massa", EVIDENCE)
    assert len(kept) == 2 and notes == ["imatge omesa: massa"] and used <= 2 * len(PNG) + 10


def _release_with_stash(tmp_path, assignment):
    release = read_nb(NOTEBOOKS[assignment])
    path = tmp_path / "release.ipynb"
    nbformat.write(release, str(path))
    return release, path


def test_student_tags_and_forged_stash_are_not_trusted(tmp_path):
    release, path = _release_with_stash(tmp_path, "a1_batchnorm1d")
    nb = copy.deepcopy(release)
    tagged = evidence_cells(release)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)  # Colab dropped every tag
        if cell.cell_type == "code":
            cell.outputs = colab_outputs("M")
    graded = next(c for c in nb.cells if nbg(c).get("grade") and c.cell_type == "code")
    graded.metadata["tags"] = [EVIDENCE_TAG]        # a test cell the student tagged
    plain = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i not in tagged and not nbg(c))
    nb.cells[plain].metadata[STASH_KEY] = {"outputs": [{"output_type": "display_data", "metadata": {},
                                                        "data": {"text/html": "<script>FORGED</script>"}}]}
    keep = KeepSubmittedOutputs(release_notebook=str(path), words=EVIDENCE)
    nb, _ = keep.preprocess(nb, {"nbgrader": {"assignment": "a1_batchnorm1d", "notebook": "batchnorm1d"}})
    assert [i for i, c in enumerate(nb.cells) if STASH_KEY in c.metadata] == tagged
    show = ShowSubmittedOutputs(words=EVIDENCE)
    for i, cell in enumerate(nb.cells):
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")
        if cell.cell_type == "code":
            show.preprocess_cell(cell, {}, i)
    assert not any(STASH_KEY in c.metadata for c in nb.cells)
    for i, cell in enumerate(nb.cells):
        labels = [o for o in cell.get("outputs") or [] if o.get("metadata", {}).get(LABEL_KEY)]
        assert len(labels) == (2 if i in tagged else 0), i


def test_notebook_cap(tmp_path):
    release, path = _release_with_stash(tmp_path, "a1_batchnorm1d")
    nb = copy.deepcopy(release)
    image = {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG}}
    for i in evidence_cells(release):
        nb.cells[i].outputs = [from_dict(image)] * 3
    keep = KeepSubmittedOutputs(release_notebook=str(path), max_notebook_bytes=4 * len(PNG), words=EVIDENCE)
    nb, _ = keep.preprocess(nb, {})
    stashes = [nb.cells[i].metadata[STASH_KEY] for i in evidence_cells(release)]
    assert sum(len(s["outputs"]) for s in stashes) == 4
    assert any("quadern" in n for s in stashes for n in s["notes"])


# ---------------------------------------------------------------------------------------------------------
# the notebooks say where the evidence is

def manual_answers(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if nbg(c).get("grade") and nbg(c).get("solution")
            and c.cell_type == "markdown"]


def evidence_before(nb, answer: int) -> list[int]:
    """The evidence an answer discusses: the evidence cells between the previous manually graded answer
    (or the top) and this one; where questions are grouped after the experiments (nothing in between),
    every evidence cell above it."""
    previous = max([i for i in manual_answers(nb) if i < answer], default=-1)
    return [i for i in evidence_cells(nb) if previous < i < answer] or [i for i in evidence_cells(nb) if i < answer]


def _label_text(output) -> str:
    return output.data.get("text/markdown") or output.data.get("text/html", "")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_manual_answer_has_evidence_cells(assignment):
    nb = read_nb(REPO / "source" / assignment / NOTEBOOKS[assignment].name)
    if assignment not in MUST_HAVE_EVIDENCE and not evidence_cells(nb):
        pytest.skip(f"{assignment}: no cell tagged {EVIDENCE_TAG!r} yet")
    assert manual_answers(nb)
    for answer in manual_answers(nb):
        assert evidence_before(nb, answer), f"{assignment}: {nbg(nb.cells[answer])['grade_id']} has no evidence cell"
    for i in evidence_cells(nb):  # never a cell nbgrader grades
        assert not (nbg(nb.cells[i]).get("grade") or nbg(nb.cells[i]).get("solution"))


# ---------------------------------------------------------------------------------------------------------
# end to end through nbgrader

def failing_variant(assignment):
    return next(v for v in classgen.catalogue(assignment)
                if v.fails and v.fails != "all" and v.mutate is None and v.notebook is None)


def with_colab_outputs(variant, student):
    """The variant handed in after a Colab run: outputs in the evidence cells (and a smuggling attempt)."""
    out = copy.copy(variant)
    out.student = student

    def mutate(nb):
        if variant.mutate:
            variant.mutate(nb)
        for i in evidence_cells(nb):
            nb.cells[i].outputs = colab_outputs(f"COLAB{i}")
            nb.cells[i].execution_count = 3
        test = next(c for c in nb.cells if nbg(c).get("grade") and c.cell_type == "code")
        test.outputs = colab_outputs("SMUGGLED")
        test.metadata["tags"] = [EVIDENCE_TAG]
        for cell in nb.cells:  # Colab keeps no tags
            if cell is not test:
                cell.metadata.pop("tags", None)
    out.mutate = mutate
    return out


@pytest.fixture(scope="module")
@thorough
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    courses, students = {}, {}
    for a in ASSIGNMENTS:
        course = generated_course(root / a, [a])
        wrong = failing_variant(a)
        variants = [with_colab_outputs(classgen.catalogue(a)[0], "colab_solution"),
                    with_colab_outputs(wrong, "colab_wrong")]
        classgen.write_class(course, a, variants)
        courses[a], students[a] = course, {"colab_solution": classgen.catalogue(a)[0], "colab_wrong": wrong}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = {a: subprocess.Popen([sys.executable, "-m", "nbgrader", "autograde", a, "--force"], env=env,
                                 cwd=c.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for a, c in courses.items()}
    for a, p in procs.items():
        log = p.communicate(timeout=3600)[0]
        assert p.returncode == 0, log[-5000:]
    for a, c in courses.items():
        nbgrader(c, "generate_feedback", a, "--force")
    return courses, students


def _autograded(course, assignment, student):
    return read_nb(course.autograded / student / assignment / NOTEBOOKS[assignment].name)


def _html_of(course, assignment, student, kind):
    name = NOTEBOOKS[assignment].stem
    if kind == "feedback":
        return (course.feedback / student / assignment / f"{name}.html").read_text(encoding="utf-8")
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    exporter = HTMLExporter(template_name="formgrade", extra_template_basedirs=[handlers.template_path])
    resources = {"assignment_id": assignment, "notebook_id": name, "submission_id": "x", "index": 0, "total": 1,
                 "base_url": "", "student": student, "last_name": "", "first_name": "", "notebook_path": ""}
    html, _ = exporter.from_filename(str(course.autograded / student / assignment / f"{name}.ipynb"),
                                     resources=resources)
    return html


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograded_notebook_carries_the_colab_outputs(graded, assignment):
    courses, _ = graded
    release = read_nb(NOTEBOOKS[assignment])
    if not evidence_cells(release):
        pytest.skip(f"{assignment}: no cell tagged {EVIDENCE_TAG!r} yet")
    for student in ("colab_solution", "colab_wrong"):
        nb = _autograded(courses[assignment], assignment, student)
        text = nbformat.writes(nb).replace("<script>alert(6)</script>", "")  # the error's text, kept as text
        assert "SMUGGLED" not in text and STASH_KEY not in text
        for bad in HOSTILE:
            assert bad not in text, bad
        for answer in manual_answers(release):
            assert evidence_before(release, answer)
            for i in evidence_before(release, answer):
                # cells keep their places: the release cell i is the autograded cell i here
                outs = nb.cells[i].outputs
                labels = [k for k, o in enumerate(outs) if o.get("metadata", {}).get(LABEL_KEY)]
                assert len(labels) == 2, (student, i)
                fast, colab = labels
                # the labels are markdown; the last autograde step (coursekit.inert) stores every
                # markdown output as cleaned HTML, which renders the same
                assert FAST_TITLE in _label_text(outs[fast]) and fast == 0
                assert COLAB_TITLE in _label_text(outs[colab])
                kept = outs[colab + 1:]
                assert f"COLAB{i} epoch 15" in kept[0].text and "omesa" in kept[-1].text
                assert any(o.get("data", {}).get("image/png") == PNG for o in kept)
                assert {o.output_type for o in kept} <= {"stream", "display_data"}
                assert all(set(o.get("data", {})) <= {"text/plain", "image/png", "image/jpeg"} for o in kept)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_scores_are_what_the_code_deserves(graded, assignment):
    courses, students = graded
    scores = gradebook.scores(courses[assignment], assignment)
    maxima = gradebook.max_scores(courses[assignment], assignment)
    release = read_nb(NOTEBOOKS[assignment])
    tests = [nbg(c)["grade_id"] for c in release.cells if nbg(c).get("grade") and not nbg(c).get("solution")]
    for student, variant in students[assignment].items():
        want = classgen.expected_pass(variant, tests)
        got = {t: scores[student][t] == maxima[t] for t in tests}
        assert got == want, student
        assert all(scores[student][t] in (0, maxima[t]) for t in tests)


@pytest.mark.parametrize("kind", ["feedback", "formgrader"])
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_html_shows_the_colab_outputs_inert(graded, assignment, kind):
    courses, _ = graded
    release = read_nb(NOTEBOOKS[assignment])
    if not evidence_cells(release):
        pytest.skip(f"{assignment}: no cell tagged {EVIDENCE_TAG!r} yet")
    html = _html_of(courses[assignment], assignment, "colab_solution", kind)
    assert html.count(COLAB_TITLE) == len(evidence_cells(release))
    assert html.count(FAST_TITLE) == len(evidence_cells(release))
    for i in evidence_cells(release):
        assert f"COLAB{i} epoch 15" in html and f"COLAB{i}-html" in html
        assert html.index(FAST_TITLE) < html.index(f"COLAB{i} epoch 15")
    assert html.count(f"data:image/png;base64,{PNG}") == len(evidence_cells(release))
    assert "&lt;script&gt;alert(6)" in html  # the student's error text, escaped
    for bad in HOSTILE + ("SMUGGLED", "onerror", "onload"):
        assert bad not in html, bad


def test_coursekit_grade_loads_the_same_preprocessors(tmp_path):
    """`coursekit grade`'s workers run nbgrader's Autograde with the course configuration."""
    from coursekit.grading import read_config  # noqa: F401 - the workers initialise AutogradeApp in the root
    from nbgrader.apps.autogradeapp import AutogradeApp
    from nbgrader.converters import Autograde
    course = make_course(tmp_path / "course", [])
    app = AutogradeApp.instance()
    try:
        app.initialize([f"--CourseDirectory.root={course.root}"])
        converter = Autograde(coursedir=app.coursedir, parent=app)
        assert "coursekit.evidence.KeepSubmittedOutputs" in converter.sanitize_preprocessors
        assert "coursekit.evidence.ShowSubmittedOutputs" in converter.autograde_preprocessors
    finally:
        AutogradeApp.clear_instance()
