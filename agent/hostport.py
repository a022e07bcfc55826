"""Host and port in one string: as Go writes them (net.JoinHostPort: an IPv6 host in brackets) and as serf's
command line reads them (``parse_addr``).  Stdlib only, so the CLI, the config checks, the gossip driver and the
server code share the rules."""

from __future__ import annotations

__all__ = ["is_wildcard", "join_host_port", "parse_addr", "with_default_port"]


def join_host_port(host: str, port: int | str) -> str:
    """``host:port``, or ``[host]:port`` when the host holds a colon (an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def parse_addr(text: str, default_port: int = 7946) -> tuple[str, int]:
    """Parse ``IP``, ``IP:PORT``, ``[v6]:PORT`` or ``host:PORT`` as serf's command line does."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return (host, int(rest[1:]) if rest.startswith(":") else default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return (host, int(port))
    return (text, default_port)


def with_default_port(addr: str, port: int) -> str:
    """A join address as Consul takes it: as given when it names a port (``host:port``, ``[v6]:port``), else
    with ``port`` (a bare IPv6 address in brackets)."""
    has_port = "]:" in addr if addr.startswith("[") else addr.count(":") == 1
    if has_port:
        return addr
    host = f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr
    return f"{host}:{port}"
