"""Get a large LZW stream compressed by Go: push many fake nodes into a serf agent, then pull them back.

Usage: python bench/capture/bigpull.py HOST PORT OUT.json   (a serf agent must listen on HOST:PORT, loopback)
The first push/pull (join) carries 40 fake members 127.0.0.10-49 with 300 bytes of pseudo-random hex tags
each; the reply to the second push/pull lists all of them, compressed by Go's compress/lzw: about 20 kB of
poorly compressible data, so the LZW table fills up and is reset several times.
"""

from __future__ import annotations

import json
import pathlib
import random
import sys

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from bench.capture.probe import exchange
from protocol.codec import PushNodeState, PushPull, encode, packb
from protocol.serf_messages import encode_tags


def main() -> None:
    host, port, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(7)
    nodes = tuple(
        PushNodeState(
            f"fake{i:02d}",
            bytes([127, 0, 0, 10 + i]),
            17990,
            encode_tags({"role": "fake", "blob": "".join(rng.choice("0123456789abcdef") for _ in range(300))}),
            1,
            0,
            bytes([1, 5, 2, 2, 5, 5]),
        )
        for i in range(40)
    )
    user = b"\x02" + packb(
        {
            "EventLTime": 1,
            "Events": [],
            "LTime": 1,
            "LeftMembers": [],
            "QueryLTime": 1,
            "StatusLTimes": {n.name: 1 for n in nodes},
        }
    )
    first = exchange((host, port), encode(PushPull(True, nodes, user)), True)
    second = exchange((host, port), encode(PushPull(False, nodes[:1], user)), True)
    out = {"description": __doc__, "first_reply": first.hex(), "second_reply": second.hex()}
    pathlib.Path(dest).write_text(json.dumps(out, indent=1))
    print(len(first), len(second))


if __name__ == "__main__":
    main()
