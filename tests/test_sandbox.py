"""The kernel sandbox and its warm start.

Real kernels, started through nbclient with ``SandboxKernelManager``, probe
their own sandbox from inside: a scratch course has a fake source/, gradebook,
another student's folders and .coursekit/ that they must not reach.  The same
probe notebook runs cold and warm (forked from the fork server) and must give
the same results.  Plain ``nbgrader autograde`` of a tiny assignment, with the
course's configuration, grades an honest and a hostile submission: the hostile
one reads nothing, changes nothing, and its planted symlink never reaches the
gradebook.  Failing closed: no bwrap, no kernel.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config

from coursekit import events
from coursekit.classgen import Variant, write_class
from coursekit.sandbox import WARM_VARIABLE, SandboxError, SandboxKernelManager, wrap_command
from coursekit.sandbox.forkserver import WarmServer
from coursekit.sandbox.check import make_scratch_course

sys.path.insert(0, str(Path(__file__).parent))
import tiny_assignment as T  # noqa: E402

pytestmark = pytest.mark.slow

SECRET = "GRADER_SECRET"

HELPERS = r'''
import json, os, socket, resource, errno
def _try(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "allowed"
def _read(p):
    with open(p, "rb") as f:
        return f.read()
def _write(p):
    with open(p, "w") as f:
        f.write("x")
def _out(**kw):
    print(json.dumps(kw))
'''


def probe_cells(paths: dict, grader_pid: int, grader_port: int, host_tmp: str) -> dict[str, str]:
    q = {k: str(v) for k, v in paths.items()}
    return {
        "read_own": f"_out(r=_read({q['workdir'] + '/mine.txt'!r}).decode())",
        "write_own": f"_write('out.txt'); _out(r=_try(_write, {q['workdir'] + '/out2.txt'!r}))",
        "read_release": f"_out(r=_read({q['release']!r}).decode())",
        "read_secrets": "_out(**{k: _try(_read, p) for k, p in %r.items()})" % {
            k: q[k] for k in ("source", "gradebook", "config", "other_submitted", "other_autograded", "state")},
        "list_course": f"_out(r=sorted(os.listdir({q['root']!r})))",
        "write_outside": "_out(**{k: _try(_write, p) for k, p in %r.items()})" % {
            "release": q["release"], "root": q["root"] + "/x.txt", "venv": sys.prefix + "/x.txt",
            "etc": "/etc/x.txt", "usr": "/usr/x.txt"},
        "tmp": f"_write('/tmp/mine.txt'); _out(host=os.path.exists({host_tmp!r}), mine=os.path.exists('/tmp/mine.txt'))",
        "network": ("s1 = socket.socket(); s1.settimeout(2); s2 = socket.socket(); s2.settimeout(2)\n"
                    f"_out(loopback=_try(s1.connect, ('127.0.0.1', {grader_port})), "
                    "internet=_try(s2.connect, ('1.1.1.1', 53)), "
                    "dns=_try(socket.getaddrinfo, 'pypi.org', 443))"),
        "env": f"_out(secret={SECRET!r} in os.environ, keys=sorted(os.environ))",
        "identity": ("st = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
                     "_out(uid=os.getuid(), caps=int(st['CapEff'], 16), bnd=int(st['CapBnd'], 16), "
                     "nnp=st['NoNewPrivs'].strip(), ppid=os.getppid(), "
                     "pids=sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"),
        "limits": "_out(**{n: resource.getrlimit(getattr(resource, n))[0] for n in "
                  "('RLIMIT_CPU', 'RLIMIT_DATA', 'RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_FSIZE')})",
        "memory_hog": ("chunks = []\ntry:\n    while True:\n        chunks.append(bytearray(64 * 2**20))\n"
                       "except MemoryError:\n    n = len(chunks)\nchunks = None\n"
                       "import mmap\n_out(mb=n * 64, shared=_try(mmap.mmap, -1, 32 * 2**30))"),
        "fork_bomb": ("import time\npids, err = [], None\ntry:\n    while len(pids) < 5000:\n"
                      "        pid = os.fork()\n        if pid == 0:\n            time.sleep(30); os._exit(0)\n"
                      "        pids.append(pid)\nexcept OSError as e:\n    err = errno.errorcode[e.errno]\n"
                      "for p in pids:\n    os.kill(p, 9)\nfor p in pids:\n    os.waitpid(p, 0)\n"
                      "_out(forks=len(pids), err=err)"),
        "file_size": ("f = open('big.bin', 'wb', buffering=0); f.seek(%d)\n"
                      "r = _try(f.write, b'x'); f.close(); os.remove('big.bin'); _out(r=r)"),
        "kill": (f"r = _try(os.kill, {grader_pid}, 9)\nos.kill(-1, 9)\n"
                 "_out(grader=r)"),
        "alive": "_out(r='still here')",
        "deterministic": "import sys\n_out(hash=hash('batchnorm'), cwd=os.getcwd(), path=[p for p in sys.path if 'ck-' not in p])",
    }


TEST_LIMITS = {"memory_mb": 768, "processes": 64, "file_size_mb": 16, "output_limit_mb": 1}


def km_config(**traits) -> Config:
    c = Config()
    # the warm path is tested with the module's own server (warm_server); cold kernels stay cold
    c.SandboxKernelManager.start_warm_server = False
    for k, v in {**TEST_LIMITS, **traits}.items():
        setattr(c.SandboxKernelManager, k, v)
    return c


def run_cells(cells: list[str], workdir: Path, config: Config | None = None, timeout: int = 60):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            kernel_manager_class=SandboxKernelManager, config=config or km_config(),
                            resources={"metadata": {"path": str(workdir)}})
    client.on_notebook_start = lambda **kw: nb.metadata.update(sandbox_mode=client.km.sandbox_mode)
    client.execute()
    return nb


def result(cell) -> dict:
    for out in cell.outputs:
        if out.output_type == "stream":
            for line in out.text.splitlines():
                if line.startswith("{"):
                    return json.loads(line)
        if out.output_type == "error":
            return {"error": f"{out.ename}: {out.evalue}"}
    return {"error": "no output"}


@pytest.fixture(scope="module")
def warm_server():
    """One fork server for the module (light preload: the mechanism is what is tested)."""
    server = WarmServer(preload=("numpy",))
    yield server
    server.close()


def probe(tmp_path_factory, warm) -> dict:
    base = tmp_path_factory.mktemp("warm" if warm else "cold")
    paths = make_scratch_course(base)
    host_tmp = Path("/tmp") / f"ck-host-visible-{os.getpid()}-{int(bool(warm))}"
    host_tmp.write_text("grader's /tmp\n")
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    os.environ[SECRET] = "s3cret"
    cells = probe_cells(paths, os.getpid(), listener.getsockname()[1], str(host_tmp))
    cells["file_size"] %= TEST_LIMITS["file_size_mb"] * 2**20
    if warm:
        os.environ[WARM_VARIABLE] = warm.socket
    try:
        nb = run_cells([HELPERS, *cells.values()], paths["workdir"])
    finally:
        listener.close()
        host_tmp.unlink()
        os.environ.pop(SECRET, None)
        os.environ.pop(WARM_VARIABLE, None)
    out = {k: result(c) for k, c in zip(cells, nb.cells[1:])}
    assert nb.metadata["sandbox_mode"] == ("warm" if warm else "cold")
    out["_paths"] = paths
    out["_uid"] = os.stat(paths["workdir"]).st_uid
    return out


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    return probe(tmp_path_factory, warm=None)


@pytest.fixture(scope="module")
def warm(tmp_path_factory, warm_server):
    return probe(tmp_path_factory, warm=warm_server)


@pytest.fixture(params=["cold", "warm"])
def sandboxed(request):
    return request.getfixturevalue(request.param)


def test_reads_and_writes_only_its_working_copy(sandboxed):
    assert sandboxed["read_own"] == {"r": "my own file\n"}
    assert sandboxed["write_own"] == {"r": "allowed"}, "el kernel ha de poder escriure la seva còpia"
    assert sandboxed["read_release"] == {"r": "secret release\n"}
    # what the kernel made in an autograded/ working copy is removed once it ends (so that feedback never
    # copies it); what was there before the kernel started stays
    assert not (sandboxed["_paths"]["workdir"] / "out.txt").exists()
    assert (sandboxed["_paths"]["workdir"] / "mine.txt").read_text() == "my own file\n"
    # the working copy goes back to its owner once the kernel is gone
    assert sandboxed["_uid"] == os.getuid()


def test_cannot_read_course_secrets(sandboxed):
    assert sandboxed["read_secrets"] == {k: "ENOENT" for k in (
        "source", "gradebook", "config", "other_submitted", "other_autograded", "state")}
    # the course root shows only the folders on the way to what it may see
    assert sandboxed["list_course"] == {"r": ["autograded", "release"]}


def test_cannot_write_outside_its_working_copy(sandboxed):
    denied = sandboxed["write_outside"]
    assert set(denied) == {"release", "root", "venv", "etc", "usr"}
    assert all(v in ("EROFS", "EACCES", "ENOENT") for v in denied.values()), denied
    paths = sandboxed["_paths"]
    assert paths["release"].read_text() == "secret release\n"
    assert not (paths["root"] / "x.txt").exists() and not Path(sys.prefix, "x.txt").exists()
    assert sandboxed["tmp"] == {"host": False, "mine": True}, "/tmp ha de ser privat"


def test_has_no_network(sandboxed):
    net = sandboxed["network"]
    assert net["loopback"] in ("ECONNREFUSED", "ENETUNREACH"), net
    assert net["internet"] in ("ENETUNREACH", "ECONNREFUSED"), net
    assert net["dns"] != "allowed", net


def test_environment_has_no_grader_secrets(sandboxed):
    assert sandboxed["env"]["secret"] is False
    assert "JPY_PARENT_PID" not in sandboxed["env"]["keys"]


def test_runs_unprivileged_and_cannot_see_the_grader(sandboxed):
    ident = sandboxed["identity"]
    assert ident["uid"] != 0 and ident["caps"] == 0 and ident["bnd"] == 0 and ident["nnp"] == "1", ident
    assert ident["ppid"] == 0, "el pare del kernel no ha de ser visible"
    assert len(ident["pids"]) <= 4, ident["pids"]
    assert sandboxed["kill"] == {"grader": "ESRCH"}
    assert sandboxed["alive"] == {"r": "still here"}, "kill(-1) no ha d'haver mort el kernel"


def test_limits_contain_hogs_and_bombs(sandboxed):
    lim = sandboxed["limits"]
    assert lim["RLIMIT_DATA"] == TEST_LIMITS["memory_mb"] * 2**20
    assert lim["RLIMIT_NPROC"] == TEST_LIMITS["processes"]
    assert lim["RLIMIT_FSIZE"] == TEST_LIMITS["file_size_mb"] * 2**20
    assert lim["RLIMIT_CPU"] > 0 and lim["RLIMIT_AS"] > 0
    hog = sandboxed["memory_hog"]
    assert hog["mb"] <= TEST_LIMITS["memory_mb"] and hog["shared"] == "ENOMEM", hog
    bomb = sandboxed["fork_bomb"]
    assert bomb["err"] == "EAGAIN" and bomb["forks"] < TEST_LIMITS["processes"], bomb
    assert sandboxed["file_size"] == {"r": "EFBIG"}


def test_warm_kernel_behaves_like_a_cold_one(cold, warm):
    keys = [k for k in cold if not k.startswith("_")]
    same = {k: cold[k] for k in keys if k not in ("deterministic", "identity", "fork_bomb", "memory_hog")}
    assert same == {k: warm[k] for k in same}
    # same hash seed, same sys.path, cwd relative to its own course
    c, w = cold["deterministic"], warm["deterministic"]
    assert c["hash"] == w["hash"] and c["path"] == w["path"]
    assert cold["env"]["keys"] == warm["env"]["keys"]


def test_output_flood_is_cut_and_cpu_limit_kills_only_the_kernel(tmp_path):
    workdir = tmp_path / "autograded" / "eve" / "a1"
    workdir.mkdir(parents=True)
    nb = run_cells(["import sys\nfor i in range(64):\n    sys.stdout.write('x' * 2**17 + '\\n')",
                    "print('still here')"], workdir)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    # no course words in this configuration: the engine's own (English) note
    assert len(text) < 2 * 2**20 and "[output truncated: this notebook wrote more than 1 MB" in text
    assert "".join(o.get("text", "") for o in nb.cells[1].outputs) == ""  # past the cap: dropped

    t0 = time.monotonic()
    with pytest.raises(DeadKernelError):
        run_cells(["while True:\n    pass", "print('never')"], workdir, km_config(cpu_seconds=2), timeout=60)
    assert time.monotonic() - t0 < 40
    assert os.stat(workdir).st_uid == os.getuid()


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_timeout_interrupts_and_nothing_outlives_the_kernel(tmp_path, mode, request, monkeypatch):
    workdir = tmp_path / "autograded" / "eve" / "a1"
    workdir.mkdir(parents=True)
    marker = f"ck-daemon-{os.getpid()}-{mode}"
    cells = [f"import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'sleep 600 # {marker}'], "
             "start_new_session=True)",
             "while True:\n    pass",  # interrupted by the cell timeout (SIGINT through the supervisor)
             "print('after the interrupt')"]
    if mode == "warm":
        monkeypatch.setenv(WARM_VARIABLE, request.getfixturevalue("warm_server").socket)
    nb = NotebookClient(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]),
                        timeout=4, interrupt_on_timeout=True, kernel_name="python3", allow_errors=True,
                        kernel_manager_class=SandboxKernelManager, config=km_config(),
                        resources={"metadata": {"path": str(workdir)}})
    modes = []
    nb.on_notebook_start = lambda **kw: modes.append(nb.km.sandbox_mode)
    nb.execute()
    assert modes == [mode]
    out = nb.nb.cells
    assert any(o.get("ename") == "KeyboardInterrupt" for o in out[1].outputs), out[1].outputs
    assert "".join(o.get("text", "") for o in out[2].outputs) == "after the interrupt\n"
    assert _processes_with(marker) == [], "un procés de l'entrega ha sobreviscut al kernel"


def test_fails_closed_without_a_working_bwrap(tmp_path, monkeypatch):
    workdir = tmp_path / "autograded" / "eve" / "a1"
    workdir.mkdir(parents=True)
    monkeypatch.setenv("COURSEKIT_BWRAP", str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxError, match="bubblewrap not found.*make setup"):
        run_cells(["print('ran')"], workdir)
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("COURSEKIT_BWRAP", str(broken))
    with pytest.raises(SandboxError, match="No permissions to create new namespace"):
        run_cells(["print('ran')"], workdir)
    assert sorted(p.name for p in workdir.iterdir()) == []
    assert os.stat(workdir).st_uid == os.getuid()


def test_development_opt_out_warns_and_runs_unsandboxed(tmp_path, monkeypatch, caplog):
    workdir = tmp_path / "autograded" / "eve" / "a1"
    workdir.mkdir(parents=True)
    monkeypatch.setenv("COURSEKIT_SANDBOX", "off")
    nb = run_cells(["import os; print(os.getuid())"], workdir)
    assert nb.metadata["sandbox_mode"] is None
    assert "".join(o.get("text", "") for o in nb.cells[0].outputs).strip() == str(os.getuid())
    assert any("WITHOUT the sandbox" in r.getMessage() for r in caplog.records)


def test_wrap_command_runs_a_command_in_the_sandbox(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden")
    work = tmp_path / "autograded" / "eve" / "a1"
    work.mkdir(parents=True)
    code = (f"import os\ntry:\n    open({str(secret)!r}).read(); print('READ')\nexcept OSError as e:\n"
            "    print(type(e).__name__)\nprint(os.getuid(), input())\nopen('made.txt', 'w').write('1')")
    argv, env = wrap_command([sys.executable, "-c", code], workdir=work)
    proc = subprocess.run(argv, env=env, input="hola\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FileNotFoundError", "65534", "hola"]
    assert (work / "made.txt").stat().st_uid == os.getuid()


# ---------------------------------------------------------------- nbgrader

def _hostile_double(course) -> str:
    nb = course.submitted / "ok" / T.ASSIGNMENT / f"{T.NOTEBOOK}.ipynb"
    return (
        "def double(x):\n    return 2 * x\n"
        "import json, os\nseen = {}\n"
        f"for name, path in {{'source': {str(course.source / T.ASSIGNMENT / (T.NOTEBOOK + '.ipynb'))!r}, "
        f"'gradebook': {str(course.gradebook)!r}, 'other': {str(nb)!r}}}.items():\n"
        "    try:\n        open(path).read(); seen[name] = 'READ'\n"
        "    except OSError as e:\n        seen[name] = type(e).__name__\n"
        "try:\n    open(" + repr(str(course.gradebook)) + ", 'w').write('pwned'); seen['write'] = 'WROTE'\n"
        "except OSError as e:\n    seen['write'] = type(e).__name__\n"
        # nbgrader (as the grader) writes this file after the run: a symlink here
        # would make it overwrite the gradebook
        f"os.remove('{T.NOTEBOOK}.ipynb')\nos.symlink({str(course.gradebook)!r}, '{T.NOTEBOOK}.ipynb')\n"
        "print('SEEN', json.dumps(seen, sort_keys=True))\n"
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from conftest import make_course, nbgrader

    course = make_course(tmp_path_factory.mktemp("nbg") / "course", [])
    T.install(course)
    write_class(course, T.ASSIGNMENT, [Variant("ok", "right", dict(T.SOLUTION))])
    write_class(course, T.ASSIGNMENT, [Variant("snoop", "hostile", {
        "double": _hostile_double(course), "inc": T.SOLUTION["inc"]})])
    before = {"source": T.digests(course.source), "submitted": T.digests(course.submitted)}
    proc = nbgrader(course, "autograde", T.ASSIGNMENT)
    return course, before, proc


def test_nbgrader_autograde_runs_kernels_sandboxed(graded):
    from coursekit.gradebook import scores

    course, before, proc = graded
    got = scores(course, T.ASSIGNMENT)
    assert got["ok"]["test_double"] == 2 and got["ok"]["test_inc"] == 1
    # the hostile submission earns what its (correct) code earns, nothing more, and harms nothing
    assert got["snoop"]["test_double"] == 2 and got["snoop"]["test_inc"] == 1
    out = nbformat.read(str(course.autograded / "snoop" / T.ASSIGNMENT / f"{T.NOTEBOOK}.ipynb"), 4)
    seen = next(o.text for c in out.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.get("text", "").startswith("SEEN"))
    seen = json.loads(seen.split(" ", 1)[1])
    assert seen.pop("write") in ("OSError", "PermissionError")
    assert seen == {"gradebook": "FileNotFoundError", "other": "FileNotFoundError", "source": "FileNotFoundError"}
    with sqlite3.connect(course.gradebook) as db:  # still a database, not a notebook
        assert db.execute("select count(*) from submitted_assignment").fetchone()[0] == 2
    assert T.digests(course.source) == before["source"]
    assert T.digests(course.submitted) == before["submitted"]
    kinds = [e["kind"] for e in events.read(course.root, T.ASSIGNMENT, "snoop")]
    assert "sandbox_removed_links" in kinds


def test_nbgrader_autograde_fails_closed(graded, monkeypatch, tmp_path):
    from conftest import nbgrader

    course, _, _ = graded
    shutil.copytree(course.submitted / "ok", course.submitted / "late")
    monkeypatch.setenv("COURSEKIT_BWRAP", str(tmp_path / "missing-bwrap"))
    proc = nbgrader(course, "autograde", T.ASSIGNMENT, "--student", "late", check=False)
    assert proc.returncode != 0
    assert "bubblewrap not found" in proc.stdout + proc.stderr
    from coursekit.gradebook import scores
    assert "late" not in scores(course, T.ASSIGNMENT) or not any(scores(course, T.ASSIGNMENT)["late"].values())


def test_venv_reached_through_a_symlink_runs_sandboxed(tmp_path):
    """A course whose venv is a symlink (or sits in a linked folder): the kernel's interpreter is
    mounted at the link path it is started by, not only at its target."""
    link = tmp_path / "venv-link"
    link.symlink_to(Path(sys.prefix).resolve())
    argv, env = wrap_command([str(link / "bin" / "python"), "-c", "import sys; print(sys.prefix)"])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(link)


def test_interpreter_outside_every_mount_is_refused_by_name():
    from coursekit.sandbox.manager import check_interpreter
    with pytest.raises(SandboxError, match="/opt/elsewhere/bin/python"):
        check_interpreter(["/opt/elsewhere/bin/python"], ["/srv/venv"])
    check_interpreter(["/srv/venv/bin/python"], ["/srv/venv"])
