"""triumvir and the real `serf agent` (Debian's 0.8.2-dev) in one cluster, on loopback.

Every agent runs as a process on its own 127.0.x.y; triumvir nodes are `python -m agent.gossip` with a members
file, serf nodes are asked with `serf members -format=json`.  Each check polls until a deadline (no fixed
sleeps); the bounds follow memberlist's timings for the profile (lan detects a failure in ~5-10 s, local in
~3-6 s on three nodes).
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
from typing import Any

import msgpack
import pytest
import trio
from conftest import SERF_BIN, Agents, SerfAgent, TriumvirNode, next_loopback_ip
from procs import wait_for

from agent.gossip import GossipDriver
from protocol.config import Config
from protocol.coordinate import decode_ack_payload, encode_ack_payload
from protocol.node import Datagram
from protocol.packets import unwrap_packet_info
from protocol.serf import Serf

pytestmark = pytest.mark.interop

PROFILES = ["local", "lan"]
#: Convergence after a join: push/pull is synchronous, gossip of a third node takes a few gossip rounds.
JOIN_BOUND = 15.0
#: Probe interval + probe timeout + suspicion timeout (min; max if confirmations are missing) + slack.
FAIL_BOUND = {"local": 25.0, "lan": 40.0}
#: A graceful leave: intent broadcast, memberlist leave, propagate delay; then gossip to the others.
LEAVE_BOUND = 20.0

Node = SerfAgent | TriumvirNode


def seen(observer: Node, name: str) -> dict[str, Any] | None:
    """``name`` as ``observer`` lists it, in a common shape: {"status", "addr" (ip:port), "tags"}."""
    members = observer.members()
    m = members.get(name)
    if m is None:
        return None
    if isinstance(observer, SerfAgent):
        return {"status": m["status"], "addr": m["addr"], "tags": m["tags"]}
    return {"status": m["Status"], "addr": f"{m['Addr']}:{m['Port']}", "tags": m["Tags"]}


def wait_status(agents: Agents, observer: Node, target: Node, status: str, timeout: float) -> list[str]:
    """Wait until ``observer`` lists ``target`` with ``status``; return the statuses seen on the way."""
    history: list[str] = []

    def probe() -> bool:
        m = seen(observer, target.name)
        s = "absent" if m is None else m["status"]
        if not history or history[-1] != s:
            history.append(s)
        return s == status

    wait_for(
        probe,
        timeout=timeout,
        what=f"{observer.name} to list {target.name} as {status} (seen so far: {history})",
        diagnostics=agents.diagnostics,
    )
    return history


def assert_sees(agents: Agents, observer: Node, target: Node, *, timeout: float = JOIN_BOUND) -> None:
    """``observer`` lists ``target`` alive, at its address, with its tags."""
    wait_status(agents, observer, target, "alive", timeout)
    m = seen(observer, target.name)
    assert m is not None
    assert m["addr"] == target.addr, f"{observer.name} has {target.name} at {m['addr']}, not {target.addr}"
    assert m["tags"] == target.tags, f"{observer.name} has {target.name}'s tags as {m['tags']}, not {target.tags}"


def log_mentions(node: Node, pattern: str) -> list[str]:
    return [line for line in node.proc.log_path.read_text(errors="replace").splitlines() if re.search(pattern, line)]


def serf_failed_lines(observer: SerfAgent, target: Node) -> list[str]:
    return log_mentions(observer, rf"EventMemberFailed: {re.escape(target.name)}\b")


def triumvir_failed_lines(observer: TriumvirNode, target: Node) -> list[str]:
    return log_mentions(observer, rf"member-failed: {re.escape(target.name)}\b")


def mixed_cluster(agents: Agents, profile: str) -> tuple[SerfAgent, SerfAgent, TriumvirNode]:
    """Two serf agents and a triumvir node joined to the first; returns once everyone sees everyone."""
    s1 = agents.serf(f"serf1-{profile}", profile=profile, tags={"role": "serf", "n": "1"})
    s2 = agents.serf(f"serf2-{profile}", profile=profile, tags={"role": "serf"}, join=[s1.addr])
    t1 = agents.triumvir(f"tri1-{profile}", profile=profile, tags={"role": "tri", "dc": "dc1"}, join=[s1.addr])
    for observer in (s1, s2, t1):
        for target in (s1, s2, t1):
            if observer is not target:
                assert_sees(agents, observer, target)
    return s1, s2, t1


# --------------------------------------------------------------------------- (a) and (b): joins


@pytest.mark.parametrize("profile", PROFILES)
def test_triumvir_joins_a_serf_cluster(agents: Agents, profile: str) -> None:
    mixed_cluster(agents, profile)


@pytest.mark.parametrize("profile", PROFILES)
def test_serf_joins_a_triumvir_cluster(agents: Agents, profile: str) -> None:
    t1 = agents.triumvir(f"tri1-{profile}", profile=profile, tags={"role": "tri", "n": "1"})
    t2 = agents.triumvir(f"tri2-{profile}", profile=profile, tags={"role": "tri"}, join=[t1.addr])
    assert_sees(agents, t1, t2)
    assert_sees(agents, t2, t1)
    s1 = agents.serf(f"serf1-{profile}", profile=profile, tags={"role": "serf"}, join=[t1.addr])
    for observer in (s1, t1, t2):
        for target in (s1, t1, t2):
            if observer is not target:
                assert_sees(agents, observer, target)


# --------------------------------------------------------------------------- (c): kill -9


@pytest.mark.parametrize("profile", PROFILES)
def test_killed_triumvir_is_failed_on_serf(agents: Agents, profile: str) -> None:
    s1, s2, t1 = mixed_cluster(agents, profile)
    t1.proc.kill()
    for s in (s1, s2):
        history = wait_status(agents, s, t1, "failed", FAIL_BOUND[profile])
        assert "left" not in history, history


@pytest.mark.parametrize("profile", PROFILES)
def test_killed_serf_is_failed_on_triumvir(agents: Agents, profile: str) -> None:
    s1, s2, t1 = mixed_cluster(agents, profile)
    s2.proc.kill()
    history = wait_status(agents, t1, s2, "failed", FAIL_BOUND[profile])
    assert "left" not in history, history
    wait_status(agents, s1, s2, "failed", FAIL_BOUND[profile])  # the serf side agrees


# --------------------------------------------------------------------------- (d): graceful leave


@pytest.mark.parametrize("profile", PROFILES)
def test_triumvir_leaves_gracefully(agents: Agents, profile: str) -> None:
    s1, s2, t1 = mixed_cluster(agents, profile)
    t1.proc.send_signal(signal.SIGINT)
    for s in (s1, s2):
        history = wait_status(agents, s, t1, "left", LEAVE_BOUND)
        assert "failed" not in history, f"{s.name} saw {t1.name} go {history}"
        assert not serf_failed_lines(s, t1), serf_failed_lines(s, t1)
    assert t1.proc.wait(LEAVE_BOUND) == 0, agents.diagnostics()


@pytest.mark.parametrize("profile", PROFILES)
def test_serf_leaves_gracefully(agents: Agents, profile: str) -> None:
    s1, s2, t1 = mixed_cluster(agents, profile)
    s2.leave()
    history = wait_status(agents, t1, s2, "left", LEAVE_BOUND)
    assert "failed" not in history, f"{t1.name} saw {s2.name} go {history}"
    assert not triumvir_failed_lines(t1, s2), triumvir_failed_lines(t1, s2)
    wait_status(agents, s1, s2, "left", LEAVE_BOUND)  # the serf side agrees
    assert s2.proc.wait(LEAVE_BOUND) == 0, agents.diagnostics()


@pytest.mark.parametrize("kind", ["serf", "triumvir"])
def test_killed_node_restarts_on_its_address_and_is_alive_again(agents: Agents, kind: str) -> None:
    """kill -9, everyone marks it failed, restart it (same name, address, port): it refutes its death."""
    s1, s2, t1 = mixed_cluster(agents, "local")
    victim: Node = s2 if kind == "serf" else t1
    others = [n for n in (s1, s2, t1) if n is not victim]
    victim.proc.kill()
    for o in others:
        wait_status(agents, o, victim, "failed", FAIL_BOUND["local"])
    back: Node
    if isinstance(victim, SerfAgent):
        back = agents.serf(victim.name, tags=victim.tags, join=[t1.addr], reuse=victim)
    else:
        back = agents.triumvir(victim.name, tags=victim.tags, join=[s1.addr], reuse=victim)
    # Only as fast as the refuting alive spreads (local profile: 2 transmissions) or the next push/pull.
    for o in others:
        assert_sees(agents, o, back, timeout=FAIL_BOUND["local"])
        assert_sees(agents, back, o)


# --------------------------------------------------------------------------- in-process driver: updates, events


def run_inprocess(agents: Agents, name: str, tags: dict[str, str], body: Any) -> None:
    """Run ``body(driver)`` with an in-process GossipDriver + protocol.Serf (local profile) on a fresh 127.0.x.y."""

    def factory(addr: tuple[str, int]) -> Serf:
        return Serf(Config.local(), name=name, addr=addr, rng=random.Random(7), now=trio.current_time(), tags=tags)

    run_inprocess_with(factory, body)


def run_inprocess_with(factory: Any, body: Any) -> None:
    """Run ``body(driver)`` with an in-process GossipDriver over ``factory``'s machine on a fresh 127.0.x.y."""

    async def main() -> None:
        driver = GossipDriver(factory, (next_loopback_ip(), 0))
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await body(driver)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def await_cond(agents: Agents, probe: Any, what: str, timeout: float = JOIN_BOUND) -> Any:
    """Poll ``probe`` (run in a thread: it may shell out to `serf members`) until truthy, within ``timeout``."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await trio.to_thread.run_sync(probe)
            except Exception as exc:
                last = exc
            else:
                if last:
                    return last
            await trio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{agents.diagnostics()}")


def test_tag_updates_and_user_events_both_ways(agents: Agents) -> None:
    """set_tags on triumvir reaches serf (and `serf tags -set` reaches triumvir); user events cross both ways."""
    s1 = agents.serf("serf1", tags={"role": "serf"})

    async def body(driver: Any) -> None:
        events = driver.subscribe()
        assert await driver.join([s1.addr]) == 1
        await await_cond(agents, lambda: (seen(s1, "tri") or {}).get("tags") == {"v": "1"}, "serf sees tri v=1")

        driver.set_tags({"v": "2", "dc": "east"})
        await await_cond(
            agents, lambda: (seen(s1, "tri") or {}).get("tags") == {"v": "2", "dc": "east"}, "serf sees new tags"
        )

        await trio.to_thread.run_sync(
            lambda: subprocess.run([SERF_BIN, "tags", f"-rpc-addr={s1.rpc_addr}", "-set", "role=changed"], check=True)
        )

        def tri_sees_serf_tags() -> bool:
            m = next((m for m in driver.members() if m.name == "serf1"), None)
            return m is not None and m.tags == {"role": "changed"}

        await await_cond(agents, tri_sees_serf_tags, "triumvir sees serf1's new tags")

        driver.user_event("from-tri", b"payload-1")
        await await_cond(
            agents, lambda: log_mentions(s1, r"Received event: user-event: from-tri"), "serf receives user event"
        )
        await trio.to_thread.run_sync(
            lambda: subprocess.run([SERF_BIN, "event", f"-rpc-addr={s1.rpc_addr}", "from-serf", "p2"], check=True)
        )
        with trio.fail_after(JOIN_BOUND):
            async for ev in events:
                if type(ev).__name__ == "UserEvent" and ev.name == "from-serf":
                    assert ev.payload == b"p2"
                    break

        assert await driver.leave() is True
        await await_cond(agents, lambda: (seen(s1, "tri") or {}).get("status") == "left", "serf sees tri left")

    run_inprocess(agents, "tri", {"v": "1"}, body)


# --------------------------------------------------------------------------- network coordinates on ping acks

SERF_RTT = re.compile(r"Estimated (\S+) <-> (\S+) rtt: ([0-9.]+) ms")


def serf_rtt(agent: SerfAgent, a: str, b: str) -> float | None:
    """`serf rtt a b` asked of ``agent``: the estimate in seconds, None while it has no coordinate for one."""
    out = subprocess.run([SERF_BIN, "rtt", f"-rpc-addr={agent.rpc_addr}", a, b], capture_output=True, text=True)
    m = SERF_RTT.search(out.stdout)
    return float(m.group(3)) / 1000 if out.returncode == 0 and m else None


def test_coordinates_cross_both_ways(agents: Agents) -> None:
    """serf computes a coordinate for the triumvir member from triumvir's ack payloads (so `serf rtt` answers for
    it, asked of either serf agent), and triumvir decodes serf's acks into coordinates and a sane estimate."""
    s1 = agents.serf("serf1")
    s2 = agents.serf("serf2", join=[s1.addr])
    payloads: list[bytes] = []

    class Recording(Serf):
        def notify_ping_complete(self, node: Any, rtt: float, payload: bytes) -> None:
            if node.name == "serf1":
                payloads.append(payload)
            super().notify_ping_complete(node, rtt, payload)

    def factory(addr: tuple[str, int]) -> Serf:
        return Recording(Config.local(), name="tri", addr=addr, rng=random.Random(7), now=trio.current_time())

    async def body(driver: Any) -> None:
        serf = driver.machine
        assert await driver.join([s1.addr]) == 1
        # serf's side: both serf agents have a coordinate for tri (learnt from tri's acks) and estimate an RTT
        for asked in (s1, s2):
            est = await await_cond(agents, lambda a=asked: serf_rtt(a, a.name, "tri"), f"{asked.name} rtt to tri")
            assert 0 < est < 0.050, est  # loopback: well under a millisecond or two, never absurd
        # triumvir's side: serf's acks decode (no drop lines), both serf members are cached, estimates are sane
        await await_cond(agents, lambda: all(serf.cached_coordinate(n) for n in ("serf1", "serf2")), "tri caches")
        assert payloads and all(p[0] == 1 for p in payloads)
        # go-msgpack writes the struct as a map with sorted keys, every float a float64 (0xcb): as we do
        theirs = payloads[-1]
        assert list(msgpack.unpackb(theirs[1:], raw=False)) == ["Adjustment", "Error", "Height", "Vec"]
        assert encode_ack_payload(decode_ack_payload(theirs)) == theirs  # byte for byte
        mine = serf.coordinate()
        for other in ("serf1", "serf2"):
            theirs = serf.cached_coordinate(other)
            assert len(theirs.vec) == 8 and theirs.is_valid()
            assert 0 < mine.distance_to(theirs) < 0.050
        assert serf.malformed == 0
        # the bytes match both ways: serf's estimate of tri <-> serf2 (from its cache) is a sane number too
        est = await await_cond(agents, lambda: serf_rtt(s1, "tri", "serf2"), "serf1 rtt tri <-> serf2")
        assert 0 < est < 0.050
        assert not log_mentions(s1, r"(?i)coordinate|ping version")  # serf logged no decode/reject line

    run_inprocess_with(factory, body)



# --------------------------------------------------------------------------- compression policy against Go


def test_serf_reads_our_plain_short_and_compressed_long_packets(agents: Agents) -> None:
    """Config.compress_packets on, with compress_min_bytes: triumvir sends its short packets (pings, acks) plain
    and its long ones LZW compressed; the real serf binary takes both (memberlist would have compressed every
    packet), joins, and lists the triumvir node alive with tags long enough that its alive goes out compressed.
    (Every other test here runs the default, compress_packets off: serf reads plain packets throughout.)"""
    s1 = agents.serf("serf1", tags={"role": "serf"})
    tags = {"role": "tri", "note": "compressed " * 20}  # an alive of ~300 bytes: past compress_min_bytes
    sent: list[tuple[int, bool]] = []

    class Recording(Serf):
        def poll_transmit(self) -> Any:
            tx = super().poll_transmit()
            if isinstance(tx, Datagram):
                info = unwrap_packet_info(tx.data)
                sent.append((sum(len(m) for m in info.messages), info.compressed))
            return tx

    def factory(addr: tuple[str, int]) -> Serf:
        now = trio.current_time()
        config = Config.local(compress_packets=True)
        return Recording(config, name="tri", addr=addr, rng=random.Random(7), now=now, tags=tags)

    async def body(driver: Any) -> None:
        assert await driver.join([s1.addr]) == 1
        await await_cond(agents, lambda: (seen(s1, "tri") or {}).get("tags") == tags, "serf lists tri with its tags")
        await await_cond(agents, lambda: sum(1 for _, c in sent if not c) >= 3, "plain pings/acks sent", JOIN_BOUND)
        driver.user_event("big", b"x" * 400)  # a long broadcast: goes out compressed
        await await_cond(
            agents, lambda: log_mentions(s1, r"Received event: user-event: big"), "serf receives the big event"
        )
        assert any(c for _, c in sent), sent
        assert all(size >= 200 for size, c in sent if c), "short packets are never compressed"
        assert all(size < 200 or c for size, c in sent if size >= 400), "long repetitive packets are compressed"
        await await_cond(agents, lambda: (seen(s1, "tri") or {}).get("status") == "alive", "tri still alive on serf")

    run_inprocess_with(factory, body)
