"""Re-checks of w1_mean: the student's ``media`` and ``varianza`` on inputs drawn by the grader;
the ``statistics`` module is this course's "library's own version of the exercise"."""
from __future__ import annotations

import random
import re
from pathlib import Path

from coursekit.checks import AssignmentChecks, Check, field_of
from coursekit.checks.scan import BuiltinNames


def spec(seed: int) -> dict:
    rng = random.Random(seed)
    xs = [round(rng.uniform(-10, 10), 3) for _ in range(rng.randint(5, 12))]
    return {"media": {"xs": xs}, "varianza": {"xs": xs}}


def reference(spec: dict) -> dict:
    xs = spec["media"]["xs"]
    mean = sum(xs) / len(xs)
    return {"media": {"value": mean}, "varianza": {"value": sum((x - mean) ** 2 for x in xs) / len(xs)}}


def _same(scenario: str):
    def compare(student: dict, ref: dict) -> str | None:
        entry = field_of(student, scenario)
        if not isinstance(entry, dict) or entry.get("error") is not None:
            return f"ha fallado ({str((entry or {}).get('error'))[:100]})"
        got, want = entry.get("value"), ref[scenario]["value"]
        if not isinstance(got, (int, float)) or isinstance(got, bool) or abs(got - want) > 1e-9 * (1 + abs(want)):
            return f"se esperaba {want:.6g}"
        return None
    return compare


CHECKS = AssignmentChecks(
    assignment="w1_mean",
    target=["media", "varianza"],
    probe_file=Path(__file__).with_name("w1_mean_probe.py"),
    spec=spec,
    reference=reference,
    notebook="mean",
    builtin=BuiltinNames(names=re.compile(r"^(f?mean|p?variance)$"), modules=re.compile(r"^statistics$")),
    own_implementation=True,
    # a static finding costs only the check of the answer cell it is in
    checks=[Check("test_media", "la media", _same("media"), cells=("media_impl",)),
            Check("test_varianza", "la varianza", _same("varianza"), cells=("varianza_impl",))],
)
