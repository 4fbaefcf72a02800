"""The comparisons of assignment 4's trusted re-checks: what the child answered against the
reference computed in ``bncourse.checks.a4_hyperparameters``.

One function per test cell (``_log_range``, ``_sample_values``, ``_survivors``, ...), each
taking the child's raw data, the reference and the scenario's inputs, and returning None
or a Catalan detail of what is wrong; the statistics (shares of decades, of options, of
halves of a range) are computed here from the raw draws.  ``CHECKS`` in that module says
which comparison scores which test cell.
"""
from __future__ import annotations

import math

from coursekit.checks import field_of
from bncourse.checks import scenario_error


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
