"""Consul's ``watches`` agent config: checked at load with Consul's texts (agent/agent_watches.py), and run inside a
real agent (agent/watch_runner.py) with a script handler (args, JSON on stdin, CONSUL_INDEX) and an http handler
(the JSON POSTed with X-Consul-Index and the configured headers) against a local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import next_loopback_ip
from consul_agents import Cluster
from procs import free_port, wait_for

from agent.agent_watches import AgentWatch, HttpHandler, parse_watch, parse_watches
from agent.config import ConfigError, Interface, load_config
from agent.watch_plans import WatchError

ONE_NIC = [Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ("10.1.2.3",))]


def test_a_script_watch_and_an_http_watch_parse() -> None:
    script = parse_watch({"type": "key", "key": "app/x", "args": ["/bin/echo", "hi"], "datacenter": "dc2"})
    assert isinstance(script, AgentWatch) and script.args == ("/bin/echo", "hi") and script.http is None
    assert (script.plan.path, dict(script.plan.params)) == ("/v1/kv/app/x", {"dc": "dc2"})
    http = parse_watch({"type": "service", "service": "web", "handler_type": "http", "token": "t",
                        "http_handler_config": {"path": "http://127.0.0.1:1/h", "header": {"x": ["1", "2"]},
                                                "timeout": "2s"}})  # fmt: skip
    assert http.http == HttpHandler("http://127.0.0.1:1/h", "POST", (("x", ("1", "2")),), 2.0) and http.token == "t"
    assert parse_watch({"type": "nodes", "handler": "cat"}).script == "cat"  # the deprecated shell form


@pytest.mark.parametrize("params, text", [
    ({"type": "key", "key": "k"}, "Must define a watch handler"),
    ({"type": "key", "key": "k", "args": ["a"], "handler": "b"}, "Only one watch handler allowed"),
    ({"type": "key", "key": "k", "handler_type": "http", "args": ["a"], "http_handler_config": {"path": "http://x"}},
     "Only one watch handler allowed"),
    ({"type": "key", "key": "k", "handler_type": "exec", "args": ["a"]}, "Handler type 'exec' not recognized"),
    ({"type": "connect_roots", "args": ["a"]}, "Watch type connect_roots is not allowed in agent config"),
    ({"type": "key", "key": "k", "args": "a"}, "Watch args must be a list of strings"),
    ({"type": "key", "key": "k", "handler": ["a"]}, "Watch handler must be a string"),
    ({"type": "key", "args": ["a"]},
     'Failed to parse watch (map[string]interface {}{"args":[]interface {}{"a"}, "type":"key"}): '
     "Must specify a single key to watch"),
    ({"type": "key", "key": "k", "handler_type": "http"},
     'Failed to parse watch (map[string]interface {}{"handler_type":"http", "key":"k", "type":"key"}): '
     "Handler type 'http' requires 'http_handler_config' to be set"),
    ({"args": ["a"]}, 'Failed to parse watch (map[string]interface {}{"args":[]interface {}{"a"}}): '
     "Watch type must be specified"),
    ({"type": "nodes", "args": ["a"], "bogus": 1},
     'Failed to parse watch (map[string]interface {}{"args":[]interface {}{"a"}, "bogus":1, "type":"nodes"}): '
     "Invalid parameters: [bogus]"),
])  # fmt: skip
def test_bad_watches_get_consuls_texts(params: dict[str, Any], text: str) -> None:
    with pytest.raises(WatchError) as info:
        parse_watch(params)
    assert str(info.value) == text


def test_watches_need_the_http_api_and_stop_the_agent_at_load(tmp_path: Path) -> None:
    with pytest.raises(WatchError, match="watch plans require an HTTP or HTTPS endpoint"):
        parse_watches([{"type": "nodes", "args": ["a"]}], http_enabled=False)
    path = tmp_path / "w.hcl"
    path.write_text('watches = [{ type = "key", key = "k" }]\n')
    with pytest.raises(ConfigError) as info:
        load_config(["-config-file", str(path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert str(info.value) == "Must define a watch handler"
    path.write_text('watches = [{ type = "key", key = "k", args = ["/bin/true"] }]\n')
    config = load_config(["-config-file", str(path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert [dict(w) for w in config.watches] == [{"type": "key", "key": "k", "args": ["/bin/true"]}]
    assert "watches" not in config.inert_keys


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, str], Any]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.command, self.path, dict(self.headers), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_real_agent_runs_its_configured_watches(cluster: Cluster, tmp_path: Path) -> None:
    """A key watch with a script handler and a services watch with an http handler: each runs once at start (the
    first answer), then on each change, with the result as Consul hands it over."""
    hook_ip = next_loopback_ip()
    server = ThreadingHTTPServer((hook_ip, free_port(hook_ip)), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "handled"
    out.mkdir()
    handler = tmp_path / "handler.sh"
    handler.write_text('#!/bin/sh\ncat > "$1/$CONSUL_INDEX.json"\n')
    handler.chmod(0o755)
    watches = [
        {"type": "key", "key": "app/config", "args": [str(handler), str(out)]},
        {"type": "services", "handler_type": "http",
         "http_handler_config": {"path": f"http://{hook_ip}:{server.server_port}/hook?x=1", "method": "PUT",
                                 "header": {"X-Test": ["yes"]}, "timeout": "5s"}},
    ]  # fmt: skip
    try:
        s1 = cluster.start("s1", server=True, extra={"watches": watches})
        base = f"http://{s1.http_addr}"

        def handled() -> list[Any]:
            return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"), key=lambda p: int(p.stem))]

        assert wait_for(lambda: handled() == [None], timeout=30, what="the key watch's first run (no key: null)",
                        diagnostics=cluster.diagnostics)
        assert requests.put(f"{base}/v1/kv/app/config", data=b"v1", timeout=10).json() is True
        pairs = wait_for(lambda: len(handled()) == 2 and handled(), timeout=30, what="the key watch's second run",
                         diagnostics=cluster.diagnostics)
        assert pairs[1]["Key"] == "app/config" and pairs[1]["Value"] == "djE="  # base64 of v1, as api.KVPair

        wait_for(lambda: _Hook.received, timeout=30, what="the services watch's first POST",
                 diagnostics=cluster.diagnostics)
        method, path, headers, body = _Hook.received[0]
        assert (method, path, headers["X-Test"], headers["Content-Type"]) == ("PUT", "/hook?x=1", "yes",
                                                                              "application/json")
        assert int(headers["X-Consul-Index"]) > 0 and "consul" in body
        reply = requests.put(f"{base}/v1/agent/service/register", json={"Name": "web", "Tags": ["v1"]}, timeout=10)
        assert reply.status_code == 200
        wait_for(lambda: any("web" in b for *_, b in _Hook.received), timeout=30,
                 what="the services watch's POST naming web", diagnostics=cluster.diagnostics)
        assert next(b for *_, b in _Hook.received if "web" in b)["web"] == ["v1"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_reload_replaces_the_running_watches(cluster: Cluster, tmp_path: Path) -> None:
    """reloadWatches: after `reload` with other watches, the new plan runs and the old one no longer does."""
    handler = tmp_path / "handler.sh"
    handler.write_text('#!/bin/sh\ncat > "$1/$CONSUL_INDEX.json"\n')
    handler.chmod(0o755)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    s1 = cluster.start("s1", server=True, extra={"watches": [{"type": "key", "key": "a/one",
                                                               "args": [str(handler), str(old)]}]})
    base = f"http://{s1.http_addr}"
    wait_for(lambda: len(list(old.glob("*.json"))) == 1, timeout=30, what="the first watch's first run",
             diagnostics=cluster.diagnostics)
    config_file = s1.config_dir / "agent.json"
    config = json.loads(config_file.read_text())
    config["watches"] = [{"type": "key", "key": "a/two", "args": [str(handler), str(new)]}]
    config_file.write_text(json.dumps(config))
    assert requests.put(f"{base}/v1/agent/reload", timeout=10).status_code == 200
    wait_for(lambda: len(list(new.glob("*.json"))) == 1, timeout=30, what="the new watch's first run",
             diagnostics=cluster.diagnostics)
    assert requests.put(f"{base}/v1/kv/a/one", data=b"1", timeout=10).json() is True
    assert requests.put(f"{base}/v1/kv/a/two", data=b"2", timeout=10).json() is True
    wait_for(lambda: len(list(new.glob("*.json"))) == 2, timeout=30, what="the new watch's run for a/two",
             diagnostics=cluster.diagnostics)
    assert len(list(old.glob("*.json"))) == 1  # the old plan was stopped: a/one's write ran nothing
