"""The OpenTelemetry metrics signal: call records through the OpenTelemetry Metrics API.

The AWS SDKs for .NET, Go and Kotlin (Kotlin and smithy-java with a ``smithy.``
prefix) publish a standard set of client metrics (``client.call.duration``,
``client.call.attempts``, ``client.call.errors``...) with the attributes
``rpc.service``, ``rpc.method`` and ``exception.type``. This signal records evobs's
measurements under those names, units and attributes, so a Python service's AWS
calls line up with a Java or .NET service's on one dashboard, for users who export
OTLP and run no Prometheus scraper. It records what evobs measures and nothing
else: see docs/metrics.md for which standard instruments are left out and why.

Instruments are created once per ``MeterProvider`` (two instrumentations on one
provider share them, as two on one ``CollectorRegistry`` share the Prometheus
families). The hot path builds no attribute dict: one per operation, and one per
(operation, region, outcome), error type and retry reason, each made on first use.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import Observation

from .._fork import ForkSafeLock
from .._registry import MetricConflictError
from .._version import __version__
from . import SignalBase
from ._labels import LOCAL_BUCKETS, OTHER, ErrorTypes

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._call import Attempt, Call
    from .._operation import Operation
    from .._options import Options
    from . import ClientCreated, ResourceCreated

__all__ = ["INSTRUMENTS", "METER_NAME", "OtelMetricsSignal"]

#: The instrumentation scope of every instrument.
METER_NAME: Final = "evobs"

#: name: (kind, unit, description, attributes). The first six are the AWS SDKs'
#: standard names; the others are evobs's own, in the same style. The attributes are
#: the ones the SDKs document (``rpc.service``, ``rpc.method``; no ``rpc.system``:
#: every attribute costs the OpenTelemetry SDK work on each measurement, and these are
#: all AWS calls). docs/metrics.md lists them and a test compares the two.
INSTRUMENTS: Final[dict[str, tuple[str, str, str, tuple[str, ...]]]] = {
    "client.call.duration": (
        "histogram",
        "s",
        "Overall call duration (including retries and backoff)",
        ("rpc.service", "rpc.method", "cloud.region", "aws.sdk.outcome"),
    ),
    "client.call.attempts": (
        "counter",
        "{attempt}",
        "The number of attempts for an individual operation",
        ("rpc.service", "rpc.method"),
    ),
    "client.call.errors": (
        "counter",
        "{error}",
        "The number of errors for an operation",
        ("rpc.service", "rpc.method", "exception.type"),
    ),
    "client.call.attempt_duration": (
        "histogram",
        "s",
        "The time it takes to sign the request, send it, and get back and parse the response",
        ("rpc.service", "rpc.method"),
    ),
    "client.call.serialization_duration": (
        "histogram",
        "s",
        "The time it takes to validate and serialize the parameters (endpoint resolution included)",
        ("rpc.service", "rpc.method"),
    ),
    "client.call.auth.signing_duration": (
        "histogram",
        "s",
        "The time it takes to sign a request (credential resolution included)",
        ("rpc.service", "rpc.method"),
    ),
    "client.call.retries": (
        "counter",
        "{retry}",
        "Retried attempts, by the outcome of the attempt that was retried",
        ("rpc.service", "rpc.method", "aws.sdk.retry.reason"),
    ),
    "client.call.retry_backoff": (
        "histogram",
        "s",
        "Time slept between attempts before a retry",
        ("rpc.service", "rpc.method"),
    ),
    "client.call.in_flight": (
        "observable updowncounter",
        "{call}",
        "AWS API calls in progress",
        ("rpc.service", "rpc.method"),
    ),
    "client.created": (
        "counter",
        "{client}",
        "botocore clients created",
        ("rpc.service",),
    ),
    "client.creation_duration": (
        "histogram",
        "s",
        "Time to construct one botocore client",
        ("rpc.service",),
    ),
    "client.resources_created": (
        "counter",
        "{resource}",
        "boto3 resource objects created (service resources, buckets, tables...)",
        ("rpc.service", "aws.sdk.resource"),
    ),
}

_NS: Final = 1e-9


def _histogram(meter: Any, name: str, buckets: tuple[float, ...]) -> Any:
    """A histogram with ``buckets`` as its advisory boundaries (opentelemetry-api >= 1.30;
    older APIs have no advisory: their SDK's default buckets apply unless a View says)."""
    _, unit, description, _ = INSTRUMENTS[name]
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)


class _Instruments:
    """The instruments of one meter provider, created once, and the error types it admitted."""

    __slots__ = (
        "attempt_duration",
        "attempts",
        "backoff",
        "buckets",
        "call_duration",
        "client_duration",
        "clients",
        "error_types",
        "errors",
        "in_flight",
        "live_calls",
        "operations",
        "resources",
        "retries",
        "serialization",
        "signing",
    )

    def __init__(self, meter: Any, buckets: tuple[float, ...]) -> None:
        def counter(name: str) -> Any:
            _, unit, description, _ = INSTRUMENTS[name]
            return meter.create_counter(name, unit=unit, description=description)

        self.buckets = buckets
        self.call_duration = _histogram(meter, "client.call.duration", buckets)
        self.attempts = counter("client.call.attempts")
        self.errors = counter("client.call.errors")
        self.attempt_duration = _histogram(meter, "client.call.attempt_duration", buckets)
        self.serialization = _histogram(meter, "client.call.serialization_duration", LOCAL_BUCKETS)
        self.signing = _histogram(meter, "client.call.auth.signing_duration", LOCAL_BUCKETS)
        self.retries = counter("client.call.retries")
        self.backoff = _histogram(meter, "client.call.retry_backoff", buckets)
        #: The calls started and not ended by every signal on this provider, counted by
        #: operation when the provider collects: a call in flight costs one set insertion
        #: (a C call, no lock) instead of two measurements through the SDK.
        self.live_calls: set[Call] = set()
        #: Every operation that has had a call, so its series stays, at 0, as a
        #: synchronous UpDownCounter's would: (service, operation) to its attributes.
        self.operations: dict[tuple[str, str], dict[str, str]] = {}
        _, unit, description, _ = INSTRUMENTS["client.call.in_flight"]
        self.in_flight = meter.create_observable_up_down_counter(
            "client.call.in_flight",
            callbacks=[self._observe_in_flight],
            unit=unit,
            description=description,
        )
        self.clients = counter("client.created")
        self.client_duration = _histogram(meter, "client.creation_duration", buckets)
        self.resources = counter("client.resources_created")
        #: ``exception.type`` values admitted per (service, operation): the same cap as the
        #: Prometheus ``error_type`` label, shared by every signal on this provider.
        self.error_types = ErrorTypes()

    def _observe_in_flight(self, _options: Any) -> list[Observation]:
        """The in-flight counts, read when the provider collects (off the calls' path: the
        SDK guards its callbacks and logs a failure)."""
        counts: dict[tuple[str, str], int] = {}
        for call in list(self.live_calls):  # one step under the GIL: a snapshot
            op = call.op
            key = (op.service, op.name)
            counts[key] = counts.get(key, 0) + 1
            if key not in self.operations:
                self.operations[key] = {"rpc.service": op.service, "rpc.method": op.name}
        return [
            Observation(counts.get(key, 0), attributes)
            for key, attributes in list(self.operations.items())
        ]


_SHARED: Final[weakref.WeakKeyDictionary[Any, _Instruments]] = weakref.WeakKeyDictionary()
_SHARED_LOCK: Final = ForkSafeLock()


def _instruments(provider: Any, buckets: tuple[float, ...]) -> _Instruments:
    """The provider's instruments, created on its first instrumentation and shared by
    every signal on it (the calls in flight are counted by one callback per provider).

    A provider that cannot be weakly referenced is held for the life of the process
    (providers are few and long-lived): its signals share one set all the same.
    """
    with _SHARED_LOCK:
        try:
            found = _SHARED.get(provider)
            weak = True
        except TypeError:
            held = _HELD.get(id(provider))
            found = held[1] if held is not None else None
            weak = False
        if found is not None:
            if found.buckets != buckets:
                raise MetricConflictError(
                    "evobs: this MeterProvider already records evobs's histograms with "
                    f"duration_buckets {found.buckets}, not {buckets}: instrument with the "
                    "same duration_buckets or pass another meter_provider="
                )
            return found
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=provider)
        created = _Instruments(meter, buckets)
        if weak:
            _SHARED[provider] = created
        else:
            _HELD[id(provider)] = (provider, created)
        return created


#: Providers that cannot be weakly referenced, by id, with the provider (so the id stays its).
_HELD: Final[dict[int, tuple[Any, _Instruments]]] = {}


class _Op:
    """The attribute dicts of one operation, built once; region/outcome-, error- and
    reason-keyed ones are added on first use (bounded sets)."""

    __slots__ = ("attributes", "durations", "errors", "operation", "other_error", "retries")

    def __init__(self, op: Operation) -> None:
        self.operation = op
        self.attributes = {"rpc.service": op.service, "rpc.method": op.name}
        self.durations: dict[tuple[str | None, str | None], dict[str, str]] = {}
        self.retries: dict[str | None, dict[str, str]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.other_error: dict[str, str] | None = None


class OtelMetricsSignal(SignalBase):
    """Renders call records as OpenTelemetry metrics under the AWS SDKs' standard names."""

    __slots__ = (
        "_attempt_duration",
        "_attempts",
        "_backoff",
        "_call_duration",
        "_clients",
        "_errors",
        "_instruments",
        "_live",
        "_lock",
        "_ops",
        "_resources",
        "_retries",
        "_serialization",
        "_services",
        "_signing",
    )

    name = "otel_metrics"

    def __init__(self, meter_provider: metrics.MeterProvider | None, options: Options) -> None:
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        shared = self._instruments = _instruments(provider, tuple(options.duration_buckets))
        # Bound methods, looked up once: the hot path calls them directly.
        self._call_duration = shared.call_duration.record
        self._attempts = shared.attempts.add
        self._errors = shared.errors.add
        self._attempt_duration = shared.attempt_duration.record
        self._serialization = shared.serialization.record
        self._signing = shared.signing.record
        self._retries = shared.retries.add
        self._backoff = shared.backoff.record
        self._live = shared.live_calls
        self._lock = ForkSafeLock()
        self._ops: dict[Operation, _Op] = {}
        self._services: dict[str, dict[str, str]] = {}
        self._resources: dict[tuple[str, str], dict[str, str]] = {}
        self._clients = (shared.clients.add, shared.client_duration.record)

    # -- attribute dicts (the warm-up path) ---------------------------------------------

    def _op(self, op: Operation) -> _Op:
        with self._lock:
            found = self._ops.get(op)
            if found is None:
                found = self._ops[op] = _Op(op)
                # Its in-flight series stays once it has had a call, at 0 between calls.
                self._instruments.operations.setdefault((op.service, op.name), found.attributes)
        return found

    def _duration_attributes(
        self, m: _Op, region: str | None, outcome: str | None
    ) -> dict[str, str]:
        attributes = {**m.attributes, "aws.sdk.outcome": outcome or "error"}
        if region is not None:
            attributes["cloud.region"] = region
        m.durations[(region, outcome)] = attributes
        return attributes

    def _retry_attributes(self, m: _Op, reason: str | None) -> dict[str, str]:
        attributes = m.retries[reason] = {**m.attributes, "aws.sdk.retry.reason": reason or "error"}
        return attributes

    def _error_attributes(self, m: _Op, error_type: str) -> dict[str, str]:
        op = m.operation
        label = self._instruments.error_types.admit(op.service, op.name, error_type)
        if label == OTHER and error_type != OTHER:
            attributes = m.other_error
            if attributes is None:
                attributes = m.other_error = {**m.attributes, "exception.type": OTHER}
            return attributes  # not cached per value: past the cap values are unbounded
        attributes = m.errors[error_type] = {**m.attributes, "exception.type": label}
        return attributes

    # -- transitions (the hot path) -------------------------------------------------------

    @property
    def call_started(self) -> Callable[[Call], None]:
        """What the handlers call as a call starts (bound once, ``Fanout``): adding it to
        the provider's calls in flight, a C call."""
        return self._live.add

    def call_forgotten(self, call: Call) -> None:
        """A call of a thread that is gone (a forked child): it is no longer in flight."""
        self._live.discard(call)

    def call_ended(self, call: Call) -> None:
        self._live.discard(call)  # first: whatever fails below, it is no longer in flight
        m = self._ops.get(call.op) or self._op(call.op)
        attributes = m.attributes
        outcome = call.outcome
        self._call_duration(
            call.duration_ns * _NS,
            m.durations.get((call.region, outcome))
            or self._duration_attributes(m, call.region, outcome),
        )
        if call.serialized_ns is not None:
            self._serialization((call.serialized_ns - call.start_ns) * _NS, attributes)
        if outcome != "ok":
            error_type = call.error_type or outcome or "error"
            self._errors(1, m.errors.get(error_type) or self._error_attributes(m, error_type))
        attempts = call.attempts
        if attempts:
            self._record_attempts(m, attempts)

    def _record_attempts(self, m: _Op, attempts: list[Attempt]) -> None:
        """Attempts, retries and their timings, recorded when the call ends (as the
        Prometheus signal does, so the two agree at any moment between calls)."""
        attributes = m.attributes
        self._attempts(len(attempts), attributes)
        previous: Attempt | None = None
        for attempt in attempts:
            if attempt.end_ns is not None:
                self._attempt_duration((attempt.end_ns - attempt.start_ns) * _NS, attributes)
            if attempt.sent_ns is not None:
                self._signing((attempt.sent_ns - attempt.start_ns) * _NS, attributes)
            if previous is not None:
                reason = previous.outcome
                self._retries(1, m.retries.get(reason) or self._retry_attributes(m, reason))
                if previous.end_ns is not None:
                    self._backoff(max(attempt.start_ns - previous.end_ns, 0) * _NS, attributes)
            previous = attempt

    def client_created(self, event: ClientCreated) -> None:
        attributes = self._services.get(event.service)
        if attributes is None:
            attributes = self._services[event.service] = {
                "rpc.service": event.service,
            }
        add, record = self._clients
        add(1, attributes)
        record(event.duration_ns * _NS, attributes)

    def resource_created(self, event: ResourceCreated) -> None:
        key = (event.service, event.resource)
        attributes = self._resources.get(key)
        if attributes is None:
            attributes = self._resources[key] = {
                "rpc.service": event.service,
                "aws.sdk.resource": event.resource,
            }
        self._instruments.resources.add(1, attributes)
