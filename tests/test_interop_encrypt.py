"""Encrypted gossip between triumvir agents (`python -m agent`) and the real `serf agent -encrypt=KEY`.

One mixed pool on loopback: joins in both directions, refusals of a wrong key and of no key, and key rotation
driven once from `python -m agent keyring` and once from `serf keys`, with membership checked alive throughout
and no member ever reported failed. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from typing import Any

import pytest
from conftest import SERF_BIN, Agents, SerfAgent
from consul_agents import Cluster, ConsulAgent
from procs import wait_for

pytestmark = pytest.mark.interop

JOIN_BOUND = 20.0
#: Consul's pool runs memberlist's LAN profile: 4 retransmits and a 3.2 s query timeout. The local profile's 2
#: retransmits reach every one of 4 members within its 1.6 s only most of the time, for serf as for us.
LAN = {"gossip_profile": "lan"}
#: A restarted member rejoins by refuting its leave; in 5 members infect-and-die gossip leaves some member behind
#: in ~0.5% of rejoins, as memberlist's does (each holder sends the news 4 times: a member escapes one holder with
#: 3/16, all four with (3/16)^4; tests/test_sim_serf.py, seed 735). Only a push/pull repairs that member, and with
#: memberlist's schedule a member's first one comes a random stagger plus one interval after its start: within
#: 2 * the LAN profile's 30 s push_pull_interval of any rejoin, with 5 s for a loaded machine.
REJOIN_BOUND = 2 * 30.0 + 5.0
KEY_RE = re.compile(r"^\s*(\S+=)\s+\[(\d+)/(\d+)\]\s*$")


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def serf_keys(s: SerfAgent, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SERF_BIN, "keys", *args, f"-rpc-addr={s.rpc_addr}"], capture_output=True, text=True,
                          timeout=30)  # fmt: skip


def key_counts(output: str) -> dict[str, tuple[int, int]]:
    """`KEY [n/N]` lines (both tools print them) as {key: (n, N)}."""
    return {m[1]: (int(m[2]), int(m[3])) for line in output.splitlines() if (m := KEY_RE.match(line))}


def alive_everywhere(tri: list[ConsulAgent], serfs: list[SerfAgent], names: set[str]) -> bool:
    for a in tri:
        if {n for n, status in a.member_statuses().items() if status == "alive"} != names:
            return False
    return all({n for n, m in s.members().items() if m["status"] == "alive"} == names for s in serfs)


def failed_lines(tri: list[ConsulAgent], serfs: list[SerfAgent]) -> list[str]:
    lines = []
    for a in tri:
        lines += [ln for ln in a.proc.log_path.read_text(errors="replace").splitlines() if "member-failed" in ln]
    for s in serfs:
        lines += [ln for ln in s.proc.log_path.read_text(errors="replace").splitlines() if "EventMemberFailed" in ln]
    return lines


class Watcher:
    """Polls every member's view in the background; records any member seen in a state other than alive."""

    def __init__(self, tri: list[ConsulAgent], serfs: list[SerfAgent], names: set[str]) -> None:
        self.tri, self.serfs, self.names = tri, serfs, names
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rounds = 0

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for a in self.tri:
                for n, status in a.member_statuses().items():
                    if status != "alive":
                        self.bad.append(f"{a.name} sees {n} {status}")
            for s in self.serfs:
                for n, m in s.members().items():
                    if m["status"] != "alive":
                        self.bad.append(f"{s.name} sees {n} {m['status']}")
            self.rounds += 1

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def keyring_file(agent: ConsulAgent) -> list[str]:
    path = agent.data_dir / "serf" / "local.keyring"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return json.loads(path.read_text())


def wait_keys(agent: ConsulAgent, expected: dict[str, tuple[int, int]], cluster: Cluster) -> str:
    last = [""]

    def probe() -> bool:
        out = agent.cli("keyring", "-list")
        last[0] = out.stdout + out.stderr
        return out.returncode == 0 and key_counts(out.stdout) == expected

    wait_for(probe, timeout=20, what=f"keyring -list == {expected} (last: {last})", diagnostics=cluster.diagnostics)
    return last[0]


def test_mixed_encrypted_pool_joins_both_ways_refuses_bad_keys_and_rotates_from_both_tools(
    agents: Agents, cluster: Cluster
) -> None:
    k1 = new_key()
    s1 = agents.serf("serf1", profile="lan", extra=[f"-encrypt={k1}"])
    t1 = cluster.start("tri1", extra={**LAN, "encrypt": k1})
    assert "Gossip Encryption: true" in t1.proc.log_tail(60)
    joined = t1.cli("join", s1.addr)  # triumvir joins serf
    assert joined.returncode == 0, joined.stderr
    s2 = agents.serf("serf2", profile="lan", extra=[f"-encrypt={k1}"], join=[t1.serf_addr])  # serf joins triumvir
    t2 = cluster.start("tri2", extra={**LAN, "encrypt": k1, "start_join": [s2.addr]})
    tri, serfs = [t1, t2], [s1, s2]
    names = {"serf1", "serf2", "tri1", "tri2"}
    wait_for(lambda: alive_everywhere(tri, serfs, names), timeout=JOIN_BOUND, what="the encrypted pool",
             diagnostics=cluster.diagnostics)  # fmt: skip
    assert keyring_file(t1) == [k1]

    # refusals: the wrong key and no key at all, both tools
    bad = cluster.start("tri-wrong", extra={"encrypt": new_key()})
    out = bad.cli("join", t1.serf_addr)
    assert out.returncode == 1 and "decrypt" in out.stderr, out.stderr
    bare = cluster.start("tri-bare")
    out = bare.cli("join", s1.addr)
    assert out.returncode == 1 and "encrypt" in out.stderr, out.stderr
    s_bad = agents.serf("serf-wrong", profile="lan", extra=[f"-encrypt={new_key()}"])
    out = subprocess.run([SERF_BIN, "join", f"-rpc-addr={s_bad.rpc_addr}", t1.serf_addr], capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert out.returncode != 0, out.stdout
    wait_for(lambda: "decrypt stream failed from" in t1.proc.log_path.read_text(), timeout=10,
             what="tri1 to log the refused stream", diagnostics=cluster.diagnostics)  # fmt: skip
    assert alive_everywhere(tri, serfs, names)  # nobody let in

    with Watcher(tri, serfs, names) as watch:
        # rotation 1, from triumvir's CLI
        k2 = new_key()
        out = t2.cli("keyring", "-install", k2)
        assert out.returncode == 0 and "==> Installing new gossip encryption key..." in out.stdout, out
        listed = wait_keys(t1, {k1: (4, 4), k2: (4, 4)}, cluster)
        assert listed.startswith("==> Gathering installed encryption keys...\n\ndc1 (LAN):\n")
        serf_list = serf_keys(s1, "-list")
        assert key_counts(serf_list.stdout) == {k1: (4, 4), k2: (4, 4)}, serf_list
        assert t1.cli("keyring", "-use", k2).returncode == 0
        refused = t1.cli("keyring", "-remove", k2)
        assert refused.returncode == 1 and "4/4 nodes reported failure" in refused.stderr, refused
        assert t1.cli("keyring", "-remove", k1).returncode == 0
        wait_keys(t2, {k2: (4, 4)}, cluster)
        assert keyring_file(t1) == [k2] and keyring_file(t2) == [k2]

        # rotation 2, from serf's CLI
        k3 = new_key()
        for s, action, key in ((s2, "-install", k3), (s2, "-use", k3), (s1, "-remove", k2)):
            done = serf_keys(s, action, key)
            assert done.returncode == 0, done
        wait_keys(t1, {k3: (4, 4)}, cluster)
        serf_list = serf_keys(s2, "-list")
        assert key_counts(serf_list.stdout) == {k3: (4, 4)}, serf_list
        assert keyring_file(t2) == [k3]

        # py-consul's operator.keyring_* against the same endpoint
        c = t1.client()
        rings = c.operator.keyring_list()
        assert rings == [{"WAN": False, "Datacenter": "dc1", "Segment": "", "Keys": {k3: 4}, "PrimaryKeys": {k3: 4},
                          "NumNodes": 4}]  # fmt: skip
        k4 = new_key()
        assert c.operator.keyring_install(k4) and c.operator.keyring_use(k4) and c.operator.keyring_remove(k3)
        assert c.operator.keyring_list(local_only=True)[0]["Keys"] == {k4: 4}
        # the pool keeps working under the last key for a while
        wait_for(lambda: watch.rounds >= 10, timeout=30, what="10 rounds of membership checks")
    assert watch.bad == [], watch.bad[:10]
    assert failed_lines(tri, serfs) == []
    assert alive_everywhere(tri, serfs, names)


def test_keyring_file_wins_over_encrypt_and_restart_keeps_the_rotated_key(cluster: Cluster) -> None:
    k1, k2 = new_key(), new_key()
    a = cluster.start("tri-a", extra={"encrypt": k1})
    b = cluster.start("tri-b", extra={"encrypt": k1, "start_join": [f"{cluster.agents[0].serf_addr}"]})
    wait_for(lambda: alive_everywhere([a, b], [], {"tri-a", "tri-b"}), timeout=JOIN_BOUND, what="two agents")
    assert a.cli("keyring", "-install", k2).returncode == 0
    assert a.cli("keyring", "-use", k2).returncode == 0
    assert a.cli("keyring", "-remove", k1).returncode == 0
    assert keyring_file(b) == [k2]
    # b restarts with encrypt = k1 still in its config: the file wins (with Consul's warning) and b rejoins
    assert b.proc.stop() == 0
    b2 = cluster.start("tri-b", reuse=b)
    assert "keyring doesn't include key provided with -encrypt, using keyring" in b2.proc.log_tail(80)
    assert b2.cli("join", a.serf_addr).returncode == 0
    wait_for(lambda: alive_everywhere([a, b2], [], {"tri-a", "tri-b"}), timeout=JOIN_BOUND, what="b back")
    # a damaged keyring file stops the start with a message naming the file
    assert b2.proc.stop() == 0
    (b.data_dir / "serf" / "local.keyring").write_text('["not a key"]')
    b3 = cluster.start("tri-b", reuse=b, wait_up=False)
    assert b3.proc.wait(20) == 1
    assert "local.keyring: key 0: key is not valid base64" in b3.proc.log_tail(20)


def test_http_keyring_argument_errors(cluster: Cluster) -> None:
    import requests

    a = cluster.start("tri-h", extra={"encrypt": new_key()})
    base = f"http://{a.http_addr}/v1/operator/keyring"
    r = requests.get(base, params={"relay-factor": "6"}, timeout=10)
    assert (r.status_code, r.text) == (400, "Invalid relay-factor: Relay factor must be in range: [0, 5]")
    r = requests.post(base, params={"local-only": "true"}, data=json.dumps({"Key": new_key()}), timeout=10)
    assert (r.status_code, r.text) == (400, "Invalid use of local-only: local-only can only be set for list requests")
    r = requests.post(base, data="{", timeout=10)
    assert r.status_code == 400 and r.text.startswith("Request decode failed")
    r = requests.post(base, data=json.dumps({"Key": "c2hvcnQ="}), timeout=10)
    assert r.status_code == 500 and "key size must be 16, 24 or 32 bytes" in r.text
    r = requests.get(base, timeout=10)
    assert r.status_code == 200 and r.json()[0]["NumNodes"] == 1


def test_rolling_move_to_encryption_of_five_agents_never_fails_a_member(cluster: Cluster) -> None:
    """Consul's three steps, each a rolling restart of 5 agents: encrypt with both verify flags off, then
    verify_outgoing, then verify_incoming. Members leave and come back (left, then alive), never failed."""
    key = new_key()
    names = [f"roll{i}" for i in range(5)]
    nodes = [cluster.start(names[0], extra=LAN)]
    for name in names[1:]:
        nodes.append(cluster.start(name, extra={**LAN, "start_join": [nodes[0].serf_addr]}))
    everyone = set(names)
    wait_for(lambda: alive_everywhere(nodes, [], everyone), timeout=JOIN_BOUND, what="5 plaintext agents",
             diagnostics=cluster.diagnostics)  # fmt: skip
    steps = [
        {"encrypt": key, "encrypt_verify_incoming": False, "encrypt_verify_outgoing": False},
        {"encrypt": key, "encrypt_verify_incoming": False, "encrypt_verify_outgoing": True},
        {"encrypt": key, "encrypt_verify_incoming": True, "encrypt_verify_outgoing": True},
    ]
    for step in steps:
        for i in range(len(nodes)):
            old = nodes[i]
            peer = nodes[(i + 1) % len(nodes)]
            path = old.config_dir / "agent.json"
            config = json.loads(path.read_text())
            config.update(step, start_join=[peer.serf_addr])
            path.write_text(json.dumps(config))
            assert old.proc.stop() == 0
            nodes[i] = cluster.start(old.name, reuse=old)
            wait_for(lambda: alive_everywhere(nodes, [], everyone), timeout=REJOIN_BOUND,
                     what=f"{old.name} back with {step}", diagnostics=cluster.diagnostics)  # fmt: skip
    assert failed_lines(nodes, []) == []
    # the end state: encrypted and verified everywhere
    for n in nodes:
        stats = n.client().agent.self()["Stats"]["serf_lan"]
        assert stats["encrypted"] == "true" and stats["decrypt_failed"] == "0", stats
