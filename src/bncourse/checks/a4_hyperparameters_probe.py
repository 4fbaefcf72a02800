"""Probe of assignment 4 (``log_uniform``, ``sample_config``, ``grid_configs``, ``select_best``,
``successive_halving``): measurements as JSON data.

Shipped as source text to the sandboxed child, where ``target`` is a dict of
the student's functions by name; one scenario per test cell, so that an error
in one function costs only its own cells.  The scenarios answer with raw data
(the samples drawn, the configurations, the index of the trial chosen, the
calls made to a recorded ``train_fn``); the grader
(``bncourse.checks.a4_hyperparameters``) computes the statistics and the
expected answers itself from the inputs it drew.  Like the notebook's tests,
the scenarios of ``sample_config`` and ``successive_halving`` swap in a
reference ``log_uniform`` / ``select_best`` while they run, so that a mistake
in one function is paid once.
"""
import math as _math
import random as _random

_MISSING = object()


class _Swapped:
    """A name of a function's globals replaced while a block runs (restored afterwards, also on errors)."""

    def __init__(self, fn, name, value):
        ns = getattr(fn, "__globals__", None)
        self.ns, self.name, self.value = (ns if isinstance(ns, dict) else {}), name, value

    def __enter__(self):
        self.saved = self.ns.get(self.name, _MISSING)
        self.ns[self.name] = self.value
        return self

    def __exit__(self, *exc):
        if self.saved is _MISSING:
            self.ns.pop(self.name, None)
        else:
            self.ns[self.name] = self.saved
        return False


def _reference_log_uniform(torch):
    def log_uniform(low, high, n, generator):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.exp(_math.log(low) + (_math.log(high) - _math.log(low)) * u)
    return log_uniform


def _reference_select_best(trials, metric="val_acc"):
    valid = [t for t in trials if t[metric] == t[metric]]
    if not valid:
        raise ValueError("cap trial vàlid")
    return max(valid, key=lambda t: t[metric])


def _samples(torch, values, n):
    """The samples as floats, with what the tests check of their type."""
    info = {"tensor": isinstance(values, torch.Tensor)}
    if not info["tensor"]:
        return info
    info["shape"] = list(values.shape)
    info["floating"] = bool(values.is_floating_point())
    if info["shape"] == [n] and info["floating"]:
        info["values"] = values.detach().double().tolist()
    return info


def _global_states(torch):
    import numpy as np
    state = np.random.get_state()
    return torch.get_rng_state().clone(), _random.getstate(), state[1].copy(), state[2]


def _same_states(torch, a, b, numpy_position=True):
    """Global random states equal (numpy's position in its key as well, where the notebook's test reads it)."""
    return (bool(torch.equal(a[0], b[0])) and a[1] == b[1] and bool((a[2] == b[2]).all())
            and (a[3] == b[3] or not numpy_position))


def _reseed(torch, seed):
    import numpy as np
    torch.manual_seed(seed)
    _random.seed(seed)
    np.random.seed(seed)


# ------------------------------------------------------------------ log_uniform

def log_range(target, torch, spec):
    log_uniform = target["log_uniform"]
    out = []
    for low, high, n, seed in spec["cases"]:
        out.append(_samples(torch, log_uniform(low, high, n, torch.Generator().manual_seed(seed)), n))
    return {"cases": out}


def log_generator(target, torch, spec):
    log_uniform = target["log_uniform"]

    def draw(seed, global_seed):
        _reseed(torch, global_seed)
        return torch.as_tensor(log_uniform(spec["low"], spec["high"], spec["n"],
                                           torch.Generator().manual_seed(seed))).double().tolist()

    result = {"same_a": draw(spec["seed"], spec["globals"][0]), "same_b": draw(spec["seed"], spec["globals"][1]),
              "other": draw(spec["other_seed"], spec["globals"][0])}
    _reseed(torch, spec["globals"][2])
    before = _global_states(torch)
    log_uniform(spec["low"], spec["high"], 10, torch.Generator().manual_seed(spec["seed"]))
    result["global_untouched"] = _same_states(torch, before, _global_states(torch))
    return result


# ------------------------------------------------------------------ sample_config

def _space(spec_space):
    """JSON has no tuples: ("log", low, high) from ["log", low, high]."""
    return {name: (s[0], s[1], s[2]) if s[0] != "choice" else (s[0], list(s[1])) for name, s in spec_space}


def _describe(torch, config):
    """A configuration as [[name, type name, value, is a float], ...] (a tensor's value as a float)."""
    if not isinstance(config, dict):
        return {"not_a_dict": type(config).__name__}
    out = []
    for name, value in config.items():
        kind, is_float = type(value).__name__, isinstance(value, float)
        if isinstance(value, torch.Tensor):
            value = float(value.detach().double().reshape(-1)[0]) if value.numel() else None
            kind = "Tensor"
        elif isinstance(value, float):
            value = float(value)
        elif not isinstance(value, (int, str, bool)) or value is None:
            value = repr(value)[:40]
        out.append([str(name), kind, value, is_float])
    return out


def sample_values(target, torch, spec):
    sample_config = target["sample_config"]
    result = {}
    with _Swapped(sample_config, "log_uniform", _reference_log_uniform(torch)):
        generator = torch.Generator().manual_seed(spec["seed"])
        result["configs"] = [_describe(torch, sample_config(_space(spec["space"]), generator))
                             for _ in range(spec["n"])]
        result["empty"] = _describe(torch, sample_config({}, generator))
        try:
            sample_config({"x": (spec["unknown"], 0.0, 1.0)}, generator)
            result["unknown"] = "no error"
        except ValueError:
            result["unknown"] = "ValueError"
        except Exception as exc:
            result["unknown"] = type(exc).__name__
    return result


def sample_distribution(target, torch, spec):
    sample_config = target["sample_config"]
    space = _space(spec["space"])
    values = {name: [] for name in space}
    with _Swapped(sample_config, "log_uniform", _reference_log_uniform(torch)):
        generator = torch.Generator().manual_seed(spec["seed"])
        for _ in range(spec["n"]):
            config = sample_config(space, generator)
            for name, s in space.items():
                value = config[name]
                if s[0] == "choice":
                    index = [i for i, option in enumerate(s[1]) if bool(option == value)]
                    values[name].append(index[0] if index else -1)
                else:
                    values[name].append(float(value))
    return {"values": values}


def sample_generator(target, torch, spec):
    sample_config = target["sample_config"]
    space = _space(spec["space"])
    result = {}
    with _Swapped(sample_config, "log_uniform", _reference_log_uniform(torch)):
        def draw(seed, global_seed):
            _reseed(torch, global_seed)
            generator = torch.Generator().manual_seed(seed)
            return [_describe(torch, sample_config(space, generator)) for _ in range(spec["n"])]

        result["same_a"] = draw(spec["seed"], spec["globals"][0])
        result["same_b"] = draw(spec["seed"], spec["globals"][1])
        result["other"] = draw(spec["other_seed"], spec["globals"][0])
        _reseed(torch, spec["globals"][2])
        before = _global_states(torch)
        sample_config(space, torch.Generator().manual_seed(spec["seed"]))
        result["global_untouched"] = _same_states(torch, before, _global_states(torch), numpy_position=False)
    return result


# ------------------------------------------------------------------ grid_configs

def grid(target, torch, spec):
    grid_configs = target["grid_configs"]
    out = []
    for items in spec["grids"]:
        g = {name: list(values) for name, values in items}
        copy_of_grid = {name: list(values) for name, values in items}
        got = grid_configs(g)
        entry = {"list_of_dicts": isinstance(got, list) and all(isinstance(c, dict) for c in got)}
        if entry["list_of_dicts"]:
            entry["configs"] = [[[str(k), v if isinstance(v, (int, float, str)) else repr(v)[:40]]
                                 for k, v in c.items()] for c in got]
            if len(got) >= 2:
                first = next(iter(got[0]), None)
                before = dict(got[1])
                got[0][first] = "canviat"
                entry["independent"] = got[1] == before and g == copy_of_grid
            else:
                entry["independent"] = g == copy_of_grid
        out.append(entry)
    return {"grids": out}


# ------------------------------------------------------------------ select_best

class Trial(dict):
    """A trial that fails the check when a test result is read."""

    def _check(self, key):
        if str(key).startswith("test"):
            raise AssertionError(f"select_best ha llegit {key!r}: per triar només es pot fer servir validació")

    def __getitem__(self, key):
        self._check(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._check(key)
        return dict.get(self, key, default)


def _index(trials, chosen):
    for i, t in enumerate(trials):
        if t is chosen:
            return i
    return -1


def select(target, torch, spec):
    select_best = target["select_best"]
    out = []
    for case in spec["cases"]:
        # guarded trials (reading a test result fails) and plain ones, where the best test result is elsewhere
        trials = [Trial(row) if case["guarded"] else dict(row) for row in case["trials"]]
        chosen = select_best(trials) if case["metric"] is None else select_best(trials, metric=case["metric"])
        out.append(_index(trials, chosen))
    return {"chosen": out}


def select_ties(target, torch, spec):
    select_best = target["select_best"]
    chosen = []
    for rows in spec["cases"]:
        trials = [dict(row, val_acc=float(row["val_acc"])) for row in rows]
        chosen.append(_index(trials, select_best(trials)))
    raised = []
    for rows in spec["invalid"]:
        try:
            select_best([dict(row, val_acc=float(row["val_acc"])) for row in rows])
            raised.append("no error")
        except ValueError:
            raised.append("ValueError")
        except Exception as exc:
            raised.append(type(exc).__name__)
    return {"chosen": chosen, "raised": raised}


# ------------------------------------------------------------------ successive_halving

def _halving_run(target, qualities, min_epochs, eta):
    calls = []

    def train_fn(config, epochs):
        calls.append([config["id"], epochs])
        return {"config": config, "val_acc": config["quality"], "train_acc": 1 - config["quality"], "epochs": epochs}

    configs = [{"id": i, "quality": q} for i, q in enumerate(qualities)]
    result = target["successive_halving"](configs, train_fn, min_epochs=min_epochs, eta=eta)
    entry = {"calls": calls[:2000], "tuple": isinstance(result, tuple) and len(result) == 2}
    if entry["tuple"]:
        trial, spent = result
        entry["winner"] = trial["config"]["id"] if isinstance(trial, dict) and isinstance(trial.get("config"), dict) \
            else None
        entry["epochs"] = trial.get("epochs") if isinstance(trial, dict) else None
        entry["spent"] = spent if isinstance(spent, (int, float)) and not isinstance(spent, bool) else repr(spent)[:40]
    return entry


def halving(target, torch, spec):
    with _Swapped(target["successive_halving"], "select_best", _reference_select_best):
        return {"runs": [_halving_run(target, q, m, e) for q, m, e in spec["cases"]]}


SCENARIOS = {"log_range": log_range, "log_generator": log_generator, "sample_values": sample_values,
             "sample_distribution": sample_distribution, "sample_generator": sample_generator, "grid": grid,
             "select": select, "select_ties": select_ties, "halving_survivors": halving, "halving_budget": halving}
