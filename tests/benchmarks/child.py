"""One benchmark variant in a fresh process: ``python -m tests.benchmarks.child '<spec json>'``.

Prints one line ``BENCH-RESULT {json}``. CPU mode: per-call CPU and wall
microseconds (the fastest of several batches), what the variant emitted per call
(spans, metric observations, log events) and peak RSS; the parent pairs it with
a baseline process of the same round. Count mode (``"mode": "count"``): a fixed
number of calls and what they emitted, run under an instruction counter twice
with two call counts (tests/benchmarks/instructions.py).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import resource
import statistics
import sys
from collections.abc import Callable, Sequence
from functools import partial
from time import perf_counter_ns, process_time_ns
from typing import Any, Final

RESULT_PREFIX: Final = "BENCH-RESULT "

#: Signals per evobs variant.
EVOBS_SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "evobs-core": (),
    "evobs-traces": ("traces",),
    "evobs-metrics": ("metrics",),
    "evobs-otel-metrics": ("otel_metrics",),
    "evobs-logs": ("logs",),
    "evobs-all": ("traces", "metrics", "logs"),
    "evobs-all-api": ("traces", "metrics", "logs"),
}
#: Environment a variant's process starts with (set before evobs is imported).
VARIANT_ENV: Final[dict[str, dict[str, str]]] = {
    # evobs's switch to the public-API span path (Tracer.start_span).
    "evobs-all-api": {"EVOBS_FAST_SPANS": "0"},
}
SPAN_VARIANTS: Final = ("evobs-traces", "evobs-all", "evobs-all-api", "peer", "floor")
#: Variants that record their calls without OpenTelemetry spans.
OTHER_TRACER_VARIANTS: Final = ("xray",)
LOG_VARIANTS: Final = ("evobs-logs", "evobs-all", "evobs-all-api")
METRIC_VARIANTS: Final = ("evobs-metrics", "evobs-otel-metrics", "evobs-all", "evobs-all-api")
#: Variants whose metrics go to an SDK MeterProvider (an in-memory reader, collected only
#: for the proofs after the counted calls), not to a Prometheus registry.
OTEL_METRIC_VARIANTS: Final = ("evobs-otel-metrics",)
VARIANTS: Final = (
    "baseline",
    "evobs-core",
    "evobs-traces",
    "evobs-metrics",
    "evobs-otel-metrics",
    "evobs-logs",
    "evobs-all",
    "evobs-all-api",
    "peer",
    "floor",
    "xray",
)
#: Each variant's (and cold-start setup's) row name in the reports.
LABELS: Final = {
    "baseline": "boto3 alone",
    "sdk": "boto3 + SDK TracerProvider, no instrumentation",
    "evobs-core": "evobs handlers, no signal",
    "evobs-traces": "evobs traces only",
    "evobs-metrics": "evobs metrics only",
    "evobs-otel-metrics": "evobs OpenTelemetry metrics only (SDK MeterProvider)",
    "evobs-logs": "evobs logs only",
    "evobs-all": "evobs traces+metrics+logs",
    "evobs-all-api": "evobs traces+metrics+logs, public-API spans (EVOBS_FAST_SPANS=0)",
    "peer": "opentelemetry-instrumentation-botocore",
    "floor": "bare SDK start_span",
    "xray": "AWS X-Ray SDK (informational)",
}
WORKLOADS: Final = ("canned", "retry", "loopback")
_PROOF_CALLS: Final = 30

# The ten attributes evobs's call span carries on a successful call: the floor
# variant starts an SDK span with as many, and does nothing else.
_FLOOR_ATTRIBUTES: Final[dict[str, Any]] = {
    "rpc.system": "aws-api",
    "rpc.service": "S3",
    "rpc.method": "HeadObject",
    "cloud.region": "us-east-1",
    "server.address": "127.0.0.1",
    "server.port": 1,
    "http.request.method": "HEAD",
    "http.response.status_code": 200,
    "aws.request_id": "BENCH0000000000",
    "aws.sdk.attempts": 1,
}

_ATTEMPT_ATTRIBUTES: Final[dict[str, Any]] = {
    "http.request.resend_count": 0,
    "aws.sdk.signing_ms": 0.05,
    "http.response.status_code": 503,
    "aws.request_id": "BENCH0000000000",
}


def _environment(variant: str | None = None) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "OTEL_", "EVOBS_")):
            del os.environ[name]
    os.environ.update(VARIANT_ENV.get(variant or "", {}))
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


class _CountingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """An ordinary application's handler (formats every record it gets), counting evobs's."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.evobs = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("evobs"):
            self.evobs += 1
        super().emit(record)


def _app_logging() -> _CountingHandler:
    """What an ordinary app does: one root handler at WARNING."""
    handler = _CountingHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    return handler


class _Spans:
    """A TracerProvider whose spans go to a counting exporter (nothing serialised)."""

    def __init__(self, processor: str) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class CountingExporter(SpanExporter):
            def __init__(self) -> None:
                self.count = 0

            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                self.count += len(spans)
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return True

        self.exporter = CountingExporter()
        self.provider = TracerProvider()
        if processor == "batch":
            # A queue deep enough that a starved export thread (a busy 2-core machine)
            # drops nothing: every variant must deliver all its spans to count.
            self.provider.add_span_processor(
                BatchSpanProcessor(self.exporter, max_queue_size=1 << 16)
            )
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def count(self) -> int:
        self.provider.force_flush()
        return self.exporter.count


class _Floor:
    """The least an instrumentation keeping evobs's span contract can do: one SDK
    span with ten attributes, current for the call, from two botocore events, and
    for a retried call one child span per attempt. Nothing else."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace

        self._tracer = trace.get_tracer("floor", tracer_provider=provider)
        self._attach = context.attach
        self._detach = context.detach
        self._in_context = trace.set_span_in_context
        self._client = trace.SpanKind.CLIENT

    def before_call(self, context: Any = None, model: Any = None, **_: Any) -> None:
        span = self._tracer.start_span(model.name, kind=self._client, attributes=_FLOOR_ATTRIBUTES)
        context["floor"] = (span, self._attach(self._in_context(span)))

    def after_call(self, context: Any = None, **_: Any) -> None:
        span, token = context.pop("floor")
        attempts = context.get("retries", {}).get("attempt", 1)
        if attempts > 1:
            # The contract's attempt spans: one child per attempt of a retried call.
            parent = self._in_context(span)
            for number in range(1, attempts + 1):
                attributes = dict(_ATTEMPT_ATTRIBUTES, **{"aws.sdk.attempt": number})
                self._tracer.start_span(
                    "attempt", context=parent, kind=self._client, attributes=attributes
                ).end()
        span.end()
        self._detach(token)

    def register(self, events: Any) -> None:
        events.register_first("before-call.*.*", self.before_call, unique_id="floor-before")
        events.register_first("after-call.*.*", self.after_call, unique_id="floor-after")


class _XRay:
    """The AWS X-Ray SDK's botocore patch, recording into a segment opened once, its
    subsegments streamed to an emitter that only counts them (no daemon, nothing
    serialised, as the counting span exporter)."""

    def __init__(self) -> None:
        from aws_xray_sdk.core import patch, xray_recorder  # type: ignore[import-untyped]

        bench = self

        class CountingEmitter:
            def send_entity(self, entity: Any) -> None:
                bench.sent += len(getattr(entity, "subsegments", ())) or 1

            def set_daemon_address(self, address: Any) -> None:
                pass

            @property
            def ip(self) -> str:
                return "127.0.0.1"

            @property
            def port(self) -> int:
                return 2000

        self.sent = 0
        self.recorder = xray_recorder
        xray_recorder.configure(
            emitter=CountingEmitter(),
            sampling=False,
            context_missing="LOG_ERROR",
            plugins=(),
            service="bench",
        )
        logging.getLogger("aws_xray_sdk").setLevel(logging.ERROR)
        patch(["botocore"])
        xray_recorder.begin_segment("bench")

    def count(self) -> int:
        """Subsegments recorded: those streamed out plus those still held by the segment."""
        segment = self.recorder.current_segment()
        return self.sent + len(getattr(segment, "subsegments", ()))


def _start_span_probe() -> Any:
    """A span processor added after the measured calls: counts the spans that reach
    the provider through ``Tracer.start_span`` (found on the stack in ``on_start``)
    and those handed over without it."""
    from opentelemetry.sdk.trace import SpanProcessor

    class StartSpanProbe(SpanProcessor):
        def __init__(self) -> None:
            self.via_start_span = 0
            self.direct = 0

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            frame: Any = sys._getframe(1)
            while frame is not None:
                code = frame.f_code
                if code.co_name == "start_span" and "opentelemetry" in code.co_filename:
                    self.via_start_span += 1
                    return
                frame = frame.f_back
            self.direct += 1

    return StartSpanProbe()


def _metric_count(registry: Any, meter_reader: Any = None) -> float | None:
    """Calls recorded in ``aws_sdk_call_duration_seconds``, or in ``client.call.duration``
    of ``meter_reader`` when there is one (None: no such metric)."""
    if meter_reader is not None:
        return _otel_metric_count(meter_reader)
    if registry is None:
        return None
    total: float | None = None
    for family in registry.collect():
        if family.name == "aws_sdk_call_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    total = (total or 0.0) + sample.value
    return total


def _otel_metric_count(reader: Any) -> float | None:
    """Calls recorded in ``client.call.duration`` (None: no such metric)."""
    data = reader.get_metrics_data()
    total: float | None = None
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "client.call.duration":
                    total = (total or 0.0) + sum(p.count for p in metric.data.data_points)
    return total


def _zero_backoff_and_unbounded_quota() -> None:
    """DESIGN 6: benchmarks may make the jitter 0. The standard mode's retry quota
    (500 tokens, a 503-503-200 call keeps 14) would stop retrying after ~35 calls,
    so the benchmark client gets a quota that never runs out. Same for every variant."""
    from botocore.retries import quota, standard

    for obj in gc.get_objects():
        if isinstance(obj, standard.ExponentialBackoff):
            obj._random = lambda: 0.0
        elif isinstance(obj, standard.RetryQuotaChecker):
            obj._quota = quota.RetryQuota(10**12)


class _Bench:
    """The clients, the workload and the instrumentation of one child."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import boto3
        from botocore.config import Config

        self.spec = spec
        self.workload: str = spec["workload"]
        self.variant: str = spec["variant"]
        self.logs = _app_logging()
        self.spans: _Spans | None = None
        self.xray: _XRay | None = None
        self.registry: Any = None
        self.meter_reader: Any = None
        self.order_ok: bool | None = None
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self._instrument(session, spec.get("processor") or "simple")
        endpoint = spec.get("endpoint") or "http://127.0.0.1:1"
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=2,
            read_timeout=5,
        )
        self.ddb = session.client("dynamodb", endpoint_url=endpoint, config=config)
        self.s3 = session.client("s3", endpoint_url=endpoint, config=config)
        self.head_responder: Any = None
        if self.workload in ("canned", "retry"):
            self._can(failures=2 if self.workload == "retry" else 0)
        if self.workload == "retry":
            _zero_backoff_and_unbounded_quota()
        get_item = partial(self.ddb.get_item, TableName="bench", Key={"pk": {"S": "k"}})
        head = partial(self.s3.head_object, Bucket="bench", Key="object-00")
        listing = partial(self.s3.list_objects_v2, Bucket="bench")
        self.calls: tuple[Callable[[], Any], ...] = (get_item, head, listing)

    def _instrument(self, session: Any, processor: str) -> None:
        variant = self.variant
        if variant == "baseline":
            return
        from prometheus_client import CollectorRegistry

        self.spans = _Spans(processor) if variant in SPAN_VARIANTS else None
        provider = self.spans.provider if self.spans is not None else None
        if variant in EVOBS_SIGNALS:
            import evobs

            self.registry = CollectorRegistry()
            options = dict(self.spec.get("evobs_options", {}))
            if variant in OTEL_METRIC_VARIANTS:
                from opentelemetry.sdk.metrics import MeterProvider
                from opentelemetry.sdk.metrics.export import InMemoryMetricReader

                self.meter_reader = InMemoryMetricReader()
                options["meter_provider"] = MeterProvider(
                    metric_readers=[self.meter_reader], shutdown_on_exit=False
                )
            evobs.instrument(
                session,
                tracer_provider=provider,
                registry=self.registry,
                signals=EVOBS_SIGNALS[variant],
                **options,
            )
        elif variant == "peer":
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            instrumentor: Any = BotocoreInstrumentor
            instrumentor().instrument(tracer_provider=provider)
        elif variant == "floor":
            _Floor(provider).register(session.events)
        elif variant == "xray":
            self.xray = _XRay()
        else:
            raise SystemExit(f"unknown variant {variant!r}")

    def _can(self, failures: int) -> None:
        from .canned import CannedResponder

        for client, operation in (
            (self.ddb, "DynamoDB.GetItem"),
            (self.s3, "S3.HeadObject"),
            (self.s3, "S3.ListObjectsV2"),
        ):
            responder = CannedResponder(operation, failures)
            sid = client.meta.service_model.service_id.hyphenize()
            name = operation.partition(".")[2]
            client.meta.events.register(f"before-send.{sid}.{name}", responder)
            if self.variant in EVOBS_SIGNALS:
                responder.check = self._check_order
            if operation == "S3.HeadObject":
                self.head_responder = responder

    def _check_order(self, request: Any) -> None:
        """evobs's before-send (registered first on ``before-send.*.*``) ran before ours."""
        context = getattr(request, "context", None)  # on the prepared request from 1.43.68
        if context is not None:
            attempts: Any = getattr(context.get("evobs.call"), "attempts", None)
            attempt = attempts[-1] if attempts else None
        else:  # older botocore: evobs follows the attempt in progress on this thread
            from evobs._handlers import _CURRENT_ATTEMPT

            current = _CURRENT_ATTEMPT.get()
            attempt = current[1] if current is not None else None
        self.order_ok = attempt is not None and attempt.sent_ns is not None

    def run(self, rounds: int) -> None:
        a, b, c = self.calls
        for _ in range(rounds):
            a()
            b()
            c()

    def counters(self) -> tuple[int | None, float | None, int]:
        spans = self.spans.count() if self.spans is not None else None
        if self.xray is not None:
            spans = self.xray.count()
        return spans, _metric_count(self.registry, self.meter_reader), self.logs.evobs

    def span_path(self) -> dict[str, int] | None:
        """How one round of calls hands its spans to the provider (after the measured
        part): through ``Tracer.start_span`` or directly to the processors."""
        if self.spans is None:
            return None
        probe = _start_span_probe()
        self.spans.provider.add_span_processor(probe)
        self.run(1)
        return {"via_start_span": probe.via_start_span, "direct": probe.direct}

    def logs_proof(self) -> float | None:
        """Log events per failing call (S3 HeadObject 404: a WARNING ``aws.call``)."""
        if self.variant not in LOG_VARIANTS:
            return None
        from botocore.exceptions import ClientError

        before = self.logs.evobs
        responder = self.head_responder
        key = "object-00" if responder is not None else "missing"
        if responder is not None:
            responder.not_found = True
        try:
            for _ in range(_PROOF_CALLS):
                with contextlib.suppress(ClientError):
                    self.s3.head_object(Bucket="bench", Key=key)
        finally:
            if responder is not None:
                responder.not_found = False
        return (self.logs.evobs - before) / _PROOF_CALLS


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """VmHWM: this process's peak (``ru_maxrss`` keeps the parent's across fork+exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    bench = _Bench(spec)
    per_round = len(bench.calls)
    warmup = max(1, spec["warmup"] // per_round)
    batch = max(1, spec["batch_calls"] // per_round)
    bench.run(warmup)
    spans0, metric0, logs0 = bench.counters()
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(spec["batches"]):
        c0 = process_time_ns()
        w0 = perf_counter_ns()
        bench.run(batch)
        w1 = perf_counter_ns()
        c1 = process_time_ns()
        calls = batch * per_round
        cpu.append((c1 - c0) / calls / 1000)
        wall.append((w1 - w0) / calls / 1000)
    spans1, metric1, logs1 = bench.counters()
    calls = spec["batches"] * batch * per_round
    return {
        "calls": calls,
        # The least-disturbed batch: other processes on the machine only ever add time.
        "cpu_us": min(cpu),
        "wall_us": min(wall),
        "cpu_median_us": statistics.median(cpu),
        "cpu_batches": cpu,
        "spans_per_call": None if spans1 is None else (spans1 - (spans0 or 0)) / calls,
        "metric_calls_per_call": None if metric1 is None else (metric1 - (metric0 or 0.0)) / calls,
        "logs_per_call": (logs1 - logs0) / calls,
        "logs_proof_per_call": bench.logs_proof(),
        "order_ok": bench.order_ok,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _native_exemplar_regime() -> None:
    """evobs builds a duration exemplar per bucket at most once a second (wall clock).
    Natively a call takes ~60 us: a bucket gets one per ~16,000 calls, none or one in a
    pair's 300 counted calls. Under a counter a call takes ~50x as long and over a third of the
    calls would build one. Stretching the interval before the warm-up (which still
    builds each bucket's first) keeps the counted calls in the native regime."""
    from evobs.signals import metrics

    metrics._EXEMPLAR_INTERVAL_NS = 3600 * 10**9  # type: ignore[misc]


def count(spec: dict[str, Any]) -> dict[str, Any]:
    """A fixed number of calls, for an instruction counter that sees the whole process.

    The parent runs this twice, with ``calls`` N1 < N2 and the same ``warmup``, and
    divides the difference in instructions by N2 - N1: start-up, imports, warm-up and
    the proofs after the calls cancel out. After the warm-up every surviving object
    is frozen (``gc.freeze``), so a full collection's cost, which depends on all that
    was imported rather than on the calls, cannot land in one run and not the other.
    """
    if spec.get("variant") in METRIC_VARIANTS:
        _native_exemplar_regime()
    bench = _Bench(spec)
    per_round = len(bench.calls)
    bench.run(max(1, spec["warmup"] // per_round))
    gc.collect()
    gc.freeze()
    rounds = max(0, spec["calls"] // per_round)
    bench.run(rounds)
    spans, metric, logs = bench.counters()
    return {
        "calls": rounds * per_round,
        "spans": spans,
        "metric_calls": metric,
        "logs": logs,
        "logs_proof_per_call": bench.logs_proof(),
        "order_ok": bench.order_ok,
        "span_path": bench.span_path(),
    }


def soak(spec: dict[str, Any]) -> dict[str, Any]:
    """Memory after each checkpoint of canned calls (after a full collection)."""
    bench = _Bench(spec)
    per_round = len(bench.calls)
    done = 0
    points = []
    for target in spec["checkpoints"]:
        rounds = max(0, -(-(target - done) // per_round))
        bench.run(rounds)
        done += rounds * per_round
        bench.counters()
        gc.collect()
        points.append({"calls": done, "rss_mb": _rss_mb(), "gc_objects": len(gc.get_objects())})
    spans, metric, _ = bench.counters()
    return {"points": points, "spans": spans, "metric_calls": metric}


def micro(spec: dict[str, Any]) -> dict[str, Any]:
    """The SDK's own span floor outside any call: start_span(10 attributes) + end,
    and the same made current (attach/detach), per span."""
    from opentelemetry import context, trace

    spans = _Spans(spec.get("processor") or "simple")
    tracer = trace.get_tracer("floor", tracer_provider=spans.provider)
    n = spec["batch_calls"]
    kind = trace.SpanKind.CLIENT

    def plain() -> None:
        for _ in range(n):
            tracer.start_span("S3.HeadObject", kind=kind, attributes=_FLOOR_ATTRIBUTES).end()

    def current() -> None:
        for _ in range(n):
            span = tracer.start_span("S3.HeadObject", kind=kind, attributes=_FLOOR_ATTRIBUTES)
            token = context.attach(trace.set_span_in_context(span))
            span.end()
            context.detach(token)

    out: dict[str, Any] = {}
    for name, fn in (("span_us", plain), ("span_current_us", current)):
        fn()
        samples = []
        for _ in range(spec["batches"]):
            c0 = process_time_ns()
            fn()
            samples.append((process_time_ns() - c0) / n / 1000)
        out[name] = statistics.median(samples)
    out["spans"] = spans.count()
    return out


def cold(spec: dict[str, Any], t0: int) -> dict[str, Any]:
    """Whole-process cold start: imports, instrument, first client (wall ms)."""
    import boto3

    variant = spec["variant"]
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    if variant != "baseline":
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        if variant == "peer":
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            instrumentor: Any = BotocoreInstrumentor
            instrumentor().instrument(tracer_provider=provider)
        else:
            import evobs

            evobs.instrument(session, tracer_provider=provider, signals=EVOBS_SIGNALS[variant])
    session.client("s3", endpoint_url="http://127.0.0.1:1")
    return {"cold_ms": (perf_counter_ns() - t0) / 1e6}


#: What ``_shift_layout`` allocated: alive for the whole process.
_PADDING: Final[list[bytes]] = []


def _shift_layout(layout: int) -> None:
    """Move where everything allocated after this lands (``layout`` 0: nowhere).

    The interpreter's per-call work depends on addresses as well as on the calls: its
    method cache is indexed by the addresses of interned names, and objects hash by
    address. Under a counter the addresses are the same in every run, so a count is
    one draw from a spread (~14 k per call for evobs's canned call, see
    docs/performance.md); the instruction mode counts each repeat at another layout
    and takes the median. Small objects of every size class, allocated before any
    import of the variant's, shift every later one: names, code, modules and the
    calls' objects."""
    _PADDING.extend(bytes(n % 509) for n in range(layout * 997))


def main(argv: list[str]) -> int:
    t0 = perf_counter_ns()
    spec = json.loads(argv[1])
    _shift_layout(int(spec.get("layout", 0)))
    _environment(spec.get("variant"))
    mode = spec.get("mode", "measure")
    if mode == "count":
        result = count(spec)
    elif mode == "cold":
        result = cold(spec, t0)
    elif mode == "soak":
        result = soak(spec)
    elif mode == "micro":
        result = micro(spec)
    else:
        result = measure(spec)
    result["spec"] = spec
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
