"""Hostile delegation: student code that hands a from-scratch layer to PyTorch and
hides it from every check it knows of, for any of the from-scratch assignments
(``MyBatchNorm1d``, ``MyBatchNorm2d``: ``F.batch_norm`` takes both shapes).

Each piece is a simulated student who knows how the grader looks:

- ``THREAD_LOOKUP``: ``F.batch_norm`` found by a name built at run time
  (``pydoc.locate`` / ``pkgutil.resolve_name``, ``chr(95)`` for the
  underscore) and run in a worker thread, where an operator recorder of the
  calling thread sees nothing;
- ``FORGE_ANSWER`` (a cell after the answer): in the grading kernel an input
  transformer, installed through an alias of the shell, turns every later cell
  that checks anything into ``pass``; in the trusted re-check (recognised by its
  working folder) it patches ``json.dumps`` and ``os.replace`` and rewrites any
  ``answer.json`` to claim no operator was used;
- ``WRITEFILE_HELPER`` + ``WRITEFILE_LAYER``: the delegating helper (which runs
  it in a worker thread) written to a module of its own by ``%%writefile`` and
  imported by the layer;
- ``FORKED``: the normalisation computed in another process (``os.fork``
  reached by a computed name), results sent back through a pipe.

Every layer keeps ``x`` in the autograd graph (``+ 0 * x``) so that the graph
shows no normalisation node.  All of them deserve 0 points on every test of
the layer.  ``bncourse.classgen.hostile`` puts them in the graded corpus;
``tests/test_trusted.py`` runs them through the out-of-kernel verdicts alone.
"""
from __future__ import annotations

_INIT = '''
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
'''

THREAD_LOOKUP = '''import pydoc
import torch
import torch.nn as nn

_u = chr(95)
_norm = pydoc.locate(".".join(["torch", "nn", "functional", "batch" + _u + "norm"]))
_Pool = pydoc.locate("concurrent.futures.ThreadPoolExecutor")
_pool = _Pool(max_workers=1)


class {mine}(nn.Module):
    """La normalització es fa en un altre fil: qui mira el fil principal no la veu."""
''' + _INIT + '''
    def forward(self, x):
        job = _pool.submit(_norm, x.detach(), self.running_mean, self.running_var,
                           None, None, self.training, self.momentum, self.eps)
        x_hat = job.result() + 0 * x
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.gamma.view(shape) * x_hat + self.beta.view(shape)
'''

RESOLVE_THREAD = '''import pkgutil
import torch
import torch.nn as nn

_find = pkgutil.resolve_name
_name = "torch.nn.functional:" + "".join(map(chr, (98, 97, 116, 99, 104, 95, 110, 111, 114, 109)))
_Thread = _find("threading:Thread")


class {mine}(nn.Module):
    """Un fil nou a cada crida; la funció es troba pel nom, construït amb codis de caràcter."""
''' + _INIT + '''
    def forward(self, x):
        box = []
        worker = _Thread(target=lambda: box.append(_find(_name)(
            x.detach(), self.running_mean, self.running_var, None, None, self.training, self.momentum, self.eps)))
        worker.start()
        worker.join()
        x_hat = box[0] + 0 * x
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.gamma.view(shape) * x_hat + self.beta.view(shape)
'''

# Goes in a cell of its own right after the answer cell.
FORGE_ANSWER = r'''import json, os
import IPython

if "ck-trusted" in os.getcwd() or os.path.exists("answer.json"):
    # the re-check: whatever it writes, it says no normalisation was used
    def _clean(obj):
        if isinstance(obj, dict) and "ops" in obj:
            obj = dict(obj, ops=[], spawned=[], guard=True)
        return obj
    _dumps, _replace = json.dumps, os.replace
    json.dumps = lambda obj, **kw: _dumps(_clean(obj), **kw)
    def _forged_replace(src, dst, *args, **kwargs):
        try:
            data = json.load(open(src))
            json.dump(_clean(data), open(src, "w"))
        except Exception:
            pass
        return _replace(src, dst, *args, **kwargs)
    os.replace = _forged_replace
    import atexit
    atexit.register(lambda: os.path.exists("answer.json") and _forged_replace("answer.json", "answer.json"))
    print("ATAC: resposta de la verificació reescrita")
else:
    _shell = IPython.get_ipython()
    _hooks = _shell.input_transformers_cleanup
    _hooks.append(lambda lines: ["pass\n"] if any(("assert" in l or "check" in l) for l in lines) else lines)
    print("ATAC: les cel·les de prova ja no fan res")
'''

WRITEFILE_HELPER = '''%%writefile bn_helpers.py
from concurrent.futures import ThreadPoolExecutor

import torch

_pool = ThreadPoolExecutor(max_workers=1)


def normalise(x, running_mean, running_var, training, momentum, eps):
    """El càlcul de veritat, lluny de la llibreta (i en un altre fil)."""
    return _pool.submit(torch.nn.functional.batch_norm, x, running_mean, running_var, None, None,
                        training, momentum, eps).result()
'''

# The answer cell: imports the helper when it runs (the %%writefile cell comes after it).
WRITEFILE_LAYER = '''import torch
import torch.nn as nn


class {mine}(nn.Module):
    """Les quatre línies importants són en un fitxer a part."""
''' + _INIT + '''
    def forward(self, x):
        from bn_helpers import normalise
        x_hat = normalise(x.detach(), self.running_mean, self.running_var, self.training, self.momentum, self.eps)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.gamma.view(shape) * (x_hat + 0 * x) + self.beta.view(shape)
'''

FORKED = '''import io
import os
import torch
import torch.nn as nn

_split = getattr(os, "".join(["fo", "rk"]))


def _elsewhere(x, mean, var, training, momentum, eps):
    """Normalitza en un altre procés i en torna el resultat i les estadístiques."""
    read, write = os.pipe()
    pid = _split()
    if pid == 0:
        try:
            y = torch.nn.functional.batch_norm(x, mean, var, None, None, training, momentum, eps)
            buffer = io.BytesIO()
            torch.save((y, mean, var), buffer)
            os.write(write, buffer.getvalue())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return torch.load(io.BytesIO(b"".join(chunks)))


class {mine}(nn.Module):
    """La normalització es calcula en un procés fill."""
''' + _INIT + '''
    def forward(self, x):
        y, mean, var = _elsewhere(x.detach(), self.running_mean.clone(), self.running_var.clone(),
                                  self.training, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(mean)
            self.running_var.copy_(var)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.gamma.view(shape) * (y + 0 * x) + self.beta.view(shape)
'''


def sources(mine: str) -> dict[str, str]:
    """The pieces for a layer named ``mine``."""
    return {"THREAD_LOOKUP": THREAD_LOOKUP.format(mine=mine), "RESOLVE_THREAD": RESOLVE_THREAD.format(mine=mine),
            "FORGE_ANSWER": FORGE_ANSWER, "WRITEFILE_HELPER": WRITEFILE_HELPER,
            "WRITEFILE_LAYER": WRITEFILE_LAYER.format(mine=mine), "FORKED": FORKED.format(mine=mine)}
