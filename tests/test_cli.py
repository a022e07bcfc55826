"""The `consul`-style CLI (agent/cli.py) and `python -m agent` dispatch (agent/__main__.py).

The CLI talks to a tiny stdlib HTTP server in a thread that serves recorded Consul-shaped JSON and records each
request, so these tests check the exact text scripts would parse (consul-compat §4) and the exact requests the
agent will receive (§1.2.6-1.2.8), without an agent.  End-to-end runs against the real agent live elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import agent
from agent import __main__ as entry
from agent import cli, cli_client, goflags

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------------------------
# Recorded Consul-shaped answers


def _server_tags(node_id: str) -> dict[str, str]:
    return {
        "acls": "0",
        "build": "1.20.1:2c7bc1d0",
        "dc": "dc1",
        "expect": "3",
        "ft_fs": "1",
        "ft_si": "1",
        "grpc_tls_port": "8503",
        "id": node_id,
        "port": "8300",
        "raft_vsn": "3",
        "role": "consul",
        "segment": "",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
        "wan_join_port": "8302",
    }


def _member(name: str, addr: str, status: int, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "Name": name,
        "Addr": addr,
        "Port": 8301,
        "Tags": tags,
        "Status": status,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


CLIENT_Z_TAGS = {
    "build": "1.16.2:68f81912",
    "dc": "dc1",
    "id": "92123fc9-5214-5817-218c-954cab793c15",
    "role": "node",
    "segment": "",
    "vsn": "2",
    "vsn_max": "3",
    "vsn_min": "2",
}

# Deliberately unsorted, with every rendering rule in play: two servers, a failed client, a left client on IPv6
# without a build tag, and a member without a role tag.
MEMBERS = [
    _member("server-b", "10.0.0.12", 1, _server_tags("b0000000-0000-0000-0000-000000000002")),
    _member("client-z", "10.0.0.21", 4, CLIENT_Z_TAGS),
    _member("mystery", "10.0.0.99", 1, {"foo": "bar"}),
    _member("client-a", "::1", 3, {"dc": "dc1", "role": "node", "segment": "", "vsn": "2"}),
    _member("server-a", "10.0.0.11", 1, _server_tags("a0000000-0000-0000-0000-000000000001")),
]

MEMBERS_TABLE = [
    "Node      Address         Status  Type     Build   Protocol  DC   Partition  Segment",
    "server-a  10.0.0.11:8301  alive   server   1.20.1  2         dc1  default    <all>",
    "server-b  10.0.0.12:8301  alive   server   1.20.1  2         dc1  default    <all>",
    "client-a  [::1]:8301      left    client   < 0.3   2         dc1  default    <default>",
    "client-z  10.0.0.21:8301  failed  client   1.16.2  2         dc1  default    <default>",
    # columnize pads the empty middle cells too, so Consul prints trailing spaces here
    "mystery   10.0.0.99:8301  alive   unknown  " + " " * (8 + 10 + 5 + 11),
]

SELF = {
    "Config": {"Datacenter": "dc1", "NodeName": "server-a", "Server": True, "Version": "1.20.1"},
    "Member": MEMBERS[4],
    "Stats": {
        "serf_lan": {"members": "5", "failed": "1", "encrypted": "false"},
        "agent": {"services": "0", "checks": "0", "check_ttls": "0", "check_monitors": "0"},
        "consul": {"server": "true", "leader": "true", "leader_addr": "10.0.0.11:8300", "bootstrap": "false"},
        "build": {"version": "1.20.1", "revision": "2c7bc1d0", "prerelease": "", "version_metadata": ""},
    },
    "Meta": {"consul-network-segment": ""},
}

INFO_TEXT = """agent:
\tcheck_monitors = 0
\tcheck_ttls = 0
\tchecks = 0
\tservices = 0
build:
\tprerelease = 
\trevision = 2c7bc1d0
\tversion = 1.20.1
\tversion_metadata = 
consul:
\tbootstrap = false
\tleader = true
\tleader_addr = 10.0.0.11:8300
\tserver = true
serf_lan:
\tencrypted = false
\tfailed = 1
\tmembers = 5
"""  # noqa: W291 -- empty values print as `key = ` with the trailing space

JOIN_ERROR = (
    "1 error occurred:\n\t* Failed to join 10.0.0.9:8301: dial tcp 10.0.0.9:8301: connect: connection refused\n\n"
)


# --------------------------------------------------------------------------------------------------------------
# The fake agent


@dataclass
class Seen:
    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class FakeAgent:
    """Routes (method, path without query) -> (status, body) and a log of every request."""

    addr: str = ""
    routes: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def answer(self, method: str, path: str, status: int = 200, body: Any = b"") -> None:
        if not isinstance(body, bytes):
            body = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.routes[(method, path)] = (status, body)


def _handler_for(fake: FakeAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            status, body = fake.routes.get((self.command, self.path.split("?", 1)[0]), (404, b"404 page not found\n"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body[:1] in (b"[", b"{") else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_DELETE = _serve  # http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeAgent]:
    state = FakeAgent()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.addr = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own CONSUL_* settings must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("CONSUL_"):
            monkeypatch.delenv(name)


def dead_addr() -> str:
    """127.0.0.1:<port> where nothing listens (bound then closed), so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------------------
# members


def test_members_table_exact(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/members", body=MEMBERS)
    code, out, err = run(capsys, "members", "-http-addr", fake.addr)
    assert (code, err) == (0, "")
    assert out == "\n".join(MEMBERS_TABLE) + "\n"
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/v1/agent/members?segment=_all")]


def test_members_detailed_shows_synthesised_tags(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/members", body=[MEMBERS[1], MEMBERS[0], MEMBERS[2]])
    code, out, _ = run(capsys, "members", "-detailed", f"-http-addr={fake.addr}")
    assert code == 0
    server_tags = (
        "acls=0,ap=default,build=1.20.1:2c7bc1d0,dc=dc1,expect=3,ft_fs=1,ft_si=1,grpc_tls_port=8503,"
        "id=b0000000-0000-0000-0000-000000000002,port=8300,raft_vsn=3,role=consul,segment=<all>,vsn=2,vsn_max=3,"
        "vsn_min=2,wan_join_port=8302"
    )
    client_tags = (
        "ap=default,build=1.16.2:68f81912,dc=dc1,id=92123fc9-5214-5817-218c-954cab793c15,role=node,"
        "segment=<default>,vsn=2,vsn_max=3,vsn_min=2"
    )
    assert out.splitlines() == [
        "Node      Address         Status  Tags",
        f"server-b  10.0.0.12:8301  alive   {server_tags}",
        f"client-z  10.0.0.21:8301  failed  {client_tags}",
        "mystery   10.0.0.99:8301  alive   ap=default,foo=bar,segment=<default>",
    ]


@pytest.mark.parametrize(
    ("regex", "names"),
    [
        ("alive", ["server-a", "server-b", "mystery"]),
        ("a.*e", ["server-a", "server-b", "client-z", "mystery"]),  # unanchored: inside "alive" and "failed"
        ("fail", ["client-z"]),
        ("left|failed", ["client-a", "client-z"]),
        ("^l", ["client-a"]),
    ],
)
def test_members_status_filter_is_unanchored(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], regex: str, names: list[str]
) -> None:
    fake.answer("GET", "/v1/agent/members", body=MEMBERS)
    code, out, _ = run(capsys, "members", "--status", regex, "--http-addr", fake.addr)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == names


def test_members_no_match_exits_2_silently(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/members", body=MEMBERS)
    assert run(capsys, "members", "-status=leaving", "-http-addr", fake.addr) == (2, "", "")


def test_members_null_answer_exits_2(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    """`-wan` on a client agent: the API says null, the CLI prints nothing and exits 2."""
    fake.answer("GET", "/v1/agent/members", body="null")
    assert run(capsys, "members", "-wan", "-http-addr", fake.addr) == (2, "", "")
    assert fake.seen[0].path == "/v1/agent/members?segment=_all&wan=1"


def test_members_bad_regexp(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "members", "-status=(")
    assert (code, out) == (1, "")
    assert err.startswith("Failed to compile status regexp: ")


def test_members_api_error(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/members", 500, "rpc error: boom\n")
    code, out, err = run(capsys, "members", "-http-addr", fake.addr)
    assert (code, out) == (1, "")
    assert err == "Error retrieving members: Unexpected response code: 500 (rpc error: boom)\n"


def test_unreachable_agent(capsys: pytest.CaptureFixture[str]) -> None:
    addr = dead_addr()
    code, out, err = run(capsys, "members", "-http-addr", addr)
    assert (code, out) == (1, "")
    assert err == (
        f'Error retrieving members: Get "http://{addr}/v1/agent/members?segment=_all": '
        f"dial tcp {addr}: connect: connection refused\n"
    )


# --------------------------------------------------------------------------------------------------------------
# Finding the agent


@pytest.mark.parametrize("prefix", ["", "http://"])
def test_consul_http_addr(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    fake.answer("GET", "/v1/agent/members", body=MEMBERS)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", prefix + fake.addr)
    code, out, _ = run(capsys, "members")
    assert code == 0
    assert out.splitlines()[1].startswith("server-a")


def test_flag_beats_environment(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answer("PUT", "/v1/agent/reload")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", dead_addr())
    assert run(capsys, "reload", "-http-addr", f"http://{fake.addr}") == (0, "Configuration reload triggered\n", "")


def test_default_address_is_local_8500(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_client, "DEFAULT_HTTP_ADDR", dead_addr())
    code, _, err = run(capsys, "info")
    assert code == 1
    assert err.startswith(f'Error querying agent: Get "http://{cli_client.DEFAULT_HTTP_ADDR}/v1/agent/self": dial tcp ')
    assert cli.parse_http_addr("127.0.0.1:8500") == cli.Endpoint("http", "127.0.0.1:8500")


def test_address_forms() -> None:
    assert cli.parse_http_addr("https://h:8501") == cli.Endpoint("https", "h:8501")
    assert cli.parse_http_addr("h:8501", ssl_default=True) == cli.Endpoint("https", "h:8501")
    assert cli.parse_http_addr("http://h:1/consul/") == cli.Endpoint("http", "h:1", "/consul")
    assert cli.parse_http_addr("unix:///run/consul.sock") == cli.Endpoint("unix", "/run/consul.sock")
    with pytest.raises(cli.ClientError, match=r"^Unknown protocol scheme: ftp$"):
        cli.parse_http_addr("ftp://h:1")


def test_unknown_scheme_message(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "ftp://x:1")
    assert run(capsys, "leave") == (1, "", "Error connecting to Consul agent: Unknown protocol scheme: ftp\n")


def test_token_and_path_prefix(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answer("PUT", "/consul/v1/agent/reload")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "s3cr3t")
    assert run(capsys, "reload", "-http-addr", f"http://{fake.addr}/consul")[0] == 0
    assert fake.seen[0].path == "/consul/v1/agent/reload"
    assert fake.seen[0].headers["X-Consul-Token"] == "s3cr3t"


# --------------------------------------------------------------------------------------------------------------
# join


def test_join_counts_successful_arguments(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/join/10.0.0.1")
    fake.answer("PUT", "/v1/agent/join/10.0.0.9", 500, JOIN_ERROR)
    fake.answer("PUT", "/v1/agent/join/%5B::1%5D:8301")
    code, out, err = run(capsys, "join", "-http-addr", fake.addr, "10.0.0.1", "10.0.0.9", "[::1]:8301")
    assert code == 0
    assert out == "Successfully joined cluster by contacting 2 nodes.\n"
    assert err == (
        "Error joining address '10.0.0.9': Unexpected response code: 500 (1 error occurred:\n"
        "\t* Failed to join 10.0.0.9:8301: dial tcp 10.0.0.9:8301: connect: connection refused)\n"
    )
    assert [(s.method, s.path) for s in fake.seen] == [
        ("PUT", "/v1/agent/join/10.0.0.1"),
        ("PUT", "/v1/agent/join/10.0.0.9"),
        ("PUT", "/v1/agent/join/%5B::1%5D:8301"),
    ]


def test_join_all_failed(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/join/10.0.0.9", 500, JOIN_ERROR)
    code, out, err = run(capsys, "join", "-wan", "-http-addr", fake.addr, "10.0.0.9")
    assert (code, out) == (1, "")
    assert err.endswith("connection refused)\nFailed to join any nodes.\n")
    assert fake.seen[0].path == "/v1/agent/join/10.0.0.9?wan=1"


def test_join_needs_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "join")
    assert (code, out) == (1, "")
    assert err.startswith("At least one address to join must be specified.\n\nUsage: consul join [options] address")


def test_join_unreachable_agent(capsys: pytest.CaptureFixture[str]) -> None:
    addr = dead_addr()
    code, _, err = run(capsys, "join", "-http-addr", addr, "10.0.0.1")
    assert code == 1
    assert err == (
        f"Error joining address '10.0.0.1': Put \"http://{addr}/v1/agent/join/10.0.0.1\": "
        f"dial tcp {addr}: connect: connection refused\nFailed to join any nodes.\n"
    )


# --------------------------------------------------------------------------------------------------------------
# leave, force-leave, reload


def test_leave(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/leave")
    assert run(capsys, "leave", "-http-addr", fake.addr) == (0, "Graceful leave complete\n", "")
    assert [(s.method, s.path) for s in fake.seen] == [("PUT", "/v1/agent/leave")]
    assert fake.seen[0].headers.get("Content-Length") == "0"


def test_leave_failure_and_extra_args(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/leave", 500, "no way")
    assert run(capsys, "leave", "-http-addr", fake.addr) == (
        1,
        "",
        "Error leaving: Unexpected response code: 500 (no way)\n",
    )
    code, out, err = run(capsys, "leave", "-http-addr", fake.addr, "now", "please")
    assert code == 1
    assert err == "Error found unexpected args: [now please]\n"
    assert out.startswith("Usage: consul leave")


@pytest.mark.parametrize(
    ("flags", "path"),
    [
        ([], "/v1/agent/force-leave/node-9"),
        (["-prune"], "/v1/agent/force-leave/node-9?prune=1"),
        (["--prune", "-wan"], "/v1/agent/force-leave/node-9?prune=1&wan=1"),
    ],
)
def test_force_leave(fake: FakeAgent, capsys: pytest.CaptureFixture[str], flags: list[str], path: str) -> None:
    fake.answer("PUT", "/v1/agent/force-leave/node-9")
    assert run(capsys, "force-leave", "-http-addr", fake.addr, *flags, "node-9") == (0, "", "")
    assert [(s.method, s.path) for s in fake.seen] == [("PUT", path)]


def test_force_leave_errors(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/force-leave/web%201", 500, "agent: No node found with name 'web 1'")
    code, out, err = run(capsys, "force-leave", "-http-addr", fake.addr, "web 1")
    assert (code, out) == (1, "")
    assert err == "Error force leaving: Unexpected response code: 500 (agent: No node found with name 'web 1')\n"
    code, _, err = run(capsys, "force-leave", "a", "b")
    assert code == 1
    assert err.startswith("A single node name must be specified to force leave.\n\nUsage: consul force-leave")


def test_reload(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("PUT", "/v1/agent/reload")
    assert run(capsys, "reload", "-http-addr", fake.addr) == (0, "Configuration reload triggered\n", "")
    assert [(s.method, s.path) for s in fake.seen] == [("PUT", "/v1/agent/reload")]
    fake.answer("PUT", "/v1/agent/reload", 500, "Failed reloading services: bad\n")
    assert run(capsys, "reload", "-http-addr", fake.addr) == (
        1,
        "",
        "Error reloading: Unexpected response code: 500 (Failed reloading services: bad)\n",
    )


# --------------------------------------------------------------------------------------------------------------
# maint


MAINT_CHECKS = {
    "_node_maintenance": {"CheckID": "_node_maintenance", "Notes": "kernel upgrade", "ServiceID": ""},
    "_service_maintenance:web-1": {"CheckID": "_service_maintenance:web-1", "Notes": "redeploy", "ServiceID": "web-1"},
    "service:web-1": {"CheckID": "service:web-1", "Notes": "", "ServiceID": "web-1"},
}


def test_maint_lists_what_is_in_maintenance(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/self", body={"Config": {"NodeName": "node1"}})
    fake.answer("GET", "/v1/agent/checks", body=MAINT_CHECKS)
    assert run(capsys, "maint", "-http-addr", fake.addr) == (
        0,
        "Node:\n  Name:   node1\n  Reason: kernel upgrade\n\nService:\n  ID:     web-1\n  Reason: redeploy\n\n",
        "",
    )
    fake.answer("GET", "/v1/agent/checks", body={})
    assert run(capsys, "maint", "-http-addr", fake.addr) == (0, "", "")


@pytest.mark.parametrize(
    ("flags", "request_path", "out"),
    [
        (["-enable", "-reason", "disk swap"], "/v1/agent/maintenance?enable=true&reason=disk+swap",
         "Node maintenance is now enabled\n"),
        (["-disable"], "/v1/agent/maintenance?enable=false", "Node maintenance is now disabled\n"),
        (["-enable", "-service", "web-1"], "/v1/agent/service/maintenance/web-1?enable=true&reason=",
         'Service maintenance is now enabled for "web-1"\n'),
        (["-disable", "-service", "web-1"], "/v1/agent/service/maintenance/web-1?enable=false",
         'Service maintenance is now disabled for "web-1"\n'),
    ],
)  # fmt: skip
def test_maint_actions(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], flags: list[str], request_path: str, out: str
) -> None:
    fake.answer("GET", "/v1/agent/self", body={"Config": {"NodeName": "node1"}})
    fake.answer("PUT", request_path.split("?")[0])
    assert run(capsys, "maint", "-http-addr", fake.addr, *flags) == (0, out, "")
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/v1/agent/self"), ("PUT", request_path)]


def test_maint_errors(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    for flags, message in [
        (["-enable", "-disable"], "Only one of -enable or -disable may be provided"),
        (["-disable", "-reason", "x"], "Reason may only be provided with -enable"),
        (["-service", "web"], "Service requires either -enable or -disable"),
    ]:
        assert run(capsys, "maint", "-http-addr", fake.addr, *flags) == (1, "", message + "\n")
    assert fake.seen == []  # refused before asking the agent
    fake.answer("GET", "/v1/agent/self", body={"Config": {"NodeName": "node1"}})
    fake.answer("PUT", "/v1/agent/service/maintenance/nope", 404, 'No service registered with ID "nope"')
    assert run(capsys, "maint", "-http-addr", fake.addr, "-enable", "-service", "nope") == (
        1,
        "",
        'Error enabling service maintenance: Unexpected response code: 404 (No service registered with ID "nope")\n',
    )


# --------------------------------------------------------------------------------------------------------------
# info


def test_info(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/self", body=SELF)
    assert run(capsys, "info", "-http-addr", fake.addr) == (0, INFO_TEXT, "")
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/v1/agent/self")]


def test_info_without_stats(fake: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer("GET", "/v1/agent/self", body={"Config": {"NodeName": "n1"}})
    assert run(capsys, "info", "-http-addr", fake.addr) == (
        1,
        "",
        "Agent response did not contain 'Stats' key: map[Config:map[NodeName:n1]]\n",
    )


# --------------------------------------------------------------------------------------------------------------
# Go flag syntax, rendering helpers


FLAGS = (goflags.Flag("detailed", "", is_bool=True), goflags.Flag("status", ""))


@pytest.mark.parametrize(
    ("args", "values", "rest"),
    [
        (["-detailed", "--status=a", "x"], {"detailed": True, "status": "a"}, ["x"]),
        (["--status", "-weird-", "-detailed=false"], {"status": "-weird-", "detailed": False}, []),
        (["-detailed=1", "--", "-status"], {"detailed": True}, ["-status"]),
        (["x", "-detailed"], {}, ["x", "-detailed"]),  # parsing stops at the first positional
        (["-", "-detailed"], {}, ["-", "-detailed"]),
        (["-status="], {"status": ""}, []),
    ],
)
def test_go_flag_syntax(args: list[str], values: dict[str, Any], rest: list[str]) -> None:
    assert goflags.parse_flags(args, FLAGS) == (values, rest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-status"], "flag needs an argument: -status"),
        (["-detailed=maybe"], 'invalid boolean value "maybe" for -detailed: parse error'),
        (["---detailed"], "bad flag syntax: ---detailed"),
        (["-=x"], "bad flag syntax: -=x"),
    ],
)
def test_go_flag_errors(args: list[str], message: str) -> None:
    with pytest.raises(goflags.FlagError) as info:
        goflags.parse_flags(args, FLAGS)
    assert str(info.value) == message


def test_flag_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "members", "-nope")
    assert (code, out) == (1, "")
    assert err.startswith("flag provided but not defined: -nope\nUsage: consul members")


def test_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "members", "-status=x", "--help")
    assert code == 0
    assert out.startswith("Usage: consul members [options]")
    assert "  -detailed\n" in out


def test_tcp_addr_like_go() -> None:
    assert cli.tcp_addr("10.0.0.1", 8301) == "10.0.0.1:8301"
    assert cli.tcp_addr("fe80:0:0:0:0:0:0:1", 8301) == "[fe80::1]:8301"
    assert cli.tcp_addr("::ffff:10.0.0.1", 8301) == "10.0.0.1:8301"
    assert cli.tcp_addr("not-an-ip", 8301) == ":8301"


def test_columnize_last_column_unpadded() -> None:
    assert cli.columnize([["a", "bb", "c"], ["ccc", "d", "eeeee"], [" x ", "", ""]]) == (
        "a    bb  c\nccc  d   eeeee\nx        "
    )


def test_top_level_help_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    for word in ("help", "-h", "--help"):
        code, out, _ = run(capsys, word)
        assert code == 0
        assert "Available commands are:" in out
        for name in ("agent", "members", "join", "leave", "force-leave", "info", "reload", "version"):
            assert f"\n    {name} " in out
    code, out, err = run(capsys, "bogus")
    assert (code, out) == (127, "")
    assert "Available commands are:" in err


# --------------------------------------------------------------------------------------------------------------
# python -m agent


@pytest.fixture
def fake_supervisor(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace agent.supervisor with a recorder, so dispatch is tested without starting an agent."""
    calls: list[list[str]] = []
    module = types.ModuleType("agent.supervisor")

    def main(argv: list[str]) -> int:
        calls.append(list(argv))
        return 7

    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agent.supervisor", module)
    monkeypatch.setattr(agent, "supervisor", module, raising=False)
    return calls


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], []),
        (["agent", "-dev"], ["-dev"]),
        (["-dev", "-node=n1"], ["-dev", "-node=n1"]),
        (["--config-dir", "/etc/x"], ["--config-dir", "/etc/x"]),
    ],
)
def test_main_runs_the_agent(fake_supervisor: list[list[str]], argv: list[str], expected: list[str]) -> None:
    assert entry.main(argv) == 7
    assert fake_supervisor == [expected]


def test_main_runs_the_cli(fake_supervisor: list[list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--help"]) == 0
    assert entry.main(["members", "-status=("]) == 1
    assert fake_supervisor == []
    assert "Available commands are:" in capsys.readouterr().out


def test_main_without_supervisor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "agent.supervisor", None)  # makes the import fail as if the file were absent
    monkeypatch.delattr(agent, "supervisor", raising=False)
    assert entry.main(["-dev"]) == 1
    assert "agent/supervisor.py is missing" in capsys.readouterr().err


def _python_m_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_subprocess_members(fake: FakeAgent) -> None:
    fake.answer("GET", "/v1/agent/members", body=MEMBERS)
    done = _python_m_agent("members", env={"CONSUL_HTTP_ADDR": f"http://{fake.addr}"})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "\n".join(MEMBERS_TABLE) + "\n"
    done = _python_m_agent("members", "-status", "leaving", "-http-addr", fake.addr)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "")


def test_subprocess_help_version_and_errors() -> None:
    done = _python_m_agent("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: python -m agent [--version] [--help] <command> [<args>]\n")
    done = _python_m_agent("version")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].startswith(("Consul v", "triumvir v"))
    addr = dead_addr()
    done = _python_m_agent("leave", "-http-addr", addr)
    assert (done.returncode, done.stdout) == (1, "")
    assert (
        done.stderr
        == f'Error leaving: Put "http://{addr}/v1/agent/leave": dial tcp {addr}: connect: connection refused\n'
    )


def test_the_cli_module_imports_no_trio() -> None:
    """cli.py's promise (issue 15): the CLI reaches the agent over http.client and never loads trio."""
    code = "import sys, agent.cli; print(sorted(m for m in sys.modules if m == 'trio' or m.startswith('trio.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_every_cli_command_module_imports_no_trio() -> None:
    """The whole command table (agent/__main__.py: kv, lock, event, watch, rtt, acl, ...) only speaks HTTP, so
    `python -m agent <command>` loads no trio either; only running the agent itself does."""
    code = ("import sys, agent.__main__ as m; assert {'watch', 'rtt', 'event', 'kv', 'acl'} <= set(m.COMMANDS); "
            "print(sorted(m for m in sys.modules if m == 'trio' or m.startswith('trio.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "[]"
