"""protocol.codec: the go-msgpack dialect and memberlist messages, checked against bytes captured from serf.

Fixtures (tests/fixtures/*.json) were captured on loopback by bench/capture/capture.sh and capture2.sh from the
Debian serf binary (serf 0.8.2-dev / memberlist 0.2.2 / go-msgpack 0.5.5); see docs/wire.md.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import struct
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import (
    Ack,
    Alive,
    Dead,
    DecodeError,
    ErrResp,
    Incomplete,
    IndirectPing,
    MessageType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
    UserStream,
    decode,
    decode_stream,
    decode_stream_value,
    encode,
    packb,
    unpackb,
)
from protocol.packets import read_stream, unwrap_packet
from protocol.serf_messages import decode_tags, encode_tags

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
VSN = bytes([1, 5, 2, 2, 5, 5])  # pmin 1, pmax 5, pcur 2, dmin 2, dmax 5, dcur 5 (serf protocol 5)
LO = {i: bytes([127, 0, 0, i]) for i in range(1, 10)}


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())["records"]


def udp_messages(name: str) -> list[tuple[dict[str, Any], codec.Message]]:
    out = []
    for rec in load(name):
        if rec["proto"] == "udp":
            for raw in unwrap_packet(bytes.fromhex(rec["hex"])):
                out.append((rec, decode(raw)))
    return out


def tcp_messages(name: str) -> list[tuple[dict[str, Any], codec.Message]]:
    out = []
    for rec in load(name):
        if rec["proto"] == "tcp":
            try:
                out.append((rec, read_stream(bytes.fromhex(rec["hex"]))[0]))
            except DecodeError:
                continue  # the deliberately bad compressMsg of probe.py
    return out


ALL_CAPTURES = ["serf_basic_compressed.json", "serf_basic_plain.json", "serf_probe.json"]

# ---------------------------------------------------------------------------------------------------------
# the dialect


def test_message_type_codes() -> None:
    assert [int(t) for t in MessageType] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 244]
    assert MessageType.HAS_CRC == 12 and MessageType.ERR == 13 and MessageType.HAS_LABEL == 244


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "a0"),
        (b"", "a0"),
        ("abc", "a3616263"),
        (b"abc", "a3616263"),
        ("x" * 31, "bf" + "78" * 31),
        (b"x" * 32, "da0020" + "78" * 32),  # raw16, never str8 0xd9 / bin8 0xc4
        ("x" * 255, "da00ff" + "78" * 255),
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (17946, "cd461a"),
        (65536, "ce00010000"),
        (1 << 32, "cf0000000100000000"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-129, "d1ff7f"),
        (True, "c3"),
        (False, "c2"),
        (None, "c0"),
        ({"a": 1}, "81a16101"),
        ([1, 2], "920102"),
    ],
)
def test_packb_go_msgpack_forms(value: Any, expected: str) -> None:
    assert packb(value).hex() == expected


def test_packb_raw32_for_large() -> None:
    out = packb(b"y" * 70000)
    assert out[:5] == b"\xdb" + struct.pack(">I", 70000)


def test_packb_non_utf8_string_round_trip() -> None:
    name = b"n\xffode".decode("utf-8", "surrogateescape")
    assert packb(name) == b"\xa5n\xffode"
    assert decode(encode(Ping(1, name))).node == name


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("d903616263", b"abc"),  # str8
        ("c403616263", b"abc"),  # bin8
        ("c50003616263", b"abc"),  # bin16
        ("c600000003616263", b"abc"),  # bin32
        ("da0003616263", b"abc"),  # raw16
        ("a3616263", b"abc"),
        ("cd0001", 1),  # non-minimal uint16
        ("d3ffffffffffffffff", -1),  # int64
        ("ca3fc00000", 1.5),  # float32
        ("dc00020102", (1, 2)),  # array16
        ("de0001a16101", {b"a": 1}),  # map16
    ],
)
def test_unpackb_accepts_every_form(data: str, expected: Any) -> None:
    assert unpackb(bytes.fromhex(data)) == expected


def test_unpackb_errors() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        unpackb(b"\xa5ab")
    with pytest.raises(DecodeError, match="trailing"):
        unpackb(b"\x01\x02")
    with pytest.raises(DecodeError, match="invalid msgpack"):
        unpackb(b"\xc1")  # never used


def test_decode_stream_value_offsets_and_incomplete() -> None:
    buf = packb({"UserMsgLen": 3}) + b"abc"
    value, off = decode_stream_value(buf, 0)
    assert value == {b"UserMsgLen": 3} and buf[off:] == b"abc"
    with pytest.raises(Incomplete):
        decode_stream_value(buf[:5], 0)
    with pytest.raises(Incomplete):
        decode_stream_value(buf, len(buf))


# ---------------------------------------------------------------------------------------------------------
# struct encoding rules


def test_struct_keys_sorted_by_name_and_omitempty() -> None:
    # go-msgpack 0.5 writes struct maps with keys in sorted order; omitempty fields vanish when zero.
    assert encode(Ping(77, "s1")).hex() == "0082a44e6f6465a27331a55365714e6f4d"
    full = encode(Ping(1, "s2", LO[1], 17946, "s1"))
    assert unpackb(full[1:]) == {
        b"Node": b"s2",
        b"SeqNo": 1,
        b"SourceAddr": LO[1],
        b"SourceNode": b"s1",
        b"SourcePort": 17946,
    }
    assert list(unpackb(full[1:])) == [b"Node", b"SeqNo", b"SourceAddr", b"SourceNode", b"SourcePort"]


def test_nil_byte_slice_is_nil() -> None:
    # memberlist's TCP ack has Payload nil: Go writes 0xc0, not an empty raw.
    assert encode(Ack(77)).hex() == "0282a75061796c6f6164c0a55365714e6f4d"
    assert encode(Ack(77, b"x")).hex() == "0282a75061796c6f6164a178a55365714e6f4d"


def test_decode_tolerates_missing_unknown_and_nil_fields() -> None:
    body = packb({"SeqNo": 5, "Future": [1, {"x": 2}], "Node": None})
    assert decode(b"\x00" + body) == Ping(5, "")
    assert decode(b"\x04" + packb({})) == Alive(0, "", b"", 0, b"", b"")
    assert decode(b"\x04\xc0") == Alive(0, "", b"", 0, b"", b"")


def test_decode_field_names_are_case_sensitive_like_go() -> None:
    # go-msgpack matches struct keys exactly; a "node" key is an unknown field and is skipped.
    assert decode(b"\x00" + packb({"SeqNo": 1, "node": "x"})) == Ping(1, "")


def test_decode_struct_from_array_form() -> None:
    # go-msgpack also decodes a struct from an array, fields in declaration order.
    assert decode(b"\x03" + packb([3, "n", "f"])) == Suspect(3, "n", "f")


def test_decode_accepts_bin_and_str8_for_fields() -> None:
    body = b"\x82" + b"\xa4Node" + b"\xd9\x02s1" + b"\xa5SeqNo" + b"\x07"
    assert decode(b"\x00" + body) == Ping(7, "s1")
    body = b"\x82" + b"\xa5SeqNo" + b"\x01" + b"\xa7Payload" + b"\xc4\x02hi"
    assert decode(b"\x02" + body) == Ack(1, b"hi")


def test_decode_ignores_trailing_bytes_like_go() -> None:
    assert decode(encode(Nack(9)) + b"junk") == Nack(9)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        (b"\x63", "unknown message type 99"),
        (b"\x00", "no body"),
        (b"\x00\x85", "truncated"),
        (b"\x00\x01", "expected a msgpack map"),
        (b"\x00" + packb({"SeqNo": -1}), "negative value -1"),
        (b"\x00" + packb({"SeqNo": 1 << 32}), "overflows uint32"),
        (b"\x04" + packb({"Port": 70000}), "overflows uint16"),
        (b"\x00" + packb({"SeqNo": "x"}), "expected unsigned integer"),
        (b"\x00" + packb({"Node": 5}), "expected string"),
        (b"\x04" + packb({"Vsn": [1, 2]}), "expected raw bytes"),
        (b"\x01" + packb({"Nack": 7}), "expected bool"),
        (b"\x00" + packb({1: 2}), "not a string"),
        (b"\x06" + packb({}), "only valid on a stream"),
        (b"\x07\x00", "unwrap it with packets.unwrap_packet"),
        (b"\x0a\x00", "encrypted packet but no keyring"),
    ],
)
def test_decode_errors_are_precise(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="uint16"):
        encode(Alive(1, "n", LO[1], 1 << 16, b"", VSN))
    with pytest.raises(TypeError):
        encode(Ping("1", "n"))  # type: ignore[arg-type]


def test_decode_error_is_value_error() -> None:
    assert issubclass(DecodeError, ValueError)
    assert not issubclass(Incomplete, DecodeError)


def test_messages_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Ping(1, "n").seq_no = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# TCP streams


def test_push_pull_stream_layout() -> None:
    node = PushNodeState("a", LO[1], 1, b"", 3, 0, b"\x01\x02\x03\x04\x05\x06")
    data = encode(PushPull(True, (node,), b"xyz"))
    assert data[:1] == b"\x06"
    header, _off = decode_stream_value(data, 1)
    assert header == {b"Join": True, b"Nodes": 1, b"UserStateLen": 3}
    assert data.endswith(b"xyz")
    assert decode_stream(data) == (PushPull(True, (node,), b"xyz"), len(data))
    for cut in range(len(data)):
        with pytest.raises(Incomplete):
            decode_stream(data[:cut])
    assert decode_stream(data + b"extra")[1] == len(data)


def test_user_stream_layout() -> None:
    data = encode(UserStream(b"hello"))
    assert data.hex() == "0881aa557365724d73674c656e05" + b"hello".hex()
    assert decode_stream(data) == (UserStream(b"hello"), len(data))
    with pytest.raises(Incomplete, match="have 4 of 5"):
        decode_stream(data[:-1])


def test_udp_user_message_is_raw() -> None:
    assert encode(User(b"\x01abc")) == b"\x08\x01abc"
    assert decode(b"\x08") == User(b"")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x06" + packb({"Nodes": -1}), "negative node count"),
        (b"\x06" + packb({"UserStateLen": 1 << 30}), "out of range"),
        (b"\x08" + packb({"UserMsgLen": -2}), "out of range"),
        (b"\x09" + packb({}), "packets.unwrap_stream"),
        (b"\x0a\x00", "encrypted stream"),
        (b"\x06\xc1", "push/pull header: invalid msgpack"),
        (b"\x06" + packb({"Nodes": 1}) + b"\x05", "pushNodeState|PushNodeState"),
    ],
)
def test_decode_stream_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_stream(data)


def test_stream_ping_ack_err() -> None:
    for msg in (Ping(3, "x"), Ack(3), ErrResp("boom"), Nack(4)):
        data = encode(msg)
        assert decode_stream(data) == (msg, len(data))


# ---------------------------------------------------------------------------------------------------------
# tags meta


def test_tags_meta() -> None:
    assert encode_tags({"role": "web"}) == b"\xff\x81\xa4role\xa3web"
    assert decode_tags(b"\xff\x82\xa4role\xa4node\xa2dc\xa4east") == ({"role": "node", "dc": "east"}, None)
    assert decode_tags(b"legacy") == ({"role": "legacy"}, None)
    assert decode_tags(b"") == ({"role": ""}, None)
    tags, error = decode_tags(b"\xff\x01")  # Serf's decodeTags reports the error rather than raising
    assert tags == {} and error is not None and error.startswith("failed to decode tags")


# ---------------------------------------------------------------------------------------------------------
# real captures: everything decodes and re-encodes byte for byte


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_capture_round_trip_byte_identical(name: str) -> None:
    n_udp = n_tcp = 0
    for rec in load(name):
        data = bytes.fromhex(rec["hex"])
        if rec["proto"] == "udp":
            for raw in unwrap_packet(data):
                assert encode(decode(raw)) == raw, rec["n"]
                n_udp += 1
        else:
            from protocol.packets import unwrap_stream

            try:
                inner = unwrap_stream(data)
            except DecodeError:
                assert "undecodable" in rec["summary"]
                continue
            msg, used = decode_stream(inner)
            assert used == len(inner)
            assert encode(msg) == inner, rec["n"]
            n_tcp += 1
    assert n_udp > 50 and n_tcp >= 4


def test_capture_join_push_pull_plain() -> None:
    recs = load("serf_basic_plain.json")
    first = bytes.fromhex(recs[0]["hex"])  # s2 -> s1 join, uncompressed
    assert first[:1] == b"\x06"
    expected = (
        "83a44a6f696ec3a54e6f64657301ac5573657253746174654c656e"  # {Join: true, Nodes: 1, UserStateLen:
        "cd024a"  # 586}
        "87a441646472a47f000002"  # {Addr: 127.0.0.2
        "ab496e6361726e6174696f6e01"  # Incarnation: 1
    )
    assert first[1 : 1 + len(expected) // 2].hex() == expected
    msg, used = decode_stream(first)
    assert used == len(first) == 692
    assert isinstance(msg, PushPull) and msg.join is True
    (s2,) = msg.nodes
    assert s2 == PushNodeState("s2", LO[2], 17947, b"\xff\x81\xa4role\xa3web", 1, 0, VSN)
    assert decode_tags(s2.meta) == ({"role": "web"}, None)
    # the user state is Serf's push/pull: type byte 2 then messagePushPull
    assert len(msg.user_state) == 586 and msg.user_state[:1] == b"\x02"
    serf_pp = unpackb(msg.user_state[1:])
    assert serf_pp[b"LTime"] == 1 and serf_pp[b"StatusLTimes"] == {b"s2": 0}
    assert serf_pp[b"LeftMembers"] == () and serf_pp[b"EventLTime"] == 1 and serf_pp[b"QueryLTime"] == 1
    assert serf_pp[b"Events"] == (None,) * 512  # the event buffer: array16 (dc 0200) of nils
    assert msg.user_state[1:21].hex() == "86aa4576656e744c54696d6501a64576656e7473"

    reply, _ = decode_stream(bytes.fromhex(recs[1]["hex"]))
    assert isinstance(reply, PushPull) and reply.join is True
    assert [(n.name, n.addr, n.port, decode_tags(n.meta)) for n in reply.nodes] == [
        ("s1", LO[1], 17946, ({"role": "node", "dc": "east"}, None))
    ]


def test_capture_compressed_push_pull_matches_plain_content() -> None:
    comp = tcp_messages("serf_basic_compressed.json")
    joins = [m for _, m in comp if isinstance(m, PushPull)]
    assert len(joins) == 4 and all(m.join for m in joins)
    assert [n.name for n in joins[3].nodes] == ["s2", "s1"]
    assert {n.name: n.incarnation for n in joins[3].nodes} == {"s1": 1, "s2": 1}


def test_capture_alive_and_serf_join_intent() -> None:
    alives = {m.node: m for _, m in udp_messages("serf_basic_plain.json") if isinstance(m, Alive)}
    assert alives["s1"] == Alive(1, "s1", LO[1], 17946, b"\xff\x82\xa4role\xa4node\xa2dc\xa4east", VSN)
    assert alives["s3"].meta == b"\xff\x82\xa4zone\xa2z3\xa4role\xa2db"
    assert decode_tags(alives["s3"].meta) == ({"zone": "z3", "role": "db"}, None)
    # Alive body: keys in sorted order Addr, Incarnation, Meta, Node, Port, Vsn
    assert encode(alives["s2"]).hex() == (
        "0486a441646472a47f000002ab496e6361726e6174696f6e01a44d657461abff81a4726f6c65a3776562"
        "a44e6f6465a27332a4506f7274cd461ba356736ea6010502020505"
    )
    users = [m.payload for _, m in udp_messages("serf_basic_plain.json") if isinstance(m, User)]
    # serf messageJoin (type 1): {LTime, Node}
    assert b"\x01\x82\xa5LTime\x01\xa4Node\xa2s2" in users
    assert unpackb(b"\x82\xa5LTime\x02\xa4Node\xa2s3") == {b"LTime": 2, b"Node": b"s3"}
    assert b"\x01\x82\xa5LTime\x02\xa4Node\xa2s3" in users
    # serf messageUserEvent (type 3) from `serf event deploy v1`: {CC, LTime, Name, Payload}
    assert b"\x03\x84\xa2CC\xc3\xa5LTime\x01\xa4Name\xa6deploy\xa7Payload\xa2v1" in users
    # serf messageLeave (type 0) from `serf leave` of s3: {LTime, Node, Prune}
    assert b"\x00\x83\xa5LTime\x03\xa4Node\xa2s3\xa5Prune\xc2" in users


def test_capture_ping_ack_with_coordinate() -> None:
    msgs = udp_messages("serf_basic_plain.json")
    pings = [m for _, m in msgs if isinstance(m, Ping)]
    assert Ping(1, "s1", LO[2], 17947, "s2") in pings
    raw = encode(Ping(1, "s1", LO[2], 17947, "s2"))
    assert raw.hex() == (
        "0085a44e6f6465a27331a55365714e6f01aa536f7572636541646472a47f000002aa536f757263654e6f6465"
        "a27332aa536f75726365506f7274cd461b"
    )
    acks = [m for _, m in msgs if isinstance(m, Ack)]
    assert acks and all(a.payload[:1] == b"\x01" for a in acks)  # serf's ping delegate: version 1 + coord
    coord = unpackb(acks[0].payload[1:])
    assert set(coord) == {b"Adjustment", b"Error", b"Height", b"Vec"} and len(coord[b"Vec"]) == 8


def test_capture_leave_and_failure() -> None:
    msgs = [m for _, m in udp_messages("serf_basic_compressed.json")]
    assert Dead(1, "s3", "s3") in msgs  # graceful leave: From == Node
    assert Suspect(1, "s2", "s1") in msgs  # kill -9 of s2
    assert Dead(1, "s2", "s1") in msgs  # declared dead by s1
    assert Dead(1, "s1", "s1") in msgs  # s1's own leave at the end
    assert encode(Dead(1, "s3", "s3")).hex() == "0583a446726f6da27333ab496e6361726e6174696f6e01a44e6f6465a27333"


def test_capture_indirect_ping_nack_refute() -> None:
    msgs = [m for _, m in udp_messages("serf_probe.json")]
    assert IndirectPing(5, LO[9], 17950, "py1", True, LO[1], 17946, "s1") in msgs
    assert encode(IndirectPing(5, LO[9], 17950, "py1", True, LO[1], 17946, "s1")).hex() == (
        "0188a44e61636bc3a44e6f6465a3707931a4506f7274cd461ea55365714e6f05aa536f7572636541646472a4"
        "7f000001aa536f757263654e6f6465a27331aa536f75726365506f7274cd461aa6546172676574a47f000009"
    )
    assert Nack(5) in msgs and encode(Nack(5)).hex() == "0b81a55365714e6f05"
    assert Suspect(1, "s4", "s1") in msgs  # s4 frozen with SIGSTOP
    refute = [m for m in msgs if isinstance(m, Alive) and m.node == "s4" and m.incarnation == 2]
    assert refute and refute[0].meta == encode_tags({"role": "r4"})
    assert Dead(1, "py1", "s1") in msgs


def test_capture_serf_query() -> None:
    users = [m.payload for _, m in udp_messages("serf_probe.json") if isinstance(m, User)]
    queries = [unpackb(p[1:]) for p in users if p[0] == 4]
    assert queries
    q = queries[0]
    assert q[b"Name"] == b"whoami" and q[b"Payload"] == b"hi" and q[b"SourceNode"] == b"s1"
    assert q[b"Addr"] == LO[1] and q[b"Port"] == 17946 and q[b"Filters"] is None
    assert q[b"Flags"] == 1 and q[b"RelayFactor"] == 0 and q[b"Timeout"] == 2_000_000_000
    responses = {unpackb(p[1:])[b"From"] for p in users if p[0] == 5}
    assert responses == {b"s1", b"s2", b"s3", b"s4"}


def test_capture_tcp_ping_fallback_and_nil_ack() -> None:
    msgs = tcp_messages("serf_probe.json")
    pings = [(r, m) for r, m in msgs if isinstance(m, Ping) and m.node == "s4"]
    assert pings and pings[0][1] == Ping(11, "s4", LO[1], 17946, "s1")
    assert bytes.fromhex(pings[0][0]["hex"])[:1] == b"\x09"  # compressed stream
    # Go's dialer does not bind: the TCP source is 127.0.0.1 even when s2/s3 send the fallback ping
    assert any(m.source_node == "s3" and r["src"].startswith("127.0.0.1:") for r, m in pings)
    assert Ack(11) in [m for _, m in msgs]


def test_probe_exchanges_go_accepts_our_bytes() -> None:
    recs = {r["description"]: r for r in json.loads((FIXTURES / "serf_probe_exchanges.json").read_text())["records"]}
    ping = recs["tcp ping to s1"]
    assert ping["sent"] == encode(Ping(77, "s1")).hex()
    assert read_stream(bytes.fromhex(ping["reply"]))[0] == Ack(77)
    err = recs["compressMsg with unknown algorithm 1"]
    assert read_stream(bytes.fromhex(err["reply"]))[0] == ErrResp("Cannot decompress unknown algorithm 1")
    pp = recs["join push/pull from fake node py1"]
    sent, _ = decode_stream(bytes.fromhex(pp["sent"]))
    assert isinstance(sent, PushPull) and sent.nodes[0].name == "py1"
    reply, used = read_stream(bytes.fromhex(pp["reply"]))
    assert used == len(bytes.fromhex(pp["reply"]))
    assert isinstance(reply, PushPull) and sorted(n.name for n in reply.nodes) == ["s1", "s2", "s3", "s4"]
    user = recs["userMsg stream with serf user event pyevent"]
    assert decode_stream(bytes.fromhex(user["sent"]))[0] == UserStream(
        b"\x03\x84\xa2CC\xc2\xa5LTime\x07\xa4Name\xa7pyevent\xa7Payload\xa5hello"
    )
    # ...and serf relayed it as a UDP user message, the event carried verbatim
    users = [m.payload for _, m in udp_messages("serf_probe.json") if isinstance(m, User)]
    assert b"\x03\x84\xa2CC\xc2\xa5LTime\x07\xa4Name\xa7pyevent\xa7Payload\xa5hello" in users


# ---------------------------------------------------------------------------------------------------------
# property tests

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
names = st.text(max_size=40)
blobs = st.binary(max_size=80)
ips = st.sampled_from([b"", LO[1], bytes(16), bytes(range(16))])

messages = st.one_of(
    st.builds(Ping, u32, names, ips, u16, names),
    st.builds(IndirectPing, u32, ips, u16, names, st.booleans(), ips, u16, names),
    st.builds(Ack, u32, blobs),
    st.builds(Nack, u32),
    st.builds(ErrResp, names),
    st.builds(Suspect, u32, names, names),
    st.builds(Alive, u32, names, ips, u16, blobs, st.binary(max_size=6)),
    st.builds(Dead, u32, names, names),
    st.builds(User, blobs),
)
node_states = st.builds(PushNodeState, names, ips, u16, blobs, u32, st.integers(0, 3), st.binary(max_size=6))
stream_messages = st.one_of(
    st.builds(PushPull, st.booleans(), st.lists(node_states, max_size=5).map(tuple), blobs),
    st.builds(UserStream, blobs),
    st.builds(Ping, u32, names),
    st.builds(Ack, u32, blobs),
    st.builds(ErrResp, names),
)


@given(messages)
def test_udp_round_trip(msg: codec.Message) -> None:
    assert decode(encode(msg)) == msg


@given(stream_messages)
def test_stream_round_trip(msg: codec.Message) -> None:
    data = encode(msg)
    assert decode_stream(data) == (msg, len(data))
    with pytest.raises(Incomplete):
        decode_stream(data[: len(data) // 2] if len(data) > 1 else b"")


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_fuzz_random_bytes(data: bytes) -> None:
    for fn in (decode, decode_stream):
        with contextlib.suppress(DecodeError, Incomplete):
            fn(data)


@given(messages, st.data())
@settings(max_examples=500)
def test_fuzz_mutated_messages(msg: codec.Message, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        for fn in (decode, decode_stream):
            with contextlib.suppress(DecodeError, Incomplete):
                fn(candidate)


@given(st.data())
@settings(max_examples=300)
def test_fuzz_mutated_captures(data: st.DataObject) -> None:
    recs = load("serf_basic_plain.json")
    rec = data.draw(st.sampled_from(recs))
    raw = bytearray(bytes.fromhex(rec["hex"]))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        if rec["proto"] == "udp":
            for part in unwrap_packet(bytes(raw)):
                decode(part)
        else:
            decode_stream(bytes(raw))
    except (DecodeError, Incomplete):
        pass
