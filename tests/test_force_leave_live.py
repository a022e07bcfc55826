"""Force-leave of a live node (issue 12), against the real serf binary both ways.

Serf's rule (serf.go handleNodeLeaveIntent): a leave intent about an alive member makes it ``leaving``; the member
refutes with a newer join intent, and then it is ``alive`` again.  If it cannot refute (here: SIGSTOP), memberlist
later finds it dead and, being ``leaving``, it becomes ``left``, not ``failed``.  Each test stops the target so
the window is wide enough to see, checks that serf shows it, then that triumvir's agent shows the same, then
resumes the target and sees the refutation everywhere.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest
import requests
from conftest import SERF_BIN, Agents
from procs import wait_for

pytestmark = pytest.mark.interop

ALIVE, LEAVING, LEFT, FAILED = 1, 2, 3, 4
WORDS = {ALIVE: "alive", LEAVING: "leaving", LEFT: "left", FAILED: "failed"}
#: memberlist's LAN timings: a stopped node is declared dead seconds after the leave intent has reached everyone
#: (the local profile's sub-second failure detection can beat the intent under load; then serf too says failed,
#: then left).
PROFILE = "lan"
AGENT = {"gossip_profile": PROFILE, "retry_interval": "1s"}
TIMEOUT = 30.0  # generous: the machine is shared


def agent_status(agent: Any, name: str) -> int | None:
    """The member's status as triumvir's agent serves it (/v1/agent/members)."""
    members = requests.get(f"http://{agent.http_addr}/v1/agent/members", timeout=5).json()
    return next((m["Status"] for m in members if m["Name"] == name), None)


def see(what: str, probe: Any, agents: Agents) -> None:
    wait_for(probe, timeout=TIMEOUT, interval=0.05, what=what, diagnostics=agents.diagnostics)


def leaving_then_left_then_refuted(agents: Agents, s1: Any, observer: Any, target: str, proc: Any,
                                   force_leave: Any) -> None:
    """Stop ``proc`` (so it cannot refute), ``force_leave()``, and watch ``target`` on serf ``s1`` and on the
    triumvir agent ``observer``: leaving, then left (never failed); then resume it and see it alive again."""
    proc.send_signal(signal.SIGSTOP)
    try:
        force_leave()
        seen: dict[str, set[str | None]] = {"serf": set(), "triumvir": set()}

        def left_everywhere() -> bool:
            seen["serf"].add(s1.status_of(target))
            status = agent_status(observer, target)
            seen["triumvir"].add(WORDS.get(status, str(status)) if status is not None else None)
            return "left" in seen["serf"] and "left" in seen["triumvir"]

        see(f"{target} leaving, then left, on serf and on triumvir", left_everywhere, agents)
        assert "leaving" in seen["serf"], seen  # serf's own behaviour, which triumvir must match
        assert "leaving" in seen["triumvir"], seen
        assert "failed" not in seen["serf"] | seen["triumvir"], seen
    finally:
        proc.send_signal(signal.SIGCONT)
    see(f"{target} refutes and is alive again everywhere",
        lambda: s1.status_of(target) == "alive" and agent_status(observer, target) == ALIVE, agents)  # fmt: skip


def test_serf_force_leave_of_a_live_triumvir_node(agents: Agents, cluster: Any) -> None:
    s1 = agents.serf("s1", profile=PROFILE)
    target = agents.triumvir("t1", join=[s1.addr], profile=PROFILE)
    observer = cluster.start("a1", extra={"retry_join": [s1.addr], **AGENT})
    see("everyone alive", lambda: s1.status_of("t1") == "alive" and agent_status(observer, "t1") == ALIVE
        and s1.status_of("a1") == "alive", agents)  # fmt: skip

    def serf_force_leave() -> None:
        subprocess.run([SERF_BIN, "force-leave", f"-rpc-addr={s1.rpc_addr}", "t1"], check=True, timeout=10,
                       capture_output=True)  # fmt: skip

    leaving_then_left_then_refuted(agents, s1, observer, "t1", target.proc, serf_force_leave)


def test_triumvir_force_leave_of_a_live_serf_node(agents: Agents, cluster: Any) -> None:
    s1 = agents.serf("s1", profile=PROFILE)
    s2 = agents.serf("s2", join=[s1.addr], profile=PROFILE)
    observer = cluster.start("a1", extra={"retry_join": [s1.addr], **AGENT})
    see("everyone alive", lambda: s1.status_of("s2") == "alive" and agent_status(observer, "s2") == ALIVE
        and s1.status_of("a1") == "alive", agents)  # fmt: skip

    def triumvir_force_leave() -> None:  # the HTTP call `force-leave` makes, without a CLI process's start-up
        reply = requests.put(f"http://{observer.http_addr}/v1/agent/force-leave/s2", timeout=10)
        assert reply.status_code == 200, reply.text

    leaving_then_left_then_refuted(agents, s1, observer, "s2", s2.proc, triumvir_force_leave)
