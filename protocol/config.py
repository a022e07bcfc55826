"""Configuration profiles: memberlist's and Serf's knobs in one frozen record.

The defaults are memberlist's ``DefaultLANConfig`` plus Serf's ``DefaultConfig``, value for value, because a
node whose timings differ from its Go peers behaves differently under failure (suspicion windows, retransmit
counts, reap times) even when every packet parses. Durations are float seconds.
"""

from __future__ import annotations

from typing import Any

import attrs

from protocol.streams import MAX_STREAM_BYTES

# What this implementation can speak. memberlist: net.go ProtocolVersionMin/Max; Serf: serf.go
# ProtocolVersionMin/Max. Serf maps every delegate version 2..5 to memberlist protocol 2 (ProtocolVersionMap).
MEMBERLIST_PROTOCOL_MIN = 1
MEMBERLIST_PROTOCOL_MAX = 5
MEMBERLIST_PROTOCOL_VERSION = 2
SERF_PROTOCOL_MIN = 2
SERF_PROTOCOL_MAX = 5
SERF_PROTOCOL_VERSION = 4

# Consul raises Serf's ReconnectTimeout from 24 h to 72 h on both its LAN and WAN pools.
CONSUL_RECONNECT_TIMEOUT = 72 * 3600.0


def _to_seconds(value: float) -> float:
    return float(value)


def _seconds(default: float) -> Any:
    """A duration field: ints are accepted and stored as float seconds.  The converter is a Python function, not
    ``float`` itself: attrs reads its converters' signatures, and a builtin's is parsed from its text signature by
    the tokenizer (its regex compiled on first use): 22 of them were 5 ms of every gossip node's start."""
    return attrs.field(default=default, converter=_to_seconds)


@attrs.frozen(kw_only=True)
class Config:
    """Every tunable of the gossip stack; build one with `lan`, `local`, `wan` or `profile`."""

    # --- memberlist (memberlist/config.go DefaultLANConfig) ---
    protocol_version: int = MEMBERLIST_PROTOCOL_VERSION
    protocol_min: int = MEMBERLIST_PROTOCOL_MIN
    protocol_max: int = MEMBERLIST_PROTOCOL_MAX
    tcp_timeout: float = _seconds(10.0)
    indirect_checks: int = 3
    retransmit_mult: int = 4
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    push_pull_interval: float = _seconds(30.0)
    probe_interval: float = _seconds(1.0)
    probe_timeout: float = _seconds(0.5)
    disable_tcp_pings: bool = False
    awareness_max_multiplier: int = 8
    gossip_interval: float = _seconds(0.2)
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = _seconds(30.0)
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    enable_compression: bool = True
    # Ours: whether UDP packets are LZW compressed at all (memberlist: every one, when enable_compression; push/pull
    # streams are compressed either way). Receivers, Go's included, take plain and compressed packets alike, and
    # compression saves only bytes on the wire: the piggyback budget (udp_buffer_size) counts uncompressed bytes,
    # so not one more message fits. In pure Python it was the largest CPU cost of a node in a join storm (in a
    # simulated 100-member join, LZW in and out was 54% of all CPU), and 100 agents on 2 cores, short of CPU,
    # answered pings late and churned through suspicions: with packets plain they converged with a quarter of
    # the suspicions and idled at serf's CPU (issue 14). True: memberlist's way, with the two rules below.
    compress_packets: bool = False
    # Ours: with compress_packets, UDP payloads shorter than this go plain without trying LZW: below ~200 bytes
    # (pings, acks, a few alive/suspect messages: nearly all of an idle node's packets) LZW's 9-bit codes and the
    # compress header almost never win (a few bytes at most, measured at 30 and 100 members). 0 tries every one.
    compress_min_bytes: int = 200
    # Ours: with False, a node whose Lifeguard health score is above 0 (it missed acks or nacks, or had to refute a
    # suspicion: the signs that it is the slow one) sends its streams (and packets) plain until healthy again: a
    # join storm's seed compresses a full push/pull reply per joiner, and a node short of CPU sheds that rather
    # than answer pings late and be suspected. Receivers take plain streams. True: memberlist's way.
    compress_when_degraded: bool = False
    handoff_queue_depth: int = 1024
    udp_buffer_size: int = 1400
    dead_node_reclaim_time: float = _seconds(0.0)
    # Ours, not memberlist's: after a join, this many extra push/pulls with random members, spaced by the time
    # a broadcast takes to retire. Nodes that joined at the same moment learn of each other here instead of
    # waiting for the periodic push/pull (memberlist's "straggler" of mass joins). 0 behaves as memberlist.
    # In a mass join they pay at every size measured (bench/sim_scale.py, all members joining one seed over 1 s):
    # without them N=500 converges in 18.5-21.6 simulated s instead of 5.7-8.5 s (seeds 1-3), and spends more CPU,
    # not less (the gossip they spare costs more than the syncs); the first one teaches a 1000-member joiner ~130
    # members, even one that learned 900 from its seed.
    join_followup_syncs: int = 2
    # Ours: where the follow-ups do not pay. A join that left us knowing at least this many members found an
    # established cluster; its follow-ups run only while members keep joining (our table grew since the join).
    # A restarted agent of a stable 5,000-member cluster is spared two full syncs (~0.5 MB each way), and N <= 100
    # (what the real-agent benches run) behaves exactly as before. 0 applies the rule to every join.
    join_followup_established: int = 128
    # Ours: the most bytes one TCP stream may carry (memberlist has maxPushStateBytes for the user state only);
    # a stream past it is answered with an error and closed. tcp_timeout bounds its time the same way.
    stream_max_bytes: int = MAX_STREAM_BYTES
    require_node_names: bool = False
    label: str = ""
    skip_inbound_label_check: bool = False

    # --- Serf (serf/config.go DefaultConfig, serf.go) ---
    serf_protocol_version: int = SERF_PROTOCOL_VERSION
    serf_protocol_min: int = SERF_PROTOCOL_MIN
    serf_protocol_max: int = SERF_PROTOCOL_MAX
    broadcast_timeout: float = _seconds(5.0)
    leave_propagate_delay: float = _seconds(1.0)
    #: Least time between our leave intent's first transmission and our memberlist leave (the dead message).
    #: A Go memberlist peer handles queued dead and user messages newest first (getNextMessage is LIFO), so a
    #: dead that lands before its handler reached the intent is handled first and serf 0.9 reports us failed.
    #: Real serf's spacing is at least one gossip interval; ours is a fixed, generous half second.
    leave_intent_grace: float = _seconds(0.5)
    coalesce_period: float = _seconds(0.0)
    quiescent_period: float = _seconds(0.0)
    user_coalesce_period: float = _seconds(0.0)
    user_quiescent_period: float = _seconds(0.0)
    reap_interval: float = _seconds(15.0)
    reconnect_interval: float = _seconds(30.0)
    reconnect_timeout: float = _seconds(24 * 3600.0)
    tombstone_timeout: float = _seconds(24 * 3600.0)
    flap_timeout: float = _seconds(60.0)
    queue_check_interval: float = _seconds(30.0)
    queue_depth_warning: int = 128
    max_queue_depth: int = 4096
    min_queue_depth: int = 0
    recent_intent_timeout: float = _seconds(300.0)
    event_buffer: int = 512
    query_buffer: int = 512
    query_timeout_mult: int = 16
    query_response_size_limit: int = 1024
    query_size_limit: int = 1024
    user_event_size_limit: int = 512
    enable_name_conflict_resolution: bool = True
    disable_coordinates: bool = False
    rejoin_after_leave: bool = False

    def __attrs_post_init__(self) -> None:
        _check_range("protocol_version", self.protocol_version, self.protocol_min, self.protocol_max)
        _check_range(
            "serf_protocol_version", self.serf_protocol_version, self.serf_protocol_min, self.serf_protocol_max
        )

    @property
    def vsn(self) -> bytes:
        """The six version bytes of an Alive message: pmin, pmax, pcur, dmin, dmax, dcur."""
        return bytes(
            (
                self.protocol_min,
                self.protocol_max,
                self.protocol_version,
                self.serf_protocol_min,
                self.serf_protocol_max,
                self.serf_protocol_version,
            )
        )

    @classmethod
    def lan(cls, **overrides: Any) -> Config:
        """memberlist DefaultLANConfig + Serf DefaultConfig."""
        return _build(cls, {}, overrides)

    @classmethod
    def wan(cls, **overrides: Any) -> Config:
        """memberlist DefaultWANConfig: slower probes, longer suspicion, for links across datacenters."""
        return _build(cls, _WAN, overrides)

    @classmethod
    def local(cls, **overrides: Any) -> Config:
        """memberlist DefaultLocalConfig: loopback or a single fast LAN, used by tests and benchmarks."""
        return _build(cls, _LOCAL, overrides)

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> Config:
        """The profile called `name` ("lan", "wan", "local"), with overrides applied."""
        try:
            base = PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
        return _build(cls, base, overrides)


# memberlist DefaultWANConfig, relative to DefaultLANConfig.
_WAN: dict[str, Any] = {
    "tcp_timeout": 30.0,
    "suspicion_mult": 6,
    "push_pull_interval": 60.0,
    "probe_timeout": 3.0,
    "probe_interval": 5.0,
    "gossip_nodes": 4,
    "gossip_interval": 0.5,
    "gossip_to_the_dead_time": 60.0,
}

# memberlist DefaultLocalConfig, relative to DefaultLANConfig.
_LOCAL: dict[str, Any] = {
    "tcp_timeout": 1.0,
    "indirect_checks": 1,
    "retransmit_mult": 2,
    "suspicion_mult": 3,
    "push_pull_interval": 15.0,
    "probe_timeout": 0.2,
    "probe_interval": 1.0,
    "gossip_interval": 0.1,
    "gossip_to_the_dead_time": 15.0,
}

PROFILES: dict[str, dict[str, Any]] = {"lan": {}, "wan": _WAN, "local": _LOCAL}


def _build(cls: type[Config], base: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """Merge a profile with overrides, rejecting misspelt knobs loudly rather than ignoring them."""
    known = attrs.fields_dict(cls)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown config knob(s): {', '.join(unknown)}")
    return cls(**{**base, **overrides})


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """memberlist.Create and serf.Create refuse a version outside what the code can speak."""
    if not low <= value <= high:
        raise ValueError(f"{name} {value} outside the supported range [{low}, {high}]")
