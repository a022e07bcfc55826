"""A network partition between real servers, each in its own network namespace: only the majority commits.

Three `python -m agent` servers (raft_multiplier 1), one per network namespace that only this test creates
(tests/netns.py: veth pairs to a bridge, addresses in a private 10.213.x.0/24, the test process reaches them
through the bridge).  The partition cuts the leader's namespace off from the two others with blackhole routes on
both sides (the test's own address stays reachable, so it can still ask the cut-off server).  The majority elects
a new leader and commits; a write sent to the cut-off old leader is never acknowledged and, once the partition
heals and the old leader follows the new one, is on no server.  Writes are KV sets sent with ``Store.Apply``;
what each server holds is read with ``?stale`` ``Store.Query`` reads of its own state (tests/store_rpc.py).
Needs root and `ip`; everything it creates is removed in a finally, and every process is stopped by its PID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from netns import HTTP_PORT, NEEDS_ROOT, SERVER_PORT, Net, addr, start_agent, write_agent_config
from procs import Proc, wait_for
from store_rpc import put, put_ok, stale_entry, stale_get

from agent.server import rpc

pytestmark = NEEDS_ROOT

N = 3


@pytest.fixture
def net() -> Any:
    n = Net(N)
    try:
        n.up()
        yield n
    finally:
        n.down()


def start_server(net: Net, i: int, tmp_path: Path) -> Proc:
    conf = write_agent_config(tmp_path, i, f"s{i}", {
        "server": True, "bootstrap_expect": N, "performance": {"raft_multiplier": 1},
        **({"retry_join": [f"{addr(1)}:8301"], "retry_interval": "1s"} if i > 1 else {})})
    return start_agent(net, i, f"s{i}", conf, tmp_path)


def server(i: int) -> str:
    return f"{addr(i)}:{SERVER_PORT}"


def leader_of(i: int) -> str:
    return str(requests.get(f"http://{addr(i)}:{HTTP_PORT}/v1/status/leader", timeout=2).json())


def agreed(ids: list[int], not_: str = "") -> str | None:
    seen = {leader_of(i) for i in ids}
    if len(seen) == 1:
        (leader,) = seen
        if leader and leader != not_:
            return leader
    return None


def test_only_the_majority_side_of_a_partition_commits(net: Net, tmp_path: Path) -> None:
    procs = [start_server(net, i, tmp_path) for i in range(1, N + 1)]

    def diagnostics() -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(25)}" for p in procs)

    try:
        ids = list(range(1, N + 1))
        leader = wait_for(lambda: agreed(ids), timeout=40, what="a leader", diagnostics=diagnostics)
        old = next(i for i in ids if leader == server(i))
        put_ok(server(old), "before", b"both sides")
        majority = [i for i in ids if i != old]

        net.cut(old)
        new = wait_for(lambda: agreed(majority, not_=leader), timeout=15, what="a leader on the majority side",
                       diagnostics=diagnostics)
        new_id = next(i for i in majority if new == server(i))
        put_ok(server(new_id), "majority", b"committed")
        # a write to the cut-off old leader: it never commits while it leads a minority, and once it stepped down
        # it knows no leader to forward to, so it is refused either way
        try:
            refused: Any = put(server(old), "minority", b"never", timeout=15)
        except rpc.RPCError as err:
            refused = err
        assert refused != {"ok": True} and not (isinstance(refused, dict) and "ok" in refused), refused
        wait_for(lambda: leader_of(old) in ("", new) and leader_of(old) != leader, timeout=10,
                 what="the cut-off leader to step down", diagnostics=diagnostics)
        assert stale_get(server(old), "majority") is None  # it cannot have heard of it

        net.heal(old)
        wait_for(lambda: agreed(ids) == new or agreed(ids), timeout=30, what="one leader after the heal",
                 diagnostics=diagnostics)
        committed = stale_entry(server(new_id), "majority")
        assert committed is not None
        for i in ids:
            wait_for(lambda i=i: stale_get(server(i), "majority") == b"committed", timeout=15,
                     what=f"the majority's write applied on s{i}", diagnostics=diagnostics)
            assert stale_entry(server(i), "majority") == committed  # same entry, same index, everywhere
            assert stale_get(server(i), "before") == b"both sides"
            assert stale_get(server(i), "minority") is None
    finally:
        for p in procs:
            p.close()
