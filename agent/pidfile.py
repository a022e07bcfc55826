"""Consul's ``pid_file``: the agent's PID written when it starts, removed when it exits (however it exits)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["pid_file"]


@contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write ``os.getpid()`` to ``path`` (no newline, as Consul's storePid) for the duration of the block.

    An unwritable path is an ``OSError`` saying so (the agent does not start); on the way out the file is removed
    unless another process has written its own PID there since.
    """
    if not path:
        yield
        return
    pid = str(os.getpid())
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "w") as handle:
            handle.write(pid)
    except OSError as exc:
        raise OSError(f"Could not open pid file: {exc.strerror}: {path}") from None
    try:
        yield
    finally:
        try:
            with open(path) as handle:
                ours = handle.read().strip() == pid
            if ours:
                os.remove(path)
        except OSError:
            pass  # already gone, or unreadable: nothing of ours to clean up
