"""agent.server.hardstate: two slots written in turn; a torn write keeps the state before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.server.errors import StoreCorrupt
from agent.server.hardstate import FILE_SIZE, SLOT_SIZE, HardStateFile, decode_slot, encode_slot
from protocol.raft.types import HardState

VOTE = "9a3f8e2c-1b7d-4e5f-8a6b-0c1d2e3f4a5b"  # a server id is a UUID


def written(path: Path, *states: HardState) -> HardStateFile:
    f = HardStateFile(path)
    f.load()
    for hs in states:
        f.write(hs)
    return f


def test_slots_alternate_and_the_newest_wins(tmp_path: Path) -> None:
    path = tmp_path / "hardstate"
    assert HardStateFile(path).load() == HardState()
    f = written(path, HardState(1, VOTE, 0), HardState(2, "", 5), HardState(2, "", 9))
    f.close()
    buf = path.read_bytes()
    assert len(buf) == FILE_SIZE
    assert decode_slot(buf[:SLOT_SIZE]) == (3, HardState(2, "", 9))  # writes 1 and 3
    assert decode_slot(buf[SLOT_SIZE:]) == (2, HardState(2, "", 5))  # write 2
    g = HardStateFile(path)
    assert g.load() == HardState(2, "", 9)
    g.write(HardState(3, VOTE, 9))  # goes to the slot of the older state
    g.close()
    assert decode_slot(path.read_bytes()[SLOT_SIZE:]) == (4, HardState(3, VOTE, 9))


def test_a_write_torn_at_any_byte_keeps_the_state_before_it(tmp_path: Path) -> None:
    path = tmp_path / "hardstate"
    old, new = HardState(4, VOTE, 10), HardState(5, "", 10)
    written(path, HardState(3, VOTE, 7), old).close()
    before = path.read_bytes()  # the next write goes to slot 0 (write 3)
    slot = encode_slot(3, new)
    record_len = len(slot.rstrip(b"\0"))
    for cut in range(record_len + 1):
        # the sectors of slot 0 hold the new bytes up to `cut`, the old ones after (or zeros)
        for rest in (before[cut:SLOT_SIZE], b"\0" * (SLOT_SIZE - cut)):
            path.write_bytes(slot[:cut] + rest + before[SLOT_SIZE:])
            got = HardStateFile(path).load()
            assert got == (new if cut == record_len else old), cut


def test_a_torn_first_write_is_no_state_and_damage_to_both_slots_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "hardstate"
    path.write_bytes(encode_slot(1, HardState(1, VOTE, 0))[:20] + b"\0" * (FILE_SIZE - 20))
    assert HardStateFile(path).load() == HardState()
    written(path, HardState(1, VOTE, 0), HardState(2, VOTE, 0)).close()
    bad = bytearray(path.read_bytes())
    bad[5] ^= 1
    bad[SLOT_SIZE + 5] ^= 1
    path.write_bytes(bytes(bad))
    with pytest.raises(StoreCorrupt, match=r"hardstate at offset 0: no valid hard state: slot 0 .* slot 1 at offset"):
        HardStateFile(path).load()
    path.write_bytes(bytes(bad[:100]))
    with pytest.raises(StoreCorrupt, match=f"100 bytes where {FILE_SIZE} were expected"):
        HardStateFile(path).load()


def test_an_oversize_vote_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_slot(1, HardState(1, "x" * SLOT_SIZE, 0))
