"""Extract UDP payloads and reassembled TCP stream payloads from a loopback pcap into a JSON fixture.

Usage: python bench/capture/extract.py CAP.pcap OUT.json "description"

Only classic pcap, link types Ethernet (1) and Linux cooked (113), IPv4, loopback captures without loss.
Each record: {"n", "t" (seconds since the first packet), "proto" ("udp" | "tcp"), "src", "dst", "hex"};
a TCP record is the whole payload one side sent on one connection (SYN to FIN), in order.
"""

from __future__ import annotations

import json
import pathlib
import struct
import sys
from typing import Any


def packets(path: str) -> list[tuple[float, bytes]]:
    data = pathlib.Path(path).read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    off = 24
    out = []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        frame = data[off : off + incl]
        off += incl
        t = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:
            if struct.unpack_from(">H", frame, 12)[0] != 0x0800:
                continue
            ip = frame[14:]
        elif linktype == 113:
            if struct.unpack_from(">H", frame, 14)[0] != 0x0800:
                continue
            ip = frame[16:]
        else:
            raise SystemExit(f"unsupported link type {linktype}")
        out.append((t, ip))
    return out


def main() -> None:
    path, dest, desc = sys.argv[1], sys.argv[2], sys.argv[3]
    records: list[dict[str, Any]] = []
    streams: dict[tuple[str, str], dict[str, Any]] = {}
    t0 = None
    for t, ip in packets(path):
        if t0 is None:
            t0 = t
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        proto = ip[9]
        src_ip = ".".join(map(str, ip[12:16]))
        dst_ip = ".".join(map(str, ip[16:20]))
        seg = ip[ihl:total]
        sport, dport = struct.unpack_from(">HH", seg, 0)
        src, dst = f"{src_ip}:{sport}", f"{dst_ip}:{dport}"
        if proto == 17:
            records.append({"t": round(t - t0, 6), "proto": "udp", "src": src, "dst": dst, "hex": seg[8:].hex()})
        elif proto == 6:
            seq = struct.unpack_from(">I", seg, 4)[0]
            doff = (seg[12] >> 4) * 4
            flags = seg[13]
            payload = seg[doff:]
            key = (src, dst)
            if flags & 0x02:  # SYN: a new connection in this direction
                if key in streams and streams[key]["data"]:
                    records.append(streams.pop(key)["record"])
                rec = {"t": round(t - t0, 6), "proto": "tcp", "src": src, "dst": dst, "hex": ""}
                streams[key] = {"isn": seq + 1, "data": bytearray(), "record": rec}
                records.append(rec)
                continue
            st = streams.get(key)
            if st is None or not payload:
                continue
            rel = (seq - st["isn"]) & 0xFFFFFFFF
            buf = st["data"]
            if rel > len(buf):
                buf.extend(b"\0" * (rel - len(buf)))  # loss: should not happen on loopback
            buf[rel : rel + len(payload)] = payload
            st["record"]["hex"] = buf.hex()
    records = [r for r in records if r["hex"]]
    for i, r in enumerate(records):
        r["n"] = i
    pathlib.Path(dest).write_text(json.dumps({"description": desc, "records": records}, indent=1))
    print(f"{len(records)} records -> {dest}")


if __name__ == "__main__":
    main()
