"""Lifeguard awareness, memberlist's TestAwareness row by row."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.awareness import Awareness

# (delta, score after, ScaleTimeout(1 s) after), applied in sequence to Awareness(8).
ROWS = [
    (0, 0, 1.0),
    (-1, 0, 1.0),
    (-10, 0, 1.0),
    (1, 1, 2.0),
    (-1, 0, 1.0),
    (10, 7, 8.0),
    (-1, 6, 7.0),
    (-1, 5, 6.0),
    (-1, 4, 5.0),
    (-1, 3, 4.0),
    (-1, 2, 3.0),
    (-1, 1, 2.0),
    (-1, 0, 1.0),
    (-1, 0, 1.0),
]


def test_awareness_sequence() -> None:
    a = Awareness(8)
    for i, (delta, score, timeout) in enumerate(ROWS):
        assert a.apply_delta(delta) == score, i
        assert a.score == score, i
        assert a.scale_timeout(1.0) == timeout, i


def test_scale_timeout_keeps_fractions() -> None:
    a = Awareness(8)
    a.apply_delta(2)
    assert a.scale_timeout(0.5) == 1.5
    assert a.scale_timeout(0.2) == pytest.approx(0.6)


def test_max_multiplier_one_never_scales() -> None:
    a = Awareness(1)
    assert a.apply_delta(5) == 0
    assert a.scale_timeout(0.5) == 0.5


@pytest.mark.parametrize("bad", [0, -3])
def test_max_multiplier_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        Awareness(bad)


@given(st.integers(min_value=1, max_value=16), st.lists(st.integers(min_value=-20, max_value=20)))
def test_score_stays_railed(max_multiplier: int, deltas: list[int]) -> None:
    a = Awareness(max_multiplier)
    expected = 0
    for d in deltas:
        expected = min(max(expected + d, 0), max_multiplier - 1)
        a.apply_delta(d)
        assert a.score == expected
        assert 1.0 <= a.scale_timeout(1.0) <= max_multiplier
