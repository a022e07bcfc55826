"""Go's texts for OS errors, which operators' scripts match: syscall.Errno's (``connection refused``) and
*os.PathError's (``open <path>: no such file or directory``).  Stdlib only (the CLI uses it)."""

from __future__ import annotations

import os

__all__ = ["go_os_error", "go_strerror"]


def go_strerror(err: OSError) -> str:
    """syscall.Errno's text: strerror with a lower-case first letter (`connection refused`)."""
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


def go_os_error(op: str, path: str, exc: OSError) -> str:
    """Go's *PathError text: ``open <path>: no such file or directory``."""
    return f"{op} {path}: {go_strerror(exc)}"
