"""Advisory process locks on files (`fcntl.flock`), released when a process dies.

The running services hold a lock on a file in the data dir, and `rebuild`
takes the same lock exclusively, so a rebuild is refused while they run.
Several processes of the services share it (`shared=True`); a rebuild needs
it alone.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class LockHeldError(RuntimeError):
    """Another process holds the lock."""


class ProcessLock:
    """A non-blocking `flock` on `path`, as a context manager or acquire/release."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        owner: str = "",
        shared: bool = False,
        announce: bool = True,
    ) -> None:
        self.path = Path(path)
        self.owner = owner or "a process"
        self.shared = shared
        # Whether to write the owner into the file, which other processes'
        # `LockHeldError` names. A short-lived shared holder skips it, so that
        # the file goes on naming the long-running holders.
        self.announce = announce
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._descriptor is not None

    def acquire(self) -> ProcessLock:
        """Take the lock at once or raise `LockHeldError` naming the holder."""
        if self._descriptor is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise LockHeldError(
                f"{self.path} is locked by {holder}; stop it first "
                f"(wanted by {self.owner})"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        if self.announce:
            _write_holder(descriptor, f"{self.owner} (pid {os.getpid()})")
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        """Release the lock if held; the file stays for the next holder."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _write_holder(descriptor: int, text: str) -> None:
    # Shared holders overwrite each other's line; any of them names the service.
    data = (text + "\n").encode("utf-8")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)
