"""Gossip encryption bytes (protocol/keyring.py, protocol/packets.py) against memberlist's security.go layout.

Vectors are built with a fixed nonce and checked field by field: ``vsn | nonce | AES-GCM(plain) | tag`` with the
label (packets) or frame header + label (streams) as additional data. The interop tests (test_interop_encrypt.py)
check the same bytes against a real serf.
"""

from __future__ import annotations

import contextlib
import random
import struct
import subprocess
import sys
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import packets
from protocol.codec import DecodeError, Incomplete, MessageType, Ping, encode
from protocol.config import Config
from protocol.keyring import (
    DecryptError,
    Keyring,
    KeyringError,
    decode_key,
    decrypt_payload,
    encode_key,
    encrypt_overhead,
    encrypt_payload,
    encrypted_length,
)
from protocol.node import Node

KEY16 = bytes(range(16))
KEY32 = bytes(range(100, 132))
NONCE = bytes(range(200, 212))
PLAIN = b"this is a plain text message"
AAD = b"random data"


def fixed_nonce(n: int) -> bytes:
    assert n == 12
    return NONCE


# --- blobs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY16, bytes(24), KEY32], ids=["aes128", "aes192", "aes256"])
def test_version_1_blob_is_vsn_nonce_ciphertext_tag(key: bytes) -> None:
    blob = encrypt_payload(1, key, PLAIN, AAD, NONCE)
    assert blob[0] == 1 and blob[1:13] == NONCE
    assert len(blob) == encrypted_length(1, len(PLAIN)) == 1 + 12 + len(PLAIN) + 16
    # the rest is exactly Go's gcm.Seal(nil, nonce, plain, data): ciphertext || 16-byte tag
    assert blob[13:] == AESGCM(key).encrypt(NONCE, PLAIN, AAD)
    assert decrypt_payload([key], blob, AAD) == PLAIN


def test_known_answer_aes128() -> None:
    """A frozen vector (key 0..15, memberlist security_test.go's plaintext and data, nonce 200..211)."""
    blob = encrypt_payload(1, KEY16, PLAIN, AAD, NONCE)
    assert blob.hex() == (
        "01c8c9cacbcccdcecfd0d1d2d3"  # vsn 1, nonce
        "4240fdcd2e5a5809bfb7d82ea0080d860475857df1427860a7d620ad"  # ciphertext (28 bytes)
        "da1ddab525aeb4f40c7fc616241536be"  # tag
    )
    # GCM's ciphertext is AES-CTR from counter block nonce || 00000002: checked without the AEAD code path
    ctr = Cipher(algorithms.AES(KEY16), modes.CTR(NONCE + b"\x00\x00\x00\x02")).encryptor()
    assert blob[13:-16] == ctr.update(PLAIN) + ctr.finalize()


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 33])
def test_version_0_pads_pkcs7_and_decrypts(n: int) -> None:
    msg = bytes(range(n))
    blob = encrypt_payload(0, KEY16, msg, AAD, NONCE)
    more = 16 - n % 16  # a whole block when already aligned
    assert blob[0] == 0 and len(blob) == encrypted_length(0, n) == 1 + 12 + n + more + 16
    assert AESGCM(KEY16).decrypt(NONCE, blob[13:], AAD) == msg + bytes([more]) * more
    assert decrypt_payload([KEY16], blob, AAD) == msg


def test_overheads() -> None:
    assert encrypt_overhead(1) == 29 and encrypt_overhead(0) == 45


def test_every_key_is_tried_primary_first() -> None:
    blob = encrypt_payload(1, KEY16, PLAIN, AAD, NONCE)
    assert decrypt_payload([KEY32, bytes(24), KEY16], blob, AAD) == PLAIN


def test_wrong_key_and_wrong_additional_data_fail() -> None:
    blob = encrypt_payload(1, KEY16, PLAIN, AAD, NONCE)
    with pytest.raises(DecryptError, match="no installed keys could decrypt the message"):
        decrypt_payload([KEY32], blob, AAD)
    with pytest.raises(DecryptError, match="no installed keys"):
        decrypt_payload([KEY16], blob, b"other label")
    # an empty label authenticates as Go's nil data
    assert decrypt_payload([KEY16], encrypt_payload(1, KEY16, PLAIN, b"", NONCE), b"") == PLAIN


def test_truncated_and_unknown_versions_are_refused() -> None:
    v1 = encrypt_payload(1, KEY16, b"", AAD, NONCE)
    assert len(v1) == 29 and decrypt_payload([KEY16], v1, AAD) == b""
    with pytest.raises(DecryptError, match="too small"):
        decrypt_payload([KEY16], v1[:28], AAD)
    v0 = encrypt_payload(0, KEY16, b"", AAD, NONCE)
    assert len(v0) == 45
    with pytest.raises(DecryptError, match="too small"):
        decrypt_payload([KEY16], v0[:44], AAD)
    with pytest.raises(DecryptError, match="empty"):
        decrypt_payload([KEY16], b"", AAD)
    with pytest.raises(DecryptError, match="unsupported encryption version 2"):
        decrypt_payload([KEY16], b"\x02" + v1[1:], AAD)
    flipped = bytearray(encrypt_payload(1, KEY16, PLAIN, AAD, NONCE))
    flipped[20] ^= 1
    with pytest.raises(DecryptError):
        decrypt_payload([KEY16], bytes(flipped), AAD)


# --- the keyring ------------------------------------------------------------------------------------------------


def test_keyring_operations_as_memberlist() -> None:
    ring = Keyring([KEY16])
    ring.add_key(KEY32)
    ring.add_key(KEY32)  # idempotent
    assert ring.keys == [KEY16, KEY32] and ring.primary == KEY16
    with pytest.raises(KeyringError, match="removing the primary key is not allowed"):
        ring.remove_key(KEY16)
    with pytest.raises(KeyringError, match="requested key is not in the keyring"):
        ring.use_key(bytes(24))
    ring.use_key(KEY32)
    assert ring.keys == [KEY32, KEY16]
    ring.remove_key(KEY16)
    ring.remove_key(KEY16)  # absent: not an error
    assert ring.keys == [KEY32]
    with pytest.raises(KeyringError, match="key size must be 16, 24 or 32 bytes"):
        ring.add_key(b"short")
    assert not Keyring().enabled and Keyring([KEY16]).enabled


def test_base64_keys() -> None:
    text = encode_key(KEY32)
    assert decode_key(text) == KEY32 and decode_key(f" {text}\n") == KEY32
    with pytest.raises(KeyringError, match="not valid base64"):
        decode_key("not base64!")
    with pytest.raises(KeyringError, match="key size"):
        decode_key(encode_key(b"x" * 20))


# --- UDP packets ------------------------------------------------------------------------------------------------


def test_packet_layout_label_outside_crc_inside() -> None:
    ring = Keyring([KEY32], nonce_source=fixed_nonce)
    ping = encode(Ping(7, "b", b"\x7f\x00\x00\x01", 7946, "a"))
    data = packets.wrap_packet([ping], crc=True, label="blue", keyring=ring)
    assert data[:6] == bytes([MessageType.HAS_LABEL, 4]) + b"blue"
    blob = data[6:]
    inner = AESGCM(KEY32).decrypt(NONCE, blob[13:], b"blue")
    assert blob[:13] == b"\x01" + NONCE
    assert inner == struct.pack(">BI", MessageType.HAS_CRC, zlib.crc32(ping)) + ping
    info = packets.unwrap_packet_info(data, "blue", keyring=ring)
    assert info.messages == (ping,) and info.encrypted and info.crc


def test_plaintext_packet_refused_only_when_verifying_incoming() -> None:
    ring = Keyring([KEY32])
    ping = encode(Ping(7, "b", b"", 0, "a"))
    plain = packets.wrap_packet([ping], crc=True)
    with pytest.raises(DecryptError, match="unsupported encryption version 12"):
        packets.unwrap_packet(plain, keyring=ring)
    assert packets.unwrap_packet(plain, keyring=ring, verify_incoming=False) == [ping]
    sealed = packets.wrap_packet([ping], crc=True, keyring=ring)
    assert packets.unwrap_packet(sealed, keyring=ring, verify_incoming=False) == [ping]
    with pytest.raises(DecryptError, match="no installed keys"):
        packets.unwrap_packet(sealed, keyring=Keyring([KEY16]))


# --- TCP streams ------------------------------------------------------------------------------------------------


def test_stream_frame_layout_header_and_label_are_additional_data() -> None:
    ring = Keyring([KEY16], nonce_source=fixed_nonce)
    ping = encode(Ping(9, "b", b"", 0, "a"))
    data = packets.wrap_stream(ping, label="blue", keyring=ring)
    assert data[:6] == bytes([MessageType.HAS_LABEL, 4]) + b"blue"
    frame = data[6:]
    kind, size = struct.unpack(">BI", frame[:5])
    assert kind == 10 and size == len(frame) - 5 == 1 + 12 + len(ping) + 16
    assert AESGCM(KEY16).decrypt(NONCE, frame[18:], frame[:5] + b"blue") == ping
    msg, used = packets.read_stream(data, "blue", keyring=ring)
    assert msg == Ping(9, "b", b"", 0, "a") and used == len(data)


def test_compressed_then_encrypted_stream() -> None:
    ring = Keyring([KEY16])
    ping = encode(Ping(9, "b" * 200, b"", 0, "a"))
    data = packets.wrap_stream(ping, compress=True, keyring=ring)
    assert data[0] == 10
    plain, end = packets.open_stream_frame(data, 0, ring)
    assert plain[0] == MessageType.COMPRESS and end == len(data)
    assert packets.read_stream(data, keyring=ring)[0] == Ping(9, "b" * 200, b"", 0, "a")


def test_stream_frame_incomplete_until_whole_then_limits() -> None:
    ring = Keyring([KEY16])
    data = packets.wrap_stream(encode(Ping(1, "", b"", 0, "")), keyring=ring)
    for cut in range(len(data)):
        with pytest.raises(Incomplete):
            packets.read_stream(data[:cut], keyring=ring)
    with pytest.raises(DecodeError, match="larger than limit"):
        packets.read_stream(struct.pack(">BI", 10, 20 * 1024 * 1024 + 1), keyring=ring)


def test_stream_verify_flags() -> None:
    ring = Keyring([KEY16])
    ping = encode(Ping(1, "", b"", 0, ""))
    plain = packets.wrap_stream(ping)
    with pytest.raises(DecryptError, match="encryption is configured but remote state is not encrypted"):
        packets.read_stream(plain, keyring=ring)
    assert packets.read_stream(plain, keyring=ring, verify_incoming=False)[0] == Ping(1, "", b"", 0, "")
    with pytest.raises(DecryptError, match="remote state is encrypted and encryption is not configured"):
        packets.read_stream(packets.wrap_stream(ping, keyring=ring))


# --- fuzz: nothing but DecodeError/Incomplete leaves the protocol layer -----------------------------------------

_RING = Keyring([KEY16, KEY32])
_SEALED_PACKET = packets.wrap_packet([encode(Ping(3, "n", b"", 0, "m"))] * 3, crc=True, keyring=_RING)
_SEALED_STREAM = packets.wrap_stream(encode(Ping(3, "n", b"", 0, "m")), compress=True, keyring=_RING)


def _mutate(base: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(base)
    for pos, val in edits:
        buf[pos % len(buf)] = val
    return bytes(buf[: cut % (len(buf) + 1)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([_SEALED_PACKET, _SEALED_STREAM]),
    edits=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 4096),
    verify=st.booleans(),
)
def test_mutated_encrypted_input_never_escapes(
    base: bytes, edits: list[tuple[int, int]], cut: int, verify: bool
) -> None:
    data = _mutate(base, edits, cut)
    for fn in (packets.unwrap_packet, packets.read_stream):
        with contextlib.suppress(DecodeError, Incomplete):
            fn(data, keyring=_RING, verify_incoming=verify)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_to_an_encrypting_node_are_counted_never_raised(data: bytes) -> None:
    node = Node(Config.local(), name="a", addr=("127.0.0.1", 7946), rng=random.Random(1), now=0.0,
                keyring=Keyring([KEY16]))  # fmt: skip
    node.handle_datagram(1.0, ("127.0.0.2", 7946), data)
    node.handle_stream(1.0, ("127.0.0.2", 7946), data)
    assert node.stats["internal_error"] == 0
    assert node.stats["decrypt_failed"] + node.stats["malformed"] >= 1 or not data


def test_a_plaintext_gossip_node_does_not_load_cryptography() -> None:
    """cryptography's OpenSSL build is about 8 MiB of a gossip node's RSS: it loads with the first key only."""
    probe = (
        "import sys, agent.gossip.cli, protocol.keyring as k\n"
        "assert 'cryptography' not in sys.modules, 'imported at start'\n"
        "k.Keyring([bytes(16)])\n"
        "assert 'cryptography.hazmat.primitives.ciphers.aead' in sys.modules, 'not loaded by a key'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
