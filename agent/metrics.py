"""The agent's metrics registry: Consul's names and kinds (go-metrics' counters, gauges, samples and timers), shown
as ``/v1/agent/metrics`` JSON (the InmemSink's shape) or in the Prometheus text format (prometheus-client).

One ``Metrics`` instance per agent, owned by the supervisor and handed to the parts that count; no module state.
Recording is a dict update (and, for samples, an append to a bounded window): cheap enough for the DNS and HTTP
paths.  Figures that cost something to read (memory, task counts, member counts, gossip counters the sans-IO
machines keep) are not recorded at all: ``add_collector`` callbacks set them when someone asks for the metrics.

Kinds, as go-metrics defines them and Consul's Prometheus sink exports them: a counter (``IncrCounter``) is a
Prometheus counter; a sample (``AddSample``) or a timer (``MeasureSince``, milliseconds) is a summary with the 0.5,
0.9 and 0.99 quantiles over the last 10 s; a gauge is a gauge.  The JSON view is the InmemSink's: aggregates of
the last complete 10 s interval (the current one while there is no other), kept for a minute.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.samples import Sample

__all__ = ["INTERVAL", "Labels", "Metrics", "Series", "prometheus_name"]

INTERVAL = 10.0  # seconds: go-metrics' InmemSink interval, and the prometheus summaries' max age
RETAIN = 60.0  # seconds of intervals kept (Consul: one minute)
WINDOW_SAMPLES = 1024  # a summary's quantiles come from at most this many recent samples
QUANTILES = (0.5, 0.9, 0.99)  # go-metrics' prometheus sink objectives

Labels = tuple[tuple[str, str], ...]
_Key = tuple[str, Labels]
_UNSAFE = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(name: str) -> str:
    """go-metrics' flattenKey: ``consul.raft.commitTime`` -> ``consul_raft_commitTime``."""
    return _UNSAFE.sub("_", name)


def _labels(labels: Mapping[str, str] | None) -> Labels:
    return tuple(sorted(labels.items())) if labels else ()


@attrs.define
class Aggregate:
    """go-metrics' AggregateSample: count, sum, sum of squares, min, max (and the last value)."""

    count: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    last: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.sum_sq += value * value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.last = value

    def json(self, name: str, labels: Labels, seconds: float) -> dict[str, Any]:
        mean = self.sum / self.count if self.count else 0.0
        variance = (self.sum_sq - self.count * mean * mean) / (self.count - 1) if self.count > 1 else 0.0
        return {"Name": name, "Count": self.count, "Rate": self.sum / seconds, "Sum": self.sum,
                "Min": self.min if self.count else 0.0, "Max": self.max if self.count else 0.0, "Mean": mean,
                "Stddev": math.sqrt(max(variance, 0.0)), "Labels": dict(labels)}  # fmt: skip


@attrs.define
class _Interval:
    start: float
    counters: dict[_Key, Aggregate] = attrs.Factory(dict)
    samples: dict[_Key, Aggregate] = attrs.Factory(dict)


@attrs.define
class _Summary:
    """A sample's running count and sum, and its recent values (time, value) for the quantiles."""

    count: int = 0
    sum: float = 0.0
    recent: deque[tuple[float, float]] = attrs.Factory(lambda: deque(maxlen=WINDOW_SAMPLES))


class Metrics:
    """Counters, gauges and samples under Consul's dotted names; ``clock`` is wall time in seconds."""

    def __init__(self, *, interval: float = INTERVAL, retain: float = RETAIN,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.interval = interval
        self._clock = clock
        self._intervals: deque[_Interval] = deque(maxlen=max(1, int(retain / interval)))
        self._interval_end = -math.inf
        self._counters: dict[_Key, float] = {}
        self._gauges: dict[_Key, float] = {}
        self._summaries: dict[_Key, _Summary] = {}
        self._collectors: list[Callable[[Metrics], None]] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Exporter(self))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ recording

    def incr(self, name: str, value: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """IncrCounter."""
        key = (name, _labels(labels))
        self._counters[key] = self._counters.get(key, 0.0) + value
        self._aggregate(self._current().counters, key, value)

    def gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """SetGauge: the last value wins."""
        self._gauges[(name, _labels(labels))] = float(value)

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """AddSample (a timer is a sample in milliseconds)."""
        self.series(name, labels).add(value)

    def series(self, name: str, labels: Mapping[str, str] | None = None) -> Series:
        """A handle on one sample series, for hot paths (DNS): no key building per sample."""
        key = (name, _labels(labels))
        summary = self._summaries.get(key)
        if summary is None:
            summary = self._summaries[key] = _Summary()
        return Series(self, key, summary)

    def measure_since(self, name: str, started: float, labels: Mapping[str, str] | None = None) -> None:
        """MeasureSince: ``started`` is a ``time.perf_counter()`` reading; recorded in milliseconds."""
        self.sample(name, (time.perf_counter() - started) * 1000.0, labels)

    @contextmanager
    def timer(self, name: str, labels: Mapping[str, str] | None = None) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.measure_since(name, started, labels)

    def add_collector(self, collect: Callable[[Metrics], None]) -> None:
        """``collect(metrics)`` runs whenever the metrics are read, to set figures that are costly to keep live."""
        self._collectors.append(collect)

    def counter_value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The running total of a counter (0 if it never moved)."""
        return self._counters.get((name, _labels(labels)), 0.0)

    def sample_count(self, name: str, labels: Mapping[str, str] | None = None) -> int:
        summary = self._summaries.get((name, _labels(labels)))
        return summary.count if summary is not None else 0

    def _current(self, now: float | None = None) -> _Interval:
        now = self._clock() if now is None else now
        if self._intervals and self._intervals[-1].start <= now < self._interval_end:
            return self._intervals[-1]
        start = now - now % self.interval
        if not self._intervals or self._intervals[-1].start != start:
            self._intervals.append(_Interval(start))
        self._interval_end = start + self.interval
        return self._intervals[-1]

    @staticmethod
    def _aggregate(table: dict[_Key, Aggregate], key: _Key, value: float) -> None:
        agg = table.get(key)
        if agg is None:
            agg = table[key] = Aggregate()
        agg.add(value)

    def _collect(self) -> None:
        for collect in self._collectors:
            collect(self)

    # ------------------------------------------------------------------ views

    def to_json(self) -> dict[str, Any]:
        """``GET /v1/agent/metrics``: the InmemSink's DisplayMetrics of the last complete interval."""
        self._collect()
        self._current()
        intervals = list(self._intervals)
        shown = intervals[-2] if len(intervals) > 1 else intervals[-1]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(shown.start))
        return {
            "Timestamp": stamp,
            "Gauges": [{"Name": n, "Value": v, "Labels": dict(lb)} for (n, lb), v in sorted(self._gauges.items())],
            "Points": [],
            "Counters": [a.json(n, lb, self.interval) for (n, lb), a in sorted(shown.counters.items())],
            "Samples": [a.json(n, lb, self.interval) for (n, lb), a in sorted(shown.samples.items())],
        }

    def to_prometheus(self) -> bytes:
        """``?format=prometheus``: the text format (0.0.4), written by prometheus-client."""
        self._collect()
        return generate_latest(self._registry)

    def families(self) -> Iterable[Metric]:
        """Prometheus metric families: counters, gauges, summaries (quantiles over the last interval)."""
        yield from _grouped(self._counters, CounterMetricFamily, lambda fam, lb, v: fam.add_metric(lb, v))
        yield from _grouped(self._gauges, GaugeMetricFamily, lambda fam, lb, v: fam.add_metric(lb, v))
        horizon = self._clock() - self.interval

        def add_summary(fam: Metric, label_values: list[str], summary: _Summary) -> None:
            fam.add_metric(label_values, summary.count, summary.sum)
            recent = sorted(v for t, v in summary.recent if t >= horizon)
            names = [n for n in fam._labelnames]  # type: ignore[attr-defined]
            base = dict(zip(names, label_values, strict=True))
            for q in QUANTILES:
                value = recent[min(len(recent) - 1, int(q * len(recent)))] if recent else math.nan
                fam.samples.append(Sample(fam.name, {**base, "quantile": str(q)}, value))

        yield from _grouped(self._summaries, SummaryMetricFamily, add_summary)


def _grouped(table: Mapping[_Key, Any], family: Callable[..., Metric],
             add: Callable[[Metric, list[str], Any], None]) -> Iterator[Metric]:  # fmt: skip
    """One family per metric name (its label names from the first series; series with others are skipped)."""
    by_name: dict[str, list[tuple[Labels, Any]]] = {}
    for (name, labels), value in table.items():
        by_name.setdefault(name, []).append((labels, value))
    for name in sorted(by_name):
        series = by_name[name]
        label_names = [k for k, _ in series[0][0]]
        fam = family(prometheus_name(name), name, labels=label_names)
        for labels, value in series:
            if [k for k, _ in labels] == label_names:
                add(fam, [v for _, v in labels], value)
        yield fam


class Series:
    """One sample series of a Metrics registry (see ``Metrics.series``)."""

    __slots__ = ("_key", "_metrics", "_summary")

    def __init__(self, metrics: Metrics, key: _Key, summary: _Summary) -> None:
        self._metrics = metrics
        self._key = key
        self._summary = summary

    def add(self, value: float) -> None:
        summary = self._summary
        summary.count += 1
        summary.sum += value
        metrics = self._metrics
        now = metrics._clock()
        summary.recent.append((now, value))
        table = metrics._current(now).samples
        agg = table.get(self._key)
        if agg is None:
            agg = table[self._key] = Aggregate()
        agg.add(value)

    def since(self, started: float) -> None:
        """A timer: milliseconds since the ``time.perf_counter()`` reading ``started``."""
        self.add((time.perf_counter() - started) * 1000.0)


class _Exporter:
    """prometheus-client's collector protocol over a Metrics instance."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics.families())
