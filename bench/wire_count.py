"""Bytes and packets that a bench's gossip agents send, per agent, counted on the loopback interface.

One ``tcpdump`` per window writes the headers (the first 64 bytes) of every gossip packet sent from the cluster's
subnet (UDP and TCP on the gossip port: the bench's own RPC and members-file reads are not counted) to a pcap file,
which is read here when the window closes: for each source address, UDP and TCP packets and bytes. Bytes are IP
packets' lengths (IP and UDP/TCP headers included, the loopback's link header not): what a network would carry,
and the same yardstick for a Go and a Python agent. TCP counts every segment of a stream, both directions' (the
dialer's data and the listener's replies are each sent by one agent), handshakes and ACKs included.

tcpdump needs root (or CAP_NET_RAW) and the package; without them a window counts only UDP datagrams, host-wide,
from /proc/net/snmp (anything else on the machine disturbs it) and the byte figures are NaN. The bench binds only
127.0.x.y addresses, so lo sees all of it. A loopback packet is captured once (Linux drops the outgoing copy).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

__all__ = ["Capture", "Traffic"]

SNAPLEN = 64  # link + IP + TCP headers: all that is read
_LINK_HEADER = {1: 14, 113: 16, 276: 20}  # pcap link types: Ethernet (lo), Linux cooked v1 and v2
_IPPROTO = {6: "tcp", 17: "udp"}


class Traffic:
    """Per source address: ``packets[(ip, proto)]`` and ``bytes[(ip, proto)]``, proto "udp" or "tcp"."""

    def __init__(self) -> None:
        self.packets: Counter[tuple[str, str]] = Counter()
        self.bytes: Counter[tuple[str, str]] = Counter()
        self.dropped = 0  # packets the kernel dropped before tcpdump read them: the counts are low by as many

    def total(self, proto: str, ips: set[str] | None = None, *, of: str = "bytes") -> int:
        """Packets or bytes of `proto` sent from `ips` (all when None)."""
        table = self.bytes if of == "bytes" else self.packets
        return sum(n for (ip, p), n in table.items() if p == proto and (ips is None or ip in ips))


class Capture:
    """One counting window: ``with Capture(subnet, port, path) as cap: ...; traffic = cap.stop()``.

    ``traffic`` is None when tcpdump could not run; ``udp_datagrams_fallback`` then has the host-wide count."""

    def __init__(self, subnet: int, port: int, pcap: Path, *, enabled: bool = True) -> None:
        self.filter = f"src net 127.0.{subnet}.0/24 and (udp port {port} or tcp port {port})"
        self.pcap = pcap
        self.enabled = enabled  # False: no tcpdump, only the host-wide UDP count
        self.proc: subprocess.Popen[str] | None = None
        self.snmp_before = 0
        self.udp_datagrams_fallback = 0

    def __enter__(self) -> Capture:
        if self.enabled and shutil.which("tcpdump"):
            self.proc = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-s", str(SNAPLEN), "-B", "16384", "-w", str(self.pcap), self.filter],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            assert self.proc.stderr is not None
            line = self.proc.stderr.readline()  # "listening on lo, ..." once the filter is attached
            if "listening on" not in line:
                self.proc.wait(timeout=10)
                print(f"# tcpdump did not start ({line.strip()}): UDP datagrams host-wide, no bytes")
                self.proc = None
        if self.proc is None:
            self.snmp_before = _snmp_udp_out()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    def stop(self) -> Traffic | None:
        """Close the window: the traffic seen in it (None without tcpdump)."""
        if self.proc is None:
            self.udp_datagrams_fallback = _snmp_udp_out() - self.snmp_before
            return None
        time.sleep(0.2)  # tcpdump writes what the kernel buffered since the last wakeup
        os.kill(self.proc.pid, signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        self.proc = None
        traffic = read_pcap(self.pcap)
        self.pcap.unlink(missing_ok=True)
        for line in err.splitlines():
            if line.endswith("dropped by kernel"):
                traffic.dropped = int(line.split()[0])
        return traffic


def read_pcap(path: Path) -> Traffic:
    """Count a pcap file's IPv4 UDP and TCP packets and bytes by source address."""
    traffic = Traffic()
    data = path.read_bytes()
    if len(data) < 24:
        return traffic
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = _LINK_HEADER.get(struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF)
    if link is None:
        raise ValueError(f"{path}: unexpected pcap link type")
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset + 16 <= len(data):
        _sec, _frac, caplen, wirelen = record.unpack_from(data, offset)
        ip = offset + 16 + link
        offset += 16 + caplen
        if caplen < link + 20 or data[ip] >> 4 != 4:
            continue
        proto = _IPPROTO.get(data[ip + 9])
        if proto is None:
            continue
        src = ".".join(str(b) for b in data[ip + 12:ip + 16])
        traffic.packets[(src, proto)] += 1
        traffic.bytes[(src, proto)] += wirelen - link
    return traffic


def _snmp_udp_out() -> int:
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("OutDatagrams")])
