"""Seeded simulations of 3- and 5-server clusters under faults (tests/raft_sim.py), with the safety checkers
of tests/raft_harness.py after every step, the liveness bounds once the faults stop, and the register
histories through the linearizability checker.

At least 2,000 runs in all (RAFT_RUNS=N multiplies each scenario's count by N/100, for soaking). A failing
run names its seed and the command that replays only that run: RAFT_SEED=<seed> pytest ... -k <scenario>.

Liveness, as stated in docs/raft.md: once faults stop and every server is back, all members follow one leader
that has committed an entry of its term, and proposals made then are applied on every member, within 15
election timeouts (the run fails otherwise; the worst figures measured are printed with -s).
"""

from __future__ import annotations

import os
import time

import pytest
from raft_harness import InvariantViolation
from raft_sim import Scenario, Simulation

from protocol.raft import ReadOnlyOption

FAULTY = {"loss": 0.1, "duplicate": 0.05, "delay_ms": (1, 30)}

SCENARIOS: dict[str, tuple[Scenario, int]] = {
    # name: (scenario, runs)
    "lossy3": (Scenario(**FAULTY), 350),
    "partitions3": (Scenario(partitions=True, one_way=True, delay_ms=(1, 12), loss=0.02), 250),
    "crashes3": (Scenario(crashes=True, tear=True, snapshot_every=8, loss=0.05, delay_ms=(1, 20), wire=True), 300),
    "all_faults3": (Scenario(**FAULTY, partitions=True, one_way=True, crashes=True, tear=True,
                             snapshot_every=10, proposals_per_s=80, transfers=True), 250),
    "all_faults5": (Scenario(**FAULTY, servers=5, partitions=True, one_way=True, crashes=True, tear=True,
                             snapshot_every=10, stalls=True), 150),
    "membership3": (Scenario(**FAULTY, membership=True, partitions=True, crashes=True, snapshot_every=10), 200),
    "no_prevote3": (Scenario(**FAULTY, pre_vote=False, check_quorum=False, partitions=True, crashes=True), 150),
    "register3": (Scenario(**FAULTY, clients=4, partitions=True, crashes=True, tear=True, snapshot_every=10,
                           transfers=True, stalls=True), 200),
    "register_lease3": (Scenario(**FAULTY, clients=4, partitions=True, one_way=True, crashes=True,
                                 transfers=True, read_only=ReadOnlyOption.LEASE), 100),
    # without check-quorum a partitioned leader keeps believing it leads: only ReadIndex keeps reads fresh
    "register_no_check_quorum3": (Scenario(**FAULTY, clients=4, partitions=True, crashes=True, pre_vote=False,
                                           check_quorum=False, stalls=True), 120),
    "register5": (Scenario(**FAULTY, clients=4, servers=5, partitions=True, crashes=True, membership=True,
                           snapshot_every=10), 80),
    # persisting takes time and the servers are stepped meanwhile: a leader's APPENDs leave before its own fsync
    # completes, acknowledgements arrive while it runs, and crashes lose (or tear) the Ready in flight
    "async_persist3": (Scenario(**FAULTY, persist_ms=15, partitions=True, crashes=True, tear=True,
                                snapshot_every=10, transfers=True, proposals_per_s=80), 250),
    "async_register3": (Scenario(**FAULTY, persist_ms=15, clients=4, partitions=True, crashes=True, tear=True,
                                 snapshot_every=10, transfers=True), 200),
    "async_membership5": (Scenario(**FAULTY, persist_ms=15, servers=5, membership=True, partitions=True,
                                   crashes=True, tear=True, snapshot_every=10, stalls=True), 100),
}


def test_at_least_two_thousand_runs_in_ci():
    assert sum(runs for _, runs in SCENARIOS.values()) >= 2000


def seeds_for(name: str, runs: int) -> list[int]:
    if os.environ.get("RAFT_SEED"):
        return [int(os.environ["RAFT_SEED"])]
    scale = int(os.environ.get("RAFT_RUNS", "100"))
    base = sum(map(ord, name)) * 100_000  # each scenario its own seeds
    return [base + n for n in range(runs * scale // 100)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulated_cluster_stays_safe_and_live(name: str) -> None:
    scenario, runs = SCENARIOS[name]
    started = time.monotonic()
    totals: dict[str, int] = {}
    worst = {"leader_after_ms": 0, "commit_after_ms": 0}
    for seed in seeds_for(name, runs):
        try:
            stats = Simulation(seed, scenario).run()
        except (InvariantViolation, AssertionError, Exception) as exc:
            replay = f"RAFT_SEED={seed} .venv/bin/python -m pytest tests/test_raft_sim.py -k {name}"
            raise AssertionError(f"seed {seed} of {name}: {exc}\nreplay: {replay}") from exc
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value
        for key in worst:
            worst[key] = max(worst[key], stats[key])
    elapsed = time.monotonic() - started
    # the runs did what they are for: faults happened, and work was committed
    if scenario.crashes and not os.environ.get("RAFT_SEED"):
        assert totals["crashes"] > 0
    if scenario.partitions and not os.environ.get("RAFT_SEED"):
        assert totals["partitions"] > 0
    if scenario.tear and not os.environ.get("RAFT_SEED"):
        assert totals["torn_crashes"] > 0
    if scenario.stalls and not os.environ.get("RAFT_SEED"):
        assert totals["stalls"] > 0
    if scenario.transfers and not os.environ.get("RAFT_SEED"):
        assert totals["transfers"] > 0
    if scenario.persist_ms and scenario.crashes and not os.environ.get("RAFT_SEED"):
        assert totals["crashes_in_flight"] > 0
        assert totals["early_meanwhile"] > 0  # heartbeats and APPENDs left during a persist
    if scenario.clients and not os.environ.get("RAFT_SEED"):
        assert totals["ops"] > totals["unknown"] > 0
    print(f"{name}: {len(seeds_for(name, runs))} runs in {elapsed:.1f}s, worst leader {worst['leader_after_ms']} ms"
          f", worst commit {worst['commit_after_ms']} ms after the faults stopped; totals {totals}")
