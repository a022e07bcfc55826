"""Vivaldi network coordinates as hashicorp/serf's ``coordinate`` package computes them, sans-IO.

Every member keeps a point in an 8-dimensional Euclidean space plus a *height* (the access-link latency no
direction explains) and an *adjustment* (the mean residual of recent samples, half on each side). The distance
between two members' coordinates estimates their round-trip time. Each direct ping updates the pinger's
coordinate from the peer's coordinate (carried on the ack) and the RTT it observed:

* the RTT goes through a per-peer median filter of the last 3 samples (serf's latency filter);
* a spring force moves the coordinate towards or away from the peer, weighted by both sides' confidence
  (``error``), which itself decays towards the observed relative error (Vivaldi's c_e, c_c);
* the adjustment term is the mean of the last 20 residuals, halved;
* a weak gravity pulls the coordinate back to the origin so the whole cluster does not drift;
* a result that is not finite resets the coordinate (serf counts these as resets).

A peer coordinate that is not finite or has another dimensionality is rejected before it touches ours, and so
is an RTT outside [0, 10 s]. Distances and RTTs are float seconds here (serf uses time.Duration).

On the wire (serf's ping delegate) an ack payload is one version byte (1) and the coordinate as go-msgpack
writes the Go struct: a map ``{"Adjustment": f64, "Error": f64, "Height": f64, "Vec": [8 x float64]}``
(keys sorted by name).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import attrs

from protocol.go_msgpack import DecodeError, packb, unpackb

__all__ = [
    "PING_VERSION",
    "Coordinate",
    "CoordinateConfig",
    "CoordinateError",
    "VivaldiClient",
    "decode_ack_payload",
    "decode_coordinate",
    "encode_ack_payload",
    "encode_coordinate",
]

PING_VERSION = 1  # serf's PingVersion: the header byte of every ack payload
MAX_RTT = 10.0  # seconds; serf refuses an RTT sample above this (and below zero)
_ZERO = 1.0e-6  # serf's zeroThreshold: below it, a length or an RTT counts as zero


class CoordinateError(ValueError):
    """A coordinate or RTT sample that cannot be used: the local coordinate is left as it was."""


@attrs.frozen
class CoordinateConfig:
    """serf's coordinate.DefaultConfig; every field is the Go default."""

    dimensionality: int = 8
    vivaldi_error_max: float = 1.5
    vivaldi_ce: float = 0.25
    vivaldi_cc: float = 0.25
    adjustment_window_size: int = 20
    height_min: float = 10.0e-6
    latency_filter_size: int = 3
    gravity_rho: float = 150.0

    def __attrs_post_init__(self) -> None:
        if self.dimensionality <= 0:
            raise ValueError("dimensionality must be >0")
        if self.latency_filter_size <= 0:
            raise ValueError("latency_filter_size must be >0")


@attrs.frozen
class Coordinate:
    """One member's network coordinate (Go's coordinate.Coordinate; seconds throughout)."""

    vec: tuple[float, ...]
    error: float
    adjustment: float
    height: float

    @classmethod
    def origin(cls, config: CoordinateConfig) -> Coordinate:
        """serf's NewCoordinate: at the origin, with the largest error (no confidence yet)."""
        return cls((0.0,) * config.dimensionality, config.vivaldi_error_max, 0.0, config.height_min)

    def is_valid(self) -> bool:
        """Every component finite (no NaN, no infinity)."""
        return all(math.isfinite(x) for x in self.vec) and all(
            math.isfinite(x) for x in (self.error, self.adjustment, self.height)
        )

    def is_compatible_with(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def raw_distance_to(self, other: Coordinate) -> float:
        """The Euclidean part plus both heights, without the adjustment terms."""
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance_to(self, other: Coordinate) -> float:
        """The estimated RTT in seconds; the adjustments apply only where they leave it positive (as serf)."""
        if not self.is_compatible_with(other):
            raise CoordinateError("coordinate dimensionality does not match")
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        return adjusted if adjusted > 0.0 else dist

    def apply_force(self, config: CoordinateConfig, force: float, other: Coordinate, rng: random.Random) -> Coordinate:
        """Move ``force`` seconds along the unit vector from ``other`` to us; the height takes its share."""
        if not self.is_compatible_with(other):
            raise CoordinateError("coordinate dimensionality does not match")
        unit, mag = _unit_vector_at(rng, self.vec, other.vec)
        vec = tuple(a + u * force for a, u in zip(self.vec, unit, strict=True))
        height = self.height
        if mag > _ZERO:
            height = max((height + other.height) * force / mag + height, config.height_min)
        return attrs.evolve(self, vec=vec, height=height)

    def to_json(self) -> dict[str, Any]:
        """Consul's JSON for a coordinate (the Go field names)."""
        return {"Vec": list(self.vec), "Error": self.error, "Adjustment": self.adjustment, "Height": self.height}


def _diff(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _magnitude(vec: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vec))


def _unit_vector_at(rng: random.Random, a: Sequence[float], b: Sequence[float]) -> tuple[list[float], float]:
    """The unit vector from b to a and the distance; two coincident points get a random direction."""
    d = _diff(a, b)
    mag = _magnitude(d)
    if mag > _ZERO:
        return [x / mag for x in d], mag
    d = [rng.random() - 0.5 for _ in d]
    mag = _magnitude(d)
    if mag > _ZERO:
        return [x / mag for x in d], 0.0
    unit = [0.0] * len(d)
    unit[0] = 1.0
    return unit, 0.0


class VivaldiClient:
    """serf's coordinate.Client: the local coordinate and the state its updates need (filters, window)."""

    def __init__(self, config: CoordinateConfig | None = None, *, rng: random.Random) -> None:
        self.config = config or CoordinateConfig()
        self._rng = rng
        self._coord = Coordinate.origin(self.config)
        self._origin = Coordinate.origin(self.config)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * self.config.adjustment_window_size
        self._latency_samples: dict[str, list[float]] = {}
        #: how often an update produced a non-finite coordinate and the client started over (serf's Resets)
        self.resets = 0

    @property
    def coordinate(self) -> Coordinate:
        return self._coord

    def set_coordinate(self, coord: Coordinate) -> None:
        self._check(coord)
        self._coord = coord

    def forget_node(self, node: str) -> None:
        """The node is gone for good: drop its latency samples."""
        self._latency_samples.pop(node, None)

    def distance_to(self, other: Coordinate) -> float:
        return self._coord.distance_to(other)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """One RTT sample to ``node`` (whose coordinate is ``other``); returns the new local coordinate.

        Raises CoordinateError, leaving everything untouched, for an unusable coordinate or RTT."""
        self._check(other)
        if not (0.0 <= rtt <= MAX_RTT):  # also refuses NaN
            raise CoordinateError(
                f"round trip time not in valid range, duration {rtt}s is not a positive value less than {MAX_RTT}s"
            )
        filtered = self._latency_filter(node, rtt)
        self._update_vivaldi(other, filtered)
        self._update_adjustment(other, filtered)
        self._update_gravity()
        if not self._coord.is_valid():
            self.resets += 1
            self._coord = Coordinate.origin(self.config)
        return self._coord

    def _check(self, coord: Coordinate) -> None:
        if not self._coord.is_compatible_with(coord):
            raise CoordinateError(
                f"dimensions aren't compatible: {len(coord.vec)} components, expected {len(self._coord.vec)}"
            )
        if not coord.is_valid():
            raise CoordinateError("coordinate is invalid (NaN or infinite component)")

    def _latency_filter(self, node: str, rtt: float) -> float:
        """The median of the last latency_filter_size samples to this node."""
        samples = self._latency_samples.setdefault(node, [])
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            del samples[0]
        ordered = sorted(samples)
        return ordered[len(ordered) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        cfg = self.config
        coord = self._coord
        dist = coord.distance_to(other)
        rtt = max(rtt, _ZERO)
        wrongness = abs(dist - rtt) / rtt
        weight = coord.error / max(coord.error + other.error, _ZERO)
        error = min(cfg.vivaldi_ce * weight * wrongness + coord.error * (1.0 - cfg.vivaldi_ce * weight),
                    cfg.vivaldi_error_max)
        force = cfg.vivaldi_cc * weight * (rtt - dist)
        self._coord = attrs.evolve(coord, error=error).apply_force(cfg, force, other, self._rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        window = self.config.adjustment_window_size
        if window == 0:
            return
        self._adjustment_samples[self._adjustment_index] = rtt - self._coord.raw_distance_to(other)
        self._adjustment_index = (self._adjustment_index + 1) % window
        adjustment = sum(self._adjustment_samples) / (2.0 * window)
        self._coord = attrs.evolve(self._coord, adjustment=adjustment)

    def _update_gravity(self) -> None:
        dist = self._origin.distance_to(self._coord)
        force = -((dist / self.config.gravity_rho) ** 2)
        self._coord = self._coord.apply_force(self.config, force, self._origin, self._rng)


# ---------------------------------------------------------------------------------------------------------
# wire form

_FIELDS = ("Vec", "Error", "Adjustment", "Height")  # the Go struct's declaration order (the array form's order)


def encode_coordinate(coord: Coordinate) -> bytes:
    """The coordinate as go-msgpack writes serf's struct: a map with its keys sorted by name (protocol.codec's
    rule, and what serf 0.8 sends), every float a float64."""
    return packb({
        "Adjustment": float(coord.adjustment),
        "Error": float(coord.error),
        "Height": float(coord.height),
        "Vec": [float(x) for x in coord.vec],
    })


def _number(name: str, value: Any) -> float:
    # go-msgpack decodes an integer into a float64 field; anything else is a decode error.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CoordinateError(f"coordinate field {name}: expected a number, got {type(value).__name__}")
    return float(value)


def decode_coordinate(data: bytes | bytearray | memoryview) -> Coordinate:
    """One msgpack coordinate (map, or Go's array form); unknown keys skipped, missing ones zero, as Go decodes.

    Only the form is checked here: finiteness and dimensionality are the client's to judge (serf's Update)."""
    try:
        value = unpackb(data)
    except DecodeError as exc:
        raise CoordinateError(f"failed to decode coordinate: {exc}") from None
    if isinstance(value, tuple) and len(value) <= len(_FIELDS):
        fields: dict[str, Any] = dict(zip(_FIELDS, value, strict=False))
    elif isinstance(value, dict):
        fields = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in value.items()}
    else:
        raise CoordinateError(f"failed to decode coordinate: expected a map, got {type(value).__name__}")
    vec = fields.get("Vec")
    if vec is None:
        vec = ()
    elif not isinstance(vec, tuple):
        raise CoordinateError(f"coordinate field Vec: expected an array, got {type(vec).__name__}")
    return Coordinate(
        tuple(_number("Vec", x) for x in vec),
        _number("Error", fields.get("Error", 0.0)),
        _number("Adjustment", fields.get("Adjustment", 0.0)),
        _number("Height", fields.get("Height", 0.0)),
    )


def encode_ack_payload(coord: Coordinate) -> bytes:
    """serf's AckPayload: the ping version byte, then the coordinate."""
    return bytes((PING_VERSION,)) + encode_coordinate(coord)


def decode_ack_payload(payload: bytes) -> Coordinate:
    """serf's NotifyPingComplete parsing: check the version byte, decode the rest (not empty: the caller skips)."""
    if not payload:
        raise CoordinateError("empty ping payload")
    if payload[0] != PING_VERSION:
        raise CoordinateError(f"unsupported ping version: {payload[0]}")
    return decode_coordinate(memoryview(payload)[1:])
