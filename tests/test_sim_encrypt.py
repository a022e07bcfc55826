"""Encrypted gossip on tests/simnet.py: keyed clusters, refusals, the rolling move to encryption, key rotation.

Deterministic for a seed; the same behaviour against the real serf binary is in test_interop_encrypt.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from simnet import SimNet

from protocol.config import Config
from protocol.keymanager import KeyQueryDone, KeyringChanged
from protocol.keyring import Keyring, encode_key
from protocol.node import JoinResult
from protocol.serf import EventKind, MemberEvent, MemberStatus, Serf

LAN = Config.lan(enable_compression=False)
OLD = bytes(range(32))
NEW = bytes(range(32, 64))


def ring(*keys: bytes, seed: int = 0) -> Keyring:
    rng = random.Random(seed)
    return Keyring(keys, nonce_source=rng.randbytes)


def factory(name: str, keys: tuple[bytes, ...] | None, cfg: Config = LAN) -> Callable[[Any, Any, float], Serf]:
    def make(addr: Any, rng: Any, now: float) -> Serf:
        kr = None if keys is None else ring(*keys, seed=hash(name) & 0xFFFF)
        return Serf(cfg, name=name, addr=addr, rng=rng, now=now, tags={}, keyring=kr)

    return make


def build(net: SimNet, n: int, keys: tuple[bytes, ...] | None, cfg: Config = LAN) -> list[str]:
    names = [f"n{i}" for i in range(n)]
    seed = net.spawn(names[0], factory(names[0], keys, cfg))
    for name in names[1:]:
        net.spawn(name, factory(name, keys, cfg))
        net.do(name, lambda m, now: m.join(now, [seed.addr]))
        net.run_for(0.05)
    return names


def serf(net: SimNet, name: str) -> Serf:
    return net.machine(name)  # type: ignore[no-any-return]


def converged(net: SimNet, names: list[str]) -> bool:
    return all(
        {m.name: m.status for m in serf(net, o).members()} == dict.fromkeys(names, MemberStatus.ALIVE) for o in names
    )


def failures(net: SimNet, names: list[str]) -> list[tuple[str, str]]:
    return [
        (o, e.member.name)
        for o in names
        for _t, e in net.hosts[o].log
        if isinstance(e, MemberEvent) and e.kind == EventKind.MEMBER_FAILED
    ]


def test_keyed_cluster_converges_and_a_wrong_or_missing_key_cannot_join() -> None:
    net = SimNet(seed=41)
    names = build(net, 6, (OLD,))
    assert net.run_until(lambda: converged(net, names), deadline=net.now + 20)
    net.run_for(10)
    assert failures(net, names) == []
    assert sum(serf(net, n).node.stats["decrypt_failed"] for n in names) == 0

    seed_addr = net.hosts[names[0]].addr
    for outsider, keys, words in (("wrong", (NEW,), "decrypt"), ("bare", None, "encrypt")):
        net.spawn(outsider, factory(outsider, keys))
        net.do(outsider, lambda m, now: m.join(now, [seed_addr]))
        assert net.run_until(lambda o=outsider: bool(net.events(o, JoinResult)), deadline=net.now + 15)
        result = net.events(outsider, JoinResult)[0]
        assert not result.ok and words in result.error, result
        net.run_for(5)
        assert [m.name for m in serf(net, outsider).members()] == [outsider]
        assert all(serf(net, n).member(outsider) is None for n in names)
    # the seed refused both (their push/pull could not be decrypted / was plaintext) and counted it
    assert serf(net, names[0]).node.stats["decrypt_failed"] >= 2
    assert failures(net, names) == []


def test_rolling_move_to_encryption_in_three_steps_never_fails_a_member() -> None:
    """Consul's procedure: encrypt with both verify flags off, then verify_outgoing, then verify_incoming; each
    step a rolling restart (graceful leave, start with the new settings, rejoin) of 5 agents."""
    # No TCP fallback pings: they would rescue a member whose UDP is wrongly refused and hide the bug.
    base = {"enable_compression": False, "disable_tcp_pings": True}
    net = SimNet(seed=42)
    names = build(net, 5, None, Config.lan(**base))
    assert net.run_until(lambda: converged(net, names), deadline=net.now + 20)
    steps = [
        Config.lan(**base, gossip_verify_incoming=False, gossip_verify_outgoing=False),
        Config.lan(**base, gossip_verify_incoming=False, gossip_verify_outgoing=True),
        Config.lan(**base),
    ]
    for step, cfg in enumerate(steps):
        for i, name in enumerate(names):
            peer = net.hosts[names[(i + 1) % len(names)]].addr
            net.do(name, lambda m, now: m.leave(now))
            net.run_for(3)
            host = net.hosts[name]
            net.replace(name, Serf(cfg, name=name, addr=host.addr, rng=host.rng, now=net.now, tags={},
                                   keyring=ring(OLD, seed=step * 10 + i)))  # fmt: skip
            net.do(name, lambda m, now, p=peer: m.join(now, [p]))
            assert net.run_until(lambda: converged(net, names), deadline=net.now + 30), (step, name)
        net.run_for(10)
        assert converged(net, names)
    assert failures(net, names) == []
    # at the end every packet is encrypted and verified: a plaintext packet is now refused and counted
    before = serf(net, names[0]).node.stats["decrypt_failed"]
    from protocol import packets
    from protocol.codec import Ping, encode

    plain = packets.wrap_packet([encode(Ping(1, names[0], b"", 0, "x"))], crc=True)
    net.do(names[0], lambda m, now: m.handle_datagram(now, ("10.9.9.9", 7946), plain))
    assert serf(net, names[0]).node.stats["decrypt_failed"] == before + 1


def key_query(net: SimNet, name: str, op: str, key: bytes | None = None) -> KeyQueryDone:
    handle = net.do(name, lambda m, now: m.key_query(now, op, encode_key(key) if key else ""))
    done: list[KeyQueryDone] = []

    def finished() -> bool:
        done[:] = [e for e in net.events(name, KeyQueryDone) if e.handle == handle]
        return bool(done)

    assert net.run_until(finished, deadline=net.now + 10)
    return done[0]


def test_key_rotation_by_queries_reaches_everyone_without_a_failure() -> None:
    net = SimNet(seed=43)
    names = build(net, 5, (OLD,))
    assert net.run_until(lambda: converged(net, names), deadline=net.now + 20)
    old, new = encode_key(OLD), encode_key(NEW)

    listed = key_query(net, "n2", "list-keys")
    assert listed.error is None and listed.response.keys == {old: 5} and listed.response.primary_keys == {old: 5}

    installed = key_query(net, "n1", "install-key", NEW)
    assert installed.error is None and (installed.response.num_resp, installed.response.num_nodes) == (5, 5)
    assert key_query(net, "n3", "list-keys").response.keys == {old: 5, new: 5}

    assert key_query(net, "n0", "use-key", NEW).error is None
    assert all(serf(net, n).keyring.primary == NEW for n in names)  # type: ignore[union-attr]
    net.run_for(5)  # traffic now under NEW, still decryptable with OLD installed

    refused = key_query(net, "n4", "remove-key", NEW)
    assert refused.error == "5/5 nodes reported failure"
    assert refused.response.messages == dict.fromkeys(names, "removing the primary key is not allowed")

    assert key_query(net, "n4", "remove-key", OLD).error is None
    final = key_query(net, "n2", "list-keys")
    assert final.response.keys == {new: 5} and final.response.primary_keys == {new: 5}
    for n in names:
        changes = [e.keys for e in net.events(n, KeyringChanged)]
        assert changes == [(old, new), (new, old), (new,)], (n, changes)
    net.run_for(20)
    assert converged(net, names) and failures(net, names) == []
    assert sum(serf(net, n).node.stats["decrypt_failed"] for n in names) == 0


def test_key_queries_without_encryption_report_every_node() -> None:
    net = SimNet(seed=44)
    names = build(net, 3, None)
    assert net.run_until(lambda: converged(net, names), deadline=net.now + 20)
    done = key_query(net, "n0", "install-key", NEW)
    assert done.error == "3/3 nodes reported failure"
    assert set(done.response.messages.values()) == {"No keyring to modify (encryption not enabled)"}
    listed = key_query(net, "n1", "list-keys")
    assert set(listed.response.messages.values()) == {"Keyring is empty (encryption not enabled)"}
