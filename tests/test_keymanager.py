"""Serf's key-query payloads and aggregation (protocol/keymanager.py), byte for byte where serf fixes the bytes."""

from __future__ import annotations

import msgpack

from protocol.keymanager import (
    KeyQuery,
    KeyResponse,
    NodeKeyResponse,
    answer_key_query,
    decode_key_request,
    decode_key_response,
    encode_key_request,
    encode_key_response,
    key_query_timeout,
)
from protocol.keyring import Keyring, encode_key

K16 = bytes(range(16))
K32 = bytes(range(32))


def test_request_payload_is_type_7_and_go_msgpack_raw() -> None:
    # go-msgpack (WriteExt false) writes []byte as legacy raw: fixraw for 16 bytes, raw16 for 32
    assert encode_key_request(K16) == b"\x07\x81\xa3Key\xb0" + K16
    assert encode_key_request(K32) == b"\x07\x81\xa3Key\xda\x00\x20" + K32
    assert encode_key_request(b"") == b"\x07\x81\xa3Key\xc0"  # list-keys: nil
    assert decode_key_request(encode_key_request(K32)) == K32
    assert decode_key_request(b"\x99" + msgpack.packb({"Key": K16}, use_bin_type=False)) == K16  # type unchecked


def test_response_payload_and_serf_0_8_answers_without_primary_key() -> None:
    resp = NodeKeyResponse(True, "", (encode_key(K32),), encode_key(K32))
    raw = encode_key_response(resp)
    assert raw[0] == 8
    assert msgpack.unpackb(raw[1:], raw=False) == {
        "Keys": [encode_key(K32)], "Message": "", "PrimaryKey": encode_key(K32), "Result": True,
    }  # fmt: skip
    assert decode_key_response(raw) == resp
    old = b"\x08" + msgpack.packb({"Result": False, "Message": "Removing the primary key is not allowed", "Keys": None},
                                  use_bin_type=False)  # fmt: skip
    assert decode_key_response(old) == NodeKeyResponse(False, "Removing the primary key is not allowed", (), "")


def test_answers_change_the_ring_and_say_why_not() -> None:
    ring = Keyring([K16])
    limit = 1024 - 60
    assert answer_key_query(ring, "install-key", encode_key_request(K32), limit) == (NodeKeyResponse(True), True)
    assert answer_key_query(ring, "install-key", encode_key_request(K32), limit) == (NodeKeyResponse(True), False)
    assert answer_key_query(ring, "use-key", encode_key_request(bytes(24)), limit)[0].message == (
        "requested key is not in the keyring"
    )
    assert answer_key_query(ring, "remove-key", encode_key_request(K16), limit)[0].message == (
        "removing the primary key is not allowed"
    )
    listed, changed = answer_key_query(ring, "list-keys", encode_key_request(b""), limit)
    assert listed == NodeKeyResponse(True, "", (encode_key(K16), encode_key(K32)), encode_key(K16)) and not changed
    assert answer_key_query(None, "install-key", encode_key_request(K32), limit)[0] == NodeKeyResponse(
        False, "No keyring to modify (encryption not enabled)"
    )
    assert answer_key_query(ring, "install-key", b"\x07\xc1", limit)[0].message.startswith(
        "Failed to decode key request"
    )


def test_list_keys_is_truncated_to_the_response_limit() -> None:
    ring = Keyring([bytes([i]) * 32 for i in range(40)])
    listed, _ = answer_key_query(ring, "list-keys", encode_key_request(b""), 1024 - 60)
    shown = len(listed.keys)
    assert 0 < shown < 40 and listed.result
    assert listed.message == f"truncated key list response, showing first {shown} of 40 keys"
    assert len(encode_key_response(listed)) <= 1024 - 60 - 3


def test_aggregation_as_serf_key_manager() -> None:
    q = KeyQuery(1, "list-keys", 5, 77, 10.0, KeyResponse(num_nodes=3))
    a = encode_key(K16)
    ok = encode_key_response(NodeKeyResponse(True, "", (a,), a))
    assert q.add("n1", ok) is None
    q.add("n1", ok)  # a relayed copy: ignored
    assert q.add("n2", encode_key_response(NodeKeyResponse(True, "truncated", (a,), a))) == "truncated"
    assert not q.complete
    q.add("n3", b"\x05garbage")
    assert q.complete
    done = q.done()
    assert done.error == "1/3 nodes reported failure"
    assert done.response.keys == {a: 2} and done.response.primary_keys == {a: 2} and done.response.num_resp == 3
    assert done.response.messages["n2"] == "truncated"
    assert done.response.messages["n3"].startswith("Failed to decode key query response")
    timed_out = KeyQuery(2, "install-key", 6, 78, 10.0, KeyResponse(num_nodes=4))
    timed_out.add("n1", encode_key_response(NodeKeyResponse(True)))
    assert timed_out.done().error == "1/4 nodes reported success"


def test_query_timeout_is_serfs_default() -> None:
    assert key_query_timeout(0.2, 16, 4) == 0.2 * 16 * 1
    assert abs(key_query_timeout(0.2, 16, 10) - 0.2 * 16 * 2) < 1e-9
