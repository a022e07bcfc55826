"""`python -m agent kv get|put|delete|export|import` (agent/cli_kv.py, agent/kvapi.py).

First against test_cli's recording HTTP server, table-driven: the exact requests `consul kv` sends (path, query,
body) and the exact text and exit code it answers with.  Then end to end against a real `-dev` agent: put from an
argument, a file and stdin, get in every form, export, delete, import back, CAS and lock verbs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import next_loopback_ip
from dev_agent import start_dev_agent
from test_cli import FakeAgent, _clean_env, dead_addr, fake  # noqa: F401 -- fixtures: `fake`, autouse `_clean_env`

from agent import __main__ as entry
from agent import cli_kv, goflags, kvapi

REPO = Path(__file__).resolve().parent.parent

PAIR = {
    "Key": "app/db",
    "Value": base64.b64encode(b"postgres://x").decode(),
    "Flags": 42,
    "CreateIndex": 7,
    "ModifyIndex": 9,
    "LockIndex": 1,
    "Session": "",
}
EMPTY = {"Key": "app/", "Value": None, "Flags": 0, "CreateIndex": 3, "ModifyIndex": 3, "LockIndex": 0}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = entry.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def seen(fake: FakeAgent) -> list[tuple[str, str]]:  # noqa: F811 -- the fixture's value
    return [(s.method, s.path) for s in fake.seen]


# --------------------------------------------------------------------------------------------------------------
# get


@pytest.mark.parametrize(
    ("argv", "answer", "request_path", "out"),
    [
        (["app/db"], [PAIR], "/v1/kv/app/db", "postgres://x\n"),
        (["/app/db"], [PAIR], "/v1/kv/app/db", "postgres://x\n"),  # one leading slash is dropped
        (["-base64", "app/db"], [PAIR], "/v1/kv/app/db", base64.b64encode(b"postgres://x").decode() + "\n"),
        (["-stale", "app/db"], [PAIR], "/v1/kv/app/db?stale=", "postgres://x\n"),
        (["-recurse", "app"], [EMPTY, PAIR], "/v1/kv/app?recurse=", "app/:\napp/db:postgres://x\n"),
        (["-keys", "app/"], ["app/db", "app/sub/"], "/v1/kv/app/?keys=&separator=%2F", "app/db\napp/sub/\n"),
        (["-keys", "-separator=", "app/"], ["app/db"], "/v1/kv/app/?keys=", "app/db\n"),
        (["-keys"], [], "/v1/kv/?keys=&separator=%2F", ""),
        (["-keys", "-recurse", "app"], [EMPTY, PAIR], "/v1/kv/app?recurse=", "app/\napp/db\n"),
        (["-datacenter", "dc2", "a b?"], [PAIR], "/v1/kv/a%20b%3F?dc=dc2", "postgres://x\n"),
    ],
)
def test_get_forms(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    answer: Any,
    request_path: str,
    out: str,
) -> None:
    fake.answer("GET", request_path.split("?")[0], body=answer)
    assert run(capsys, "kv", "get", "-http-addr", fake.addr, *argv) == (0, out, "")
    assert seen(fake) == [("GET", request_path)]


def test_get_detailed_layout(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """tabwriter with padding 6 over the names; -recurse separates pairs with one blank line."""
    held = {**PAIR, "Session": "adf4238a-882b-9ddc-4a9d-5b6758e4159e"}
    fake.answer("GET", "/v1/kv/app", body=[EMPTY, held])
    code, out, err = run(capsys, "kv", "get", "-recurse", "-detailed", "-http-addr", fake.addr, "app")
    assert (code, err) == (0, "")
    assert out == (
        "CreateIndex      3\nFlags            0\nKey              app/\nLockIndex        0\nModifyIndex      3\n"
        "Session          -\nValue            \n"
        "\n"
        "CreateIndex      7\nFlags            42\nKey              app/db\nLockIndex        1\nModifyIndex      9\n"
        "Session          adf4238a-882b-9ddc-4a9d-5b6758e4159e\nValue            postgres://x\n"
    )


def test_get_binary_value_is_written_unchanged(fake: FakeAgent, capsysbinary: pytest.CaptureFixture[bytes]) -> None:  # noqa: F811
    raw = bytes(range(256))
    fake.answer("GET", "/v1/kv/bin", body=[{**PAIR, "Key": "bin", "Value": base64.b64encode(raw).decode()}])
    assert entry.main(["kv", "get", "-http-addr", fake.addr, "bin"]) == 0
    out, err = capsysbinary.readouterr()
    assert (out, err) == (raw + b"\n", b"")


@pytest.mark.parametrize(
    ("argv", "status", "body", "err"),
    [
        (["missing"], 404, b"", "Error! No key exists at: missing\n"),
        (["k"], 500, b"No cluster leader",
         "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n"),
        (["-recurse", "k"], 403, b"Permission denied",
         "Error querying Consul agent: Unexpected response code: 403 (Permission denied)\n"),
        ([], None, b"", "Error! Missing KEY argument\n"),
        (["a", "b"], None, b"", "Too many arguments (expected 1, got 2)\n"),
    ],
)  # fmt: skip
def test_get_errors(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int | None,
    body: bytes,
    err: str,
) -> None:
    if status is not None:
        fake.answer("GET", "/v1/kv/" + argv[-1], status, body)
    assert run(capsys, "kv", "get", "-http-addr", fake.addr, *argv) == (1, "", err)
    assert len(fake.seen) == (0 if status is None else 1)


def test_get_unreachable_agent(capsys: pytest.CaptureFixture[str]) -> None:
    addr = dead_addr()
    code, out, err = run(capsys, "kv", "get", "-http-addr", addr, "k")
    assert (code, out) == (1, "")
    assert err == (
        f'Error querying Consul agent: Get "http://{addr}/v1/kv/k": dial tcp {addr}: connect: connection refused\n'
    )


# --------------------------------------------------------------------------------------------------------------
# put


@pytest.mark.parametrize(
    ("argv", "answer", "request_path", "body", "out"),
    [
        (["k", "v"], "true", "/v1/kv/k", b"v", "Success! Data written to: k\n"),
        (["k"], "true", "/v1/kv/k", b"", "Success! Data written to: k\n"),
        (["k", ""], "true", "/v1/kv/k", b"", "Success! Data written to: k\n"),
        (["k", "-x"], "true", "/v1/kv/k", b"-x", "Success! Data written to: k\n"),  # only a lone - is stdin
        (["-flags=42", "k", "v"], "true", "/v1/kv/k?flags=42", b"v", "Success! Data written to: k\n"),
        (["-flags=0x10", "k", "v"], "true", "/v1/kv/k?flags=16", b"v", "Success! Data written to: k\n"),
        (["-base64", "k", "aGk="], "true", "/v1/kv/k", b"hi", "Success! Data written to: k\n"),
        (["-cas", "-modify-index=9", "k", "v"], "true", "/v1/kv/k?cas=9", b"v", "Success! Data written to: k\n"),
        (["-cas", "k", "v"], "true", "/v1/kv/k?cas=0", b"v", "Success! Data written to: k\n"),
        (["-acquire", "-session=s1", "k", "v"], "true", "/v1/kv/k?acquire=s1", b"v", "Success! Lock acquired on: k\n"),
        (["-release", "-session=s1", "k"], "true", "/v1/kv/k?release=s1", b"", "Success! Lock released on: k\n"),
        # A session without -acquire/-release is not sent, as the Go client's Put ignores it.
        (["-session=s1", "k", "v"], "false", "/v1/kv/k", b"v", "Success! Data written to: k\n"),
    ],
)  # fmt: skip
def test_put_forms(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    answer: str,
    request_path: str,
    body: bytes,
    out: str,
) -> None:
    fake.answer("PUT", request_path.split("?")[0], body=answer)
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, *argv) == (0, out, "")
    assert seen(fake) == [("PUT", request_path)]
    assert fake.seen[0].body == body
    assert fake.seen[0].headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("argv", "answer", "err"),
    [
        (["-cas", "-modify-index=9", "k", "v"], "false", "Error! Did not write to k: CAS failed\n"),
        (["-cas", "k", "v"], "false",
         "Error! Did not write to k: CAS performed with index=0 and key already exists.\n"),
        (["-acquire", "-session=s1", "k"], "false", "Error! Did not acquire lock\n"),
        (["-release", "-session=s1", "k"], "false", "Error! Did not release lock\n"),
    ],
)  # fmt: skip
def test_put_refused(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], argv: list[str], answer: str, err: str  # noqa: F811
) -> None:
    fake.answer("PUT", "/v1/kv/k", body=answer)
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, *argv) == (1, "", err)


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([], "Error! Missing KEY argument\n"),
        (["a", "b", "c"], "Error! Too many arguments (expected 1 or 2, got 3)\n"),
        (["-acquire", "k", "v"], "Error! Missing -session (required with -acquire and -release)\n"),
        (["-release", "k"], "Error! Missing -session (required with -acquire and -release)\n"),
        (["-base64", "k", "not base64!"], "Error! Cannot base 64 decode data: illegal base64 data at input byte 3\n"),
        (["k", "@/nonexistent/file"],
         "Error! Failed to read file: open /nonexistent/file: no such file or directory\n"),
    ],
)  # fmt: skip
def test_put_bad_input_sends_nothing(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], argv: list[str], err: str  # noqa: F811
) -> None:
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, *argv) == (1, "", err)
    assert fake.seen == []


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("-flags=x", 'invalid value "x" for flag -flags: parse error'),
        ("-flags=-1", 'invalid value "-1" for flag -flags: parse error'),
        ("-modify-index=18446744073709551616", 'invalid value "18446744073709551616" for flag -modify-index: '
                                               "value out of range"),
    ],
)  # fmt: skip
def test_put_bad_numbers_are_flag_errors(capsys: pytest.CaptureFixture[str], flag: str, message: str) -> None:
    code, out, err = run(capsys, "kv", "put", flag, "k", "v")
    assert (code, out) == (1, "")
    assert err.startswith(message + "\nUsage: consul kv put [options] KEY [DATA]\n")


def test_put_from_file_and_stdin(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake.answer("PUT", "/v1/kv/k", body="true")
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\xffline\n")
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, "k", f"@{blob}")[0] == 0
    monkeypatch.setattr(cli_kv, "_read_stdin", lambda: b"from stdin\n")
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, "k", "-")[0] == 0
    assert [s.body for s in fake.seen] == [b"\x00\xffline\n", b"from stdin\n"]


def test_put_server_error(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    fake.answer("PUT", "/v1/kv/k", 413, "Value exceeds 524288 byte limit")
    assert run(capsys, "kv", "put", "-http-addr", fake.addr, "k", "v") == (
        1,
        "",
        "Error! Failed writing data: Unexpected response code: 413 (Value exceeds 524288 byte limit)\n",
    )


# --------------------------------------------------------------------------------------------------------------
# delete


@pytest.mark.parametrize(
    ("argv", "answer", "request_path", "code", "out", "err"),
    [
        (["k"], "true", "/v1/kv/k", 0, "Success! Deleted key: k\n", ""),
        (["/k"], "true", "/v1/kv/k", 0, "Success! Deleted key: k\n", ""),
        (["-recurse", "app"], "true", "/v1/kv/app?recurse=", 0, "Success! Deleted keys with prefix: app\n", ""),
        (["-recurse"], "true", "/v1/kv/?recurse=", 0, "Success! Deleted keys with prefix: \n", ""),
        (["-cas", "-modify-index=5", "k"], "true", "/v1/kv/k?cas=5", 0, "Success! Deleted key: k\n", ""),
        (["-cas", "-modify-index=5", "k"], "false", "/v1/kv/k?cas=5", 1, "",
         "Error! Did not delete key k: CAS failed\n"),
    ],
)  # fmt: skip
def test_delete_forms(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    answer: str,
    request_path: str,
    code: int,
    out: str,
    err: str,
) -> None:
    fake.answer("DELETE", request_path.split("?")[0], body=answer)
    assert run(capsys, "kv", "delete", "-http-addr", fake.addr, *argv) == (code, out, err)
    assert seen(fake) == [("DELETE", request_path)]


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([], "Error! Missing KEY argument\n"),
        (["a", "b"], "Too many arguments (expected 1, got 2)\n"),
        (["-cas", "k"], "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.\n"),
        (["-modify-index=3", "k"], "Cannot specify -modify-index without -cas!\n"),
        (["-recurse", "-cas", "-modify-index=3", "k"], "Cannot specify both -cas and -recurse!\n"),
    ],
)
def test_delete_bad_input_sends_nothing(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], argv: list[str], err: str  # noqa: F811
) -> None:
    assert run(capsys, "kv", "delete", "-http-addr", fake.addr, *argv) == (1, "", err)
    assert fake.seen == []


def test_delete_error_texts(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    fake.answer("DELETE", "/v1/kv/k", 500, "No cluster leader")
    reason = "Unexpected response code: 500 (No cluster leader)"
    assert run(capsys, "kv", "delete", "-http-addr", fake.addr, "k")[2] == f"Error deleting key k: {reason}\n"
    assert run(capsys, "kv", "delete", "-http-addr", fake.addr, "-recurse", "k")[2] == (
        f"Error! Did not delete prefix k: {reason}\n"
    )


# --------------------------------------------------------------------------------------------------------------
# export / import


def test_export_is_go_marshal_indent(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    fake.answer("GET", "/v1/kv/app", body=[EMPTY, {**PAIR, "Key": "app/<&>é"}])
    code, out, err = run(capsys, "kv", "export", "-http-addr", fake.addr, "app")
    assert (code, err) == (0, "")
    value = base64.b64encode(b"postgres://x").decode()
    assert out == (
        '[\n\t{\n\t\t"key": "app/",\n\t\t"flags": 0,\n\t\t"value": ""\n\t},\n'
        f'\t{{\n\t\t"key": "app/\\u003c\\u0026\\u003eé",\n\t\t"flags": 42,\n\t\t"value": "{value}"\n\t}}\n]\n'
    )
    assert seen(fake) == [("GET", "/v1/kv/app?recurse=")]


def test_export_nothing_is_an_empty_list(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    fake.answer("GET", "/v1/kv/", 404)
    assert run(capsys, "kv", "export", "-http-addr", fake.addr) == (0, "[]\n", "")


def test_import_writes_each_entry(
    fake: FakeAgent,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    for path in ("/v1/kv/p/a", "/v1/kv/p/dir/", "/v1/kv/p/b"):
        fake.answer("PUT", path, body="true")
    data = json.dumps([
        {"key": "a", "flags": 0, "value": base64.b64encode(b"1").decode()},
        {"Key": "dir/", "Flags": 7, "Value": ""},  # Go's decoder matches field names case-insensitively
        {"key": "x//../b", "flags": 0, "value": "Mg=="},  # path.Join cleans
    ])
    code, out, err = run(capsys, "kv", "import", "-http-addr", fake.addr, "-prefix=p", data)
    assert (code, err) == (0, "")
    assert out == "Imported: p/a\nImported: p/dir/\nImported: p/b\n"
    assert seen(fake) == [("PUT", "/v1/kv/p/a"), ("PUT", "/v1/kv/p/dir/?flags=7"), ("PUT", "/v1/kv/p/b")]
    assert [s.body for s in fake.seen] == [b"1", b"", b"2"]


@pytest.mark.parametrize(
    ("data", "err"),
    [
        ("", "Error! Empty DATA argument\n"),
        ("{not json", "Cannot unmarshal data: "),
        ('{"key": "a"}', "Cannot unmarshal data: json: cannot unmarshal object into Go value of type "
                         "[]*impexp.Entry\n"),
        ('[{"key": "a", "flags": -1, "value": ""}]', "Cannot unmarshal data: json: cannot unmarshal number -1 into "
                                                      "Go struct field Entry.flags of type uint64\n"),
        # A bad value late in the file: nothing at all is written.
        ('[{"key": "a", "value": "MQ=="}, {"key": "b", "value": "%%%"}]',
         "Error base 64 decoding value for key b: illegal base64 data at input byte 0\n"),
    ],
)  # fmt: skip
def test_import_bad_input_writes_nothing(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], data: str, err: str  # noqa: F811
) -> None:
    code, out, got = run(capsys, "kv", "import", "-http-addr", fake.addr, data)
    assert (code, out) == (1, "")
    assert got.startswith(err) if not err.endswith("\n") else got == err
    assert fake.seen == []


# --------------------------------------------------------------------------------------------------------------
# The group and the helpers


def test_kv_without_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["kv"], ["kv", "bogus"]):
        code, out, err = run(capsys, *argv)
        assert (code, err) == (1, "")
        assert out.startswith("Usage: consul kv <subcommand> [options] [args]\n")
        assert "Subcommands:\n    delete    Removes data from the KV store\n" in out
    code, out, _ = run(capsys, "kv", "-h")
    assert code == 0
    assert out.startswith("Usage: consul kv <subcommand>")
    code, out, _ = run(capsys, "kv", "put", "-h")
    assert code == 0
    assert out.startswith("Usage: consul kv put [options] KEY [DATA]\n")
    assert "  -modify-index=<uint>\n" in out


def test_top_level_help_lists_kv_and_lock(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "\n    kv             Interact with the key-value store\n" in out
    assert "\n    lock           Execute a command holding a lock\n" in out


@pytest.mark.parametrize(
    ("parts", "joined"),
    [(("", ""), ""), (("p", "a"), "p/a"), (("", "a//b/"), "a/b"), (("p", "../x"), "x"), (("", "//a"), "/a")],
)
def test_go_path_join(parts: tuple[str, ...], joined: str) -> None:
    assert kvapi.go_path_join(*parts) == joined


def test_go_int_flags() -> None:
    assert [goflags.go_uint(t) for t in ("0", "017", "0x1F", "0b101", "1_000", "0o7")] == [0, 15, 31, 5, 1000, 7]
    for bad in ("", "-1", "x", "1__0", "0x", "1e3"):
        with pytest.raises(ValueError, match=r"^parse error$"):
            goflags.go_uint(bad)
    assert goflags.go_int("-0x10") == -16
    with pytest.raises(ValueError, match=r"^value out of range$"):
        goflags.go_int(str(1 << 63))


# --------------------------------------------------------------------------------------------------------------
# End to end: a real -dev agent


@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `python -m agent -dev` on a fresh loopback address; yields its HTTP address."""
    with start_dev_agent(tmp_path_factory.mktemp("kvdev"), next_loopback_ip()) as addr:
        yield addr


def kv_cli(addr: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", "kv", *args],
        input=stdin,
        capture_output=True,
        env={**env, "CONSUL_HTTP_ADDR": addr},
        cwd=REPO,
        timeout=60,
    )


def test_round_trip_against_a_real_agent(dev_agent: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01binary\xff")
    assert kv_cli(dev_agent, "put", "rt/a", "alpha").stdout == b"Success! Data written to: rt/a\n"
    assert kv_cli(dev_agent, "put", "-flags=7", "rt/bin", f"@{blob}").returncode == 0
    assert kv_cli(dev_agent, "put", "rt/in", "-", stdin=b"piped\n").returncode == 0
    assert kv_cli(dev_agent, "put", "rt/dir/").returncode == 0
    assert kv_cli(dev_agent, "get", "rt/bin").stdout == b"\x00\x01binary\xff\n"
    assert kv_cli(dev_agent, "get", "-recurse", "rt").stdout == (
        b"rt/a:alpha\nrt/bin:\x00\x01binary\xff\nrt/dir/:\nrt/in:piped\n\n"
    )
    assert kv_cli(dev_agent, "get", "-keys", "rt/").stdout == b"rt/a\nrt/bin\nrt/dir/\nrt/in\n"
    detailed = kv_cli(dev_agent, "get", "-detailed", "rt/bin").stdout.decode("latin-1").splitlines()
    assert detailed[1:4] == ["Flags            7", "Key              rt/bin", "LockIndex        0"]
    modify_index = int(detailed[4].split()[1])

    # CAS with a stale index is refused and changes nothing; with the current one it writes.
    stale = kv_cli(dev_agent, "put", "-cas", f"-modify-index={modify_index - 1}", "rt/bin", "x")
    assert (stale.returncode, stale.stderr) == (1, b"Error! Did not write to rt/bin: CAS failed\n")
    assert kv_cli(dev_agent, "put", "-cas", f"-modify-index={modify_index}", "-flags=7", "rt/bin", "y").returncode == 0
    assert kv_cli(dev_agent, "get", "rt/bin").stdout == b"y\n"

    exported = kv_cli(dev_agent, "export", "rt/")
    assert exported.returncode == 0
    entries = json.loads(exported.stdout)
    assert [(e["key"], e["flags"], base64.b64decode(e["value"])) for e in entries] == [
        ("rt/a", 0, b"alpha"), ("rt/bin", 7, b"y"), ("rt/dir/", 0, b""), ("rt/in", 0, b"piped\n"),
    ]  # fmt: skip
    assert kv_cli(dev_agent, "delete", "-recurse", "rt/").stdout == b"Success! Deleted keys with prefix: rt/\n"
    missing = kv_cli(dev_agent, "get", "rt/a")
    assert (missing.returncode, missing.stderr) == (1, b"Error! No key exists at: rt/a\n")

    dump = tmp_path / "dump.json"
    dump.write_bytes(exported.stdout)
    imported = kv_cli(dev_agent, "import", f"@{dump}")
    assert imported.stdout == b"Imported: rt/a\nImported: rt/bin\nImported: rt/dir/\nImported: rt/in\n"
    again = kv_cli(dev_agent, "export", "rt/")
    assert json.loads(again.stdout) == entries
    assert kv_cli(dev_agent, "import", "-prefix=copy", "-", stdin=exported.stdout).returncode == 0
    assert kv_cli(dev_agent, "get", "copy/rt/in").stdout == b"piped\n\n"  # the value, then a newline


def test_lock_verbs_against_a_real_agent(dev_agent: str) -> None:
    import requests

    session = requests.put(f"http://{dev_agent}/v1/session/create", json={"Name": "cli"}, timeout=10).json()["ID"]
    other = requests.put(f"http://{dev_agent}/v1/session/create", json={"Name": "x"}, timeout=10).json()["ID"]
    try:
        got = kv_cli(dev_agent, "put", "-acquire", f"-session={session}", "lk/leader", "me")
        assert got.stdout == b"Success! Lock acquired on: lk/leader\n"
        refused = kv_cli(dev_agent, "put", "-acquire", f"-session={other}", "lk/leader", "you")
        assert (refused.returncode, refused.stderr) == (1, b"Error! Did not acquire lock\n")
        detailed = kv_cli(dev_agent, "get", "-detailed", "lk/leader").stdout.decode()
        assert f"Session          {session}\n" in detailed
        assert "LockIndex        1\n" in detailed
        unknown = kv_cli(dev_agent, "put", "-acquire", "-session=00000000-0000-0000-0000-000000000000", "lk/z")
        assert unknown.returncode == 1
        assert unknown.stderr.startswith(b"Error! Failed writing data: Unexpected response code: 500 (")
        assert kv_cli(dev_agent, "put", "-release", f"-session={session}", "lk/leader").returncode == 0
        assert "Session          -\n" in kv_cli(dev_agent, "get", "-detailed", "lk/leader").stdout.decode()
    finally:
        for s in (session, other):
            requests.put(f"http://{dev_agent}/v1/session/destroy/{s}", timeout=10)
