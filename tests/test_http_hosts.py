"""Issue 16, item 14: DNS rebinding.  ``http_config.allowed_hosts``, and the stream and page refusing foreign Hosts.

Real sockets: in-process servers on loopback for the unset case, a real agent process for the configured one.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from conftest import next_loopback_ip
from http_fakes import FakeAgent, member, read_replies, request_bytes, run, server_config, serving, settled_index
from test_http_starvation import connect_from

from agent.config import ConfigError, load_config

TIMEOUT = 10


async def ask(addr: tuple[str, int], method: str, target: str, host: str, **headers: str) -> tuple[int, bytes]:
    async with await trio.open_tcp_stream(*addr) as stream:
        await stream.send_all(request_bytes(method, target, headers={"Host": host, **headers}))
        (reply,) = await read_replies(stream, 1, method=method.encode())
        return reply.status, reply.body


async def upgrade_status(addr: tuple[str, int], host: str, origin: str = "") -> bytes:
    """The status line a websocket upgrade of the stream gets with this Host (and Origin)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /v1/stream/members HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n" + (f"Origin: {origin}\r\n" if origin else "")
        + "\r\n"
    )
    async with await trio.open_tcp_stream(*addr) as stream:
        await stream.send_all(head.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


def ui_agent() -> FakeAgent:
    api = FakeAgent(config=server_config(ui=True))
    api.add_self()
    return api


def test_unset_the_api_answers_any_host_but_the_stream_and_page_only_their_own() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(ui_agent()) as addr:
                own = f"{addr[0]}:{addr[1]}"
                # The API as Consul's: any Host.
                assert (await ask(addr, "GET", "/v1/agent/self", "evil.example:8500"))[0] == 200
                # The page: its own names only.
                for host in (own, "localhost:8500", "127.0.0.1", "[::1]:8500", "node1:8500"):
                    assert (await ask(addr, "GET", "/ui/", host))[0] == 200, host
                status, body = await ask(addr, "GET", "/ui/", "evil.example:8500")
                assert status == 403 and b"DNS rebinding" in body and b"http_config.allowed_hosts" in body
                # The stream: a rebinding page names its own host; refused before the handshake.
                assert (await upgrade_status(addr, "evil.example:8500")).startswith(b"HTTP/1.1 403 ")
                assert (await upgrade_status(addr, own)).startswith(b"HTTP/1.1 101 ")
                # Our own page's origin is fine; another origin is refused, as before.
                assert (await upgrade_status(addr, own, f"http://{own}")).startswith(b"HTTP/1.1 101 ")
                assert (await upgrade_status(addr, own, "http://evil.example")).startswith(b"HTTP/1.1 403 ")

    run(main)


def test_allowed_hosts_in_process() -> None:
    api = FakeAgent(config=server_config(ui=True, http_allowed_hosts=("consul.example", "Consul.Other.")))
    api.add_self()
    api.apply("member-join", member("web-2", "10.0.0.13"))

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api) as addr:
                for host in ("consul.example:8500", "consul.other", "CONSUL.EXAMPLE", f"{addr[0]}:{addr[1]}"):
                    assert (await ask(addr, "GET", "/v1/catalog/nodes", host))[0] == 200, host
                    assert (await ask(addr, "GET", "/ui/", host))[0] == 200, host
                status, body = await ask(addr, "PUT", "/v1/agent/leave", "evil.example:8500")
                assert status == 403 and b"'evil.example:8500' is not allowed" in body
                assert api.leaves == 0
                assert (await upgrade_status(addr, "consul.example:8500")).startswith(b"HTTP/1.1 101 ")
                assert (await upgrade_status(addr, "evil.example")).startswith(b"HTTP/1.1 403 ")
                # A refusal keeps the connection: the next request on it is served.
                async with await trio.open_tcp_stream(*addr) as stream:
                    await stream.send_all(request_bytes("GET", "/v1/agent/self", headers={"Host": "evil.example"}))
                    await stream.send_all(request_bytes("GET", "/v1/agent/self"))
                    assert [r.status for r in await read_replies(stream, 2)] == [403, 200]

    run(main)


def test_allowed_hosts_and_the_per_client_cap_from_a_real_config(cluster: Any) -> None:
    a = cluster.start("a", server=True, extra={
        "http_config": {"allowed_hosts": ["consul.example"]},
        "limits": {"http_max_conns_per_client": 3},
    })
    base = f"http://{a.http_addr}"
    refused = requests.put(f"{base}/v1/agent/leave", headers={"Host": "evil.example:8500"}, timeout=5)
    assert refused.status_code == 403 and "http_config.allowed_hosts" in refused.text
    assert requests.get(f"{base}/v1/agent/self", headers={"Host": "consul.example:8500"}, timeout=5).ok
    assert requests.get(f"{base}/v1/agent/self", timeout=5).ok  # its own address
    assert a.proc.alive()
    index = settled_index(f"{base}/v1/catalog/nodes")

    async def main() -> None:
        with trio.fail_after(30):
            parked = []
            for _ in range(3):
                stream = await trio.open_tcp_stream(a.ip, a.http_port)
                await stream.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={index}&wait=10s"))
                parked.append(stream)
            # Three busy connections from this address: the cap (3, from the config file) refuses a fourth.  A
            # request from another address first: once it is answered, the agent has read and parked the three
            # (until it has, they count as idle, and a fourth would take one's place).
            probe = await connect_from(next_loopback_ip(), (a.ip, a.http_port))
            async with probe:
                await probe.send_all(request_bytes("GET", "/v1/status/leader"))
                assert (await read_replies(probe, 1))[0].status == 200
            async with await trio.open_tcp_stream(a.ip, a.http_port) as fourth:
                await fourth.send_all(request_bytes("GET", "/v1/status/leader"))
                (reply,) = await read_replies(fourth, 1)
            assert reply.status == 429
            for stream in parked:
                await stream.aclose()

    run(main)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"limits": {"http_max_conns_per_client": -1}}, "limits.http_max_conns_per_client cannot be negative: -1"),
        ({"http_config": {"allowed_hosts": ["http://x/"]}}, "http_config.allowed_hosts: 'http://x/' is not a host"),
        ({"http_config": {"allowed_hosts": "a,b", "block_endpoints": ["/v1/acl"]}}, "http_config.block_endpoints"),
    ],
)
def test_bad_settings_are_refused_at_start(tmp_path: Path, source: dict[str, Any], message: str) -> None:
    import json

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data_dir": str(tmp_path / "d"), "bind_addr": "127.0.0.1", **source}))
    with pytest.raises(ConfigError) as caught:
        load_config(["-config-file", str(path), "-bind", "127.0.0.1"])
    assert message in str(caught.value)


def test_settings_are_read(tmp_path: Path) -> None:
    import json

    path = tmp_path / "c.json"
    path.write_text(json.dumps({
        "data_dir": str(tmp_path / "d"), "bind_addr": "127.0.0.1",
        "http_config": {"allowed_hosts": ["consul.example", "10.1.2.3"]}, "limits": {"http_max_conns_per_client": 0},
    }))
    config = load_config(["-config-file", str(path), "-bind", "127.0.0.1"])
    assert config.http_allowed_hosts == ("consul.example", "10.1.2.3")
    assert config.http_max_conns_per_client == 0
    assert load_config(["-dev"]).http_max_conns_per_client == 200
