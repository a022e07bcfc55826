"""protocol.coordinate: serf's Vivaldi client, its validity rules and its wire form.

The convergence tests are serf's phantom/performance tests in spirit: N clients, a known RTT matrix (line, grid,
split, circle, random), a seeded sampling loop, then every pair's estimate compared with the truth.
"""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from protocol.coordinate import (
    PING_VERSION,
    Coordinate,
    CoordinateConfig,
    CoordinateError,
    VivaldiClient,
    decode_ack_payload,
    decode_coordinate,
    encode_ack_payload,
    encode_coordinate,
)

Matrix = list[list[float]]


def clients(n: int, seed: int = 1) -> list[VivaldiClient]:
    rng = random.Random(seed)
    return [VivaldiClient(rng=rng) for _ in range(n)]


def line(n: int, spacing: float) -> Matrix:
    return [[abs(i - j) * spacing for j in range(n)] for i in range(n)]


def grid(n: int, spacing: float) -> Matrix:
    side = int(math.sqrt(n))
    return [[math.hypot(i % side - j % side, i // side - j // side) * spacing for j in range(n)] for i in range(n)]


def split(n: int, lan: float, wan: float) -> Matrix:
    half = n // 2
    return [[0.0 if i == j else lan + (wan if (i <= half) != (j <= half) else 0.0) for j in range(n)] for i in range(n)]


def random_matrix(n: int, mean: float, deviation: float, seed: int = 1) -> Matrix:
    rng = random.Random(seed)
    m = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            m[i][j] = m[j][i] = rng.gauss(mean, deviation)
    return m


def simulate(cs: list[VivaldiClient], truth: Matrix, cycles: int, seed: int = 1) -> None:
    """serf's Simulate: each cycle, every client samples one random peer (itself skipped)."""
    rng = random.Random(seed)
    for _ in range(cycles):
        for i, client in enumerate(cs):
            j = rng.randrange(len(cs))
            if j != i:
                client.update(f"node_{j}", cs[j].coordinate, truth[i][j])


def evaluate(cs: list[VivaldiClient], truth: Matrix) -> tuple[float, float]:
    """(mean, max) relative error of every pair's estimate."""
    errors = [
        abs(cs[i].distance_to(cs[j].coordinate) - truth[i][j]) / truth[i][j]
        for i in range(len(cs))
        for j in range(i + 1, len(cs))
    ]
    return sum(errors) / len(errors), max(errors)


# serf's bounds (performance_test.go), a little looser: our seeded sampling is not Go's math/rand sequence.
@pytest.mark.parametrize(
    ("name", "n", "truth", "avg_bound", "max_bound"),
    [
        ("line", 10, line(10, 0.010), 0.0031 * 2, 0.0130 * 2),
        ("grid", 25, grid(25, 0.010), 0.0016 * 2, 0.0230 * 2),
        ("split", 25, split(25, 0.001, 0.010), 0.000060 * 2, 0.00048 * 2),
        ("random", 25, random_matrix(25, 0.080, 0.010), 0.075, 0.45),  # our matrix is not Go's draw
    ],
)
def test_converges_on_a_known_network(name: str, n: int, truth: Matrix, avg_bound: float, max_bound: float) -> None:
    cs = clients(n)
    before = evaluate(cs, truth)
    simulate(cs, truth, 1000)
    avg, worst = evaluate(cs, truth)
    assert avg < before[0] / 10, name
    assert avg <= avg_bound and worst <= max_bound, (name, avg, worst)
    assert all(c.resets == 0 and c.coordinate.is_valid() for c in cs)


def test_estimates_are_symmetric_and_adjustment_bounded() -> None:
    cs = clients(10)
    truth = line(10, 0.010)
    simulate(cs, truth, 500)
    a, b = cs[2].coordinate, cs[7].coordinate
    assert a.distance_to(b) == pytest.approx(b.distance_to(a))
    assert a.distance_to(b) == pytest.approx(0.050, rel=0.05)


def test_latency_filter_is_the_median_of_three() -> None:
    """One outlier sample moves nothing a median of three would not: two updates with the same filtered RTT."""
    a, b = VivaldiClient(rng=random.Random(1)), VivaldiClient(rng=random.Random(1))
    peer = Coordinate((0.001,) + (0.0,) * 7, 0.5, 0.0, 1e-5)
    for rtt in (0.010, 0.010):
        a.update("p", peer, rtt)
        b.update("p", peer, rtt)
    a.update("p", peer, 0.010)
    b.update("p", peer, 5.0)  # median(0.010, 0.010, 5.0) == 0.010
    assert a.coordinate == b.coordinate
    b.update("p", peer, 5.0)  # now the median is 5.0
    assert a.coordinate != b.coordinate


def test_forget_node_drops_its_samples() -> None:
    a, b = VivaldiClient(rng=random.Random(1)), VivaldiClient(rng=random.Random(1))
    peer = Coordinate((0.001,) + (0.0,) * 7, 0.5, 0.0, 1e-5)
    for rtt in (5.0, 5.0):
        a.update("p", peer, rtt)
    a.forget_node("p")
    b.set_coordinate(a.coordinate)
    b._adjustment_samples = list(a._adjustment_samples)  # same window; only the filter differs
    b._adjustment_index = a._adjustment_index
    a.update("p", peer, 0.010)
    b.update("p", peer, 0.010)
    assert a.coordinate == b.coordinate


@pytest.mark.parametrize(
    "bad",
    [
        Coordinate((0.0,) * 4, 0.5, 0.0, 1e-5),  # another dimensionality
        Coordinate((0.0,) * 9, 0.5, 0.0, 1e-5),
        Coordinate((math.nan,) + (0.0,) * 7, 0.5, 0.0, 1e-5),
        Coordinate((0.0,) * 8, math.inf, 0.0, 1e-5),
        Coordinate((0.0,) * 8, 0.5, -math.inf, 1e-5),
        Coordinate((0.0,) * 8, 0.5, 0.0, math.nan),
    ],
)
def test_unusable_peer_coordinate_is_rejected_and_changes_nothing(bad: Coordinate) -> None:
    client = VivaldiClient(rng=random.Random(1))
    client.update("good", Coordinate((0.002,) + (0.0,) * 7, 0.5, 0.0, 1e-5), 0.004)
    before = client.coordinate
    with pytest.raises(CoordinateError):
        client.update("bad", bad, 0.004)
    with pytest.raises(CoordinateError):
        client.set_coordinate(bad)
    assert client.coordinate == before
    assert "bad" not in client._latency_samples


@pytest.mark.parametrize("rtt", [-0.001, 10.5, math.nan, math.inf])
def test_rtt_out_of_range_is_rejected(rtt: float) -> None:
    client = VivaldiClient(rng=random.Random(1))
    with pytest.raises(CoordinateError, match="round trip time"):
        client.update("p", Coordinate.origin(client.config), rtt)
    assert client.coordinate == Coordinate.origin(client.config)


def test_zero_rtt_is_accepted() -> None:
    client = VivaldiClient(rng=random.Random(1))
    client.update("p", Coordinate.origin(client.config), 0.0)
    assert client.coordinate.is_valid()


def test_non_finite_result_resets_the_coordinate() -> None:
    """A finite but absurd peer coordinate can overflow the update: serf starts over and counts a reset."""
    client = VivaldiClient(rng=random.Random(1))
    huge = Coordinate((1e308,) * 8, 1e-300, 1e308, 1e308)
    client.update("p", huge, 0.001)
    assert client.resets == 1
    assert client.coordinate == Coordinate.origin(client.config)


def test_distance_uses_adjustment_only_when_positive() -> None:
    a = Coordinate((0.0,) * 8, 0.5, -1.0, 0.001)
    b = Coordinate((0.003,) + (0.0,) * 7, 0.5, 0.0, 0.001)
    assert a.distance_to(b) == pytest.approx(0.005)  # 0.003 + heights; -1.0 would make it negative
    c = attrs_evolve(a, adjustment=0.001)
    assert c.distance_to(b) == pytest.approx(0.006)


def attrs_evolve(c: Coordinate, **kw: float) -> Coordinate:
    import attrs

    return attrs.evolve(c, **kw)


def test_config_rejects_zero_dimensionality() -> None:
    with pytest.raises(ValueError, match="dimensionality"):
        CoordinateConfig(dimensionality=0)


# ------------------------------------------------------------------ wire form


def test_wire_form_is_the_go_struct() -> None:
    coord = Coordinate(tuple(float(i) / 1000 for i in range(8)), 1.5, -0.25, 1e-5)
    payload = encode_ack_payload(coord)
    assert payload[0] == PING_VERSION == 1
    body = msgpack.unpackb(payload[1:], raw=False)
    assert list(body) == ["Adjustment", "Error", "Height", "Vec"]  # sorted by name, as serf 0.8 writes it
    assert body["Vec"] == list(coord.vec) and body["Error"] == 1.5
    # every float is a float64 (0xcb), as Go writes them, even a whole number
    assert payload[1:].count(b"\xcb") == 11
    assert decode_ack_payload(payload) == coord


def test_decoding_accepts_go_forms() -> None:
    """Integers for floats, unknown keys, missing keys, the array form: Go's decoder takes them all."""
    m = msgpack.packb({"Vec": [0] * 8, "Error": 1, "Height": 0.5, "Extra": "x"}, use_bin_type=False)
    assert decode_coordinate(m) == Coordinate((0.0,) * 8, 1.0, 0.0, 0.5)
    arr = msgpack.packb([[0.5] * 8, 0.1, 0.2, 0.3])
    assert decode_coordinate(arr) == Coordinate((0.5,) * 8, 0.1, 0.2, 0.3)
    assert decode_coordinate(msgpack.packb({})) == Coordinate((), 0.0, 0.0, 0.0)  # then refused by update


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x02" + encode_coordinate(Coordinate((0.0,) * 8, 1.0, 0.0, 0.0)), "unsupported ping version: 2"),
        (b"\x01", "truncated"),
        (b"\x01\xc1", "invalid msgpack"),
        (b"\x01" + msgpack.packb("coordinate"), "expected a map"),
        (b"\x01" + msgpack.packb({"Vec": "abc"}), "Vec: expected an array"),
        (b"\x01" + msgpack.packb({"Vec": [True] * 8}), "Vec: expected a number"),
        (b"\x01" + msgpack.packb({"Error": [1]}), "Error: expected a number"),
        (b"\x01" + msgpack.packb({"Vec": []}) + b"\x00", "trailing"),
        (b"", "empty"),
    ],
)
def test_hostile_payloads_are_refused_with_a_reason(payload: bytes, match: str) -> None:
    with pytest.raises(CoordinateError, match=match):
        decode_ack_payload(payload)
