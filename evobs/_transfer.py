"""s3transfer: a parent span per managed transfer, and its context on the worker threads.

boto3 adds ``upload_file``, ``download_file``, ``upload_fileobj``, ``download_fileobj``
and ``copy`` to the S3 client class through ``class_attributes`` at
creating-client-class; evobs's handler for that event runs after boto3's (the generic
event name runs after ``creating-client-class.s3``) and wraps them there, so nothing
global is patched and only instrumented clients are affected.

The wrapper (``_client.wrap_transfer_methods``, which loads this module at the first
transfer) opens an INTERNAL span ``S3.<method>`` and hands boto3 a *carrier*: a
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

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._compat.botocore import client_signer
from ._lazy import lazy_names
from ._version import __version__

if TYPE_CHECKING:
    from ._install import Instrumentation
    from ._redact import exception_event, masks_for
else:
    # Imported by the first failed transfer: a cold start does not pay for redaction.
    exception_event, masks_for = lazy_names(
        globals(), "evobs._redact", "exception_event", "masks_for"
    )

__all__ = ["carrying", "run"]

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


def _keys(name: str, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """The S3 keys a transfer names (``copy``'s source too): its error text may quote them."""
    keys = [args[index + 1] if len(args) > index + 1 else kwargs.get("Key")]
    if name == "copy":
        source = args[0] if args else kwargs.get("CopySource")
        keys.append(source.get("Key") if isinstance(source, dict) else None)
    return [k for k in keys if isinstance(k, str) and k]


def _record_failure(
    inst: Instrumentation,
    span: Any,
    exc: BaseException,
    client: Any,
    keys: list[str],
) -> None:
    """The transfer's exception, recorded as a call span records its own (one redaction
    path: ``_redact.exception_event``, the client's own credentials and, unless
    ``capture_s3_keys``, the transfer's keys masked). A failing tracer is counted, never
    raised: the exception that propagates is the transfer's."""
    try:
        masks = masks_for(
            None,
            capture_s3_keys=inst.options.capture_s3_keys,
            signer=client_signer(client),
            keys=keys,
        )
        event, description = exception_event(exc, masks=masks)
    except Exception as error:
        inst.handlers.errors.record("s3-transfer", error)
        return
    try:
        span.add_event("exception", event)
    except Exception as error:
        inst.handlers.errors.record("s3-transfer", error)
    try:
        span.set_status(Status(StatusCode.ERROR, description))
    except Exception as error:
        inst.handlers.errors.record("s3-transfer", error)


def _close(inst: Instrumentation, span: Any, token: Any) -> None:
    """Detach the transfer's context and end its span; a failure is counted, never raised."""
    if token is not None:
        try:
            otel_context.detach(token)
        except Exception as error:
            inst.handlers.errors.record("s3-transfer", error)
    try:
        span.end()
    except Exception as error:
        inst.handlers.errors.record("s3-transfer", error)


def run(
    name: str,
    index: int,
    original: Callable[..., Any],
    self: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """One managed transfer (``original`` is boto3's method ``name``, ``Bucket`` at
    positional ``index``) in its span, its calls made on a carrier of the span's context
    (the wrapper ``_client.wrap_transfer_methods`` puts on the class calls this)."""
    inst: Instrumentation | None = getattr(type(self), "_evobs", None)
    if inst is None or not inst.enabled:
        return original(self, *args, **kwargs)
    span = token = None
    try:  # never break the transfer: any failure here means "no span"
        tracer = _tracer(inst)
        if tracer is None:
            return original(self, *args, **kwargs)
        span = tracer.start_span(
            f"S3.{name}",
            kind=SpanKind.INTERNAL,
            attributes=_attributes(inst, index, args, kwargs),
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        parent = otel_context.get_current()
        carrier = carrying(self, parent)
        if name == "copy":
            args, kwargs = _carry_source_client(parent, args, kwargs)
    except Exception as exc:
        inst.handlers.errors.record("s3-transfer", exc)
        if span is not None:
            _close(inst, span, token)
        return original(self, *args, **kwargs)
    try:
        return original(carrier, *args, **kwargs)
    except BaseException as exc:
        _record_failure(inst, span, exc, self, _keys(name, index, args, kwargs))
        raise
    finally:
        _close(inst, span, token)


def _instrumented(client: Any) -> bool:
    """Whether ``client`` has evobs's base class (``_client.is_instrumented``, which this
    module cannot import: ``_client`` loads it at the first transfer); only that class
    defines ``_evobs_parent``."""
    return hasattr(type(client), "_evobs_parent")


_SOURCE_CLIENT_INDEX: Final = 5  # copy(CopySource, Bucket, Key, ExtraArgs, Callback, SourceClient)


def _carry_source_client(
    parent: otel_context.Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``copy``'s HeadObject runs on ``SourceClient``: carry the context there too."""
    if len(args) > _SOURCE_CLIENT_INDEX:
        source = args[_SOURCE_CLIENT_INDEX]
        if _instrumented(source):
            args = (
                *args[:_SOURCE_CLIENT_INDEX],
                carrying(source, parent),
                *args[_SOURCE_CLIENT_INDEX + 1 :],
            )
    elif _instrumented(kwargs.get("SourceClient")):
        kwargs = {**kwargs, "SourceClient": carrying(kwargs["SourceClient"], parent)}
    return args, kwargs
