"""Host and port in one string, as Go writes them (net.JoinHostPort): an IPv6 host in brackets.  Stdlib only, so
the CLI, the config checks and the server code share the one rule."""

from __future__ import annotations

__all__ = ["join_host_port"]


def join_host_port(host: str, port: int | str) -> str:
    """``host:port``, or ``[host]:port`` when the host holds a colon (an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
