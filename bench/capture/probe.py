"""Talk to a live serf agent with triumvir's encoder, to prove Go decodes our bytes (loopback only).

Usage: python bench/capture/probe.py HOST PORT OUT.json
Sends over TCP: a ping (expects an ack), a compressMsg with an unknown algorithm (expects an errResp), a
join push/pull from a fake node "py1" (expects the agent's push/pull) and a userMsg stream carrying a Serf
user event "pyevent".  Writes what was sent and received as hex.
"""

from __future__ import annotations

import json
import pathlib
import socket
import sys

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from protocol.codec import (
    Ping,
    PushNodeState,
    PushPull,
    UserStream,
    encode,
    packb,
)
from protocol.packets import read_stream
from protocol.serf_messages import encode_tags


def exchange(addr: tuple[str, int], data: bytes, want_reply: bool) -> bytes:
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(data)
        if not want_reply:
            s.shutdown(socket.SHUT_WR)
        out = b""
        s.settimeout(3)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                try:
                    read_stream(out)
                    break
                except Exception:
                    continue
        except TimeoutError:
            pass
        return out


def main() -> None:
    host, port, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    addr = (host, port)
    serf_pp = b"\x02" + packb(
        {"EventLTime": 1, "Events": [], "LTime": 1, "LeftMembers": [], "QueryLTime": 1, "StatusLTimes": {"py1": 1}}
    )
    py1 = PushNodeState(
        "py1", bytes([127, 0, 0, 9]), 17950, encode_tags({"role": "py"}), 1, 0, bytes([1, 5, 2, 2, 5, 5])
    )
    event = b"\x03" + packb({"CC": False, "LTime": 7, "Name": "pyevent", "Payload": b"hello"})
    cases = [
        ("tcp ping to s1", encode(Ping(77, "s1")), True),
        ("compressMsg with unknown algorithm 1", b"\x09" + packb({"Algo": 1, "Buf": b"x"}), True),
        ("join push/pull from fake node py1", encode(PushPull(True, (py1,), serf_pp)), True),
        ("userMsg stream with serf user event pyevent", encode(UserStream(event)), False),
    ]
    records = []
    for desc, data, want in cases:
        reply = exchange(addr, data, want)
        records.append({"description": desc, "sent": data.hex(), "reply": reply.hex()})
        print(desc, len(data), "->", len(reply))
    pathlib.Path(dest).write_text(json.dumps({"target": f"{host}:{port}", "records": records}, indent=1))


if __name__ == "__main__":
    main()
