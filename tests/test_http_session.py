"""/v1/session/* over real sockets with a real StoreService over a real StateStore (tests/store_direct.py).

Rules from hashicorp/consul agent/session_endpoint.go, agent/consul/session_endpoint.go, session.mdx,
wave2-anchors §2.2 and criteo/py-consul tests/api/test_session.py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio
from http_fakes import client_config, fetch, run, serving
from store_direct import store_agent, tables


async def create(addr: Any, body: bytes = b"") -> str:
    r = await fetch(addr, "PUT", "/v1/session/create", body)
    assert r.status == 200, r.body
    answer = json.loads(r.body)
    assert list(answer) == ["ID"]
    uuid.UUID(answer["ID"])
    return str(answer["ID"])


def test_create_info_list_node_renew_destroy_answer_consuls_json() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            sid = await create(addr)
            index = service.store.current.sessions[sid].create_index
            expected = {"ID": sid, "Name": "", "Node": "node1", "LockDelay": 15_000_000_000, "Behavior": "release",
                        "TTL": "", "NodeChecks": ["serfHealth"], "ServiceChecks": None, "CreateIndex": index,
                        "ModifyIndex": index}
            r = await fetch(addr, "GET", f"/v1/session/info/{sid}")
            assert r.status == 200 and json.loads(r.body) == [expected]
            assert list(json.loads(r.body)[0]) == list(expected)
            assert (r.header("X-Consul-Index"), r.header("X-Consul-Knownleader"),
                    r.header("X-Consul-Lastcontact")) == (str(index), "true", "0")
            assert json.loads((await fetch(addr, "GET", "/v1/session/list")).body) == [expected]
            assert json.loads((await fetch(addr, "GET", "/v1/session/node/node1")).body) == [expected]
            assert json.loads((await fetch(addr, "GET", "/v1/session/node/other")).body) == []
            # an unknown session is [] (py-consul: None), with the index header
            r = await fetch(addr, "GET", f"/v1/session/info/{uuid.uuid4()}")
            assert (r.status, json.loads(r.body), r.header("X-Consul-Index")) == (200, [], str(index))

            r = await fetch(addr, "PUT", f"/v1/session/renew/{sid}")
            assert (r.status, json.loads(r.body)) == (200, [expected])
            r = await fetch(addr, "PUT", f"/v1/session/destroy/{sid}")
            assert (r.status, json.loads(r.body)) == (200, True)
            assert sid not in service.store.current.sessions
            # destroying it again is still true (Consul without ACLs); renewing it is Consul's 404
            assert json.loads((await fetch(addr, "PUT", f"/v1/session/destroy/{sid}")).body) is True
            r = await fetch(addr, "PUT", f"/v1/session/renew/{sid}")
            assert (r.status, r.body.decode()) == (404, f"Session id '{sid}' not found")

    run(main)


def test_create_reads_py_consuls_lower_case_body_and_consuls_lock_delay_forms() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            sid = await create(addr, json.dumps({"name": "db-leader", "lockdelay": "5s", "ttl": "20s",
                                                 "behavior": "delete", "checks": []}).encode())
            s = service.store.current.sessions[sid]
            assert (s.name, s.lock_delay, s.ttl, s.behavior, s.node_checks) == ("db-leader", 5 * 10**9, "20s",
                                                                               "delete", ())
            # a number under 1000 is seconds, a larger one nanoseconds (FixupLockDelay)
            sid = await create(addr, b'{"LockDelay": 7}')
            assert service.store.current.sessions[sid].lock_delay == 7 * 10**9
            sid = await create(addr, b'{"LockDelay": 2000000000}')
            assert service.store.current.sessions[sid].lock_delay == 2 * 10**9

    run(main)


BAD = [
    # (method, target, body, status, text)
    ("PUT", "/v1/session/create", b'{"TTL": "5s"}', 500,
     "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
    ("PUT", "/v1/session/create", b'{"TTL": "soon"}', 500,
     "Session TTL 'soon' invalid: time: invalid duration \"soon\""),
    ("PUT", "/v1/session/create", b'{"Behavior": "explode"}', 500, "Invalid Behavior setting 'explode'"),
    ("PUT", "/v1/session/create", b'{"Node": "ghost"}', 500, "Missing node registration"),
    ("PUT", "/v1/session/create", b'{"Checks": ["nope"]}', 500, "Missing check 'nope' registration"),
    ("PUT", "/v1/session/create", b"{not json", 400, None),
    ("PUT", "/v1/session/create", b"[1]", 400,
     "Request decode failed: json: cannot unmarshal array into Go value of type structs.Session"),
    ("PUT", "/v1/session/destroy/", b"", 400, "Missing session"),
    ("PUT", "/v1/session/renew/", b"", 400, "Missing session"),
    ("GET", "/v1/session/info/", b"", 400, "Missing session"),
    ("GET", "/v1/session/node/", b"", 400, "Missing node name"),
    ("GET", "/v1/session/list?stale&consistent", b"", 400,
     "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("GET", "/v1/session/list?index=zz", b"", 400, "Invalid index"),
    ("PUT", "/v1/session/create?dc=dc2", b"", 500, "No path to datacenter"),
    ("GET", "/v1/session/create", b"", 405, "method GET not allowed"),
    ("PUT", "/v1/session/list", b"", 405, "method PUT not allowed"),
]


@pytest.mark.parametrize(("method", "target", "body", "status", "text"), BAD,
                         ids=[f"{b[0]} {b[1]} {b[2][:16]!r}" for b in BAD])
def test_bad_session_requests_get_consuls_answer_and_change_nothing(method: str, target: str, body: bytes,
                                                                    status: int, text: str | None) -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            before = tables(service)
            r = await fetch(addr, method, target, body)
            assert r.status == status, r.body
            if text is None:
                assert r.body.startswith(b"Request decode failed: ")
            else:
                assert r.body.decode() == text
            assert tables(service) == before

    run(main)


def test_a_critical_check_refuses_the_session() -> None:
    async def main() -> None:
        api, service, _ = store_agent(agent_nodes={"node1": {"serfHealth": "critical"}})
        async with serving(api) as addr:
            r = await fetch(addr, "PUT", "/v1/session/create")
            assert (r.status, r.body) == (500, b"Check 'serfHealth' is in critical state")
            assert len(service.store.current.sessions) == 0

    run(main)


def test_no_leader_and_the_client_prefix_with_the_error_metadata_consul_defers() -> None:
    async def main() -> None:
        api, service, replica = store_agent(client_config())
        async with serving(api) as addr:
            sid = await create(addr, b'{"Node": "node1"}')
            replica.leader = ""
            for method, target in (("PUT", "/v1/session/create"), ("PUT", f"/v1/session/destroy/{sid}"),
                                   ("PUT", f"/v1/session/renew/{sid}"), ("GET", "/v1/session/list")):
                r = await fetch(addr, method, target)
                assert (r.status, r.body) == (500, b"rpc error making call: No cluster leader"), target
            assert sid in service.store.current.sessions
            # the reads set their (empty) query metadata even on an error, as Go's deferred setMeta does
            r = await fetch(addr, "GET", f"/v1/session/info/{sid}")
            assert r.status == 500
            assert (r.header("X-Consul-Index"), r.header("X-Consul-Knownleader")) == ("1", "false")
            r = await fetch(addr, "GET", "/v1/session/list?stale")
            assert r.status == 200 and [s["ID"] for s in json.loads(r.body)] == [sid]
            assert r.header("X-Consul-Knownleader") == "false"

    run(main)


def test_a_blocking_list_wakes_on_a_create_and_a_destroy_releases_its_lock() -> None:
    async def main() -> None:
        api, _, _ = store_agent()
        async with serving(api) as addr:
            # (a real Raft log starts with the leader's own entry: no write of ours ever has index 1, which is
            # what an empty table reports)
            assert json.loads((await fetch(addr, "PUT", "/v1/kv/first", b"")).body) is True
            r = await fetch(addr, "GET", "/v1/session/list")
            index = int(r.header("X-Consul-Index") or 0)
            got: list[Any] = []

            async def blocked() -> None:
                got.append(await fetch(addr, "GET", f"/v1/session/list?index={index}&wait=10s"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocked)
                await trio.sleep(0.2)
                assert not got
                with trio.fail_after(5):
                    sid = await create(addr)
                    while not got:
                        await trio.sleep(0.01)
            assert [s["ID"] for s in json.loads(got[0].body)] == [sid]
            assert int(got[0].header("X-Consul-Index") or 0) > index

            r = await fetch(addr, "PUT", f"/v1/kv/held?acquire={sid}", b"x")
            assert json.loads(r.body) is True
            assert json.loads((await fetch(addr, "PUT", f"/v1/session/destroy/{sid}")).body) is True
            held = json.loads((await fetch(addr, "GET", "/v1/kv/held")).body)[0]
            assert "Session" not in held and held["LockIndex"] == 1

    run(main)
