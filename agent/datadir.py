"""The agent's data directory: an exclusive lock, the persistent node ID, and what a restart needs to rejoin.

Layout (Consul's names where Consul has them, consul-compat §6.4)::

    <data_dir>/triumvir.lock     flock'ed while an agent runs; holds that agent's PID (for the error message)
    <data_dir>/node-id           the node's UUID, lower case, mode 0600
    <data_dir>/serf/peers.json   {"peers": ["IP:port", ...]}: alive peers, rejoined after a restart
    <data_dir>/serf/left         present when the last shutdown was a graceful leave (then: no automatic rejoin)

Why the care: two agents on one data dir would share a node ID and fight over the catalog ("Node name X is
reserved by node <id>"), so the second one must stop with a message that says who holds the directory.  Every
file is replaced atomically (temp file, fsync, rename, fsync of the directory), so a crash or power loss leaves
either the old contents or the new, never a torn node ID.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_FILE", "NODE_ID_FILE", "DataDir", "DataDirError", "DataDirLocked", "fsync_dir", "parse_node_id"]

log = logging.getLogger("triumvir.datadir")

LOCK_FILE = "triumvir.lock"
NODE_ID_FILE = "node-id"
PEERS_FILE = "serf/peers.json"
LEFT_FILE = "serf/left"

# go-uuid's ParseUUID: exactly 36 characters, hyphens at 8-4-4-4-12 (Python's uuid.UUID is looser: braces, urn:).
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class DataDirError(Exception):
    """A data-dir problem the agent cannot start with; ``str(err)`` names the path."""


class DataDirLocked(DataDirError):
    """Another agent (this process or another) holds the data-dir lock."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


def parse_node_id(text: str, source: str) -> str:
    """A node ID as Consul takes it: trimmed, lower-cased, a hyphenated UUID; else DataDirError naming ``source``."""
    value = text.strip().lower()
    if not _UUID_RE.fullmatch(value):
        raise DataDirError(f"invalid node ID in {source}: {value!r} is not a UUID (like {uuid.uuid4()})")
    return value


class DataDir:
    """One agent's data directory.  ``lock()`` first; the lock lives until ``unlock()`` or the process ends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"

    # ------------------------------------------------------------------ the lock

    def lock(self) -> None:
        """Take the exclusive lock, creating the directory if needed; DataDirLocked if another agent has it.

        flock, not a PID file alone: the kernel drops it when the holder dies, however it dies, so a crash never
        leaves a stale lock behind.  The PID written inside is only there to name the holder in the error.
        """
        if self._lock_fd is not None:
            return
        self._mkdir(self.path)
        lock_path = self.path / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise DataDirError(f"cannot open lock file {lock_path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            pid = _read_pid(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirError(f"cannot lock {lock_path}: {err.strerror}") from err
            holder = f"process {pid}" if pid is not None else "another process"
            raise DataDirLocked(
                f"data dir {self.path} is in use by {holder} (lock file {lock_path}); "
                "stop that agent or choose another -data-dir",
                pid,
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            os.close(fd)
            raise DataDirError(f"cannot write lock file {lock_path}: {err.strerror}") from err
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (idempotent).  The PID is cleared first so nobody is blamed after we are gone."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor of this open file releases the flock

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock_fd is not None

    def __enter__(self) -> DataDir:
        self.lock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unlock()

    # ------------------------------------------------------------------ node ID

    def node_id(self) -> str:
        """The persistent node ID: read from ``node-id`` (strictly a UUID), or generated once and written 0600."""
        path = self.path / NODE_ID_FILE
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            node_id = str(uuid.uuid4())
            self.atomic_write(NODE_ID_FILE, node_id.encode(), mode=0o600)
            return node_id
        except OSError as err:
            raise DataDirError(f"cannot read node ID file {path}: {err.strerror}") from err
        return parse_node_id(text, str(path))

    # ------------------------------------------------------------------ rejoin state

    def read_peers(self) -> list[str]:
        """The peers saved by ``write_peers`` (``IP:port``); [] if none were saved or the file is unreadable.

        Rejoin is best effort (retry_join still works), so a damaged file is logged and ignored, not fatal.
        """
        path = self.path / PEERS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            log.warning("ignoring peer snapshot %s: %s", path, err.strerror)
            return []
        try:
            doc = json.loads(raw)
            peers = doc["peers"]
            if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
                raise TypeError("peers is not a list of strings")
        except (ValueError, KeyError, TypeError) as err:
            log.warning("ignoring damaged peer snapshot %s: %s", path, err)
            return []
        return list(peers)

    def write_peers(self, addrs: Iterable[str]) -> None:
        """Save the alive peers' ``IP:port`` (sorted, no duplicates) for a rejoin after restart."""
        peers = sorted({str(a) for a in addrs})
        data = json.dumps({"peers": peers}, indent=1).encode() + b"\n"
        self.atomic_write(PEERS_FILE, data)

    def mark_left(self, left: bool) -> None:
        """Record whether we are shutting down by a graceful leave (True) or have (re)joined since (False)."""
        if left:
            self.atomic_write(LEFT_FILE, b"1\n")
            return
        path = self.path / LEFT_FILE
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def left(self) -> bool:
        """Whether the last shutdown was a graceful leave: then don't rejoin saved peers unless rejoin_after_leave."""
        return (self.path / LEFT_FILE).exists()

    # ------------------------------------------------------------------ files

    def atomic_write(self, relpath: str, data: bytes | Sequence[bytes], mode: int = 0o600) -> Path:
        """Replace ``<data_dir>/<relpath>`` with ``data`` (or its pieces, written in turn) all at once: temp file,
        fsync, rename, fsync the dir."""
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"atomic_write wants a path inside the data dir, not {relpath!r}")
        target = self.path / rel
        self._mkdir(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                for piece in [data] if isinstance(data, bytes) else data:
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(target.parent)
        return target

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise DataDirError(f"cannot create data dir {path}: {err.strerror}") from err


def _read_pid(fd: int) -> int | None:
    """The PID the lock holder wrote, if it has written one yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
