"""triumvir's gossip against the real serf binary, side by side, on 127.0.x.y addresses.

For each cluster size N and each system it runs the same script, several trials, and prints one table of medians:

  startup      launch of a process -> its own member list can be read (interpreter start, for Python)
  stagger      the first agent's start -> the last one's (--stagger asks 1 s; on busy cores the bench's loop runs late)
  last up      the last agent started -> every agent's member list can be read (N interpreters starting at once)
  all-join     every agent up -> every agent lists N members alive (0 when done before the last is up)
  poll look    the longest the bench took to read all N member lists once during the join (on the same cores)
  join CPU s   CPU seconds per agent from its start until all-join (interpreter start included)
  single-join  one more agent up -> every agent lists it alive
  detect       kill -9 of that agent -> every survivor lists it failed (``--detect-repeats K``: K rounds of both,
               each with a new agent; the trial's figure is their median)
  leave        graceful leave of one agent -> every other lists it left
  idle CPU %, RSS MiB per agent, UDP packets/s per agent (5 s after convergence, over --idle-window s)
  UDP B/s, TCP B/s     gossip bytes sent per agent per second in that idle window (IP packets, headers included)
  join UDP/TCP B/s     the same from the first agent's start until all-join, and join UDP/TCP KiB in all per agent

Bytes are counted by tcpdump on lo with ``--count-bytes`` (bench/wire_count.py: root and the package, else NaN and
UDP packets host-wide); without it, only the UDP packets host-wide. The capture slows the agents' join
(COUNT_BYTES says how much).
Idle TCP is push/pull: one per agent every 30 s (memberlist scales it up above 32 members: 90 s at N = 100), so a
window of 5 s sees a few of them; ``--idle-window 30`` or more for a steadier figure. serf compresses every UDP
packet that LZW shrinks (memberlist's EnableCompression, on by default; serf agent -disable-compression turns it
off); triumvir sends them plain unless ``--compress-packets`` (Config.compress_packets). Both compress push/pulls.

``--encrypt`` runs every agent of both systems with one fresh 32-byte gossip key (serf's ``-encrypt``).
``--systems triumvir,serf,mixed`` adds a mixed cluster: even-numbered agents triumvir, odd-numbered serf, all in one
cluster (N = 100 is 50 + 50). ``floor`` adds N bare Python processes (FLOOR_SCRIPT: trio, attrs and msgpack imported,
a UDP socket bound, no gossip), started the same way: their "last up" is the least N Python starts take here.
``--load K`` keeps K busy-looping processes running for the whole bench (started and
stopped here by PID), so that the figures are also taken with the machine's cores busy. ``stragglers @5s`` counts
the agents that did not yet list all N alive 5 s after the last agent was started (the target is 0);
``stragglers @5s up`` counts them 5 s after the last agent was up (without the interpreters' start: a Python
agent spends about 0.3 s of CPU importing, so N of them starting at once on 2 cores take N * 0.15 s to be up).

triumvir's agents are ``python -m agent.gossip`` (the bare gossip node: Serf over memberlist, no HTTP/DNS/catalog
around it), as serf's are ``serf agent``. The bench first byte-compiles protocol/ and agent/ (``__pycache__``, as an
installed package has): with PYTHONDONTWRITEBYTECODE set and no .pyc, every agent would compile its modules from
source at start, which costs about 2 MiB of RSS and a few hundred ms of startup that a deployed agent does not pay.
CPU is summed over each agent's threads from /proc/PID/task/*/schedstat (nanoseconds), else read in 10 ms ticks.

Agents join the first one with ``-retry-join`` (``--retry-join`` for triumvir), retried every second.
Agents are started staggered over about a second (agents started in lock-step probe in lock-step and skew every
comparison). Every process is started here and stopped here by its PID. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from wire_count import Capture, Traffic

REPO = Path(__file__).resolve().parent.parent
GOSSIP_PORT = 7946
SERF_RPC_PORT = 7373
POLL = 0.05
DEADLINE = 120.0
IDLE_WINDOW = 5.0
IDLE_SETTLE = 5.0  # after convergence, let the join broadcasts finish retransmitting before "idle" starts
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Both systems join with serf's -retry-join, as deployments do: on a loaded machine a seed among N starting
#: interpreters may not answer within the TCP timeout, and an agent that gave up and exited would never converge.
RETRY_INTERVAL = 1.0
STAGGER = 1.0  # seconds over which the N agents of a cluster are started (--stagger)
COMPRESS_PACKETS = False  # triumvir agents LZW-compress their UDP packets as memberlist does (--compress-packets)
#: tcpdump on lo counts the bytes (--count-bytes). Off by default: a packet tap makes every send copy its packet in the
#: sender's own system call, which slowed 100 Python agents' start and join enough to fail the straggler target
#: (measured at N=100 on 2 cores: 100 stragglers with the capture, 0 without; serf's join CPU rose alike).
COUNT_BYTES = False
#: Rounds of single-join then detect per trial (--detect-repeats): one kill per trial left the detection ratio
#: within its own noise (serf's detect ranged 9.7-11.9 s at N=100); a trial reports the rounds' median.
DETECT_REPEATS = 1
#: Every round's detect seconds, by (system label, N), over all trials: the detect ratio is their pooled median.
DETECT_ROUNDS: dict[tuple[str, int], list[float]] = {}


class SerfRPC:
    """A minimal client of serf's msgpack RPC (handshake + members), one connection kept open."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=2.0)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.seq = 0
        self.call("handshake", {"Version": 1}, expect_body=False)

    def call(self, command: str, body: dict | None = None, *, expect_body: bool = True) -> object:
        self.seq += 1
        payload = msgpack.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            payload += msgpack.packb(body)
        self.sock.sendall(payload)
        header = self._next()
        if header.get("Error"):
            raise RuntimeError(f"serf rpc {command}: {header['Error']}")
        return self._next() if expect_body else None

    def _next(self) -> dict:
        while True:
            with contextlib.suppress(StopIteration):
                return next(self.unpacker)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf rpc closed")
            self.unpacker.feed(chunk)

    def members(self) -> dict[str, str]:
        reply = self.call("members")
        assert isinstance(reply, dict)
        return {m["Name"]: m["Status"] for m in reply["Members"]}

    def close(self) -> None:
        self.sock.close()


@dataclass
class Agent:
    name: str
    ip: str
    proc: subprocess.Popen
    members: Callable[[], dict[str, str] | None]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for close in self.closers:
            close()


class System:
    """How to start one agent of a system and read its member list."""

    label = ""
    gossips = True  # False: only start and "last up" are measured (Floor)

    def __init__(self, workdir: Path, profile: str, subnet: int, encrypt: str = "") -> None:
        self.workdir = workdir
        self.profile = profile
        self.subnet = subnet
        self.encrypt = encrypt  # base64 gossip key, "" for plaintext

    def ip(self, index: int) -> str:
        return f"127.0.{self.subnet}.{index + 1}"

    def start(self, index: int, join: str | None) -> Agent:
        raise NotImplementedError


class Triumvir(System):
    label = "triumvir"

    def start(self, index: int, join: str | None) -> Agent:
        name = f"t{index}"
        ip = self.ip(index)
        members_file = self.workdir / f"{name}.members.json"
        members_file.unlink(missing_ok=True)  # a file left by an earlier trial would look like "up" at once
        cmd = [sys.executable, "-m", "agent.gossip", "--name", name, "--bind", f"{ip}:{GOSSIP_PORT}",
               "--profile", self.profile, "--members-file", str(members_file), "--tag", "role=node"]
        if join:
            cmd += ["--retry-join", f"{join}:{GOSSIP_PORT}", "--retry-interval", str(RETRY_INTERVAL)]
        if self.encrypt:
            cmd += ["--encrypt", self.encrypt]
        if COMPRESS_PACKETS:
            cmd.append("--compress-packets")
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        return Agent(name, ip, proc, members_file_reader(members_file), [log.close])


def members_file_reader(path: Path) -> Callable[[], dict[str, str] | None]:
    """A members file's {name: status}, None until the agent has written it (it is replaced atomically)."""

    def members() -> dict[str, str] | None:
        try:
            return {m["Name"]: m["Status"] for m in json.loads(path.read_text())}
        except (FileNotFoundError, ValueError):
            return None

    return members


class Serf(System):
    label = "serf"

    def start(self, index: int, join: str | None) -> Agent:
        name = f"s{index}"
        ip = self.ip(index)
        cmd = ["serf", "agent", f"-node={name}", f"-bind={ip}:{GOSSIP_PORT}", f"-rpc-addr={ip}:{SERF_RPC_PORT}",
               f"-profile={self.profile}", "-tag", "role=node", "-log-level=warn"]
        if join:
            cmd += [f"-retry-join={join}:{GOSSIP_PORT}", f"-retry-interval={RETRY_INTERVAL:g}s"]
        if self.encrypt:
            cmd.append(f"-encrypt={self.encrypt}")
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        rpc: list[SerfRPC] = []

        def members() -> dict[str, str] | None:
            try:
                if not rpc:
                    rpc.append(SerfRPC((ip, SERF_RPC_PORT)))
                return rpc[0].members()
            except (OSError, RuntimeError):
                for client in rpc:
                    client.close()
                rpc.clear()
                return None

        def close() -> None:
            for client in rpc:
                client.close()
            log.close()

        return Agent(name, ip, proc, members, [close])


class Mixed(System):
    """One cluster of both: even-numbered agents triumvir, odd-numbered serf, on one subnet."""

    label = "mixed"

    def __init__(self, workdir: Path, profile: str, subnet: int, encrypt: str = "") -> None:
        super().__init__(workdir, profile, subnet, encrypt)
        self.halves = (Triumvir(workdir, profile, subnet, encrypt), Serf(workdir, profile, subnet, encrypt))

    def start(self, index: int, join: str | None) -> Agent:
        return self.halves[index % 2].start(index, join)


#: The floor of any Python agent built on our packages: the interpreter starts, imports trio, attrs and msgpack,
#: binds its UDP socket and lists itself; it never gossips.  Its "last up" is what N such starts cost on these
#: cores, before any protocol work: what no Python agent's join can beat.
FLOOR_SCRIPT = """
import json, os, sys
import attrs, msgpack, trio
name, ip, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
async def main():
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind((ip, port))
    with open(path + ".tmp", "w") as f:
        json.dump([{"Name": name, "Status": "alive"}], f)
    os.replace(path + ".tmp", path)
    await trio.sleep_forever()
trio.run(main)
"""


class Floor(System):
    """`FLOOR_SCRIPT` per agent: how long N Python starts take here, with no gossip (no join figures)."""

    label = "floor"
    gossips = False

    def start(self, index: int, join: str | None) -> Agent:
        name = f"f{index}"
        members_file = self.workdir / f"{name}.members.json"
        members_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-c", FLOOR_SCRIPT, name, self.ip(index), str(GOSSIP_PORT), str(members_file)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return Agent(name, self.ip(index), proc, members_file_reader(members_file))


BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def load_generator(count: int) -> contextlib.AbstractContextManager[None]:
    """``count`` busy-looping processes for the duration (stopped by their PIDs)."""
    return background([BUSY_LOOP] * count)


@contextlib.contextmanager
def background(cmds: list[list[str]], cwd: Path | None = None) -> Iterator[None]:
    """Processes running for the duration, their output discarded, killed by their PIDs."""
    procs = [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd in cmds]
    try:
        yield
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> float:
    """Poll until `condition()` holds; return the seconds it took."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > deadline:
            raise TimeoutError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(POLL)


def all_see(agents: list[Agent], name: str, status: str) -> Callable[[], bool]:
    def check() -> bool:
        return all((agent.members() or {}).get(name) == status for agent in agents)

    return check


def join_watch(agents: list[Agent], marks: tuple[float, ...]) -> tuple[float, list[int], list[str], float]:
    """Until every agent lists all of them alive: (seconds from now, for each of the monotonic times `marks` the
    agents still behind at the first look from then on, 0 if all were done by then, who they were at the first
    mark: "name: what it lacks", and the longest look in seconds: a look that ends past a mark counts views read
    up to that long before it, for both systems alike)."""
    names = {a.name for a in agents}
    start = time.monotonic()
    stragglers: list[int | None] = [None] * len(marks)
    behind_at_first: list[str] = []
    longest = 0.0
    while True:
        behind: list[str] = []
        look = time.monotonic()
        for agent in agents:
            view = agent.members()
            alive = {n for n, s in (view or {}).items() if s == "alive"}
            if alive != names:
                behind.append(f"{agent.name}: {_lacks(view, names - alive)}")
        now = time.monotonic()
        longest = max(longest, now - look)
        for i, mark in enumerate(marks):
            if stragglers[i] is None and now >= mark:
                stragglers[i] = len(behind)
                if i == 0:
                    behind_at_first = behind
        if not behind:
            return now - start, [count or 0 for count in stragglers], behind_at_first, longest
        if now - start > DEADLINE:
            dump_stacks(agents)
            raise TimeoutError(f"timed out after {DEADLINE:.0f} s waiting for {len(agents)} agents to converge;"
                               f" behind: {'; '.join(behind[:10])}")
        time.sleep(POLL)


def dump_stacks(agents: list[Agent]) -> None:
    """Ask every live triumvir agent for its Python stacks (SIGUSR1: faulthandler, into its log), for a look at
    the agents of a cluster that did not converge (with --workdir, the logs stay)."""
    for agent in agents:
        if agent.name.startswith("t") and agent.proc.poll() is None:
            os.kill(agent.proc.pid, signal.SIGUSR1)
    time.sleep(0.5)


def _lacks(view: dict[str, str] | None, missing: set[str]) -> str:
    if view is None:
        return "not up"
    shown = ", ".join(f"{n} {view.get(n, 'unknown')}" for n in sorted(missing)[:5])
    return f"{len(missing)} not alive ({shown}{', ...' if len(missing) > 5 else ''})"


def cpu_seconds(pid: int) -> dict[str, float]:
    """Each thread's time on the CPU: schedstat's nanoseconds (serf is Go: many threads; /proc/PID/schedstat is
    only the main one's), else the process's utime + stime in clock ticks."""
    try:
        return {tid.name: int((tid / "schedstat").read_text().split()[0]) / 1e9
                for tid in Path(f"/proc/{pid}/task").iterdir()}
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return {"": (int(fields[11]) + int(fields[12])) / CLK_TCK}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU seconds between two cpu_seconds() readings (a thread that ended in between loses its share)."""
    return sum(used - before.get(tid, 0.0) for tid, used in after.items())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_figures(agents: list[Agent], system: System) -> dict[str, float]:
    """Over an idle window: CPU % and RSS MiB per agent (all, and each kind's: "t" triumvir, "s" serf, so that a
    mixed cluster compares its halves), UDP datagrams/s and UDP and TCP bytes/s sent per agent."""
    with Capture(system.subnet, GOSSIP_PORT, system.workdir / "idle.pcap", enabled=COUNT_BYTES) as capture:
        before = {a.proc.pid: cpu_seconds(a.proc.pid) for a in agents}
        start = time.monotonic()
        time.sleep(IDLE_WINDOW)
        elapsed = time.monotonic() - start
        after = {pid: cpu_seconds(pid) for pid in before}
        traffic = capture.stop()
    cpu = {a.name: cpu_used(before[a.proc.pid], after[a.proc.pid]) / elapsed * 100 for a in agents}
    rss = {a.name: rss_mib(a.proc.pid) for a in agents}
    figures = {"idle CPU %": statistics.mean(cpu.values()), "RSS MiB": statistics.mean(rss.values())}
    per_agent_s = elapsed * len(agents)
    if traffic is None:
        figures.update({"UDP pkt/s": capture.udp_datagrams_fallback / per_agent_s, "UDP B/s": NAN, "TCP B/s": NAN})
    else:
        _warn_dropped(traffic, "idle")
        figures.update({"UDP pkt/s": traffic.total("udp", of="packets") / per_agent_s,
                        "UDP B/s": traffic.total("udp") / per_agent_s, "TCP B/s": traffic.total("tcp") / per_agent_s})
    for kind in ("t", "s"):
        names = [name for name in cpu if name.startswith(kind)]
        figures[f"idle CPU % {kind}"] = statistics.mean(cpu[n] for n in names) if names else float("nan")
        figures[f"RSS MiB {kind}"] = max((rss[n] for n in names), default=float("nan"))
    return figures


def join_wire_figures(traffic: Traffic | None, agents: int, window: float) -> dict[str, float]:
    """Bytes sent per agent from the first agent's start until all N list each other alive: per second of that
    window, and in all (the window's length differs between the systems: the totals compare the work)."""
    if traffic is None:
        return dict.fromkeys(("join UDP B/s", "join TCP B/s", "join UDP KiB", "join TCP KiB"), NAN)
    _warn_dropped(traffic, "join")
    udp, tcp = traffic.total("udp") / agents, traffic.total("tcp") / agents
    return {"join UDP B/s": udp / window, "join TCP B/s": tcp / window,
            "join UDP KiB": udp / 1024, "join TCP KiB": tcp / 1024}


def _warn_dropped(traffic: Traffic, window: str) -> None:
    if traffic.dropped:
        print(f"#   tcpdump: {traffic.dropped} packets dropped by the kernel in the {window} window (bytes low)",
              file=sys.stderr, flush=True)


@contextlib.contextmanager
def cluster(system: System) -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    try:
        yield agents
    finally:
        for agent in agents:
            agent.stop()


def stagger_start(system: System, agents: list[Agent], count: int, first: int = 0) -> None:
    """Start `count` agents over STAGGER seconds (the seed first, once it is up)."""
    seed = system.ip(0)
    for index in range(first, first + count):
        agents.append(system.start(index, None if index == 0 else seed))
        if index == 0:
            wait_for(lambda: agents[0].members() is not None, "the seed agent to come up", 20)
        time.sleep(STAGGER / max(count, 1))


def trial(system: System, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    join_pcap = system.workdir / "join.pcap"
    with cluster(system) as agents, Capture(system.subnet, GOSSIP_PORT, join_pcap, enabled=COUNT_BYTES) as capture:
        first_start = time.monotonic()
        stagger_start(system, agents, n)
        last_start = time.monotonic()
        results["stagger s"] = last_start - first_start
        up_deadline = 60.0 + n  # N interpreters starting on a few cores: seconds each on a loaded machine
        results["last up s"] = wait_for(lambda: all(a.members() is not None for a in agents), "every agent up",
                                        up_deadline)
        all_up = time.monotonic()
        if not system.gossips:
            return results
        marks = (last_start + 5.0, all_up + 5.0)
        results["all-join s"], stragglers, behind, results["poll look s"] = join_watch(agents, marks)
        results["stragglers @5s"], results["stragglers @5s up"] = stragglers
        join_window = time.monotonic() - first_start
        results.update(join_wire_figures(capture.stop(), n, join_window))
        results["join CPU s"] = statistics.mean(sum(cpu_seconds(a.proc.pid).values()) for a in agents)
        if behind:
            print(f"#   behind 5 s after the last start: {'; '.join(behind[:12])}", file=sys.stderr, flush=True)
        time.sleep(IDLE_SETTLE)
        results.update(idle_figures(agents, system))

        samples: dict[str, list[float]] = {"startup s": [], "single-join s": [], "detect s": []}
        for repeat in range(DETECT_REPEATS):  # each round a new agent (name and address): the killed stay failed
            extra = system.start(n + repeat, system.ip(0))
            agents.append(extra)  # before the wait: an agent that never came up is stopped too (one outlived a trial)
            samples["startup s"].append(wait_for(lambda a=extra: a.members() is not None, "the extra agent up", 30))
            samples["single-join s"].append(wait_for(all_see(agents, extra.name, "alive"), "the extra agent seen"))
            extra.stop(signal.SIGKILL)
            agents.remove(extra)
            samples["detect s"].append(wait_for(all_see(agents, extra.name, "failed"), "the killed agent failed"))
        results.update({metric: statistics.median(values) for metric, values in samples.items()})
        DETECT_ROUNDS.setdefault((system.label, n), []).extend(samples["detect s"])
        if DETECT_REPEATS > 1:
            print(f"#   detect s each round: {' '.join(f'{v:.2f}' for v in samples['detect s'])}", file=sys.stderr,
                  flush=True)

        leaver = agents[-1]
        os.kill(leaver.proc.pid, signal.SIGINT)
        others = agents[:-1]
        results["leave s"] = wait_for(all_see(others, leaver.name, "left"), "the leaver seen left")
    return results


METRICS = ["startup s", "stagger s", "last up s", "all-join s", "stragglers @5s", "stragglers @5s up", "poll look s",
           "join CPU s", "single-join s", "detect s", "leave s", "idle CPU %", "RSS MiB", "UDP pkt/s", "UDP B/s",
           "TCP B/s", "join UDP B/s", "join TCP B/s", "join UDP KiB", "join TCP KiB"]
Runs = dict[str, list[dict[str, float]]]  # system label -> one dict of figures per trial that completed


def run_size(n: int, labels: list[str], args: argparse.Namespace, workdir: Path, key: str,
             load_seen: list[float]) -> tuple[Runs, dict[str, int]]:
    """Every trial of cluster size `n` for each system, interleaved; a trial that times out is counted, not fatal
    (the bench goes on with the next, and the table says how many failed)."""
    systems = [cls(_subdir(workdir, f"{cls.label}-{n}"), args.profile, subnet=1 + index, encrypt=key)
               for index, cls in enumerate((Triumvir, Serf, Mixed, Floor)) if cls.label in labels]
    runs: Runs = {system.label: [] for system in systems}
    failed = {system.label: 0 for system in systems}
    for t in range(args.trials):  # trials interleaved, so a change in the machine's load hits every system
        for system in systems:
            print(f"# N={n} {system.label} trial {t + 1}/{args.trials} (load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
            try:
                result = trial(system, n)
            except (TimeoutError, OSError, RuntimeError) as exc:
                failed[system.label] += 1
                print(f"#   FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            finally:
                load_seen.append(os.getloadavg()[0])
            runs[system.label].append(result)
            print("#   " + ", ".join(f"{m} {result[m]:.2f}" for m in METRICS if m in result), file=sys.stderr,
                  flush=True)
    return runs, failed


def _subdir(workdir: Path, name: str) -> Path:
    """Each cluster's logs and members files in their own directory (a mixed cluster's t2 is not triumvir's)."""
    path = workdir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    global IDLE_WINDOW, STAGGER, COMPRESS_PACKETS, COUNT_BYTES, DETECT_REPEATS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3,10,30")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--profile", default="lan", choices=["lan", "local"])
    parser.add_argument("--systems", default="triumvir,serf",
                        help="which systems to run (comma-separated: triumvir, serf, mixed, floor)")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run during the bench")
    parser.add_argument("--encrypt", action="store_true", help="encrypted gossip (one fresh key for all agents)")
    parser.add_argument("--idle-window", type=float, default=IDLE_WINDOW,
                        help="seconds of the idle measurement")
    parser.add_argument("--workdir", default="", help="keep the agents' logs here (default: a temporary dir)")
    parser.add_argument("--stagger", type=float, default=STAGGER,
                        help="seconds over which the N agents are started (a Python agent takes ~0.15-0.3 s of CPU"
                             " to start: N of them in 1 s on 2 cores are seconds of starvation for every agent)")
    parser.add_argument("--compress-packets", action="store_true",
                        help="triumvir's agents LZW-compress UDP packets as memberlist does (serf always does)")
    parser.add_argument("--count-bytes", action="store_true",
                        help="count gossip bytes with tcpdump on lo (perturbs the join: run it apart from the"
                             " straggler figures)")
    parser.add_argument("--detect-repeats", type=int, default=DETECT_REPEATS,
                        help="single-join and detect rounds per trial, each with a new agent (median reported)")
    args = parser.parse_args()
    IDLE_WINDOW, STAGGER, COMPRESS_PACKETS = args.idle_window, args.stagger, args.compress_packets
    COUNT_BYTES, DETECT_REPEATS = args.count_bytes, args.detect_repeats
    key = base64.b64encode(os.urandom(32)).decode() if args.encrypt else ""
    if not shutil.which("serf"):
        sys.exit("serf is not installed: apt-get install serf")
    sizes = [int(s) for s in args.sizes.split(",")]
    for package in ("protocol", "agent"):
        compileall.compile_dir(REPO / package, quiet=1)
    labels = [cls.label for cls in (Triumvir, Serf, Mixed, Floor) if cls.label in args.systems.split(",")]
    load_seen = [os.getloadavg()[0]]
    results: list[tuple[int, Runs, dict[str, int]]] = []
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="triumvir-bench-")))
        stack.enter_context(load_generator(args.load))
        for n in sizes:
            results.append((n, *run_size(n, labels, args, workdir, key, load_seen)))
    load = f", {args.load} busy-looping processes running" if args.load else ""
    packets = "triumvir's UDP packets LZW-compressed" if COMPRESS_PACKETS else "triumvir's UDP packets plain"
    print(f"\nprofile {args.profile}, {'encrypted' if key else 'plaintext'}, {packets},"
          f" median [min-max] of {args.trials} trials"
          f"{load}; started over {STAGGER:g} s; 1-min load average {min(load_seen):.1f}-{max(load_seen):.1f}"
          f" on {os.cpu_count()} cores"
          f" (mixed: N/2 triumvir + N/2 serf in one cluster)")
    print_figures(results)
    print_targets(results)


def print_figures(results: list[tuple[int, Runs, dict[str, int]]]) -> None:
    """Every metric, each system's median [min-max], and triumvir / serf."""
    print(f"{'metric':<18}{'N':>4}{'triumvir':>24}{'serf':>24}{'ratio':>8}{'mixed':>24}{'floor':>24}")
    for n, runs, _failed in results:
        for m in METRICS:
            figures = {label: [r[m] for r in trials if m in r] for label, trials in runs.items()}
            ratio = _median(figures.get("triumvir")) / (_median(figures.get("serf")) or NAN)
            cells = [_cell(figures.get(label)) for label in ("triumvir", "serf", "mixed", "floor")]
            print(f"{m:<18}{n:>4}{cells[0]}{cells[1]}{ratio:>8.2f}{cells[2]}{cells[3]}")
        rounds = {label: DETECT_ROUNDS.get((label, n)) for label in ("triumvir", "serf", "mixed")}
        ratio = _median(rounds["triumvir"]) / (_median(rounds["serf"]) or NAN)
        count = max(len(r or ()) for r in rounds.values())
        print(f"{f'detect ({count} rds)':<18}{n:>4}{_cell(rounds['triumvir'])}{_cell(rounds['serf'])}{ratio:>8.2f}"
              f"{_cell(rounds['mixed'])}")


#: The targets of a real cluster (issue 14): ratios to serf's figure, stragglers, MiB.
DETECT_RATIO, LEAVE_RATIO, IDLE_CPU_RATIO, RSS_LIMIT = 1.0, 1.0, 1.5, 30.0


def print_targets(results: list[tuple[int, Runs, dict[str, int]]]) -> None:
    """One line per size and cluster against the targets: triumvir's cluster and the mixed one, each compared with
    serf's own cluster of the same size (idle CPU: mixed compares its triumvir agents with its serf agents)."""
    print(f"\ntargets: detect (median of every round) and leave <= {DETECT_RATIO:g}x serf's, stragglers @5s 0,"
          f" idle CPU <= {IDLE_CPU_RATIO:g}x"
          f" serf's, RSS <= {RSS_LIMIT:g} MiB per triumvir agent (max over agents); medians, * = target missed")
    print(f"{'cluster':<10}{'N':>4}{'failed':>8}{'detect x':>10}{'leave x':>10}{'strag@5s':>10}{'@5s up':>8}"
          f"{'idle CPU x':>12}{'RSS MiB':>9}")
    for n, runs, failed in results:
        serf = runs.get("serf", [])
        for label in ("triumvir", "mixed"):
            if label not in runs:
                continue
            ours = runs[label]
            detect = _median(DETECT_ROUNDS.get((label, n))) / (_median(DETECT_ROUNDS.get(("serf", n))) or NAN)
            leave = _med(ours, "leave s") / (_med(serf, "leave s") or NAN)
            serf_cpu = _med(ours, "idle CPU % s") if label == "mixed" else _med(serf, "idle CPU %")
            cpu = _med(ours, "idle CPU % t") / (serf_cpu or NAN)
            late, late_up, rss = _med(ours, "stragglers @5s"), _med(ours, "stragglers @5s up"), _med(ours, "RSS MiB t")
            print(f"{label:<10}{n:>4}{failed[label]:>8}{_mark(detect, detect <= DETECT_RATIO, 10)}"
                  f"{_mark(leave, leave <= LEAVE_RATIO, 10)}{_mark(late, late == 0, 10, '.0f')}"
                  f"{_mark(late_up, late_up == 0, 8, '.0f')}{_mark(cpu, cpu <= IDLE_CPU_RATIO, 12)}"
                  f"{_mark(rss, rss <= RSS_LIMIT, 9, '.1f')}")


NAN = float("nan")


def _median(values: list[float] | None) -> float:
    return statistics.median(values) if values else NAN


def _med(trials: list[dict[str, float]], metric: str) -> float:
    return _median([r[metric] for r in trials if metric in r])


def _mark(value: float, met: bool, width: int, fmt: str = ".2f") -> str:
    """`value` right-aligned in `width`, starred when it misses its target (a missing figure is '-')."""
    if value != value:  # nan: no trial gave it
        return "-".rjust(width)
    return f"{value:{fmt}}{'' if met else '*'}".rjust(width)


def _cell(values: list[float] | None) -> str:
    """median [min-max] of one system's trials, 24 wide."""
    if not values:
        return f"{'-':>24}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]".rjust(24)


if __name__ == "__main__":
    main()
