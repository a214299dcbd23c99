"""Per-service span attributes and messaging hooks, one small module per AWS service.

The table :data:`SERVICES` maps botocore's service id to the module that describes
it; adding a service is adding one entry (and its module, which defines ``SPEC``).
Modules are imported on first use, so a process that never calls Kinesis never
imports the Kinesis extractor.

Everything here is computed once per operation (:func:`traits_for`, called when
evobs first sees an operation) or, per call, only for sampled spans and only from
what is already in hand: the user's params and botocore's parsed response.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import SpanKind

from .._log import get_logger
from . import _semconv

if TYPE_CHECKING:
    from .._call import Call
    from .._log import HandlerErrors
    from .._options import Options

__all__ = [
    "SERVICES",
    "Extractor",
    "OperationTraits",
    "ServiceSpec",
    "peer_attributes",
    "rpc_attributes",
    "traits_for",
]

#: service id (``model.service_model.service_id``) -> module under ``evobs.services``.
SERVICES: Final[Mapping[str, str]] = {
    "S3": "s3",
    "DynamoDB": "dynamodb",
    "SQS": "sqs",
    "SNS": "sns",
    "Lambda": "lambda_",
    "Kinesis": "kinesis",
    "Secrets Manager": "secretsmanager",
    "SFN": "stepfunctions",
    "EventBridge": "eventbridge",
    "Bedrock Runtime": "bedrock_runtime",
}

#: ``(operation name, params, options, attributes)``: add request attributes in place.
RequestFn = Callable[[str, dict[str, Any], "Options", dict[str, Any]], None]
#: ``(operation name, parsed response, attributes)``: add response attributes in place.
ResponseFn = Callable[[str, dict[str, Any], dict[str, Any]], None]
#: ``(call, params)``: edit the params (messaging propagation) as the call starts, before
#: botocore (or any provide-client-params handler) sees them; notes go to ``call.notes``.
EditFn = Callable[["Call", dict[str, Any]], None]
#: ``(parsed, call)``: undo what the edit added, at after-call.
FinishFn = Callable[[dict[str, Any], "Call"], None]
#: ``(parsed) -> span contexts`` to link the call's span to (message consumers).
LinksFn = Callable[[dict[str, Any]], list[Any]]
#: ``(call, params, options)``: record facts of the request on the call as it starts,
#: for every call of the operation (sampled or not).
StartFn = Callable[["Call", dict[str, Any], "Options"], None]
#: ``(call, parsed, errors)``: record facts of the result on the call, at the first
#: after-call handler, before any user handler sees the response.
ResultFn = Callable[["Call", dict[str, Any], "HandlerErrors"], None]


class ServiceSpec:
    """What one service module declares: its extractors and its messaging operations."""

    __slots__ = (
        "edits",
        "finishes",
        "injects",
        "kinds",
        "links",
        "request",
        "response",
        "results",
        "starts",
        "static",
    )

    def __init__(
        self,
        *,
        static: Callable[[str], dict[str, Any]] | None = None,
        request: RequestFn | None = None,
        response: ResponseFn | None = None,
        kinds: Mapping[str, SpanKind] | None = None,
        injects: Mapping[str, EditFn] | None = None,
        edits: Mapping[str, EditFn] | None = None,
        finishes: Mapping[str, FinishFn] | None = None,
        links: Mapping[str, LinksFn] | None = None,
        starts: Mapping[str, StartFn] | None = None,
        results: Mapping[str, ResultFn] | None = None,
    ) -> None:
        self.static = static
        self.request = request
        self.response = response
        self.kinds = kinds or {}
        #: Operations that carry their own span's context into the message (early span).
        self.injects = injects or {}
        self.edits = edits or {}
        self.finishes = finishes or {}
        self.links = links or {}
        #: Facts of the request and of the result the signals render (GenAI calls).
        self.starts = starts or {}
        self.results = results or {}


class Extractor:
    """One operation's hooks, bound once (``op.extractor``); ``None`` fields cost nothing."""

    __slots__ = (
        "edit",
        "finish",
        "injects",
        "links",
        "name",
        "request",
        "response",
        "result",
        "start",
        "static",
    )

    def __init__(self, name: str, spec: ServiceSpec) -> None:
        self.name = name
        self.static: dict[str, Any] = spec.static(name) if spec.static is not None else {}
        #: ``(params, options, attrs)``: adds the request attributes (not ``static``, which
        #: the span starts with) to ``attrs``; for a sampled span only. None: none.
        self.request: Callable[[dict[str, Any], Options, dict[str, Any]], None] | None = (
            None if spec.request is None else partial(spec.request, name)
        )
        #: ``(parsed, attrs)``: adds the response attributes to ``attrs``; for a sampled
        #: span only. None: none.
        self.response: Callable[[dict[str, Any], dict[str, Any]], None] | None = (
            None if spec.response is None else partial(spec.response, name)
        )
        #: Edits params as the call starts (propagation); only with ``propagate_messages``.
        self.edit = spec.injects.get(name) or spec.edits.get(name)
        self.injects = name in spec.injects
        #: Undoes the edit's visible effects at after-call (ReceiveMessage).
        self.finish = spec.finishes.get(name)
        self.links = spec.links.get(name)
        #: Records the request's facts on the call as it starts (GenAI).
        self.start = spec.starts.get(name)
        #: Records the result's facts on the call at after-call (GenAI).
        self.result = spec.results.get(name)

    def __repr__(self) -> str:
        return f"<Extractor {self.name}>"


_SPECS: dict[str, ServiceSpec | None] = {}


def _spec(service: str) -> ServiceSpec | None:
    if service in _SPECS:
        return _SPECS[service]
    module = SERVICES.get(service)
    spec = None
    if module is not None:
        spec = getattr(import_module(f"{__name__}.{module}"), "SPEC", None)
    _SPECS[service] = spec
    return spec


class OperationTraits:
    """What the services table says about one operation: its extractor (None: no per-call
    cost), its span kind, and whether its span must exist while params are editable."""

    __slots__ = ("early_span", "extractor", "span_kind")

    def __init__(
        self,
        extractor: Extractor | None = None,
        span_kind: SpanKind = SpanKind.CLIENT,
        early_span: bool = False,
    ) -> None:
        self.extractor = extractor
        self.span_kind = span_kind
        #: Messaging sends carry their own span's context into the message.
        self.early_span = early_span

    def __repr__(self) -> str:
        return f"<OperationTraits {self.extractor} {self.span_kind.name} early={self.early_span}>"


_PLAIN: Final = OperationTraits()


def traits_for(service: str, operation: str) -> OperationTraits:
    """The traits of one operation (computed once per operation by ``_operation``)."""
    try:
        spec = _spec(service)
        if spec is None:
            return _PLAIN
        extractor = Extractor(operation, spec)
    except Exception as exc:  # a broken extractor costs its attributes, never the call
        get_logger().warning("evobs.extractor_failed", service=service, error=repr(exc))
        return _PLAIN
    return OperationTraits(
        extractor,
        spec.kinds.get(operation, SpanKind.CLIENT),
        # Operations that inject their own span's context need it while params are editable.
        extractor.injects,
    )


def peer_attributes(service: str) -> dict[str, Any]:
    """The AWS service as the peer (``service.peer.name``, ``peer.service``)."""
    return _semconv.peer(service)


def rpc_attributes(service: str, method: str, peer_service: bool = False) -> dict[str, Any]:
    """The RPC attributes of an operation, in the generation ``OTEL_SEMCONV_STABILITY_OPT_IN``
    asks for, and the AWS service as the peer when ``peer_service`` (computed once per
    operation by the traces signal)."""
    return _semconv.rpc(service, method, peer_service=peer_service)
