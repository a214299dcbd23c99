"""s3transfer: a parent span per managed transfer, and its context on the worker threads.

boto3 adds ``upload_file``, ``download_file``, ``upload_fileobj``, ``download_fileobj``
and ``copy`` to the S3 client class through ``class_attributes`` at
creating-client-class; evobs's handler for that event runs after boto3's (the generic
event name runs after ``creating-client-class.s3``) and wraps them there, so nothing
global is patched and only instrumented clients are affected.

The wrapper opens an INTERNAL span ``S3.<method>`` and hands boto3 a *carrier*: a
shallow clone of the client (the same ``__dict__`` contents: endpoint, event emitter,
config, credentials are shared, nothing is rebuilt) with one extra instance attribute,
``_evobs_parent``, the transfer span's OTel context. s3transfer makes every part call
(CreateMultipartUpload, UploadPart, GetObject ranges, CompleteMultipartUpload...) on
that object, from its own worker threads, where context variables are empty; the
injected base class's ``_make_api_call`` attaches ``_evobs_parent`` for the duration of
each call (and detaches it after, LIFO), so each part's span is the transfer span's
child. The parent is carried by the object the transfer uses, never by thread identity
or by bucket/key, so concurrent transfers on one client cannot be confused.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._client import is_instrumented
from ._version import __version__

if TYPE_CHECKING:
    from ._install import Instrumentation

__all__ = ["TRANSFER_METHODS", "carrying", "wrap_transfer_methods"]

#: method -> position of ``Bucket`` among the positional arguments (``Key`` follows it).
TRANSFER_METHODS: Final = {
    "upload_file": 1,
    "download_file": 0,
    "upload_fileobj": 1,
    "download_fileobj": 0,
    "copy": 1,
}

_TRACERS: Final[weakref.WeakKeyDictionary[Any, Any]] = weakref.WeakKeyDictionary()


def _tracer(inst: Instrumentation) -> Any:
    """The instrumentation's tracer, or None when its traces signal is off."""
    try:
        return _TRACERS[inst]
    except KeyError:
        pass
    tracer = None
    if any(getattr(s, "name", None) == "traces" for s in inst.signals):
        tracer = trace.get_tracer("evobs", __version__, tracer_provider=inst.tracer_provider)
    _TRACERS[inst] = tracer
    return tracer


def carrying(client: Any, parent: otel_context.Context) -> Any:
    """A shallow clone of ``client`` whose calls run with ``parent`` as their context."""
    clone = object.__new__(type(client))
    clone.__dict__.update(client.__dict__)
    clone.__dict__["_evobs_parent"] = parent
    return clone


def _attributes(
    inst: Instrumentation, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    bucket = args[index] if len(args) > index else kwargs.get("Bucket")
    key = args[index + 1] if len(args) > index + 1 else kwargs.get("Key")
    attributes: dict[str, Any] = {}
    if isinstance(bucket, str):
        attributes["aws.s3.bucket"] = bucket
    if isinstance(key, str) and inst.options.capture_s3_keys:
        attributes["aws.s3.key"] = key
    return attributes


def _wrap(name: str, index: int, original: Callable[..., Any]) -> Callable[..., Any]:
    span_name = f"S3.{name}"

    @functools.wraps(original)
    def transfer(self: Any, *args: Any, **kwargs: Any) -> Any:
        inst: Instrumentation | None = getattr(type(self), "_evobs", None)
        if inst is None or not inst.enabled:
            return original(self, *args, **kwargs)
        span = token = None
        try:  # never break the transfer: any failure here means "no span"
            tracer = _tracer(inst)
            if tracer is None:
                return original(self, *args, **kwargs)
            span = tracer.start_span(
                span_name, kind=SpanKind.INTERNAL, attributes=_attributes(inst, index, args, kwargs)
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            parent = otel_context.get_current()
            carrier = carrying(self, parent)
            if name == "copy":
                args, kwargs = _carry_source_client(parent, args, kwargs)
        except Exception as exc:
            inst.handlers.errors.record("s3-transfer", exc)
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                span.end()
            return original(self, *args, **kwargs)
        try:
            return original(carrier, *args, **kwargs)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    transfer._evobs_original = original  # type: ignore[attr-defined]
    return transfer


_SOURCE_CLIENT_INDEX: Final = 5  # copy(CopySource, Bucket, Key, ExtraArgs, Callback, SourceClient)


def _carry_source_client(
    parent: otel_context.Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``copy``'s HeadObject runs on ``SourceClient``: carry the context there too."""
    if len(args) > _SOURCE_CLIENT_INDEX:
        source = args[_SOURCE_CLIENT_INDEX]
        if is_instrumented(source):
            args = (
                *args[:_SOURCE_CLIENT_INDEX],
                carrying(source, parent),
                *args[_SOURCE_CLIENT_INDEX + 1 :],
            )
    elif is_instrumented(kwargs.get("SourceClient")):
        kwargs = {**kwargs, "SourceClient": carrying(kwargs["SourceClient"], parent)}
    return args, kwargs


def wrap_transfer_methods(attributes: dict[str, Any]) -> None:
    """Wrap boto3's transfer methods in a client's ``class_attributes`` (once)."""
    for name, index in TRANSFER_METHODS.items():
        original = attributes.get(name)
        if (
            not callable(original)
            or hasattr(original, "_evobs_original")
            or inspect.iscoroutinefunction(original)
        ):
            continue
        attributes[name] = _wrap(name, index, original)
