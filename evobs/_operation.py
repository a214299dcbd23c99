"""What evobs knows about one AWS operation, looked up once and reused by every call.

The set of (service, operation) pairs is finite (the botocore data files), so
this cache is bounded even when an application creates a client per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._fork import ForkSafeLock
from .services import traits_for

if TYPE_CHECKING:
    from opentelemetry.trace import SpanKind

    from .services import Extractor

__all__ = ["Operation", "operation_for"]


class Operation:
    """Static facts of one operation: names, throttling codes, the model."""

    __slots__ = (
        "early_span",
        "extractor",
        "input_plan",
        "model",
        "modeled_throttling",
        "name",
        "service",
        "service_name",
        "sid",
        "span_kind",
        "span_name",
    )

    def __init__(self, model: Any) -> None:
        service_model = model.service_model
        self.model = model
        self.service: str = str(service_model.service_id)
        self.sid: str = service_model.service_id.hyphenize()
        self.service_name: str = service_model.service_name
        self.name: str = model.name
        self.span_name = f"{self.service}.{self.name}"
        self.modeled_throttling = _modeled_throttling_codes(model)
        traits = traits_for(self.service, self.name)
        #: Per-service attributes and messaging hooks (``evobs.services``); None: no cost.
        self.extractor: Extractor | None = traits.extractor
        #: CLIENT, or PRODUCER/CONSUMER for messaging operations.
        self.span_kind: SpanKind = traits.span_kind
        #: Messaging sends need their span while params are still editable.
        self.early_span: bool = traits.early_span
        #: How redaction walks this operation's params (``evobs._redact``), planned at
        #: its first failure: the model's names are read once, not per failed call.
        self.input_plan: Any = None

    def __repr__(self) -> str:
        return f"<Operation {self.span_name}>"


def _modeled_throttling_codes(model: Any) -> frozenset[str]:
    """Error codes the model marks ``retryable: {throttling: true}`` (as botocore reads them)."""
    codes = set()
    for shape in getattr(model, "error_shapes", None) or ():
        retryable = shape.metadata.get("retryable")
        if retryable and retryable.get("throttling"):
            codes.add(shape.metadata.get("error", {}).get("code") or shape.name)
    return frozenset(codes)


_CACHE: Final[dict[tuple[str, str, str], Operation]] = {}
_LOCK: Final = ForkSafeLock()


def operation_for(model: Any) -> Operation:
    """The cached :class:`Operation` for a botocore ``OperationModel``."""
    service_model = model.service_model
    key = (service_model.service_name, service_model.api_version, model.name)
    op = _CACHE.get(key)
    if op is None:
        with _LOCK:
            op = _CACHE.get(key)
            if op is None:
                op = _CACHE[key] = Operation(model)
    return op
