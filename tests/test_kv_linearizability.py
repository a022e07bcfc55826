"""Linearizable KV through real agents, under kill -9, restarts and a partition (issue 10).

Three servers and two clients, each `python -m agent` in its own network namespace (tests/netns.py).  Six
workers, each talking to one agent's HTTP API, do random operations on three keys for the whole run:

* read: ``GET /v1/kv/<k>?consistent``;
* write: ``PUT /v1/kv/<k>`` of a value no one wrote before;
* cas: a consistent read (value v, ModifyIndex i), then ``PUT ?cas=i`` of a fresh value.  Because every value
  is unique and nothing deletes, "ModifyIndex still i" is exactly "the value is still v", so the pair is
  recorded as a read and a compare-and-set of v on the register model;
* increment: read ``counter``, ``PUT ?cas=`` of n + 1, counting acknowledged successes.

Meanwhile the leader is killed with -9 and restarted on its data dir, twice, and once cut off from every other
namespace past the election timeout, then healed.  A request that fails or times out has an unknown outcome
(``ret=None``): the checker may place it anywhere after its call, or nowhere.  Each key's history (keys are
independent: linearizability is local) must pass the Wing-Gong-Lowe checker, and the counter must equal the
acknowledged increments (plus at most the increments whose outcome is unknown).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from linearizability import Op, check
from netns import HTTP_PORT, NEEDS_ROOT, SERVER_PORT, Net, addr, start_agent, write_agent_config
from procs import Proc, wait_for
from urllib3.exceptions import NewConnectionError

pytestmark = NEEDS_ROOT

SERVERS, CLIENTS = (1, 2, 3), (4, 5)
KEYS = ("k0", "k1", "k2")
WORKERS = 6
REQUEST_TIMEOUT = 4.0
NOT_SENT = "not sent"  # a PUT that never reached its agent
#: the workers' operations follow the seed; LIN_SEED=<seed> replays a reported run's choices (the faults follow
#: whoever leads, and the timing is the machine's, so a replay is the same workload, not the same history)
SEED = int(os.environ.get("LIN_SEED") or time.time())
#: where a failing key's history is written (JSON, one op per line), to be read or re-checked offline
HISTORY_DIR = os.environ.get("LIN_HISTORY_DIR", "")


@pytest.fixture
def net() -> Any:
    n = Net(len(SERVERS) + len(CLIENTS))
    try:
        n.up()
        yield n
    finally:
        n.down()


class Agents:
    def __init__(self, net: Net, tmp_path: Path) -> None:
        self.net, self.tmp_path = net, tmp_path
        self.procs: dict[int, Proc] = {}
        self.confs: dict[int, Path] = {}
        self.runs = itertools.count()

    def start(self, i: int) -> None:
        if i not in self.confs:
            server = i in SERVERS
            extra: dict[str, Any] = {"retry_join": [f"{addr(j)}:8301" for j in SERVERS if j != i],
                                     "retry_interval": "1s", "performance": {"raft_multiplier": 1}}
            if server:
                extra |= {"server": True, "bootstrap_expect": len(SERVERS)}
            self.confs[i] = write_agent_config(self.tmp_path, i, f"a{i}", extra)
        self.procs[i] = start_agent(self.net, i, f"a{i}", self.confs[i], self.tmp_path, next(self.runs))

    def diagnostics(self) -> str:
        return "\n".join(f"--- a{i}\n{p.log_tail(20)}" for i, p in self.procs.items())

    def close(self) -> None:
        for p in self.procs.values():
            p.close()


def leader_of(i: int) -> str:
    return str(requests.get(f"http://{addr(i)}:{HTTP_PORT}/v1/status/leader", timeout=2).json())


def agreed(ids: list[int], not_: str = "") -> int | None:
    """The server every agent in ``ids`` names as leader (not ``not_``), as its namespace number."""
    seen = {leader_of(i) for i in ids}
    if len(seen) != 1:
        return None
    (leader,) = seen
    if not leader or leader == not_:
        return None
    return next(j for j in SERVERS if leader == f"{addr(j)}:{SERVER_PORT}")


class Worker:
    def __init__(self, n: int, agent: int, clock_zero: float, stop: threading.Event) -> None:
        self.n, self.agent, self.zero, self.stop = n, agent, clock_zero, stop
        self.rng = random.Random(SEED * 31 + n)
        self.history: dict[str, list[Op]] = {k: [] for k in KEYS}
        self.increments = 0
        self.unknown_increments = 0
        self.values = (f"w{n}-{i}" for i in itertools.count())
        self.session = requests.Session()
        self.put_outcomes: Counter[str] = Counter()  # how the PUTs ended (status, body or exception), for the report

    def url(self, key: str) -> str:
        return f"http://{addr(self.agent)}:{HTTP_PORT}/v1/kv/{key}"

    def now(self) -> float:
        return time.monotonic() - self.zero

    def read(self, key: str) -> tuple[str | None, int] | None:
        """A consistent read: (value, ModifyIndex), (None, 0) when absent; None if it failed."""
        call = self.now()
        try:
            r = self.session.get(self.url(key), params={"consistent": ""}, timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            return None
        if r.status_code == 404:
            value, index = None, 0
        elif r.status_code == 200:
            entry = r.json()[0]
            value, index = base64.b64decode(entry["Value"] or "").decode(), entry["ModifyIndex"]
        else:
            return None  # a failed read changed nothing: left out of the history
        if key in self.history:
            self.history[key].append(Op(self.n, call, self.now(), ("read",), value))
        return value, index

    def put(self, key: str, value: str, cas: int | None) -> bool | str | None:
        """True/False as the agent answered; None when unknown (error, timeout); `NOT_SENT` when no connection
        could be made (the agent is down: nothing was asked, so nothing is recorded)."""
        params = {"cas": str(cas)} if cas is not None else {}
        try:
            r = self.session.put(self.url(key), params=params, data=value.encode(), timeout=REQUEST_TIMEOUT)
        except requests.RequestException as err:
            if isinstance(getattr(err.args[0] if err.args else None, "reason", None), NewConnectionError):
                self.put_outcomes["not sent"] += 1
                self.stop.wait(0.05)  # its agent is down: don't spin on it
                return NOT_SENT
            self.put_outcomes[type(err).__name__] += 1
            return None
        if r.status_code != 200:
            self.put_outcomes[f"{r.status_code} {r.text.strip()[:70]}"] += 1
            return None  # e.g. 500 No cluster leader after the proposal was made: it may still commit
        self.put_outcomes[r.text.strip()[:10]] += 1
        return r.json() is True

    def run(self) -> None:
        while not self.stop.is_set():
            key = self.rng.choice(KEYS)
            kind = self.rng.choice(("read", "write", "cas", "incr"))
            if kind == "read":
                self.read(key)
            elif kind == "write":
                value, call = next(self.values), self.now()
                outcome = self.put(key, value, None)
                if outcome is NOT_SENT:
                    continue
                self.history[key].append(Op(self.n, call, self.now() if outcome else None, ("write", value),
                                            True if outcome else None))  # type: ignore[arg-type]
            elif kind == "cas":
                seen = self.read(key)
                if seen is None:
                    continue
                value, call = next(self.values), self.now()
                outcome = self.put(key, value, seen[1])
                if outcome is NOT_SENT:
                    continue
                self.history[key].append(Op(self.n, call, None if outcome is None else self.now(),
                                            ("cas", seen[0], value), outcome))  # type: ignore[arg-type]
            else:
                seen = self.read("counter")
                if seen is None:
                    continue
                outcome = self.put("counter", str(int(seen[0] or 0) + 1), seen[1])
                if outcome is NOT_SENT:
                    continue
                if outcome:
                    self.increments += 1
                elif outcome is None:
                    self.unknown_increments += 1


#: what an unknown-outcome write of a value nobody saw writes, in the checked history (no worker writes it)
UNSEEN = "<unseen>"


def _history(op_list: list[Op]) -> list[Op]:
    """The key's history for the checker, every op kept.  A write or cas whose outcome is unknown and whose
    (unique) value no read or cas ever saw writes `UNSEEN` instead: nothing observed can tell those values
    apart, and so the checker's twins rule takes the plain writes among them in call order rather than trying
    every subset.  They may not be left out: one that took effect can be all that explains a cas that failed
    (the key held its value when the cas came, and a plain write replaced it before anyone read it)."""
    from linearizability import UNKNOWN

    seen = {o.output for o in op_list if o.input[0] == "read" and o.ret is not None}
    seen |= {o.input[1] for o in op_list if o.input[0] == "cas" and o.ret is not None}
    out = []
    for o in op_list:
        if o.ret is None:
            inp = o.input
            if inp[-1] not in seen:  # the value written: inp[1] of a write, inp[2] of a cas
                inp = (*inp[:-1], UNSEEN)
            out.append(Op(o.client, o.call, None, inp, UNKNOWN))
        else:
            out.append(o)
    return out


def _dump(key: str, ops: list[Op], faults: list[str]) -> str:
    """Write every recorded op of ``key`` (unknown outcomes included) under LIN_HISTORY_DIR; the file's path."""
    if not HISTORY_DIR:
        return "set LIN_HISTORY_DIR to keep the history"
    path = Path(HISTORY_DIR) / f"kv-{SEED}-{key}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(json.dumps({"seed": SEED, "key": key, "faults": faults}) + "\n")
        for o in sorted(ops, key=lambda o: o.call):
            f.write(json.dumps({"client": o.client, "call": o.call, "ret": o.ret, "input": list(o.input),
                                "output": o.output if o.ret is not None else "?"}) + "\n")
    return str(path)


def test_kv_is_linearizable_through_kills_restarts_and_a_partition(net: Net, tmp_path: Path) -> None:
    agents = Agents(net, tmp_path)
    try:
        for i in (*SERVERS, *CLIENTS):
            agents.start(i)
        every = [*SERVERS, *CLIENTS]
        leader = wait_for(lambda: agreed(every), timeout=40, what="one leader on every agent",
                          diagnostics=agents.diagnostics)
        stop = threading.Event()
        zero = time.monotonic()
        workers = [Worker(n, every[n % len(every)], zero, stop) for n in range(WORKERS)]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for t in threads:
            t.start()
        faults: list[str] = []

        def settle(minimum: int) -> None:
            wait_for(lambda: sum(len(h) for w in workers for h in w.history.values()) >= minimum, timeout=30,
                     what=f"{minimum} operations recorded", diagnostics=agents.diagnostics)

        settle(40)
        for _ in range(2):  # kill -9 the leader, wait for a new one, restart the old one on its data dir
            agents.procs[leader].kill()
            faults.append(f"kill -9 a{leader}")
            survivors = [i for i in every if i != leader]
            new = wait_for(lambda s=survivors, old=leader: agreed(s, not_=f"{addr(old)}:{SERVER_PORT}"),
                           timeout=20, what="a new leader after kill -9", diagnostics=agents.diagnostics)
            agents.start(leader)
            wait_for(lambda n=new: agreed(every) == n, timeout=40, what="the restarted server following",
                     diagnostics=agents.diagnostics)
            leader = new
            settle(sum(len(h) for w in workers for h in w.history.values()) + 40)
        net.cut(leader)  # the leader alone on its side
        faults.append(f"partition a{leader}")
        others = [i for i in every if i != leader]
        new = wait_for(lambda: agreed(others, not_=f"{addr(leader)}:{SERVER_PORT}"), timeout=20,
                       what="a leader on the majority side", diagnostics=agents.diagnostics)
        settle(sum(len(h) for w in workers for h in w.history.values()) + 40)
        net.heal(leader)
        wait_for(lambda: agreed(every) == new, timeout=40, what="one leader after the heal",
                 diagnostics=agents.diagnostics)
        settle(sum(len(h) for w in workers for h in w.history.values()) + 40)
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT * 3)
        assert not any(t.is_alive() for t in threads)

        total = 0
        for key in KEYS:
            recorded = [op for w in workers for op in w.history[key]]
            history = _history(recorded)
            total += len(history)
            acknowledged_writes = sum(1 for o in history if o.input[0] != "read" and o.output is True)
            assert acknowledged_writes > 0, f"no write to {key} succeeded: the run tested nothing ({faults})"
            unknown = sum(1 for o in history if o.ret is None)
            kept = _dump(key, recorded, faults)
            assert check(history), (f"{key}: history of {len(history)} ops ({unknown} of unknown outcome) is not "
                                    f"linearizable (faults {faults}; history: {kept}; replay its workload with "
                                    f"LIN_SEED={SEED})")
        counter = wait_for(lambda: workers[0].read("counter"), timeout=20, what="the counter")
        acked = sum(w.increments for w in workers)
        unknown = sum(w.unknown_increments for w in workers)
        assert acked > 0
        assert acked <= int(counter[0] or 0) <= acked + unknown, (counter, acked, unknown)
        print(f"PUT outcomes: {dict(sum((w.put_outcomes for w in workers), Counter()))}")
        print(f"seed {SEED}: {total} ops on {len(KEYS)} keys, {acked} increments (+{unknown} unknown), "
              f"faults: {', '.join(faults)}")
    finally:
        agents.close()
