"""One run per output directory: a lock file naming the holder's pid and host.

Two runs writing into the same directory would interleave checkpoints and logs, so the second
one is refused. A lock left behind by a process that no longer exists (killed, machine rebooted)
is taken over with a warning; a lock from another host cannot be checked and is refused with
the command to remove it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from .errors import UserInputError

__all__ = ["LOCK_FILE", "RunDirLocked", "RunDirLock", "pid_alive"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"


class RunDirLocked(UserInputError):
    """Another live run holds the output directory."""


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    return True


class RunDirLock:
    """``with RunDirLock(out_dir): ...`` holds ``<out_dir>/.run.lock`` for the run."""

    def __init__(self, directory: str, warn: bool = True) -> None:
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.held = False
        self.warn = (
            warn  # False: the caller logs ``took_over`` itself (e.g. once its log is set up)
        )
        self.took_over: str | None = None  # message about a stale lock that was taken over

    def _record(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._record(), f)
        return True

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirLocked` naming the holder."""
        os.makedirs(self.directory, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self._read()
            if holder is None:  # being written right now, or garbage: look again shortly
                time.sleep(0.05)
                holder = self._read()
            pid = int(holder.get("pid", -1)) if holder else -1
            host = str(holder.get("host", "?")) if holder else "?"
            same_host = host == socket.gethostname()
            if holder is not None and (not same_host or pid_alive(pid)):
                where = f"pid {pid} on host {host}"
                fix = (
                    "wait for it to finish or use another --output-dir"
                    if same_host
                    else f"if that run is dead, delete {self.path}"
                )
                raise RunDirLocked(
                    f'output directory "{self.directory}" is in use by another run ({where}, '
                    f"lock file {self.path}): {fix}"
                )
            self.took_over = (
                f"Taking over the stale lock {self.path} of "
                f"{f'pid {pid} on {host}' if holder else 'an unreadable lock file'} (process no "
                "longer running; resuming from its last complete checkpoint if any)"
            )
            if self.warn:
                logger.warning(self.took_over)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        raise RunDirLocked(f"could not take the lock {self.path}; another run keeps creating it")

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder and holder.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
