"""/v1/txn and /v1/catalog/register|deregister over real sockets with a real StoreService over a real StateStore.

Rules from hashicorp/consul agent/txn_endpoint.go, agent/consul/txn_endpoint.go (preCheck), state/txn.go,
txn.mdx, wave2-anchors §2.4; agent/catalog_endpoint.go for the registrations.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from http_fakes import fetch, run, serving
from hypothesis import given
from hypothesis import strategies as st
from store_direct import store_agent, tables

from agent.gostrings import go_base64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kv(verb: str, key: str, value: bytes | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"Verb": verb, "Key": key, **extra}
    if value is not None:
        op["Value"] = b64(value)
    return {"KV": op}


async def txn(addr: Any, ops: Any, query: str = "") -> Any:
    return await fetch(addr, "PUT", f"/v1/txn{query}", json.dumps(ops).encode())


def test_a_write_transaction_commits_all_and_answers_results_without_values() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            r = await txn(addr, [kv("set", "a", b"1", Flags=3), kv("cas", "b", b"2", Index=0), kv("get", "a")])
            assert r.status == 200 and r.header("Content-Type") == "application/json"
            index = service.store.current.applied
            assert json.loads(r.body) == {"Results": [
                {"KV": {"LockIndex": 0, "Key": "a", "Flags": 3, "Value": None, "CreateIndex": index,
                        "ModifyIndex": index}},
                {"KV": {"LockIndex": 0, "Key": "b", "Flags": 0, "Value": None, "CreateIndex": index,
                        "ModifyIndex": index}},
                {"KV": {"LockIndex": 0, "Key": "a", "Flags": 3, "Value": b64(b"1"), "CreateIndex": index,
                        "ModifyIndex": index}},
            ], "Errors": None}
            assert r.header("X-Consul-Index") is None  # a write answers no query metadata
            kvs = service.store.current.kvs
            assert (kvs["a"].value, kvs["b"].value) == (b"1", b"2")

    run(main)


def test_a_failed_transaction_is_409_with_every_error_and_keeps_nothing() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert (await txn(addr, [kv("set", "a", b"1")])).status == 200
            before = tables(service)
            r = await txn(addr, [kv("set", "new", b"x"), kv("cas", "a", b"2", Index=999),
                                 kv("check-not-exists", "a"), kv("delete", "gone")])
            assert r.status == 409 and r.header("Content-Type") == "application/json"
            assert json.loads(r.body) == {"Results": None, "Errors": [
                {"OpIndex": 1, "What": 'failed to set key "a", index is stale'},
                {"OpIndex": 2, "What": 'key "a" exists'},
            ]}
            assert tables(service) == before

    run(main)


def test_a_read_only_transaction_skips_the_log_and_answers_consuls_read_response() -> None:
    async def main() -> None:
        api, service, replica = store_agent()
        async with serving(api) as addr:
            assert (await txn(addr, [kv("set", "t/a", b"1"), kv("set", "t/b", b"2")])).status == 200
            proposals = replica.proposals
            r = await txn(addr, [kv("get", "t/a"), kv("get-tree", "t/"), kv("check-index", "t/b", Index=1)])
            assert r.status == 200
            body = json.loads(r.body)
            # get-tree gives every entry under the prefix; a check gives its entry without the value
            assert [x["KV"]["Key"] for x in body["Results"]] == ["t/a", "t/a", "t/b", "t/b"]
            assert [x["KV"]["Value"] for x in body["Results"]] == [b64(b"1"), b64(b"1"), b64(b"2"), None]
            assert {k: body[k] for k in body if k != "Results"} == {
                "Errors": None, "Index": 0, "LastContact": 0, "KnownLeader": True, "ConsistencyLevel": "",
                "NotModified": False, "Backend": 0}
            assert (r.header("X-Consul-Knownleader"), r.header("X-Consul-Lastcontact")) == ("true", "0")
            assert replica.proposals == proposals  # nothing went through the log
            # a failed read-only transaction is a 409 too
            r = await txn(addr, [kv("check-index", "t/b", Index=99)])
            assert r.status == 409
            assert json.loads(r.body)["Errors"] == [
                {"OpIndex": 0, "What": 'failed index check for key "t/b", current modify index 1 != 99'}]
            # consistency modes: ?consistent confirms leadership; ?stale is answered without a leader
            reads = replica.read_indexes
            assert (await txn(addr, [kv("get", "t/a")], "?consistent")).status == 200
            assert replica.read_indexes == reads + 1
            replica.leader = ""
            r = await txn(addr, [kv("get", "t/a")], "?stale")
            assert r.status == 200 and r.header("X-Consul-Knownleader") == "false"
            assert json.loads(r.body)["KnownLeader"] is False
            r = await txn(addr, [kv("get", "t/a")])
            assert (r.status, r.body) == (500, b"No cluster leader")
            r = await txn(addr, [kv("set", "t/a", b"9")])
            assert (r.status, r.body) == (500, b"No cluster leader")
            assert service.store.current.kvs["t/a"].value == b"1"

    run(main)


def test_consuls_prechecks_missing_key_and_unknown_verb_are_409s() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            assert (await txn(addr, [kv("set", "a", b"1")])).status == 200
            before = tables(service)
            # preCheck: reported alone, before anything runs
            r = await txn(addr, [kv("set", "", b"x"), kv("cas", "a", b"2", Index=999), kv("delete-tree", "")])
            assert (r.status, json.loads(r.body)) == (409, {"Results": None, "Errors": [
                {"OpIndex": 0, "What": "Must provide key"}]})
            # an unknown verb is the state's error, reported with the others' in op order
            r = await txn(addr, [kv("cas", "a", b"2", Index=999), kv("frob", "a"), kv("set", "b", b"")])
            assert (r.status, json.loads(r.body)) == (409, {"Results": None, "Errors": [
                {"OpIndex": 0, "What": 'failed to set key "a", index is stale'},
                {"OpIndex": 1, "What": 'unknown KV verb "frob"'}]})
            assert tables(service) == before

    run(main)


TOO_MANY = json.dumps([kv("get", f"k{i}") for i in range(65)]).encode()
BAD = [
    # (body, query, status, text)
    (b"", "", 400, "Failed to parse body: EOF"),
    (b'{"KV": {}}', "", 400, "Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps"),
    (b"[{", "", 400, None),
    (TOO_MANY, "", 413, "Transaction contains too many operations (65 > 64)"),
    (b"[" + b" " * (512 * 1024) + b"]", "", 413, "Request body too large, max size: 524288 bytes"),
    # with the default limits a value over kv_max_value_size makes the body too large first (as in Consul)
    (json.dumps([{"KV": {"Verb": "set", "Key": "big", "Value": b64(b"x" * (512 * 1024 + 1))}}]).encode(), "", 413,
     "Request body too large, max size: 524288 bytes"),
    (json.dumps([{"KV": {"Verb": "set", "Key": "k", "Value": "YQ"}}]).encode(), "", 400,
     "Failed to parse body: illegal base64 data at input byte 0"),
    (json.dumps([{"KV": {"Verb": "set", "Key": "k", "Value": 5}}]).encode(), "", 400,
     "Failed to parse body: json: cannot unmarshal number into Go struct field KVTxnOp.KV.Value of type []uint8"),
    (json.dumps([{"KV": {"Verb": "set", "Key": "k", "Flags": "1"}}]).encode(), "", 400,
     "Failed to parse body: json: cannot unmarshal string into Go struct field KVTxnOp.KV.Flags of type uint64"),
    (json.dumps([{"KV": {"Verb": "cas", "Key": "k", "Index": -1}}]).encode(), "", 400,
     "Failed to parse body: json: cannot unmarshal number -1 into Go struct field KVTxnOp.KV.Index of type uint64"),
    (json.dumps([{"KV": {"Verb": 3, "Key": "k"}}]).encode(), "", 400,
     "Failed to parse body: json: cannot unmarshal number into Go struct field KVTxnOp.KV.Verb of type api.KVOp"),
    (json.dumps([kv("get", "a"), {"Node": {"Verb": "get", "Node": {"Node": "n"}}}]).encode(), "", 400,
     "Transaction operation 1: Node operations are not supported by this agent yet (only KV)"),
    (json.dumps([kv("get", "a")]).encode(), "?stale&consistent", 400,
     "Cannot specify ?stale with ?consistent, conflicting semantics."),
    (json.dumps([kv("set", "a", b"1")]).encode(), "?dc=dc2", 500, "No path to datacenter"),
]


@pytest.mark.parametrize(("body", "query", "status", "text"), BAD, ids=[f"{b[2]}-{b[0][:30]!r}" for b in BAD])
def test_bad_transactions_get_consuls_answer_and_change_nothing(body: bytes, query: str, status: int,
                                                                text: str | None) -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            before = tables(service)
            r = await fetch(addr, "PUT", f"/v1/txn{query}", body)
            assert r.status == status, r.body
            if text is not None:
                assert r.body.decode() == text
            else:
                assert r.body.startswith(b"Failed to parse body: ")
            assert tables(service) == before

    run(main)


def test_a_value_over_kv_max_value_size_is_413_when_the_body_limit_is_higher() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api, txn_max_req_len=900 * 1024) as addr:
            before = tables(service)
            r = await txn(addr, [kv("set", "ok", b"x"), kv("set", "big", b"x" * (512 * 1024 + 1))])
            assert (r.status, r.body.decode()) == (
                413, f'Value for key "big" is too large ({512 * 1024 + 1} > {512 * 1024} bytes)')
            assert tables(service) == before

    run(main)


def test_a_get_only_transaction_with_stale_and_consistent_is_refused_but_a_write_ignores_them() -> None:
    """Consul parses the query options only on the read-only path."""

    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            r = await txn(addr, [kv("set", "a", b"1")], "?stale&consistent")
            assert r.status == 200 and service.store.current.kvs["a"].value == b"1"

    run(main)


# ------------------------------------------------------------------ Go's base64 as encoding/json reads []byte


@pytest.mark.parametrize(("text", "expected"), [
    ("", b""), ("YQ==", b"a"), ("YWI=", b"ab"), ("YWJj", b"abc"), ("YWJj\nZA==", b"abcd"), ("Y\r\nQ==", b"a"),
    ("YQ==\n", b"a"),
])
def test_go_base64_decodes_what_go_decodes(text: str, expected: bytes) -> None:
    assert go_base64(text) == expected


@pytest.mark.parametrize(("text", "offset"), [
    ("YQ", 0), ("YWJjZA", 4), ("Y", 0), ("Y@==", 1), ("YQ=", 3), ("YQ=x", 2), ("YQ==x", 4), ("=", 0), ("Y===", 1),
    ("YWJj=", 4), ("YW\u00e9=", 2),
])
def test_go_base64_names_the_byte_go_names(text: str, offset: int) -> None:
    with pytest.raises(ValueError, match=f"^illegal base64 data at input byte {offset}$"):
        go_base64(text)


@given(st.binary(max_size=200))
def test_go_base64_inverts_standard_encoding(data: bytes) -> None:
    assert go_base64(b64(data)) == data


# ------------------------------------------------------------------ /v1/catalog/register and /deregister


def test_catalog_register_and_deregister_write_the_store() -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            body = {"Node": "ext1", "Address": "192.0.2.7", "NodeMeta": {"rack": "r1"},
                    "Service": {"Service": "db", "Port": 5432},
                    "Check": {"Name": "db alive", "ServiceID": "db", "Status": "passing"}}
            r = await fetch(addr, "PUT", "/v1/catalog/register", json.dumps(body).encode())
            assert (r.status, json.loads(r.body)) == (200, True)
            state = service.store.current
            node = state.nodes["ext1"]
            assert (node.address, node.datacenter, dict(node.meta)) == ("192.0.2.7", "dc1", {"rack": "r1"})
            assert [s.service.id for s in state.services.values()] == ["db"]
            assert [c.check.status for c in state.checks.values()] == ["passing"]
            r = await fetch(addr, "PUT", "/v1/catalog/deregister", b'{"Node": "ext1", "ServiceID": "db"}')
            assert (r.status, json.loads(r.body)) == (200, True)
            assert len(service.store.current.services) == 0 and "ext1" in service.store.current.nodes
            r = await fetch(addr, "PUT", "/v1/catalog/deregister", b'{"Node": "ext1"}')
            assert (r.status, json.loads(r.body)) == (200, True)
            assert len(service.store.current.nodes) == 0

    run(main)


@pytest.mark.parametrize(("target", "body", "status", "text"), [
    ("/v1/catalog/register", b"", 400, "Request decode failed: EOF"),
    ("/v1/catalog/register", b"{", 400, None),
    ("/v1/catalog/register", b'{"Address": "192.0.2.1"}', 500, "Must provide node"),
    ("/v1/catalog/register", b'{"Node": "n"}', 500, "Must provide address if SkipNodeUpdate is not set"),
    ("/v1/catalog/register", b'{"Node": "n", "Address": "192.0.2.1", "Datacenter": "dc7"}', 500,
     "No path to datacenter"),
    ("/v1/catalog/deregister", b"{}", 500, "Must provide node"),
    ("/v1/catalog/deregister", b'{"node": "n", "datacenter": "dc2"}', 500, "No path to datacenter"),  # py-consul's
    ("/v1/catalog/deregister", b"", 400, "Request decode failed: EOF"),
])
def test_bad_registrations_get_consuls_answer_and_change_nothing(target: str, body: bytes, status: int,
                                                                 text: str | None) -> None:
    async def main() -> None:
        api, service, _ = store_agent()
        async with serving(api) as addr:
            before = tables(service)
            r = await fetch(addr, "PUT", target, body)
            assert r.status == status, r.body
            if text is None:
                assert r.body.startswith(b"Request decode failed: ")
            else:
                assert r.body.decode() == text
            assert tables(service) == before
            r = await fetch(addr, "GET", target)
            assert (r.status, r.header("Allow")) == (405, "OPTIONS,PUT")

    run(main)
