"""The rule tables of the static scan (``scan``): which names, modules, attributes, magics and
paths count as delegation, evasion, tamper or suspicious, and the shape of a finding.

``BuiltinNames`` is how a course describes the library's own version of its exercise
(``NONE``: no description, so no delegation to find); ``Finding`` is one thing seen in one
line.  The AST walk that applies these tables is in ``scan``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

COSTLY = ("delegation", "evasion")


@dataclass(frozen=True)
class BuiltinNames:
    """What naming the library's own version of the exercise looks like (the course says)."""
    names: re.Pattern     # an attribute, function or imported name (one dotted part)
    modules: re.Pattern   # a module imported
    bases: tuple[str, ...] = ()  # base classes (a substring of the dotted name)

    def name(self, text: str) -> bool:
        return bool(self.names.match(text))


NONE = BuiltinNames(names=re.compile(r"(?!)"), modules=re.compile(r"(?!)"))

EVASION_CALLS = {"eval", "exec", "compile", "__import__", "globals", "vars", "breakpoint"}
ATTR_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
# Modules that load or run code out of sight, or run it in another thread or
# process (where the probe's per-thread op trace does not look).
EVASION_MODULES = {"importlib", "ctypes", "inspect", "gc", "marshal", "types", "pickle", "dill",
                   "cffi", "code", "codeop", "runpy", "cloudpickle", "zipimport", "operator",
                   "threading", "_thread", "concurrent", "multiprocessing", "pydoc", "pkgutil", "imp",
                   "copyreg", "asyncio", "sched", "subprocess"}
EVASION_TORCH = {"_C", "ops", "library", "overrides", "_dynamo", "_ops", "_refs", "_decomp", "_prims", "jit",
                 "compile", "fx", "export", "_inductor", "func", "multiprocessing"}
# functions that turn a name (a string) into the object it names, whatever module they come from
LOOKUPS = {"locate", "import_module", "resolve_name", "attrgetter", "methodcaller", "find_spec", "find_module",
           "spec_from_file_location", "spec_from_loader", "module_from_spec", "exec_module", "load_module",
           "reload", "getattr_static", "__getattribute__", "__getattr__", "get_function", "_getframe",
           "currentframe", "_current_frames", "get_objects", "get_referrers", "get_referents"}
# cell and line magics that run code this reading cannot see (other files, other languages)
HIDING_MAGICS = {"writefile", "file", "script", "bash", "sh", "python", "python2", "python3", "pypy", "perl",
                 "ruby", "system", "sx", "run", "load", "loadpy", "macro", "load_ext", "reload_ext", "autoreload",
                 "aimport", "sc", "store", "px", "cython", "rerun", "recall", "edit"}
# IPython attributes that only serve to change how cells run or how errors show, on any object
IPYTHON_SPECIFIC = {"input_transformers_cleanup", "input_transformers_post", "input_transformer_manager",
                    "ast_transformers", "showtraceback", "_showtraceback", "showsyntaxerror", "set_custom_exc",
                    "custom_exceptions", "run_cell", "run_cell_async", "run_ast_nodes", "run_code",
                    "register_magic_function", "InteractiveTB", "SyntaxTB", "transform_cell", "prefilter_manager"}
SHELL_RUNNERS = {"system", "system_piped", "system_raw", "getoutput"}
MAGIC_RUNNERS = {"run_line_magic", "run_cell_magic", "magic", "safe_execfile", "safe_execfile_ipy",
                 "safe_run_module", "ex", "ev"} | SHELL_RUNNERS
HIDING_SHELL = re.compile(r"(?i)python|\.py\b|\bexec\b|>|\btee\b|\bcp\b|\bcurl\b|\bwget\b")
# the student's code writes files (where a module of its own could come from)
WRITES_FILES = re.compile(r"%%(writefile|file)\b|\bopen\s*\(|write_text|write_bytes|copyfile|shutil\.|"
                          r"\.py\b|\bcp\s|>>?\s*\S")
# ways to reach IPython's shell object
SHELL_GETTERS = {"get_ipython", "InteractiveShell", "get_ipython()"}
# builtins that, passed around as values, do what the flagged calls do
INDIRECT = {"getattr", "setattr", "delattr", "eval", "exec", "compile", "__import__", "vars", "globals"}
DANGEROUS_ATTRS = {"__subclasses__", "__bases__", "__base__", "__mro__", "__globals__", "__builtins__",
                   "__code__", "__closure__", "__dict__", "__getattribute__", "__import__", "__loader__",
                   "__spec__", "__reduce__", "__reduce_ex__", "__torch_dispatch__", "__torch_function__",
                   "f_back", "f_globals", "f_locals", "f_builtins", "gi_frame", "tb_frame", "cr_frame"}
DANGEROUS_NAMES = {"__builtins__", "__import__", "__loader__", "__spec__"}

IPYTHON_TAMPER = {"input_transformers_cleanup", "input_transformers_post", "input_transformer_manager",
                  "ast_transformers", "showtraceback", "_showtraceback", "showsyntaxerror", "set_custom_exc",
                  "custom_exceptions", "events", "displayhook", "display_pub", "run_cell", "run_cell_async",
                  "run_ast_nodes", "run_code", "register_magic_function", "kernel", "excepthook",
                  "InteractiveTB", "SyntaxTB", "user_ns", "user_global_ns", "compile", "transform_cell",
                  "prefilter_manager", "ex", "ev"}
SYS_TAMPER = {"modules", "settrace", "setprofile", "excepthook", "displayhook", "stdout", "stderr",
              "meta_path", "path_hooks", "addaudithook", "_getframe", "setrecursionlimit"}
TAMPER_NAMES = {"clear_output", "showtraceback"}
TAMPER_MODULES = {"builtins", "unittest.mock", "mock", "sitecustomize"}

SUSPICIOUS_MODULES = {"socket", "ssl", "urllib", "http", "requests", "httpx", "aiohttp", "ftplib", "smtplib",
                      "telnetlib", "subprocess", "signal", "resource", "sqlite3", "shutil",
                      "glob", "pty", "fcntl", "mmap", "psutil", "atexit", "pathlib", "tempfile",
                      "webbrowser", "paramiko", "nbgrader", "jupyter_client", "zmq"}
# starting another process: what runs there escapes the probe's op trace
EVASION_ATTRS = {"fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnl", "spawnv", "spawnve", "system", "popen",
                 "execv", "execve", "execl", "execlp", "execvp", "execvpe"}
SUSPICIOUS_ATTRS = {"kill", "killpg", "_exit", "abort", "getppid",
                    "setsid", "environ", "environb", "getenv", "putenv", "unsetenv", "listdir", "scandir",
                    "walk", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
                    "chmod", "chown", "chdir", "symlink", "link", "truncate", "rmtree", "signal",
                    "setrlimit", "connect", "create_connection", "urlopen", "pidfd_open",
                    "sched_setaffinity", "nice", "read_bytes", "read_text", "write_text", "write_bytes",
                    "iterdir", "rglob", "home", "cwd", "expanduser"}
PATH_RE = re.compile(r"(?i)(^/|^~|\.\.|gradebook|\.db$|(^|/)(source|submitted|autograded|release|feedback)(/|$)"
                     r"|/proc|/etc|/root|/home|nbgrader_config)")
DEFAULT_MODULE_ALIASES = {"torch", "nn", "F", "np", "numpy", "builtins", "math", "sys", "os", "IPython",
                          "plt", "matplotlib", "functional", "testing", "random", "tqdm", "torchvision"}
# settings an honest notebook changes (determinism, plots): not patches
HARMLESS_SETTINGS = ("torch.backends.", "plt.rcParams", "matplotlib.rcParams", "np.random.seed")
TIME_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}


@dataclass(frozen=True)
class Finding:
    kind: str   # delegation | evasion | tamper | suspicious
    rule: str   # what was seen, e.g. "F.batch_norm", "eval", "patch torch.allclose"
    cell: int   # index of the code cell in the notebook
    line: int   # 1-based line in that cell
    code: str   # the line itself, trimmed

    def as_dict(self) -> dict:
        return {"kind": self.kind, "rule": self.rule, "cell": self.cell, "line": self.line, "code": self.code}
