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

ALIVE, LEAVING, LEFT = 1, 2, 3
WORDS = {ALIVE: "alive", LEAVING: "leaving", LEFT: "left"}
TIMEOUT = 30.0  # generous: the machine is shared


def agent_status(agent: Any, name: str) -> int | None:
    """The member's status as triumvir's agent serves it (/v1/agent/members)."""
    members = requests.get(f"http://{agent.http_addr}/v1/agent/members", timeout=5).json()
    return next((m["Status"] for m in members if m["Name"] == name), None)


def see(what: str, probe: Any, agents: Agents) -> None:
    wait_for(probe, timeout=TIMEOUT, interval=0.05, what=what, diagnostics=agents.diagnostics)


def test_serf_force_leave_of_a_live_triumvir_node(agents: Agents, cluster: Any) -> None:
    s1 = agents.serf("s1")
    target = agents.triumvir("t1", join=[s1.addr])
    observer = cluster.start("a1", extra={"retry_join": [s1.addr], "retry_interval": "1s"})
    see("everyone alive", lambda: s1.status_of("t1") == "alive" and agent_status(observer, "t1") == ALIVE
        and s1.status_of("a1") == "alive", agents)  # fmt: skip

    target.proc.send_signal(signal.SIGSTOP)
    try:
        subprocess.run([SERF_BIN, "force-leave", f"-rpc-addr={s1.rpc_addr}", "t1"], check=True, timeout=10,
                       capture_output=True)  # fmt: skip
        seen = {"serf": set(), "triumvir": set()}

        def leaving_then_left() -> bool:
            seen["serf"].add(s1.status_of("t1"))
            seen["triumvir"].add(WORDS.get(agent_status(observer, "t1") or 0))
            return "left" in seen["serf"] and "left" in seen["triumvir"]

        see("t1 leaving, then left, on serf and on triumvir", leaving_then_left, agents)
        assert "leaving" in seen["serf"], seen  # serf's own behaviour, which triumvir must match
        assert "leaving" in seen["triumvir"], seen
        assert "failed" not in seen["serf"] | seen["triumvir"], seen
    finally:
        target.proc.send_signal(signal.SIGCONT)
    see("t1 refutes and is alive again everywhere",
        lambda: s1.status_of("t1") == "alive" and agent_status(observer, "t1") == ALIVE, agents)  # fmt: skip


def test_triumvir_force_leave_of_a_live_serf_node(agents: Agents, cluster: Any) -> None:
    s1 = agents.serf("s1")
    s2 = agents.serf("s2", join=[s1.addr])
    observer = cluster.start("a1", extra={"retry_join": [s1.addr], "retry_interval": "1s"})
    see("everyone alive", lambda: s1.status_of("s2") == "alive" and agent_status(observer, "s2") == ALIVE
        and s1.status_of("a1") == "alive", agents)  # fmt: skip

    s2.proc.send_signal(signal.SIGSTOP)
    try:
        out = observer.cli("force-leave", "s2")
        assert out.returncode == 0, out.stderr
        seen = {"serf": set(), "triumvir": set()}

        def leaving_then_left() -> bool:
            seen["serf"].add(s1.status_of("s2"))
            seen["triumvir"].add(WORDS.get(agent_status(observer, "s2") or 0))
            return "left" in seen["serf"] and "left" in seen["triumvir"]

        see("s2 leaving, then left, on serf and on triumvir", leaving_then_left, agents)
        assert "leaving" in seen["serf"], seen
        assert "leaving" in seen["triumvir"], seen
        assert "failed" not in seen["serf"] | seen["triumvir"], seen
    finally:
        s2.proc.send_signal(signal.SIGCONT)
    see("s2 refutes and is alive again everywhere",
        lambda: s1.status_of("s2") == "alive" and agent_status(observer, "s2") == ALIVE, agents)  # fmt: skip
