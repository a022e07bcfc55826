"""The agent's side of gossip encryption, without processes: config keys and flag, the keyring file's rules, the
keyring command's argument checks (the end-to-end paths are in test_interop_encrypt.py)."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest

from agent import cli
from agent.config import RESTART_REQUIRED, ConfigError, load_config
from agent.datadir import DataDir
from agent.keyring_file import KEYRING_FILE, KeyringFileError, initial_keys, read_keyring_file, write_keyring_file

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(16))).decode()


def config(tmp_path: Path, *argv: str, files: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    args = ["-node", "n1", "-bind", "127.0.0.1", "-data-dir", str(tmp_path / "data")]
    if files is not None:
        (tmp_path / "c.json").write_text(json.dumps(files))
        args += ["-config-file", str(tmp_path / "c.json")]
    return load_config([*args, *argv])


def test_encrypt_flag_file_and_verify_defaults(tmp_path: Path) -> None:
    plain = config(tmp_path)
    assert (plain.encrypt, plain.encrypt_verify_incoming, plain.encrypt_verify_outgoing) == ("", True, True)
    flagged = config(tmp_path, "-encrypt", K1)
    assert flagged.encrypt == K1
    assert K1 not in repr(flagged), "the gossip key must never reach a log line through the config's repr"
    c = config(tmp_path, files={"encrypt": K2, "encrypt_verify_incoming": False, "encrypt_verify_outgoing": False})
    assert (c.encrypt, c.encrypt_verify_incoming, c.encrypt_verify_outgoing) == (K2, False, False)
    assert {"encrypt", "encrypt_verify_incoming", "encrypt_verify_outgoing"} <= RESTART_REQUIRED


@pytest.mark.parametrize(
    ("key", "message"),
    [("not-base64!", "encrypt has invalid key: key is not valid base64"),
     (base64.b64encode(b"x" * 20).decode(), "encrypt has invalid key: key size must be 16, 24 or 32 bytes")],
)  # fmt: skip
def test_bad_encrypt_key_is_a_config_error(tmp_path: Path, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, "-encrypt", key)
    with pytest.raises(ConfigError, match="encrypt_verify_incoming"):
        config(tmp_path, files={"encrypt_verify_incoming": "yes"})


def test_keyring_file_created_from_encrypt_then_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dd = DataDir(tmp_path)
    assert initial_keys("", dd) is None and not (tmp_path / KEYRING_FILE).exists()
    assert initial_keys(K1, dd) == [K1]
    path = tmp_path / KEYRING_FILE
    assert json.loads(path.read_text()) == [K1]
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    write_keyring_file(dd, [K2, K1])  # a rotation persisted by the agent
    with caplog.at_level(logging.WARNING):
        assert initial_keys(K1, dd) == [K2, K1]  # the file wins; it has K1, so no warning
    assert "doesn't include key" not in caplog.text
    write_keyring_file(dd, [K2])
    with caplog.at_level(logging.WARNING):
        assert initial_keys(K1, dd) == [K2]
    assert "keyring doesn't include key provided with -encrypt, using keyring" in caplog.text
    assert initial_keys("", dd) == [K2]  # the file alone enables encryption, as Consul
    assert initial_keys(K1, None) == [K1]  # -dev without a data dir: nothing written


def test_atomic_rewrite_leaves_no_temp_files(tmp_path: Path) -> None:
    dd = DataDir(tmp_path)
    for i in range(5):
        write_keyring_file(dd, [K1, K2] if i % 2 else [K2])
    assert sorted(os.listdir(tmp_path / "serf")) == ["local.keyring"]
    assert read_keyring_file(dd) == [K2]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "Failed to decode keyring file"), ("{}", "expected a JSON array"), ("[]", "is empty"),
     ('["***"]', "key 0: key is not valid base64"), (f'["{K1}", "{base64.b64encode(b"x").decode()}"]',
                                                        "key 1: key size must be 16, 24 or 32 bytes")],
)  # fmt: skip
def test_damaged_keyring_file_names_the_file_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "serf").mkdir()
    (tmp_path / KEYRING_FILE).write_text(content)
    with pytest.raises(KeyringFileError, match=message) as info:
        initial_keys(K1, DataDir(tmp_path))
    assert str(tmp_path / KEYRING_FILE) in str(info.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["-list", "-install", K1], "Only a single action is allowed"),
     (["-install", K1, "-use", K1], "Only a single action is allowed"),
     (["-list", "-relay-factor", "6"], "Error parsing relay factor: Relay factor must be in range: [0, 5]"),
     (["-install", K1, "-local-only"], "Error validating local-only: local-only can only be set for list requests"),
     ([], "Usage: consul keyring [options]")],
)  # fmt: skip
def test_keyring_command_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keyring", "-http-addr", "127.0.0.1:1", *argv]) == 1
    assert message in capsys.readouterr().err


def test_keyring_list_format_and_keygen(capsys: pytest.CaptureFixture[str]) -> None:
    response = {"WAN": False, "Datacenter": "dc1", "Segment": "", "Messages": {"n2": "truncated key list"},
                "Keys": {K2: 3, K1: 1}, "NumNodes": 3}  # fmt: skip
    assert cli._format_keyring(response, response["Keys"]) == (
        f"\ndc1 (LAN):\n  n2: truncated key list\n  {K2} [3/3]\n  {K1} [1/3]"
    )
    assert cli.main(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
