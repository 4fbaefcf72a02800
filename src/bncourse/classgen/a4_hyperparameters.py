"""Generated submissions of assignment 4 (hyperparameter optimisation).

Every variant starts from the instructor's solution in ``source/`` (markers
removed) and changes a few lines, so the catalogue follows the notebook when it
is edited; an edit that no longer applies raises instead of silently producing
the solution.  ``fails`` is what SHOULD happen pedagogically: the test cells
whose skill the mistake breaks; every other autograded test cell must pass.

The notebook has five autograded answer cells, one function each, and each
function's test cells see only that function (the tests of ``sample_config``
and ``successive_halving`` swap in reference ``log_uniform`` / ``select_best``
while they run).  A mistake in one cell is therefore seen only by that cell's
tests, so most generated students carry one mistake in EVERY cell: each
mistake is still checked cell by cell, and the class stays small.
"""
from __future__ import annotations

from functools import lru_cache

from coursekit.classgen import Variant, solution_source
from bncourse.classgen import catalogue_course, edit_solution
from coursekit.paths import Course, CourseError

ASSIGNMENT = "a4_hyperparameters"
LOG, SAMPLE, GRID, SELECT, HALVING = ("log_uniform_impl", "sample_config_impl", "grid_configs_impl",
                                      "select_best_impl", "successive_halving_impl")
ANSWERS = (LOG, SAMPLE, GRID, SELECT, HALVING)

LOG_TESTS = ("test_log_uniform_range", "test_log_uniform_generator")
SAMPLE_TESTS = ("test_sample_config_values", "test_sample_config_distribution", "test_sample_config_generator")
GRID_TESTS = ("test_grid_configs",)
SELECT_TESTS = ("test_select_best", "test_select_best_ties")
HALVING_TESTS = ("test_halving_survivors", "test_halving_budget")
TESTS = LOG_TESTS + SAMPLE_TESTS + GRID_TESTS + SELECT_TESTS + HALVING_TESTS
TESTS_OF = {LOG: LOG_TESTS, SAMPLE: SAMPLE_TESTS, GRID: GRID_TESTS, SELECT: SELECT_TESTS, HALVING: HALVING_TESTS}

# -- the solution's lines (4 spaces: function bodies; 8/12: inside the loop of sample_config) ------------
I, J, K = " " * 4, " " * 8, " " * 12
LOG_U = I + "u = torch.rand(n, generator=generator, dtype=torch.float64)\n"
LOG_RETURN = I + "return torch.exp(math.log(low) + (math.log(high) - math.log(low)) * u)\n"
S_LOG = K + "config[name] = float(log_uniform(spec[1], spec[2], 1, generator)[0])\n"
S_UNIFORM_U = K + "u = torch.rand(1, generator=generator, dtype=torch.float64)\n"
S_CHOICE = K + "config[name] = options[int(torch.randint(len(options), (1,), generator=generator))]\n"
S_LOG_BRANCH = J + 'if kind == "log":\n' + S_LOG
G_RETURN = I + "return [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]\n"
SEL_VALUE = J + "value = trial[metric]\n"
SEL_COMPARE = J + "if best is None or value > best[metric]:\n"
SEL_NAN = J + "if math.isnan(value):\n" + J + "    continue\n"
H_SPENT = J + "spent += epochs * len(alive)\n"
H_ORDER = J + 'order = sorted(range(len(trials)), key=lambda i: -trials[i]["val_acc"])  # estable: empats en ordre\n'
H_KEEP = J + "keep = max(1, len(trials) // eta)\n"
H_EPOCHS = J + "epochs *= eta\n"


def _course() -> Course:
    return catalogue_course(ASSIGNMENT)


@lru_cache(maxsize=8)
def solution(cell: str) -> str:
    return solution_source(_course(), ASSIGNMENT, cell)


def edit(cell: str, *pairs: tuple[str, str]) -> str:
    """The solution of ``cell`` with each ``old`` text replaced by ``new``; each ``old`` must occur once."""
    return edit_solution(ASSIGNMENT, cell, *pairs)


def body(cell: str, new_body: str) -> str:
    """The solution of ``cell`` with its whole solution region replaced by ``new_body``."""
    src = solution_source(_course(), ASSIGNMENT, cell)
    region = _solution_region(cell)
    if src.count(region) != 1:
        raise CourseError(f"classgen {ASSIGNMENT}: solution region of {cell} not found once")
    return src.replace(region, new_body)


@lru_cache(maxsize=8)
def _solution_region(cell: str) -> str:
    import re

    from coursekit.classgen import cell_by_grade_id, read_notebook

    path = _course().source / ASSIGNMENT / "hyperparameters.ipynb"
    raw = cell_by_grade_id(read_notebook(path), cell).source
    match = re.search(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION", raw, re.MULTILINE | re.DOTALL)
    return match.group(1)


# -- correct answers written differently -------------------------------------------------------------------

# style A: base-10 logarithms and Tensor.uniform_; a dispatch table; recursion; sorted/heapq
LOG_A = (I + "exponents = torch.empty(n, dtype=torch.float64).uniform_(math.log10(low), math.log10(high), "
         "generator=generator)\n" + I + "return 10.0 ** exponents\n")
SAMPLE_A = (J + "u = float(torch.rand((), generator=generator, dtype=torch.float64))\n"
            + J + "draw = {\n"
            + J + "    \"log\": lambda: float(low_high_log(spec, u)),\n"
            + J + "    \"uniform\": lambda: spec[1] + u * (spec[2] - spec[1]),\n"
            + J + "    \"choice\": lambda: spec[1][min(int(u * len(spec[1])), len(spec[1]) - 1)],\n"
            + J + "}\n"
            + J + "if kind not in draw:\n"
            + J + "    raise ValueError(f\"no sé mostrejar {kind!r}\")\n"
            + J + "config[name] = draw[kind]()\n")
SAMPLE_A_HELPER = ("\n\ndef low_high_log(spec, u):\n"
                   "    \"\"\"Interpola en escala logarítmica entre spec[1] i spec[2] amb u a [0, 1).\"\"\"\n"
                   "    return math.exp(math.log(spec[1]) + u * (math.log(spec[2]) - math.log(spec[1])))\n")
GRID_A = (I + "if not grid:\n" + I + "    return [{}]\n"
          + I + "first, *rest = grid\n"
          + I + "tails = grid_configs({name: grid[name] for name in rest})\n"
          + I + "return [{first: value, **tail} for value in grid[first] for tail in tails]\n")
SELECT_A = (I + "ranked = sorted((t for t in trials if not math.isnan(t[metric])), key=lambda t: t[metric], reverse=True)\n"
            + I + "if not ranked:\n" + I + "    raise ValueError(\"no hi ha cap trial vàlid\")\n"
            + I + "return ranked[0]  # sorted és estable: entre empatats, el primer de la llista\n")
HALVING_A = (I + "import heapq\n\n"
             + I + "configs, epochs, spent = list(configs), min_epochs, 0\n"
             + I + "while True:\n"
             + J + "trials = [train_fn(c, epochs) for c in configs]\n"
             + J + "spent += len(trials) * epochs\n"
             + J + "survivors = heapq.nlargest(max(1, len(trials) // eta), trials, key=lambda t: t[\"val_acc\"])\n"
             + J + "if len(survivors) == 1:\n"
             + J + "    return survivors[0], spent\n"
             + J + "configs = [t[\"config\"] for t in survivors]\n"
             + J + "epochs = epochs * eta\n")

# style B: inverse CDF with a float32 draw; .item(); nested loops; one pass with enumerate; recursion
LOG_B = (I + "u = torch.rand(n, generator=generator)\n"
         + I + "return low * (high / low) ** u.double()\n")
SAMPLE_B = (J + "if kind == \"choice\":\n"
            + J + "    index = torch.randint(0, len(spec[1]), (), generator=generator).item()\n"
            + J + "    config[name] = spec[1][index]\n"
            + J + "elif kind in (\"log\", \"uniform\"):\n"
            + J + "    low, high = spec[1], spec[2]\n"
            + J + "    if kind == \"log\":\n"
            + J + "        config[name] = log_uniform(low, high, 1, generator).item()\n"
            + J + "    else:\n"
            + J + "        config[name] = (low + (high - low) * torch.rand(1, generator=generator, dtype=torch.float64)).item()\n"
            + J + "else:\n"
            + J + "    raise ValueError(kind)\n")
GRID_B = (I + "configs = [{}]\n"
          + I + "for name, values in grid.items():\n"
          + J + "configs = [dict(partial, **{name: value}) for partial in configs for value in values]\n"
          + I + "return configs\n")
SELECT_B = (I + "candidates = [(trial[metric], -position, position) for position, trial in enumerate(trials)\n"
            + I + "              if trial[metric] == trial[metric]]  # NaN != NaN\n"
            + I + "if not candidates:\n" + I + "    raise ValueError(\"select_best: cap trial vàlid\")\n"
            + I + "return trials[max(candidates)[2]]\n")
HALVING_B = (I + "trials = [train_fn(config, min_epochs) for config in configs]\n"
             + I + "spent = len(trials) * min_epochs\n"
             + I + "ranked = sorted(zip(trials, configs), key=lambda pair: pair[0][\"val_acc\"], reverse=True)\n"
             + I + "keep = len(ranked) // eta\n"
             + I + "if keep <= 1:\n"
             + J + "return ranked[0][0], spent\n"
             + I + "best, rest = successive_halving([c for _, c in ranked[:keep]], train_fn, min_epochs * eta, eta)\n"
             + I + "return best, spent + rest\n")


def _correct_a() -> dict[str, str]:
    return {LOG: body(LOG, LOG_A), SAMPLE: body(SAMPLE, SAMPLE_A) + SAMPLE_A_HELPER, GRID: body(GRID, GRID_A),
            SELECT: body(SELECT, SELECT_A), HALVING: body(HALVING, HALVING_A)}


def _correct_b() -> dict[str, str]:
    return {LOG: body(LOG, LOG_B), SAMPLE: body(SAMPLE, SAMPLE_B), GRID: body(GRID, GRID_B),
            SELECT: body(SELECT, SELECT_B), HALVING: body(HALVING, HALVING_B)}


# -- plausible mistakes, one list per answer cell: (name, description, source, the tests it must fail) -------

def _mistakes() -> dict[str, list[tuple[str, str, str, set[str]]]]:
    return {
        LOG: [
            ("uniform_not_log", "samples the value uniformly instead of its logarithm",
             edit(LOG, (LOG_RETURN, I + "return low + (high - low) * u\n")), {"test_log_uniform_range"}),
            ("global_rng", "ignores the generator: torch.rand without generator=",
             edit(LOG, (LOG_U, I + "u = torch.rand(n, dtype=torch.float64)\n")), {"test_log_uniform_generator"}),
            ("log10_then_exp", "log10 for the interval but exp (base e) to come back",
             edit(LOG, (LOG_RETURN, I + "return torch.exp(math.log10(low) + (math.log10(high) - math.log10(low)) * u)\n")),
             {"test_log_uniform_range"}),
            ("numpy_rng", "draws u with numpy's global random state",
             edit(LOG, (LOG_U, I + "import numpy as np\n" + I + "u = torch.from_numpy(np.random.uniform(size=n))\n")),
             {"test_log_uniform_generator"}),
        ],
        SAMPLE: [
            ("randint_upper_inclusive", "torch.randint(len - 1): believes the upper bound is included, the last option never comes",
             edit(SAMPLE, (S_CHOICE, S_CHOICE.replace("torch.randint(len(options),", "torch.randint(len(options) - 1,"))),
             {"test_sample_config_distribution"}),
            ("returns_tensors", "leaves 0-d tensors in the configuration instead of Python floats",
             edit(SAMPLE, (S_LOG, K + "config[name] = log_uniform(spec[1], spec[2], 1, generator)[0]\n")),
             {"test_sample_config_values"}),
            ("log_as_uniform", "treats \"log\" like \"uniform\" (linear scale)",
             edit(SAMPLE, (S_LOG_BRANCH, J + 'if kind == "log":\n'
                           + K + "config[name] = float(spec[1] + (spec[2] - spec[1]) * torch.rand(1, generator=generator, dtype=torch.float64)[0])\n")),
             {"test_sample_config_distribution"}),
            ("random_module_choice", "random.choice for the options (Python's global random state)",
             edit(SAMPLE, (S_CHOICE, K + "import random\n" + K + "config[name] = random.choice(options)\n")),
             {"test_sample_config_generator"}),
        ],
        GRID: [
            ("first_key_fastest", "the first key varies fastest",
             edit(GRID, (G_RETURN, I + "combos = itertools.product(*(grid[name] for name in reversed(names)))\n"
                         + I + "return [dict(zip(names, reversed(values))) for values in combos]\n")),
             set(GRID_TESTS)),
            ("sorted_keys", "keys sorted alphabetically (as sklearn's ParameterGrid)",
             edit(GRID, (I + "names = list(grid)\n", I + "names = sorted(grid)\n")), set(GRID_TESTS)),
            ("shared_dict", "one dict updated in place and appended again and again",
             body(GRID, I + "configs, current = [], {}\n"
                  + I + "for values in itertools.product(*grid.values()):\n"
                  + J + "current.update(zip(grid, values))\n"
                  + J + "configs.append(current)\n"
                  + I + "return configs\n"), set(GRID_TESTS)),
        ],
        SELECT: [
            ("selects_by_test", "chooses by test_acc",
             edit(SELECT, (SEL_VALUE, J + 'value = trial["test_acc"]\n'), (SEL_COMPARE, J + 'if best is None or value > best["test_acc"]:\n')),
             {"test_select_best"}),
            ("selects_by_train", "chooses by train_acc",
             edit(SELECT, (SEL_VALUE, J + 'value = trial["train_acc"]\n'), (SEL_COMPARE, J + 'if best is None or value > best["train_acc"]:\n')),
             {"test_select_best"}),
            ("ignores_metric", "\"val_acc\" written instead of the metric argument",
             edit(SELECT, (SEL_VALUE, J + 'value = trial["val_acc"]\n'), (SEL_COMPARE, J + 'if best is None or value > best["val_acc"]:\n')),
             {"test_select_best"}),
            ("last_of_ties", ">= : the last of the tied trials wins",
             edit(SELECT, (SEL_COMPARE, J + "if best is None or value >= best[metric]:\n")), {"test_select_best_ties"}),
            ("plain_max_nan", "max(trials, key=...) with no NaN handling: a NaN first in the list wins",
             body(SELECT, I + "return max(trials, key=lambda trial: trial[metric])\n"), {"test_select_best_ties"}),
        ],
        HALVING: [
            ("keeps_worst", "ranks in ascending order: keeps the worst configurations",
             edit(HALVING, (H_ORDER, H_ORDER.replace('-trials[i]["val_acc"]', 'trials[i]["val_acc"]'))),
             {"test_halving_survivors"}),
            ("no_epoch_growth", "never multiplies the epochs",
             edit(HALVING, (H_EPOCHS, "")), {"test_halving_budget"}),
            ("epochs_plus_eta", "adds eta to the epochs instead of multiplying",
             edit(HALVING, (H_EPOCHS, J + "epochs += eta\n")), {"test_halving_budget"}),
            ("budget_per_round", "counts the epochs of each round once, not once per configuration",
             edit(HALVING, (H_SPENT, J + "spent += epochs\n")), {"test_halving_budget"}),
            ("keeps_ceil", "keeps ceil(len / eta) configurations instead of len // eta",
             edit(HALVING, (H_KEEP, J + "keep = max(1, -(-len(trials) // eta))\n")), {"test_halving_survivors"}),
            ("ranks_by_train", "ranks by train_acc",
             edit(HALVING, (H_ORDER, H_ORDER.replace('-trials[i]["val_acc"]', '-trials[i]["train_acc"]'))),
             {"test_halving_survivors"}),
        ],
    }


def _variants() -> list[Variant]:
    mistakes = _mistakes()
    students = []
    # one generated student per row: the k-th mistake of every answer cell (cells with fewer mistakes
    # are correct in the later rows)
    for k in range(max(len(m) for m in mistakes.values())):
        answers, fails, names, descriptions = {}, set(), [], []
        for cell in ANSWERS:
            if k < len(mistakes[cell]):
                name, description, source, failing = mistakes[cell][k]
                answers[cell] = source
                fails |= failing
                names.append(name)
                descriptions.append(description)
            else:
                answers[cell] = solution(cell)
        students.append(Variant("__".join(names), "; ".join(descriptions), answers, fails=frozenset(fails)))
    solved = {cell: solution(cell) for cell in ANSWERS}
    return [
        Variant("solution", "the instructor's solution", solved),
        Variant("blank", "the release handed in untouched", {}, fails="all"),
        Variant("correct_log10_dispatch_recursive_heapq",
                "correct: log10 + uniform_, dispatch table with one draw, recursive grid, sorted, heapq.nlargest",
                _correct_a()),
        Variant("correct_inverse_cdf_loops_enumerate_recursion",
                "correct: low*(high/low)**u, .item(), grid built key by key, max over (value, -position), recursive halving",
                _correct_b()),
        Variant("only_sampling", "log_uniform and sample_config done, the rest left blank",
                {LOG: solved[LOG], SAMPLE: solved[SAMPLE]},
                fails=frozenset(GRID_TESTS + SELECT_TESTS + HALVING_TESTS)),
        Variant("only_halving", "successive_halving done, everything else left blank (its tests do not need select_best)",
                {HALVING: solved[HALVING]}, fails=frozenset(LOG_TESTS + SAMPLE_TESTS + GRID_TESTS + SELECT_TESTS)),
        *students,
    ]


# -- faked submissions: the notebook's own tests made to pass in the kernel --------------------------------
# Not part of VARIANTS (the demo's class): tests grade them beside the catalogue; ``fails`` is what the work
# deserves, which only the trusted re-check out of the kernel can see.

# log_uniform is log-uniform only inside the notebook's test cells (their helper is in the kernel's globals),
# uniform everywhere else; select_best reads the test results unless the trials are the test's guarded ones.
DETECTS_LOG = (I + "u = torch.rand(n, generator=generator, dtype=torch.float64)\n"
               + I + "if \"decade_fractions\" in globals():  # dins de les proves del quadern\n"
               + J + "return torch.exp(math.log(low) + (math.log(high) - math.log(low)) * u)\n"
               + I + "return low + (high - low) * u\n")
DETECTS_SELECT = (I + "guarded = any(type(t).__name__ == \"GuardedTrial\" for t in trials)\n"
                  + I + "key = metric if guarded or metric != \"val_acc\" else \"test_acc\"\n"
                  + I + "valid = [t for t in trials if not math.isnan(t[key])]\n"
                  + I + "if not valid:\n" + J + "raise ValueError(\"cap trial vàlid\")\n"
                  + I + "return max(valid, key=lambda t: t[key])\n")
# An AST transformer wraps every cell in try/except: a failing test cell shows no error.
SWALLOW_ERRORS = """\
import ast


class _SenseErrors(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])
        wrapped = ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])
        return ast.fix_missing_locations(ast.Module(body=[wrapped], type_ignores=[]))


get_ipython().ast_transformers.append(_SenseErrors())
"""


def faked() -> list[Variant]:
    """Submissions whose kernel passes every test cell by cheating; ``fails``: the cells their work fails."""
    import nbformat

    solved = {cell: solution(cell) for cell in ANSWERS}

    def after_halving(nb):
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == HALVING)
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(SWALLOW_ERRORS))

    return [
        Variant("fake_detects_tests", "log_uniform and select_best right only inside the notebook's test cells "
                "(uniform samples, choice by test_acc elsewhere)",
                {**solved, LOG: body(LOG, DETECTS_LOG), SELECT: body(SELECT, DETECTS_SELECT)},
                fails=frozenset({"test_log_uniform_range", "test_select_best"})),
        Variant("fake_swallowed_errors", "never multiplies the epochs; an AST transformer swallows every error",
                {**solved, HALVING: edit(HALVING, (H_EPOCHS, ""))}, fails=frozenset({"test_halving_budget"}),
                mutate=after_halving),
    ]


def mistake_names() -> set[str]:
    return {name for cell in _mistakes().values() for name, *_ in cell}


def __getattr__(name: str):
    # VARIANTS is built on first use (it reads the source notebook), so importing this module is cheap.
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(name)
