"""Host and port in one string: as Go writes them (net.JoinHostPort: an IPv6 host in brackets) and as serf's
command line reads them (``parse_addr``).  Stdlib only, so the CLI, the config checks, the gossip driver and the
server code share the rules."""

from __future__ import annotations

__all__ = ["is_wildcard", "join_host_port", "listen_error", "parse_addr", "with_default_port"]


def join_host_port(host: str, port: int | str) -> str:
    """``host:port``, or ``[host]:port`` when the host holds a colon (an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(exc: OSError, network: str, host: str | None, port: int) -> OSError:
    """A failed bind or listen, naming what could not be taken as Go's net package does (``listen tcp
    127.0.0.1:8500: address already in use``): the agent's start-up error must say which of its ports is taken.
    The errno is kept, so callers may still test it."""
    reason = exc.strerror or str(exc)
    where = join_host_port(host or "0.0.0.0", port)
    return OSError(exc.errno, f"listen {network} {where}: {reason[:1].lower()}{reason[1:]}")


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
