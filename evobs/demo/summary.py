"""What the demo shows: a span collector, the live view, and the end-of-run summary.

The numbers come from the spans evobs produced (the same spans an OTLP backend
receives), not from the workload's own bookkeeping, so the summary is also a
check that the telemetry tells the truth.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from rich.console import Console, RenderableType

__all__ = [
    "SPAN_KINDS",
    "AttemptRecord",
    "CallRecord",
    "LogTally",
    "OperationStats",
    "SpanCollector",
    "TraceRecord",
    "format_ms",
    "live_view",
    "percentile",
    "render_summary",
]

_NS_PER_MS: Final = 1_000_000
_BAR_WIDTH: Final = 40
_MAX_CALLS: Final = 200_000
_MAX_PENDING_ATTEMPTS: Final = 10_000
_MAX_TRACES: Final = 100_000
#: The instrumentation scope of the demo's application spans (``workload.APP_SCOPE``).
_APP_SCOPE: Final = "evobs.demo"
_EVOBS_SCOPE: Final = "evobs"
#: The application spans of the GenAI assistant (``assistant.UNITS``).
_ASSISTANT_UNITS: Final = frozenset(
    {
        "answer customer question",
        "summarise order",
        "describe product",
        "draft product copy",
        "check review",
    }
)
#: The kinds of span the collector counts, in the order the summary names them.
SPAN_KINDS: Final = ("call", "attempt", "transfer", "application", "other")


@dataclass(slots=True)
class AttemptRecord:
    """One attempt span of a retried call."""

    number: int
    start_ns: int
    end_ns: int
    outcome: str
    error_type: str | None
    http_status: int | None


@dataclass(slots=True)
class CallRecord:
    """One call span, reduced to what the summary shows."""

    service: str
    operation: str
    start_ns: int
    end_ns: int
    outcome: str
    error_type: str | None
    expected: bool
    attempts: int
    throttled_attempts: int
    http_status: int | None
    trace_id: str
    attempt_records: list[AttemptRecord] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(slots=True)
class TraceRecord:
    """What one trace holds, as far as the summary cares: its root application span
    (the request), the units of work in it, and what happened to its AWS calls."""

    trace_id: str
    spans: int = 0
    root: str | None = None
    root_ns: int = 0
    units: set[str] = field(default_factory=set)
    #: Units of work (application spans) that failed.
    failed: set[str] = field(default_factory=set)
    calls: int = 0
    retries: int = 0
    throttled: int = 0
    expected: int = 0
    errors: int = 0

    def inside(self) -> str:
        """A few words on what the trace shows."""
        parts = [_plural(self.calls, "AWS call")]
        if self.retries:
            parts.append(_plural(self.retries, "retry", "retries"))
        if self.throttled:
            parts.append(f"{self.throttled} throttled")
        if self.expected:
            parts.append(_plural(self.expected, "expected error"))
        if self.errors:
            parts.append(_plural(self.errors, "failed call"))
        followed = sorted(self.units - {self.root or ""})
        if followed:
            parts.append("then " + ", ".join(followed))
        if self.failed:
            parts.append("failed: " + ", ".join(sorted(self.failed)))
        return ", ".join(parts)


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


@dataclass(slots=True)
class OperationStats:
    """Aggregates of one service/operation."""

    service: str
    operation: str
    calls: int = 0
    errors: int = 0
    expected: int = 0
    throttled: int = 0
    retries: int = 0
    durations: list[int] = field(default_factory=list)


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def format_ms(ns: float) -> str:
    """A duration for people: ``0.8 ms``, ``42 ms``, ``1.52 s``."""
    ms = ns / _NS_PER_MS
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


class SpanCollector:
    """A span processor that keeps a small record of every span the demo produces.

    Attempt spans end before their call span (the traces signal creates them when
    the call ends), so a call's attempts are complete when the call arrives. Every
    span is counted in exactly one kind: call, attempt, transfer (``S3.upload_file``),
    application (the workload's own spans) or other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[CallRecord] = []
        self._attempts: dict[int, list[AttemptRecord]] = {}
        self._traces: dict[str, TraceRecord] = {}
        self.spans_seen = 0
        #: Spans by kind; they add up to ``spans_seen``.
        self.span_counts: dict[str, int] = dict.fromkeys(SPAN_KINDS, 0)

    # -- SpanProcessor --------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        from opentelemetry.trace import SpanKind

        attributes = span.attributes or {}
        scope = span.instrumentation_scope
        scope_name = scope.name if scope is not None else None
        if span.start_time is None:
            kind = "other"
        elif scope_name == _APP_SCOPE:
            kind = "application"
        elif span.name.endswith(" attempt") and "http.request.resend_count" in attributes:
            kind = "attempt"
        elif "aws-api" in (attributes.get("rpc.system"), attributes.get("rpc.system.name")):
            kind = "call"
        elif scope_name == _EVOBS_SCOPE and span.kind is SpanKind.INTERNAL:
            kind = "transfer"
        else:
            kind = "other"
        with self._lock:
            self.spans_seen += 1
            self.span_counts[kind] += 1
            trace = self._trace(span)
            if trace is not None:
                trace.spans += 1
        if kind == "attempt":
            self._attempt(span, attributes)
        elif kind == "call":
            self._call(span, attributes)
        elif kind == "application":
            self._application(span)

    @property
    def attempt_spans(self) -> int:
        return self.span_counts["attempt"]

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- records --------------------------------------------------------------------------

    def _trace(self, span: ReadableSpan) -> TraceRecord | None:
        """The span's trace record (the lock held); None past the bound."""
        context = span.context
        if context is None:
            return None
        trace_id = f"{context.trace_id:032x}"
        trace = self._traces.get(trace_id)
        if trace is None and len(self._traces) < _MAX_TRACES:
            trace = self._traces[trace_id] = TraceRecord(trace_id)
        return trace

    def _attempt(self, span: ReadableSpan, attributes: Any) -> None:
        parent = span.parent
        if parent is None:
            return
        record = AttemptRecord(
            number=int(attributes.get("aws.sdk.attempt", 0) or 0),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            outcome=str(attributes.get("aws.sdk.outcome", "ok")),
            error_type=_str_or_none(attributes.get("error.type")),
            http_status=_int_or_none(attributes.get("http.response.status_code")),
        )
        with self._lock:
            if len(self._attempts) >= _MAX_PENDING_ATTEMPTS:
                self._attempts.clear()
            self._attempts.setdefault(parent.span_id, []).append(record)

    def _call(self, span: ReadableSpan, attributes: Any) -> None:
        from opentelemetry.trace import StatusCode

        context = span.context
        span_id = context.span_id if context is not None else 0
        outcome = str(attributes.get("aws.sdk.outcome", "ok"))
        attempts = int(attributes.get("aws.sdk.attempts", 1) or 1)
        with self._lock:
            attempt_records = sorted(self._attempts.pop(span_id, []), key=lambda a: a.number)
        if attempt_records:
            throttled = sum(1 for a in attempt_records if a.outcome == "throttled")
        else:
            throttled = 1 if outcome == "throttled" else 0
        service, operation = _service_and_operation(span.name, attributes)
        record = CallRecord(
            service=service,
            operation=operation,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            outcome=outcome,
            error_type=_str_or_none(attributes.get("error.type")),
            expected=outcome != "ok" and span.status.status_code is StatusCode.UNSET,
            attempts=attempts,
            throttled_attempts=throttled,
            http_status=_int_or_none(attributes.get("http.response.status_code")),
            trace_id=f"{context.trace_id:032x}" if context is not None else "",
            attempt_records=attempt_records,
        )
        with self._lock:
            if len(self.calls) < _MAX_CALLS:
                self.calls.append(record)
            trace = self._trace(span)
            if trace is not None:
                trace.calls += 1
                trace.retries += max(0, attempts - 1)
                trace.throttled += throttled
                if outcome != "ok":
                    if record.expected:
                        trace.expected += 1
                    else:
                        trace.errors += 1

    def _application(self, span: ReadableSpan) -> None:
        from opentelemetry.trace import StatusCode

        with self._lock:
            trace = self._trace(span)
            if trace is None:
                return
            trace.units.add(span.name)
            if span.status.status_code is StatusCode.ERROR:
                trace.failed.add(span.name)
            if span.parent is None:
                trace.root = span.name
                trace.root_ns = (span.end_time or 0) - (span.start_time or 0)

    # -- views ----------------------------------------------------------------------------

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.calls)

    def traces(self) -> list[TraceRecord]:
        with self._lock:
            return list(self._traces.values())

    def by_operation(self) -> list[OperationStats]:
        """Per service/operation aggregates, busiest first within each service."""
        table: dict[tuple[str, str], OperationStats] = {}
        for call in self.snapshot():
            stats = table.get((call.service, call.operation))
            if stats is None:
                stats = table[(call.service, call.operation)] = OperationStats(
                    call.service, call.operation
                )
            stats.calls += 1
            if call.outcome != "ok":
                stats.errors += 1
                stats.expected += call.expected
            stats.throttled += call.throttled_attempts
            stats.retries += call.attempts - 1
            stats.durations.append(call.duration_ns)
        for stats in table.values():
            stats.durations.sort()
        return sorted(table.values(), key=lambda s: (s.service, -s.calls, s.operation))

    def by_service(self) -> dict[str, OperationStats]:
        totals: dict[str, OperationStats] = {}
        for call in self.snapshot():
            stats = totals.get(call.service)
            if stats is None:
                stats = totals[call.service] = OperationStats(call.service, "*")
            stats.calls += 1
            stats.errors += call.outcome != "ok"
            stats.throttled += call.throttled_attempts
            stats.retries += call.attempts - 1
        return totals

    def errors_by_type(self) -> list[tuple[str, str, str, bool, int]]:
        """(call name, error type, outcome, expected, count), most frequent first."""
        counts: dict[tuple[str, str, str, bool], int] = {}
        for call in self.snapshot():
            if call.outcome == "ok":
                continue
            key = (call.name, call.error_type or call.outcome, call.outcome, call.expected)
            counts[key] = counts.get(key, 0) + 1
        return sorted(((*k, n) for k, n in counts.items()), key=lambda r: (-r[4], r[0]))

    def slowest_retried(self) -> CallRecord | None:
        retried = [c for c in self.snapshot() if c.attempts > 1 and c.attempt_records]
        return max(retried, key=lambda c: c.duration_ns, default=None)

    def worth_opening(self) -> list[tuple[str, TraceRecord]]:
        """The traces a person should open first, each with why: the slowest order, an
        order with a throttled retry inside, one followed through the queue, a resubmitted
        order (an expected error), the multipart upload, a request that failed. A
        different trace for each reason when there is one; else the reasons are merged."""
        traces = self.traces()
        orders = [t for t in traces if t.root == "place order"]
        reasons: list[tuple[str, list[TraceRecord]]] = [
            ("slowest order", orders),
            ("order with a throttled retry", [t for t in orders if t.throttled]),
            (
                "order followed through the queue",
                [t for t in orders if "process order event" in t.units],
            ),
            ("resubmitted order (expected error)", [t for t in orders if t.expected]),
            (
                "multipart upload, one part throttled",
                [t for t in traces if t.root == "archive orders"],
            ),
            ("request that failed", [t for t in traces if t.failed]),
            # GenAI: a stream's span ends when the stream does; Bedrock throttles too.
            ("streamed GenAI answer", [t for t in traces if t.root == "summarise order"]),
            (
                "GenAI answer with a throttled retry",
                [t for t in traces if t.root in _ASSISTANT_UNITS and t.throttled],
            ),
        ]
        picked: dict[str, list[str]] = {}  # trace id -> reasons, in order
        by_id = {t.trace_id: t for t in traces}
        for reason, candidates in reasons:
            ranked = sorted(candidates, key=lambda t: -t.root_ns)
            fresh = [t for t in ranked if t.trace_id not in picked]
            if fresh:
                picked[fresh[0].trace_id] = [reason]
            elif ranked:
                picked[ranked[0].trace_id].append(reason)
        return [("; ".join(why), by_id[trace_id]) for trace_id, why in picked.items()]


def _service_and_operation(name: str, attributes: Any) -> tuple[str, str]:
    """The call's service and operation, under either generation of the RPC attributes
    (the span name, ``Service.Operation``, is the same in both)."""
    service = attributes.get("rpc.service")
    method = attributes.get("rpc.method")
    if isinstance(service, str) and isinstance(method, str):
        return service, method
    head, _, tail = name.partition(".")
    return head or "?", tail or name


class LogTally:
    """A logging handler that counts evobs's log events by name and keeps the last few
    warnings for the live view (the demo does not print every event)."""

    def __init__(self, keep: int = 4) -> None:
        import logging

        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.recent: list[str] = []
        self._keep = keep
        tally = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                tally._record(record)

        self.handler: logging.Handler = _Handler(logging.DEBUG)

    def _record(self, record: Any) -> None:
        import logging

        message = record.msg
        event = message.get("event") if isinstance(message, dict) else record.getMessage()
        name = str(event)
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            if record.levelno >= logging.WARNING and isinstance(message, dict):
                fields = " ".join(
                    f"{k}={message[k]}"
                    for k in (
                        "service",
                        "operation",
                        "outcome",
                        "error_type",
                        "attempt",
                        "delay_ms",
                    )
                    if message.get(k) is not None
                )
                self.recent.append(f"{record.levelname.lower():7} {name} {fields}")
                del self.recent[: -self._keep]

    def snapshot(self) -> tuple[dict[str, int], list[str]]:
        with self._lock:
            return dict(self.counts), list(self.recent)


# -- rendering ----------------------------------------------------------------------------


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def live_view(
    collector: SpanCollector,
    elapsed: float,
    duration: float | None,
    recent: Iterable[str] = (),
    header: str = "",
) -> RenderableType:
    """The view refreshed while the workload runs: time, then calls per service."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    if header:
        parts.append(Text.from_markup(header))
    if duration:
        line = Table.grid(padding=(0, 1))
        line.add_row(
            ProgressBar(total=duration, completed=min(elapsed, duration), width=40),
            Text(f"{min(elapsed, duration):4.1f} / {duration:.0f} s"),
        )
        parts.append(line)
    else:
        parts.append(Text(f"running for {elapsed:.0f} s (Ctrl-C to stop)"))
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("service", "calls", "errors", "throttled", "retries"):
        table.add_column(column, justify="left" if column == "service" else "right")
    totals = collector.by_service()
    for service in ("S3", "DynamoDB", "SQS", *sorted(set(totals) - {"S3", "DynamoDB", "SQS"})):
        stats = totals.get(service)
        if stats is None:
            table.add_row(service, "0", "0", "0", "0")
            continue
        table.add_row(
            service,
            f"{stats.calls:,}",
            Text(f"{stats.errors:,}", style="red" if stats.errors else ""),
            Text(f"{stats.throttled:,}", style="yellow" if stats.throttled else ""),
            f"{stats.retries:,}",
        )
    parts.append(table)
    for line_text in recent:
        parts.append(Text(line_text, style="dim", overflow="ellipsis", no_wrap=True))
    return Group(*parts)


def _operations_table(collector: SpanCollector) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="Calls by service and operation",
        title_justify="left",
        title_style="bold",
        caption="Errors: calls that failed (exp.: declared expected_errors). Throttled: attempts "
        "answered with throttling. Retries: extra attempts. pNN: call time, retries and "
        "backoff included.",
        caption_justify="left",
    )
    table.add_column("Service")
    table.add_column("Operation")
    for name in ("Calls", "Errors", "Throttled", "Retries", "p50", "p95", "p99"):
        table.add_column(name, justify="right")
    previous = None
    total = OperationStats("total", "")
    for stats in collector.by_operation():
        errors = Text(str(stats.errors), style="red" if stats.errors > stats.expected else "")
        if stats.expected:
            errors.append(f" ({stats.expected} exp.)", style="dim")
        table.add_row(
            stats.service if stats.service != previous else "",
            stats.operation,
            f"{stats.calls:,}",
            errors,
            Text(str(stats.throttled), style="yellow" if stats.throttled else ""),
            str(stats.retries),
            format_ms(percentile(stats.durations, 50)),
            format_ms(percentile(stats.durations, 95)),
            format_ms(percentile(stats.durations, 99)),
            end_section=False,
        )
        previous = stats.service
        total.calls += stats.calls
        total.errors += stats.errors
        total.throttled += stats.throttled
        total.retries += stats.retries
        total.durations.extend(stats.durations)
    total.durations.sort()
    table.add_section()
    table.add_row(
        "all",
        "",
        f"{total.calls:,}",
        str(total.errors),
        str(total.throttled),
        str(total.retries),
        format_ms(percentile(total.durations, 50)),
        format_ms(percentile(total.durations, 95)),
        format_ms(percentile(total.durations, 99)),
        style="bold",
    )
    return table


def _errors_table(collector: SpanCollector) -> Any:
    from rich.table import Table

    table = Table(title="Errors by type", title_justify="left", title_style="bold")
    table.add_column("Call")
    table.add_column("Error type")
    table.add_column("Outcome")
    table.add_column("Count", justify="right")
    rows = collector.errors_by_type()
    for name, error_type, outcome, expected, count in rows[:12]:
        style = "dim" if expected else ("yellow" if outcome == "throttled" else "red")
        table.add_row(
            name, error_type, outcome + (" (expected)" if expected else ""), str(count), style=style
        )
    if not rows:
        table.add_row("-", "no errors", "", "0")
    return table


def _bar(start: int, length: int, total: int, char: str, style: str) -> Any:
    from rich.text import Text

    offset = min(_BAR_WIDTH - 1, int(start / total * _BAR_WIDTH)) if total else 0
    width = max(1, round(length / total * _BAR_WIDTH)) if total else 1
    width = min(width, _BAR_WIDTH - offset)
    text = Text(" " * offset)
    text.append(char * width, style=style)
    text.append(" " * (_BAR_WIDTH - offset - width))
    return text


def _waterfall(call: CallRecord, exported: bool) -> Any:
    from rich.table import Table

    total = max(call.duration_ns, 1)
    table = Table(
        title=f"Slowest retried call: {call.name}, {call.attempts} attempts, "
        f"{format_ms(call.duration_ns)}",
        caption=f"trace {call.trace_id}" + ("  (search for this id in Jaeger)" if exported else ""),
        caption_justify="left",
        title_justify="left",
        title_style="bold",
    )
    table.add_column("Span")
    table.add_column("Start", justify="right")
    table.add_column("Duration", justify="right")
    table.add_column("Timeline", no_wrap=True)
    table.add_column("Result")
    outcome = call.outcome + (" (expected)" if call.expected else "")
    table.add_row(
        call.name,
        "0 ms",
        format_ms(call.duration_ns),
        _bar(0, call.duration_ns, total, "█", "cyan"),
        f"{call.http_status or ''} {outcome}".strip(),
    )
    previous_end: int | None = None
    for attempt in call.attempt_records:
        if previous_end is not None and attempt.start_ns > previous_end:
            gap = attempt.start_ns - previous_end
            table.add_row(
                "  backoff",
                format_ms(previous_end - call.start_ns),
                format_ms(gap),
                _bar(previous_end - call.start_ns, gap, total, "░", "magenta"),
                "sleep before retry",
                style="dim",
            )
        style = (
            "green"
            if attempt.outcome == "ok"
            else ("yellow" if attempt.outcome == "throttled" else "red")
        )
        result = f"{attempt.http_status or ''} {attempt.error_type or attempt.outcome}".strip()
        table.add_row(
            f"  attempt {attempt.number}",
            format_ms(attempt.start_ns - call.start_ns),
            format_ms(attempt.end_ns - attempt.start_ns),
            _bar(
                attempt.start_ns - call.start_ns,
                attempt.end_ns - attempt.start_ns,
                total,
                "█",
                style,
            ),
            result,
        )
        previous_end = attempt.end_ns
    return table


def _worth_opening_table(collector: SpanCollector, exported: bool) -> Any:
    from rich.table import Table

    caption = (
        "Paste a trace id into Jaeger's search (http://localhost:16686 with "
        "exporters/compose.yaml) to see its waterfall."
        if exported
        else "The spans stayed in memory: run with --otlp-endpoint http://localhost:4318 "
        "(exporters/compose.yaml) to open these traces in Jaeger."
    )
    table = Table(
        title="Traces worth opening",
        title_justify="left",
        title_style="bold",
        caption=caption,
        caption_justify="left",
    )
    table.add_column("What")
    table.add_column("Trace id", no_wrap=True)
    table.add_column("Request", justify="right")
    table.add_column("Spans", justify="right")
    table.add_column("Inside")
    for label, trace in collector.worth_opening():
        table.add_row(
            label, trace.trace_id, format_ms(trace.root_ns), str(trace.spans), trace.inside()
        )
    return table


def render_summary(
    console: Console,
    collector: SpanCollector,
    *,
    wall_seconds: float,
    telemetry_rows: Sequence[tuple[str, str]],
    exported: bool = False,
) -> None:
    """Print the end-of-run summary: operations, errors, the traces worth opening, the
    slowest retried call, telemetry."""
    from rich.rule import Rule
    from rich.table import Table

    calls = collector.snapshot()
    console.print()
    console.print(
        Rule(f"[bold]evobs demo summary[/]: {len(calls):,} AWS calls in {wall_seconds:.1f} s")
    )
    console.print(_operations_table(collector))
    console.print(_errors_table(collector))
    console.print(_worth_opening_table(collector, exported))
    slowest = collector.slowest_retried()
    if slowest is not None:
        console.print(_waterfall(slowest, exported))
    else:
        console.print("[bold]Slowest retried call[/]: no call needed a retry this run")
    telemetry = Table(
        title="Telemetry", title_justify="left", title_style="bold", show_header=False
    )
    telemetry.add_column("Signal", style="bold")
    telemetry.add_column("Where")
    for name, where in telemetry_rows:
        telemetry.add_row(name, where)
    console.print(telemetry)
