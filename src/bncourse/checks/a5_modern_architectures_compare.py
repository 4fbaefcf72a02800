"""The comparisons of assignment 5's trusted re-checks: what the child answered against the
reference computed in ``bncourse.checks.a5_modern_architectures``.

One function per test cell (block structure, torchvision compatibility, zero init, the
ResNet-18, folding a conv-BN pair and a whole network, freezing BN statistics and
parameters), each returning None or a Catalan detail of what is wrong.  ``CHECKS`` in that
module says which comparison scores which test cell.
"""
from __future__ import annotations

from coursekit.checks import field_of
from bncourse.checks import close, scenario_error


# ------------------------------------------------------------------ comparisons

def _structure(student, ref) -> str | None:
    error = scenario_error(student, "structure")
    if error:
        return error
    got = field_of(student, "structure", "cases")
    want = ref["structure"]["cases"]
    if not isinstance(got, list) or len(got) != len(want):
        return "falten resultats"
    for g, w in zip(got, want):
        label = "in={}, out={}, stride={}".format(*w["config"])
        if not isinstance(g, dict) or g.get("kinds") != w["kinds"]:
            return f"{label}: els mòduls conv1, bn1, relu, conv2 i bn2 no tenen els noms o els tipus de torchvision"
        if g.get("shortcut") != w["shortcut"]:
            return (f"{label}: la drecera {'ha de ser la identitat (downsample = None)' if w['shortcut'] == 'none' else 'necessita downsample'}")
        if g.get("shape") != w["shape"]:
            return f"{label}: la sortida ha de tenir forma {tuple(w['shape'])}"
    return None


def _torchvision(student, ref) -> str | None:
    error = scenario_error(student, "torchvision")
    if error:
        return error
    got = student["torchvision"]
    if got.get("subclass") is not False:
        return "BasicBlock no pot heretar del bloc de torchvision"
    cases = got.get("cases")
    want = ref["torchvision"]["cases"]
    if not isinstance(cases, list) or len(cases) != len(want):
        return "falten resultats"
    for index, (g, w) in enumerate(zip(cases, want)):
        if not isinstance(g, dict) or g.get("contains") is not False:
            return "BasicBlock no pot contenir un bloc de torchvision"
        for mode in ("eval", "train"):
            detail = close(field_of(g, "outputs", mode), w["outputs"][mode], 1e-5, 1e-5)
            if detail:
                return f"bloc {index + 1}, mode {mode}(): amb els mateixos pesos la sortida no és la de torchvision ({detail})"
        detail = close(g.get("stats"), w["stats"], 1e-6, 1e-5)
        if detail:
            return f"bloc {index + 1}: les estadístiques acumulades no s'actualitzen com a torchvision ({detail})"
    return None


def _zero_init(student, ref) -> str | None:
    error = scenario_error(student, "zero_init")
    if error:
        return error
    got, want = student["zero_init"], ref["zero_init"]
    if close(got.get("plain_bn2"), want["plain_bn2"], 0.0, 0.0):
        return "sense zero_init_residual, el gamma de bn2 s'ha de quedar a 1"
    cases = got.get("cases")
    if not isinstance(cases, list) or len(cases) != 2:
        return "falten resultats"
    for g, w in zip(cases, want["bn2"]):
        if not isinstance(g, dict) or close(g.get("bn2"), w, 0.0, 0.0):
            return "amb zero_init_residual, el gamma de bn2 ha de ser zero"
        if g.get("others_ok") is not True:
            return "amb zero_init_residual només canvia bn2: les altres BN han de tenir gamma 1 i beta 0"
    for mode in ("train", "eval"):
        entry = field_of(got, "outputs", mode)
        if not isinstance(entry, dict):
            return "falten resultats"
        expected = want["x"] if entry.get("shortcut") is None else entry["shortcut"]
        detail = close(entry.get("y"), expected, 1e-6, 1e-5)
        if detail:
            return f"amb zero_init_residual, en mode {mode}() la branca residual no hauria d'aportar res ({detail})"
    return None


def _resnet18(student, ref) -> str | None:
    error = scenario_error(student, "resnet18")
    if error:
        return error
    got, want = student["resnet18"], ref["resnet18"]
    if got.get("is_resnet") is not True:
        return "make_resnet18 ha de retornar un ResNet (la classe donada)"
    if got.get("params") != want["params"]:
        return f"ResNet-18 per a 1000 classes té {want['params']:,} paràmetres; la vostra en té {got.get('params')}"
    scale = max(1.0, max(abs(v) for row in want["logits"] for v in row))
    detail = close(got.get("logits"), want["logits"], 1e-4 * scale, 1e-4)
    if detail:
        return f"amb els mateixos pesos els logits no són els de torchvision ({detail})"
    if got.get("out_features") != want["out_features"]:
        return f"amb num_classes={want['out_features']} la capa final ha de tenir {want['out_features']} sortides"
    if got.get("blocks") != 8:
        return "ResNet-18 té vuit blocs fets amb BasicBlock"
    if got.get("zeroed") is not True:
        return "zero_init_residual ha d'arribar a tots els blocs"
    if got.get("ones") is not True:
        return "sense zero_init_residual, el gamma de bn2 dels blocs s'ha de quedar a 1"
    if got.get("shape") != want["shape"]:
        return f"la sortida ha de tenir forma {tuple(want['shape'])}"
    return None


def _fold_bn(student, ref) -> str | None:
    error = scenario_error(student, "fold_bn")
    if error:
        return error
    cases, want = field_of(student, "fold_bn", "cases"), ref["fold_bn"]["cases"]
    if not isinstance(cases, list) or len(cases) != len(want):
        return "falten resultats"
    for index, (g, w) in enumerate(zip(cases, want)):
        label = f"cas {index + 1} ({w['dtype']})"
        if not isinstance(g, dict) or g.get("is_conv") is not True:
            return f"{label}: fold_bn ha de retornar una nn.Conv2d"
        if g.get("is_new") is not True:
            return f"{label}: fold_bn ha de retornar una convolució nova, no la mateixa"
        if g.get("unchanged") is not True:
            return f"{label}: fold_bn no pot modificar conv ni bn"
        if g.get("dtype") != w["dtype"]:
            return f"{label}: la convolució plegada ha de ser {w['dtype']}, com l'original"
        tol = 1e-4 if w["dtype"] == "float32" else 1e-10
        detail = close(g.get("out"), w["out"], tol, tol)
        if detail:
            return f"{label}: la convolució plegada no fa el mateix que conv + BN en eval() ({detail})"
    return None


def _fold_resnet(student, ref) -> str | None:
    error = scenario_error(student, "fold_resnet")
    if error:
        return error
    got = student["fold_resnet"]
    if got.get("left") != []:
        return "al model plegat encara hi ha BatchNorm"
    if got.get("copy") is not True or got.get("original_training") is not True:
        return "fold_resnet ha de retornar una còpia i deixar l'original com estava"
    if got.get("original_unchanged") is not True:
        return "fold_resnet no pot modificar el model original"
    detail = close(got.get("out"), ref["fold_resnet"]["out"], 1e-4, 1e-4)
    if detail:
        return f"el model plegat no dona la mateixa sortida que l'original en eval() ({detail})"
    return None


def _same(before, after) -> bool:
    """Two dicts of the child's own values: same keys, equal values."""
    if not isinstance(before, dict) or not isinstance(after, dict) or set(before) != set(after):
        return False
    return all(close(after[k], v, 0.0, 0.0) is None for k, v in before.items()
               if isinstance(v, list)) and all(isinstance(v, list) for v in before.values())


def _freeze_stats(student, ref) -> str | None:
    error = scenario_error(student, "freeze_stats")
    if error:
        return error
    got = student["freeze_stats"]
    if close(got.get("out"), ref["freeze_stats"]["out"], 1e-5, 1e-5):
        return ("després de freeze_bn i model.train(), les BN encara normalitzen amb les estadístiques del lot: "
                "han de fer servir les acumulades, com en eval()")
    if not _same(got.get("before"), got.get("after")):
        return "després de reentrenar amb freeze_bn, les estadístiques acumulades han canviat"
    return None


def _freeze_params(student, ref) -> str | None:
    error = scenario_error(student, "freeze_params")
    if error:
        return error
    before, after = field_of(student, "freeze_params", "before"), field_of(student, "freeze_params", "after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return "falten resultats"
    for key in ("1.weight", "1.bias", "4.weight", "4.bias"):
        if key not in before or key not in after or close(after[key], before[key], 0.0, 0.0):
            return f"gamma/beta de les BN no s'han d'entrenar: `{key}` ha canviat"
    for key in ("0.weight", "3.weight", "8.weight", "8.bias"):
        if key not in before or key not in after:
            return f"`{key}` no és al model"
        if close(after[key], before[key], 0.0, 0.0) is None:
            return f"`{key}` no és d'una BN i s'hauria d'haver entrenat"
    return None
