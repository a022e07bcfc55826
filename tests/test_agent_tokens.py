"""The agent's own ACL tokens (agent/acl/agent_tokens.py, agent/http/agent_token.py): Consul's
``agent/token/store.go``/``persistence.go`` and ``PUT /v1/agent/token/<name>``.

The store and the file in isolation, the endpoint over real sockets with the real StoreService behind it, and a
real agent that persists a token, is restarted and still has it, and refuses to start on a damaged file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from consul_agents import ENV, Cluster, needs_acl_agents
from http_fakes import run, serving
from procs import Proc, wait_for
from test_http_acl import agent, body, call

from agent.acl.agent_tokens import KINDS, PERSIST_FILE, AgentTokens, TokenFileError, TokenStore, load_persisted
from agent.config import ACLTokens
from agent.datadir import DataDir

S1 = "11111111-1111-4111-8111-111111111111"
S2 = "22222222-2222-4222-8222-222222222222"


def test_snapshots_are_swapped_whole_and_secrets_stay_out_of_reprs() -> None:
    store = TokenStore(AgentTokens.from_config(ACLTokens(default=S1, agent="", dns="d")))
    before = store.current
    assert before.for_agent() == S1  # no agent token: the default one
    assert store.update("acl_agent_token", S2) is True
    assert store.update("agent", S2) is False  # the same value: no change
    assert before.agent == "" and store.current.agent == S2  # the old snapshot is untouched
    assert store.current.for_agent() == S2
    assert S1 not in repr(store.current) and S2 not in repr(store.current)
    with pytest.raises(KeyError):
        store.update("nonsense", S1)


def test_every_consul_name_sets_its_token() -> None:
    expected = {"default": "default", "acl_token": "default", "agent": "agent", "acl_agent_token": "agent",
                "agent_recovery": "agent_recovery", "agent_master": "agent_recovery",
                "acl_agent_master_token": "agent_recovery", "replication": "replication",
                "acl_replication_token": "replication", "dns": "dns", "dns_token": "dns",
                "config_file_service_registration": "config_file_service_registration"}  # fmt: skip
    assert dict(KINDS) == expected
    for name, field in expected.items():
        store = TokenStore(AgentTokens())
        store.update(name, name)
        assert getattr(store.current, field) == name


def test_only_tokens_set_through_the_api_are_persisted_and_they_win_at_load(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path)
    store = TokenStore(AgentTokens.from_config(ACLTokens(default="from-config", agent="cfg-agent")), datadir)
    store.update("agent", S1)
    store.update("dns", "")  # set to empty through the API: nothing to persist
    data = json.loads((tmp_path / PERSIST_FILE).read_text())
    assert data == {"agent": S1}
    assert (tmp_path / PERSIST_FILE).stat().st_mode & 0o777 == 0o600
    loaded = load_persisted(AgentTokens.from_config(ACLTokens(default="from-config", agent="cfg-agent")),
                            tmp_path / PERSIST_FILE)
    assert (loaded.default, loaded.agent) == ("from-config", S1)
    # Consul's older file names the recovery token agent_master
    (tmp_path / PERSIST_FILE).write_text(json.dumps({"agent_master": S2, "replication": "r"}))
    loaded = load_persisted(AgentTokens(), tmp_path / PERSIST_FILE)
    assert (loaded.agent_recovery, loaded.replication) == (S2, "r")
    assert load_persisted(AgentTokens(), tmp_path / "absent.json") == AgentTokens()


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "failed to decode tokens file"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"agent": 7}', '"agent" must be a string'),
    (b"\xff\xfe", "failed to decode tokens file"),
])  # fmt: skip
def test_a_damaged_file_is_a_precise_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / PERSIST_FILE
    path.write_bytes(content)
    with pytest.raises(TokenFileError, match=message) as err:
        load_persisted(AgentTokens(), path)
    assert str(path) in str(err.value)


def test_a_failed_write_leaves_the_snapshot_as_it_was(tmp_path: Path) -> None:
    class Broken:
        def atomic_write(self, relpath: str, data: bytes, mode: int = 0o600) -> Path:
            raise OSError(28, "No space left on device")

    store = TokenStore(AgentTokens(agent=S1), Broken())
    with pytest.raises(OSError):
        store.update("agent", S2)
    assert store.current.agent == S1


# ------------------------------------------------------------------ the endpoint


def test_put_agent_token_needs_acl_write_and_sets_the_token() -> None:
    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            refused = await call(addr, "PUT", "/v1/agent/token/agent", {"Token": S1})
            assert refused.status == 403 and b"lacks permission 'acl:write'" in refused.body
            assert api.acl_tokens.current.agent == ""
            ok = await call(addr, "PUT", "/v1/agent/token/acl_agent_token", {"Token": S1}, token=root)
            assert (ok.status, ok.body) == (200, b"")
            assert api.acl_tokens.current.agent == S1
            unknown = await call(addr, "PUT", "/v1/agent/token/bogus", {"Token": S1}, token=root)
            assert (unknown.status, unknown.body) == (404, b'Token "bogus" is unknown')
            for raw, text in ((b"", b"Request decode failed: EOF"),
                              (b"[1]", b"Request decode failed: json: cannot unmarshal array into Go value of type "
                                       b"api.AgentToken"),
                              (b'{"Token": 5}', b"Request decode failed: json: cannot unmarshal non-string into "
                                                b"Go struct field AgentToken.Token of type string")):  # fmt: skip
                from http_fakes import fetch

                bad = await fetch(addr, "PUT", "/v1/agent/token/agent", raw, {"X-Consul-Token": root})
                assert (bad.status, bad.body) == (400, text)
            assert api.acl_tokens.current.agent == S1
            # the default token is what a request without one is: token/self answers with it
            await call(addr, "PUT", "/v1/agent/token/default", {"Token": root}, token=root)
            me = await call(addr, "GET", "/v1/acl/token/self")
            assert me.status == 200 and body(me)["SecretID"] == root

    run(main)


def test_put_agent_token_with_acls_off_is_401() -> None:
    async def main() -> None:
        api, _ = agent(enabled=False)
        async with serving(api) as addr:
            reply = await call(addr, "PUT", "/v1/agent/token/agent", {"Token": S1})
            assert (reply.status, reply.body) == (401, b"ACL support disabled")

    run(main)


def test_the_authorize_hook_decides_when_the_context_has_one() -> None:
    """The enforcement layer's hook: asked for acl:write, and its refusal is the answer."""
    from agent.http import agent_token
    from agent.http.errors import HTTPError

    asked: list[tuple[str, str, str]] = []

    class Ctx:
        async def authorize(self, resource: str, segment: str, access: str) -> None:
            asked.append((resource, segment, access))
            raise HTTPError(403, "Permission denied")

    async def main() -> None:
        with pytest.raises(HTTPError):
            await agent_token.require_acl_write(Ctx())  # type: ignore[arg-type]

    run(main)
    assert asked == [("acl", "", "write")]


# ------------------------------------------------------------------ a real agent


ROOT = "3f6d8a0e-51a6-4c4f-9a47-0d3c3a1e9b20"


@needs_acl_agents
def test_a_persisted_token_survives_a_restart_and_a_damaged_file_stops_the_start(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    acl = {"acl": {"enabled": True, "default_policy": "deny", "enable_token_persistence": True,
                   "tokens": {"initial_management": ROOT}}}  # fmt: skip
    try:
        first = cluster.start("s1", server=True, extra=acl, token=ROOT)  # the probe: /v1/agent/self enforces
        url = f"http://{first.http_addr}"

        def put() -> Any:
            r = requests.put(f"{url}/v1/agent/token/default", json={"Token": ROOT},
                             headers={"X-Consul-Token": ROOT}, timeout=10)
            return r if r.status_code == 200 else None

        wait_for(put, timeout=60, what="PUT /v1/agent/token/default", diagnostics=cluster.diagnostics)
        saved = json.loads((first.data_dir / PERSIST_FILE).read_text())
        assert saved == {"default": ROOT}
        first.proc.stop()  # a server exits 1 on SIGTERM (graceful shutdown disabled), as Consul
        again = cluster.start("s1", reuse=first, token=ROOT)
        # no token in the request: the persisted default token is used
        me = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(
            requests.get(f"http://{again.http_addr}/v1/acl/token/self", timeout=10)), timeout=60,
            what="token/self with the persisted default token", diagnostics=cluster.diagnostics)
        assert me.json()["SecretID"] == ROOT
        again.proc.stop()
        (first.data_dir / PERSIST_FILE).write_text('{"default": ')
        argv = [sys.executable, "-m", "agent", "-config-dir", str(first.config_dir)]
        broken = Proc("agent:broken", argv, tmp_path / "broken.log", env=ENV)
        try:
            assert broken.wait(60) == 1
            log = broken.log_path.read_text()
            assert (f'==> Error starting agent: failed to decode tokens file "{first.data_dir / PERSIST_FILE}": '
                    in log), log
        finally:
            broken.close()
        assert os.path.exists(first.data_dir / PERSIST_FILE)  # the damaged file is left for the operator
    finally:
        cluster.close()
