"""The cost of gossip encryption, measured paired: N plaintext and N encrypted agents of one system run at the
same time (on two 127.0.x subnets) and their idle CPU is read over the same window, so the machine's other load
hits both groups alike. gossip_vs_serf.py --encrypt measures the two modes minutes apart instead.

    .venv/bin/python bench/encrypt_ab.py --system triumvir --agents 10 --window 60
    .venv/bin/python bench/encrypt_ab.py --system serf --agents 10 --window 60
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gossip_vs_serf as bench

SETTLE = 10.0  # after convergence, let the join broadcasts retire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=("triumvir", "serf"), default="triumvir")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of the CPU measurement")
    parser.add_argument("--profile", default="lan", choices=["lan", "local"])
    args = parser.parse_args()
    cls = {"triumvir": bench.Triumvir, "serf": bench.Serf}[args.system]
    key = base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory(prefix="triumvir-encrypt-ab-") as tmp:
        groups: dict[str, tuple[bench.System, list[bench.Agent]]] = {}
        for label, subnet, encrypt in (("plaintext", 31, ""), ("encrypted", 32, key)):
            workdir = Path(tmp) / label
            workdir.mkdir()
            groups[label] = (cls(workdir, args.profile, subnet=subnet, encrypt=encrypt), [])
        try:
            for system, agents in groups.values():
                bench.stagger_start(system, agents, args.agents)
            for label, (_, agents) in groups.items():
                bench.wait_for(bench.converged(agents), f"the {label} group to converge")
            time.sleep(SETTLE)
            before = {label: {a.proc.pid: bench.cpu_ticks(a.proc.pid) for a in agents}
                      for label, (_, agents) in groups.items()}  # fmt: skip
            start = time.monotonic()
            time.sleep(args.window)
            elapsed = time.monotonic() - start
            print(f"{args.system}, {args.agents} agents per group, profile {args.profile}, {elapsed:.0f} s window")
            for label, ticks in before.items():
                cpu = [(bench.cpu_ticks(pid) - t) / bench.CLK_TCK / elapsed * 100 for pid, t in ticks.items()]
                print(f"  {label:<10} idle CPU % per agent: mean {statistics.mean(cpu):.3f}  "
                      f"median {statistics.median(cpu):.3f}")  # fmt: skip
        finally:
            for _, agents in groups.values():
                for agent in agents:
                    agent.stop()


if __name__ == "__main__":
    main()
