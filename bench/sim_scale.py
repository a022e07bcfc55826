"""How the gossip stack scales to thousands of members, measured on the simulator rather than on real processes.

For each cluster size N it runs protocol.Serf hosts on tests/simnet.py (a seeded in-memory network with a virtual
clock; lan profile, 0.5-2 ms per link, no loss) through three scenarios and prints one table:

  converge  N members start over about a second and each joins one seed -> every member lists all N alive
            (a mass join; up to --mass-join-max members, see below)
  detect    one member crashes -> every survivor lists it failed
  leave     one member leaves gracefully (and then exits) -> every other member lists it left
  join      one new member joins one member of the running cluster -> every member lists it alive

Each figure is in *simulated* seconds and stands beside what memberlist's formulas predict (the formulas are
printed under the table), so a protocol bug shows up as a gap, while the real seconds and the peak memory of each
run show what the simulator itself costs. Each size runs in its own process so that its peak RSS is its own.

Join pattern: every member joins one seed (the first member), the starts spread uniformly over the join window.
This is what the converge formula assumes (a join's push/pull costs one RTT, the rest is gossip). Its cost: each
member learns most of the cluster from its join push/pull and re-broadcasts every alive it applies, so about N^2
alives are queued at once (N per member, each sent L times, drained at about gossip_nodes packets per gossip
round), which sets both the peak memory (bytes per member pair, printed) and the CPU (N^2 * L messages handled).

Above --mass-join-max members (default 2000) the cluster is *assembled* instead of mass-joined, and its converge
row is not run: the seed push/pulls with every member twice (join=True, in batches: first it learns everyone, then
everyone learns everyone from it), and the gossip backlog each assembled member queued is dropped, as a cluster that
has run long enough would have drained it. This is the protocol's own push/pull and merge path; only the backlog is
fast-forwarded. Why: a mass join re-broadcasts about N^2 * L alives (memberlist's aliveNode re-broadcasts every alive
it applies, push/pull-learned ones too), each sent and received in Python: about 400M messages at N = 5000, an hour
of CPU, where detect, leave and join in a settled cluster need minutes. `--mass-join-max 5000` runs it anyway.

The bench watches MemberEvents as they are emitted instead of scanning member lists: a scan is O(N^2) per check,
more than the simulation itself at N = 5000. The final state is still verified against every member's list.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from simnet import Host, SimNet  # noqa: E402

from protocol.codec import Alive, encode  # noqa: E402
from protocol.config import Config  # noqa: E402
from protocol.node import Diagnostic, LeaveDone  # noqa: E402
from protocol.serf import EventKind, MemberEvent, MemberStatus, Serf  # noqa: E402
from protocol.serf_messages import encode_tags  # noqa: E402
from protocol.suspicion import retransmit_limit, suspicion_timeout  # noqa: E402

E_FACTOR = math.e / (math.e - 1)  # SWIM: expected protocol periods until some member probes a crashed one
TAGS = {"role": "node", "dc": "sim"}


# --------------------------------------------------------------------------------------------------------------
# watching the cluster through its events


class Watcher:
    """Follows every host's MemberEvents (SimNet.on_event), keeping only counters.

    For each observer: how many members it lists alive, and which ones it lists down (failed or left). For one
    watched member: which observers currently list it with the wanted status. The time
    a condition first held is recorded at the event that made it hold, so it does not depend on how often the
    run loop checks.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.alive: Counter[str] = Counter()  # per observer: members it lists alive
        self.down: dict[str, set[str]] = {}
        self.full = 0  # observers listing all n members alive
        self.full_at: float | None = None
        self.kinds: Counter[str] = Counter()
        self.watched: str | None = None
        self.wanted: EventKind | None = None
        self.observers: set[str] = set()
        self.reached: set[str] = set()
        self.reached_at: float | None = None

    def watch(self, name: str, kind: EventKind, observers: set[str]) -> None:
        """Start recording when every observer has reported `kind` about `name` (and not taken it back)."""
        self.watched, self.wanted, self.observers = name, kind, observers
        self.reached, self.reached_at = set(), None

    def on_member_event(self, observer: str, now: float, ev: MemberEvent) -> None:
        """One observer's MemberEvent. Called N^2 times while a cluster forms: counters only, no recount."""
        name, kind = ev.member.name, ev.kind
        self.kinds[kind] += 1
        change = 0
        if kind == EventKind.MEMBER_JOIN:
            down = self.down.get(observer)
            if down:
                down.discard(name)
            change = 1
        elif kind in (EventKind.MEMBER_FAILED, EventKind.MEMBER_LEAVE):
            down = self.down.setdefault(observer, set())
            if name not in down:
                down.add(name)
                change = -1
        elif kind == EventKind.MEMBER_REAP:
            down = self.down.get(observer)
            if down is not None and name in down:
                down.discard(name)
            else:
                change = -1  # reaped while listed alive
        if change:
            alive = self.alive
            before = alive[observer]
            after = alive[observer] = before + change
            if after == self.n:
                self.full += 1
                if self.full == self.n and self.full_at is None:
                    self.full_at = now
            elif before == self.n:
                self.full -= 1
        if name == self.watched and observer in self.observers and kind != EventKind.MEMBER_UPDATE:
            if kind == self.wanted:
                self.reached.add(observer)
                if len(self.reached) == len(self.observers) and self.reached_at is None:
                    self.reached_at = now
            else:
                self.reached.discard(observer)


# --------------------------------------------------------------------------------------------------------------
# the formulas


def expectations(cfg: Config, n: int, join_window: float) -> dict[str, float]:
    """What memberlist's formulas predict for n members (see FORMULAS for the wording printed with the table)."""
    limit = retransmit_limit(cfg.retransmit_mult, n)
    dissemination = limit * cfg.gossip_interval
    s_min = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    s_max = cfg.suspicion_max_timeout_mult * s_min
    first_probe = E_FACTOR * cfg.probe_interval
    alive_size = 2 + len(encode(Alive(1, "n00000", bytes(4), 7946, encode_tags(TAGS), cfg.vsn)))
    drain = math.ceil(limit / cfg.gossip_nodes) * cfg.gossip_interval
    return {
        "retransmit_limit": limit,
        "gossip_misses": n * (n - 1) * math.exp(-limit),
        "dissemination": dissemination,
        "converge": join_window + dissemination,
        "converge_floor": join_window + n * alive_size / (cfg.gossip_nodes * cfg.udp_buffer_size) * cfg.gossip_interval,
        "suspicion_min": s_min,
        "suspicion_max": s_max,
        "detect": first_probe + s_min + dissemination,
        "detect_bound": n * cfg.probe_interval + s_max + dissemination,
        "leave": drain + dissemination,
        "join": dissemination,
    }


FORMULAS = """\
converge  every member lists all N alive, in simulated seconds from the first member's start
detect    every survivor lists the crashed member failed, from the crash
leave     every other member lists the leaver left, from its leave() call (it exits at LeaveDone)
reached   how many observers saw it; ok = verified afterwards against every observer's own member list

formula columns (L = retransmit_mult * ceil(log10(N+1)) transmissions per broadcast, GI = gossip_interval,
PI = probe_interval, D = L * GI: a broadcast is spread within its retransmit budget, one round per transmission):
  converge formula = last start (~ the join window) + D        (push/pull on join costs one RTT, ~ms)
           capacity floor = join window + N * A / (gossip_nodes * udp_buffer_size) * GI   (A = one alive message
                      with its compound overhead: each member must receive N alives, and receives gossip_nodes
                      packets of at most udp_buffer_size bytes per round; redundancy makes the real figure larger)
           expected gossip misses = N * (N-1) * e^-L   (each member gets ~Poisson(L) copies of each alive, so
                      misses one with probability e^-L; when this is >~ 0.1 the convergence time has a tail set
                      by the periodic push/pull, whose first round is staggered over push_pull_interval)
  detect   formula = e/(e-1) * PI     (SWIM: mean time until some member's probe of the crashed one has failed;
                                       every member probes it once per round robin)
                   + suspicion_min = suspicion_mult * max(1, log10(N)) * PI   (Lifeguard: the timeout falls from
                                       its max to its min once suspicion_mult - 2 other members confirm)
                   + D                (the dead message spreads)
           bound   = N * PI (one whole round robin) + suspicion_max (= suspicion_max_timeout_mult * suspicion_min,
                     no confirmations) + D
  join     formula = D                 (the joiner's push/pull with one member costs one RTT, ~ms; every member that
                     applies its alive re-broadcasts it L times)
  leave    formula = ceil(L / gossip_nodes) * GI  (the leaver gossips its leave intent L times, gossip_nodes per
                     round, before its memberlist leave) + D  (its leave -- a dead message about itself -- spreads)
"""


# --------------------------------------------------------------------------------------------------------------
# one size


class OutOfBudget(Exception):
    """The run used up its real-time budget: the remaining scenarios are skipped, what was measured is kept."""


class InternalError(Exception):
    """A member reported an internal error (a bug in protocol/): the numbers after it would mean nothing."""


class Run:
    """One size's simulation, its bookkeeping and its limits (simulated deadlines, a real-time budget)."""

    def __init__(self, n: int, args: argparse.Namespace) -> None:
        self.n = n
        self.args = args
        self.cfg = Config.lan(enable_compression=args.compression)
        self.exp = expectations(self.cfg, n, args.join_window)
        # No host logs (the Watcher reads events as they come) and no N^2 latency table.
        self.net = SimNet(seed=args.seed, keep_log=False, hashed_latency=True)
        self.watcher = Watcher(n)
        self.net.on_event = self.on_event
        self.rng = random.Random(f"sim_scale/{args.seed}/{n}")
        self.names = [f"n{i:05d}" for i in range(n)]
        self.real_deadline = time.perf_counter() + args.max_real
        self.leave_done: dict[str, float] = {}
        self.internal_errors: list[str] = []
        self.last_note = time.perf_counter()
        self.reserve = bytes(64 << 20)  # given back on MemoryError, so that the partial result can be reported
        self.result: dict[str, Any] = {"n": n, "seed": args.seed, "exp": self.exp, "real": {}, "cpu": {}, "rss": {}}

    def on_event(self, host: Host, now: float, ev: Any) -> None:
        if type(ev) is MemberEvent:  # nearly every event: N^2 of them while the cluster forms
            self.watcher.on_member_event(host.name, now, ev)
        elif isinstance(ev, LeaveDone):
            self.leave_done[host.name] = now
        elif isinstance(ev, Diagnostic) and ev.kind == "internal-error":
            # Core.guarded (protocol/core.py) turns any exception into this event: stop rather than go on
            # simulating a cluster whose members silently lost messages.
            self.internal_errors.append(f"{host.name} at sim t={now:.2f}: {ev.message}")

    def serf(self, name: str) -> Serf:
        machine = self.net.machine(name)
        assert isinstance(machine, Serf)
        return machine

    def spawn(self, name: str) -> Host:
        cfg = self.cfg
        return self.net.spawn(name, lambda addr, r, now: Serf(cfg, name=name, addr=addr, rng=r, now=now, tags=TAGS))

    def check_limits(self, what: str) -> None:
        """Raise once the real-time budget is spent or a member reported an internal error; note progress."""
        if self.internal_errors:
            if "MemoryError" in self.internal_errors[0]:
                raise MemoryError(self.internal_errors[0])
            raise InternalError(self.internal_errors[0])
        now = time.perf_counter()
        if now > self.real_deadline:
            raise OutOfBudget(f"{what}: real-time budget of {self.args.max_real:g} s spent at sim t={self.net.now:.2f}")
        if time.process_time() > self.args.max_cpu:
            raise OutOfBudget(f"{what}: CPU budget of {self.args.max_cpu:g} s spent at sim t={self.net.now:.2f}")
        if now - self.last_note > 30:
            self.last_note = now
            w = self.watcher
            _note(
                f"N={self.n} {what}: sim t={self.net.now:.2f} s, {len(self.net.hosts)} started, converged "
                f"{w.full}/{self.n}, watched {len(w.reached)}/{len(w.observers)}, peak rss {_rss_mib():.0f} MiB"
            )

    def wait(self, what: str, condition: Callable[[], bool], deadline: float, check_every: float) -> bool:
        """net.run_until within the limits of check_limits."""

        def check() -> bool:
            self.check_limits(what)
            return condition()

        return self.net.run_until(check, deadline=deadline, check_every=check_every)

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            fn()
        finally:
            self.result["real"][name] = time.perf_counter() - t0
            self.result["cpu"][name] = time.process_time() - c0  # the simulator's own cost, whatever the load
            self.result["rss"][name] = _rss_mib()
            _note(f"N={self.n} {name}: {self.result.get(name)} sim s, {self.result['real'][name]:.1f} s real")

    # --- the scenarios

    def converge(self) -> None:
        """Staggered starts over the join window, each member joining the first one."""
        n, net, w, r = self.n, self.net, self.watcher, self.result
        seed_host = self.spawn(self.names[0])
        starts = sorted(self.rng.uniform(0.0, self.args.join_window) for _ in self.names[1:])
        for name, at in zip(self.names[1:], starts, strict=True):
            net.run_for(max(0.0, at - net.now))
            self.spawn(name)
            net.do(name, lambda m, now: m.join(now, [seed_host.addr]))
            self.check_limits("start")
        r["last_join"] = last_join = net.now
        try:
            ok = self.wait("converge", lambda: w.full == n, last_join + self.args.converge_timeout, 0.1)
        finally:
            r["converge_reached"] = w.full
            r["converge_sim_spent"] = net.now
        r["converge"] = w.full_at if ok else None
        r["converge_from_last_join"] = w.full_at - last_join if ok and w.full_at is not None else None
        r["converge_verified"] = ok and all(
            (st := self.serf(h).stats())["members"] == n and not st["failed"] and not st["left"] for h in self.names
        )

    def assemble(self) -> None:
        """Above --mass-join-max: every member started at once, the seed push/pulls with all of them (it learns
        everyone), then with all of them again in batches (everyone learns everyone; a batch bounds the full
        states in flight), and each assembled member's gossip backlog is dropped (see the module docstring)."""
        n, net, w, r = self.n, self.net, self.watcher, self.result
        seed = self.spawn(self.names[0])
        members = [self.spawn(name) for name in self.names[1:]]
        everyone = [h.addr for h in members]
        net.do(seed.name, lambda m, now: m.join(now, everyone))
        self.wait("assemble", lambda: len(self.serf(seed.name).members()) == n, net.now + 5.0, ASSEMBLE_STEP)
        for i in range(0, len(members), ASSEMBLE_BATCH):
            batch = members[i : i + ASSEMBLE_BATCH]
            net.do(seed.name, lambda m, now, b=batch: m.join(now, [h.addr for h in b]))
            net.run_for(ASSEMBLE_STEP)  # a push/pull takes two link latencies, at most 4 ms
            for h in batch:
                _drop_backlog(h.machine)
            self.check_limits("assemble")
        _drop_backlog(seed.machine)
        ok = self.wait("assemble", lambda: w.full == n, net.now + 5.0, ASSEMBLE_STEP)
        r["assembled_at"] = net.now
        r["assemble_verified"] = ok

    def detect(self) -> None:
        """Crash one member (not the seed); every survivor must report it failed."""
        net, w = self.net, self.watcher
        victim = self.names[self.rng.randrange(1, self.n)]
        self.survivors = survivors = set(self.names) - {victim}
        w.watch(victim, EventKind.MEMBER_FAILED, survivors)
        killed_at = net.now
        net.kill(victim)
        self.until_observed("detect", MemberStatus.FAILED, killed_at, killed_at + self.exp["detect_bound"] + 30, 0.25)

    def leave(self) -> None:
        """One more member leaves gracefully and its process exits after LeaveDone, as an agent's does."""
        net, w, r, cfg = self.net, self.watcher, self.result, self.cfg
        self.leaver = leaver = self.rng.choice(sorted(self.survivors - {self.names[0]}))
        others = self.survivors - {leaver}
        w.watch(leaver, EventKind.MEMBER_LEAVE, others)
        started = net.now
        net.do(leaver, lambda m, now: m.leave(now))
        bound = 2 * cfg.broadcast_timeout + cfg.leave_propagate_delay
        if self.wait("leave", lambda: leaver in self.leave_done, started + bound + 5.0, 0.05):
            net.kill(leaver)
            r["leave_done"] = self.leave_done[leaver] - started
        self.until_observed("leave", MemberStatus.LEFT, started, started + bound + 60.0, 0.1)

    def join(self) -> None:
        """A new member joins one member of the running cluster; every member must list it alive."""
        net, w = self.net, self.watcher
        members = sorted(self.survivors - {self.leaver})
        newcomer = self.spawn(f"n{self.n:05d}")
        via = self.net.hosts[self.rng.choice(members)].addr
        w.watch(newcomer.name, EventKind.MEMBER_JOIN, set(members))
        started = net.now
        net.do(newcomer.name, lambda m, now: m.join(now, [via]))
        self.until_observed("join", MemberStatus.ALIVE, started, started + self.exp["join"] + 60.0, 0.05)

    def until_observed(
        self, what: str, status: MemberStatus, started: float, deadline: float, check_every: float
    ) -> None:
        """Run until every observer of the watched member reported the wanted event; record the time it took from
        `started`, how many observers did, and whether each one's own member list agrees (it lists `status`)."""
        w, r = self.watcher, self.result
        try:
            ok = self.wait(what, lambda: w.reached_at is not None, deadline, check_every)
        finally:
            r[f"{what}_reached"] = len(w.reached)
        r[what] = w.reached_at - started if ok and w.reached_at is not None else None
        name = w.watched or ""
        r[f"{what}_verified"] = ok and all(
            (m := self.serf(h).member(name)) is not None and m.status == status for h in w.observers
        )

    def run(self) -> dict[str, Any]:
        r = self.result
        try:
            if self.n <= self.args.mass_join_max:
                self.phase("converge", self.converge)
            else:
                self.phase("assemble", self.assemble)
            self.net.run_for(self.args.settle)
            self.phase("detect", self.detect)
            self.net.run_for(self.args.settle)
            self.phase("leave", self.leave)
            self.net.run_for(self.args.settle)
            self.phase("join", self.join)
        except (OutOfBudget, InternalError) as exc:
            r["error"] = f"{type(exc).__name__}: {exc}"
        except MemoryError as exc:
            self.reserve = b""  # room to write the report in; the cluster itself is left to os._exit
            r["error"] = f"MemoryError (address space capped at {self.args.max_mem_gib:g} GiB): {exc}"
            r["error"] += f"; {len(self.net.hosts)} of {self.n} members started, sim t={self.net.now:.2f} s"
            r["converge_reached"] = self.watcher.full
            return r
        w, net = self.watcher, self.net
        r["false_failures"] = w.kinds[EventKind.MEMBER_FAILED] - r.get("detect_reached", 0)
        r["sim_end"] = net.now
        r["stats"] = dict(net.stats)
        r["internal_errors"] = sum(self.serf(h).node.stats["internal_error"] for h in self.names if h in net.hosts)
        return r


ASSEMBLE_BATCH = 100  # members the seed push/pulls with at once while assembling: 100 full states in flight
ASSEMBLE_STEP = 0.01  # simulated seconds per batch, past the two link latencies a push/pull takes


def _drop_backlog(serf: Serf) -> None:
    """Fast-forward an assembled member's gossip: drop what it queued to re-broadcast (memberlist's alives, Serf's
    intents), as a cluster that ran for a while would have sent it. The bench's one reach into the machines."""
    serf.node._core.broadcasts.reset()
    serf._table.broadcasts.reset()


def _rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _note(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One size in this process: capped address space (a MemoryError beats the OOM killer on a shared box)
    and no cyclic GC during the run (the member tables are millions of long-lived objects and hold no
    garbage cycles worth the collector's walks over them)."""
    limit = int(args.max_mem_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    gc.disable()
    return Run(n, args).run()


# --------------------------------------------------------------------------------------------------------------
# the table


def _fmt(value: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{'--':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    cfg = Config.lan(enable_compression=args.compression)
    print(
        f"\nsimulated Serf cluster on tests/simnet.py: lan profile (probe_interval {cfg.probe_interval:g} s, "
        f"gossip_interval {cfg.gossip_interval:g} s, gossip_nodes {cfg.gossip_nodes}, retransmit_mult "
        f"{cfg.retransmit_mult}, suspicion_mult {cfg.suspicion_mult}, push_pull_interval "
        f"{cfg.push_pull_interval:g} s), compression {'on' if args.compression else 'off'}, latency 0.5-2 ms per "
        f"link, no loss, seed {args.seed}, starts spread over {args.join_window:g} s, {args.settle:g} s between "
        f"scenarios; sim s = simulated seconds, real s = wall clock, cpu s = the simulator's CPU time (real s less "
        f"what other processes took), peak = max RSS of the size's process so far"
    )
    header = (
        f"{'N':>6} {'scenario':<9} {'sim s':>8} {'formula':>8} {'bound':>8} {'reached':>12} {'ok':>3}"
        f" {'real s':>8} {'cpu s':>8} {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        n, exp = r["n"], r["exp"]
        rows = [("converge", None, n), ("detect", exp["detect_bound"], n - 1), ("leave", None, n - 2),
                ("join", None, n - 2)]
        if "assemble" in r["real"]:
            rows[0] = ("assemble", None, n)
        for i, (what, bound, of) in enumerate(rows):
            reached = r.get(f"{what}_reached")
            got = "--" if reached is None else f"{reached}/{of}"
            if what == "assemble":
                got = "assembled" if r.get("assemble_verified") else f"{r.get('converge_reached', 0)}/{of}"
            ok = "yes" if r.get(f"{what}_verified") else "NO"
            print(
                f"{n if i == 0 else '':>6} {what:<9} {_fmt(r.get(what))} {_fmt(exp.get(what))} {_fmt(bound)} {got:>12}"
                f" {ok:>3} {_fmt(r['real'].get(what), 8, 1)} {_fmt(r.get('cpu', {}).get(what), 8, 1)}"
                f" {_fmt(r['rss'].get(what), 9, 0)}"
            )
        notes = [f"L = {exp['retransmit_limit']}", f"suspicion {exp['suspicion_min']:.2f}-{exp['suspicion_max']:.2f} s"]
        if "last_join" in r:
            notes.append(f"last start at {r['last_join']:.2f} s")
        if "assembled_at" in r:
            notes.append(f"assembled (not a mass join: --mass-join-max) by sim t={r['assembled_at']:.2f} s")
        if r.get("converge_from_last_join") is not None:
            notes.append(f"converged {r['converge_from_last_join']:.2f} s after it")
        notes.append(f"capacity floor {exp['converge_floor']:.1f} s")
        notes.append(f"expected gossip misses {exp['gossip_misses']:.2g}")
        if r.get("leave_done") is not None:
            notes.append(f"LeaveDone after {r['leave_done']:.2f} s")
        if "false_failures" in r:
            notes.append(f"false failures {r['false_failures']}, internal errors {r['internal_errors']}")
            st = r["stats"]
            notes.append(
                f"{st.get('udp_delivered', 0)} datagrams, {st.get('tcp_opened', 0)} streams in {r['sim_end']:.0f} sim s"
            )
        notes.append(f"total real {sum(r['real'].values()):.1f} s, cpu {sum(r.get('cpu', {}).values()):.1f} s")
        if r["rss"]:
            per_pair = (max(r["rss"].values()) - _BASE_MIB) * 2**20 / n**2
            notes.append(f"{per_pair:.0f} B per member pair above a {_BASE_MIB:g} MiB base")
        print(f"{'':>6}   " + "; ".join(notes))
        if r.get("error"):
            print(f"{'':>6}   STOPPED: {r['error']}")
    for n in args.project:
        print_projection(results, n, args)
    print()
    print(FORMULAS)


def _growth(points: list[tuple[int, float]], default: float) -> float:
    """The exponent k of value ~ N^k through the two largest sizes measured (``default`` with fewer than two)."""
    if len(points) < 2:
        return default
    (n1, v1), (n2, v2) = sorted(points)[-2:]
    if n1 == n2 or v1 <= 0 or v2 <= 0:
        return default
    return math.log(v2 / v1) / math.log(n2 / n1)


def print_projection(results: list[dict[str, Any]], n: int, args: argparse.Namespace) -> None:
    """A row for a size not run: each sim figure is its formula times the measured/formula ratio of the largest
    size that ran that scenario; CPU and peak memory follow the growth measured between the two largest sizes built
    the same way as the largest (mass join or assembled; N^k, k printed), memory above the interpreter's base."""
    done = [r for r in results if r.get("rss") and r.get("cpu") and not r.get("error")]
    if not done:
        print(f"{n:>6} projected: nothing measured to project from")
        return
    ref = max(done, key=lambda r: r["n"])
    same = [r for r in done if ("assemble" in r["real"]) == ("assemble" in ref["real"])]
    exp = expectations(Config.lan(enable_compression=args.compression), n, args.join_window)
    k_real = _growth([(r["n"], sum(r["cpu"].values())) for r in same], 2.0)
    k_mem = _growth([(r["n"], max(r["rss"].values()) - _BASE_MIB) for r in same], 2.0)
    cpu = sum(ref["cpu"].values()) * (n / ref["n"]) ** k_real
    peak = _BASE_MIB + (max(ref["rss"].values()) - _BASE_MIB) * (n / ref["n"]) ** k_mem
    for i, what in enumerate(("converge", "detect", "leave", "join")):
        src = max((r for r in done if r.get(what) is not None), key=lambda r: r["n"], default=None)
        sim = None if src is None else exp[what] * src[what] / src["exp"][what]
        bound = exp["detect_bound"] if what == "detect" else None
        print(
            f"{n if i == 0 else '':>6} {what:<9} {_fmt(sim)} {_fmt(exp[what])} {_fmt(bound)} {'projected':>12}"
            f" {'':>3} {_fmt(None)} {_fmt(cpu if i == 0 else None, 8, 0)} {_fmt(peak if i == 0 else None, 9, 0)}"
        )
    built = "assembled" if "assemble" in ref["real"] else "mass-joined"
    print(
        f"{'':>6}   projected: sim s = formula x measured/formula of the largest size that ran the scenario; cpu s"
        f" (the scenarios N={ref['n']} ran, {built}) ~ N^{k_real:.2f}, peak ~ {_BASE_MIB:g} MiB + N^{k_mem:.2f}"
        f" (exponents through the two largest {built} sizes measured; 2 if only one)"
    )


# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000", help="cluster sizes, comma-separated (default 1000,5000)")
    parser.add_argument(
        "--project", default="10000", help="sizes to project from the measured growth, not run (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--join-window", type=float, default=1.0, help="simulated seconds over which members start")
    parser.add_argument("--settle", type=float, default=2.0, help="simulated seconds between scenarios")
    parser.add_argument(
        "--mass-join-max", type=int, default=2000,
        help="largest N whose cluster is built by the converge scenario (a mass join); larger ones are assembled",
    )
    parser.add_argument("--converge-timeout", type=float, default=180.0, help="simulated seconds after the last start")
    parser.add_argument(
        "--max-cpu", type=float, default=900.0,
        help="CPU seconds per size before giving up (the simulator's cost whatever else runs on the machine)",
    )
    parser.add_argument("--max-real", type=float, default=3600.0, help="real seconds per size before giving up")
    parser.add_argument("--max-mem-gib", type=float, default=_default_mem_gib(), help="address-space cap per size")
    parser.add_argument("--compression", action="store_true", help="LZW on (pure Python: slow, timing-neutral)")
    parser.add_argument("--force", action="store_true", help="run a size even if its memory projection is over the cap")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size here, print JSON
    args = parser.parse_args()
    args.project = [int(x) for x in args.project.split(",") if x]

    if args.one is not None:
        print(json.dumps(run_one(args.one, args)), flush=True)
        os._exit(0)  # tearing down millions of member records takes a minute and tells nobody anything

    results: list[dict[str, Any]] = []
    for n in sorted(int(s) for s in args.sizes.split(",")):
        projected = _projected_mib(results, n)
        if projected is not None and projected > args.max_mem_gib * 1024 and not args.force:
            exp = expectations(Config.lan(), n, args.join_window)
            why = (
                f"skipped: ~{projected / 1024:.1f} GiB projected (the smaller size's bytes per member pair x N^2)"
                f" > the {args.max_mem_gib:g} GiB cap; --force runs it anyway, up to the cap"
            )
            results.append({"n": n, "exp": exp, "real": {}, "cpu": {}, "rss": {}, "error": why})
            _note(f"N={n}: {why}")
            continue
        _note(f"N={n}: starting (budget {args.max_cpu:g} s CPU, {args.max_real:g} s real, {args.max_mem_gib:.1f} GiB)")
        passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in _FLAGS_NOT_PASSED]
        cmd = [sys.executable, __file__, f"--one={n}", *passthrough] + (["--compression"] if args.compression else [])
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            exp = expectations(Config.lan(), n, args.join_window)
            results.append(
                {"n": n, "exp": exp, "real": {}, "cpu": {}, "rss": {}, "error": f"exit status {proc.returncode}"}
            )
            continue
        results.append(json.loads(proc.stdout))
    print_table(results, args)


_FLAGS_NOT_PASSED = ("one", "sizes", "compression", "force", "project")
_BASE_MIB = 25.0  # an interpreter with the protocol imported, no members yet


def _projected_mib(done: list[dict[str, Any]], n: int) -> float | None:
    """Peak RSS for n members, scaled from the largest size measured: memory is O(N^2), every member knows
    every other one."""
    measured = [r for r in done if r.get("rss")]
    if not measured:
        return None
    ref = max(measured, key=lambda r: r["n"])
    per_pair = (max(ref["rss"].values()) - _BASE_MIB) / ref["n"] ** 2
    return _BASE_MIB + per_pair * n * n


def _default_mem_gib() -> float:
    """60% of the memory available now: other work on the machine must survive a too-large N."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return round(int(line.split()[1]) / 2**20 * 0.6, 1)
    except OSError:
        pass
    return 8.0


if __name__ == "__main__":
    main()
