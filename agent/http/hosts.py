"""Which ``Host`` a request may name: the defence against DNS rebinding (issue 16, item 14).

A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 becomes, to the browser, same-origin with this
agent: it can then read the API and ``PUT /v1/agent/leave``.  Every such request carries ``Host: evil.example``,
while tools (curl, py-consul, the CLI, our own page) name the agent by an address or a name it knows.  So:

- ``http_config.allowed_hosts`` (ours: Consul has no equivalent and the same exposure without ACLs) set: a request
  whose Host is neither listed nor one of the agent's own names is a 403 saying so;
- unset: the API answers any Host, as Consul's does; but the stream (``/v1/stream/members``) and the page
  (``/ui/``), whose clients are browsers, still refuse a Host that is not one of the agent's own names.

The agent's own names: ``localhost``, any loopback address, the address the connection came in on, the
``client_addr``/``bind_addr``/``advertise_addr`` addresses, the node name and the host name.  A request without a
Host (HTTP/1.0) is not from a browser and passes.  Ports are ignored: the name is what a rebinding attack changes.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import AgentConfig

__all__ = ["BROWSER_PATHS", "HostPolicy", "host_name"]

#: Paths whose clients are browsers: guarded even when ``allowed_hosts`` is unset.
BROWSER_PATHS = ("/v1/stream/", "/ui")


def host_name(value: str) -> str:
    """The name in a Host header (or an allowed_hosts entry): port, IPv6 brackets and a final dot removed,
    lower-cased; IP addresses in their canonical form."""
    text = value.strip().lower()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The Host rules for one configuration (rebuilt when the config is reloaded)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.allowed = frozenset(host_name(h) for h in config.http_allowed_hosts if h.strip())
        own = {"localhost", host_name(config.node_name), host_name(socket.gethostname())}
        own.update(host_name(a) for a in config.client_addr.split())
        own.update(host_name(a) for a in (config.bind_addr, config.advertise_addr))
        self.own = frozenset(own)

    def is_own(self, name: str, local_ip: str = "") -> bool:
        return name in self.own or _is_loopback(name) or (bool(local_ip) and name == host_name(local_ip))

    def refusal(self, host: str, path: str, local_ip: str = "") -> str | None:
        """Why a request naming ``host`` for ``path`` (arriving on ``local_ip``) is refused, or None."""
        if not host or not (self.allowed or path.startswith(BROWSER_PATHS)):
            return None  # the API answers any Host unless allowed_hosts is set (checked first: every request)
        name = host_name(host)
        if name in self.allowed or self.is_own(name, local_ip):
            return None
        if self.allowed:
            return (
                f"Host {host!r} is not allowed: this agent answers only to its own names and addresses and to "
                "http_config.allowed_hosts"
            )
        if path.startswith(BROWSER_PATHS):
            return (
                f"Host {host!r} is not this agent's name or address: {path} is for browsers and refuses other "
                "names (DNS rebinding); list the name in http_config.allowed_hosts to use it"
            )
        return None
