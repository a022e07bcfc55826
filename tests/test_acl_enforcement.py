"""ACL enforcement (issue 13) on real agents over real HTTP and DNS: the security matrix over every route the
router serves, Consul's rules for services, keys and ``deny``, and the attacker's three tries (a script check
without the right, a cross-origin browser, a token in a query string that must never reach a log line).

One server (``m1``) with ``default_policy = "deny"`` serves the matrix; its management token comes from
``/v1/acl/bootstrap``, its readiness probe uses the agent recovery token.  The deleted-token test runs its own
cluster (three servers and a client)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from consul_agents import Cluster, ConsulAgent
from procs import wait_for

from agent.http.authz import GUARDS
from agent.http.endpoints import default_router

MGMT = "8f2d7c1a-1111-4000-8000-000000000001"
RECOVERY = "8f2d7c1a-2222-4000-8000-000000000002"
DENIED = "Permission denied"
COORD = {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05}  # Vivaldi's origin
FILTERED = "X-Consul-Results-Filtered-By-ACLs"


def acl_block(**more: Any) -> dict[str, Any]:
    return {"acl": {"enabled": True, "default_policy": "deny", **more,
                    "tokens": {"agent_recovery": RECOVERY, **more.pop("tokens", {})}}}  # fmt: skip


def call(agent: ConsulAgent, method: str, target: str, body: Any = None, token: str = "",
         headers: dict[str, str] | None = None) -> requests.Response:  # fmt: skip
    h = dict(headers or {})
    if token:
        h["X-Consul-Token"] = token
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return requests.request(method, f"http://{agent.http_addr}{target}", data=data, headers=h, timeout=10)


def ok(reply: requests.Response) -> requests.Response:
    assert reply.status_code == 200, (reply.status_code, reply.text)
    return reply


def make_token(agent: ConsulAgent, rules: list[str], secret: str = "") -> dict[str, Any]:
    """A token with one new policy per rules text (as the management token)."""
    links = []
    for text in rules:
        name = f"p{time.monotonic_ns()}"
        policy = ok(call(agent, "PUT", "/v1/acl/policy", {"Name": name, "Rules": text}, MGMT)).json()
        links.append({"ID": policy["ID"]})
    body: dict[str, Any] = {"Policies": links}
    if secret:
        body["SecretID"] = secret
    return ok(call(agent, "PUT", "/v1/acl/token", body, MGMT)).json()


# ------------------------------------------------------------------ the shared server


@pytest.fixture(scope="module")
def m1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsulAgent, dict[str, str]]]:
    cluster = Cluster(tmp_path_factory.mktemp("acl"))
    try:
        agent = cluster.start("m1", server=True, dns=True, token=RECOVERY, extra={
            **acl_block(), "log_level": "debug", "ui_config": {"enabled": True}})  # fmt: skip
        boot = wait_for(lambda: call(agent, "PUT", "/v1/acl/bootstrap", {"BootstrapSecret": MGMT}).ok, timeout=30,
                        what="ACL bootstrap", diagnostics=cluster.diagnostics)  # fmt: skip
        assert boot
        for name in ("web-1", "db-1"):
            ok(call(agent, "PUT", "/v1/agent/service/register", {"Name": name, "Check": {"TTL": "60s"}}, MGMT))
        ok(call(agent, "PUT", "/v1/kv/app/x", b"one", MGMT))
        ok(call(agent, "PUT", "/v1/kv/secret/y", b"two", MGMT))
        session = ok(call(agent, "PUT", "/v1/session/create", {"Name": "s"}, MGMT)).json()["ID"]
        ok(call(agent, "PUT", "/v1/event/fire/deploy", b"", MGMT))
        ok(call(agent, "PUT", "/v1/coordinate/update", {"Node": "m1", "Coord": COORD}, MGMT))
        wait_for(lambda: call(agent, "GET", "/v1/catalog/service/web-1", token=MGMT).json(), timeout=20,
                 what="web-1 in the catalog", diagnostics=cluster.diagnostics)  # fmt: skip
        yield agent, {"session": session}
    finally:
        cluster.close()


# ------------------------------------------------------------------ the matrix

#: (pattern, method) -> (target, body, expectation) for an anonymous request under default_policy deny.
#: Expectations: "deny" (403 Permission denied), "public" (200: Consul checks nothing), "filtered" (200 or 404
#: with nothing the management token sees; with a token, the header where Consul's servers set it),
#: "filtered-quiet" (the same, never the header: agent-local lists), "txn" (409 with Permission denied per op),
#: "not-found" (403 ACL not found: login and logout, which have no token of their own to refuse).
#: Destructive requests come last: if they were let through, the rows after them could not run.
MATRIX: list[tuple[str, str, str, Any, str]] = [
    ("/v1/acl/bootstrap", "PUT", "/v1/acl/bootstrap", None, "deny"),
    ("/v1/acl/token", "PUT", "/v1/acl/token", {}, "deny"),
    ("/v1/acl/token/", "GET", "/v1/acl/token/{mgmt_accessor}", None, "deny"),
    ("/v1/acl/token/", "PUT", "/v1/acl/token/{mgmt_accessor}", {}, "deny"),
    ("/v1/acl/tokens", "GET", "/v1/acl/tokens", None, "deny"),
    ("/v1/acl/policy", "PUT", "/v1/acl/policy", {"Name": "x"}, "deny"),
    ("/v1/acl/policy/", "GET", "/v1/acl/policy/00000000-0000-0000-0000-000000000001", None, "deny"),
    ("/v1/acl/policy/", "PUT", "/v1/acl/policy/00000000-0000-0000-0000-000000000001", {}, "deny"),
    ("/v1/acl/policies", "GET", "/v1/acl/policies", None, "deny"),
    ("/v1/acl/role", "PUT", "/v1/acl/role", {"Name": "r"}, "deny"),
    ("/v1/acl/role/", "GET", "/v1/acl/role/name/r", None, "deny"),
    ("/v1/acl/role/", "PUT", "/v1/acl/role/x", {}, "deny"),
    ("/v1/acl/roles", "GET", "/v1/acl/roles", None, "deny"),
    ("/v1/acl/login", "POST", "/v1/acl/login", {"AuthMethod": "x", "BearerToken": "y"}, "not-found"),
    ("/v1/acl/logout", "POST", "/v1/acl/logout", None, "not-found"),
    ("/v1/agent/token/", "PUT", "/v1/agent/token/default", {"Token": "x"}, "deny"),
    ("/v1/agent/members", "GET", "/v1/agent/members", None, "filtered-quiet"),
    ("/v1/agent/self", "GET", "/v1/agent/self", None, "deny"),
    ("/v1/agent/metrics", "GET", "/v1/agent/metrics", None, "deny"),
    ("/v1/agent/monitor", "GET", "/v1/agent/monitor", None, "deny"),
    ("/v1/agent/services", "GET", "/v1/agent/services", None, "filtered-quiet"),
    ("/v1/agent/service/", "GET", "/v1/agent/service/web-1", None, "deny"),
    ("/v1/agent/service/register", "PUT", "/v1/agent/service/register", {"Name": "evil"}, "deny"),
    ("/v1/agent/checks", "GET", "/v1/agent/checks", None, "filtered-quiet"),
    ("/v1/agent/check/register", "PUT", "/v1/agent/check/register", {"Name": "c", "TTL": "9s"}, "deny"),
    ("/v1/agent/check/pass/", "PUT", "/v1/agent/check/pass/service:web-1", None, "deny"),
    ("/v1/agent/check/warn/", "PUT", "/v1/agent/check/warn/service:web-1", None, "deny"),
    ("/v1/agent/check/fail/", "PUT", "/v1/agent/check/fail/service:web-1", None, "deny"),
    ("/v1/agent/check/update/", "PUT", "/v1/agent/check/update/service:web-1", {"Status": "passing"}, "deny"),
    ("/v1/catalog/nodes", "GET", "/v1/catalog/nodes", None, "filtered"),
    ("/v1/catalog/node/", "GET", "/v1/catalog/node/m1", None, "filtered"),
    ("/v1/catalog/node-services/", "GET", "/v1/catalog/node-services/m1", None, "filtered"),
    ("/v1/catalog/datacenters", "GET", "/v1/catalog/datacenters", None, "public"),
    ("/v1/coordinate/datacenters", "GET", "/v1/coordinate/datacenters", None, "public"),
    ("/v1/coordinate/nodes", "GET", "/v1/coordinate/nodes", None, "filtered"),
    ("/v1/coordinate/node/", "GET", "/v1/coordinate/node/m1", None, "deny"),
    ("/v1/coordinate/update", "PUT", "/v1/coordinate/update", {"Node": "m1", "Coord": COORD}, "deny"),
    ("/v1/catalog/services", "GET", "/v1/catalog/services", None, "filtered"),
    ("/v1/catalog/service/", "GET", "/v1/catalog/service/web-1", None, "filtered"),
    ("/v1/catalog/register", "PUT", "/v1/catalog/register", {"Node": "ext1", "Address": "10.0.0.1"}, "deny"),
    ("/v1/health/node/", "GET", "/v1/health/node/m1", None, "filtered"),
    ("/v1/health/checks/", "GET", "/v1/health/checks/web-1", None, "filtered"),
    ("/v1/health/state/", "GET", "/v1/health/state/any", None, "filtered"),
    ("/v1/health/service/", "GET", "/v1/health/service/web-1", None, "filtered"),
    ("/v1/kv/", "GET", "/v1/kv/app/x", None, "deny"),
    ("/v1/kv/", "GET", "/v1/kv/?recurse", None, "filtered"),
    ("/v1/kv/", "GET", "/v1/kv/app?keys", None, "filtered"),
    ("/v1/txn", "PUT", "/v1/txn", [{"KV": {"Verb": "get", "Key": "app/x"}}], "filtered"),
    ("/v1/txn", "PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": "app/x", "Value": "eA=="}}], "txn"),
    ("/v1/session/create", "PUT", "/v1/session/create", {}, "deny"),
    ("/v1/session/renew/", "PUT", "/v1/session/renew/{session}", None, "deny"),
    ("/v1/session/info/", "GET", "/v1/session/info/{session}", None, "filtered"),
    ("/v1/session/node/", "GET", "/v1/session/node/m1", None, "filtered"),
    ("/v1/session/list", "GET", "/v1/session/list", None, "filtered"),
    ("/v1/event/fire/", "PUT", "/v1/event/fire/evil", None, "deny"),
    ("/v1/event/list", "GET", "/v1/event/list", None, "filtered-quiet"),
    ("/v1/operator/keyring", "GET", "/v1/operator/keyring", None, "deny"),
    ("/v1/operator/keyring", "POST", "/v1/operator/keyring", {"Key": "x"}, "deny"),
    ("/v1/operator/keyring", "PUT", "/v1/operator/keyring", {"Key": "x"}, "deny"),
    ("/v1/operator/keyring", "DELETE", "/v1/operator/keyring", {"Key": "x"}, "deny"),
    ("/v1/operator/raft/configuration", "GET", "/v1/operator/raft/configuration", None, "deny"),
    ("/v1/status/leader", "GET", "/v1/status/leader", None, "public"),
    ("/v1/status/peers", "GET", "/v1/status/peers", None, "public"),
    ("/v1/stream/members", "GET", "/v1/stream/members", None, "deny"),
    ("/ui/", "GET", "/ui/", None, "public"),
    ("/ui/", "HEAD", "/ui/", None, "public"),
    # destructive, last
    ("/v1/acl/token/", "DELETE", "/v1/acl/token/{mgmt_accessor}", None, "deny"),
    ("/v1/acl/policy/", "DELETE", "/v1/acl/policy/00000000-0000-0000-0000-000000000001", None, "deny"),
    ("/v1/acl/role/", "DELETE", "/v1/acl/role/x", None, "deny"),
    ("/v1/agent/service/maintenance/", "PUT", "/v1/agent/service/maintenance/web-1?enable=true", None, "deny"),
    ("/v1/agent/maintenance", "PUT", "/v1/agent/maintenance?enable=true", None, "deny"),
    ("/v1/agent/check/deregister/", "PUT", "/v1/agent/check/deregister/service:web-1", None, "deny"),
    ("/v1/agent/service/deregister/", "PUT", "/v1/agent/service/deregister/web-1", None, "deny"),
    ("/v1/catalog/deregister", "PUT", "/v1/catalog/deregister", {"Node": "m1"}, "deny"),
    ("/v1/kv/", "PUT", "/v1/kv/app/x", b"evil", "deny"),
    ("/v1/kv/", "DELETE", "/v1/kv/app/x", None, "deny"),
    ("/v1/kv/", "DELETE", "/v1/kv/?recurse", None, "deny"),
    ("/v1/session/destroy/", "PUT", "/v1/session/destroy/{session}", None, "deny"),
    ("/v1/operator/raft/peer", "DELETE", "/v1/operator/raft/peer?id=x", None, "deny"),
    ("/v1/agent/force-leave/", "PUT", "/v1/agent/force-leave/m1", None, "deny"),
    ("/v1/agent/join/", "PUT", "/v1/agent/join/127.0.0.1:1", None, "deny"),
    ("/v1/agent/reload", "PUT", "/v1/agent/reload", None, "deny"),
    ("/v1/agent/leave", "PUT", "/v1/agent/leave", None, "deny"),
]


def test_every_route_has_a_rule_and_a_matrix_row() -> None:
    # a route added without a rule here (and a row above) fails this test, not a security review later
    router = default_router()
    served = {(r.pattern, m) for r in router.routes() for m in r.methods}
    served |= {(s.path, "GET") for s in router.socket_routes()}
    assert {p for p, _ in served} == set(GUARDS), "GUARDS must name every route pattern, and only those"
    assert served == {(p, m) for p, m, *_ in MATRIX}, "MATRIX must try every (route, method)"
    assert all(rule.rule for rule in GUARDS.values())


def _empty(value: Any) -> bool:
    if isinstance(value, dict) and "Results" in value:
        return not value["Results"]
    if isinstance(value, dict) and set(value) == {"Node", "Services"}:  # a NodeServiceList
        return value["Node"] is None
    return value in ([], {}, None)


def test_anonymous_under_deny_gets_403_or_a_filtered_list_everywhere(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, seeded = m1
    mgmt_accessor = ok(call(agent, "GET", "/v1/acl/token/self", token=MGMT)).json()["AccessorID"]
    names = {"mgmt_accessor": mgmt_accessor, **seeded}
    nothing = make_token(agent, ['key_prefix "nothing-here/" { policy = "read" }'])["SecretID"]
    failures = []
    for pattern, method, target, body, expect in MATRIX:
        target = target.format(**names)
        reply = call(agent, method, target, body)
        where = f"{method} {target} ({pattern}): {reply.status_code} {reply.text[:160]!r}"
        if expect == "deny":
            if reply.status_code != 403 or (method != "HEAD" and not reply.text.startswith(DENIED)):
                failures.append(where)
        elif expect == "not-found":
            if reply.status_code != 403 or not reply.text.startswith("ACL not found"):
                failures.append(where)
        elif expect == "public":
            if reply.status_code != 200:
                failures.append(where)
        elif expect == "txn":
            if reply.status_code != 409 or DENIED not in reply.json()["Errors"][0]["What"]:
                failures.append(where)
        else:
            seen_by_management = call(agent, method, target, body, MGMT)
            assert seen_by_management.status_code == 200 and not _empty(seen_by_management.json()), where
            # no token at all: never the header (Consul's maskResultsFilteredByACLs); a token that reads
            # nothing: the header where Consul's servers set it
            with_token = call(agent, method, target, body, nothing)
            for answer, header_expected in ((reply, False), (with_token, expect == "filtered")):
                empty = answer.status_code == 404 or (answer.status_code == 200 and _empty(answer.json()))
                header = answer.headers.get(FILTERED) == "true"
                if not empty or header != header_expected:
                    failures.append(f"{where} with a token: {answer is with_token} {answer.status_code} "
                                    f"header={answer.headers.get(FILTERED)}")
    assert not failures, "\n".join(failures)
    assert ok(call(agent, "GET", "/v1/agent/self", token=MGMT)).json()["Config"]["NodeName"] == "m1"  # still up


def test_the_refusal_text_is_consuls(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    reply = call(agent, "PUT", "/v1/kv/app/x", b"v")
    assert reply.status_code == 403
    assert reply.text == ("Permission denied: anonymous token lacks permission 'key:write' on \"app/x\". The "
                          "anonymous token is used implicitly when a request does not specify a token.")
    unknown = call(agent, "GET", "/v1/kv/app/x", token="00000000-dead-4000-8000-000000000000")
    assert (unknown.status_code, unknown.text) == (403, "ACL not found")


def test_a_service_prefix_token_registers_web_1_and_not_db_1(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    token = make_token(agent, ['service_prefix "web" { policy = "write" }'])
    secret, accessor = token["SecretID"], token["AccessorID"]
    ok(call(agent, "PUT", "/v1/agent/service/register", {"Name": "web-2"}, secret))
    refused = call(agent, "PUT", "/v1/agent/service/register", {"Name": "db-2"}, secret)
    assert refused.status_code == 403
    assert refused.text == f"Permission denied: token with AccessorID '{accessor}' lacks permission " \
                           "'service:write' on \"db-2\""
    services = ok(call(agent, "GET", "/v1/agent/services", token=secret)).json()
    assert "web-2" in services and "web-1" in services and "db-1" not in services  # read filtered by service
    assert "db-2" not in ok(call(agent, "GET", "/v1/agent/services", token=MGMT)).json()
    # Consul's bearer and query forms carry the same token
    bearer = call(agent, "PUT", "/v1/agent/service/register", {"Name": "web-3"},
                  headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert bearer.status_code == 200
    assert call(agent, "PUT", f"/v1/agent/service/deregister/web-3?token={secret}").status_code == 200
    assert call(agent, "PUT", "/v1/agent/service/deregister/db-1", token=secret).status_code == 403


def test_a_key_prefix_read_token_reads_app_x_and_cannot_write_it(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    secret = make_token(agent, ['key_prefix "app/" { policy = "read" }'])["SecretID"]
    got = ok(call(agent, "GET", "/v1/kv/app/x", token=secret)).json()
    assert got[0]["Key"] == "app/x"
    assert call(agent, "PUT", "/v1/kv/app/x", b"w", secret).status_code == 403
    assert call(agent, "DELETE", "/v1/kv/app/x", token=secret).status_code == 403
    assert call(agent, "GET", "/v1/kv/secret/y", token=secret).status_code == 403
    listed = ok(call(agent, "GET", "/v1/kv/?recurse", token=secret))
    assert [e["Key"] for e in listed.json()] == ["app/x"] and listed.headers[FILTERED] == "true"
    keys = ok(call(agent, "GET", "/v1/kv/?keys", token=secret)).json()
    assert keys == ["app/x"]
    txn = call(agent, "PUT", "/v1/txn", [{"KV": {"Verb": "get", "Key": "app/x"}},
                                         {"KV": {"Verb": "set", "Key": "app/x", "Value": "eA=="}}], secret)
    assert txn.status_code == 409 and [e["OpIndex"] for e in txn.json()["Errors"]] == [1]
    assert ok(call(agent, "GET", "/v1/kv/app/x?raw", token=MGMT)).content == b"one"  # nothing was written


def test_deny_beats_everything(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    grant = 'key_prefix "app/" { policy = "write" }\nservice_prefix "" { policy = "write" }'
    refuse = 'key_prefix "app/" { policy = "deny" }\nservice "db-9" { policy = "deny" }'
    secret = make_token(agent, [grant, refuse])["SecretID"]
    assert call(agent, "GET", "/v1/kv/app/x", token=secret).status_code == 403
    assert call(agent, "PUT", "/v1/kv/app/x", b"w", secret).status_code == 403
    assert call(agent, "PUT", "/v1/agent/service/register", {"Name": "db-9"}, secret).status_code == 403
    ok(call(agent, "PUT", "/v1/agent/service/register", {"Name": "db-8"}, secret))  # the prefix grant stands


def test_sessions_need_session_write_on_their_node(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    other = make_token(agent, ['session "elsewhere" { policy = "write" }'])["SecretID"]
    mine = make_token(agent, ['session "m1" { policy = "write" }'])["SecretID"]
    assert call(agent, "PUT", "/v1/session/create", {}, other).status_code == 403
    created = ok(call(agent, "PUT", "/v1/session/create", {}, mine)).json()["ID"]
    assert call(agent, "PUT", f"/v1/session/destroy/{created}", token=other).status_code == 403
    ok(call(agent, "PUT", f"/v1/session/destroy/{created}", token=mine))


def test_catalog_registration_needs_node_and_service_write(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    service_only = make_token(agent, ['service "ext-svc" { policy = "write" }'])["SecretID"]
    both = make_token(agent, ['node "ext1" { policy = "write" }\nservice "ext-svc" { policy = "write" }'])["SecretID"]
    register = {"Node": "ext1", "Address": "10.0.0.1", "Service": {"Service": "ext-svc", "Port": 1}}
    refused = call(agent, "PUT", "/v1/catalog/register", register, service_only)
    assert refused.status_code == 403 and "'node:write' on \"ext1\"" in refused.text  # a new node
    ok(call(agent, "PUT", "/v1/catalog/register", register, both))
    wait_for(lambda: call(agent, "GET", "/v1/catalog/node/ext1", token=MGMT).json(), timeout=10, what="ext1")
    # the node known, a service update needs only the service's write (Consul's vetRegisterWithACL)
    ok(call(agent, "PUT", "/v1/catalog/register", {**register, "Service": {"Service": "ext-svc", "Port": 2}},
            service_only))  # fmt: skip
    other = call(agent, "PUT", "/v1/catalog/register", {**register, "Service": {"Service": "db-x"}}, service_only)
    assert other.status_code == 403 and "'service:write' on \"db-x\"" in other.text
    gone = call(agent, "PUT", "/v1/catalog/deregister", {"Node": "ext1"}, service_only)
    assert gone.status_code == 403
    ok(call(agent, "PUT", "/v1/catalog/deregister", {"Node": "ext1", "ServiceID": "ext-svc"}, service_only))
    ok(call(agent, "PUT", "/v1/catalog/deregister", {"Node": "ext1"}, both))


def test_dns_answers_with_the_dns_tokens_view(tmp_path: Any) -> None:
    dns_secret = "8f2d7c1a-3333-4000-8000-000000000003"
    cluster = Cluster(tmp_path)
    try:
        agent = cluster.start("d1", server=True, dns=True, token=RECOVERY,
                              extra=acl_block(tokens={"dns": dns_secret}))  # fmt: skip
        wait_for(lambda: call(agent, "PUT", "/v1/acl/bootstrap", {"BootstrapSecret": MGMT}).ok, timeout=30,
                 what="ACL bootstrap", diagnostics=cluster.diagnostics)  # fmt: skip
        for name in ("web", "db"):
            ok(call(agent, "PUT", "/v1/agent/service/register", {"Name": name, "Port": 80}, MGMT))

        def rcode(qname: str) -> int:
            reply = dns.query.udp(dns.message.make_query(qname, "A"), agent.ip, port=agent.dns_port, timeout=2)
            return reply.rcode()

        # no dns token in the store yet: the default policy (deny) sees nothing
        wait_for(lambda: call(agent, "GET", "/v1/catalog/service/web", token=MGMT).json(), timeout=20,
                 what="web in the catalog")
        assert rcode("d1.node.consul.") == dns.rcode.NXDOMAIN
        assert rcode("web.service.consul.") == dns.rcode.NXDOMAIN
        make_token(agent, ['node_prefix "" { policy = "read" }\nservice "web" { policy = "read" }'], dns_secret)
        assert wait_for(lambda: rcode("web.service.consul.") == dns.rcode.NOERROR, timeout=10, what="web answered")
        assert rcode("d1.node.consul.") == dns.rcode.NOERROR
        assert rcode("db.service.consul.") == dns.rcode.NXDOMAIN  # not readable: not there
    finally:
        cluster.close()


# ------------------------------------------------------------------ the attacker


def test_a_script_check_from_a_token_without_the_right_is_refused(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    reader = make_token(agent, ['agent_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }'])
    script = {"Name": "pwn", "Args": ["/bin/sh", "-c", "touch /tmp/pwned"], "Interval": "1s"}
    refused = call(agent, "PUT", "/v1/agent/check/register", script, reader["SecretID"])
    assert refused.status_code == 403
    assert "lacks permission 'node:write' on \"m1\"" in refused.text
    # the management token passes the ACL, and enable_script_checks (off) still refuses the script
    still = call(agent, "PUT", "/v1/agent/check/register", script, MGMT)
    assert still.status_code != 200 and "script" in still.text.lower()
    assert "pwn" not in json.dumps(ok(call(agent, "GET", "/v1/agent/checks", token=MGMT)).json())


def test_a_cross_origin_browser_request_is_refused(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    evil = {"Origin": "http://evil.example"}
    refused = call(agent, "PUT", "/v1/kv/app/x", b"evil", MGMT, headers=evil)
    assert refused.status_code == 403 and "cross-origin" in refused.text
    preflight = call(agent, "OPTIONS", "/v1/kv/app/x", headers={**evil, "Access-Control-Request-Method": "PUT"})
    assert "Access-Control-Allow-Origin" not in preflight.headers  # the browser will not send the real request
    upgrade = {**evil, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    stream = call(agent, "GET", "/v1/stream/members", token=MGMT, headers=upgrade)
    assert stream.status_code == 403
    same_site = call(agent, "GET", "/v1/kv/app/x?raw", token=MGMT, headers={"Origin": f"http://{agent.http_addr}"})
    assert same_site.status_code == 200 and same_site.content == b"one"


def test_a_token_in_a_query_string_never_reaches_a_log_line(m1: tuple[ConsulAgent, dict[str, str]]) -> None:
    agent, _ = m1
    secret = make_token(agent, ['key_prefix "app/" { policy = "read" }'])["SecretID"]
    tries = [("GET", f"/v1/kv/app/x?token={secret}"), ("PUT", f"/v1/kv/app/x?token={secret}"),
             ("GET", f"/v1/kv/nope?token={secret}"), ("GET", f"/v1/agent/self?token={secret}"),
             ("GET", f"/v1/kv/app/x?token={secret}&index=zz"), ("GET", f"/v1/kv/app/x?token={secret}&%zz"),
             ("GET", f"/v1/catalog/nodes?token={secret}&dc=elsewhere"), ("GET", f"/v1/nothing?token={secret}"),
             ("GET", f"/v1/agent/monitor?token={secret}&loglevel=bogus")]  # fmt: skip
    for method, target in tries:
        call(agent, method, target)
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    call(agent, "GET", f"/v1/stream/members?token={secret}", headers=upgrade)
    marker = f"marker-{time.monotonic_ns()}"
    call(agent, "PUT", f"/v1/kv/{marker}?token={secret}", b"x")  # refused and logged: the last line we wait for
    log = wait_for(lambda: (t := agent.proc.log_path.read_text(errors="replace")) and marker in t and t,
                   timeout=10, what="the agent's log line for the last request")  # fmt: skip
    assert "[DEBUG]" in log  # the agent logs at debug: every line it has was written
    assert secret not in log and MGMT not in log and RECOVERY not in log


# ------------------------------------------------------------------ a deleted token, on every agent


def test_a_deleted_token_is_refused_at_once_on_every_agent(tmp_path: Any) -> None:
    cluster = Cluster(tmp_path)
    try:
        servers = start_servers_with_acls(cluster)
        client = cluster.start("c1", token=RECOVERY, extra={
            **acl_block(token_ttl="5m"), "retry_join": [servers[0].serf_addr], "retry_interval": "1s"})
        everyone = [*servers, client]
        token = make_token(servers[0], ['key_prefix "" { policy = "read" }'])
        ok(call(servers[0], "PUT", "/v1/kv/k", b"v", MGMT))
        for agent in everyone:  # every agent knows the token now (the client has cached it for 5 minutes)
            wait_for(lambda a=agent: call(a, "GET", "/v1/kv/k", token=token["SecretID"]).ok, timeout=30,
                     what=f"{agent.name} reads with the token", diagnostics=cluster.diagnostics)  # fmt: skip
        ok(call(servers[1], "DELETE", f"/v1/acl/token/{token['AccessorID']}", token=MGMT))
        deleted = time.monotonic()
        took = {}
        for agent in everyone:
            wait_for(lambda a=agent: call(a, "GET", "/v1/kv/k", token=token["SecretID"]).status_code == 403,
                     timeout=3, what=f"{agent.name} refuses the deleted token", diagnostics=cluster.diagnostics)
            took[agent.name] = time.monotonic() - deleted
            reply = call(agent, "GET", "/v1/kv/k", token=token["SecretID"])
            assert (reply.status_code, reply.text) == (403, "ACL not found")
        assert max(took.values()) < 3.0 < 300, took  # far inside the client's 5-minute token_ttl
    finally:
        cluster.close()


def start_servers_with_acls(cluster: Cluster) -> list[ConsulAgent]:
    """Three servers with ACLs on (deny), bootstrapped with the management token."""
    servers: list[ConsulAgent] = []
    for i in range(3):
        join = {"retry_join": [servers[0].serf_addr], "retry_interval": "1s"} if servers else {}
        servers.append(cluster.start(f"s{i + 1}", token=RECOVERY, extra={
            "server": True, "bootstrap_expect": 3, "performance": {"raft_multiplier": 1}, **acl_block(), **join}))
    wait_for(lambda: call(servers[0], "PUT", "/v1/acl/bootstrap", {"BootstrapSecret": MGMT}).ok, timeout=40,
             what="ACL bootstrap", diagnostics=cluster.diagnostics)  # fmt: skip
    return servers


def test_down_policy_extend_cache_keeps_a_clients_cached_answers(tmp_path: Any) -> None:
    cluster = Cluster(tmp_path)
    try:
        server = cluster.start("s1", server=True, token=RECOVERY, extra=acl_block())
        wait_for(lambda: call(server, "PUT", "/v1/acl/bootstrap", {"BootstrapSecret": MGMT}).ok, timeout=30,
                 what="ACL bootstrap", diagnostics=cluster.diagnostics)  # fmt: skip
        client = cluster.start("c1", token=RECOVERY, extra={
            **acl_block(token_ttl="1s"), "retry_join": [server.serf_addr], "retry_interval": "1s"})
        reader = make_token(server, ['agent_prefix "" { policy = "read" }'])["SecretID"]
        wait_for(lambda: call(client, "GET", "/v1/agent/self", token=reader).ok, timeout=30,
                 what="the client resolves the token", diagnostics=cluster.diagnostics)  # fmt: skip
        resolved = time.monotonic()
        server.proc.stop()
        unknown = "8f2d7c1a-9999-4000-8000-000000000009"  # never resolved: with no server, the default policy
        wait_for(lambda: call(client, "GET", "/v1/agent/self", token=unknown).text.startswith(DENIED), timeout=30,
                 what="an unknown token meets the default policy (deny)", diagnostics=cluster.diagnostics)
        wait_for(lambda: time.monotonic() - resolved > 1.5, timeout=5, what="the cached answer outlives token_ttl")
        assert call(client, "GET", "/v1/agent/self", token=reader).status_code == 200  # extended
        assert call(client, "GET", "/v1/agent/self", token=RECOVERY).status_code == 200  # no server needed
    finally:
        cluster.close()


def test_the_pattern_table_in_the_docs_is_the_code_s() -> None:
    from pathlib import Path

    from conftest import REPO

    text = (Path(REPO) / "docs" / "acl.md").read_text()
    for pattern, rule in GUARDS.items():
        assert f"`{pattern}`" in text, f"docs/acl.md does not list {pattern}"
        assert rule.rule in text, f"docs/acl.md does not give {pattern}'s rule as the code does: {rule.rule}"
