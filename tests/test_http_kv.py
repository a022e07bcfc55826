"""/v1/kv over real sockets: the HTTP server, a FakeAgent, and a real StoreService over a real StateStore
(tests/store_direct.py: one replica, no replication).

Each case names the Consul rule it checks (hashicorp/consul agent/kvs_endpoint.go, kv.mdx, wave2-anchors §2.1,
criteo/py-consul tests/api/test_kv.py).  Bad input is checked to change nothing in the store.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
from http_fakes import client_config, fetch, run, serving
from store_direct import store_agent, tables

from agent.server.state.commands import SessionCreate

KV_MAX = 512 * 1024
SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"


def entry(key: str, value: bytes | None, index: int, *, create: int | None = None, flags: int = 0,
          lock_index: int = 0, session: str = "") -> dict[str, Any]:
    """Consul's DirEntry JSON, key order included."""
    out: dict[str, Any] = {"LockIndex": lock_index, "Key": key, "Flags": flags,
                           "Value": base64.b64encode(value).decode() if value else None}
    if session:
        out["Session"] = session
    out["CreateIndex"] = index if create is None else create
    out["ModifyIndex"] = index
    return out


async def put(addr: Any, target: str, body: bytes = b"") -> Any:
    r = await fetch(addr, "PUT", target, body)
    assert r.status == 200, (target, r.status, r.body)
    return json.loads(r.body)


async def new_session(service: Any) -> str:
    return str(await service.apply(SessionCreate(id="", node="node1", node_checks=("serfHealth",))))


def test_put_get_raw_recurse_keys_and_delete_answer_consuls_shapes() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/web/a?flags=42", b"hello") is True
            assert await put(addr, "/v1/kv/web/sub/b", b"") is True
            assert await put(addr, "/v1/kv/db/c", b"x") is True

            r = await fetch(addr, "GET", "/v1/kv/web/a")
            assert r.status == 200 and r.header("Content-Type") == "application/json"
            assert json.loads(r.body) == [entry("web/a", b"hello", 1, flags=42)]
            assert list(json.loads(r.body)[0]) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
            assert (r.header("X-Consul-Index"), r.header("X-Consul-Knownleader"), r.header("X-Consul-Lastcontact"),
                    r.header("X-Consul-Effective-Consistency")) == ("1", "true", "0", "leader")

            # an empty value reads back as null (py-consul: None); ?raw is the bytes, not JSON
            assert json.loads((await fetch(addr, "GET", "/v1/kv/web/sub/b")).body)[0]["Value"] is None
            raw = await fetch(addr, "GET", "/v1/kv/web/a?raw")
            assert (raw.status, raw.body, raw.header("Content-Type")) == (200, b"hello", "text/plain")
            assert raw.header("X-Content-Type-Options") == "nosniff"
            assert raw.header("Content-Security-Policy") == "sandbox"

            # ?recurse: the entries under the prefix, the index the highest ModifyIndex under it
            r = await fetch(addr, "GET", "/v1/kv/web/?recurse")
            assert json.loads(r.body) == [entry("web/a", b"hello", 1, flags=42), entry("web/sub/b", None, 2)]
            assert r.header("X-Consul-Index") == "2"

            # ?keys, rolled up at ?separator (and Consul's historic ?seperator spelling)
            assert json.loads((await fetch(addr, "GET", "/v1/kv/?keys")).body) == ["db/c", "web/a", "web/sub/b"]
            assert json.loads((await fetch(addr, "GET", "/v1/kv/web/?keys&separator=/")).body) == ["web/a",
                                                                                                  "web/sub/"]
            assert json.loads((await fetch(addr, "GET", "/v1/kv/web/?keys&seperator=/")).body) == ["web/a",
                                                                                                  "web/sub/"]

            # DELETE one key, then a tree: true, and the reads are 404 with the index header
            assert json.loads((await fetch(addr, "DELETE", "/v1/kv/db/c")).body) is True
            assert json.loads((await fetch(addr, "DELETE", "/v1/kv/web?recurse")).body) is True
            assert len(service.store.current.kvs) == 0
            for target in ("/v1/kv/web/a", "/v1/kv/web/?recurse", "/v1/kv/web/?keys"):
                r = await fetch(addr, "GET", target)
                assert (r.status, r.body) == (404, b""), target
                assert r.header("X-Consul-Index") == "5", target
            # the root's key list is never a 404
            r = await fetch(addr, "GET", "/v1/kv/?keys")
            assert (r.status, json.loads(r.body)) == (200, [])

    run(main)


def test_cas_on_put_and_delete() -> None:
    """py-consul: put(cas=50) on a missing key is False, cas=0 creates; a stale cas is False; delete(cas)."""

    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/k?cas=50", b"v") is False
            assert await put(addr, "/v1/kv/k?cas=0", b"v1") is True
            created = service.store.current.kvs["k"].modify_index
            assert await put(addr, "/v1/kv/k?cas=0", b"again") is False
            assert await put(addr, f"/v1/kv/k?cas={created + 10}", b"stale") is False
            assert await put(addr, f"/v1/kv/k?cas={created}", b"v2") is True
            modified = service.store.current.kvs["k"].modify_index
            assert service.store.current.kvs["k"].value == b"v2" and modified > created
            assert json.loads((await fetch(addr, "DELETE", f"/v1/kv/k?cas={created}")).body) is False
            assert "k" in service.store.current.kvs
            assert json.loads((await fetch(addr, "DELETE", f"/v1/kv/k?cas={modified}")).body) is True
            assert "k" not in service.store.current.kvs

    run(main)


def test_acquire_and_release_follow_consuls_lock_rules() -> None:
    """py-consul's test_kv_acquire_release: s1 acquires, s2 is refused, s1 re-acquires (LockIndex kept),
    a release by another session or an unknown one is False, the holder's is True."""

    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            s1, s2 = await new_session(service), await new_session(service)
            assert await put(addr, f"/v1/kv/lock?acquire={s1}", b"me") is True
            got = json.loads((await fetch(addr, "GET", "/v1/kv/lock")).body)[0]
            assert (got["Session"], got["LockIndex"]) == (s1, 1)
            assert await put(addr, f"/v1/kv/lock?acquire={s2}", b"you") is False
            assert await put(addr, f"/v1/kv/lock?acquire={s1}", b"me again") is True
            got = json.loads((await fetch(addr, "GET", "/v1/kv/lock")).body)[0]
            assert (got["Session"], got["LockIndex"], got["Value"]) == (s1, 1, base64.b64encode(b"me again").decode())
            assert await put(addr, "/v1/kv/lock?release=foo", b"") is False
            assert await put(addr, f"/v1/kv/lock?release={s2}", b"") is False
            assert await put(addr, f"/v1/kv/lock?release={s1}", b"free") is True
            got = json.loads((await fetch(addr, "GET", "/v1/kv/lock")).body)[0]
            assert "Session" not in got and got["LockIndex"] == 1

    run(main)


BAD = [
    # (method, target, body, status, text) -- Consul's answers; none may change the store
    ("GET", "/v1/kv/", b"", 400, "Missing key name"),
    ("PUT", "/v1/kv/", b"v", 400, "Missing key name"),
    ("DELETE", "/v1/kv/", b"", 400, "Missing key name"),
    ("PUT", "/v1/kv/k?cas=abc", b"v", 400, 'Invalid cas: strconv.ParseUint: parsing "abc": invalid syntax'),
    ("PUT", "/v1/kv/k?cas=-1", b"v", 400, 'Invalid cas: strconv.ParseUint: parsing "-1": invalid syntax'),
    ("PUT", "/v1/kv/k?flags=x", b"v", 400, 'Invalid flags: strconv.ParseUint: parsing "x": invalid syntax'),
    ("PUT", "/v1/kv/k?flags=18446744073709551616", b"v", 400,
     'Invalid flags: strconv.ParseUint: parsing "18446744073709551616": value out of range'),
    ("DELETE", "/v1/kv/k?cas=1.5", b"", 400, 'Invalid cas: strconv.ParseUint: parsing "1.5": invalid syntax'),
    ("PUT", "/v1/kv/k?cas=1&acquire=s", b"v", 400, "Conflicting flags: acquire=s&cas=1\n"),
    ("PUT", "/v1/kv/k?release=s&acquire=s", b"v", 400, "Conflicting flags: acquire=s&release=s\n"),
    ("DELETE", "/v1/kv/k?recurse&cas=1", b"", 400, "Conflicting flags: cas=1&recurse=\n"),
    ("PUT", "/v1/kv/k", b"x" * (KV_MAX + 1), 413,
     f"Request body({KV_MAX + 1} bytes) too large, max size: {KV_MAX} bytes. See {SIZE_DOC}."),
    ("PUT", "/v1/kv/k?acquire=nosuch", b"v", 500, 'invalid session "nosuch"'),
    ("GET", "/v1/kv/k?stale&consistent", b"", 400, "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("PUT", "/v1/kv/k?stale&consistent", b"v", 400, "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("GET", "/v1/kv/k?index=x", b"", 400, "Invalid index"),
    ("GET", "/v1/kv/k?wait=soon", b"", 400, "Invalid wait time"),
    ("GET", "/v1/kv/k?max_stale=x", b"", 400, 'Invalid max_stale value "x"'),
    ("GET", "/v1/kv/k?dc=dc9", b"", 500, "No path to datacenter"),
    ("PUT", "/v1/kv/k?dc=dc9", b"v", 500, "No path to datacenter"),
    ("POST", "/v1/kv/k", b"v", 405, "method POST not allowed"),
]


@pytest.mark.parametrize(("method", "target", "body", "status", "text"), BAD, ids=[f"{b[0]} {b[1]}"[:60] for b in BAD])
def test_bad_requests_get_consuls_status_and_text_and_change_nothing(method: str, target: str, body: bytes,
                                                                     status: int, text: str) -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/k", b"before") is True
            before = tables(service)
            r = await fetch(addr, method, target, body)
            assert (r.status, r.body.decode()) == (status, text)
            assert tables(service) == before
            if status == 405:
                assert r.header("Allow") == "OPTIONS,GET,PUT,DELETE"

    run(main)


def test_a_value_of_exactly_the_limit_is_taken_and_options_lists_the_methods() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/big", b"v" * KV_MAX) is True
            assert len(service.store.current.kvs["big"].value) == KV_MAX
            r = await fetch(addr, "OPTIONS", "/v1/kv/big")
            assert (r.status, r.header("Allow")) == (200, "OPTIONS,GET,PUT,DELETE")

    run(main)


def test_no_leader_is_consuls_500_and_a_stale_read_still_answers() -> None:
    async def main() -> None:
        api, service, replica = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/k", b"v") is True
            replica.leader = ""
            before = tables(service)
            for method, target in (("PUT", "/v1/kv/k"), ("DELETE", "/v1/kv/k"), ("GET", "/v1/kv/k"),
                                   ("GET", "/v1/kv/k?consistent")):
                r = await fetch(addr, method, target, b"new" if method == "PUT" else b"")
                assert (r.status, r.body) == (500, b"No cluster leader"), target
            assert tables(service) == before
            r = await fetch(addr, "GET", "/v1/kv/k?stale")
            assert r.status == 200 and json.loads(r.body) == [entry("k", b"v", 1)]
            assert (r.header("X-Consul-Knownleader"), r.header("X-Consul-Effective-Consistency")) == ("false", "stale")
            r = await fetch(addr, "GET", "/v1/kv/k?max_stale=1m")
            assert r.status == 200 and r.header("X-Consul-Effective-Consistency") == "stale"

    run(main)


def test_a_client_agent_prefixes_server_errors_as_consuls_client_does() -> None:
    async def main() -> None:
        api, _, replica = store_agent(client_config())
        async with serving(api) as addr:
            r = await fetch(addr, "PUT", "/v1/kv/k?acquire=nosuch", b"v")
            assert (r.status, r.body) == (500, b'rpc error making call: invalid session "nosuch"')
            replica.leader = ""
            r = await fetch(addr, "PUT", "/v1/kv/k", b"v")
            assert (r.status, r.body) == (500, b"rpc error making call: No cluster leader")
            # an HTTP-side refusal is not an RPC's
            r = await fetch(addr, "PUT", "/v1/kv/", b"v")
            assert (r.status, r.body) == (400, b"Missing key name")

    run(main)


def test_a_blocking_get_is_woken_by_its_key_and_not_by_another_prefix() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert await put(addr, "/v1/kv/watched", b"v0") is True
            index = service.store.current.applied
            got: dict[str, Any] = {}

            async def blocked(name: str, target: str) -> None:
                start = trio.current_time()
                got[name] = (await fetch(addr, "GET", target), trio.current_time() - start)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocked, "key", f"/v1/kv/watched?index={index}&wait=10s")
                nursery.start_soon(blocked, "prefix", f"/v1/kv/watch?recurse&index={index}&wait=10s")
                nursery.start_soon(blocked, "absent", f"/v1/kv/absent?index={index}&wait=1s")
                await trio.sleep(0.3)  # let them park (a write before that would answer them at once anyway)
                assert await put(addr, "/v1/kv/elsewhere/x", b"noise") is True
                with trio.move_on_after(0.5):  # the noise must not wake the key's watchers
                    while "key" not in got and "prefix" not in got:
                        await trio.sleep(0.02)
                assert "key" not in got and "prefix" not in got
                assert await put(addr, "/v1/kv/watched", b"v1") is True
            written = service.store.current.applied
            for name in ("key", "prefix"):
                reply, elapsed = got[name]
                assert reply.status == 200 and reply.header("X-Consul-Index") == str(written), name
                assert elapsed < 8, (name, elapsed)
            assert json.loads(got["key"][0].body)[0]["Value"] == base64.b64encode(b"v1").decode()
            # a key nobody wrote: neither write woke it; it answered its 404 when its wait (1 s + jitter) was up
            absent, elapsed = got["absent"]
            assert absent.status == 404 and 1.0 <= elapsed < 8, elapsed

    run(main)
