"""Validated, immutable instrumentation options, and evobs's environment variables.

Validation happens once, at ``instrument()`` time, with a clear error; the hot
path reads plain attributes and never re-checks anything. Every ``EVOBS_*``
variable is read one way (``truthy``, ``flag``, ``options_from_env``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "KNOWN_SIGNAL_NAMES",
    "SIGNAL_NAMES",
    "Options",
    "flag",
    "options_from_env",
    "truthy",
]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def truthy(name: str) -> bool:
    """Whether the variable is set to a true word (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def flag(name: str, default: bool) -> bool:
    """A yes/no variable: a true word, a false word (``0``, ``false``, ``no``, ``off``),
    or unset (anything else) for ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


#: The signals on by default.
SIGNAL_NAMES: Final = ("traces", "metrics", "logs")
#: Every built-in signal name: the defaults and ``otel_metrics`` (the OpenTelemetry
#: Metrics API, opt-in), alone or next to ``metrics`` (Prometheus).
KNOWN_SIGNAL_NAMES: Final = (*SIGNAL_NAMES, "otel_metrics")

#: Histogram buckets for AWS latencies: 1 ms to 60 s.
DEFAULT_DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_KNOWN: Final = frozenset(
    {
        "signals",
        "expected_errors",
        "capture_params",
        "capture_s3_keys",
        "capture_genai_content",
        "propagate_messages",
        "slow_call_seconds",
        "duration_buckets",
        "retry_log_rate",
        "retry_log_burst",
        "request_hook",
        "response_hook",
        "fast_spans",
        "xray_header",
        "peer_service",
    }
)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"evobs: option {name!r} must be a bool, got {type(value).__name__}")
    return value


class Options:
    """The options of one instrumentation (see ``docs/configuration.md``)."""

    __slots__ = (
        "capture_genai_content",
        "capture_params",
        "capture_s3_keys",
        "duration_buckets",
        "expected_errors",
        "fast_spans",
        "peer_service",
        "propagate_messages",
        "request_hook",
        "response_hook",
        "retry_log_burst",
        "retry_log_rate",
        "signals",
        "slow_call_seconds",
        "xray_header",
    )

    signals: tuple[Any, ...]
    expected_errors: Mapping[str, frozenset[str]]
    capture_params: bool
    capture_s3_keys: bool
    propagate_messages: bool
    slow_call_seconds: float | None
    duration_buckets: tuple[float, ...]
    retry_log_rate: float
    retry_log_burst: float
    request_hook: Callable[[Any, Any], None] | None
    response_hook: Callable[[Any, Any, Any], None] | None
    fast_spans: bool
    xray_header: bool
    peer_service: bool

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise TypeError(
                f"evobs: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_KNOWN))}"
            )
        self.signals = _signals(options.get("signals", SIGNAL_NAMES))
        self.expected_errors = _expected_errors(options.get("expected_errors"))
        self.capture_params = _bool("capture_params", options.get("capture_params", False))
        self.capture_s3_keys = _bool("capture_s3_keys", options.get("capture_s3_keys", False))
        genai_content = options.get("capture_genai_content")
        if genai_content is not None and not isinstance(genai_content, bool):
            raise TypeError(
                "evobs: option 'capture_genai_content' must be True, False or None (follow "
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT), got "
                f"{type(genai_content).__name__}"
            )
        #: Prompts and completions of GenAI calls: None follows
        #: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (off unless set).
        self.capture_genai_content: bool | None = genai_content
        self.propagate_messages = _bool(
            "propagate_messages", options.get("propagate_messages", True)
        )
        self.slow_call_seconds = _positive_or_none(
            "slow_call_seconds", options.get("slow_call_seconds")
        )
        self.duration_buckets = _buckets(options.get("duration_buckets", DEFAULT_DURATION_BUCKETS))
        rate = options.get("retry_log_rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ValueError(
                f"evobs: 'retry_log_rate' must be a positive number (events per second "
                f"per operation), got {rate!r}"
            )
        self.retry_log_rate = float(rate)
        burst = options.get("retry_log_burst", 10)
        if isinstance(burst, bool) or not isinstance(burst, int | float) or not burst >= 1:
            raise ValueError(
                f"evobs: 'retry_log_burst' must be a number >= 1 (events per operation "
                f"logged before the rate applies), got {burst!r}"
            )
        self.retry_log_burst = float(burst)
        self.request_hook = _hook("request_hook", options.get("request_hook"))
        self.response_hook = _hook("response_hook", options.get("response_hook"))
        self.fast_spans = _bool(
            "fast_spans", options.get("fast_spans", flag("EVOBS_FAST_SPANS", True))
        )
        self.xray_header = _bool(
            "xray_header", options.get("xray_header", flag("EVOBS_XRAY_HEADER", False))
        )
        self.peer_service = _bool(
            "peer_service", options.get("peer_service", flag("EVOBS_PEER_SERVICE", False))
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Options):
            return NotImplemented
        return all(_same(getattr(self, n), getattr(other, n)) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(self.duration_buckets)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Options({body})"

    def is_expected(self, service: str, operation: str, codes: Iterable[str]) -> bool:
        """Whether an error (given as code and/or HTTP status strings) is normal control flow."""
        table = self.expected_errors
        if not table:
            return False
        for key in (f"{service}.{operation}", service, "*"):
            allowed = table.get(key)
            if allowed and any(c in allowed for c in codes):
                return True
        return False


def _hook(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"evobs: option {name!r} must be a callable or None, got {value!r}")
    return value


def _same(a: object, b: object) -> bool:
    # Signal objects compare by identity (object's default ==); names and numbers by value.
    return a is b or a == b


def _signals(value: object) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            "evobs: 'signals' must be a collection of 'traces', 'metrics', 'logs', "
            f"'otel_metrics' and/or evobs.Signal objects, got {value!r}"
        )
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            if item not in KNOWN_SIGNAL_NAMES:
                raise ValueError(
                    f"evobs: unknown signal {item!r}; use 'traces', 'metrics', 'logs' or "
                    "'otel_metrics'"
                )
        elif not any(
            callable(getattr(item, m, None))
            for m in ("call_started", "call_ended", "attempt_ended", "client_created")
        ):
            raise TypeError(
                f"evobs: {item!r} is not a signal name nor an evobs.Signal "
                "(it has none of call_started/call_ended/attempt_ended/client_created)"
            )
        if any(item is o or (isinstance(item, str) and item == o) for o in out):
            continue
        out.append(item)
    return tuple(out)


def _expected_errors(value: object) -> Mapping[str, frozenset[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "evobs: 'expected_errors' must be a mapping such as "
            "{'S3.HeadObject': {'404'}, '*': {'ConditionalCheckFailedException'}}, "
            f"got {type(value).__name__}"
        )
    out: dict[str, frozenset[str]] = {}
    for key, codes in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"evobs: 'expected_errors' keys must be non-empty strings: {key!r}")
        if isinstance(codes, str):
            codes = {codes}
        if not isinstance(codes, Iterable):
            raise TypeError(
                f"evobs: 'expected_errors'[{key!r}] must be a set of error codes or "
                f"HTTP status strings, got {codes!r}"
            )
        items = frozenset(str(c) for c in codes)
        out[key] = items
    return out


def _positive_or_none(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"evobs: option {name!r} must be a number of seconds or None")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"evobs: option {name!r} must be a positive number, got {value!r}")
    return float(value)


def _buckets(value: object) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("evobs: 'duration_buckets' must be a sequence of seconds")
    try:
        buckets = tuple(float(b) for b in value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"evobs: 'duration_buckets' must hold numbers: {exc}") from None
    if not buckets:
        raise ValueError("evobs: 'duration_buckets' must not be empty")
    if any(not (b > 0 and math.isfinite(b)) for b in buckets) or list(buckets) != sorted(
        set(buckets)
    ):
        raise ValueError(
            f"evobs: 'duration_buckets' must be positive, finite and increasing: {buckets!r}"
        )
    return buckets


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``instrument()`` options from ``EVOBS_*`` variables, for instrumentation with no
    code (``opentelemetry-instrument``): ``EVOBS_SIGNALS`` (``traces,metrics,logs``),
    ``EVOBS_CAPTURE_PARAMS``, ``EVOBS_CAPTURE_S3_KEYS``, ``EVOBS_PROPAGATE_MESSAGES``,
    ``EVOBS_SLOW_CALL_SECONDS``, ``EVOBS_EXPECTED_ERRORS``
    (``S3.HeadObject=404;*=ConditionalCheckFailedException,NoSuchKey``). ``EVOBS_FAST_SPANS``
    and ``EVOBS_XRAY_HEADER`` are read by :class:`Options` itself. A malformed value
    raises ``ValueError`` naming the variable."""
    import os

    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    signals = env.get("EVOBS_SIGNALS", "").strip()
    if signals:
        out["signals"] = tuple(s.strip() for s in signals.split(",") if s.strip())
    for option in ("capture_params", "capture_s3_keys", "propagate_messages"):
        raw = env.get(f"EVOBS_{option.upper()}", "").strip().lower()
        if raw in ("1", "true", "yes", "on"):
            out[option] = True
        elif raw in ("0", "false", "no", "off"):
            out[option] = False
        elif raw:
            raise ValueError(f"evobs: EVOBS_{option.upper()} must be true or false, got {raw!r}")
    slow = env.get("EVOBS_SLOW_CALL_SECONDS", "").strip()
    if slow:
        try:
            out["slow_call_seconds"] = float(slow)
        except ValueError:
            raise ValueError(
                f"evobs: EVOBS_SLOW_CALL_SECONDS must be a number of seconds, got {slow!r}"
            ) from None
    expected = env.get("EVOBS_EXPECTED_ERRORS", "").strip()
    if expected:
        table: dict[str, set[str]] = {}
        for entry in expected.split(";"):
            key, sep, codes = entry.partition("=")
            if not entry.strip():
                continue
            if not sep or not key.strip() or not codes.strip():
                raise ValueError(
                    "evobs: EVOBS_EXPECTED_ERRORS entries are 'Service.Operation=code,code' "
                    f"separated by ';', got {entry!r}"
                )
            table.setdefault(key.strip(), set()).update(
                c.strip() for c in codes.split(",") if c.strip()
            )
        out["expected_errors"] = table
    return out
