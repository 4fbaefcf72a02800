"""Static reading of the code a student wrote in a submission (outside the kernel).

Only the lines the student wrote are judged: each code cell is compared with
the release notebook the student received (by ``grade_id``, else by identical
text) and only inserted or changed lines count, so given code, comments and
docstrings never trigger anything.  Autograder test cells are instructor code
(nbgrader restores them) and are skipped.

Findings come in four kinds:

- ``delegation``: the implementation names the library's own version of the
  exercise, as the course describes it (:class:`BuiltinNames`: for a course on
  normalisation layers ``F.batch_norm``, ``nn.BatchNorm1d``,
  ``torch.native_batch_norm``, their modules, their base class); without such
  a description there is no delegation to find;
- ``evasion``: constructs that hide code from this reading or from the
  runtime trace (``eval``/``exec``/``compile``/``__import__``, ``getattr`` with
  a computed or private name, any name-to-object lookup such as
  ``pydoc.locate``, ``importlib.import_module``, ``pkgutil.resolve_name`` or
  ``operator.attrgetter``, ``torch._C``/``torch.ops``, ``ctypes``, frame
  introspection, dispatch modes, threads and processes); code kept out of
  sight: cell magics that write or run other files or languages
  (``%%writefile``, ``%%bash``, ``%run``, ``%load``...) and imports of modules
  that are not installed (the student's own files);
- ``tamper``: patching what the tests rely on (attributes of torch, nn, numpy,
  builtins...), IPython hooks (input transformers, ``showtraceback``, events,
  ``clear_output``) whatever name the shell is reached through
  (``ip = get_ipython()``, ``IPython.get_ipython``...), ``sys.modules``,
  trace hooks, signal handlers;
- ``suspicious``: processes, signals, network, environment, file paths outside
  the working copy, endless loops.

The first two, in the cells that run before the checked test cells, cost the
implementation points; the others are recorded for the report.

This module is the AST walk; the rule tables it applies (and ``Finding``,
``BuiltinNames``) are in ``scan_rules``, which lines count as the student's in
``student_lines``.  Every name stays importable from here.
"""
from __future__ import annotations

import ast

from .scan_rules import (ATTR_CALLS, COSTLY, DANGEROUS_ATTRS, DANGEROUS_NAMES, DEFAULT_MODULE_ALIASES,
                         EVASION_ATTRS, EVASION_CALLS, EVASION_MODULES, EVASION_TORCH, HARMLESS_SETTINGS,
                         HIDING_MAGICS, HIDING_SHELL, INDIRECT, IPYTHON_SPECIFIC, IPYTHON_TAMPER, LOOKUPS,
                         MAGIC_RUNNERS, NONE, PATH_RE, SHELL_GETTERS, SHELL_RUNNERS, SUSPICIOUS_ATTRS,
                         SUSPICIOUS_MODULES, SYS_TAMPER, TAMPER_MODULES, TAMPER_NAMES, TIME_CELL_MAGICS,
                         WRITES_FILES, BuiltinNames, Finding)
from .student_lines import grade_id, is_answer_cell, is_locked, is_test_cell, student_lines

# What the scan has always offered (trusted.py, the course's checks and the tests import it from here).
__all__ = ["scan_notebook", "scan_source", "module_aliases", "Finding", "BuiltinNames", "NONE", "COSTLY",
           "DEFAULT_MODULE_ALIASES", "grade_id", "is_answer_cell", "is_locked", "is_test_cell", "student_lines"]


def module_aliases(nb) -> set[str]:
    """Names bound to modules anywhere in the notebook (import torch.nn as nn, ...)."""
    names = set(DEFAULT_MODULE_ALIASES)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)[0]
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    names.add(alias.asname or alias.name)
    return names


def scan_notebook(nb, given=None, costly_until: int | None = None,
                  builtin: BuiltinNames | None = None) -> list[Finding]:
    """Findings in the student's lines.  Costly kinds found at or after cell index
    ``costly_until`` (code that only runs after the checked tests) become suspicious.
    ``builtin``: what naming the library's own version of the exercise looks like."""
    aliases = module_aliases(nb)
    findings: list[Finding] = []
    mine = {i: lines for i, lines in student_lines(nb, given).items() if lines is None or lines}
    writes = any(WRITES_FILES.search(nb.cells[i].source) for i in mine)
    for index, lines in mine.items():
        cell = nb.cells[index]
        for f in scan_source(cell.source, index, lines, aliases, answer_cell=is_answer_cell(cell),
                             writes_files=writes, builtin=builtin):
            if f.kind in COSTLY and costly_until is not None and index >= costly_until:
                f = Finding("suspicious", f.rule, f.cell, f.line, f.code)
            findings.append(f)
    return findings


def _parse(source: str) -> tuple[ast.AST | None, int, str | None]:
    """(tree, line offset, cell magic) of a cell, IPython syntax made Python."""
    offset, magic = 0, None
    stripped = source.lstrip("\n")
    if stripped.startswith("%%"):
        first, _, rest = stripped.partition("\n")
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in TIME_CELL_MAGICS:
            return None, 0, magic
        offset = source[: len(source) - len(stripped)].count("\n") + 1
        source = rest
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        python = TransformerManager().transform_cell(source)
    except Exception:
        python = source
    try:
        return ast.parse(python), offset, magic
    except (SyntaxError, ValueError):
        return None, offset, magic


def scan_source(source: str, cell: int, lines: set[int] | None, aliases: set[str],
                answer_cell: bool = True, writes_files: bool = True,
                builtin: BuiltinNames | None = None) -> list[Finding]:
    """Findings in one cell.  ``writes_files``: the submission writes files somewhere
    (then importing a module that is not installed is importing its own hidden code;
    otherwise it is a plain mistake, recorded only)."""
    builtin = builtin or NONE
    tree, offset, magic = _parse(source)
    src_lines = source.splitlines()
    findings: list[Finding] = []

    def mine(node) -> bool:
        if lines is None:
            return True
        first = getattr(node, "lineno", 0) + offset
        last = (getattr(node, "end_lineno", None) or getattr(node, "lineno", 0)) + offset
        return any(n in lines for n in range(first, last + 1))

    def add(node, kind, rule):
        if mine(node):
            n = getattr(node, "lineno", 1) + offset
            text = src_lines[n - 1].strip()[:160] if 0 < n <= len(src_lines) else ""
            findings.append(Finding(kind, rule, cell, n, text))

    if magic is not None and tree is None:
        # the cell's body is not Python this reading can judge: a file written to be
        # imported, a script in another language or interpreter hides what it does
        kind = "evasion" if magic in HIDING_MAGICS else "suspicious"
        findings.append(Finding(kind, f"cell magic %%{magic}", cell, 1 + offset, f"%%{magic}"))
        return findings
    for n, text in enumerate(src_lines, 1):
        if (lines is None or n in lines) and text.lstrip().startswith("!"):
            hides = HIDING_SHELL.search(text)
            findings.append(Finding("evasion" if hides else "suspicious", "shell command", cell, n, text.strip()[:160]))
    if tree is None:
        return findings
    magic_lines = {n for n, t in enumerate(src_lines, 1) if t.lstrip().startswith(("%", "!"))}
    # Naming the built-in layer costs points only inside the definitions of an
    # answer cell (the implementation); a module-level comparison is allowed.
    defined: set[int] = set()
    if answer_cell:
        for top in tree.body:
            if isinstance(top, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([top.lineno] + [d.lineno for d in top.decorator_list])
                defined.update(range(first, (top.end_lineno or top.lineno) + 1))

    def implementation(node) -> bool:
        return getattr(node, "lineno", 0) in defined

    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    shells = _shell_names(tree)

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            _attribute(node, add, aliases, implementation(node), magic_lines, offset, shells, builtin)
        elif isinstance(node, ast.Name):
            if node.id in INDIRECT and id(node) not in called:
                add(node, "evasion", f"{node.id} used as a value")
            if node.id in LOOKUPS and id(node) not in called:
                add(node, "evasion", f"name-to-object lookup {node.id}")
            if node.id in DANGEROUS_NAMES:
                add(node, "evasion", node.id)
            elif node.id in TAMPER_NAMES:
                add(node, "tamper", node.id)
        elif isinstance(node, ast.Call):
            _call(node, add, aliases, builtin)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            _import(node, add, implementation(node), writes_files, builtin)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            _string(node, add, implementation(node), builtin)
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = _dotted(base)
                if name is None:
                    add(base, "evasion", f"computed base class {ast.unparse(base)[:60]}")
                elif builtin.name(name.split(".")[-1]) or any(b in name for b in builtin.bases):
                    add(base, "delegation", f"base class {name}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                _assignment_target(target, add, aliases | shells)
        elif isinstance(node, ast.While):
            if isinstance(node.test, ast.Constant) and node.test.value and not any(
                    isinstance(n, (ast.Break, ast.Return, ast.Raise)) for n in ast.walk(node)):
                add(node, "suspicious", "endless loop")
    return findings


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        parts.append(node.func.id + "()")
        return ".".join(reversed(parts))
    return None


def _root(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _root(node.func) + "()" if _root(node.func) else None
    return None


def _shell_names(tree) -> set[str]:
    """Names bound to IPython's shell or to a way of getting it (``ip = get_ipython()``,
    ``g = get_ipython``, ``shell = IPython.get_ipython()``), and their call forms."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            mentions = any((isinstance(n, ast.Name) and n.id in SHELL_GETTERS) or
                           (isinstance(n, ast.Attribute) and n.attr in SHELL_GETTERS) or
                           (isinstance(n, ast.Name) and n.id in names)
                           for n in ast.walk(node.value))
            if mentions:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for n in ast.walk(target):
                        if isinstance(n, ast.Name):
                            names.add(n.id)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "IPython":
            names.update(a.asname or a.name for a in node.names if a.name in SHELL_GETTERS)
    return names | {f"{n}()" for n in names}


def _attribute(node, add, aliases, inside, magic_lines, offset, shells=frozenset(), builtin=NONE) -> None:
    attr, root = node.attr, _root(node.value)
    dotted = _dotted(node) or attr
    if builtin.name(attr) and root not in ("self", "cls"):
        add(node, "delegation" if inside else "suspicious", dotted)
    if attr in LOOKUPS and root not in ("self", "cls"):
        add(node, "evasion", f"name-to-object lookup {dotted}")
    if attr in DANGEROUS_ATTRS:
        add(node, "evasion", dotted)
    elif attr.startswith("_") and not attr.startswith("__") and root not in ("self", "cls"):
        add(node, "evasion", f"private {dotted}")
    if root in ("torch",) and attr in EVASION_TORCH:
        add(node, "evasion", dotted)
    if (root == "get_ipython()" or root in shells) and attr in IPYTHON_TAMPER | IPYTHON_SPECIFIC:
        if node.lineno + offset not in magic_lines:
            add(node, "tamper", dotted)
    elif attr in IPYTHON_SPECIFIC and root not in ("self", "cls"):
        add(node, "tamper", dotted)
    if root == "sys" and attr in SYS_TAMPER:
        add(node, "tamper", dotted)
    if attr in SUSPICIOUS_ATTRS and root in aliases | {"Path()", "pathlib"}:
        add(node, "suspicious", dotted)
    if attr in EVASION_ATTRS and root in aliases:
        add(node, "evasion", dotted)


def _call(node, add, aliases, builtin=NONE) -> None:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    method = node.func.attr if isinstance(node.func, ast.Attribute) else None
    if name in EVASION_CALLS:
        add(node, "evasion", f"{name}()")
    if name in LOOKUPS:
        add(node, "evasion", f"name-to-object lookup {name}()")
    if method in MAGIC_RUNNERS:
        # %run, %load, %%writefile... as IPython turns them into calls (or written out by hand)
        first = node.args[0] if node.args else None
        magic = first.value.split()[0] if isinstance(first, ast.Constant) and isinstance(first.value, str) \
            and first.value.split() else None
        if method in ("run_line_magic", "run_cell_magic", "magic"):
            if magic is None or magic.lstrip("%") in HIDING_MAGICS:
                add(node, "evasion", f"magic %{magic.lstrip('%') if magic else '(computed)'}")
        elif method in SHELL_RUNNERS:
            # "!pip install" is ordinary; a shell that runs Python or writes files hides code
            command = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if command is None or HIDING_SHELL.search(command):
                add(node, "evasion", f"shell {command[:60] if command else '(computed)'}")
        else:
            add(node, "evasion", f"{method}()")
    if name == "type" and len(node.args) == 3:
        add(node, "evasion", "type() with three arguments")
    if name in ATTR_CALLS and len(node.args) >= 2 and _root(node.args[0]) not in ("self", "cls"):
        key = node.args[1]
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            add(node, "evasion", f"{name}() with a computed name")
        elif builtin.name(key.value):
            add(node, "delegation", f"{name}(..., {key.value!r})")
        elif key.value.startswith("_") and not key.value.startswith("__"):
            add(node, "evasion", f"{name}(..., {key.value!r})")
        if name in ("setattr", "delattr") and _root(node.args[0]) in aliases:
            add(node, "tamper", f"{name}({_dotted(node.args[0]) or '...'}, ...)")
    if name == "open" and node.args and not isinstance(node.args[0], ast.Constant):
        pass  # computed paths: the sandbox decides, nothing to read here


def _import(node, add, inside, writes_files=True, builtin=NONE) -> None:
    if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
        names: list[str] = []
    else:
        modules = [node.module or ""]
        names = [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level:
        add(node, "evasion", f"relative import from {'.' * node.level}{node.module or ''}")
    for module in modules:
        parts = module.split(".")
        top = parts[0]
        if top and not _installed(top):
            if writes_files:
                add(node, "evasion", f"import {module} (not installed: a module written by the submission)")
            else:
                add(node, "suspicious", f"import {module} (not installed)")
        if top in EVASION_MODULES or any(p.startswith("_") for p in parts) or (
                top == "torch" and len(parts) > 1 and parts[1] in EVASION_TORCH):
            add(node, "evasion", f"import {module}")
        if module in TAMPER_MODULES or top in TAMPER_MODULES:
            add(node, "tamper", f"import {module}")
        if top in SUSPICIOUS_MODULES:
            add(node, "suspicious", f"import {module}")
        if builtin.modules.search(module):
            add(node, "delegation" if inside else "suspicious", f"import {module}")
    for name in names:
        if builtin.name(name):
            add(node, "delegation" if inside else "suspicious", f"from {modules[0]} import {name}")
        elif name in EVASION_TORCH or (name.startswith("_") and not name.startswith("__")):
            add(node, "evasion", f"from {modules[0]} import {name}")
        elif name in TAMPER_NAMES:
            add(node, "tamper", f"from {modules[0]} import {name}")


_INSTALLED: dict[str, bool] = {}


def _installed(top: str) -> bool:
    """True when a top-level module of that name exists in the course's Python (not a
    file the submission wrote next to itself).  Finding it runs no module code."""
    if top not in _INSTALLED:
        import importlib.machinery
        import sys

        paths = [p for p in sys.path if p not in ("", ".")]
        try:
            found = top in sys.builtin_module_names or top in sys.modules or \
                importlib.machinery.PathFinder.find_spec(top, paths) is not None
        except (ImportError, ValueError):
            found = False
        _INSTALLED[top] = found
    return _INSTALLED[top]


def _string(node, add, inside, builtin=NONE) -> None:
    value = node.value.strip()
    parts = value.split(".") if value and " " not in value and len(value) < 200 else []
    if parts and any(builtin.name(p) for p in parts):
        add(node, "delegation" if inside else "suspicious", f"string {value!r}")
    elif parts and (any(p in EVASION_TORCH or p in DANGEROUS_ATTRS or p in INDIRECT for p in parts)
                    or any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts)):
        add(node, "evasion", f"string {value!r}")
    elif value and "\n" not in value and len(value) < 300 and PATH_RE.search(value):
        add(node, "suspicious", f"path {value[:80]!r}")


def _assignment_target(target, add, aliases) -> None:
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _assignment_target(element, add, aliases)
        return
    if isinstance(target, ast.Attribute):
        root, dotted = _root(target), _dotted(target) or ""
        if dotted.startswith(HARMLESS_SETTINGS):
            return
        if root in aliases or root == "get_ipython()":
            add(target, "tamper", f"patch {_dotted(target) or target.attr}")
    elif isinstance(target, ast.Subscript):
        dotted = _dotted(target.value) or ""
        if dotted in ("sys.modules", "__builtins__") or _root(target) == "__builtins__":
            add(target, "tamper", f"patch {dotted}[...]")
