"""Gossip encryption as memberlist's keyring.go and security.go do it: the keys, and AES-GCM blobs.

A blob is ``vsn:1 | nonce:12 | ciphertext | tag:16``; version 1 encrypts the message as it is, version 0 first
pads it PKCS7-style to a 16-byte multiple (memberlist protocol 1 only). The caller's additional data (the label
for packets; the stream frame header plus label for streams) is authenticated, not sent. Every installed key is
tried on receive, primary first; only the primary encrypts.

The nonce comes from ``Keyring.nonce_source`` (``os.urandom`` unless a test injects a deterministic one): the
module reads no clock and opens no socket, so protocol/ stays sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from .go_msgpack import DecodeError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_SIZES",
    "MAX_ENCRYPTION_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "DecryptError",
    "Keyring",
    "KeyringError",
    "decode_key",
    "decrypt_payload",
    "encode_key",
    "encrypt_overhead",
    "encrypt_payload",
    "encrypted_length",
    "validate_key",
]

VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
MIN_ENCRYPTION_VERSION = 0
MAX_ENCRYPTION_VERSION = 1
KEY_SIZES = (16, 24, 32)

NonceSource = Callable[[int], bytes]


@functools.cache
def _aead() -> tuple[type[AESGCM], type[Exception]]:
    """AES-GCM and its tag error, imported on first use: cryptography's OpenSSL build is about 8 MiB of RSS that
    a node gossiping in plaintext never needs (a Keyring with a key imports it at once, so an encrypting node
    pays at start, not on its first packet)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM, InvalidTag


class DecryptError(DecodeError):
    """A blob no installed key opens, or one too short or of an unknown version (memberlist's messages)."""


class KeyringError(ValueError):
    """A keyring operation refused (bad size, unknown key, removing the primary), with memberlist's message."""


def encrypt_overhead(vsn: int) -> int:
    """Bytes a blob adds to a message at most: 29 for version 1, 45 for version 0 (padding included)."""
    if vsn == 0:
        return VERSION_SIZE + NONCE_SIZE + BLOCK_SIZE + TAG_SIZE
    if vsn == 1:
        return VERSION_SIZE + NONCE_SIZE + TAG_SIZE
    raise ValueError(f"unsupported encryption version {vsn}")


def encrypted_length(vsn: int, n: int) -> int:
    """The size of the blob holding an ``n``-byte message."""
    if vsn >= 1:
        return VERSION_SIZE + NONCE_SIZE + n + TAG_SIZE
    return VERSION_SIZE + NONCE_SIZE + n + (BLOCK_SIZE - n % BLOCK_SIZE) + TAG_SIZE


def validate_key(key: bytes) -> None:
    if len(key) not in KEY_SIZES:
        raise KeyringError("key size must be 16, 24 or 32 bytes")


def encode_key(key: bytes) -> str:
    """Standard base64, the text form of a key everywhere (flags, files, queries, HTTP)."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """A base64 key, checked for size; KeyringError with a message naming what is wrong."""
    try:
        key = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise KeyringError(f"key is not valid base64: {exc}") from None
    validate_key(key)
    return key


def encrypt_payload(vsn: int, key: bytes, msg: bytes, data: bytes, nonce: bytes) -> bytes:
    """memberlist encryptPayload with the nonce given: the whole blob."""
    if vsn not in (0, 1):
        raise ValueError(f"unsupported encryption version {vsn}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    plain = bytes(msg)
    if vsn == 0:
        more = BLOCK_SIZE - len(plain) % BLOCK_SIZE
        plain += bytes([more]) * more
    aesgcm, _ = _aead()
    return bytes([vsn]) + nonce + aesgcm(key).encrypt(nonce, plain, bytes(data))


def decrypt_payload(keys: Sequence[bytes], msg: bytes, data: bytes) -> bytes:
    """memberlist decryptPayload: try each key in order; the plain message, or DecryptError."""
    if not msg:
        raise DecryptError("cannot decrypt empty payload")
    vsn = msg[0]
    if vsn > MAX_ENCRYPTION_VERSION:
        raise DecryptError(f"unsupported encryption version {vsn}")
    if len(msg) < encrypted_length(vsn, 0):
        raise DecryptError("payload is too small to decrypt")
    nonce = bytes(msg[VERSION_SIZE : VERSION_SIZE + NONCE_SIZE])
    sealed = bytes(msg[VERSION_SIZE + NONCE_SIZE :])
    aad = bytes(data)
    aesgcm, invalid_tag = _aead()
    for key in keys:
        try:
            plain = aesgcm(key).decrypt(nonce, sealed, aad)
        except invalid_tag:
            continue
        if vsn == 0:
            if not plain:
                raise DecryptError("padded payload is empty")
            cut = plain[-1]  # pkcs7decode: no check of the pad bytes, as memberlist
            return plain[: max(len(plain) - cut, 0)]
        return plain
    raise DecryptError("no installed keys could decrypt the message")


class Keyring:
    """memberlist's Keyring: ``keys[0]`` is the primary (the only one that encrypts, the first tried).

    Mutable on purpose: Serf's key queries change it while the node runs. ``nonce_source`` makes nonces.
    """

    def __init__(self, keys: Iterable[bytes] = (), *, nonce_source: NonceSource = os.urandom) -> None:
        self._keys: list[bytes] = []
        self.nonce_source = nonce_source
        for key in keys:
            self.add_key(bytes(key))

    @classmethod
    def from_base64(cls, keys: Iterable[str], *, nonce_source: NonceSource = os.urandom) -> Keyring:
        return cls([decode_key(k) for k in keys], nonce_source=nonce_source)

    @property
    def keys(self) -> list[bytes]:
        """The keys, primary first (a copy)."""
        return list(self._keys)

    @property
    def primary(self) -> bytes | None:
        return self._keys[0] if self._keys else None

    @property
    def enabled(self) -> bool:
        """memberlist EncryptionEnabled: a keyring with at least one key."""
        return bool(self._keys)

    def encoded(self) -> list[str]:
        """The keys as base64, primary first (the keyring file's and list-keys' form)."""
        return [encode_key(k) for k in self._keys]

    def add_key(self, key: bytes) -> None:
        """Install a key for decryption; the first key of an empty ring becomes primary. Idempotent."""
        validate_key(key)
        _aead()
        if key not in self._keys:
            self._keys.append(bytes(key))

    def use_key(self, key: bytes) -> None:
        """Make an installed key the primary."""
        if key not in self._keys:
            raise KeyringError("requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, bytes(key))

    def remove_key(self, key: bytes) -> None:
        """Drop a key; never the primary; an absent key is not an error (memberlist RemoveKey)."""
        if self._keys and key == self._keys[0]:
            raise KeyringError("removing the primary key is not allowed")
        if key in self._keys:
            self._keys.remove(key)

    def encrypt(self, msg: bytes, data: bytes, vsn: int = 1) -> bytes:
        """A blob under the primary key with a fresh nonce."""
        if not self._keys:
            raise KeyringError("no keys installed")
        return encrypt_payload(vsn, self._keys[0], msg, data, self.nonce_source(NONCE_SIZE))

    def decrypt(self, msg: bytes, data: bytes) -> bytes:
        return decrypt_payload(self._keys, msg, data)
