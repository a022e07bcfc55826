"""What the DNS responder needs from the agent config, parsed once (consul-compat §3.9 for the defaults).

Why a separate record: the answer function is pure and cached per snapshot, so everything it may read must be
fixed and cheap to reach.  ``dns_config`` arrives raw (config.py keeps it as the file had it), so the durations,
bounds and the nested ``soa`` block are checked here; a bad value is a ``ConfigError`` naming the key, raised
before anything binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import dns.exception
import dns.name

from agent.config import AgentConfig, ConfigError
from agent.durations import parse_duration

__all__ = ["DnsSettings", "SoaSettings", "parse_recursor"]

RECURSOR_STRATEGIES = ("sequential", "random")


@attrs.frozen
class SoaSettings:
    """``dns_config.soa``: the SOA timers (seconds); ``min_ttl`` is also the SOA record's own TTL."""

    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@attrs.frozen
class DnsSettings:
    """The responder's view of the config: domain and DC, the local node, and ``dns_config`` resolved."""

    domain: dns.name.Name = attrs.field(factory=lambda: dns.name.from_text("consul."))
    datacenter: str = "dc1"
    node_name: str = "node"
    node_meta: Mapping[str, str] = attrs.field(factory=dict)
    server: bool = True
    node_ttl: int = 0
    udp_answer_limit: int = 3
    enable_truncate: bool = False
    only_passing: bool = False
    allow_stale: bool = True
    disable_compression: bool = False
    enable_additional_node_meta_txt: bool = True
    recursors: tuple[tuple[str, int], ...] = ()
    recursor_strategy: str = "sequential"
    recursor_timeout: float = 2.0
    soa: SoaSettings = SoaSettings()
    service_ttl: Mapping[str, int] = attrs.field(factory=dict)  # exact names, and ``prefix*`` keys as written
    a_record_limit: int = 0  # 0: unlimited

    def ttl_for_service(self, service: str) -> int:
        """Consul's GetTTLForService: the exact name, else the longest ``prefix*`` match (``*`` matches all), else 0.

        ``service`` is the lower-cased name from the question; keys compare as written, as Consul's do.
        """
        ttls = self.service_ttl
        if not ttls:
            return 0
        exact = ttls.get(service)
        if exact is not None and not service.endswith("*"):
            return exact
        best, best_len = 0, -1
        for key, ttl in ttls.items():
            if key.endswith("*") and len(key) - 1 > best_len and service.startswith(key[:-1]):
                best, best_len = ttl, len(key) - 1
        return best

    @classmethod
    def from_config(cls, config: AgentConfig) -> DnsSettings:
        """Resolve ``config``; raises ConfigError (message names ``dns_config.<key>``) on a bad value."""
        raw = dict(config.dns_config or {})
        return cls(
            domain=_domain(config.domain),
            datacenter=config.datacenter.lower(),
            node_name=config.node_name,
            node_meta=dict(config.node_meta or {}),
            server=bool(config.server),
            node_ttl=_seconds("node_ttl", raw.get("node_ttl", 0)),
            udp_answer_limit=_int("udp_answer_limit", raw.get("udp_answer_limit", 3), minimum=0),
            enable_truncate=_bool("enable_truncate", raw.get("enable_truncate", False)),
            only_passing=_bool("only_passing", raw.get("only_passing", False)),
            allow_stale=_bool("allow_stale", raw.get("allow_stale", True)),
            disable_compression=_bool("disable_compression", raw.get("disable_compression", False)),
            enable_additional_node_meta_txt=_bool(
                "enable_additional_node_meta_txt", raw.get("enable_additional_node_meta_txt", True)
            ),
            recursors=tuple(parse_recursor(r) for r in config.recursors),
            recursor_strategy=_strategy(raw.get("recursor_strategy", "sequential")),
            recursor_timeout=_duration("recursor_timeout", raw.get("recursor_timeout", 2.0)),
            soa=_soa(raw.get("soa", {})),
            service_ttl=_service_ttl(raw.get("service_ttl", {})),
            a_record_limit=_int("a_record_limit", raw.get("a_record_limit", 0), minimum=0),
        )


def _domain(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text.lower().strip() or ".")
    except dns.exception.DNSException as exc:
        raise ConfigError(f"domain: invalid DNS domain {text!r}: {exc}") from None


def _duration(key: str, value: Any) -> float:
    """A Go duration string (``"2s"``) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"dns_config.{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f'dns_config.{key}: invalid duration: "{value}": {exc}') from None
    else:
        raise ConfigError(f"dns_config.{key}: expected a duration, got {value!r}")
    if seconds < 0:
        raise ConfigError(f"dns_config.{key}: must not be negative, got {value!r}")
    return seconds


def _seconds(key: str, value: Any) -> int:
    """A TTL: a duration, whole seconds (Go truncates ``time.Duration / time.Second``)."""
    return int(_duration(key, value))


def _int(key: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"dns_config.{key}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"dns_config.{key}: must be >= {minimum}, got {value}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"dns_config.{key}: expected a boolean, got {value!r}")
    return value


def _service_ttl(value: Any) -> dict[str, int]:
    """``{"web": "30s", "db*": "5s", "*": "1s"}``: each value a TTL duration."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # an HCL block
    if not isinstance(value, Mapping):
        raise ConfigError(f"dns_config.service_ttl: expected a map, got {value!r}")
    return {str(key): _seconds(f"service_ttl.{key}", ttl) for key, ttl in value.items()}


def _strategy(value: Any) -> str:
    if value not in RECURSOR_STRATEGIES:
        raise ConfigError(f"dns_config.recursor_strategy: expected one of {RECURSOR_STRATEGIES}, got {value!r}")
    return str(value)


def _soa(value: Any) -> SoaSettings:
    # HCL's `soa { ... }` block may arrive as a one-element list of maps.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, Mapping):
        raise ConfigError(f"dns_config.soa: expected a map, got {value!r}")
    defaults = SoaSettings()
    fields = {}
    for key in ("refresh", "retry", "expire", "min_ttl"):
        raw = value.get(key, getattr(defaults, key))
        fields[key] = _int(f"soa.{key}", raw, minimum=0)
    return SoaSettings(**fields)


def parse_recursor(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; port 53 when missing (Consul's rule)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
        return host, _port(text, port or "53")
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(text, port)
    return text, 53


def _port(text: str, port: str) -> int:
    try:
        value = int(port)
    except ValueError:
        raise ConfigError(f"recursors: invalid recursor address {text!r}") from None
    if not 0 < value < 65536:
        raise ConfigError(f"recursors: invalid recursor address {text!r}")
    return value
