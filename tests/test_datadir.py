"""agent.datadir: the lock, the node ID, the rejoin state and atomic writes, on tmp_path.

The one subprocess here is started by this file and stopped by its PID (Popen.kill), never by name.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.datadir import LOCK_FILE, NODE_ID_FILE, DataDir, DataDirError, DataDirLocked, parse_node_id

REPO = Path(__file__).resolve().parent.parent

_HOLDER = """
import sys, time
from agent.datadir import DataDir
DataDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(120)
"""


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------- lock


def test_lock_creates_the_directory_and_records_our_pid(tmp_path: Path) -> None:
    d = DataDir(tmp_path / "data" / "agent")
    d.lock()
    try:
        assert d.locked
        assert (d.path / LOCK_FILE).read_text().strip() == str(os.getpid())
        d.lock()  # idempotent on the holder
    finally:
        d.unlock()
    assert not d.locked
    d.unlock()  # idempotent too


def test_second_datadir_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with DataDir(tmp_path) as first:
        with pytest.raises(DataDirLocked) as info:
            DataDir(tmp_path).lock()
        assert info.value.pid == os.getpid()
        assert str(tmp_path) in str(info.value) and f"process {os.getpid()}" in str(info.value)
        assert first.locked  # the refused attempt did not release ours
        with pytest.raises(DataDirLocked):
            DataDir(tmp_path).lock()
    DataDir(tmp_path).lock()  # free again once released (the test's object is dropped with its fd)


def test_second_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line == "locked\n", holder.stderr.read() if holder.stderr else line
        with pytest.raises(DataDirLocked) as info:
            DataDir(tmp_path).lock()
        assert info.value.pid == holder.pid
        message = str(info.value)
        assert str(tmp_path) in message and str(holder.pid) in message
    finally:
        holder.kill()  # by its PID: SIGKILL, no chance to unlock -- the kernel must drop the flock
        holder.wait(10)
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
    d = DataDir(tmp_path)
    d.lock()  # a dead holder never leaves a stale lock
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    d.unlock()


def test_lock_on_an_unusable_path_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(DataDirError, match=str(blocker)):
        DataDir(blocker / "data").lock()


# ---------------------------------------------------------------------- node ID


def test_node_id_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    first = d.node_id()
    assert str(uuid.UUID(first)) == first
    path = tmp_path / NODE_ID_FILE
    assert path.read_text() == first
    assert mode_of(path) == 0o600
    assert d.node_id() == first
    assert DataDir(tmp_path).node_id() == first


def test_node_id_is_trimmed_and_lower_cased(tmp_path: Path) -> None:
    (tmp_path / NODE_ID_FILE).write_text("  40E4A748-2192-161A-0510-9BF59FE950B5\n")
    assert DataDir(tmp_path).node_id() == "40e4a748-2192-161a-0510-9bf59fe950b5"


@pytest.mark.parametrize(
    "content",
    ["", "not-a-uuid", "40e4a748219216 1a05109bf59fe950b5", "{40e4a748-2192-161a-0510-9bf59fe950b5}",
     "40e4a7482192161a05109bf59fe950b5"],
)  # fmt: skip
def test_bad_node_id_names_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / NODE_ID_FILE).write_text(content)
    with pytest.raises(DataDirError) as info:
        DataDir(tmp_path).node_id()
    assert str(tmp_path / NODE_ID_FILE) in str(info.value) and "UUID" in str(info.value)
    assert (tmp_path / NODE_ID_FILE).read_text() == content  # never overwritten


def test_parse_node_id() -> None:
    assert parse_node_id(" AB0C0000-0000-0000-0000-000000000000 ", "-node-id") == "ab0c0000-0000-0000-0000-000000000000"
    with pytest.raises(DataDirError, match="-node-id"):
        parse_node_id("nope", "-node-id")


# ---------------------------------------------------------------------- rejoin state


def test_peers_round_trip(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    assert d.read_peers() == []
    d.write_peers(["10.0.0.2:8301", "10.0.0.1:8301", "10.0.0.2:8301"])
    assert d.read_peers() == ["10.0.0.1:8301", "10.0.0.2:8301"]
    path = tmp_path / "serf" / "peers.json"
    assert json.loads(path.read_text()) == {"peers": ["10.0.0.1:8301", "10.0.0.2:8301"]}
    assert mode_of(path) == 0o600
    d.write_peers([])
    assert d.read_peers() == []


@pytest.mark.parametrize("content", ["{", "[]", '{"peers": "10.0.0.1:8301"}', '{"peers": [1]}', "{}"])
def test_damaged_peers_file_is_ignored(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "serf").mkdir()
    (tmp_path / "serf" / "peers.json").write_text(content)
    assert DataDir(tmp_path).read_peers() == []
    assert "peers.json" in caplog.text


def test_left_marker(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    assert not d.left()
    d.mark_left(True)
    assert d.left() and DataDir(tmp_path).left()
    d.mark_left(True)
    d.mark_left(False)
    assert not d.left()
    d.mark_left(False)  # nothing to remove: fine


# ---------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    target = d.atomic_write("a/b/state", b"one")
    assert target == tmp_path / "a" / "b" / "state"
    assert target.read_bytes() == b"one" and mode_of(target) == 0o600
    d.atomic_write("a/b/state", b"two", mode=0o644)
    assert target.read_bytes() == b"two" and mode_of(target) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["state"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = DataDir(tmp_path)
    target = d.atomic_write("state", b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        d.atomic_write("state", b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


@pytest.mark.parametrize("relpath", ["/etc/passwd", "../escape", "a/../../escape", ""])
def test_atomic_write_stays_inside_the_data_dir(tmp_path: Path, relpath: str) -> None:
    with pytest.raises(ValueError):
        DataDir(tmp_path / "d").atomic_write(relpath, b"x")
