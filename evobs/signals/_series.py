"""The per-call metric families, kept by evobs: plain numbers under one lock per call.

prometheus_client's ``Histogram.observe`` takes two locks and walks the buckets in
Python; a call makes about seven such updates, about 10 µs inside a real call.
These families keep plain numbers instead, and render the same exposition (buckets,
``_count``, ``_sum``, ``_created``, exemplars) when the registry is collected.

The lock rule is structural: a series has no method that changes it. Every series
belongs to a :class:`SeriesLock` (one per registry and first label value: for the
per-call families, one per AWS service, so calls to different services never wait
for each other), and its numbers change only through the :class:`Writer` that
``with series.lock as w:`` hands out while the lock is held; ``collect()`` reads
each series under its lock. In prometheus_client's multiprocess mode, where values
must live in its files, the families are prometheus_client's own and
:data:`PROMETHEUS_CHILDREN` hands out a writer that calls their own (locking)
methods: the signal has one code path.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .._compat.prometheus import multiprocess_mode, use_created
from .._fork import ForkSafeLock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

__all__ = [
    "PROMETHEUS_CHILDREN",
    "CounterFamily",
    "CounterSeries",
    "GaugeFamily",
    "GaugeSeries",
    "HistogramFamily",
    "HistogramSeries",
    "LockTable",
    "SeriesLock",
    "ValueSeries",
    "Writer",
    "count",
    "family_classes",
    "lock_of",
]

INF: Final = float("inf")
#: An exemplar as a series keeps it: (labels, value, timestamp); prometheus_client's
#: ``Exemplar`` is made of it at collect time.
RawExemplar = tuple[dict[str, str], float, float]


class Writer:
    """The only way to change evobs's series: handed out by a held :class:`SeriesLock`."""

    __slots__ = ()

    @staticmethod
    def observe(
        series: HistogramSeries, amount: float, exemplar: dict[str, str] | None = None
    ) -> None:
        index = bisect_left(series.bounds, amount)  # the first bucket with amount <= le
        series.counts[index] += 1
        series.sum += amount
        if exemplar:
            exemplars = series.exemplars
            if exemplars is None:
                exemplars = series.exemplars = [None] * len(series.counts)
            exemplars[index] = (exemplar, amount, time.time())

    @staticmethod
    def observe_each(series: HistogramSeries, amounts: Iterable[float]) -> None:
        """Several observations of one series (a call's attempts), in one call."""
        bounds, counts = series.bounds, series.counts
        total = 0.0
        for amount in amounts:
            counts[bisect_left(bounds, amount)] += 1
            total += amount
        series.sum += total

    @staticmethod
    def inc(series: ValueSeries, amount: float = 1) -> None:
        series.value += amount

    @staticmethod
    def dec(series: ValueSeries, amount: float = 1) -> None:
        series.value -= amount


_WRITER: Final = Writer()


class SeriesLock(ForkSafeLock):
    """Guards a group of series: ``with lock as w:`` holds it and gives the writer."""

    __slots__ = ()

    def __enter__(self) -> Writer:
        self._lock.acquire()
        return _WRITER


class _PrometheusWriter:
    """The writer for prometheus_client's own children, which lock themselves."""

    __slots__ = ()

    @staticmethod
    def observe(child: Any, amount: float, exemplar: dict[str, str] | None = None) -> None:
        child.observe(amount)

    @staticmethod
    def observe_each(child: Any, amounts: Iterable[float]) -> None:
        for amount in amounts:
            child.observe(amount)

    @staticmethod
    def inc(child: Any, amount: float = 1) -> None:
        child.inc(amount)

    @staticmethod
    def dec(child: Any, amount: float = 1) -> None:
        child.dec(amount)


class _PrometheusChildren:
    """``with PROMETHEUS_CHILDREN as w:``: no lock of evobs's, the same writer interface."""

    __slots__ = ()

    def __enter__(self) -> Writer:
        return _PROMETHEUS_WRITER  # type: ignore[return-value]  # the same methods

    def __exit__(self, *exc: object) -> None:
        pass


_PROMETHEUS_WRITER: Final = _PrometheusWriter()
#: The "lock" of prometheus_client's children (multiprocess mode).
PROMETHEUS_CHILDREN: Final = _PrometheusChildren()


def family_classes() -> tuple[Any, Any, Any]:
    """The (counter, gauge, histogram) family classes every evobs family is made of: its
    own, prometheus_client's in multiprocess mode (where values live in its files; then
    prometheus_client is imported now)."""
    if multiprocess_mode():
        from prometheus_client import Counter, Gauge, Histogram

        return Counter, Gauge, Histogram
    return CounterFamily, GaugeFamily, HistogramFamily


def lock_of(series: Any) -> SeriesLock | _PrometheusChildren:
    """The lock to hold while writing ``series`` (any family's child)."""
    lock = getattr(series, "lock", None)
    return lock if isinstance(lock, SeriesLock) else PROMETHEUS_CHILDREN


def count(series: Any, amount: float = 1) -> None:
    """Count ``amount`` on one counter series (any family's child) under its lock: for
    the places that count one thing at a time (evobs's own health families)."""
    with lock_of(series) as w:
        w.inc(series, amount)


class LockTable:
    """One :class:`SeriesLock` per first label value, shared by every evobs family of a
    registry, so the series one call writes (all keyed by its service) share one lock."""

    __slots__ = ("__weakref__", "_guard", "_locks")

    def __init__(self) -> None:
        self._locks: dict[str, SeriesLock] = {}
        self._guard = ForkSafeLock()

    def lock(self, key: str) -> SeriesLock:
        found = self._locks.get(key)
        if found is None:
            with self._guard:
                found = self._locks.setdefault(key, SeriesLock())
        return found

    @classmethod
    def of(cls, registry: CollectorRegistry | None) -> LockTable:
        """The table of a registry (one per registry; a private one without)."""
        if registry is None:
            return cls()
        with _TABLES_GUARD:
            table = _TABLES.get(registry)
            if table is None:
                table = _TABLES[registry] = cls()
            return table

    @classmethod
    def alias(cls, old: Any, new: CollectorRegistry) -> None:
        """From now on ``new`` has the locks of ``old`` (the pending stand-in of
        ``REGISTRY``, ``_registry``): its families and later ones share them."""
        with _TABLES_GUARD:
            table = _TABLES.get(old)
            if table is not None and new not in _TABLES:
                _TABLES[new] = table


_TABLES: Final[weakref.WeakKeyDictionary[CollectorRegistry, LockTable]] = (
    weakref.WeakKeyDictionary()
)
_TABLES_GUARD: Final = ForkSafeLock()


class HistogramSeries:
    """One labelled histogram: per-bucket (not cumulative) counts, the sum, exemplars."""

    __slots__ = ("bounds", "counts", "created", "exemplar_due", "exemplars", "lock", "sum")

    def __init__(self, bounds: tuple[float, ...], lock: SeriesLock) -> None:
        #: Held to write (its :class:`Writer`) and to read this series.
        self.lock = lock
        self.bounds = bounds  # without +Inf: bisect gives len(bounds) for the +Inf bucket
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.exemplars: list[RawExemplar | None] | None = None
        #: Per bucket, the perf_counter_ns before which its exemplar is fresh enough
        #: (the metrics signal's throttle); allocated on first use.
        self.exemplar_due: list[int] | None = None
        self.created = time.time()


class ValueSeries:
    """One labelled counter or gauge."""

    __slots__ = ("created", "lock", "value")

    def __init__(self, lock: SeriesLock) -> None:
        #: Held to write (its :class:`Writer`) and to read this series.
        self.lock = lock
        self.value = 0.0
        self.created = time.time()


class CounterSeries(ValueSeries):
    """One labelled counter."""

    __slots__ = ()


class GaugeSeries(ValueSeries):
    """One labelled gauge."""

    __slots__ = ()


class _Family:
    """A registry collector holding labelled series; created through ``_registry.family``
    with prometheus_client's constructor signature."""

    __slots__ = ("__weakref__", "_documentation", "_labelnames", "_locks", "_name", "_series")

    #: prometheus_client's name for the type (as its own families have it).
    _type: ClassVar[str]

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not name or not documentation:
            raise ValueError("a metric family needs a name and a documentation string")
        if self._type == "counter":
            name = name.removesuffix("_total")  # as prometheus_client's Counter
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], Any] = {}
        #: The registry's locks: a series gets the one of its first label value.
        self._locks = LockTable.of(registry)
        if not self._labelnames:  # exposed from the start, as prometheus_client's
            self.labels()
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
            lock = self._locks.lock(key[0] if key else "")
            with lock:
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = self._new_series(lock)
        return series

    def _new_series(self, lock: SeriesLock) -> Any:
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
    if use_created():
        from prometheus_client.samples import Sample

        labels = dict(zip(labelnames, key, strict=True))
        family.samples.append(Sample(name + "_created", labels, created))


class HistogramFamily(_Family):
    """A histogram family with fixed buckets."""

    __slots__ = ("_bounds", "_le", "_upper_bounds")

    _le: tuple[str, ...] | None

    _type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = (),
    ) -> None:
        bounds = tuple(map(float, buckets))  # C calls only: 8 families at every cold start
        if bounds and bounds[-1] == INF:
            bounds = bounds[:-1]
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be sorted, distinct and not empty")
        self._bounds = bounds
        self._upper_bounds = (*bounds, INF)  # prometheus_client's attribute, for conflict checks
        self._le = None  # the ``le`` label values, made at the first collect
        super().__init__(name, documentation, labelnames, registry)

    def _new_series(self, lock: SeriesLock) -> HistogramSeries:
        return HistogramSeries(self._bounds, lock)

    def _empty(self) -> HistogramMetricFamily:
        from prometheus_client.metrics_core import HistogramMetricFamily

        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.samples import Exemplar

        le = self._le
        if le is None:
            from prometheus_client.utils import floatToGoString

            le = self._le = (*(floatToGoString(b) for b in self._bounds), "+Inf")  # type: ignore[no-untyped-call]
        family = self._empty()
        rows = []
        for key, s in list(self._series.items()):
            with s.lock:  # a consistent snapshot: counts, sum and exemplars of one instant
                exemplars = None if s.exemplars is None else list(s.exemplars)
                rows.append((key, list(s.counts), s.sum, exemplars, s.created))
        for key, counts, total, exemplars, created in rows:
            buckets: list[Any] = []
            for i, cumulative in enumerate(accumulate(counts)):
                exemplar = None if exemplars is None else exemplars[i]
                buckets.append(
                    (le[i], cumulative)
                    if exemplar is None
                    else (le[i], cumulative, Exemplar(*exemplar))
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
        rows = []
        for key, s in list(self._series.items()):
            with s.lock:
                rows.append((key, s.value, s.created))
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

    def _new_series(self, lock: SeriesLock) -> CounterSeries:
        return CounterSeries(lock)

    def _empty(self) -> CounterMetricFamily:
        from prometheus_client.metrics_core import CounterMetricFamily

        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)


class GaugeFamily(_ValueFamily):
    """A gauge family; with ``live``, one whose values are counted when collected (no
    write per change: ``aws_sdk_calls_in_flight`` counts the calls in flight then)."""

    __slots__ = ("_live",)

    _type = "gauge"
    _with_created = False

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
        live: Callable[[], dict[tuple[str, ...], int]] | None = None,
    ) -> None:
        #: Counts by label values, read at collect; None: the series' own values.
        self._live = live
        super().__init__(name, documentation, labelnames, registry)

    def collect(self) -> Iterable[Metric]:
        live = self._live
        if live is None:
            return super().collect()
        counts = live()
        for key in counts:
            if key not in self._series:
                self.labels(*key)  # a series seen once stays, at 0 once nothing is in flight
        family = self._empty()
        for key in list(self._series):
            family.add_metric(key, counts.get(key, 0))
        return [family]

    def _new_series(self, lock: SeriesLock) -> GaugeSeries:
        return GaugeSeries(lock)

    def _empty(self) -> GaugeMetricFamily:
        from prometheus_client.metrics_core import GaugeMetricFamily

        return GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
