"""Config profiles must equal memberlist's DefaultLANConfig/DefaultWANConfig/DefaultLocalConfig and Serf's
DefaultConfig value for value: Go peers derive their timeouts from the same numbers."""

import attrs
import pytest

from protocol.config import CONSUL_RECONNECT_TIMEOUT, PROFILES, Config

# memberlist DefaultLANConfig (memberlist/config.go) and Serf DefaultConfig (serf/config.go, serf.go).
LAN = {
    "protocol_version": 2,
    "protocol_min": 1,
    "protocol_max": 5,
    "tcp_timeout": 10.0,
    "indirect_checks": 3,
    "retransmit_mult": 4,
    "suspicion_mult": 4,
    "suspicion_max_timeout_mult": 6,
    "push_pull_interval": 30.0,
    "join_followup_syncs": 2,
    "join_followup_established": 128,  # ours: see Config
    "probe_timeout": 0.5,
    "probe_interval": 1.0,
    "disable_tcp_pings": False,
    "awareness_max_multiplier": 8,
    "gossip_nodes": 3,
    "gossip_interval": 0.2,
    "gossip_to_the_dead_time": 30.0,
    "gossip_verify_incoming": True,
    "gossip_verify_outgoing": True,
    "enable_compression": True,
    "compress_packets": False,  # ours (memberlist compresses every packet): see Config
    "compress_min_bytes": 200,  # ours (not memberlist's): see Config
    "compress_when_degraded": False,  # ours: see Config
    "handoff_queue_depth": 1024,
    "udp_buffer_size": 1400,
    "dead_node_reclaim_time": 0.0,
    "stream_max_bytes": 32 * 1024 * 1024,
    "require_node_names": False,
    "label": "",
    "skip_inbound_label_check": False,
    "serf_protocol_version": 4,
    "serf_protocol_min": 2,
    "serf_protocol_max": 5,
    "broadcast_timeout": 5.0,
    "leave_propagate_delay": 1.0,
    "leave_intent_grace": 0.5,
    "coalesce_period": 0.0,
    "quiescent_period": 0.0,
    "user_coalesce_period": 0.0,
    "user_quiescent_period": 0.0,
    "reap_interval": 15.0,
    "reconnect_interval": 30.0,
    "reconnect_timeout": 86400.0,
    "tombstone_timeout": 86400.0,
    "flap_timeout": 60.0,
    "queue_check_interval": 30.0,
    "queue_depth_warning": 128,
    "max_queue_depth": 4096,
    "min_queue_depth": 0,
    "recent_intent_timeout": 300.0,
    "event_buffer": 512,
    "query_buffer": 512,
    "query_timeout_mult": 16,
    "query_response_size_limit": 1024,
    "query_size_limit": 1024,
    "user_event_size_limit": 512,
    "enable_name_conflict_resolution": True,
    "disable_coordinates": False,
    "rejoin_after_leave": False,
}

# memberlist DefaultWANConfig: DefaultLANConfig with these changed.
WAN = {
    **LAN,
    "tcp_timeout": 30.0,
    "suspicion_mult": 6,
    "push_pull_interval": 60.0,
    "probe_timeout": 3.0,
    "probe_interval": 5.0,
    "gossip_nodes": 4,
    "gossip_interval": 0.5,
    "gossip_to_the_dead_time": 60.0,
}

# memberlist DefaultLocalConfig: DefaultLANConfig with these changed.
LOCAL = {
    **LAN,
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

EXPECTED = {"lan": LAN, "wan": WAN, "local": LOCAL}
ROWS = [(name, knob, value) for name, table in EXPECTED.items() for knob, value in table.items()]


def test_tables_cover_every_field() -> None:
    assert set(LAN) == set(attrs.fields_dict(Config))
    assert set(PROFILES) == set(EXPECTED)


@pytest.mark.parametrize(("name", "knob", "expected"), ROWS, ids=[f"{n}-{k}" for n, k, _ in ROWS])
def test_profile_value(name: str, knob: str, expected: object) -> None:
    config = Config.profile(name)
    value = getattr(config, knob)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_constructors_match_profile(name: str) -> None:
    assert getattr(Config, name)() == Config.profile(name)


def test_lan_is_the_default() -> None:
    assert Config() == Config.lan()


def test_vsn_bytes_as_serf_advertises_them() -> None:
    assert Config.lan().vsn == bytes([1, 5, 2, 2, 5, 4])
    assert Config.local(serf_protocol_version=5).vsn == bytes([1, 5, 2, 2, 5, 5])


def test_overrides_apply_on_top_of_the_profile() -> None:
    config = Config.local(probe_interval=2, label="dc1", reconnect_timeout=CONSUL_RECONNECT_TIMEOUT)
    assert config.probe_interval == 2.0
    assert isinstance(config.probe_interval, float)
    assert config.label == "dc1"
    assert config.reconnect_timeout == 259200.0
    assert config.probe_timeout == 0.2  # untouched profile value
    assert Config.profile("wan", gossip_nodes=7).gossip_nodes == 7


def test_config_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Config.lan().probe_interval = 5.0  # type: ignore[misc]


def test_unknown_profile_is_named() -> None:
    with pytest.raises(ValueError, match="'galaxy'"):
        Config.profile("galaxy")


@pytest.mark.parametrize("ctor", [Config.lan, Config.local, Config.wan, lambda **kw: Config.profile("lan", **kw)])
def test_unknown_knob_is_named(ctor) -> None:
    with pytest.raises(ValueError, match="probe_intervall"):
        ctor(probe_intervall=1.0)


@pytest.mark.parametrize(
    ("overrides", "knob"),
    [
        ({"protocol_version": 0}, "protocol_version"),
        ({"protocol_version": 6}, "protocol_version"),
        ({"serf_protocol_version": 1}, "serf_protocol_version"),
        ({"serf_protocol_version": 6}, "serf_protocol_version"),
    ],
)
def test_protocol_version_outside_range_is_refused(overrides: dict, knob: str) -> None:
    with pytest.raises(ValueError, match=knob):
        Config.lan(**overrides)


def test_protocol_version_edges_are_accepted() -> None:
    assert Config.lan(protocol_version=1, serf_protocol_version=2).vsn == bytes([1, 5, 1, 2, 5, 2])
    assert Config.lan(protocol_version=5, serf_protocol_version=5).protocol_version == 5
