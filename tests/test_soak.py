"""Soak: hundreds of thousands of canned calls, and nothing evobs owns keeps growing.

A user before-send handler answers every request with a prebuilt response, so
every per-call event fires (serialization, signing, retries, parsing) without a
network. The workload churns clients, regions and endpoints and sends an
unbounded stream of distinct error codes; after warm-up the size of every
structure evobs owns (operation and host caches, metric label children, rate
limit buckets, the error-log dedupe set, the installed table) must stay flat.
RSS is reported, never asserted.

``make soak`` runs 200k calls (EVOBS_SOAK_FULL=1); ``make test`` a shortened run.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import io
import json
import logging
import os
import sys
import types
import weakref
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.retryhandler
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Exemplar

import evobs
from evobs.signals import _series

FULL = os.environ.get("EVOBS_SOAK_FULL") == "1"
TOTAL_CALLS = 200_000 if FULL else 15_000
# Every (client, region, endpoint, outcome) combination is seen by then, and the
# bounded table of received messages' trace context (4096 ids) is full.
WARM_UP = 6_000
CHURN_EVERY = 500  # a new pair of clients this often (client-per-request apps exist)
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
ENDPOINTS = ("http://127.0.0.1:1", "http://localhost:2", "http://[::1]:3")

pytestmark = pytest.mark.slow


class _CountingExporter(SpanExporter):
    """Counts spans and keeps none: the soak must not measure its own test harness."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class _RawBody(io.BytesIO):
    """The raw stream botocore reads: ``stream()`` for parsed bodies, ``read()`` for blobs."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        data = self.read()
        if data:
            yield data


class _Canned:
    """A user before-send handler answering from a script, else with a default."""

    def __init__(self) -> None:
        self.script: collections.deque[tuple[int, dict[str, str], bytes]] = collections.deque()
        self.default: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.sent = 0

    def __call__(self, request: Any = None, **_: Any) -> AWSResponse:
        self.sent += 1
        status, headers, body = self.script.popleft() if self.script else self.default
        return AWSResponse(request.url, status, headers, _RawBody(body))


_S3_OK = (200, {"x-amz-request-id": "REQ", "content-length": "5"}, b"hello")
_S3_404 = (404, {"x-amz-request-id": "REQ"}, b"")
_DDB_HEADERS = {"x-amzn-RequestId": "REQ", "content-type": "application/x-amz-json-1.0"}
_DDB_OK = (200, _DDB_HEADERS, b'{"Item": {"pk": {"S": "a"}}}')
_DDB_THROTTLE = (
    400,
    _DDB_HEADERS,
    b'{"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow"}',
)


_SQS_HEADERS = {"x-amzn-RequestId": "REQ", "content-type": "application/x-amz-json-1.0"}
_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _sqs_messages(i: int) -> tuple[int, dict[str, str], bytes]:
    """Ten messages with never-seen ids, carrying the trace context evobs asks for."""
    body = "x"
    digest = hashlib.md5(body.encode()).hexdigest()  # SQS's own body checksum
    messages = [
        {
            "MessageId": f"m-{i}-{j}",
            "ReceiptHandle": "r",
            "MD5OfBody": digest,
            "Body": body,
            "MessageAttributes": {
                "traceparent": {"StringValue": _TRACEPARENT, "DataType": "String"}
            },
        }
        for j in range(10)
    ]
    return 200, _SQS_HEADERS, json.dumps({"Messages": messages}).encode()


def _ddb_error(i: int) -> tuple[int, dict[str, str], bytes]:
    # A new error code on every call: the wire is unbounded, evobs's labels are not.
    return 400, _DDB_HEADERS, b'{"__type": "Err%d", "message": "bad %d"}' % (i, i)


# -- measuring what evobs owns -----------------------------------------------------------

_SCALARS = (str, bytes, int, float, bool, type(None), complex)
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
# Not evobs's: foreign objects, and prometheus_client's per-value cells (a float and
# the last exemplar of a bucket, set the first time a bucket is hit: bounded by buckets).
# evobs's own series keep the same last exemplar per bucket (``Exemplar``, below).
_FOREIGN = (
    "botocore",
    "boto3",
    "opentelemetry",
    "structlog",
    "logging",
    "threading",
    "_thread",
    "prometheus_client.values",
)


def _entries(obj: Any, seen: set[int], depth: int = 0) -> int:
    """Entries in every container reachable from ``obj`` (not into botocore/OTel objects)."""
    if depth > 12 or id(obj) in seen or isinstance(obj, _SCALARS + _OPAQUE + (Exemplar,)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, weakref.WeakKeyDictionary | weakref.WeakValueDictionary):
        items = list(obj.items())
        return len(items) + sum(_entries(v, seen, depth + 1) for _, v in items)
    if isinstance(obj, weakref.WeakSet):
        return len(obj)
    if isinstance(obj, dict):
        return len(obj) + sum(
            _entries(k, seen, depth + 1) + _entries(v, seen, depth + 1)
            for k, v in list(obj.items())
        )
    if isinstance(obj, list | tuple | set | frozenset | collections.deque):
        return len(obj) + sum(_entries(v, seen, depth + 1) for v in list(obj))
    module = type(obj).__module__ or ""
    if module.startswith(_FOREIGN):
        return 0
    total = 0
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name == "exemplars" and isinstance(obj, _series.HistogramSeries):
                # One slot per bucket, each replaced, never grown: the slots are the size
                # (an exemplar, a (labels, value, timestamp) tuple, is a value like Exemplar).
                slots = obj.exemplars
                total += 0 if slots is None else len(slots)
            elif name not in ("__weakref__", "__dict__") and hasattr(obj, name):
                total += _entries(getattr(obj, name), seen, depth + 1)
    if hasattr(obj, "__dict__"):
        total += _entries(vars(obj), seen, depth + 1)
    return total


_CONTAINERS = (
    dict,
    list,
    set,
    collections.deque,
    weakref.WeakKeyDictionary,
    weakref.WeakValueDictionary,
)


def _sizes(handle: evobs.Instrumentation, registry: CollectorRegistry) -> dict[str, int]:
    """The size of each evobs-owned structure, by name (after a collection: weak maps
    drop the entries of earlier tests' registries only when the collector runs)."""
    from evobs import _handlers, _install, _operation

    gc.collect()

    out = {
        "operation cache": len(_operation._CACHE),
        "host cache": len(_handlers._HOST_CACHE),
        "INSTALLED": len(_install.INSTALLED),
        "error-log dedupe": len(handle.handlers.errors._seen),
        "handler-error children": len(handle.handlers.errors._children),
        "registry series": sum(len(m.samples) for m in registry.collect()),
    }
    for signal in handle.signals:
        out[f"signal {type(signal).__name__}"] = _entries(signal, set())
    for name, module in sorted(sys.modules.items()):
        if name == "evobs" or name.startswith("evobs."):
            for attr, value in vars(module).items():
                if not attr.startswith("__") and isinstance(value, _CONTAINERS):
                    out[f"{name}.{attr}"] = _entries(value, set())
    return out


def _rss_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


@pytest.fixture
def zero_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Legacy retries sleep ``base * 2**n`` (DynamoDB's base is 50 ms, others ``rand``):
    make it 0 for clients created from now on (DESIGN 6); the decision stays botocore's."""
    monkeypatch.setattr(botocore.retryhandler, "delay_exponential", lambda *a, **k: 0.0)


def test_soak_structures_flat(zero_jitter: None, registry: CollectorRegistry) -> None:
    """After warm-up, every evobs-owned structure keeps its size; call counts are exact."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    exporter = _CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Every optional path on: params rendered (redaction plans), every call "slow" (an
    # extra log event), expected errors (their own span status and log level).
    handle = evobs.instrument(
        session,
        tracer_provider=provider,
        registry=registry,
        capture_params=True,
        slow_call_seconds=1e-9,
        expected_errors={"S3.HeadObject": {"404"}},
    )

    class _Count(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.count = 0

        def emit(self, record: logging.LogRecord) -> None:
            self.count += 1

    log_handler = _Count()
    evobs_logger = logging.getLogger("evobs")
    old_level, old_propagate = evobs_logger.level, evobs_logger.propagate
    evobs_logger.addHandler(log_handler)
    evobs_logger.setLevel(logging.DEBUG)  # make the logs signal build every event
    evobs_logger.propagate = False  # pytest's log capture would keep every record

    canned = _Canned()
    config = Config(retries={"mode": "legacy", "total_max_attempts": 3})
    clients: dict[str, Any] = {}

    def churn(n: int) -> None:
        region = REGIONS[n % len(REGIONS)]
        endpoint = ENDPOINTS[n % len(ENDPOINTS)]
        for service in ("s3", "dynamodb", "sqs"):
            client = session.client(
                service, region_name=region, endpoint_url=endpoint, config=config
            )
            client.meta.events.register(f"before-send.{service}", canned)
            clients[service] = client

    counts = collections.Counter[str]()
    snapshots: list[dict[str, int]] = []
    rss: list[int] = []
    try:
        for i in range(TOTAL_CALLS):
            if i % CHURN_EVERY == 0:
                churn(i // CHURN_EVERY)
            if i == WARM_UP or i == (WARM_UP + TOTAL_CALLS) // 2:
                snapshots.append(_sizes(handle, registry))
                rss.append(_rss_kib())
            kind = i % 10
            try:
                if kind < 5:
                    canned.default = _S3_OK
                    clients["s3"].get_object(Bucket="b", Key="k")["Body"].read()
                elif kind == 5:
                    canned.default = _S3_404
                    clients["s3"].head_object(Bucket="b", Key="missing")
                elif kind == 8:
                    canned.script.extend((_DDB_THROTTLE, _DDB_OK))
                    clients["dynamodb"].get_item(TableName="t", Key={"pk": {"S": "a"}})
                elif kind == 7:
                    canned.default = _sqs_messages(i)
                    got = clients["sqs"].receive_message(QueueUrl="http://q/123/q")
                    assert "MessageAttributes" not in got["Messages"][0]
                elif kind == 9:
                    canned.default = _ddb_error(i)
                    clients["dynamodb"].get_item(TableName="t", Key={"pk": {"S": "a"}})
                else:
                    canned.default = _DDB_OK
                    clients["dynamodb"].get_item(TableName="t", Key={"pk": {"S": "a"}})
                counts["ok"] += 1
            except ClientError:
                counts["error"] += 1
        snapshots.append(_sizes(handle, registry))
        rss.append(_rss_kib())
    finally:
        handle.uninstrument()
        evobs_logger.removeHandler(log_handler)
        evobs_logger.setLevel(old_level)
        evobs_logger.propagate = old_propagate
        provider.shutdown()

    print(
        f"\nsoak: {TOTAL_CALLS} calls, RSS KiB at warm-up/middle/end: {rss}, "
        f"spans {exporter.count}, log records {log_handler.count}"
    )
    assert canned.script == collections.deque(), "a scripted response was never used"
    assert counts["error"] == TOTAL_CALLS // 10 * 2
    # Telemetry is exact: one span per call plus two attempt spans per retried call.
    retried = TOTAL_CALLS // 10
    assert exporter.count == TOTAL_CALLS + 2 * retried
    durations = sum(
        s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "aws_sdk_call_duration_seconds_count"
    )
    assert durations == TOTAL_CALLS
    assert (
        registry.get_sample_value(
            "aws_sdk_retries_total",
            {"service": "DynamoDB", "operation": "GetItem", "reason": "throttled"},
        )
        == retried
    )
    assert not registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"})
    # And nothing evobs owns grew after warm-up, except caches that empty themselves
    # at a fixed size: those stay within it.
    from evobs import _redact

    self_clearing = {
        "evobs._redact._CLEAN": _redact._CLEAN_ENTRIES,
        "evobs._redact._SAFE_CODES": _redact._CLEAN_ENTRIES,
    }
    for snapshot in snapshots:
        for name, cap in self_clearing.items():
            assert snapshot.pop(name, 0) <= cap, (name, snapshot)
    warm, middle, end = snapshots
    grew = {k: (warm.get(k), middle.get(k), v) for k, v in end.items() if warm.get(k) != v}
    assert not grew, f"structures grew after warm-up (warm-up, middle, end): {grew}"
    assert middle == end


def test_sizes_sees_growth() -> None:
    """The structure walker counts entries inside slotted objects and nested containers."""

    class Slotted:
        __slots__ = ("cache",)

        def __init__(self) -> None:
            self.cache: dict[str, list[int]] = {}

    obj = Slotted()
    before = _entries(obj, set())
    obj.cache["a"] = [1, 2]
    assert _entries(obj, set()) == before + 3


def _garbage_after(client: Any, call: Any, n: int = 20) -> int:
    """Objects only the cycle collector can free, left by ``n`` calls (gc paused meanwhile)."""
    import gc

    for _ in range(3):  # warm caches first
        call(client)
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            call(client)
    finally:
        found = gc.collect()
        gc.enable()
    return found


def _list_tables(client: Any) -> None:
    with contextlib.suppress(ClientError):  # the failure is the point
        client.list_tables()


# Not connection errors: there botocore's own exception chain already forms a cycle
# holding the context dict (and so anything in it), with or without evobs.
@pytest.mark.parametrize("path", ["client_error", "ok"])
def test_calls_leave_no_more_garbage_cycles_than_botocore(
    path: str, registry: CollectorRegistry
) -> None:
    """A call, failed or not, leaves no reference cycle that botocore alone does not
    (an exception's traceback holds botocore's frames, which hold the context, which
    holds the call record): apps that pause or tune the GC must not accumulate calls."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=1)
    counts = []
    for instrumented in (False, True):
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        handle = None
        if instrumented:
            handle = evobs.instrument(session, tracer_provider=TracerProvider(), registry=registry)
        client = session.client("dynamodb", endpoint_url="http://127.0.0.1:2", config=config)
        canned = _Canned()
        canned.default = (
            _ddb_error(1) if path == "client_error" else (200, _DDB_HEADERS, b'{"TableNames": []}')
        )
        client.meta.events.register("before-send.dynamodb", canned)
        try:
            counts.append(_garbage_after(client, _list_tables))
        finally:
            if handle is not None:
                handle.uninstrument()
    plain, with_evobs = counts
    assert with_evobs <= plain, f"evobs left {with_evobs - plain} more objects in cycles"
