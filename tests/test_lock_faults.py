"""`python -m agent lock` under faults (issue 10): mutual exclusion holds across leader kills and a holder's kill -9.

Three servers and two clients on loopback.  Five contenders, each looping `python -m agent lock -ttl=10s
locks/job CMD` through a different agent; CMD appends ``start PID TIME`` to a shared file, holds briefly, and
appends ``stop PID TIME``.  Meanwhile the leader is killed with -9 and restarted, and then the holder of the
moment (its `lock` process and child, by process group) is killed with -9, so its ``stop`` line never comes.

Checked over the whole file: no ``start`` while another holder's ``start`` has no ``stop``, except after that
holder was killed; the killed holder's lock is taken by another within its session's invalidation (2 x TTL after
its last renewal) plus the lock-delay (15 s) plus the contenders' retry (5 s) and a margin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO
from consul_agents import ENV, Cluster, ConsulAgent, agreed_leader, start_servers
from procs import wait_for

TTL = 10.0
LOCK_DELAY = 15.0
RETRY = 5.0
CONTENDERS = 5
HOLD = 1.0


class Contender:
    """Runs `lock` again and again through one agent until stopped; remembers the running `lock` process."""

    def __init__(self, n: int, agent: ConsulAgent, record: Path, logs: Path, stop: threading.Event) -> None:
        self.n, self.agent, self.record, self.logs, self.stop = n, agent, record, logs, stop
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.lock = threading.Lock()

    def command(self) -> list[str]:
        child = (f'echo "start $$ $(date +%s.%N)" >> {self.record}; sleep {HOLD}; '
                 f'echo "stop $$ $(date +%s.%N)" >> {self.record}')
        return [sys.executable, "-m", "agent", "lock", f"-http-addr={self.agent.http_addr}", f"-ttl={TTL:g}s",
                "locks/job", child]

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock, open(self.logs / f"lock{self.n}-{self.runs}.log", "wb") as log:
                self.runs += 1
                self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=ENV, cwd=REPO, start_new_session=True)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the `lock` process and its child: its process group (it started a session of its own)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def parse(record: Path) -> list[tuple[str, int, float]]:
    lines = []
    for line in record.read_text().splitlines():
        kind, pid, at = line.split()
        lines.append((kind, int(pid), float(at)))
    return lines


def holder(record: Path) -> int | None:
    """The PID whose ``start`` is last and has no ``stop`` (the current holder's child), if any."""
    lines = parse(record) if record.exists() else []
    if lines and lines[-1][0] == "start":
        return lines[-1][1]
    return None


def test_no_two_holders_overlap_across_leader_and_holder_kills(cluster: Cluster, tmp_path: Path) -> None:
    servers = start_servers(cluster, 3)
    clients = [cluster.start(f"c{i + 1}", extra={"retry_join": [servers[0].serf_addr], "retry_interval": "1s",
                                                  "performance": {"raft_multiplier": 1}}) for i in range(2)]
    agents = servers + clients
    leader = wait_for(lambda: agreed_leader(agents), timeout=40, what="one leader", diagnostics=cluster.diagnostics)
    record = tmp_path / "holds.txt"
    stop = threading.Event()
    contenders = [Contender(n, agents[n % len(agents)], record, tmp_path, stop) for n in range(CONTENDERS)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in contenders]
    for t in threads:
        t.start()
    killed: dict[int, float] = {}  # child PID -> when its holder was killed
    try:
        def holds() -> int:
            return sum(1 for kind, _, _ in parse(record) if kind == "stop") if record.exists() else 0

        wait_for(lambda: holds() >= 5, timeout=60, what="five holds", diagnostics=cluster.diagnostics)
        # kill -9 the leader and restart it
        victim = next(s for s in servers if s.server_rpc_addr == leader)
        victim.proc.kill()
        survivors = [a for a in agents if a is not victim]
        wait_for(lambda: agreed_leader(survivors, not_=leader), timeout=20, what="a new leader",
                 diagnostics=cluster.diagnostics)
        cluster.start(victim.name, reuse=victim)
        before = holds()
        wait_for(lambda: holds() >= before + 3, timeout=90, what="holds after the leader kill",
                 diagnostics=cluster.diagnostics)
        # kill -9 the holder of the moment (its lock process and child); if its child finished first, again
        for _ in range(5):
            child, owner = wait_for(lambda: current_holder(record, contenders), timeout=30, interval=0.01,
                                    what="a holder")
            with owner.lock:
                owner.kill()
                killed[child] = time.time()
            if not any(kind == "stop" and pid == child for kind, pid, _ in parse(record)):
                break
            del killed[child]
        assert killed, "never caught a holder in the act"
        (child,) = killed
        budget = 2 * TTL + LOCK_DELAY + RETRY + 10
        wait_for(lambda: any(kind == "start" and at > killed[child] for kind, _, at in parse(record)),
                 timeout=budget, what="another holder after the holder's kill -9", diagnostics=cluster.diagnostics)
    finally:
        stop.set()
        for c in contenders:
            with c.lock:
                c.kill()
        for t in threads:
            t.join(30)

    # mutual exclusion over the whole record
    current: tuple[int, float] | None = None
    takeover = None
    for kind, pid, at in parse(record):
        if kind == "start":
            if current is not None:
                assert current[0] in killed and killed[current[0]] <= at, f"{pid} started while {current} held"
                takeover = at - killed[current[0]]
            current = (pid, at)
        else:
            assert current is not None and current[0] == pid, f"stop of {pid} while {current} held"
            current = None
    assert takeover is not None and takeover <= 2 * TTL + LOCK_DELAY + RETRY + 10
    print(f"{len(parse(record)) // 2} holds; the killed holder's lock was taken after {takeover:.1f}s")


def current_holder(record: Path, contenders: list[Contender]) -> tuple[int, Contender] | None:
    child = holder(record)
    if child is None:
        return None
    for c in contenders:
        if c.proc is not None and _child_of(c.proc.pid, child):
            return child, c
    return None


def _child_of(parent: int, pid: int) -> bool:
    """Whether ``pid`` is in the process group of ``parent`` (the contender's lock process)."""
    try:
        return os.getpgid(pid) == parent
    except ProcessLookupError:
        return False
