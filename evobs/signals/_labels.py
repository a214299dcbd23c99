"""What the metrics signals share about labels and buckets: the cap on values from the
wire, and the buckets of in-process timings. No metrics library here: the Prometheus
and the OpenTelemetry metrics signals both use it, and neither imports the other."""

from __future__ import annotations

from typing import Final

from .._fork import ForkSafeLock

__all__ = ["ERROR_TYPE_CAP", "LOCAL_BUCKETS", "NO_REGION", "OTHER", "ErrorTypes"]

#: Distinct ``error_type`` values kept per (service, operation) and registry;
#: every further value is counted as :data:`OTHER`.
ERROR_TYPE_CAP: Final = 64
#: The label value that stands for "past the cardinality cap".
OTHER: Final = "other"
#: Error types longer than this are counted as :data:`OTHER` (a well-formed AWS
#: error code or exception class name is far shorter).
MAX_ERROR_TYPE_LEN: Final = 128
#: The ``region`` label when the client has none.
NO_REGION: Final = "unknown"

#: Buckets for work done inside the process (serialization, signing): those take
#: tens of microseconds, below the first bucket of a network latency histogram;
#: signing includes credential resolution, which can take seconds.
LOCAL_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
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
)


class ErrorTypes:
    """The admitted ``error_type`` values of one errors family, per (service, operation).

    Shared by every signal on the registry, so the cap holds for the family, not
    per instrumentation.
    """

    __slots__ = ("lock", "seen")

    def __init__(self) -> None:
        self.lock = ForkSafeLock()
        self.seen: dict[tuple[str, str], set[str]] = {}

    def admit(self, service: str, operation: str, error_type: str) -> str:
        if len(error_type) > MAX_ERROR_TYPE_LEN:
            return OTHER
        with self.lock:
            seen = self.seen.setdefault((service, operation), set())
            if error_type in seen:
                return error_type
            if len(seen) < ERROR_TYPE_CAP:
                seen.add(error_type)
                return error_type
            return OTHER
