"""User events between real agents: two `python -m agent` processes (filters applied by the receiver), the
`event` command, and the real `serf` binary on both sides of Consul's encoding (`consul:event:<name>`, msgpack
UserEvent payload).

Every wait is a condition with a deadline; absence is asserted only after the receiving agent logged that it
dropped that very event (so the event did arrive and the filter, not the gossip, kept it out).
"""

from __future__ import annotations

import base64
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import SERF_BIN, Agents
from consul_agents import Cluster, ConsulAgent
from procs import wait_for

from agent.events import UserEvent, decode, encode, uuid_to_uint64

BOUND = 20.0  # gossip of one broadcast on a local-profile cluster of 2-3 nodes, with slack for a loaded machine


def listed(agent: ConsulAgent, name: str = "") -> list[dict[str, Any]]:
    params = {"name": name} if name else {}
    reply = requests.get(f"http://{agent.http_addr}/v1/event/list", params=params, timeout=5)
    reply.raise_for_status()
    return reply.json()


def fire(agent: ConsulAgent, name: str, payload: bytes = b"", **filters: str) -> dict[str, Any]:
    reply = requests.put(f"http://{agent.http_addr}/v1/event/fire/{name}", params=filters, data=payload, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def ids(agent: ConsulAgent) -> set[str]:
    return {e["ID"] for e in listed(agent)}


def dropped(agent: ConsulAgent, event_id: str) -> bool:
    return f"({event_id}) filtered out" in agent.proc.log_path.read_text(errors="replace")


def two_agents(cluster: Cluster) -> tuple[ConsulAgent, ConsulAgent]:
    debug = {"log_level": "debug"}
    c1 = cluster.start("c1", extra=debug)
    c2 = cluster.start("c2", extra={**debug, "service": {"name": "web", "id": "web-1", "port": 80, "tags": ["v1"]}})
    assert c2.cli("join", c1.serf_addr).returncode == 0
    wait_for(lambda: c1.status_of("c2") == "alive" and c2.status_of("c1") == "alive", timeout=BOUND,
             what="c1 and c2 see each other", diagnostics=cluster.diagnostics)
    return c1, c2


def test_event_fired_on_one_agent_is_listed_on_the_other_with_filters(cluster: Cluster) -> None:
    c1, c2 = two_agents(cluster)

    plain = fire(c1, "deploy", b"v42")
    assert plain["ID"] in ids(c1), "fire answered before the sender's own list showed the event"
    wait_for(lambda: plain["ID"] in ids(c2), timeout=BOUND,
             what="the unfiltered event on both agents", diagnostics=cluster.diagnostics)
    on_c2 = next(e for e in listed(c2) if e["ID"] == plain["ID"])
    assert base64.b64decode(on_c2["Payload"]) == b"v42" and on_c2["LTime"] > 0 and on_c2["Version"] == 1

    by_service = fire(c1, "restart", service="^web", tag="v1")
    wait_for(lambda: by_service["ID"] in ids(c2) and dropped(c1, by_service["ID"]), timeout=BOUND,
             what="the web/v1 event on c2 only", diagnostics=cluster.diagnostics)
    assert by_service["ID"] not in ids(c1)

    wrong_tag = fire(c1, "restart", service="web", tag="v2")
    by_node = fire(c2, "node-only", node="^c1$")
    wait_for(lambda: dropped(c2, wrong_tag["ID"]) and dropped(c2, by_node["ID"]) and by_node["ID"] in ids(c1),
             timeout=BOUND, what="c2 drops the v2 and c1-only events, c1 keeps its own",
             diagnostics=cluster.diagnostics)
    assert wrong_tag["ID"] not in ids(c2) and by_node["ID"] not in ids(c2)
    assert [e["ID"] for e in listed(c2, "restart")] == [by_service["ID"]]

    rexec = fire(c1, "_rexec", b"{}")  # `consul exec`'s event: ignored, never listed (remote exec is disabled)
    wait_for(lambda: all(f"ignoring remote exec event ({rexec['ID']})" in a.proc.log_path.read_text(errors="replace")
                         for a in (c1, c2)), timeout=BOUND, what="both agents ignore _rexec",
             diagnostics=cluster.diagnostics)
    assert listed(c1, "_rexec") == [] and listed(c2, "_rexec") == []


def test_blocking_list_on_one_agent_wakes_for_an_event_fired_by_cli_on_the_other(cluster: Cluster) -> None:
    c1, c2 = two_agents(cluster)
    empty = requests.get(f"http://{c2.http_addr}/v1/event/list?name=rollout", timeout=5)
    assert empty.json() == [] and empty.headers["X-Consul-Index"] == "1"

    answer: list[requests.Response] = []
    waiter = threading.Thread(target=lambda: answer.append(requests.get(
        f"http://{c2.http_addr}/v1/event/list?name=rollout&index=1&wait=60s", timeout=90)))
    waiter.start()
    out = c1.cli("event", "-name", "rollout", "-service", "web", "payload text")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Event ID: ")
    event_id = out.stdout.split()[-1]
    waiter.join(BOUND)
    assert answer, "the blocking list never answered"
    events = answer[0].json()
    assert [e["ID"] for e in events] == [event_id]
    assert base64.b64decode(events[0]["Payload"]) == b"payload text" and events[0]["ServiceFilter"] == "web"
    assert answer[0].headers["X-Consul-Index"] == str(uuid_to_uint64(event_id))


def test_event_cli_errors_against_a_real_agent(cluster: Cluster) -> None:
    agent = cluster.start("solo")
    missing = agent.cli("event")
    assert missing.returncode == 1 and missing.stderr.startswith("Event name must be specified")
    tag_only = agent.cli("event", "-name", "x", "-tag", "v1")
    assert (tag_only.returncode, tag_only.stderr) == (1, "Cannot provide tag filter without service filter.\n")
    bad = agent.cli("event", "-name", "x", "-node", "(")
    assert bad.returncode == 1 and bad.stderr.startswith("Failed to compile node filter regexp: error parsing regexp")
    many = agent.cli("event", "-name", "x", "a", "b")
    assert many.returncode == 1 and many.stderr.startswith("Too many command line arguments.")
    big = agent.cli("event", "-name", "x", "a" * 600)
    assert big.returncode == 1 and "Error firing event: Unexpected response code: 500" in big.stderr
    assert "512 bytes" in big.stderr
    assert listed(agent) == []


# --------------------------------------------------------------------------- the real serf binary


HANDLER = """#!/bin/sh
[ "$SERF_EVENT" = user ] || exit 0
cat > "{dir}/$SERF_USER_LTIME.payload"
printf '%s' "$SERF_USER_EVENT" > "{dir}/$SERF_USER_LTIME.name"
"""


@pytest.mark.interop
def test_events_cross_between_serf_and_a_triumvir_agent(cluster: Cluster, agents: Agents, tmp_path: Path) -> None:
    """`serf event consul:event:deploy <UserEvent msgpack>` is listed by the agent; an event the agent fires reaches
    serf's event handler under Consul's name with Consul's payload."""
    handled = tmp_path / "handled"
    handled.mkdir()
    handler = tmp_path / "handler.sh"
    handler.write_text(HANDLER.format(dir=handled))
    handler.chmod(0o755)
    serf = agents.serf("serf1", extra=[f"-event-handler={handler}"])
    agent = cluster.start("tri", extra={"log_level": "debug"})
    assert agent.cli("join", serf.addr).returncode == 0

    from_serf = UserEvent("3f0c2a51-9b7e-4d21-8c44-6a1e2b3c4d5e", "deploy", b"from serf", node_filter="^tri$")
    wire = encode(from_serf)
    assert b"\x00" not in wire  # it travels as a command-line argument
    subprocess.run([SERF_BIN, "event", f"-rpc-addr={serf.rpc_addr}", "-coalesce=false", "consul:event:deploy", wire],
                   check=True, capture_output=True, timeout=10)
    wait_for(lambda: listed(agent, "deploy"), timeout=BOUND, what="the agent lists serf's event",
             diagnostics=lambda: cluster.diagnostics() + agents.diagnostics())
    [seen] = listed(agent, "deploy")
    assert seen["ID"] == from_serf.id and base64.b64decode(seen["Payload"]) == b"from serf"
    assert seen["NodeFilter"] == "^tri$" and seen["LTime"] > 0

    skipped = UserEvent("00000000-1111-2222-3333-444444444444", "deploy", b"x", node_filter="^nobody$")
    subprocess.run([SERF_BIN, "event", f"-rpc-addr={serf.rpc_addr}", "consul:event:deploy", encode(skipped)],
                   check=True, capture_output=True, timeout=10)
    wait_for(lambda: dropped(agent, skipped.id), timeout=BOUND, what="the agent drops the event for ^nobody$")
    assert [e["ID"] for e in listed(agent, "deploy")] == [from_serf.id]

    subprocess.run([SERF_BIN, "event", f"-rpc-addr={serf.rpc_addr}", "consul:event:junk", "not msgpack"],
                   check=True, capture_output=True, timeout=10)  # a damaged payload: logged, dropped, nothing lost
    wait_for(lambda: "Failed to decode event 'junk'" in agent.proc.log_path.read_text(errors="replace"),
             timeout=BOUND, what="the agent rejects the undecodable event")
    assert [e["ID"] for e in listed(agent)] == [from_serf.id]

    fired = fire(agent, "reload", b"\x01\x02 config", service="api")

    def serf_got_it() -> list[bytes]:
        """The payloads serf's handler saw for Consul's name (the name file is written after the payload)."""
        return [p.read_bytes() for p in handled.glob("*.payload")
                if p.with_suffix(".name").exists() and p.with_suffix(".name").read_text() == "consul:event:reload"]

    [payload] = wait_for(serf_got_it, timeout=BOUND, what="serf's handler runs for consul:event:reload",
                         diagnostics=agents.diagnostics)
    assert payload.endswith(b"\n")  # serf's handler appends a newline to a payload without one
    received = decode(payload[:-1])
    assert received == UserEvent(fired["ID"], "reload", b"\x01\x02 config", service_filter="api")
