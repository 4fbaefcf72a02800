"""Loaded by every Python process of a full-mode rehearsal or timing run (the
notebook kernel and what it forks), because ``bncourse.fullmode`` puts this
folder first on PYTHONPATH.  Never on a student's path.

- No network: any connection or name lookup that leaves the machine raises
  ``RehearsalNetworkError``, so a download attempt fails loudly instead of
  hanging or silently fetching.
- CIFAR-10 stand-ins: torchvision checks the batch files against the real
  archive's MD5s; ``COURSE_STANDIN_CIFAR10_MD5`` (JSON {file: md5}) replaces
  the expected MD5s by the stand-ins' own, so the integrity check still runs.
- ``COURSE_REHEARSAL_BATCHES=N``: every DataLoader pass over a data set of at
  least ``COURSE_REHEARSAL_MIN_DATASET`` (1000) samples yields at most N
  batches (the workers, transforms and collation still run).
- ``COURSE_HANG_TRACE=FILE``: on SIGUSR1, all threads' Python stacks go to
  FILE (faulthandler), so a hang shows where it is.
"""
import json
import os
import socket


class RehearsalNetworkError(RuntimeError):
    pass


def _is_local(host):
    """Loopback only: the kernel talks to its client on this machine."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host is None or host in ("", "localhost", "::1", "0.0.0.0") or str(host).startswith("127.")


def _refuse(what):
    raise RehearsalNetworkError(f"full-mode rehearsal: network access attempted ({what}); "
                                "the rehearsal never downloads: a stand-in file is missing or was rejected")


_real_connect, _real_connect_ex, _real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        _refuse(f"connect to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        _refuse(f"connect to {address!r}")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        _refuse(f"name lookup of {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo

if os.environ.get("COURSE_HANG_TRACE"):
    import faulthandler
    import signal

    # SIGUSR1 writes every thread's Python stack to the file (bncourse.fullmode sends it when a cell
    # runs past its time limit); COURSE_HANG_TRACE_EVERY=S also writes them every S seconds.
    _trace = open(os.environ["COURSE_HANG_TRACE"], "a")
    faulthandler.register(signal.SIGUSR1, file=_trace, all_threads=True)
    if os.environ.get("COURSE_HANG_TRACE_EVERY"):
        faulthandler.dump_traceback_later(float(os.environ["COURSE_HANG_TRACE_EVERY"]), repeat=True, file=_trace)

if os.environ.get("COURSE_STANDIN_CIFAR10_MD5"):
    from torchvision.datasets import CIFAR10

    _md5 = json.loads(os.environ["COURSE_STANDIN_CIFAR10_MD5"])
    CIFAR10.train_list = [[name, _md5[name]] for name, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[name, _md5[name]] for name, _ in CIFAR10.test_list]
    CIFAR10.meta = dict(CIFAR10.meta, md5=_md5[CIFAR10.meta["filename"]])

if os.environ.get("COURSE_REHEARSAL_BATCHES"):
    import itertools

    from torch.utils.data import DataLoader

    _cap = int(os.environ["COURSE_REHEARSAL_BATCHES"])
    # Only passes over the course's data sets (thousands of images) are cut; the notebooks' test cells
    # build small loaders of their own and count the batches they get, so those stay whole.
    _min_size = int(os.environ.get("COURSE_REHEARSAL_MIN_DATASET", "1000"))
    _real_iter, _real_len = DataLoader.__iter__, DataLoader.__len__

    def _capped(loader):
        try:
            return len(loader.dataset) >= _min_size
        except TypeError:  # an iterable data set without a length: leave it whole
            return False

    def _capped_iter(self):
        if not _capped(self):
            yield from _real_iter(self)
            return
        iterator = _real_iter(self)
        try:
            yield from itertools.islice(iterator, _cap)
        finally:
            # stop the workers now, as an exhausted pass would, instead of at garbage collection
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None and not getattr(self, "persistent_workers", False):
                shutdown()

    DataLoader.__iter__ = _capped_iter
    DataLoader.__len__ = lambda self: min(_real_len(self), _cap) if _capped(self) else _real_len(self)
