"""Turn extract.py output into tests/fixtures/*.json: identical payloads deduplicated, each record annotated.

Usage: python bench/capture/build_fixtures.py IN.json OUT.json "scenario description"
The "summary" of each record is produced by triumvir's own decoder and is informational only; the tests
assert concrete values independently.
"""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from protocol.codec import Alive, User, decode
from protocol.packets import read_stream, unwrap_packet_info

SERF = {0: "leave", 1: "join", 2: "pushpull", 3: "user-event", 4: "query", 5: "query-response"}


def node(addr: str) -> str:
    ip, port = addr.split(":")
    last = ip.rsplit(".", 1)[1]
    return f"s{last}" if port.startswith("179") and last in "1234" else addr


def describe(m: object) -> str:
    if isinstance(m, User):
        return f"User(serf {SERF.get(m.payload[0], m.payload[0])})"
    if isinstance(m, Alive):
        return f"Alive({m.node} inc {m.incarnation})"
    name = type(m).__name__
    bits = [
        f"{k}={v}"
        for k, v in (("node", getattr(m, "node", None)), ("seq", getattr(m, "seq_no", None)))
        if v is not None
    ]
    return f"{name}({', '.join(bits)})"


def summary(rec: dict) -> str:
    data = bytes.fromhex(rec["hex"])
    try:
        if rec["proto"] == "udp":
            info = unwrap_packet_info(data)
            frame = [
                w for w, on in (("crc", info.crc), ("compressed", info.compressed), ("compound", info.compound)) if on
            ]
            return " ".join(frame + [describe(decode(m)) for m in info.messages])
        msg, _ = read_stream(data)
        lead = "compressed " if data[0] == 9 else ""
        if type(msg).__name__ == "PushPull":
            return f"{lead}PushPull(join={msg.join}, nodes={[n.name for n in msg.nodes]})"
        return lead + describe(msg)
    except Exception as exc:
        return f"undecodable: {exc}"


def main() -> None:
    src, dest, desc = sys.argv[1], sys.argv[2], sys.argv[3]
    records = json.loads(pathlib.Path(src).read_text())["records"]
    seen: dict[str, dict] = {}
    out = []
    for r in records:
        key = r["proto"] + r["hex"]
        if key in seen:
            seen[key]["count"] += 1
            continue
        rec = {
            "n": len(out),
            "t": r["t"],
            "proto": r["proto"],
            "src": r["src"],
            "dst": r["dst"],
            "from": node(r["src"]),
            "to": node(r["dst"]),
            "count": 1,
        }
        rec["summary"] = summary(r)
        rec["hex"] = r["hex"]
        seen[key] = rec
        out.append(rec)
    pathlib.Path(dest).write_text(json.dumps({"description": desc, "records": out}, indent=1))
    print(f"{len(records)} -> {len(out)} records in {dest}")


if __name__ == "__main__":
    main()
