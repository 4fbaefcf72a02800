"""Repair of damaged submissions inside plain ``nbgrader autograde`` (coursekit.repair).

Every damage of the catalogue (coursekit.classgen.damage) is applied to clean
submissions; the class is graded once by the real ``nbgrader autograde`` in a
scratch course, and each damaged copy must get exactly its clean original's
scores, with the repair logged and the submitted files untouched.  The same
damages graded with the repair switched off score lower, so these tests can fail.
The real assignment 1 is graded the same way, delivered as a Moodle export.
"""
from __future__ import annotations

import copy
import json
import shutil

import nbformat
import pytest

import tiny_assignment as T
from conftest import REPO, generated_course, make_course, nbgrader
from coursekit import classgen, events, gradebook
from coursekit.classgen import damage
from coursekit.repair import check_readable, repair_notebook
from bncourse.messages import STUB_NOTE  # the course's words: what its graded notebooks carry

# damages applied to the right answers; a subset also to the half-right ones
HALF_DAMAGES = ["answer_above", "everything"]
# what the repair log must say for each damage (a fragment of one action)
EXPECTED_ACTION = {
    "strip_metadata": "restored on cell", "colab": "removed editor metadata",
    "colab_stripped": "restored on cell", "answer_below": "answer found in new cell",
    "answer_above": "untouched stub after it was commented out",
    "answer_above_stripped": "answer found in new cell", "duplicate_answer": "duplicated in cells",
    "duplicate_test": "duplicated in cells", "delete_test": "re-inserted from the release",
    "test_markdown": "restored as code", "test_markdown_stripped": "restored as code",
    "kernelspec": "kernelspec", "everything": "re-inserted from the release",
}
# graded without the repair, these damages lose points (nbgrader alone gets them wrong)
NEEDS_REPAIR = ["strip_metadata", "answer_above", "duplicate_answer", "delete_test"]


def _tamper(nb) -> None:
    """A hostile copy: metadata stripped and every visible test replaced by `assert True`."""
    damage.DAMAGES["strip_metadata"][1](nb, None)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("# comprova"):
            cell.source = "assert True"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("repair") / "course", [])
    T.install(course)
    release = nbformat.read(str(course.release / T.ASSIGNMENT / f"{T.NOTEBOOK}.ipynb"), as_version=4)
    ok, half, none = T.variants()
    variants = [ok, half, none]
    damaged = {}
    for base, kinds in ((ok, list(damage.DAMAGES)), (half, HALF_DAMAGES)):
        for kind in kinds:
            v = copy.copy(base)
            v.student, v.mutate = f"{base.student}__{kind}", damage.mutate(kind, release)
            variants.append(v)
            damaged[v.student] = (base.student, kind)
    tamper = copy.copy(none)
    tamper.student, tamper.mutate = "none__tamper", _tamper
    variants.append(tamper)
    damaged[tamper.student] = ("none", "tamper")
    classgen.write_class(course, T.ASSIGNMENT, variants)
    # two files that are not notebooks at all
    for student, data in (("broken_truncated", (course.submitted / "ok" / T.ASSIGNMENT / "tiny.ipynb").read_bytes()[:700]),
                          ("broken_script", b"import math\n\ndef double(x):\n    return 2 * x\n")):
        path = course.submitted / student / T.ASSIGNMENT / "tiny.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    before = T.digests(course.submitted)
    proc = nbgrader(course, "autograde", T.ASSIGNMENT, check=False)
    return {"course": course, "release": release, "damaged": damaged, "before": before, "proc": proc,
            "scores": gradebook.scores(course, T.ASSIGNMENT)}


def test_damaged_submissions_score_as_their_clean_originals(tiny):
    scores = tiny["scores"]
    tests = gradebook.autograded_tests(tiny["course"], T.ASSIGNMENT)
    assert tests == ["test_double", "test_inc"]
    # the clean originals are graded as their variants say (the baseline is meaningful)
    assert [scores["ok"][t] for t in tests] == [2.0, 1.0]
    assert [scores["half"][t] for t in tests] == [2.0, 0.0]
    assert [scores["none"][t] for t in tests] == [0.0, 0.0]
    for student, (original, kind) in tiny["damaged"].items():
        got = {t: scores[student][t] for t in tests}
        want = {t: scores[original][t] for t in tests}
        assert got == want, f"{kind}: {student} scored {got}, its clean original {original} {want}"


def test_submitted_files_are_byte_identical_after_grading(tiny):
    assert T.digests(tiny["course"].submitted) == tiny["before"]


def test_every_repair_is_logged_per_submission(tiny):
    course = tiny["course"]
    for student, (_, kind) in tiny["damaged"].items():
        if kind == "edit_test":
            continue  # metadata intact: nbgrader's OverwriteCells restores the test by itself
        repaired = [e for e in events.read(course.root, T.ASSIGNMENT, student) if e["kind"] == "repaired"]
        assert repaired, f"{student}: no 'repaired' event"
        actions = " | ".join(a for e in repaired for a in e["actions"])
        if kind in EXPECTED_ACTION:
            assert EXPECTED_ACTION[kind] in actions, f"{student}: {actions}"
    for clean in ("ok", "half", "none"):
        assert not [e for e in events.read(course.root, T.ASSIGNMENT, clean) if e["kind"] == "repaired"]
    # and in nbgrader's own log
    assert "coursekit repair ok__delete_test/t0_tiny/tiny: test_double" in tiny["proc"].stdout + tiny["proc"].stderr


def test_nothing_the_student_wrote_is_dropped(tiny):
    course = tiny["course"]
    for student, (original, kind) in tiny["damaged"].items():
        if original == "none":
            continue
        graded = nbformat.read(str(course.autograded / student / T.ASSIGNMENT / "tiny.ipynb"), as_version=4)
        sources = [c.source for c in graded.cells]
        answers = T.SOLUTION if original == "ok" else T.WRONG_INC
        for grade_id, answer in answers.items():
            owners = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
            assert len(owners) == 1 and owners[0].source == answer, f"{kind}: answer {grade_id} lost its role"
        if kind == "answer_below":  # the emptied original cell is kept, as a plain cell
            assert "" in sources
        if kind in ("answer_above", "duplicate_answer"):  # the stub is kept, commented out
            assert any(s.startswith(f"# {STUB_NOTE}") for s in sources)


def test_tampered_tests_are_restored_and_checked(tiny):
    # test cells replaced by `assert True` without metadata: the real tests are re-inserted
    course = tiny["course"]
    assert tiny["scores"]["none__tamper"]["test_double"] == 0.0
    graded = nbformat.read(str(course.autograded / "none__tamper" / T.ASSIGNMENT / "tiny.ipynb"), as_version=4)
    tests = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_double"]
    assert len(tests) == 1 and "assert double(-3) == -6" in tests[0].source  # hidden test back from the gradebook
    assert any(c.source == "assert True" for c in graded.cells)  # the student's cell is kept, plain


def test_not_a_notebook_gets_a_clear_error_and_the_class_is_graded(tiny):
    course, proc = tiny["course"], tiny["proc"]
    assert proc.returncode == 1  # nbgrader's own convention when a submission failed
    log = proc.stdout + proc.stderr
    for student, what in (("broken_truncated", "JSON is broken or truncated"),
                          ("broken_script", "looks like a Python script renamed .ipynb")):
        path = course.submitted / student / T.ASSIGNMENT / "tiny.ipynb"
        assert f"{path} is not a Jupyter notebook: " in log
        assert what in check_readable(path)
        errors = [e for e in events.read(course.root, T.ASSIGNMENT, student) if e["kind"] == "parse_error"]
        assert errors and str(path) in errors[0]["message"] and "Download .ipynb" in errors[0]["message"]
        assert not (course.autograded / student).exists()
    graded = {p.name for p in course.autograded.iterdir()}
    assert set(tiny["damaged"]) | {"ok", "half", "none"} <= graded


def test_damages_cost_points_without_the_repair(tiny):
    """The same damaged files graded with the repair switched off: plain nbgrader gets them wrong."""
    course = tiny["course"]
    for kind in NEEDS_REPAIR:
        shutil.copytree(course.submitted / f"ok__{kind}", course.submitted / f"norepair__{kind}")
    off = "--RepairSubmission.enabled=False"
    # a duplicated answer cell makes plain nbgrader stop the whole run (metadata error): grade it alone
    alone = nbgrader(course, "autograde", T.ASSIGNMENT, "--student=norepair__duplicate_answer", off, check=False)
    assert alone.returncode != 0 and "old version" in alone.stdout + alone.stderr
    nbgrader(course, "autograde", T.ASSIGNMENT, "--student=norepair__*", off,
             "--CourseDirectory.student_id_exclude=norepair__duplicate_answer", check=False)
    scores = gradebook.scores(course, T.ASSIGNMENT)
    for kind in NEEDS_REPAIR:
        if kind != "duplicate_answer":
            points = sum(scores[f"norepair__{kind}"].get(t, 0.0) for t in ("test_double", "test_inc"))
            assert points < 3.0, f"{kind} scores {points} even without the repair"


def test_half_kept_metadata_does_not_stop_nbgrader(tiny):
    """An editor kept `nbgrader: {}` or a grade_id without schema_version: nbgrader's validator would abort the run."""
    from nbgrader.nbgraderformat import MetadataValidator

    nb = copy.deepcopy(tiny["release"])
    plain = next(c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata)
    plain.metadata["nbgrader"] = {}
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_inc")
    test.metadata["nbgrader"] = {"grade_id": "test_inc", "grade": True}
    actions = repair_notebook(nb, tiny["release"])
    assert any("without a grade_id" in a for a in actions) and any("test_inc: nbgrader flags" in a for a in actions)
    MetadataValidator().validate_nb(nb)  # raises on what would stop nbgrader


def test_clean_submission_is_left_alone(tiny):
    nb = copy.deepcopy(tiny["release"])
    assert repair_notebook(nb, tiny["release"]) == []
    assert nb == tiny["release"]


# ---------------------------------------------------------------- the real assignment 1

A1 = "a1_batchnorm1d"
# each a1 notebook costs tens of seconds to grade: two damaged copies carry all the damages
A1_DAMAGES = ["everything", "duplicate_answer"]
A1_RENAMES = ["Còpia de {nb}.ipynb", "entrega.zip|Copy of {nb} (1).ipynb"]


@pytest.fixture(scope="module")
def a1(tmp_path_factory):
    if not (REPO / "source" / A1).is_dir():
        pytest.skip("assignment 1 source notebook not in the repository yet")
    course = generated_course(tmp_path_factory.mktemp("repair_a1") / "course", [A1])
    release = nbformat.read(str(next((course.release / A1).glob("*.ipynb"))), as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: classgen.solution_source(course, A1, c.metadata["nbgrader"]["grade_id"])
               for c in release.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    clean = classgen.Variant("clean_right", "right answers", answers)
    classgen.write_class(course, A1, [clean])
    # the same right answers, damaged and renamed, handed in as a Moodle export
    variants = []
    for kind in A1_DAMAGES:
        v = copy.copy(clean)
        v.student = f"right__{kind}"
        variants.append(v)
    archive = course.root / "downloaded" / A1 / "archive"
    export = damage.moodle_export(course, A1, variants, archive / "moodle.zip", damage=True, extras=False,
                                  damages=A1_DAMAGES, renames=A1_RENAMES)
    nbgrader(course, "zip_collect", A1)
    before = T.digests(course.submitted)
    archived = T.digests(archive)
    # trusted checks off (same for clean and damaged): this compares repairs, and each check costs seconds
    proc = nbgrader(course, "autograde", A1, "--TrustedChecks.enabled=False", check=False)
    return {"course": course, "variants": variants, "export": export, "before": before, "archived": archived,
            "proc": proc, "scores": gradebook.scores(course, A1)}


def test_a1_damaged_moodle_submissions_score_as_the_clean_original(a1):
    course, scores = a1["course"], a1["scores"]
    assert a1["proc"].returncode == 0, a1["proc"].stdout[-3000:] + a1["proc"].stderr[-3000:]
    tests = gradebook.autograded_tests(course, A1)
    maxima = gradebook.max_scores(course, A1)
    assert len(tests) >= 5
    assert all(scores["clean_right"][t] == maxima[t] for t in tests), scores["clean_right"]
    for v in a1["variants"]:
        assert {t: scores[v.student][t] for t in tests} == {t: scores["clean_right"][t] for t in tests}, v.student
        repaired = [e for e in events.read(course.root, A1, v.student) if e["kind"] == "repaired"]
        assert repaired, v.student
    everything = " | ".join(a for e in events.read(course.root, A1, "right__everything")
                            if e["kind"] == "repaired" for a in e["actions"])
    for fragment in ("removed editor metadata", "restored on cell", "answer found in new cell",
                     "re-inserted from the release", "restored as code"):
        assert fragment in everything


def _roles(nb) -> list[tuple]:
    """What nbgrader grades by: nbgrader cells in order, with their type, and the answers' text."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id"):
            out.append((meta["grade_id"], cell.cell_type, cell.source if meta.get("solution") else None))
    return out


def test_a1_catalogue_with_every_damage_repairs_to_the_clean_structure():
    """Every damage on the real notebook, over the generated class (no grading: the structure nbgrader sees)."""
    if not (REPO / "release" / A1).is_dir():
        pytest.skip("assignment 1 release not in the repository yet")
    from coursekit.paths import Course

    course = Course(REPO)  # read only: rendering reads release/ and source/
    release = nbformat.read(str(next((REPO / "release" / A1).glob("*.ipynb"))), as_version=4)
    variants = classgen.catalogue(A1)
    for i, kind in enumerate(damage.DAMAGES):
        v = variants[(3 * i) % len(variants)]
        _, clean = classgen.render(course, A1, v)
        dv = copy.copy(v)
        dv.mutate = damage.chain(v.mutate, damage.mutate(kind, release))
        _, broken = classgen.render(course, A1, dv)
        actions = repair_notebook(broken, release)
        assert _roles(broken) == _roles(clean), f"{kind} on {v.student}: {actions}"


def test_a1_renamed_files_were_collected_from_the_moodle_zip(a1):
    course = a1["course"]
    intake = json.loads((course.state / "intake" / A1 / "report.json").read_text())
    assert intake["problems"] == []
    how = {sid: info["files"][0]["how"] for sid, info in intake["students"].items()}
    assert how == {"right__everything": "renamed", "right__duplicate_answer": "renamed+zip"}


def test_a1_originals_are_byte_identical_after_grading(a1):
    course = a1["course"]
    assert T.digests(course.submitted) == a1["before"]
    assert T.digests(course.root / "downloaded" / A1 / "archive") == a1["archived"]
    intake = json.loads((course.state / "intake" / A1 / "report.json").read_text())
    for v in a1["variants"]:
        entry = intake["students"][v.student]["files"][0]
        path = course.submitted / v.student / A1 / entry["notebook"]
        assert T.digests(path.parent)[entry["notebook"]] == entry["sha256"]


def test_editor_metadata_the_release_carries_is_the_courses_own():
    """A release may ask Colab for a GPU (notebook metadata ``accelerator``/``colab``): a submission
    that kept it unchanged is not "repaired"; Colab's own additions still are removed."""
    import copy

    import nbformat

    from coursekit.repair import repair_notebook

    release = nbformat.v4.new_notebook(metadata={"accelerator": "GPU", "colab": {"gpuType": "T4"},
                                                 "kernelspec": {"name": "python3", "display_name": "Python 3"}})
    release.cells = [nbformat.v4.new_markdown_cell("# títol"), nbformat.v4.new_code_cell(
        "# EL VOSTRE CODI AQUÍ\nraise NotImplementedError()",
        metadata={"nbgrader": {"grade": False, "grade_id": "answer", "locked": False, "schema_version": 3,
                               "solution": True, "task": False}})]
    kept = copy.deepcopy(release)
    assert repair_notebook(kept, release) == []
    assert kept.metadata["accelerator"] == "GPU"
    edited = copy.deepcopy(release)
    edited.metadata["colab"] = {"gpuType": "T4", "provenance": []}
    actions = repair_notebook(edited, release)
    assert any("colab" in a for a in actions) and "colab" not in edited.metadata
