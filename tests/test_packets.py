"""protocol.packets: compound, CRC, label, LZW compression and stream framing, against captured serf bytes."""

from __future__ import annotations

import contextlib
import json
import pathlib
import random
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import (
    Ack,
    Alive,
    DecodeError,
    Incomplete,
    Nack,
    Ping,
    PushPull,
    User,
    decode,
    decode_stream,
    encode,
    packb,
)
from protocol.config import Config
from protocol.node import Datagram, Node
from protocol.packets import (
    add_crc,
    add_label,
    check_crc,
    compress,
    decompress_payload,
    lzw_compress,
    lzw_decompress,
    make_compound,
    read_stream,
    split_compound,
    strip_label,
    strip_stream_label,
    unwrap_packet,
    unwrap_packet_info,
    unwrap_stream,
    wrap_packet,
    wrap_stream,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())["records"]


def records(name: str, proto: str) -> list[bytes]:
    return [bytes.fromhex(r["hex"]) for r in load(name) if r["proto"] == proto]


# ---------------------------------------------------------------------------------------------------------
# compound


def test_compound_layout() -> None:
    out = make_compound([b"\x0babc", b"\x08"])
    assert out.hex() == "07020004" + "0001" + "0b616263" + "08"
    assert split_compound(out) == ([b"\x0babc", b"\x08"], 0)
    assert make_compound([]) == b"\x07\x00"


def test_compound_truncated_parts_counted() -> None:
    out = make_compound([b"\x0babc", b"\x08xyz", b"\x08"])
    assert split_compound(out[:-3]) == ([b"\x0babc"], 2)
    info = unwrap_packet_info(out[:-1])
    assert info.messages == (b"\x0babc", b"\x08xyz") and info.truncated == 1 and info.compound


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\x07", "missing length byte"), (b"\x07\x02\x00", "truncated length table"), (b"\x08", "not a compound")],
)
def test_compound_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        split_compound(data)


def test_compound_limits() -> None:
    with pytest.raises(ValueError, match="255"):
        make_compound([b"\x08"] * 256)
    with pytest.raises(ValueError, match="65535"):
        make_compound([b"\x08" * 70000])


# ---------------------------------------------------------------------------------------------------------
# CRC and label


def test_crc() -> None:
    msg = encode(Nack(5))
    out = add_crc(msg)
    assert out[0] == 12 and out[1:5] == zlib.crc32(msg).to_bytes(4, "big") and out[5:] == msg
    assert check_crc(out) == msg
    bad = out[:-1] + bytes([out[-1] ^ 1])
    with pytest.raises(DecodeError, match="invalid checksum"):
        check_crc(bad)
    with pytest.raises(DecodeError, match="invalid checksum"):
        unwrap_packet(bad)
    with pytest.raises(DecodeError, match="truncated"):
        check_crc(b"\x0c\x00")


def test_captured_crc_packet() -> None:
    # a Dead(s3, from s3) gossip from s3, CRC-wrapped (peer speaks protocol 5)
    data = bytes.fromhex("0ccd2293450583a446726f6da27333ab496e6361726e6174696f6e01a44e6f6465a27333")
    assert data in records("serf_basic_plain.json", "udp")
    assert check_crc(data) == data[5:]
    assert wrap_packet([data[5:]], crc=True) == data


def test_a_cut_label_header_is_malformed_in_a_datagram_and_incomplete_in_a_stream() -> None:
    for cut in (b"\xf4", b"\xf4\x03d", b"\xf4\x03dc"):
        with pytest.raises(DecodeError, match="truncated"):
            strip_label(cut)
        with pytest.raises(Incomplete):
            strip_stream_label(cut)
    for read in (strip_label, strip_stream_label):
        with pytest.raises(DecodeError, match="cannot be empty"):
            read(b"\xf4\x00\x08")
    assert strip_label(b"\xf4\x03dc1\x08") == ("dc1", b"\x08")
    assert strip_stream_label(b"\xf4\x03dc1\x08", "dc1") == ("dc1", 5)


def test_label() -> None:
    out = add_label(b"\x08hi", "dc1")
    assert out == b"\xf4\x03dc1\x08hi"
    assert strip_label(out) == ("dc1", b"\x08hi")
    assert strip_label(b"\x08hi") == ("", b"\x08hi")
    assert add_label(b"\x08hi", "") == b"\x08hi"
    assert unwrap_packet(out, expected_label="dc1") == [b"\x08hi"]
    with pytest.raises(DecodeError, match="unacceptable label 'dc1'"):
        unwrap_packet(out)
    with pytest.raises(DecodeError, match="unacceptable label ''"):
        unwrap_packet(b"\x08hi", expected_label="dc1")
    with pytest.raises(DecodeError, match="cannot be empty"):
        strip_label(b"\xf4\x00\x08")
    with pytest.raises(DecodeError, match="truncated"):
        strip_label(b"\xf4\x05ab")
    with pytest.raises(ValueError, match="255"):
        add_label(b"", "x" * 256)


def test_encrypted_packet() -> None:
    with pytest.raises(DecodeError, match="encrypted packet but no keyring"):
        unwrap_packet(b"\x0a\x01" + bytes(40))
    with pytest.raises(DecodeError, match="remote state is encrypted and encryption is not configured"):
        unwrap_stream(b"\x0a\x01" + bytes(40))


# ---------------------------------------------------------------------------------------------------------
# LZW


def test_lzw_small_known_vectors() -> None:
    # Go >= 1.17 writes a clear code first: empty input is clear (256) then eof (257), 9 bits each, LSB first.
    assert lzw_compress(b"") == bytes([0x00, 0x03, 0x02])
    assert lzw_decompress(bytes([0x00, 0x03, 0x02])) == b""
    assert lzw_decompress(lzw_compress(b"", clear_first=False)) == b""
    assert lzw_decompress(lzw_compress(b"TOBEORNOTTOBEORTOBEORNOT")) == b"TOBEORNOTTOBEORTOBEORNOT"


def test_lzw_against_go_captures() -> None:
    # every compress message serf sent, re-compressed by us, is byte-identical to Go's
    count = 0
    for name in ("serf_basic_compressed.json", "serf_probe.json"):
        for proto in ("udp", "tcp"):
            for data in records(name, proto):
                stack = [data]
                while stack:
                    x = stack.pop()
                    if x[:1] == b"\x0c":
                        stack.append(check_crc(x))
                    elif x[:1] == b"\x07":
                        stack.extend(split_compound(x)[0])
                    elif x[:1] == b"\x09" and b"\xa4Algo\x00" in x[:8]:
                        inner = decompress_payload(x)
                        assert compress(inner) == x[: len(compress(inner))]
                        count += 1
    assert count > 30


def test_lzw_large_go_stream_with_table_resets() -> None:
    big = json.loads((FIXTURES / "serf_big_pushpull.json").read_text())
    data = bytes.fromhex(big["second_reply"])
    inner = unwrap_stream(data)
    assert len(data) == 9578 and len(inner) == 16615
    assert compress(inner) == data  # Go's Writer, code width growth and table resets included
    msg, used = read_stream(data)
    assert used == len(data) and isinstance(msg, PushPull)
    assert len(msg.nodes) == 41 and {n.name for n in msg.nodes} >= {"s1", "fake00", "fake39"}


@given(st.binary(max_size=3000))
@settings(max_examples=200)
def test_lzw_round_trip(data: bytes) -> None:
    assert lzw_decompress(lzw_compress(data)) == data
    assert lzw_decompress(lzw_compress(data, clear_first=False)) == data


@pytest.mark.parametrize("size", [0, 1, 254, 255, 256, 511, 4093, 4094, 4095, 4096, 20000, 100000])
def test_lzw_round_trip_sizes(size: int) -> None:
    rng = random.Random(size)
    for data in (bytes(rng.randrange(256) for _ in range(size)), b"a" * size, bytes(range(256)) * (size // 256)):
        assert lzw_decompress(lzw_compress(data)) == data


def test_lzw_errors() -> None:
    with pytest.raises(DecodeError, match="no eof"):
        lzw_decompress(lzw_compress(b"hello world")[:-2])
    with pytest.raises(DecodeError, match="no eof"):
        lzw_decompress(b"")
    with pytest.raises(DecodeError, match="invalid code"):
        lzw_decompress(bytes([0xFF, 0xFF, 0xFF]))
    with pytest.raises(DecodeError, match="exceeds"):
        lzw_decompress(lzw_compress(b"a" * 5000), max_size=1000)


def test_compress_message() -> None:
    out = compress(b"\x08hello")
    assert out[:12] == b"\x09\x82\xa4Algo\x00\xa3Buf"
    assert decompress_payload(out) == b"\x08hello" == decompress_payload(out[1:])
    with pytest.raises(DecodeError, match="unknown algorithm 1"):
        decompress_payload(packb({"Algo": 1, "Buf": b""}))
    with pytest.raises(DecodeError, match="Buf"):
        decompress_payload(packb({"Algo": 0, "Buf": 5}))
    with pytest.raises(DecodeError, match="truncated"):
        decompress_payload(out[:6])


# ---------------------------------------------------------------------------------------------------------
# unwrap / wrap packets


def test_unwrap_captured_compressed_compound() -> None:
    # s3 -> s1 after joining: CRC( compress( compound(Alive s1, Alive s2, Alive s3, User join) ) )
    pkts = [p for p in records("serf_basic_compressed.json", "udp") if p[5:6] == b"\x09"]
    assert pkts
    info = unwrap_packet_info(pkts[0])
    assert info.crc and info.compressed and info.compound and info.label == ""
    msgs = [decode(m) for m in info.messages]
    assert [type(m).__name__ for m in msgs] == ["Alive", "Alive", "Alive", "User"]
    assert {m.node for m in msgs if isinstance(m, Alive)} == {"s1", "s2", "s3"}
    # wrap_packet rebuilds Go's exact bytes
    assert wrap_packet(list(info.messages), crc=True, compress=True) == pkts[0]


def test_wrap_packet_reproduces_every_capture() -> None:
    n = 0
    for name in ("serf_basic_compressed.json", "serf_basic_plain.json", "serf_probe.json"):
        for pkt in records(name, "udp"):
            info = unwrap_packet_info(pkt)
            assert wrap_packet(list(info.messages), crc=info.crc, compress=info.compressed, limit=65535) == pkt
            n += 1
    assert n > 300


def test_wrap_packet_options() -> None:
    msgs = [encode(Ping(1, "a")), encode(Nack(2))]
    plain = wrap_packet(msgs, crc=False)
    assert plain == make_compound(msgs)
    framed = wrap_packet(msgs, crc=True, label="lbl")
    assert framed.startswith(b"\xf4\x03lbl\x0c")
    assert unwrap_packet(framed, expected_label="lbl") == msgs
    # compression is dropped when it does not help
    assert wrap_packet([b"\x08x"], crc=False, compress=True) == b"\x08x"
    big = [encode(User(b"z" * 300))]
    assert wrap_packet(big, crc=False, compress=True)[:1] == b"\x09"
    with pytest.raises(ValueError, match="exceeds the limit"):
        wrap_packet([encode(User(bytes(1500)))], crc=False)
    with pytest.raises(ValueError):
        wrap_packet([], crc=False)


def test_compress_min_sends_short_payloads_plain_and_long_ones_compressed() -> None:
    """Config.compress_min_bytes: a payload under the bound goes plain without trying LZW, even one LZW would
    shrink; at or past it, compression is kept when it shrinks, dropped when it does not (memberlist's rule)."""
    short = [encode(User(b"z" * 150))]  # 153 bytes, and LZW would shrink it
    assert len(compress(short[0])) < len(short[0])
    assert wrap_packet(short, crc=False, compress=True, compress_min=200) == short[0]
    assert wrap_packet(short, crc=False, compress=True)[:1] == b"\x09"  # compress_min=0: memberlist's every packet
    long = [encode(User(b"z" * 300))]
    packed = wrap_packet(long, crc=True, compress=True, compress_min=200)
    assert packed[5:6] == b"\x09" and len(packed) < len(long[0])
    assert unwrap_packet(packed) == long
    rng = random.Random(3)
    noise = [encode(User(bytes(rng.randrange(256) for _ in range(400))))]  # random bytes: LZW cannot shrink them
    assert wrap_packet(noise, crc=False, compress=True, compress_min=200) == noise[0]


@pytest.mark.parametrize("compress_packets", [False, True], ids=["default", "compress_packets"])
def test_a_node_sends_pings_plain_and_large_gossip_as_configured(compress_packets: bool) -> None:
    """Config.compress_packets off (the default): every UDP packet leaves plain, a gossip packet LZW would shrink
    too (its push/pull streams are still compressed). On: a ping's ack (under compress_min_bytes) still leaves
    plain, and a packet of broadcasts that LZW shrinks leaves compressed, as memberlist sends it."""
    cfg = Config.lan(compress_packets=compress_packets)
    assert cfg.enable_compression and cfg.compress_min_bytes == 200
    assert Config.lan().compress_packets is False
    node = Node(cfg, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    node.handle_datagram(0.1, ("10.0.0.2", 7946), encode(Ping(5, "a", b"\x0a\x00\x00\x02", 7946, "b")))
    ack = node.poll_transmit()
    assert isinstance(ack, Datagram)
    info = unwrap_packet_info(ack.data)
    assert not info.compressed and decode(info.messages[0]) == Ack(5, b"")
    for i in range(12):  # alive messages of members with long, similar names: a broadcast queue LZW shrinks
        alive = Alive(1, f"member-with-a-long-name-{i:02d}", bytes([10, 0, 1, i]), 7946, b"", bytes((1, 5, 2, 2, 5, 4)))
        node.handle_datagram(0.2, ("10.0.0.2", 7946), encode(alive))
    node.handle_timeout(1.0)  # a gossip tick: the queued alives go out piggybacked
    sent = []
    while (tx := node.poll_transmit()) is not None:
        if isinstance(tx, Datagram):
            sent.append(unwrap_packet_info(tx.data))
    big = [i for i in sent if sum(len(m) for m in i.messages) >= cfg.compress_min_bytes]
    assert big and all(i.compressed == compress_packets for i in big)
    assert node._core.wrap_stream(encode(User(b"z" * 600)))[:1] == b"\x09"  # streams: compressed either way


def test_unwrap_nested_compound_in_compressed() -> None:
    inner = make_compound([encode(Nack(1)), compress(make_compound([encode(Nack(2)), encode(Nack(3))]))])
    assert [decode(m) for m in unwrap_packet(add_crc(inner))] == [Nack(1), Nack(2), Nack(3)]


def test_unwrap_errors() -> None:
    with pytest.raises(DecodeError, match="empty packet"):
        unwrap_packet(b"")
    with pytest.raises(DecodeError, match="empty message"):
        unwrap_packet(make_compound([b""]))
    deep = encode(Nack(1))
    for _ in range(12):
        deep = make_compound([deep])
    with pytest.raises(DecodeError, match="nested"):
        unwrap_packet(deep)


# ---------------------------------------------------------------------------------------------------------
# streams


def test_read_stream_incremental_captured() -> None:
    for name in ("serf_basic_compressed.json", "serf_basic_plain.json"):
        for data in records(name, "tcp"):
            for cut in range(0, len(data), 7):
                with pytest.raises(Incomplete):
                    read_stream(data[:cut])
            msg, used = read_stream(data)
            assert used == len(data) and isinstance(msg, PushPull)


def test_stream_label_and_compression() -> None:
    msg = encode(Ack(4, b"p"))
    for label in ("", "dc1"):
        for comp in (False, True):
            data = wrap_stream(msg, label=label, compress=comp)
            assert read_stream(data, expected_label=label) == (Ack(4, b"p"), len(data))
            assert decode_stream(unwrap_stream(data, expected_label=label))[0] == Ack(4, b"p")
            for cut in range(len(data)):
                with pytest.raises(Incomplete):
                    read_stream(data[:cut], expected_label=label)
    assert wrap_stream(msg, label="dc1")[:5] == b"\xf4\x03dc1"
    with pytest.raises(DecodeError, match="unacceptable label 'dc1'"):
        read_stream(wrap_stream(msg, label="dc1"))
    with pytest.raises(DecodeError, match="unacceptable label ''"):
        read_stream(msg, expected_label="dc1")
    assert strip_stream_label(b"\xf4\x02ab\x00", "ab") == ("ab", 4)
    with pytest.raises(Incomplete):
        strip_stream_label(b"\xf4")
    with pytest.raises(DecodeError, match="cannot be empty"):
        strip_stream_label(b"\xf4\x00")


def test_compressed_stream_with_truncated_inner_message() -> None:
    bad = compress(encode(Ack(4, b"payload"))[:-3])
    with pytest.raises(DecodeError, match="truncated"):
        read_stream(bad)


# ---------------------------------------------------------------------------------------------------------
# fuzz


@given(st.binary(max_size=300), st.sampled_from(["", "dc1"]))
@settings(max_examples=500)
def test_fuzz_random_packets_and_streams(data: bytes, label: str) -> None:
    try:
        for part in unwrap_packet(data, expected_label=label):
            decode(part)
    except DecodeError:
        pass
    with contextlib.suppress(DecodeError, Incomplete):
        read_stream(data, expected_label=label)
    with contextlib.suppress(DecodeError):
        lzw_decompress(data)


@given(st.data())
@settings(max_examples=400)
def test_fuzz_mutated_captured_framing(data: st.DataObject) -> None:
    pool = records("serf_basic_compressed.json", "udp") + records("serf_basic_compressed.json", "tcp")
    raw = bytearray(data.draw(st.sampled_from(pool)))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(1, len(raw)))]
    try:
        for part in unwrap_packet(bytes(raw)):
            decode(part)
    except DecodeError:
        pass
    with contextlib.suppress(DecodeError, Incomplete):
        read_stream(bytes(raw))


def test_a_degraded_node_sends_plain_until_healthy() -> None:
    """Config.compress_when_degraded off (the default): while Lifeguard's health score is above 0 a node sends
    even large, compressible packets and push/pull streams plain; healthy again, it compresses them."""
    node = Node(Config.lan(compress_packets=True), name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    big = [encode(User(b"z" * 600))]
    core = node._core
    assert core.compressing
    core.raw_send(("10.0.0.2", 7946), big, None)
    assert unwrap_packet_info(core.transmits.pop().data).compressed
    core.awareness.apply_delta(1)
    assert not core.compressing
    core.raw_send(("10.0.0.2", 7946), big, None)
    sent = core.transmits.pop().data
    assert sent == big[0] and not unwrap_packet_info(sent).compressed
    assert core.wrap_stream(big[0]) == big[0]
    core.awareness.apply_delta(-1)
    assert core.compressing and core.wrap_stream(big[0])[:1] == b"\x09"
    always = Node(Config.lan(compress_when_degraded=True), name="b", addr=("10.0.0.3", 7946),
                  rng=random.Random(1), now=0.0)
    always._core.awareness.apply_delta(3)
    assert always._core.compressing
