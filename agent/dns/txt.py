"""Node meta as TXT records (RFC 1464), shared by node lookups and the additional section of SRV answers."""

from __future__ import annotations

from collections.abc import Mapping

import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT

from agent.gostrings import to_bytes

__all__ = ["encode_rfc1464", "meta_txt"]


def encode_rfc1464(key: str, value: str) -> str:
    """``key=value`` with RFC 1464 escaping as Consul does it: backquote `` ` ``, ``=`` and edge spaces in the key."""
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def meta_txt(meta: Mapping[str, str], *, lower_prefix: bool = False) -> list[TXT]:
    """One TXT rdata per pair, in ``meta``'s order; ``rfc1035-`` keys give the bare value (Consul's SRV path
    compares that prefix case-insensitively, its node path as written: ``lower_prefix``)."""
    out = []
    for key, value in meta.items():
        prefixed = (key.lower() if lower_prefix else key).startswith("rfc1035-")
        data = to_bytes(value if prefixed else encode_rfc1464(key, value))  # a Go string is its bytes
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        out.append(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks))
    return out
