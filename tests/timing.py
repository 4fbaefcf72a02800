"""The suite's time, seen the day it grows: at the end of every run, a table of seconds per test module
(setup, call and teardown; a session fixture's setup is charged to the module whose test first needed
it) beside the module's budget in ``tests/time_budget.json``, measured on the 2-core machine the budgets
are for.  A module over its budget is named in a warning line; it never fails the run.

A module's budget is the sum of its budgets in the tiers this run selected from it (``quick``,
``thorough``: see tests/tiers.py; ``rehearsal``: ``make rehearsal``); ``make times`` prints the measured table as the JSON to commit."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

BUDGET_FILE = Path(__file__).with_name("time_budget.json")
SLACK = 1.25  # a module may take a quarter more than its budget (machine load) before it is named

_seconds: dict = defaultdict(float)
_tiers: dict = defaultdict(set)


def add(report) -> None:
    module = report.nodeid.split("::", 1)[0]
    _seconds[module] += report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _tiers[module].add(next((t for t in ("rehearsal", "thorough") if t in report.keywords), "quick"))


def _budget() -> dict:
    try:
        return json.loads(BUDGET_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def summary(terminalreporter, config) -> None:
    if not _seconds:
        return
    budget = _budget()
    write = terminalreporter.write_line
    terminalreporter.section("time per module (tests/time_budget.json)")
    over = []
    for module, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
        tiers = sorted(_tiers.get(module) or {"quick"})
        allowed = sum(budget.get(t, {}).get(module, 0.0) for t in tiers)
        mark = ""
        if not allowed:
            mark = "  (no budget)"
            over.append(f"{module} ({seconds:.0f} s, no budget)")
        elif seconds > allowed * SLACK:
            mark = "  OVER BUDGET"
            over.append(f"{module} ({seconds:.0f} s, budget {allowed:.0f} s)")
        write(f"{seconds:8.1f} s  {allowed:8.0f} s  {'+'.join(tiers):15s} {module}{mark}")
    write(f"{sum(_seconds.values()):8.1f} s in all")
    if over:
        terminalreporter.write_line("warning: over the time budget: " + "; ".join(over), yellow=True, bold=True)
    if config.getoption("--times-json", default=None):
        by_tier: dict = defaultdict(dict)
        for module, seconds in _seconds.items():
            tiers = _tiers.get(module) or {"quick"}
            if len(tiers) == 1:
                by_tier[next(iter(tiers))][module] = round(seconds)
        Path(config.getoption("--times-json")).write_text(json.dumps(by_tier, indent=1, sort_keys=True) + "\n")
