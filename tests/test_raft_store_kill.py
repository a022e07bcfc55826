"""kill -9 of a real process writing the Raft log: every index it acknowledged (printed after sync) survives.

The child processes are started here and stopped by their PID (Popen.kill), never by name.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.server.raftstore import RaftStore

REPO = Path(__file__).resolve().parent.parent

def _writer(setup: str, snapshot_step: str) -> str:
    """A child that appends, syncs and prints each acknowledged index forever; ``snapshot_step`` (indented for the
    loop's body) snapshots now and then, ``setup`` runs before the loop."""
    return f"""
import hashlib, sys
from agent.server.raftstore import RaftStore
from protocol.raft.types import ConfState, Entry, HardState

def data_for(i):
    return hashlib.sha256(b"%d" % i).digest() * (1 + i % 7)

store = RaftStore.open(sys.argv[1], "kill-test", segment_bytes=4096)
i = store.last_index()
{setup}
while True:
    batch = [Entry(j, 1, data=data_for(j)) for j in range(i + 1, i + 1 + (i % 3) + 1)]
    store.append(batch)
    i = batch[-1].index
    store.set_hard_state(HardState(1, "me", i))
    store.sync()
{snapshot_step}
    print(i, flush=True)
"""


WRITER = _writer("", """
    if i % 40 < 3 and i > 20:
        store.create_snapshot(i - 10, ConfState(), b"state@%d" % (i - 10))
        store.compact(i - 10)
""")


#: The driver's way: snapshot files written by a thread of their own while the main thread appends and syncs,
#: adopted and compacted by the main thread between batches.
WRITER_BESIDE = _writer("""
import threading
from protocol.raft.types import Snapshot
pending = None
""", """
    if pending is not None and not pending[0].is_alive():
        if store.adopt_snapshot(pending[1]):
            store.compact(pending[1].meta.index)
        pending = None
    if pending is None and i % 40 < 3 and i > 20:
        snap = Snapshot(store.snapshot_meta(i - 10, ConfState()), b"state@%d;" % (i - 10) * 20000)  # ~200 KB
        pending = (threading.Thread(target=store.write_snapshot_file, args=(snap, store.snapshot().meta.index)),
                   snap)
        pending[0].start()
""")


def data_for(i: int) -> bytes:
    return hashlib.sha256(b"%d" % i).digest() * (1 + i % 7)


@pytest.mark.parametrize("writer", [WRITER, WRITER_BESIDE], ids=["inline", "beside"])
def test_acknowledged_entries_survive_kill_9(tmp_path: Path, writer: str) -> None:
    rng = random.Random(20261202)
    acked = snapshotted = 0
    for _round in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", writer, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            target = rng.randint(1, 60)
            deadline = time.monotonic() + 30
            for _ in range(target):
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else ""
                acked = max(acked, int(line))
                assert time.monotonic() < deadline
            time.sleep(rng.random() * 0.02)  # land the kill anywhere in the write/sync cycle
        finally:
            child.kill()
            child.wait(timeout=10)
        for line in child.stdout.read().splitlines():  # printed before the kill: acknowledged too
            acked = max(acked, int(line))

        store = RaftStore.open(tmp_path, "kill-test")
        try:
            snap_index = store.snapshot().meta.index
            snapshotted = max(snapshotted, snap_index)
            if snap_index:
                assert store.snapshot().data in (b"state@%d" % snap_index, b"state@%d;" % snap_index * 20000)
            assert store.last_index() >= acked, f"acknowledged {acked}, reopened log ends at {store.last_index()}"
            held = store.entries(store.first_index(), store.last_index() + 1)
            assert [e.data for e in held] == [data_for(e.index) for e in held]
            hard = store.initial_state()[0]
            # term and vote are durable at every sync; the commit index alone is written lazily (harmless to
            # lose, relearned), and never points past the log
            assert (hard.term, hard.vote) == (1, "me") and hard.commit <= store.last_index()
        finally:
            store.close()
    assert acked > 8 and snapshotted  # the rounds did write, and snapshots were taken
