"""One logging setup for the whole program: stdout + ``<output>/log.txt``, rank-aware.

Upstream trainer files use ``print()``, so (as upstream) ``sys.stdout`` is replaced by a tee
that also writes to the log file. Our own packages log through :func:`get_logger`, whose
handler writes the bare message to the *current* ``sys.stdout``, hence through the tee too.
Differences from upstream (spec P6): an existing ``log.txt`` is renamed to
``log.txt-<timestamp>`` so the newest run is always ``log.txt``; closing the tee never closes
the real stdout; calling :func:`setup_logger` again first undoes the previous setup.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger", "get_logger", "close_logger", "write_to_log_file"]

#: top-level logger names that get the stdout handler ("dassl" always; others on demand)
_PROJECT_ROOTS: set[str] = set()
_STATE: dict[str, Any] = {"tee": None, "level": logging.INFO}


class Logger:
    """A stdout tee: everything written goes to the original stream and to ``fpath``.

    ``close()`` closes only the file, never the console stream.
    """

    def __init__(self, fpath: str | None = None, console: TextIO | None = None) -> None:
        self.console = console if console is not None else sys.stdout
        self.file: TextIO | None = None
        self.fpath = fpath
        if fpath is not None:
            mkdir_if_missing(os.path.dirname(os.path.abspath(fpath)))
            self.file = open(fpath, "w", encoding="utf-8")  # noqa: SIM115 (lives with the tee)

    def write(self, msg: str) -> int:
        self.console.write(msg)
        if self.file is not None and not self.file.closed:
            self.file.write(msg)
        return len(msg)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.flush()
            self.file.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty, fileno, ... behave like the console stream
        return getattr(self.console, name)


class _CurrentStdoutHandler(logging.StreamHandler):
    """A handler that always writes to whatever ``sys.stdout`` is at emit time."""

    def __init__(self) -> None:
        super().__init__(stream=sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:  # set by StreamHandler.__init__; ignored
        pass


def _configure_root(name: str) -> None:
    logger = logging.getLogger(name)
    if not any(isinstance(h, _CurrentStdoutHandler) for h in logger.handlers):
        logger.addHandler(_CurrentStdoutHandler())
    logger.setLevel(_STATE["level"])
    _PROJECT_ROOTS.add(name)


def get_logger(name: str) -> logging.Logger:
    """Return ``logging.getLogger(name)`` with its top-level package wired to stdout.

    Use it in every project module (``log = get_logger(__name__)``); INFO messages then appear
    on stdout (and in log.txt once :func:`setup_logger` ran), WARNING+ only on rank != 0.
    """
    _configure_root(name.split(".", 1)[0])
    return logging.getLogger(name)


def write_to_log_file(text: str) -> bool:
    """Append ``text`` to the run's log file only (not the console); False when none is open.

    Used for a crash's traceback, which Python prints on stderr itself.
    """
    tee = _STATE["tee"]
    if tee is None or tee.file is None or tee.file.closed:
        return False
    tee.file.write(text)
    tee.flush()
    return True


def close_logger() -> None:
    """Undo :func:`setup_logger`: restore the original stdout and close the log file."""
    tee = _STATE["tee"]
    if tee is None:
        return
    if sys.stdout is tee:
        sys.stdout = tee.console
    tee.close()
    _STATE["tee"] = None


def _log_path(output: str) -> str:
    if output.endswith(".txt") or output.endswith(".log"):
        return output
    return os.path.join(output, "log.txt")


def _rotate(fpath: str) -> None:
    """Move an existing log file aside as ``<fpath>-YYYY-MM-DD-HH-MM-SS`` (unique)."""
    if not os.path.exists(fpath):
        return
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(os.path.getmtime(fpath)))
    target = f"{fpath}-{stamp}"
    n = 1
    while os.path.exists(target):
        target = f"{fpath}-{stamp}.{n}"
        n += 1
    os.replace(fpath, target)


def setup_logger(output: str | None = None, rank: int = 0) -> str | None:
    """Send stdout and project loggers to the console and to the run's log file.

    Args:
        output: a directory (log goes to ``<output>/log.txt``) or a ``.txt``/``.log`` path;
            None logs to the console only.
        rank: process rank; ranks other than 0 log WARNING and above and write no file.

    Returns the log file path, or None when no file is written.
    """
    close_logger()
    _STATE["level"] = logging.INFO if rank == 0 else logging.WARNING
    for name in {"dassl"} | _PROJECT_ROOTS:
        _configure_root(name)
    if output is None or output == "" or rank != 0:
        return None
    fpath = _log_path(os.fspath(output))
    _rotate(fpath)
    tee = Logger(fpath, console=sys.stdout)
    _STATE["tee"] = tee
    sys.stdout = tee
    return fpath
