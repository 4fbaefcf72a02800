"""The student's side of every release: the guide around the exercises, the final self-check, what
the public mirror receives (``coursekit publish``), and imports that Colab can satisfy.

The self-check is executed for real: each release notebook, blank and as the instructor's solution
(plus one wrong A1 student from the catalogue), runs alone in a fresh kernel in fast mode, as a
student would run it in Colab, and the self-check's printed summary is read back.
"""
from __future__ import annotations

import ast
import json
import copy
import os
import subprocess
import sys

import nbformat
import pytest

from conftest import REPO, make_course
from tiers import thorough
from coursekit import classgen, codeprint, student_guide
from bncourse import ASSIGNMENTS
from bncourse.messages import GUIDE, README_BADGE, README_INTRO, README_TITLE, RUN_TIME  # the course's words
from coursekit.paths import Course
from coursekit.publish import BADGE_RE, publish, secret_lines

WRONG_A1 = "eps_outside_sqrt"


def _release(assignment: str) -> nbformat.NotebookNode:
    (path,) = sorted((REPO / "release" / assignment).glob("*.ipynb"))
    return nbformat.read(str(path), as_version=4)


def _visible_tests(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def _role(cell):
    return cell.metadata.get("coursekit", {}).get("role")


def _execute(nb, workdir) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh kernel started in ``workdir``, in fast mode and not under nbgrader
    (the kernel's environment is given to it, this process's is left alone: several run at once)."""
    from nbclient import NotebookClient

    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    env["COURSE_MODE"] = "fast"
    NotebookClient(nb, timeout=600, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute(env=env)
    return nb


def _self_check_report(nb) -> str:
    cell = nb.cells[-1]
    assert _role(cell) == GUIDE["role_self_check"]
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"the self-check crashed: {errors}"
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _status_lines(report: str) -> dict[str, str]:
    """grade_id -> its status line, from the self-check's report."""
    lines = report.splitlines()
    out = {}
    for i, line in enumerate(lines):
        if " p.) — " in line:
            out[line.split(" (", 1)[0]] = lines[i + 1].strip()
    return out


@pytest.fixture(scope="module")
@thorough
def executed(tmp_path_factory, release_alone):
    """{(assignment, who): executed notebook}: blank releases, solutions, one wrong A1 student.

    Each notebook runs in its own kernel, two at a time (one per core: fast mode gives every kernel one
    math thread), as a student would run it in Colab: fast mode, not under nbgrader. The blank releases are
    the session's runs of conftest's ``release_alone`` (the assignments' modules read the same runs)."""
    from concurrent.futures import ThreadPoolExecutor

    course = Course.at(REPO)
    base = tmp_path_factory.mktemp("alone")
    jobs = {}
    for assignment in ASSIGNMENTS:
        solution = next(v for v in classgen.catalogue(assignment) if v.student == "solution")
        jobs[(assignment, "solution")] = (classgen.render(course, assignment, solution)[1],
                                          base / assignment / "solution")
    wrong = next(v for v in classgen.catalogue("a1_batchnorm1d") if v.student == WRONG_A1)
    jobs[("a1_batchnorm1d", WRONG_A1)] = (classgen.render(course, "a1_batchnorm1d", wrong)[1], base / "a1" / WRONG_A1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(assignment, "blank"): pool.submit(lambda a: release_alone(a)[0], assignment)
                   for assignment in ASSIGNMENTS}
        futures.update({key: pool.submit(_execute, nb, workdir) for key, (nb, workdir) in jobs.items()})
        return {key: future.result() for key, future in futures.items()}


def test_every_release_opens_with_the_guide_and_ends_with_the_self_check():
    template = (REPO / "notebooks" / GUIDE["before_file"]).read_text(encoding="utf-8").strip("\n")
    times = json.loads((REPO / "notebooks" / student_guide.TIMES_FILE).read_text(encoding="utf-8"))
    handin = (REPO / "notebooks" / GUIDE["handin_file"]).read_text(encoding="utf-8").strip("\n")
    for assignment in ASSIGNMENTS:
        nb = _release(assignment)
        before = template.replace(GUIDE["times_placeholder"],
                                  student_guide.time_line(times, assignment, words=RUN_TIME)).rstrip("\n")
        assert _role(nb.cells[0]) == "colab-badge"
        assert _role(nb.cells[1]) == GUIDE["role_before"] and nb.cells[1].source == before
        assert "Drive" in before and "GPU" in before
        assert _role(nb.cells[-2]) == GUIDE["role_handin"] and nb.cells[-2].source == handin
        assert "Baixa" in handin and "Moodle" in handin and "Reinicia" in handin
        check = nb.cells[-1]
        assert check.cell_type == "code" and check.metadata["editable"] is False
        assert "nbgrader" not in check.metadata, "the autograder must treat it as an ordinary cell"
        for grade_id in _visible_tests(nb):
            assert f'"{grade_id}"' in check.source, (assignment, grade_id)
        assert "HIDDEN" not in check.source and "BEGIN SOLUTION" not in check.source


def test_every_release_states_its_measured_full_mode_time():
    """The run time a release states is the one measured (``coursekit time-full-mode`` on a GPU machine):
    as this notebook's while its source's code is the one measured, as an earlier version's after that."""
    times = json.loads((REPO / "notebooks" / student_guide.TIMES_FILE).read_text(encoding="utf-8"))
    assert times["machine"]["gpu"], "the stated times must come from a run on a GPU"
    assert "one epoch per training" in times["kind"] or times["kind"] == "full size"
    for assignment in ASSIGNMENTS:
        entry = times["notebooks"][assignment]
        assert "error" not in entry, f"{assignment}: the measured run failed"
        minutes = student_guide.full_mode_minutes(times, assignment)
        assert minutes * 60 >= entry.get("estimated_seconds", entry["seconds"])
        text = _release(assignment).cells[1].source
        assert f"**{minutes} minut" in text, assignment
        (source,) = sorted((REPO / "source" / assignment).glob("*.ipynb"))
        if codeprint.file_fingerprint(source) == entry["code"]:
            assert "executar aquest quadern sencer va trigar" in text, assignment
        else:
            assert "una versió anterior d'aquest quadern" in text and "no s'ha tornat a mesurar" in text, assignment


def test_code_fingerprint_ignores_comments_and_layout_only():
    (source,) = sorted((REPO / "source" / "a1_batchnorm1d").glob("*.ipynb"))
    nb = nbformat.read(str(source), as_version=4)
    before = codeprint.code_fingerprint(nb)
    code = next(c for c in nb.cells if c.cell_type == "code" and "def " in c.source)
    original = code.source
    code.source = "# @title Un títol de formulari de Colab\n\n" + original + "\n\n# un comentari al final\n"
    assert codeprint.code_fingerprint(nb) == before
    code.source = original.replace("def ", "def _", 1)
    assert codeprint.code_fingerprint(nb) != before
    code.source = "%matplotlib inline\n" + original
    assert codeprint.code_fingerprint(nb) != before


def test_blank_release_names_every_missing_part_without_a_traceback(executed):
    for assignment in ASSIGNMENTS:
        nb = executed[(assignment, "blank")]
        status = _status_lines(_self_check_report(nb))
        assert sorted(status) == sorted(_visible_tests(nb)), assignment
        assert not any(s.startswith("✔") for s in status.values()), (assignment, status)
        assert any("en blanc" in s for s in status.values()), (assignment, status)
        assert "Comprovacions visibles superades: 0 de" in _self_check_report(nb)


def test_solution_passes_every_visible_check(executed):
    for assignment in ASSIGNMENTS:
        report = _self_check_report(executed[(assignment, "solution")])
        status = _status_lines(report)
        assert status and all(s.startswith("✔") for s in status.values()), (assignment, report)
        nb = _release(assignment)
        answers = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                   if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
        for answer in answers:
            assert f"- {answer} (" in report, (assignment, answer)


def test_wrong_answer_is_named_and_only_among_what_it_breaks(executed):
    wrong = next(v for v in classgen.catalogue("a1_batchnorm1d") if v.student == WRONG_A1)
    status = _status_lines(_self_check_report(executed[("a1_batchnorm1d", WRONG_A1)]))
    failing = {k for k, s in status.items() if s.startswith("✘")}
    assert failing and failing <= set(wrong.fails), (failing, wrong.fails)


def test_self_check_does_nothing_while_nbgrader_grades():
    source = _release("a1_batchnorm1d").cells[-1].source
    env = dict(os.environ, NBGRADER_EXECUTION="autograde")
    proc = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "omesa" in proc.stdout and "p.) —" not in proc.stdout


# ---------------------------------------------------------------------------------------------------------
# imports: only what Colab ships

COLAB_SHIPS = {"torch", "torchvision", "numpy", "matplotlib", "tqdm", "PIL", "IPython", "google"}


def test_every_import_of_every_release_is_shipped_by_colab():
    for assignment in ASSIGNMENTS:
        for cell in _release(assignment).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    assert top in COLAB_SHIPS or top in sys.stdlib_module_names, (assignment, name)


# ---------------------------------------------------------------------------------------------------------
# coursekit publish


def _git_mirror(path, remote="https://github.com/miquelmn/aa_2526.git"):
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "remote", "add", "origin", remote], check=True)
    return path


def test_publish_writes_exactly_the_release_and_every_badge_resolves(tmp_path):
    mirror = _git_mirror(tmp_path / "mirror")
    (mirror / "release" / "old_assignment").mkdir(parents=True)
    (mirror / "release" / "old_assignment" / "stale.ipynb").write_text("{}")
    assert publish(Course.at(REPO), mirror) == []
    files = sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file() and ".git" not in p.parts)
    expected = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "release").rglob("*") if p.is_file())
    assert files == sorted(expected + ["README.md"])
    secrets = secret_lines(Course.at(REPO))
    assert len(secrets) > 50  # the solutions and hidden tests of the three assignments
    published_text = "\n".join((mirror / f).read_text(encoding="utf-8") for f in files)
    assert "BEGIN SOLUTION" not in published_text and "HIDDEN TESTS" not in published_text
    published_lines = {line.strip() for f in files if f.endswith(".ipynb")
                       for cell in nbformat.read(str(mirror / f), as_version=4).cells
                       for line in cell.source.splitlines()}
    assert not secrets & published_lines
    readme = (mirror / "README.md").read_text(encoding="utf-8")
    # in the course's words, read from its nbgrader_config.py (the engine's own are English)
    assert readme.startswith(f"# {README_TITLE}\n\n{README_INTRO}\n") and f"[![{README_BADGE}]" in readme
    urls = [m for m in BADGE_RE.finditer(readme)]
    assert len(urls) == len(ASSIGNMENTS)
    for m in urls:
        assert (mirror / m.group("path")).is_file()


def test_publish_refuses_leaks_wrong_mirrors_and_the_course_itself(tmp_path):
    course = make_course(tmp_path / "course")
    # a release that carries one line of a solution
    (path,) = sorted((course.release / "a1_batchnorm1d").glob("*.ipynb"))
    nb = nbformat.read(str(path), as_version=4)
    secret = sorted(secret_lines(course))[0]
    leaky = copy.deepcopy(nb)
    leaky.cells.append(nbformat.v4.new_code_cell("# ajuda\n" + secret))
    nbformat.write(leaky, str(path))
    mirror = _git_mirror(tmp_path / "mirror")
    problems = publish(course, mirror)
    assert any("a1_batchnorm1d" in p and "must not see" in p for p in problems), problems
    assert not (mirror / "release").exists(), "nothing is written when publishing is refused"
    nbformat.write(nb, str(path))
    # a mirror of another repository
    other = _git_mirror(tmp_path / "other", "git@github.com:someone/else.git")
    problems = publish(course, other)
    assert problems and all("someone/else" in p for p in problems)
    # the course repository itself
    proc = subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), "publish",
                           str(course.root / "public")], capture_output=True, text=True)
    assert proc.returncode != 0 and "inside" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "coursekit", "--course", str(course.root), "publish",
                           str(tmp_path / "mirror")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "git add -A" in proc.stdout


def test_the_engine_self_check_without_the_course_words_speaks_english_and_runs(monkeypatch):
    """The engine's own self-check (no course words): English, and it runs; in an empty namespace every
    part reports what is missing and none passes."""
    import contextlib
    import io

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = _release("a1_batchnorm1d")
    source = student_guide.self_check_source(nb)
    assert source.startswith(student_guide.SELF_CHECK["title"]) and "_ANSWERS = [" in source
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<self-check>", "exec"), {})
    report = out.getvalue()
    assert "Visible checks passed: 0 of" in report and "✔" not in report, report[-500:]
    assert "- something is missing:" in report or "✘" in report
    assert "Written answers (marked by the teachers" in report
