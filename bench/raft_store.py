"""How fast the Raft log persists on this machine: appends + sync() per batch, on a temp dir (or --dir).

    .venv/bin/python bench/raft_store.py [--dir PATH] [--seconds 3]

Prints one row per (batch size, entry size): batches/s (each one an fsync'ed sync), entries/s, MB/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from agent.server.raftstore import RaftStore
from protocol.raft.types import Entry, HardState


def run(path: Path, batch: int, size: int, seconds: float) -> tuple[float, float, float]:
    store = RaftStore.open(path, "bench")
    index = store.last_index()
    data = b"x" * size
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        entries = [Entry(index + i + 1, 1, data=data) for i in range(batch)]
        store.append(entries)
        index += batch
        store.set_hard_state(HardState(1, "a", index))
        store.sync()
        n += 1
    elapsed = time.perf_counter() - start
    store.close()
    return n / elapsed, n * batch / elapsed, n * batch * size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print("| batch | entry bytes | syncs/s | entries/s | MB/s |")
    print("|---|---|---|---|---|")
    for batch, size in [(1, 100), (16, 100), (128, 100), (16, 4096)]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            syncs, entries, mbs = run(Path(tmp), batch, size, args.seconds)
        print(f"| {batch} | {size} | {syncs:.0f} | {entries:.0f} | {mbs:.1f} |")


if __name__ == "__main__":
    main()
