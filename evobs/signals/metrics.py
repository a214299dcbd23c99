"""The metrics signal: call records rendered as Prometheus families.

Every family is created once per ``CollectorRegistry`` through
:func:`evobs._registry.family`, so two instrumentations into one registry share
them, and a registry that already holds a conflicting family fails at
``instrument()`` time, never at call time.

The hot path does no string formatting and no ``.labels()`` lookup after
warm-up: label children are resolved once per operation (and per service,
region and outcome) and kept in small dicts whose size is bounded by the
service model. Error codes come from the wire, so they are capped per
(service, operation): see :data:`ERROR_TYPE_CAP`.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) is supported; prometheus_client
stores no exemplars there, so none are built.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from .. import _selfmetrics
from .._compat.prometheus import histogram_bounds, multiprocess_mode
from .._fork import ForkSafeLock
from .._registry import MetricConflictError, family
from . import SignalBase
from ._labels import ERROR_TYPE_CAP, LOCAL_BUCKETS, NO_REGION, OTHER, ErrorTypes
from ._series import GaugeFamily, Writer, family_classes, lock_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter

    from .._call import Attempt, Call
    from .._operation import Operation
    from .._options import Options
    from . import ClientCreated, ResourceCreated
    from ._genai_metrics import GenAIMetrics

__all__ = [
    "ERROR_TYPE_CAP",
    "LOCAL_BUCKETS",
    "OTHER",
    "MetricsServer",
    "MetricsServerError",
    "MetricsSignal",
    "start_metrics_server",
]

_NS: Final = 1e-9
#: botocore's service id of Bedrock Runtime (``evobs.genai.runtime.SERVICE``, which is
#: not imported for it: it loads the GenAI code), whose first client makes the GenAI
#: families.
GENAI_SERVICE: Final = "Bedrock Runtime"
_EXEMPLAR_INTERVAL_NS: Final = 1_000_000_000


def _multiprocess() -> bool:
    """Whether prometheus_client runs in multiprocess mode (chosen at its import)."""
    return multiprocess_mode()


def _histogram(
    registry: CollectorRegistry,
    factory: Any,
    name: str,
    doc: str,
    labelnames: tuple[str, ...],
    buckets: tuple[float, ...],
) -> Any:
    """A histogram family (of ``_series.family_classes``), its buckets checked against
    those of the family the registry may already share."""
    metric: Any = family(registry, factory, name, doc, labelnames, buckets=buckets)
    existing = histogram_bounds(metric)  # both kinds of family have it
    if existing is not None and existing != tuple(buckets):
        raise MetricConflictError(
            f"evobs: histogram {name!r} already exists in this registry with buckets "
            f"{existing}, not {tuple(buckets)}: instrument with the same duration_buckets "
            "or pass another registry="
        )
    return metric


class _Families:
    """The metric families of one registry (``evobs_handler_errors`` comes from the core,
    ``_selfmetrics``)."""

    __slots__ = (
        "attempt_duration",
        "attempts",
        "backoff",
        "call_duration",
        "client_duration",
        "clients",
        "errors",
        "in_flight",
        "live_calls",
        "log_suppressed",
        "resources",
        "retries",
        "serialization",
        "signing",
        "spans_dropped",
    )

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        op = ("service", "operation")
        svc = ("service",)
        # The families are evobs's own (``_series``: one lock per service, the structural
        # lock rule; prometheus_client is imported only to collect them), prometheus_client's
        # in multiprocess mode, where values live in its files.
        counter, gauge, histogram = family_classes()
        self.call_duration = _histogram(
            registry,
            histogram,
            "aws_sdk_call_duration_seconds",
            "AWS API call duration, all attempts and backoff included",
            (*op, "region", "outcome"),
            buckets,
        )
        self.errors = family(
            registry,
            counter,
            "aws_sdk_call_errors",
            "AWS API calls that did not succeed, by error code or exception class",
            (*op, "error_type"),
        )
        self.attempts = family(
            registry,
            counter,
            "aws_sdk_call_attempts",
            "HTTP attempts made by AWS API calls",
            op,
        )
        self.retries = family(
            registry,
            counter,
            "aws_sdk_retries",
            "Retried attempts, by the outcome of the attempt that was retried",
            (*op, "reason"),
        )
        self.attempt_duration = _histogram(
            registry,
            histogram,
            "aws_sdk_call_attempt_duration_seconds",
            "Duration of one HTTP attempt (signing, sending, receiving)",
            op,
            buckets,
        )
        self.backoff = _histogram(
            registry,
            histogram,
            "aws_sdk_retry_backoff_seconds",
            "Time slept between attempts before a retry",
            svc,
            buckets,
        )
        self.serialization = _histogram(
            registry,
            histogram,
            "aws_sdk_call_serialization_duration_seconds",
            "Time to validate and serialize the request parameters",
            op,
            LOCAL_BUCKETS,
        )
        self.signing = _histogram(
            registry,
            histogram,
            "aws_sdk_call_signing_duration_seconds",
            "Time to sign one attempt, credential resolution included",
            svc,
            LOCAL_BUCKETS,
        )
        #: The calls started and not ended, counted by service when collected (evobs's
        #: own gauge): a call in flight costs one set insertion, no lock, no series
        #: write. None in multiprocess mode, where the gauge is written per call.
        self.live_calls: set[Call] | None = set() if gauge is GaugeFamily else None
        live = self.live_calls
        self.in_flight = family(
            registry,
            gauge,
            "aws_sdk_calls_in_flight",
            "AWS API calls in progress",
            svc,
            **(
                {"live": partial(_count_by_service, live)}
                if live is not None
                else {"multiprocess_mode": "livesum"}
            ),
        )
        self.clients = family(
            registry, counter, "aws_sdk_clients_created", "botocore clients created", svc
        )
        self.client_duration = _histogram(
            registry,
            histogram,
            "aws_sdk_client_creation_duration_seconds",
            "Time to construct one botocore client",
            svc,
            buckets,
        )
        self.resources = family(
            registry,
            counter,
            "aws_sdk_resources_created",
            "boto3 resource classes built (creating-resource-class events), not resource objects",
            ("service", "resource"),
        )
        self.spans_dropped = _selfmetrics.spans_dropped(registry)
        self.log_suppressed = _selfmetrics.log_events_suppressed(registry)


def _count_by_service(calls: set[Call]) -> dict[tuple[str, ...], int]:
    """The calls in ``calls`` now, by ``(service,)``: the in-flight gauge's values."""
    counts: dict[tuple[str, ...], int] = {}
    for call in list(calls):  # one step under the GIL: a snapshot
        key = (call.op.service,)
        counts[key] = counts.get(key, 0) + 1
    return counts


_ERROR_TYPES: Final[weakref.WeakKeyDictionary[Counter, ErrorTypes]] = weakref.WeakKeyDictionary()
_ERROR_TYPES_LOCK: Final = ForkSafeLock()


def _attempts(w: Writer, m: _Op, attempts: list[Attempt]) -> None:
    """A retried call's attempts, retries and their timings, recorded when the call ends
    (once per call instead of at every attempt: the in-flight gauge shows calls still
    retrying); the caller holds the service's lock, whose writer ``w`` is."""
    w.inc(m.attempts, len(attempts))
    signing = m.svc.signing
    w.observe_each(
        m.attempt_duration,
        [(a.end_ns - a.start_ns) * _NS for a in attempts if a.end_ns is not None],
    )
    w.observe_each(
        signing, [(a.sent_ns - a.start_ns) * _NS for a in attempts if a.sent_ns is not None]
    )
    backoff: list[float] = []
    previous = attempts[0]
    for attempt in attempts[1:]:
        w.inc(m.retries[previous.outcome])
        if previous.end_ns is not None:
            backoff.append(max(attempt.start_ns - previous.end_ns, 0) * _NS)
        previous = attempt
    w.observe_each(m.svc.backoff, backoff)


def _error_types(errors: Counter) -> ErrorTypes:
    with _ERROR_TYPES_LOCK:
        state = _ERROR_TYPES.get(errors)
        if state is None:
            state = _ERROR_TYPES[errors] = ErrorTypes()
        return state


class _Service:
    """Label children of one service, and the lock every per-call series of the service
    is written under (``_series``: the lock rule)."""

    __slots__ = ("backoff", "in_flight", "lock", "signing")

    def __init__(self, families: _Families, service: str) -> None:
        self.backoff = families.backoff.labels(service)
        self.signing = families.signing.labels(service)
        self.in_flight = families.in_flight.labels(service)
        self.lock = lock_of(self.in_flight)


class _Op:
    """Label children of one operation, resolved once; outcome-, reason-, region- and
    error-keyed children are added on first use (bounded sets)."""

    __slots__ = (
        "attempt_duration",
        "attempts",
        "durations",
        "errors",
        "operation",
        "other_error",
        "retries",
        "serialization",
        "service",
        "svc",
    )

    def __init__(self, families: _Families, op: Operation, svc: _Service) -> None:
        self.service = op.service
        self.operation = op.name
        self.svc = svc
        self.attempts = families.attempts.labels(op.service, op.name)
        self.attempt_duration = families.attempt_duration.labels(op.service, op.name)
        self.serialization = families.serialization.labels(op.service, op.name)
        self.durations: dict[tuple[str | None, str | None], Any] = {}
        self.retries: dict[str | None, Any] = {}
        self.errors: dict[str, Any] = {}
        self.other_error: Any = None


class _NoGenAI:
    """Where the GenAI families could not be made (a name clash): nothing recorded."""

    __slots__ = ()

    def call_ended(self, call: Call) -> None:
        pass


_NO_GENAI: Final = _NoGenAI()


class MetricsSignal(SignalBase):
    """Renders call records as the Prometheus families of DESIGN section 4."""

    __slots__ = (
        "_buckets",
        "_clients",
        "_error_types",
        "_exemplars",
        "_families",
        "_genai",
        "_lock",
        "_ops",
        "_registry",
        "_resources",
        "_services",
    )

    name = "metrics"

    def __init__(self, registry: CollectorRegistry, options: Options) -> None:
        self._families = _Families(registry, tuple(options.duration_buckets))
        self._registry = registry
        #: Token usage, operation duration, time to first chunk, guardrail interventions:
        #: made with the first Bedrock Runtime client (``_genai_metrics``), so that a
        #: process that never calls Bedrock neither loads nor exposes them.
        self._genai: GenAIMetrics | _NoGenAI | None = None
        self._error_types = _error_types(self._families.errors)
        # prometheus_client keeps no exemplars in multiprocess mode: build none. Otherwise
        # the duration series are evobs's own, which throttle them (``exemplar_due``).
        self._exemplars = not _multiprocess()
        self._buckets = tuple(options.duration_buckets)
        self._lock = ForkSafeLock()
        self._ops: dict[Operation, _Op] = {}
        self._services: dict[str, _Service] = {}
        self._clients: dict[str, tuple[Any, Any]] = {}
        self._resources: dict[tuple[str, str], Any] = {}

    # -- children (the warm-up path) ------------------------------------------------

    def _op(self, op: Operation) -> _Op:
        found = self._ops.get(op)
        if found is None:
            with self._lock:
                found = self._ops.get(op)
                if found is None:
                    svc = self._services.get(op.service)
                    if svc is None:
                        svc = self._services[op.service] = _Service(self._families, op.service)
                    found = self._ops[op] = _Op(self._families, op, svc)
        return found

    def _duration_child(self, m: _Op, region: str | None, outcome: str | None) -> Any:
        child = self._families.call_duration.labels(
            m.service, m.operation, region or NO_REGION, outcome or "error"
        )
        m.durations[(region, outcome)] = child
        return child

    def _retry_child(self, m: _Op, reason: str | None) -> Any:
        child = self._families.retries.labels(m.service, m.operation, reason or "error")
        m.retries[reason] = child
        return child

    def _error_child(self, m: _Op, error_type: str) -> Any:
        label = self._error_types.admit(m.service, m.operation, error_type)
        if label == OTHER and error_type != OTHER:
            child = m.other_error
            if child is None:
                child = m.other_error = self._families.errors.labels(m.service, m.operation, OTHER)
            return child  # not cached per value: past the cap values are unbounded
        child = m.errors[error_type] = self._families.errors.labels(m.service, m.operation, label)
        return child

    # -- transitions (the hot path) -----------------------------------------------

    @property
    def call_started(self) -> Callable[[Call], None]:
        """What the handlers call as a call starts (bound once, ``Fanout``): adding it to
        the calls in flight, a C call, with evobs's own gauge; the gauge's increment
        otherwise (multiprocess mode)."""
        live = self._families.live_calls
        return live.add if live is not None else self._started

    def _started(self, call: Call) -> None:
        m = self._ops.get(call.op) or self._op(call.op)
        with m.svc.lock as w:
            w.inc(m.svc.in_flight)

    def call_ended(self, call: Call) -> None:
        live = self._families.live_calls
        if live is not None:
            live.discard(call)  # first: whatever fails below, the call is no longer in flight
        m = self._ops.get(call.op) or self._op(call.op)
        svc = m.svc
        settled = live is not None
        try:
            # Children and the exemplar first: what may take other locks.
            outcome = call.outcome
            child = m.durations.get((call.region, outcome)) or self._duration_child(
                m, call.region, outcome
            )
            seconds = call.duration_ns * _NS
            exemplar = None
            if self._exemplars and call.span_context is not None:
                # One exemplar per bucket per second: the throttle is read here, and
                # ``_exemplar`` is called only when the bucket is due one.
                due = child.exemplar_due
                index = bisect_left(self._buckets, seconds)
                if due is None or (call.end_ns or 0) >= due[index]:
                    exemplar = self._exemplar(child, index, call)
            errors = None
            if outcome != "ok":
                error_type = call.error_type or outcome or "error"
                errors = m.errors.get(error_type) or self._error_child(m, error_type)
            attempts = call.attempts
            retried = len(attempts) > 1
            if retried:
                for attempt in attempts[:-1]:
                    if attempt.outcome not in m.retries:
                        self._retry_child(m, attempt.outcome)
            with svc.lock as w:  # one lock for all of the call's updates
                if not settled:
                    w.dec(svc.in_flight)
                    settled = True
                w.observe(child, seconds, exemplar)
                if call.serialized_ns is not None:
                    w.observe(m.serialization, (call.serialized_ns - call.start_ns) * _NS)
                if errors is not None:
                    w.inc(errors)
                if retried:
                    _attempts(w, m, attempts)
                elif attempts:  # one attempt, the usual call: recorded here
                    w.inc(m.attempts)
                    attempt = attempts[0]
                    if attempt.end_ns is not None:
                        w.observe(m.attempt_duration, (attempt.end_ns - attempt.start_ns) * _NS)
                    if attempt.sent_ns is not None:
                        w.observe(svc.signing, (attempt.sent_ns - attempt.start_ns) * _NS)
            if call.genai is not None:  # Bedrock Runtime's inference calls
                (self._genai or self._genai_metrics()).call_ended(call)
        finally:
            if not settled:  # whatever failed above, in-flight goes back where it was
                with svc.lock as w:
                    w.dec(svc.in_flight)

    def call_forgotten(self, call: Call) -> None:
        """A call of a thread that is gone (a forked child): it is no longer in flight."""
        live = self._families.live_calls
        if live is not None:
            live.discard(call)
            return
        m = self._ops.get(call.op) or self._op(call.op)
        with m.svc.lock as w:
            w.dec(m.svc.in_flight)

    def _exemplar(self, child: Any, index: int, call: Call) -> dict[str, str] | None:
        """The call's trace as exemplar for bucket ``index``, whose last one is a second
        old or more (``call_ended`` reads that throttle).

        Prometheus keeps one exemplar per bucket per scrape, so building (and having
        prometheus_client validate) one per call is wasted work on a busy client; a rare
        slow bucket still gets the exemplar of its first call every time.
        """
        due = child.exemplar_due  # exemplars are on only with evobs's own series
        if due is None:
            # One slot per bucket (and +Inf), allocated with the series: flat afterwards.
            due = child.exemplar_due = [0] * (len(self._buckets) + 1)
        now = call.end_ns or 0
        ctx = call.span_context
        if ctx is None or not ctx.trace_flags.sampled:
            return None
        due[index] = now + _EXEMPLAR_INTERVAL_NS
        return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}

    def _genai_metrics(self) -> GenAIMetrics | _NoGenAI:
        """The GenAI families, made once. A name clash with them is raised here once,
        at the first Bedrock Runtime client or call (and counted as that event's
        handler error); GenAI is then left out of this signal, the rest goes on."""
        with self._lock:
            genai = self._genai
            if genai is None:
                self._genai = _NO_GENAI
                from ._genai_metrics import GenAIMetrics

                genai = self._genai = GenAIMetrics(self._registry)
            return genai

    def client_created(self, event: ClientCreated) -> None:
        if event.service == GENAI_SERVICE and self._genai is None:
            self._genai_metrics()  # in the first scrape after the client exists
        children = self._clients.get(event.service)
        if children is None:
            f = self._families
            children = self._clients[event.service] = (
                f.clients.labels(event.service),
                f.client_duration.labels(event.service),
            )
        with lock_of(children[0]) as w:  # both keyed by the service: one lock
            w.inc(children[0])
            w.observe(children[1], event.duration_ns * _NS)

    def resource_created(self, event: ResourceCreated) -> None:
        key = (event.service, event.resource)
        child = self._resources.get(key)
        if child is None:
            child = self._resources[key] = self._families.resources.labels(
                event.service, event.resource
            )
        with lock_of(child) as w:
            w.inc(child)


# -- the /metrics endpoint -----------------------------------------------------------


class MetricsServerError(OSError):
    """The metrics endpoint could not listen (most often: the port is already in use)."""


class MetricsServer:
    """A running ``/metrics`` endpoint: ``.port`` is the bound port; ``shutdown()`` stops it."""

    __slots__ = ("_httpd", "_pid", "_thread", "addr", "port")

    def __init__(self, httpd: Any, thread: threading.Thread, addr: str) -> None:
        self._httpd = httpd
        self._thread = thread
        #: The process serving: a forked child has the socket, not the serving thread.
        self._pid = os.getpid()
        self.addr = addr
        self.port: int = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("", "0.0.0.0") else self.addr
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Stop serving and release the port (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._pid != os.getpid():
            # A forked child: the serving thread is the parent's. Only this process's
            # copy of the socket is closed (waiting for the thread would never return).
            httpd.server_close()
            return
        httpd.shutdown()
        httpd.server_close()
        self._thread.join(timeout=5)

    close = shutdown

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<evobs.MetricsServer {self.url}>"


def start_metrics_server(
    port: int = 9464,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` from a daemon thread (thin over prometheus_client's server).

    ``port=0`` picks a free port (see ``.port``). ``registry`` defaults to
    prometheus_client's global ``REGISTRY``; under ``PROMETHEUS_MULTIPROC_DIR`` the
    default is a registry that merges every process's files instead.
    Raises :class:`MetricsServerError` (an ``OSError``) naming the port when it is taken.
    """
    from prometheus_client import CollectorRegistry, start_http_server

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"evobs: port must be a port number from 0 to 65535 (0 picks a free one), got {port!r}"
        )
    if registry is None:
        if _multiprocess() and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            from .._registry import global_registry

            registry = global_registry()  # imported now: evobs's families are registered
    try:
        httpd, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                exc.errno,
                f"evobs: cannot serve metrics on {addr}:{port}: port {port} is already in "
                "use (pass another port=, or stop the other server)",
            ) from exc
        raise MetricsServerError(
            exc.errno, f"evobs: cannot serve metrics on {addr}:{port}: {exc.strerror or exc}"
        ) from exc
    return MetricsServer(httpd, thread, addr)
