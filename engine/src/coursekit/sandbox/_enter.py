"""Enter the kernel sandbox: the one piece of code both start-up paths share.

Standard library only, because it also runs as the cold launcher
(``python -I -S _enter.py SPEC STATUS_FD|- -- COMMAND...``) before anything
else is imported.  What it does, for one kernel:

1. ``bwrap`` (bubblewrap) builds the sandbox: new pid, network, ipc, uts
   (and cgroup) namespaces and a mount namespace whose root is an empty
   read-only tmpfs holding only read-only system directories, the Python
   installation, the read-only extra paths, the working copy (read-write), the
   kernel's socket directory (read-write), a private /tmp and /dev/shm, and a
   fresh /proc and minimal /dev.  Its command is a tiny holder process that
   keeps the namespaces alive.
2. The caller (the *supervisor*, outside the sandbox) joins bwrap's pid
   namespace for its children and forks the kernel process, which joins the
   other namespaces, leaves root (a root grader's kernel becomes uid 65534
   outside), enters a user namespace of its own where it is uid 65534, drops
   every capability, sets ``no_new_privs`` and its resource limits, and then
   either execs the kernel command (cold path) or runs ipykernel in the
   already-warm process it was forked from (warm path, see ``forkserver``).
3. The supervisor forwards signals to the kernel and, once the kernel is gone,
   kills bwrap: the pid namespace and anything a submission left running in
   it die with it.

Any failure before the kernel runs is reported (``error: ...``) on a status
pipe and the kernel never starts: the sandbox fails closed.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import stat
import subprocess
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# uid/gid the kernel has inside its user namespace ("nobody" exists in every
# /etc/passwd, so getpass/pwd lookups inside the sandbox keep working).
INSIDE_ID = 65534

# rlimit names of the spec -> resource constants (all hard == soft).
_RLIMITS = {
    "cpu_seconds": "RLIMIT_CPU",
    "data_bytes": "RLIMIT_DATA",
    "address_space_bytes": "RLIMIT_AS",
    "file_size_bytes": "RLIMIT_FSIZE",
    "open_files": "RLIMIT_NOFILE",
    "processes": "RLIMIT_NPROC",
    "core_bytes": "RLIMIT_CORE",
}

_libc = None


class SandboxError(RuntimeError):
    """The sandbox could not be set up; the kernel was not started."""


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def setns(fd: int, nstype: int, what: str) -> None:
    _check(_c().setns(fd, nstype), f"setns({what})")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), "unshare")


def prctl(option: int, arg2: int = 0, what: str = "prctl") -> None:
    _check(_c().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), what)


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    for cap in range(64):
        if _c().prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) == -1:
            err = ctypes.get_errno()
            if err == 22:  # EINVAL: past the last capability this kernel knows
                break
            raise OSError(err, f"PR_CAPBSET_DROP {cap}: {os.strerror(err)}")
    _c().prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    _check(_c().capset(ctypes.byref(header), data), "capset")


# --------------------------------------------------------------------------
# 1. bwrap: the mount view and the namespaces
# --------------------------------------------------------------------------

def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def bwrap_argv(spec: dict, privileged: bool) -> list[str]:
    """The bwrap command line that builds the sandbox of ``spec``."""
    args = [spec["bwrap"],
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not privileged:
        # Unprivileged bwrap needs a user namespace to build the others; the
        # kernel joins it, then nests one of its own (see become_sandboxed).
        args += ["--unshare-user"]
    args += _system_binds()
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(spec["tmp_bytes"]), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(spec["shm_bytes"]), "--tmpfs", "/dev/shm"]
    binds = [(p, "--ro-bind") for p in spec["ro_paths"]] + [(p, "--bind") for p in spec["rw_paths"]]
    bound = [p for p, _ in binds]
    made = {"/tmp"}
    # parents before children, so a deeper bind is never hidden by a shallower one
    for path, op in sorted(binds, key=lambda b: (b[0].count("/"), b[0])):
        # bwrap would create missing parents mode 0700 (root's): make them
        # traversable by the sandbox uid, unless they lie inside another bind
        parent = os.path.dirname(path)
        chain = []
        while parent not in ("/", "") and parent not in made:
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(chain):
            made.add(d)
            if not any(d == b or d.startswith(b + "/") for b in bound):
                args += ["--perms", "0755", "--dir", d]
        args += [op, path, path]
    args += ["--remount-ro", "/", "--chdir", "/",
             "--", "/bin/sh", "-c", "echo ready; exec cat"]
    return args


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# --------------------------------------------------------------------------
# the sandbox's process budget
# --------------------------------------------------------------------------
#
# RLIMIT_NPROC counts the processes (and threads) of a uid.  Every kernel
# runs as the same host uid, so the budget is per sandbox only because each
# kernel also gets a user namespace of its own and Linux >= 5.14 counts
# RLIMIT_NPROC per user namespace ("ucounts").  Where the grader may (root,
# a pids cgroup hierarchy), each sandbox's kernel also goes into a pids cgroup
# of its own capped at the same number: a budget per sandbox whatever the
# kernel version.  Where neither holds, one kernel holding its budget blocks
# forks in every other sandbox: ``process_budget()`` says so.

PIDS_CGROUP_BASES = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")  # cgroup v1 pids hierarchy, cgroup v2
_cgroup_serial = 0


def _linux_at_least(major: int, minor: int) -> bool:
    try:
        numbers = os.uname().release.split("-")[0].split(".")
        return (int(numbers[0]), int(numbers[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def _sweep_cgroups(base: str) -> None:
    """Remove empty cgroups left by supervisors killed hard (their pid is gone)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "coursekit" and parts[1].isdigit() \
                and not os.path.exists(f"/proc/{parts[1]}"):
            try:
                os.rmdir(os.path.join(base, name))
            except OSError:
                pass


def sweep_cgroups() -> None:
    """``_sweep_cgroups`` on every base (after a supervisor was killed)."""
    for base in PIDS_CGROUP_BASES:
        _sweep_cgroups(base)


def pids_cgroup(limit: int):
    """A fresh pids cgroup capped at ``limit`` tasks, or None where the
    grader cannot make one (not root, no pids controller, read-only)."""
    global _cgroup_serial
    for base in PIDS_CGROUP_BASES:
        if not os.path.isfile(os.path.join(base, "cgroup.procs")):
            continue
        if _cgroup_serial == 0:
            _sweep_cgroups(base)
        _cgroup_serial += 1
        path = os.path.join(base, f"coursekit-{os.getpid()}-{_cgroup_serial}")
        try:
            os.mkdir(path, 0o755)
        except OSError:
            continue
        try:
            _write(os.path.join(path, "pids.max"), str(int(limit)))
            return path
        except OSError:
            remove_cgroup(path)
    return None


def remove_cgroup(path) -> None:
    if not path:
        return
    for _ in range(100):  # empty once the sandbox's last process is reaped
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def process_budget() -> tuple[bool, str]:
    """(per sandbox?, how): whether one sandbox's processes can use up another's budget here."""
    probe = pids_cgroup(1) if os.geteuid() == 0 else None
    if probe:
        remove_cgroup(probe)
        return True, f"per sandbox: a pids cgroup per kernel ({os.path.dirname(probe)})"
    if _linux_at_least(5, 14):
        return True, ("per sandbox: RLIMIT_NPROC in the kernel's own user namespace "
                      f"(Linux {os.uname().release} >= 5.14 counts it per namespace)")
    return False, (f"SHARED: Linux {os.uname().release} counts RLIMIT_NPROC per host uid and no pids cgroup "
                   "can be made here, so one kernel holding all its processes blocks forks in every "
                   "concurrent sandbox; run the grader as root with a pids cgroup hierarchy, or on Linux >= 5.14")


class Holder:
    """A running bwrap sandbox, kept alive by its holder process."""

    init_pid = 0  # the sandbox's pid 1 (bwrap), host numbering
    init_pidfd = -1
    cgroup = None  # the kernel's pids cgroup, removed once the sandbox is empty

    def __init__(self, spec: dict, privileged: bool):
        self.privileged = privileged
        argv = bwrap_argv(spec, privileged)
        if not os.path.isfile(argv[0]) or not os.access(argv[0], os.X_OK):
            raise SandboxError(
                f"bubblewrap not found at {argv[0]}: the kernel sandbox needs it. "
                "Install it with `make setup` (or `sudo apt-get install bubblewrap`).")
        try:  # bubblewrap is a program: the sandbox is the process it starts
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
                                         close_fds=True)
        except OSError as e:
            raise SandboxError(f"cannot run bubblewrap ({argv[0]}): {e}") from e
        line = self._read_ready(spec.get("setup_timeout", 20.0))
        if line != b"ready\n":
            err = self._stop_and_stderr()
            raise SandboxError("bubblewrap could not build the sandbox: "
                               + (err or f"unexpected output {line!r}")
                               + " (check that bubblewrap works here: `coursekit sandbox-check`)")
        self.holder_pid = self._find_holder()

    def _read_ready(self, timeout: float) -> bytes:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return buf
            chunk = os.read(fd, 64)
            if not chunk:
                return buf
            buf += chunk
        return buf

    def _stop_and_stderr(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            err = self.proc.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            err = ""
        self.kill()
        return err

    def _find_holder(self) -> int:
        # bwrap (monitor, our child) -> bwrap (pid 1 of the sandbox) -> holder
        for _ in range(200):
            for init in _children(self.proc.pid):
                kids = _children(init)
                if kids:
                    self.init_pid = init
                    self.init_pidfd = os.pidfd_open(init)
                    return kids[0]
            time.sleep(0.001)
        self.kill()
        raise SandboxError("bubblewrap started but its holder process was not found")

    def ns_fd(self, kind: str) -> int:
        return os.open(f"/proc/{self.holder_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)

    def kill(self) -> None:
        """Kill the sandbox and wait until every process in it is gone."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()  # its init dies with it (--die-with-parent)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.init_pidfd >= 0:
            # a pid namespace's init exits only once all its processes are gone
            select.select([self.init_pidfd], [], [], 10)
            os.close(self.init_pidfd)
            self.init_pidfd = -1
        remove_cgroup(self.cgroup)
        self.cgroup = None
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# 2. the kernel process: join, leave root, limit
# --------------------------------------------------------------------------

def _same_ns(kind: str, pid: int) -> bool:
    return os.stat(f"/proc/self/ns/{kind}").st_ino == os.stat(f"/proc/{pid}/ns/{kind}").st_ino


NS_GET_USERNS = 0xB701


def open_namespaces(holder: Holder) -> dict:
    """Namespace fds of the sandbox, opened by the supervisor before forking.

    "user" is the user namespace that owns the others (unprivileged bwrap
    nests a second one for its command; joining that one would give no
    capability over the pid or mount namespaces)."""
    fds = {}
    for kind in ("mnt", "net", "ipc", "uts", "cgroup", "pid"):
        if kind == "cgroup" and _same_ns(kind, holder.holder_pid):
            continue
        fds[kind] = holder.ns_fd(kind)
    owner = fcntl.ioctl(fds["pid"], NS_GET_USERNS)
    if os.fstat(owner).st_ino != os.stat("/proc/self/ns/user").st_ino:
        fds["user"] = owner
    else:
        os.close(owner)
    return fds


_NSTYPE = {"user": CLONE_NEWUSER, "mnt": CLONE_NEWNS, "net": CLONE_NEWNET, "ipc": CLONE_NEWIPC,
           "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP, "pid": CLONE_NEWPID}


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def become_sandboxed(spec: dict, ns_fds: dict) -> None:
    """Turn the calling (freshly forked, single-threaded) process into the
    sandboxed kernel process: after this it runs as an unprivileged uid with no
    capabilities, sees only the sandbox's files and has its limits."""
    # (the supervisor already joined the user namespace, if any, and the pid
    # namespace for its children)
    for kind in ("mnt", "net", "ipc", "uts", "cgroup"):
        if kind in ns_fds:
            setns(ns_fds[kind], _NSTYPE[kind], kind)
    for fd in ns_fds.values():
        os.close(fd)
    os.chdir(spec["workdir"])

    if os.geteuid() == 0 and "user" not in ns_fds:
        # Grader runs as root: become the unprivileged outside uid first.
        uid, gid = spec["uid"], spec["gid"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        prctl(PR_SET_DUMPABLE, 1, what="dumpable")  # else /proc/self/uid_map stays root's
    # A user namespace of the kernel's own, where it is uid/gid 65534: it owns
    # none of the sandbox's other namespaces (so no capability it holds there
    # reaches them), and RLIMIT_NPROC counts this kernel's processes only (on
    # Linux >= 5.14; see "the sandbox's process budget" above).
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{INSIDE_ID} {outer_uid} 1\n")
    _write("/proc/self/gid_map", f"{INSIDE_ID} {outer_gid} 1\n")
    if os.getuid() == 0:
        raise SandboxError("refusing to run the kernel as uid 0 inside the sandbox")

    drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="no_new_privs")
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="pdeathsig")  # after the uid change, which resets it
    for key, name in _RLIMITS.items():
        value = spec["limits"].get(key)
        if value is not None:
            value = int(value)
            resource.setrlimit(getattr(resource, name), (value, value))
    os.umask(0o022)
    try:
        os.setsid()
    except OSError:
        pass
    if spec.get("rundir"):
        # a kernel: nothing to read, its chatter into the socket folder's log
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        log = os.open(os.path.join(spec["rundir"], "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    # (a wrapped command keeps the stdio its caller gave it)


def close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def walk(top: str):
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            yield os.path.join(root, name)


def take_workdir(spec: dict):
    """When the grader is root, hand the working copy (and socket folder) to
    the sandbox uid; returns the previous owner to give it back to."""
    if os.geteuid() != 0:
        return None
    st = os.stat(spec["workdir"])
    for top in filter(None, (spec["workdir"], spec.get("rundir"))):
        for p in [top, *walk(top)]:
            os.chown(p, spec["uid"], spec["gid"], follow_symlinks=False)
    return st.st_uid, st.st_gid


def release_workdir(workdir: str, owner) -> list[str]:
    """Once nothing of the sandbox runs any more: remove what the grader must
    not follow or block on (symlinks, fifos, sockets) and give the working copy
    back to its owner.  Returns the removed paths, relative to ``workdir``."""
    removed = []
    for p in list(walk(workdir)):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            os.unlink(p)
            removed.append(os.path.relpath(p, workdir))
    if owner is not None:
        for p in [workdir, *walk(workdir)]:
            os.chown(p, owner[0], owner[1], follow_symlinks=False)
    return sorted(removed)


def snapshot(workdir: str) -> set[str]:
    """Relative paths of everything in ``workdir`` (taken before a kernel starts)."""
    return {os.path.relpath(p, workdir) for p in walk(workdir)}


def remove_new(workdir: str, before: set[str]) -> dict:
    """Remove what was not in ``workdir`` when ``before`` was taken (what the
    kernel made): its working copy is nbgrader's ``autograded/`` folder, whose
    every extra file ``generate_feedback`` copies to ``feedback/``, one by one.
    Returns ``{"files": n, "bytes": b, "sample": [first names]}`` (empty dict
    when nothing was made).  Call once nothing of the sandbox runs any more."""
    files = size = 0
    sample: list[str] = []
    new_dirs = []
    for root, dirs, names in os.walk(workdir):
        rel_root = os.path.relpath(root, workdir)
        for name in names:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel in before:
                continue
            path = os.path.join(root, name)
            try:
                size += os.lstat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            files += 1
            if len(sample) < 10:
                sample.append(rel)
        for name in dirs:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel not in before:
                new_dirs.append(os.path.join(root, name))
    for path in sorted(new_dirs, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass
    if not (files or new_dirs):
        return {}
    return {"files": files, "dirs": len(new_dirs), "bytes": size, "sample": sorted(sample)}


# --------------------------------------------------------------------------
# 3. supervision (shared by the cold launcher and the warm supervisor)
# --------------------------------------------------------------------------

def start(spec: dict, child_main, status_fd: int, report_pids: bool = True):
    """Build the sandbox and fork the kernel process into it.

    ``child_main()`` runs in the kernel process once it is sandboxed (it execs
    or runs the kernel and never returns).  Returns ``(holder, kernel_pid)``;
    raises SandboxError when the sandbox cannot be built.  The kernel process
    writes ``ok`` on ``status_fd`` just before it starts the kernel, or
    ``error: ...``.
    """
    privileged = os.geteuid() == 0
    holder = Holder(spec, privileged)
    try:
        fds = open_namespaces(holder)
        if "user" in fds:  # unprivileged: the other setns calls need its capabilities
            setns(fds["user"], CLONE_NEWUSER, "user")
        setns(fds["pid"], CLONE_NEWPID, "pid")  # for our children only
    except Exception as e:
        holder.kill()
        raise SandboxError(f"cannot join the sandbox's namespaces: {e}") from e
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(go_w)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            become_sandboxed(spec, fds)
            os.read(go_r, 1)  # the supervisor has reported our pids
            import gc

            gc.collect()  # let garbage close its own fds before we close the rest by number
            close_fds_except({status_fd})
            child_main()
        except BaseException as e:  # noqa: BLE001 - report anything, never run unsandboxed
            try:
                os.write(status_fd, f"error: sandbox setup failed: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(go_r)
    for fd in fds.values():
        os.close(fd)
    # its own pids cgroup (where the grader may make one), before it can fork:
    # it waits for the "go" below
    processes = spec["limits"].get("processes")
    if processes and spec.get("pids_cgroup", True):
        cgroup = pids_cgroup(processes)
        if cgroup:
            try:
                _write(os.path.join(cgroup, "cgroup.procs"), str(pid))
                holder.cgroup = cgroup
            except OSError:
                remove_cgroup(cgroup)
    # host pids of the kernel and of the sandbox's init, for whoever must wait
    # until the sandbox is empty
    if report_pids:
        os.write(status_fd, f"pids {pid} {holder.init_pid}\n".encode())
    os.write(go_w, b"g")
    os.close(go_w)
    return holder, pid


def exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def _launcher_main(argv: list[str]) -> int:
    """Cold path: ``_enter.py SPEC_JSON STATUS_FD|- -- COMMAND...``.

    With a status fd (the kernel manager's pipe) setup errors go there and the
    manager owns the working copy; with ``-`` (``wrap_command``) errors go to
    stderr and this launcher takes and gives back the working copy itself."""
    spec = json.loads(argv[0])
    cmd = argv[argv.index("--") + 1:]
    if argv[1] == "-":
        status_fd = os.dup(2)
    else:
        status_fd = int(argv[1])
    os.set_inheritable(status_fd, False)  # closed by the command's exec
    manage = argv[1] == "-"
    env = spec["env"]

    def child_main():
        if not manage:
            os.write(status_fd, b"ok\n")
        os.execve(cmd[0], cmd, env)

    owner = take_workdir(spec) if manage else None
    try:
        holder, pid = start(spec, child_main, status_fd, report_pids=not manage)
    except SandboxError as e:
        os.write(status_fd, f"error: {e}\n".encode())
        if manage:
            release_workdir(spec["workdir"], owner)
        return 70
    os.close(status_fd)

    # Forward what the kernel manager sends to us (interrupt, terminate).
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
        except InterruptedError:
            continue
    holder.kill()
    if manage:
        release_workdir(spec["workdir"], owner)
        if spec.get("remove_workdir"):
            import shutil

            shutil.rmtree(spec["workdir"], ignore_errors=True)
    return exit_code(status)


if __name__ == "__main__":
    sys.exit(_launcher_main(sys.argv[1:]))
