"""agent.server.records: the CRC-framed record format, as pure functions over bytes (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.server import records
from agent.server.payloads import (
    PayloadError,
    entry_from_bytes,
    entry_to_bytes,
    hard_state_from_bytes,
    hard_state_to_bytes,
    snapshot_from_bytes,
    snapshot_to_bytes,
    snapshot_to_parts,
)
from protocol.raft.types import ConfState, Entry, EntryKind, HardState, Server, Snapshot, SnapshotMeta, Suffrage

payload_lists = st.lists(st.binary(max_size=64), min_size=1, max_size=8)


def encode_all(payloads: list[bytes]) -> tuple[bytes, list[int]]:
    buf, offsets = b"", []
    for p in payloads:
        offsets.append(len(buf))
        buf += records.encode(p)
    return buf, offsets


@given(payload_lists)
def test_scan_returns_what_was_encoded(payloads: list[bytes]) -> None:
    buf, offsets = encode_all(payloads)
    scanned = records.scan(buf, tail=True)
    assert [r.payload for r in scanned.records] == payloads
    assert [r.offset for r in scanned.records] == offsets
    assert scanned.valid_end == len(buf) and scanned.torn is None


@given(payload_lists, st.data())
def test_a_cut_anywhere_in_the_last_record_is_a_torn_tail(payloads: list[bytes], data: st.DataObject) -> None:
    buf, offsets = encode_all(payloads)
    cut = data.draw(st.integers(offsets[-1] + 1, len(buf) - 1))
    filler = data.draw(st.sampled_from([b"", b"\0" * 64]))  # a file extended by the crash reads as zeros
    # zeros that put back exactly the zero bytes the cut took leave the record whole: no cut at all
    assume(not (buf[:cut] + filler).startswith(buf))
    scanned = records.scan(buf[:cut] + filler, tail=True)
    assert [r.payload for r in scanned.records] == payloads[:-1]
    assert scanned.valid_end == offsets[-1]
    assert scanned.torn is not None and scanned.torn.offset == offsets[-1]


@given(payload_lists, st.data())
def test_a_flipped_byte_in_the_last_record_is_cut_in_the_tail_file(payloads: list[bytes], data: st.DataObject) -> None:
    buf, offsets = encode_all(payloads)
    at = data.draw(st.integers(offsets[-1], len(buf) - 1))
    bad = bytearray(buf)
    bad[at] ^= data.draw(st.integers(1, 255))
    scanned = records.scan(bytes(bad), tail=True)
    assert [r.payload for r in scanned.records] == payloads[:-1]
    with pytest.raises(records.RecordError) as info:  # a file that is not the tail is never cut
        records.scan(bytes(bad), tail=False)
    assert info.value.offset == offsets[-1]


@given(st.lists(st.binary(max_size=64), min_size=2, max_size=8), st.data())
def test_a_flipped_byte_before_the_last_record_is_an_error_at_its_offset(
    payloads: list[bytes], data: st.DataObject
) -> None:
    buf, offsets = encode_all(payloads)
    victim = data.draw(st.integers(0, len(payloads) - 2))
    at = data.draw(st.integers(offsets[victim], offsets[victim + 1] - 1))
    bad = bytearray(buf)
    bad[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(records.RecordError) as info:
        records.scan(bytes(bad), tail=True)
    assert info.value.offset == offsets[victim]
    assert "valid records follow" in info.value.reason


def test_reasons_say_what_is_wrong() -> None:
    rec = records.encode(b"hello")
    with pytest.raises(records.RecordError, match="short header"):
        records.read_at(rec[:5], 0)
    with pytest.raises(records.RecordError, match="short record"):
        records.read_at(rec[:-1], 0)
    with pytest.raises(records.RecordError, match="magic"):
        records.read_at(b"XXXX" + rec[4:], 0)
    with pytest.raises(records.RecordError, match="checksum"):
        records.read_at(rec[:-1] + b"!", 0)


entries = st.builds(
    Entry, st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1), st.sampled_from(EntryKind), st.binary(max_size=32)
)


@given(entries)
def test_entry_payload_round_trip(entry: Entry) -> None:
    assert entry_from_bytes(entry_to_bytes(entry)) == entry


@given(st.builds(HardState, st.integers(0, 2**63), st.text(max_size=8), st.integers(0, 2**63)))
def test_hard_state_payload_round_trip(hs: HardState) -> None:
    assert hard_state_from_bytes(hard_state_to_bytes(hs)) == hs


def test_snapshot_payload_round_trip_and_bad_payloads() -> None:
    conf = ConfState((Server("b", "127.0.0.1:8300"), Server("a", "127.0.0.2:8300", Suffrage.NONVOTER)))
    snap = Snapshot(SnapshotMeta(7, 3, conf), b"state")
    assert snapshot_from_bytes(snapshot_to_bytes(snap)) == snap
    with pytest.raises(PayloadError, match="not msgpack"):
        entry_from_bytes(b"\xc1")
    with pytest.raises(PayloadError, match="entry"):
        entry_from_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(PayloadError, match="hard state"):
        hard_state_from_bytes(b"\x92\x01\x02")


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 20])
def test_a_snapshot_written_in_pieces_is_the_bytes_of_its_single_record(size: int) -> None:
    """A large snapshot is written as (record header, payload head, data) without joining them: the same bytes
    as one record of snapshot_to_bytes, at every msgpack bin length form."""
    conf = ConfState((Server("a", "127.0.0.1:8300"),))
    snap = Snapshot(SnapshotMeta(7, 3, conf), bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    head, data = snapshot_to_parts(snap)
    assert data is snap.data and head + data == snapshot_to_bytes(snap)
    pieces = records.encode_parts((head, data))
    assert b"".join(pieces) == records.encode(snapshot_to_bytes(snap))
    assert snapshot_from_bytes(records.read_at(b"".join(pieces), 0).payload) == snap
