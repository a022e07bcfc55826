"""The host's network interfaces, and Consul's default bind address chosen from them.

Consul binds, when ``bind_addr`` is unset, to the host's single private IPv4 address (go-sockaddr's
``GetPrivateIP``): interfaces that are up, loopback only when nothing else has an address; none or several is an
error asking for ``-bind``.  Read with two Linux ioctls, no dependency.
"""

from __future__ import annotations

import array
import ipaddress
import socket
import struct
from collections.abc import Iterable, Sequence

import attrs

from agent.config_errors import ConfigError

__all__ = ["Interface", "default_bind_addr", "list_interfaces", "private_ipv4"]


@attrs.frozen
class Interface:
    """One network interface as Go's net.Interfaces sees it (only what address selection needs)."""

    name: str
    addresses: tuple[str, ...]
    up: bool = True
    loopback: bool = False


#: go-sockaddr / Consul ipaddr "private" blocks (consul-compat §5.4).
_PRIVATE_BLOCKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
    )
)  # fmt: skip

_SIOCGIFCONF = 0x8912
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def list_interfaces() -> list[Interface]:
    """The host's IPv4 interface addresses (Linux ioctls SIOCGIFCONF + SIOCGIFFLAGS; no dependency)."""
    import fcntl

    ifreq_size = 40 if struct.calcsize("P") == 8 else 32
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        size = ifreq_size * 64
        while True:
            buf = array.array("B", bytes(size))
            request = struct.pack("iP", size, buf.buffer_info()[0])
            length = struct.unpack("iP", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request))[0]
            if length < size:
                break
            size *= 2
        data = buf.tobytes()[:length]
        grouped: dict[str, list[str]] = {}
        flags: dict[str, int] = {}
        for offset in range(0, length - ifreq_size + 1, ifreq_size):
            raw_name = data[offset : offset + 16].split(b"\0", 1)[0]
            address = socket.inet_ntoa(data[offset + 20 : offset + 24])
            link = raw_name.decode(errors="replace").split(":", 1)[0]  # "eth0:1" is an alias on eth0
            grouped.setdefault(link, []).append(address)
            if link not in flags:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack("16sH", link.encode(), 0))
                flags[link] = struct.unpack("16sH", reply[:18])[1]
    return [
        Interface(name, tuple(addrs), up=bool(flags[name] & _IFF_UP), loopback=bool(flags[name] & _IFF_LOOPBACK))
        for name, addrs in grouped.items()
    ]


def private_ipv4(interfaces: Iterable[Interface]) -> list[str]:
    """Consul's ipaddr.GetPrivateIPv4: up interfaces, loopback only when no other up interface has addresses."""
    up = [i for i in interfaces if i.up]
    addresses = [a for i in up if not i.loopback for a in i.addresses]
    if not addresses:
        addresses = [a for i in up if i.loopback for a in i.addresses]
    found = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("/", 1)[0])
        except ValueError:
            continue
        if ip.version == 4 and any(ip in block for block in _PRIVATE_BLOCKS) and str(ip) not in found:
            found.append(str(ip))
    return found


def default_bind_addr(interfaces: Sequence[Interface] | None = None) -> str:
    """The single private IPv4 address of the host (``interfaces`` for tests), else Consul's error."""
    if interfaces is None:
        try:
            interfaces = list_interfaces()
        except OSError as exc:
            raise ConfigError(f"Error detecting private IPv4 address: {exc}") from None
    found = private_ipv4(interfaces)
    if not found:
        raise ConfigError("No private IPv4 address found")
    if len(found) > 1:
        raise ConfigError("Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'.")
    return found[0]
