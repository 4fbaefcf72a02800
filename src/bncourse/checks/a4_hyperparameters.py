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
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

from coursekit.checks import AssignmentChecks, Check, field_of

from bncourse.checks import NORM_NAMES, NORM_OPS, PRELOAD, scenario_error

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


# ------------------------------------------------------------------ comparisons

def _floats(values, n) -> list[float] | None:
    if not isinstance(values, list) or len(values) != n:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def _log_range(student, ref, spec) -> str | None:
    error = scenario_error(student, "log_range")
    if error:
        return error
    cases = field_of(student, "log_range", "cases")
    wanted = spec["log_range"]["cases"]
    if not isinstance(cases, list) or len(cases) != len(wanted):
        return "falten resultats"
    for index, (got, (low, high, n, _)) in enumerate(zip(cases, wanted)):
        if not isinstance(got, dict) or got.get("tensor") is not True or got.get("shape") != [n]:
            return f"log_uniform({low:g}, {high:g}, {n}, generator) ha de retornar un tensor de forma ({n},)"
        if got.get("floating") is not True:
            return "log_uniform ha de retornar nombres reals (un tensor de coma flotant)"
        values = _floats(got.get("values"), n)
        if values is None or any(math.isnan(v) for v in values):
            return "els valors retornats no són vàlids"
        if min(values) < low * (1 - 1e-6) or max(values) > high * (1 + 1e-6):
            return f"hi ha valors fora de [{low:g}, {high:g}]"
        if index < len(spec["log_range"]["decades"]):
            first, last = spec["log_range"]["decades"][index]
            shares = [sum(10.0 ** k <= v < 10.0 ** (k + 1) for v in values) / n for k in range(first, last)]
            if any(abs(s - 1 / (last - first)) >= 0.03 for s in shares):
                return (f"amb [{low:g}, {high:g}) cada dècada hauria de rebre 1/{last - first} de les mostres; "
                        f"en reben {[round(s, 3) for s in shares]}")
        else:
            below = sum(v < math.sqrt(low * high) for v in values) / n
            if abs(below - 0.5) >= 0.02:
                return (f"amb [{low:g}, {high:g}) la meitat dels valors haurien de ser < {math.sqrt(low * high):g} "
                        f"(el punt mig en escala logarítmica); ho són un {below:.1%}")
    return None


def _same_draws(got: dict, what: str, function: str) -> str | None:
    a, b, other = got.get("same_a"), got.get("same_b"), got.get("other")
    if a is None or a != b:
        return (f"amb un generador de la mateixa llavor, {what} canvien quan canvia l'atzar global: tota "
                "l'aleatorietat ha de sortir de `generator`")
    if a == other:
        return f"generadors amb llavors diferents donen {what} iguals"
    if got.get("global_untouched") is not True:
        return f"{function} ha consumit l'atzar global (torch, random o numpy): només ha de fer servir `generator`"
    return None


def _log_generator(student, ref, spec) -> str | None:
    error = scenario_error(student, "log_generator")
    if error:
        return error
    got = student["log_generator"]
    if _floats(got.get("same_a"), spec["log_generator"]["n"]) is None:
        return "log_uniform no ha retornat les mostres demanades"
    return _same_draws(got, "les mostres", "log_uniform")


def _config_problem(config, space) -> str | None:
    """None when ``config`` ([[name, type, value], ...]) is a valid configuration of ``space``."""
    if not isinstance(config, list) or [e[0] if isinstance(e, list) and len(e) == 4 else None
                                        for e in config] != [name for name, _ in space]:
        return f"cal un dict amb les claus {[n for n, _ in space]}, en aquest ordre"
    for (name, s), (_, kind, value, is_float) in zip(space, config):
        if kind == "Tensor":
            return f"{name}: ha de ser un valor de Python, no un tensor"
        if s[0] == "choice":
            if not any(kind == type(option).__name__ and value == option for option in s[1]):
                return f"{name} = {value!r} no és cap de les opcions {s[1]}"
        else:
            if is_float is not True or not isinstance(value, (int, float)) or isinstance(value, bool):
                return f"{name}: ha de ser un float de Python; és {kind}"
            if not s[1] <= value <= s[2]:
                return f"{name} = {value} és fora de l'interval [{s[1]}, {s[2]}]"
    return None


def _sample_values(student, ref, spec) -> str | None:
    error = scenario_error(student, "sample_values")
    if error:
        return error
    got, want = student["sample_values"], spec["sample_values"]
    configs = got.get("configs")
    if not isinstance(configs, list) or len(configs) != want["n"]:
        return "falten resultats"
    for config in configs:
        problem = _config_problem(config, want["space"])
        if problem:
            return problem
    if got.get("empty") != []:
        return "un espai buit ha de donar una configuració buida"
    if got.get("unknown") != "ValueError":
        return f"un tipus d'hiperparàmetre desconegut ({want['unknown']!r}) ha de llançar ValueError"
    return None


def _sample_distribution(student, ref, spec) -> str | None:
    error = scenario_error(student, "sample_distribution")
    if error:
        return error
    want = spec["sample_distribution"]
    values = field_of(student, "sample_distribution", "values")
    if not isinstance(values, dict):
        return "falten resultats"
    n = want["n"]
    for name, s in want["space"]:
        got = _floats(values.get(name), n)
        if got is None:
            return f"{name}: falten resultats"
        if s[0] == "choice":
            shares = [got.count(float(i)) / n for i in range(len(s[1]))]
            if any(abs(share - 1 / len(s[1])) >= 0.05 for share in shares):
                return (f"{name}: cada opció hauria de sortir 1/{len(s[1])} de les vegades; freqüències "
                        f"{[round(x, 3) for x in shares]}")
        else:
            middle = math.sqrt(s[1] * s[2]) if s[0] == "log" else (s[1] + s[2]) / 2
            below = sum(v < middle for v in got) / n
            if abs(below - 0.5) >= 0.05:
                return (f"{name} ({s[0]}): un {below:.0%} dels valors són < {middle:.3g}, el punt mig en escala "
                        f"{'logarítmica' if s[0] == 'log' else 'lineal'}; n'hi hauria d'haver la meitat")
    return None


def _sample_generator(student, ref, spec) -> str | None:
    error = scenario_error(student, "sample_generator")
    if error:
        return error
    got = student["sample_generator"]
    configs = got.get("same_a")
    if not isinstance(configs, list) or len(configs) != spec["sample_generator"]["n"]:
        return "falten resultats"
    return _same_draws(got, "les configuracions", "sample_config")


def _grid(student, ref, spec) -> str | None:
    error = scenario_error(student, "grid")
    if error:
        return error
    grids = field_of(student, "grid", "grids")
    if not isinstance(grids, list) or len(grids) != len(ref["grid"]["grids"]):
        return "falten resultats"
    for got, want, items in zip(grids, ref["grid"]["grids"], spec["grid"]["grids"]):
        label = {name: values for name, values in items}
        if not isinstance(got, dict) or got.get("list_of_dicts") is not True:
            return "grid_configs ha de retornar una llista de dicts"
        configs = got.get("configs")
        if configs != want:
            if isinstance(configs, list) and sorted(map(repr, configs)) == sorted(map(repr, want)):
                return f"totes les combinacions de {label} hi són, però no en l'ordre documentat"
            return f"les combinacions de {label} no són les que toquen"
        if got.get("independent") is not True:
            return "cada configuració ha de ser un dict nou (canviar-ne una no pot canviar-ne cap altra ni la graella)"
    return None


def _select(student, ref, spec) -> str | None:
    error = scenario_error(student, "select")
    if error:
        return error
    chosen = field_of(student, "select", "chosen")
    for got, want, case in zip(chosen if isinstance(chosen, list) else [], ref["select"]["chosen"],
                               spec["select"]["cases"]):
        if got != want:
            return (f"select_best(metric={case['metric'] or 'val_acc'!r}) ha de retornar el mateix dict de la llista "
                    "amb el valor més alt d'aquesta mètrica de validació")
    if not isinstance(chosen, list) or len(chosen) != len(ref["select"]["chosen"]):
        return "falten resultats"
    return None


def _select_ties(student, ref, spec) -> str | None:
    error = scenario_error(student, "select_ties")
    if error:
        return error
    got = student["select_ties"]
    if got.get("chosen") != ref["select_ties"]["chosen"]:
        return "amb un empat ha de guanyar el primer de la llista, i un trial amb val_acc NaN no pot guanyar mai"
    if got.get("raised") != ["ValueError"] * len(spec["select_ties"]["invalid"]):
        return "sense cap trial vàlid (llista buida o tot NaN) select_best ha de llançar ValueError"
    return None


def _runs(student, name, ref):
    error = scenario_error(student, name)
    if error:
        return error, []
    runs = field_of(student, name, "runs")
    if not isinstance(runs, list) or len(runs) != len(ref[name]) or not all(isinstance(r, dict) for r in runs):
        return "falten resultats", []
    for run in runs:
        if run.get("tuple") is not True:
            return "successive_halving ha de retornar (trial, epochs_spent)", []
        calls = run.get("calls")
        if not isinstance(calls, list) or not all(isinstance(c, list) and len(c) == 2 for c in calls):
            return "les crides a train_fn no són vàlides", []
    return None, runs


def _survivors(student, ref, spec) -> str | None:
    error, runs = _runs(student, "halving_survivors", ref)
    if error:
        return error
    for run, (rounds, winner, _), (qualities, _, eta) in zip(runs, ref["halving_survivors"],
                                                              spec["halving_survivors"]["cases"]):
        calls, start = run["calls"], 0
        label = f"{len(qualities)} configuracions, eta = {eta}"
        for number, (ids, _) in enumerate(rounds, start=1):
            got = sorted(c[0] for c in calls[start:start + len(ids)] if isinstance(c[0], int))
            if got != sorted(ids):
                return (f"{label}: a la ronda {number} s'havien d'entrenar les configuracions {sorted(ids)} (les "
                        f"millors per val_acc de la ronda anterior) i s'han entrenat {got}")
            start += len(ids)
        if len(calls) != start:
            return f"{label}: s'havien de fer {start} entrenaments i se n'han fet {len(calls)}"
        best = max(range(len(qualities)), key=lambda i: qualities[i])
        if run.get("winner") != best:
            return f"{label}: el trial retornat ha de ser el de la configuració {best} (la millor per validació)"
    return None


def _budget(student, ref, spec) -> str | None:
    error, runs = _runs(student, "halving_budget", ref)
    if error:
        return error
    for run, (rounds, _, spent), (qualities, min_epochs, eta) in zip(runs, ref["halving_budget"],
                                                                     spec["halving_budget"]["cases"]):
        label = f"{len(qualities)} configuracions, min_epochs = {min_epochs}, eta = {eta}"
        expected = [epochs for ids, epochs in rounds for _ in ids]
        if [c[1] for c in run["calls"]] != expected:
            return (f"{label}: les èpoques de cada entrenament havien de ser "
                    f"{[(len(ids), epochs) for ids, epochs in rounds]} (configuracions, èpoques)")
        if run.get("epochs") != rounds[-1][1]:
            return f"{label}: el trial retornat ha de ser el de la darrera ronda ({rounds[-1][1]} èpoques)"
        if run.get("spent") != spent:
            return f"{label}: s'han gastat {spent} èpoques en total i successive_halving diu {run.get('spent')!r}"
    return None


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
