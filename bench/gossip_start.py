"""What one ``python -m agent.gossip`` start costs: CPU and wall seconds from exec to its first gossip datagram.

gossip_vs_serf.py starts N agents within about a second; on 2 cores, N Python interpreters importing at once delay
every one of them, so each agent's start cost is multiplied by N.  This bench starts a seed, then K agents one at a
time, each joining the seed, and reads in each (an audit hook on ``socket.sendto``, installed before anything is
imported) its CPU seconds (its own and its waited-for children's: ``getrusage``) and the wall seconds since the
bench's ``Popen``, at its first UDP datagram; the agent then exits.  ``--tree DIR`` (repeatable) compares checkouts
(the root holding agent/ and protocol/, each byte-compiled first), interleaved, so a change in the machine's load
hits all alike; ``--load K`` runs K busy loops meanwhile (stopped by PID); ``--importtime`` also prints where the
import time goes (``python -X importtime``, min over the K runs of each module's own time, summed by package).
Loopback only (127.0.9.x); every process is started and stopped here by its PID.
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from gossip_vs_serf import BUSY_LOOP, background

REPO = Path(__file__).resolve().parent.parent
SUBNET = "127.0.9"
PORT = 7946

#: Run in the agent's interpreter as ``python -c``: the hook reports at the first datagram, then the agent exits.
HOOK = r"""
import os, resource, sys, time
def first_datagram(event, args):
    if event == "socket.sendto":
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        os.write(2, f"FIRST-DATAGRAM {cpu:.5f} {time.time() - float(os.environ['START_T0']):.5f}\n".encode())
        os._exit(0)
sys.addaudithook(first_datagram)
import runpy
sys.argv = ["agent.gossip", *sys.argv[1:]]
runpy.run_module("agent.gossip", run_name="__main__", alter_sys=True)
"""
IMPORT = "import agent.gossip.lean as lean; lean.defer(); import agent.gossip.cli"


def one_start(tree: Path, index: int) -> tuple[float, float]:
    """(CPU s, wall s) of one agent from exec to its first datagram."""
    env = dict(os.environ, START_T0=repr(time.time()))
    cmd = [sys.executable, "-c", HOOK, "--name", f"n{index}", "--bind", f"{SUBNET}.{2 + index % 200}:{PORT}",
           "--retry-join", f"{SUBNET}.1:{PORT}", "--retry-interval", "0.2"]
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for line in err.splitlines():
        if line.startswith("FIRST-DATAGRAM "):
            cpu, wall = line.split()[1:]
            return float(cpu), float(wall)
    raise RuntimeError(f"no datagram from the agent in {tree}: {err[-500:]}")


def import_profile(tree: Path, runs: int) -> dict[str, float]:
    """Milliseconds of import per top-level package: each module's own time, the min over `runs`."""
    own: dict[str, list[int]] = defaultdict(list)
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT], cwd=tree, capture_output=True,
                             text=True, check=True).stderr
        for line in err.splitlines():
            fields = line.removeprefix("import time:").split("|")
            if len(fields) == 3 and fields[0].strip().isdigit():
                own[fields[2].strip()].append(int(fields[0]))
    by_package: dict[str, float] = defaultdict(float)
    for module, times in own.items():
        by_package[module.split(".")[0]] += min(times) / 1000
    return dict(sorted(by_package.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=15, help="agents started per tree")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes meanwhile")
    parser.add_argument("--tree", action="append", default=[], help="a checkout's root (repeatable; default: here)")
    parser.add_argument("--importtime", action="store_true", help="also where the import time goes, per package")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.tree] or [REPO]
    for tree in trees:
        for package in ("agent", "protocol"):
            compileall.compile_dir(tree / package, quiet=1)
    runs: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in trees}
    seed = [sys.executable, "-m", "agent.gossip", "--name", "seed", "--bind", f"{SUBNET}.1:{PORT}"]
    busy = [BUSY_LOOP] * args.load
    loads = [os.getloadavg()[0]]
    with background([seed, *busy], trees[0]):
        time.sleep(3.0)  # the seed up
        for i in range(args.starts):
            for j, tree in enumerate(trees):
                runs[tree].append(one_start(tree, i * len(trees) + j))
            loads.append(os.getloadavg()[0])
    print(f"{args.starts} starts per tree, interleaved, {args.load} busy loops; 1-min load average"
          f" {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; exec -> first gossip datagram:")
    for tree, figures in runs.items():
        cpu, wall = [f[0] * 1000 for f in figures], [f[1] * 1000 for f in figures]
        print(f"  {tree!s:40} CPU ms median {statistics.median(cpu):5.0f} [{min(cpu):.0f}-{max(cpu):.0f}]"
              f"   wall ms median {statistics.median(wall):5.0f} [{min(wall):.0f}-{max(wall):.0f}]")
    if args.importtime:
        for tree in trees:
            profile = import_profile(tree, args.starts)
            print(f"import of the node in {tree}: {sum(profile.values()):.0f} ms (min own time per module, summed);"
                  " by package: " + ", ".join(f"{name} {ms:.1f}" for name, ms in list(profile.items())[:10]))


if __name__ == "__main__":
    main()
