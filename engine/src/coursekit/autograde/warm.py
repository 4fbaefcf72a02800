"""The sandbox's warm kernel server for one grading run (:mod:`coursekit.sandbox.forkserver`)."""
from __future__ import annotations

import sys
import threading
import time


class WarmKernels:
    """The sandbox's warm fork server for one run: kernels fork from an
    interpreter that already imported ipykernel and torch instead of paying
    that import per submission.

    Started once per run in a background thread, so that the workers start
    meanwhile.  The coordinator hands out the first submissions once it is ready
    (``wait``): a kernel started cold meanwhile would import torch itself, and
    so would its trusted re-check's child, which costs more than the wait.  Each
    task message carries the server's socket; if the server cannot start,
    kernels start cold in the same sandbox, with the same results."""

    def __init__(self, enabled: bool):
        self.server = None
        self.error: str | None = None
        self.startup_s: float | None = None
        self._thread = None
        if enabled:
            self._thread = threading.Thread(target=self._start, name="warm-kernels", daemon=True)
            self._thread.start()

    def _start(self) -> None:
        t0 = time.monotonic()
        try:
            from coursekit.sandbox.forkserver import WarmServer
            self.server = WarmServer()
            self.startup_s = time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - cold kernels are the fallback
            self.error = f"{type(exc).__name__}: {exc}"

    def wait(self, timeout: float | None = None) -> str | None:
        """The server's socket once it is ready; None when it could not start, is disabled,
        or is still starting after ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.socket

    @property
    def starting(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def socket(self) -> str | None:
        return self.server.socket if self.server is not None else None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.error:
            print(f"warning: warm kernels unavailable, kernels started cold: {self.error}", file=sys.stderr)
            self.error = None


def sandbox_disabled() -> bool:
    """``COURSEKIT_SANDBOX=off``: kernels run unsandboxed, so there is no warm server to fork from."""
    from coursekit.sandbox.spec import disabled
    return disabled()
