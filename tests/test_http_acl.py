"""/v1/acl/* over real sockets, the real HTTP server and the real StoreService on a one-replica store
(tests/store_direct.py): Consul's statuses, texts and JSON (agent/acl_endpoint.go, agent/consul/acl_endpoint.go)."""

from __future__ import annotations

import json
from typing import Any

import attrs
from http_fakes import FakeAgent, fetch, run, server_config, serving
from store_direct import direct_service

from agent.acl.builtin import GLOBAL_MANAGEMENT_ID
from agent.config import ACLConfig, ACLTokens
from agent.http.acl_bodies import AccessorMismatch, policy_command, role_command
from agent.http.acl_endpoints import request_token
from agent.http.request import Query, Request
from agent.server.state import acl_leader


@attrs.define
class ACLAgent(FakeAgent):
    """The fake agent with a store behind it, as a server's supervisor gives one."""

    store_access: Any = None


def agent(enabled: bool = True, default_policy: str = "deny", default_token: str = "") -> tuple[ACLAgent, Any]:
    service, replica = direct_service()
    acl = ACLConfig(enabled=enabled, default_policy=default_policy, tokens=ACLTokens(default=default_token))
    return ACLAgent(config=server_config(acl=acl), store_access=service), replica


def body(reply: Any) -> Any:
    return json.loads(reply.body)


async def call(addr: Any, method: str, target: str, payload: Any = None, token: str = "") -> Any:
    data = b"" if payload is None else json.dumps(payload).encode()
    return await fetch(addr, method, target, data, {"X-Consul-Token": token} if token else None)


def test_bootstrap_once_then_403_with_the_reset_index() -> None:
    async def main() -> None:
        api, replica = agent()
        async with serving(api) as addr:
            first = await call(addr, "PUT", "/v1/acl/bootstrap")
            assert first.status == 200, first.body
            token = body(first)
            assert list(token)[:3] == ["ID", "AccessorID", "SecretID"] and token["ID"] == token["SecretID"]
            assert token["Description"] == "Bootstrap Token (Global Management)"
            assert token["Policies"] == [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]
            again = await call(addr, "PUT", "/v1/acl/bootstrap")
            assert again.status == 403
            reset = replica.store.current.indexes["acl-token-bootstrap"]
            assert again.body.decode() == f"Permission denied: ACL bootstrap no longer allowed (reset index: {reset})"
            # the bootstrap token manages ACLs
            self_ = await call(addr, "GET", "/v1/acl/token/self", token=token["SecretID"])
            assert self_.status == 200 and body(self_)["AccessorID"] == token["AccessorID"]

    run(main)


def test_acls_disabled_is_401() -> None:
    async def main() -> None:
        api, _ = agent(enabled=False)
        async with serving(api) as addr:
            for method, target in (("PUT", "/v1/acl/bootstrap"), ("GET", "/v1/acl/tokens"),
                                   ("GET", "/v1/acl/policies")):  # fmt: skip
                reply = await call(addr, method, target)
                assert (reply.status, reply.body) == (401, b"ACL support disabled")

    run(main)


def test_policy_token_lifecycle_and_permissions() -> None:
    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            # anonymous (no token, default deny): refused with Consul's text
            denied = await call(addr, "GET", "/v1/acl/policies")
            assert denied.status == 403
            assert denied.body.decode() == ("Permission denied: anonymous token lacks permission 'acl:read'. The "
                                            "anonymous token is used implicitly when a request does not specify a "
                                            "token.")  # fmt: skip
            unknown = await call(addr, "GET", "/v1/acl/policies", token="no-such-token")
            assert (unknown.status, unknown.body) == (403, b"ACL not found")

            made = await call(addr, "PUT", "/v1/acl/policy",
                              {"Name": "kv-read", "Rules": 'key_prefix "app/" { policy = "read" }'}, root)
            assert made.status == 200, made.body
            policy = body(made)
            assert list(policy) == ["ID", "Name", "Description", "Rules", "Hash", "CreateIndex", "ModifyIndex"]
            dup = await call(addr, "PUT", "/v1/acl/policy", {"Name": "kv-read"}, root)
            assert (dup.status, dup.body) == (500, b'Invalid Policy: A Policy with Name "kv-read" already exists')
            bad = await call(addr, "PUT", "/v1/acl/policy", {"Name": "x", "Rules": 'key "a" { policy = "nope" }'}, root)
            assert bad.status == 500 and bad.body.startswith(b'Invalid key policy: &acl.KeyRule{Prefix:"a"')
            by_name = await call(addr, "GET", "/v1/acl/policy/name/kv-read", token=root)
            assert body(by_name)["ID"] == policy["ID"] and by_name.header("X-Consul-Index")

            created = await call(addr, "PUT", "/v1/acl/token",
                                 {"Description": "reader", "Policies": [{"Name": "kv-read"}]}, root)
            assert created.status == 200, created.body
            reader = body(created)
            assert reader["Policies"] == [{"ID": policy["ID"], "Name": "kv-read"}]
            # a reader of KV is no ACL reader
            refused = await call(addr, "GET", "/v1/acl/tokens", token=reader["SecretID"])
            assert refused.status == 403 and refused.body.endswith(b"lacks permission 'acl:read'")
            listed = body(await call(addr, "GET", "/v1/acl/tokens", token=root))
            assert {t["AccessorID"] for t in listed} >= {reader["AccessorID"]}

            # update (the body is the whole new token; the secret stays), clone, delete
            bare = await call(addr, "PUT", f"/v1/acl/token/{reader['AccessorID']}", {"Description": "bare"}, root)
            assert "Policies" not in body(bare)
            updated = await call(addr, "PUT", f"/v1/acl/token/{reader['AccessorID']}",
                                 {"Description": "r2", "Policies": [{"ID": policy["ID"]}]}, root)
            assert body(updated)["SecretID"] == reader["SecretID"] and body(updated)["Description"] == "r2"
            clone = body(await call(addr, "PUT", f"/v1/acl/token/{reader['AccessorID']}/clone", {}, root))
            assert clone["AccessorID"] != reader["AccessorID"] and clone["Policies"] == reader["Policies"]
            assert clone["Description"] == "r2"
            deleted = await call(addr, "DELETE", f"/v1/acl/token/{reader['AccessorID']}", token=root)
            assert (deleted.status, body(deleted)) == (200, True)
            gone = await call(addr, "GET", "/v1/acl/token/self", token=reader["SecretID"])
            assert (gone.status, gone.body) == (403, b"ACL not found")  # refused at once
            missing = await call(addr, "GET", f"/v1/acl/token/{reader['AccessorID']}", token=root)
            assert (missing.status, missing.body) == (403, b"ACL not found")  # the token read's RPC refuses
            again = await call(addr, "DELETE", f"/v1/acl/token/{reader['AccessorID']}", token=root)
            assert (again.status, again.body) == (404, b"Cannot find token to delete")
            for kind in ("policy", "role"):
                target = f"/v1/acl/{kind}/0d2c9f4e-0000-4000-8000-000000000000"
                absent = await call(addr, "GET", target, token=root)
                assert (absent.status, absent.body.decode()) == (404, f"Requested {kind} does not exist: ACL not found")
                by_name = await call(addr, "GET", f"/v1/acl/{kind}/name/nothing-here", token=root)
                assert by_name.status == 404
                malformed = await call(addr, "GET", f"/v1/acl/{kind}/unknown", token=root)
                assert (malformed.status, malformed.body.decode()) == (500, f"failed acl {kind} lookup: UUID must be "
                                                                            "36 characters")  # fmt: skip
                gone_twice = await call(addr, "DELETE", target, token=root)
                assert (gone_twice.status, gone_twice.body.decode()) == (404, f"Cannot find {kind} to delete")

    run(main)


def test_secrets_are_hidden_from_acl_readers() -> None:
    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            await call(addr, "PUT", "/v1/acl/policy", {"Name": "acl-read", "Rules": 'acl = "read"'}, root)
            viewer = body(await call(addr, "PUT", "/v1/acl/token", {"Policies": [{"Name": "acl-read"}]}, root))
            seen = body(await call(addr, "GET", "/v1/acl/tokens", token=viewer["SecretID"]))
            assert seen and all(t["SecretID"] == "<hidden>" for t in seen)
            one = body(await call(addr, "GET", f"/v1/acl/token/{viewer['AccessorID']}", token=viewer["SecretID"]))
            assert one["SecretID"] == "<hidden>"
            write = await call(addr, "PUT", "/v1/acl/policy", {"Name": "p"}, viewer["SecretID"])
            assert write.status == 403 and write.body.endswith(b"lacks permission 'acl:write'")

    run(main)


def test_roles_and_bad_bodies() -> None:
    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            role = await call(addr, "PUT", "/v1/acl/role",
                              {"Name": "ops", "Policies": [{"ID": GLOBAL_MANAGEMENT_ID}]}, root)
            assert role.status == 200, role.body
            assert body(role)["Policies"] == [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]
            by_name = body(await call(addr, "GET", "/v1/acl/role/name/ops", token=root))
            assert by_name["ID"] == body(role)["ID"]
            token = body(await call(addr, "PUT", "/v1/acl/token", {"Roles": [{"Name": "ops"}]}, root))
            ops = await call(addr, "GET", "/v1/acl/roles", token=token["SecretID"])  # acl:read through the role
            assert ops.status == 200 and [r["Name"] for r in body(ops)] == ["ops"]
            wrong = await call(addr, "PUT", "/v1/acl/token", {"Description": 5}, root)
            assert wrong.status == 400 and wrong.body == (b"Token decoding failed: json: cannot unmarshal number "
                                                          b"into Go struct field ACLToken.Description of type string")
            junk = await fetch(addr, "PUT", "/v1/acl/policy", b"{not json", {"X-Consul-Token": root})
            assert junk.status == 400 and junk.body.startswith(b"Policy decoding failed: ")
            mismatch = await call(addr, "PUT", f"/v1/acl/token/{token['AccessorID']}",
                                  {"AccessorID": "11111111-1111-1111-1111-111111111111"}, root)
            assert (mismatch.status, mismatch.body) == (400, b"Token Accessor ID in URL and payload do not match")
            nolink = await call(addr, "PUT", "/v1/acl/token", {"Policies": [{"Name": "nope"}]}, root)
            assert (nolink.status, nolink.body) == (500, b'No such ACL policy with name "nope"')

    run(main)


def test_a_missing_id_is_400_before_the_token_is_resolved() -> None:
    """Consul's handlers answer a missing ID before their RPC resolves the request's token: an unknown token (or
    one without acl:write) still gets the 400, and ACLs disabled is still the 401 first."""

    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            unknown = "00000000-0000-4000-8000-00000000dead"
            for method, target, text in (("GET", "/v1/acl/token/", b"Missing token ID"),
                                         ("DELETE", "/v1/acl/token/", b"Missing token ID"),
                                         ("DELETE", "/v1/acl/policy/", b"Missing policy ID"),
                                         ("PUT", "/v1/acl/role/", b"Missing role ID")):  # fmt: skip
                for token in (unknown, ""):  # an unknown token, the anonymous token (no acl:write)
                    reply = await call(addr, method, target, token=token)
                    assert (reply.status, reply.body) == (400, text), (method, target, token)
        off, _ = agent(enabled=False)
        async with serving(off) as addr:
            reply = await call(addr, "GET", "/v1/acl/token/")
            assert (reply.status, reply.body) == (401, b"ACL support disabled")

    run(main)


def test_a_policy_or_role_write_takes_the_urls_id_which_a_body_id_must_match() -> None:
    for command, kind in ((policy_command, "Policy"), (role_command, "Role")):
        key = "policy_id" if kind == "Policy" else "role_id"
        update = command({"ID": "p1", "Name": "n"}, **{key: "p1"}, new_id="fresh")
        assert (update.id, update.create) == ("p1", False)
        assert command({"Name": "n"}, **{key: "p1"}, new_id="fresh").id == "p1"  # no body ID: the URL's
        create = command({"Name": "n"}, **{key: ""}, new_id="fresh")
        assert (create.id, create.create) == ("fresh", True)
        try:
            command({"ID": "other", "Name": "n"}, **{key: "p1"}, new_id="fresh")
        except AccessorMismatch as exc:
            assert (exc.status, str(exc)) == (400, f"{kind} ID in URL and payload do not match")
        else:
            raise AssertionError(f"a {kind} body naming another ID was accepted")


def test_the_anonymous_token_and_the_default_token() -> None:
    async def main() -> None:
        api, replica = agent(default_policy="deny")
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            # what a new leader proposes: the anonymous token then exists, with no policy
            for cmd in acl_leader.initial_commands(replica.store.current, initial_management="",
                                                   new_uuid=lambda: "x"):  # fmt: skip
                await api.store_access.apply(cmd)
            await call(addr, "PUT", "/v1/acl/policy", {"Name": "acl-read", "Rules": 'acl = "read"'}, root)
            await call(addr, "PUT", "/v1/acl/token/00000000-0000-0000-0000-000000000002",
                       {"Policies": [{"Name": "acl-read"}]}, root)
            anonymous = await call(addr, "GET", "/v1/acl/policies")
            assert anonymous.status == 200  # the anonymous token's policy
            assert (await call(addr, "GET", "/v1/acl/token/self")).status == 200
        api2, _ = agent(default_token="no-such")
        async with serving(api2) as addr:
            reply = await call(addr, "GET", "/v1/acl/policies")  # acl.tokens.default stands in for no token
            assert (reply.status, reply.body) == (403, b"ACL not found")

    run(main)


def _request(query: str = "", headers: tuple[tuple[str, str], ...] = ()) -> Request:
    return Request("GET", "/", "/", query, Query.parse(query), headers)


def test_request_token_sources_in_consuls_order() -> None:
    both = (("x-consul-token", "header"), ("authorization", "Bearer bearer"))
    assert request_token(_request("token=query", both)) == "query"
    assert request_token(_request("", both)) == "header"
    assert request_token(_request("", (("authorization", "bearer  tok  extra"),))) == "tok"
    assert request_token(_request("", (("authorization", "Basic abc"),)), "dflt") == "dflt"
    assert request_token(_request("", (("authorization", "Bearer"),)), "dflt") == "dflt"


def test_py_consul_drives_the_acl_endpoints() -> None:
    import consul
    import pytest
    import trio

    def client_side(host: str, port: int) -> None:
        anonymous = consul.Consul(host=host, port=port)
        boot = anonymous.acl.bootstrap()
        root = consul.Consul(host=host, port=port, token=boot["SecretID"])
        with pytest.raises(consul.ACLPermissionDenied):
            anonymous.acl.bootstrap()
        # py-consul sends the rules JSON-encoded (a dict becomes Consul's JSON rule syntax)
        policy = root.acl.policy.create(name="kv", rules={"key_prefix": {"app/": {"policy": "read"}}})
        assert json.loads(root.acl.policy.read(policy["ID"])["Rules"]) == {"key_prefix": {"app/": {"policy": "read"}}}
        made = root.acl.token.create(description="reader", policies_name=["kv"])
        assert root.acl.token.read(made["AccessorID"])["Policies"] == [{"ID": policy["ID"], "Name": "kv"}]
        assert made["AccessorID"] in {t["AccessorID"] for t in root.acl.token.list()}
        with pytest.raises(consul.ACLPermissionDenied):
            anonymous.acl.token.list()
        role = root.acl.role.create(name="ops", policies_name=["kv"])
        assert root.acl.role.read_by_name("ops")["ID"] == role["ID"]
        assert root.acl.token.delete(made["AccessorID"]) is True
        assert root.acl.policy.delete(policy["ID"]) is True

    async def main() -> None:
        api, _ = agent()
        async with serving(api) as (host, port):
            await trio.to_thread.run_sync(client_side, host, port)

    run(main)


def test_a_token_in_a_websocket_query_string_is_not_logged(caplog: Any) -> None:
    # issue 13: no secret in a log line; the stream takes ?token= like every endpoint
    import logging

    import trio
    from trio_websocket import open_websocket

    secret = "5e3b7d2a-0000-4000-8000-00000000c0de"

    async def main() -> None:
        api, _ = agent()
        api.add_self()
        with trio.fail_after(20):
            async with serving(api) as (host, port):
                # a real token now that the stream enforces (node:read on every node): the management one
                made = await call((host, port), "PUT", "/v1/acl/bootstrap", {"BootstrapSecret": secret})
                assert made.status == 200, made.body
                async with open_websocket(host, port, f"/v1/stream/members?token={secret}", use_ssl=False) as ws:
                    await ws.get_message()

    with caplog.at_level(logging.DEBUG, logger="agent.http"):
        run(main)
    assert "upgraded /v1/stream/members to a websocket" in caplog.text
    assert secret not in caplog.text


def test_login_names_an_unknown_auth_method_and_logout_refuses_non_login_tokens() -> None:
    """``ACL.Login``/``ACL.Logout``: no auth methods are stored, so a login is 403 ``ACL not found: auth method
    ... not found``; a logout of an unknown secret is 403 ``ACL not found``, of any other token ``Permission
    denied`` (it was not made by a login), and the token survives."""

    async def main() -> None:
        api, _ = agent()
        async with serving(api) as addr:
            root = body(await call(addr, "PUT", "/v1/acl/bootstrap"))["SecretID"]
            login = await call(addr, "POST", "/v1/acl/login", {"AuthMethod": "does-not-exist", "BearerToken": "x"})
            assert (login.status, login.body) == (403, b'ACL not found: auth method "does-not-exist" not found')
            bad = await fetch(addr, "POST", "/v1/acl/login", b"[1]")
            assert bad.status == 400 and bad.body.startswith(b"Failed to decode request body:: json: cannot unmarshal")
            unknown = await call(addr, "POST", "/v1/acl/logout", token="00000000-0000-0000-0000-0000000000ff")
            assert (unknown.status, unknown.body) == (403, b"ACL not found")
            assert (await call(addr, "POST", "/v1/acl/logout")).body == b"ACL not found"
            refused = await call(addr, "POST", "/v1/acl/logout", token=root)
            assert (refused.status, refused.body) == (403, b"Permission denied")
            assert (await call(addr, "GET", "/v1/acl/token/self", token=root)).status == 200

    run(main)
