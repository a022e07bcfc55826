"""The leader's side of sessions: create-request parsing (defaults, LockDelay, TTL), validation against the
merged catalog, and TTL timers (2 x TTL, re-armed on taking office).

Sources: wave2-anchors §2.2 (session.mdx, agent/session_endpoint.go FixupLockDelay, lockDelayMinThreshold,
structs.go SessionTTLMultiplier), hashicorp/consul agent/consul/session_endpoint.go (texts)."""

from __future__ import annotations

import pytest
from state_helpers import SEC, Driven

from agent.server.state import commands as c
from agent.server.state.leader import (
    RequestError,
    SessionTimers,
    decode_lock_delay,
    parse_session_create,
    session_create_error,
)


@pytest.mark.parametrize(
    ("value", "ns"),
    [("15s", 15 * SEC), ("1m", 60 * SEC), (15, 15 * SEC), (999, 999 * SEC), (1000, 1000), (15e9, 15 * SEC),
     (0.001, 0), ("0s", 0), ("500ms", 500_000_000)],
)  # fmt: skip
def test_lock_delay_decoding(value: object, ns: int) -> None:
    # FixupLockDelay: strings are durations; a number < 1000 is seconds, larger is nanoseconds.
    assert decode_lock_delay(value) == ns


def test_lock_delay_unitless_string_is_an_error() -> None:
    with pytest.raises(RequestError, match='missing unit in duration "15"') as info:
        decode_lock_delay("15")
    assert info.value.status == 400


def test_defaults() -> None:
    # session.mdx / agent/session_endpoint.go: node = this agent, serfHealth, LockDelay 15s, release.
    cmd = parse_session_create(None, agent_node="me", session_id="id1")
    assert (cmd.id, cmd.node, cmd.lock_delay, cmd.behavior, cmd.node_checks, cmd.checks, cmd.ttl) == (
        "id1", "me", 15 * SEC, "release", ("serfHealth",), (), "",
    )  # fmt: skip


def test_keys_are_case_insensitive_like_py_consul_sends_them() -> None:
    # anchors §2.2: py-consul sends name, lockdelay, ttl, behavior, checks in lower case.
    cmd = parse_session_create(
        {"name": "x", "lockdelay": "0.001s", "ttl": "20s", "behavior": "delete", "checks": []},
        agent_node="me", session_id="i",
    )  # fmt: skip
    assert (cmd.name, cmd.lock_delay, cmd.ttl, cmd.behavior, cmd.checks, cmd.node_checks) == (
        "x", 1_000_000, "20s", "delete", (), (),
    )  # fmt: skip
    # Patroni's lock_delay=0.001 reaches Consul as "0.001s" (py-consul formats "{n}s"): 1 ms, not multiplied.


def test_explicit_checks_bind_with_node_checks() -> None:
    cmd = parse_session_create({"Checks": ["web"]}, agent_node="me", session_id="i")
    assert (cmd.checks, cmd.node_checks) == (("web",), ("serfHealth",))
    cmd = parse_session_create({"NodeChecks": ["a"], "ServiceChecks": [{"ID": "s1"}]}, agent_node="me",
                               session_id="i")  # fmt: skip
    assert (cmd.checks, cmd.node_checks, cmd.service_checks) == ((), ("a",), (("s1", ""),))


@pytest.mark.parametrize(
    ("body", "message"),
    [({"Behavior": "x"}, "Invalid Behavior setting 'x'"),
     ({"TTL": "5s"}, r"Invalid Session TTL '5000000000', must be between \[10s=24h0m0s\]"),
     ({"TTL": "86401s"}, "Invalid Session TTL '86401000000000'"),
     ({"TTL": "abc"}, "Session TTL 'abc' invalid: time: invalid duration"),
     ({"Node": ""}, "Must provide Node")],
)  # fmt: skip
def test_rule_errors(body: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        parse_session_create(body, agent_node="me", session_id="i")
    assert info.value.status == 500


def test_ttl_bounds_accepted() -> None:
    assert parse_session_create({"TTL": "10s"}, agent_node="me", session_id="i").ttl == "10s"
    assert parse_session_create({"TTL": "86400s"}, agent_node="me", session_id="i").ttl == "86400s"


def test_create_validation_against_the_merged_catalog() -> None:
    # session.go sessionCreateTxn / validateSessionChecksTxn: node must exist, checks exist and not critical.
    d = Driven()
    agents = {"me": {"serfHealth": "passing", "bad": "critical"}}
    ok = c.SessionCreate(id="s", node="ME", node_checks=("serfHealth",))
    assert session_create_error(d.state, ok, agents) is None
    assert session_create_error(d.state, c.SessionCreate(id="s", node="ghost"), agents) == "Missing node registration"
    assert session_create_error(d.state, c.SessionCreate(id="s", node="me", node_checks=("x",)), agents) == (
        "Missing check 'x' registration"
    )
    assert session_create_error(d.state, c.SessionCreate(id="s", node="me", node_checks=("bad",)), agents) == (
        "Check 'bad' is in critical state"
    )


def test_timers_two_times_ttl_and_renew() -> None:
    # structs.go SessionTTLMultiplier = 2: "sessions may not be reaped for up to double this TTL".
    d = Driven()
    d.session("a", ttl="10s")
    d.session("b")
    timers = SessionTimers()
    timers.arm_all(d.state, now=0)
    assert timers.deadlines == {"a": 20 * SEC} and timers.next_deadline() == 20 * SEC
    assert timers.expired(d.state, 19 * SEC) == []
    assert timers.renew(d.state, "a", now=15 * SEC) is True
    assert timers.expired(d.state, 20 * SEC) == [] and timers.expired(d.state, 35 * SEC) == ["a"]
    assert timers.renew(d.state, "zz", now=0) is False  # renew of an unknown session: 404
    d.run(c.SessionDestroy(id="a"))
    assert timers.expired(d.state, 100 * SEC) == [] and timers.deadlines == {}
