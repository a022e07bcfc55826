"""The gossip keyring on disk: ``<data_dir>/serf/local.keyring``, as Consul and Serf keep it.

A JSON array of base64 keys, primary first, mode 0600, rewritten atomically after every change (Serf rewrites it
in place; a torn file would lock the agent out of its own cluster after a crash). At start Consul's rules apply:
``encrypt`` given and no file -> the file is created with that key; a file -> the file wins, with Consul's
warning when it lacks the ``encrypt`` key; neither -> plaintext gossip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from agent.datadir import DataDir, DataDirError
from protocol.keyring import KeyringError, decode_key

__all__ = ["KEYRING_FILE", "KeyringFileError", "initial_keys", "read_keyring_file", "write_keyring_file"]

log = logging.getLogger("triumvir.keyring")

KEYRING_FILE = "serf/local.keyring"
MISSING_KEY_WARNING = "keyring doesn't include key provided with -encrypt, using keyring"


class KeyringFileError(DataDirError):
    """A keyring file the agent cannot start with; the message names the file and what is wrong."""


def read_keyring_file(datadir: DataDir) -> list[str] | None:
    """The keys of the file, primary first; None when there is no file."""
    path = datadir.path / KEYRING_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyringFileError(f"Failed to read keyring file {path}: {exc.strerror}") from None
    try:
        keys = json.loads(raw)
    except ValueError as exc:
        raise KeyringFileError(f"Failed to decode keyring file {path}: {exc}") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise KeyringFileError(f"Failed to decode keyring file {path}: expected a JSON array of base64 strings")
    if not keys:
        raise KeyringFileError(f"Keyring file {path} is empty")
    for i, key in enumerate(keys):
        try:
            decode_key(key)
        except KeyringError as exc:
            raise KeyringFileError(f"Keyring file {path}: key {i}: {exc}") from None
    return keys


def write_keyring_file(datadir: DataDir, keys: Sequence[str]) -> None:
    """Replace the file atomically (Serf's indented JSON), mode 0600 in a 0700 directory."""
    datadir.atomic_write(KEYRING_FILE, json.dumps(list(keys), indent=2).encode(), mode=0o600)


def initial_keys(encrypt: str, datadir: DataDir | None) -> list[str] | None:
    """The keyring to start with (base64, primary first), or None for plaintext gossip; Consul's
    setupBaseKeyrings/initKeyring. Raises KeyringFileError for a damaged file."""
    if datadir is None:  # -dev without a data dir: nothing to persist
        return [encrypt] if encrypt else None
    keys = read_keyring_file(datadir)
    if keys is not None:
        if encrypt and decode_key(encrypt) not in {decode_key(k) for k in keys}:
            log.warning("agent: %s: keyring=LAN", MISSING_KEY_WARNING)
        return keys
    if not encrypt:
        return None
    write_keyring_file(datadir, [encrypt])
    return [encrypt]
