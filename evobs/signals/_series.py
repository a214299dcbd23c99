"""The per-call metric families, kept by evobs: plain numbers under one lock per call.

prometheus_client's ``Histogram.observe`` takes two locks and walks the buckets in
Python; a call makes about seven such updates, about 10 µs inside a real call.
These families keep plain numbers instead, which the metrics signal updates under
one lock per call transition (:attr:`HistogramFamily.lock`, shared by every family
of a registry), and render the same exposition (buckets, ``_count``, ``_sum``,
``_created``, exemplars) when the registry is collected.

The series classes have prometheus_client's child methods (``observe``, ``inc``,
``dec``), so the signal has one code path: in prometheus_client's multiprocess mode,
where values must live in its files, the families are prometheus_client's own and
the per-call lock is a no-op.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _prom_metrics
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import INF, floatToGoString

__all__ = [
    "CounterFamily",
    "CounterSeries",
    "GaugeFamily",
    "GaugeSeries",
    "HistogramFamily",
    "HistogramSeries",
    "ValueSeries",
]


class HistogramSeries:
    """One labelled histogram: per-bucket (not cumulative) counts, the sum, exemplars."""

    __slots__ = ("bounds", "counts", "created", "exemplar_due", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # without +Inf: bisect gives len(bounds) for the +Inf bucket
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.exemplars: list[Exemplar | None] | None = None
        #: Per bucket, the perf_counter_ns before which its exemplar is fresh enough
        #: (the metrics signal's throttle); allocated on first use.
        self.exemplar_due: list[int] | None = None
        self.created = time.time()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Caller holds the family's lock."""
        index = bisect_left(self.bounds, amount)  # the first bucket with amount <= le
        self.counts[index] += 1
        self.sum += amount
        if exemplar:
            exemplars = self.exemplars
            if exemplars is None:
                exemplars = self.exemplars = [None] * len(self.counts)
            exemplars[index] = Exemplar(exemplar, amount, time.time())


class ValueSeries:
    """One labelled counter or gauge."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        """Caller holds the family's lock."""
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        """Caller holds the family's lock."""
        self.value -= amount


class CounterSeries(ValueSeries):
    """One labelled counter."""

    __slots__ = ()


class GaugeSeries(ValueSeries):
    """One labelled gauge."""

    __slots__ = ()


class _Family:
    """A registry collector holding labelled series; created through ``_registry.family``
    with prometheus_client's constructor signature."""

    __slots__ = ("__weakref__", "_documentation", "_labelnames", "_name", "_series", "lock")

    #: prometheus_client's name for the type (as its own families have it).
    _type: ClassVar[str]

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
        lock: Any = None,
    ) -> None:
        if not name or not documentation:
            raise ValueError("a metric family needs a name and a documentation string")
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], Any] = {}
        #: Held by the metrics signal around each call's updates, and by collect().
        self.lock = lock if lock is not None else threading.RLock()
        if registry is not None:
            registry.register(self)  # ValueError on a name clash, as prometheus_client

    def labels(self, *values: str, **named: str) -> Any:
        """The series of these label values (positional, or by name as prometheus_client)."""
        if named:
            if values or set(named) != set(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {named}")
            values = tuple(named[name] for name in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            with self.lock:
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = self._new_series()
        return series

    def _new_series(self) -> Any:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def _empty(self) -> Any:
        raise NotImplementedError

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError


def _created(
    family: Metric, name: str, labelnames: Sequence[str], key: Any, created: float
) -> None:
    """The ``_created`` sample prometheus_client adds after each series (unless disabled)."""
    if getattr(_prom_metrics, "_use_created", True):
        labels = dict(zip(labelnames, key, strict=True))
        family.samples.append(Sample(name + "_created", labels, created))


class HistogramFamily(_Family):
    """A histogram family with fixed buckets."""

    __slots__ = ("_bounds", "_le", "_upper_bounds")

    _type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
        lock: Any = None,
        buckets: Sequence[float] = (),
    ) -> None:
        bounds = tuple(float(b) for b in buckets if b != INF)
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be sorted, distinct and not empty")
        self._bounds = bounds
        self._upper_bounds = (*bounds, INF)  # prometheus_client's attribute, for conflict checks
        self._le = (*(floatToGoString(b) for b in bounds), "+Inf")  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry, lock)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def _empty(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._empty()
        with self.lock:  # a consistent snapshot: counts, sum and exemplars of one instant
            rows = [
                (
                    key,
                    list(s.counts),
                    s.sum,
                    None if s.exemplars is None else list(s.exemplars),
                    s.created,
                )
                for key, s in self._series.items()
            ]
        for key, counts, total, exemplars, created in rows:
            buckets: list[Any] = []
            for i, cumulative in enumerate(accumulate(counts)):
                exemplar = None if exemplars is None else exemplars[i]
                buckets.append(
                    (self._le[i], cumulative)
                    if exemplar is None
                    else (self._le[i], cumulative, exemplar)
                )
            family.add_metric(key, buckets, total)
            _created(family, self._name, self._labelnames, key, created)
        return [family]


class _ValueFamily(_Family):
    """Counters and gauges: one number per series."""

    __slots__ = ()

    #: prometheus_client adds ``_created`` to counters, not to gauges.
    _with_created: ClassVar[bool]

    def collect(self) -> Iterable[Metric]:
        family = self._empty()
        with self.lock:
            rows = [(key, s.value, s.created) for key, s in self._series.items()]
        for key, value, created in rows:
            family.add_metric(key, value)
            if self._with_created:
                _created(family, self._name, self._labelnames, key, created)
        return [family]


class CounterFamily(_ValueFamily):
    """A counter family (exposed as ``<name>_total``)."""

    __slots__ = ()

    _type = "counter"
    _with_created = True

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def _empty(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)


class GaugeFamily(_ValueFamily):
    """A gauge family."""

    __slots__ = ()

    _type = "gauge"
    _with_created = False

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def _empty(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
