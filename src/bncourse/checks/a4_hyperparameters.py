"""Trusted checks of assignment 4: the search helpers, out of the kernel.

The five graded functions (``log_uniform``, ``sample_config``,
``grid_configs``, ``select_best``, ``successive_halving``) are plain Python
over torch's random generators, so the child runs with the built-in kernels
enabled (no ``guard``; nothing here is a normalisation layer);
everything else of the re-check holds (fresh sandboxed child, processes
refused, answer channel held by the grader, inputs drawn from a per-submission
seed).  Every one of the ten test cells is re-checked, each by its own scenario
of ``a4_hyperparameters_probe.py``, on inputs the student never saw; the child
answers with raw data and the statistics and expected answers are computed
here:

- ``test_log_uniform_range``: a tensor of shape (n,) of floats inside
  [low, high], each decade of random power-of-ten intervals (and below / above
  the geometric middle of a random interval) getting its share of the samples;
- ``test_log_uniform_generator`` / ``test_sample_config_generator``: the same
  generator seed gives the same draws whatever the global random state
  (torch, random, numpy), other seeds other draws, and the global state is not
  consumed;
- ``test_sample_config_values``: random spaces (random names, ranges, options
  of several types) give the space's keys in order, Python floats inside the
  ranges and options of the list; an empty space gives {} and an unknown kind
  ValueError;
- ``test_sample_config_distribution``: over 3000 configurations, every option
  of a choice and both halves (linear or logarithmic) of a range get their share;
- ``test_grid_configs``: random grids give exactly ``itertools.product``'s
  list in the documented order, as independent dicts;
- ``test_select_best`` / ``test_select_best_ties``: the very trial with the
  best validation value for the given metric (reading a test result fails; in
  unguarded trials the best test result is elsewhere), the
  first of tied trials, never a NaN, ValueError without a valid trial;
- ``test_halving_survivors`` / ``test_halving_budget``: with a recorded
  ``train_fn`` on random qualities, sizes, ``min_epochs`` and ``eta``, the
  configurations trained in each round, the epochs of every call, the winner,
  the returned trial's epochs and the budget spent.

As in the notebook, ``sample_config`` runs with a reference ``log_uniform``
and ``successive_halving`` with a reference ``select_best``.  Not re-checked:
the written answers (graded by hand) and the experiments (not graded).  The
statistical checks use the notebook's tolerances on as many draws, which an
honest implementation misses with a probability below one in a million.  As
everywhere, code that shares the child's process could forge the data it
answers; forged data only score when they pass checks on inputs drawn after the
code was written.

This module draws the inputs (``spec``), computes the reference and holds ``CHECKS``;
the comparisons, one per test cell, are in ``a4_hyperparameters_compare``.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

from coursekit.checks import AssignmentChecks, Check

from bncourse.checks import NORM_NAMES, NORM_OPS, PRELOAD
from bncourse.checks.a4_hyperparameters_compare import (
    _budget, _grid, _log_generator, _log_range, _sample_distribution, _sample_generator, _sample_values,
    _select, _select_ties, _survivors,
)

PROBE = Path(__file__).with_name("a4_hyperparameters_probe.py")
NAMES = ("lr", "wd", "dropout", "momentum", "width", "depth", "batch", "optim", "eps", "scale", "warmup", "decay")


def spec(seed: int) -> dict:
    import random

    rng = random.Random(seed)

    def decades():
        first = rng.randint(-7, -1)
        return first, first + rng.randint(3, 4)

    ranges = [decades() for _ in range(2)]
    middle_low = rng.choice([0.25, 0.5, 1.0, 2.0])
    log_range = {"cases": [[10.0 ** a, 10.0 ** b, 16000, rng.randrange(1 << 30)] for a, b in ranges]
                 + [[middle_low, middle_low * rng.choice([4.0, 16.0]), 20000, rng.randrange(1 << 30)]],
                 "decades": [[a, b] for a, b in ranges]}

    globals_ = rng.sample(range(100000), 3)
    log_generator = {"low": 10.0 ** rng.randint(-5, -2), "high": rng.choice([0.5, 1.0, 10.0]), "n": 50,
                     "seed": rng.randrange(1 << 30), "other_seed": rng.randrange(1 << 30), "globals": globals_}

    def space(kinds):
        names = rng.sample(NAMES, len(kinds))
        out = []
        for name, kind in zip(names, kinds):
            if kind == "log":
                a = rng.randint(-8, -1)
                out.append([name, ["log", 10.0 ** a, 10.0 ** (a + rng.randint(2, 4))]])
            elif kind == "uniform":
                low = round(rng.uniform(-2.0, 2.0), 3)
                out.append([name, ["uniform", low, low + round(rng.uniform(0.5, 5.0), 3)]])
            else:
                options = rng.choice([[16, 32, 64, 128], ["sgd", "adam", "rmsprop"], [0.01, 0.1, 0.3],
                                      [1, 2, 3, 4, 5], ["a", "b"]])
                out.append([name, ["choice", options[: rng.randint(2, len(options))]]])
        return out

    sample_values = {"space": space(["log", "choice", "uniform", "log", "choice"]), "n": 200,
                     "seed": rng.randrange(1 << 30), "unknown": rng.choice(["normal", "gauss", "int", "loguniform"])}
    sample_distribution = {"space": space(["log", "uniform", "choice", "choice"]), "n": 3000,
                           "seed": rng.randrange(1 << 30)}
    sample_generator = {"space": space(["log", "choice", "uniform"]), "n": 20, "seed": rng.randrange(1 << 30),
                        "other_seed": rng.randrange(1 << 30), "globals": rng.sample(range(100000), 3)}

    grids = []
    for sizes in ([2, 3], [rng.randint(1, 3), rng.randint(2, 3), rng.randint(1, 2)], [rng.randint(2, 4)]):
        names = rng.sample(NAMES, len(sizes))
        if len(names) > 1 and names == sorted(names):
            names.reverse()  # never in alphabetical order: the grid's own order must be kept
        pool = [[0.1, 0.01, 0.001, 1e-4], [32, 64, 128, 16], ["x", "y", "z", "w"], [0.5, 0.25, 0.75, 0.0]]
        grids.append([[name, rng.sample(rng.choice(pool), size)] for name, size in zip(names, sizes)])

    def distinct(n):
        return [round(v, 4) for v in rng.sample([i / 1000 for i in range(1, 1000)], n)]

    select_cases = []
    for metric, guarded in ((None, True), (None, False), ("val_f1", False), ("neg_val_loss", True)):
        n = rng.randint(3, 7)
        vals = distinct(n)
        if metric == "neg_val_loss":
            vals = [-v for v in vals]
        best = max(range(n), key=lambda i: vals[i])
        key = metric or "val_acc"
        rows = [{"config": {"lr": 10.0 ** -i}, key: v} for i, v in enumerate(vals)]
        # the other columns are best elsewhere, so that choosing by them shows
        for column in ("train_acc", "test_acc") + (("val_acc",) if metric else ()):
            values = distinct(n)
            top = max(range(n), key=lambda i: values[i])
            if top == best:
                other = (best + 1) % n
                values[top], values[other] = values[other], values[top]
            for row, v in zip(rows, values):
                row[column] = v
        select_cases.append({"trials": rows, "metric": metric, "guarded": guarded})

    def tie_rows(values):
        values = [float(v) for v in values]  # "nan": a training that diverged
        return [{"config": {"lr": 10.0 ** -i}, "val_acc": v, "train_acc": v, "test_acc": v}
                for i, v in enumerate(values)]

    tie_cases = []
    for _ in range(3):
        n = rng.randint(4, 7)
        values = [rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(n)]
        positions = rng.sample(range(n), 4)
        values[positions[0]] = values[positions[1]] = 0.9  # a tie at the top
        for i in positions[2:2 + rng.randint(1, 2)]:
            values[i] = "nan"
        tie_cases.append(tie_rows(values))
    tie_cases.append(tie_rows(["nan"] + [0.6, 0.7, 0.7]))  # a NaN first never wins
    select_ties = {"cases": tie_cases, "invalid": [[], tie_rows(["nan"] * rng.randint(1, 3))]}

    def qualities(n, ties=False):
        q = distinct(n)
        if ties:
            for _ in range(n // 3):
                i, j = rng.sample(range(n), 2)
                q[i] = q[j]
            top = max(q)
            q[q.index(top)] = top + 0.5  # a tie, but not for the best (the notebook has none there)
        return q

    survivors = {"cases": [[qualities(rng.randint(9, 14)), 1, 3], [qualities(rng.randint(18, 30)), 1, 3],
                           [qualities(rng.randint(5, 8), ties=True), 1, 2], [qualities(rng.randint(6, 9), ties=True), 1, 3],
                           [qualities(3), 1, 3]]}
    # powers of eta, as in the notebook: how many survive a round is the survivors test's business
    budget = {"cases": [[qualities(n), m, e] for n, m, e in
                        ((rng.choice([9, 27]), rng.randint(1, 3), 3), (rng.choice([8, 16]), rng.randint(1, 2), 2),
                         (16, rng.randint(2, 4), 4), (25, rng.randint(1, 2), 5), (1, rng.randint(2, 6), 3))]}
    return {"log_range": log_range, "log_generator": log_generator, "sample_values": sample_values,
            "sample_distribution": sample_distribution, "sample_generator": sample_generator,
            "grid": {"grids": grids}, "select": {"cases": select_cases}, "select_ties": select_ties,
            "halving_survivors": survivors, "halving_budget": budget}


# ------------------------------------------------------------------ references, computed here

def _best(values) -> int:
    """Index of the first of the highest non-NaN values (-1: none)."""
    best = -1
    for i, v in enumerate(values):
        v = float(v)
        if not math.isnan(v) and (best < 0 or v > float(values[best])):
            best = i
    return best


def _halving(qualities, min_epochs, eta):
    """The rounds (ids trained, epochs), the winner and the budget of the documented algorithm."""
    alive, epochs, spent, rounds = list(range(len(qualities))), min_epochs, 0, []
    while True:
        rounds.append((list(alive), epochs))
        spent += epochs * len(alive)
        order = sorted(range(len(alive)), key=lambda i: -qualities[alive[i]])
        keep = max(1, len(alive) // eta)
        if keep == 1:
            return rounds, alive[order[0]], spent
        alive = [alive[i] for i in order[:keep]]
        epochs *= eta


def reference(spec: dict) -> dict:
    out = {"grid": {"grids": [[[[k, v] for k, v in zip([n for n, _ in items], values)]
                               for values in itertools.product(*(vals for _, vals in items))]
                              for items in spec["grid"]["grids"]]},
           "select": {"chosen": [_best([t[c["metric"] or "val_acc"] for t in c["trials"]])
                                 for c in spec["select"]["cases"]]},
           "select_ties": {"chosen": [_best([r["val_acc"] for r in rows]) for rows in spec["select_ties"]["cases"]]}}
    for name in ("halving_survivors", "halving_budget"):
        out[name] = [_halving(*case) for case in spec[name]["cases"]]
    return out


def _with_spec(compare):
    """The comparisons here also read the inputs: the reference carries them (see ``reference_with_spec``)."""
    def check(student, ref):
        return compare(student, ref, ref["_spec"])
    return check


def reference_with_spec(spec: dict) -> dict:
    return {**reference(spec), "_spec": spec}


CHECKS = AssignmentChecks(
    assignment="a4_hyperparameters",
    target=["log_uniform", "sample_config", "grid_configs", "select_best", "successive_halving"],
    probe_file=PROBE,
    spec=spec,
    reference=reference_with_spec,
    notebook="hyperparameters",
    # PyTorch's norm layers run untouched (using them is the exercise); their names are only recorded
    forbidden_ops=NORM_OPS, builtin=NORM_NAMES, preload=PRELOAD,
    checks=[
        # implementation=False: nothing here is a normalisation layer that could be delegated
        Check("test_log_uniform_range", "log_uniform (interval i distribució)", _with_spec(_log_range),
              implementation=False),
        Check("test_log_uniform_generator", "log_uniform (generador)", _with_spec(_log_generator), implementation=False),
        Check("test_sample_config_values", "sample_config (claus, tipus i intervals)", _with_spec(_sample_values),
              implementation=False),
        Check("test_sample_config_distribution", "sample_config (distribució)", _with_spec(_sample_distribution),
              implementation=False),
        Check("test_sample_config_generator", "sample_config (generador)", _with_spec(_sample_generator),
              implementation=False),
        Check("test_grid_configs", "grid_configs", _with_spec(_grid), implementation=False),
        Check("test_select_best", "select_best", _with_spec(_select), implementation=False),
        Check("test_select_best_ties", "select_best (empats i NaN)", _with_spec(_select_ties), implementation=False),
        Check("test_halving_survivors", "successive_halving (qui passa de ronda)", _with_spec(_survivors),
              implementation=False),
        Check("test_halving_budget", "successive_halving (èpoques i pressupost)", _with_spec(_budget),
              implementation=False),
    ],
)
