"""bench/sim_scale.py's two ways of building a cluster, run small: a mass join and an assembled cluster must both
end with every member listing every other one, and the scenarios after them must reach every observer.

The bench is not part of `make test`; this keeps its assembling path (the seed's two rounds of push/pulls, the
dropped backlog) from rotting between the runs that measure it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import sim_scale


def _args(mass_join_max: int) -> argparse.Namespace:
    return argparse.Namespace(
        seed=3, join_window=1.0, settle=2.0, converge_timeout=60.0, max_cpu=600.0, max_real=600.0,
        compression=False, mass_join_max=mass_join_max,
    )


@pytest.mark.parametrize("mass_join_max", [0, 1000], ids=["assembled", "mass-join"])
def test_both_ways_of_building_end_with_every_scenario_verified(mass_join_max: int) -> None:
    n = 60
    result = sim_scale.Run(n, _args(mass_join_max)).run()
    assert "error" not in result, result["error"]
    built = "assemble" if mass_join_max < n else "converge"
    assert result[f"{built}_verified"], result
    for scenario in ("detect", "leave", "join"):
        assert result[f"{scenario}_verified"], (scenario, result)
        assert result[scenario] is not None and result[scenario] > 0
    assert result["false_failures"] == 0
    assert result["internal_errors"] == 0


def test_assembling_drops_the_backlog_the_merges_queued() -> None:
    """After assembling, no member still holds the alives its merge queued (the fast-forward), yet each lists all."""
    run = sim_scale.Run(40, _args(0))
    run.assemble()
    for name in run.names:
        serf = run.serf(name)
        assert len(serf.members()) == 40
        assert len(serf.node._core.broadcasts) == 0
