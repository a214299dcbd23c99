"""The base classes evobs adds to botocore clients: the call-level safety net.

Added at creating-client-class (the documented way to extend generated clients),
or by a ``__class__`` swap for a client instrumented after its creation. Their
``_make_api_call`` opens a :class:`~evobs._handlers.CallFrame` around the parent's
(attaching, for a transfer's carrier clone, the transfer span's context),
so every call that opened a span is closed and the OpenTelemetry context restored,
whatever raised. One skeleton for both: the async variant only awaits.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context

from ._operation import operation_for

if TYPE_CHECKING:
    from ._install import Instrumentation
    from ._operation import Operation

__all__ = [
    "TRANSFER_METHODS",
    "AsyncInstrumentedClient",
    "InstrumentedClient",
    "base_class_for",
    "is_instrumented",
    "wrap_transfer_methods",
]

#: boto3's managed-transfer methods on S3 clients -> position of ``Bucket`` among the
#: positional arguments (``Key`` follows it).
TRANSFER_METHODS: Final = {
    "upload_file": 1,
    "download_file": 0,
    "upload_fileobj": 1,
    "download_fileobj": 0,
    "copy": 1,
}


class _TimedConstruction:
    """Times client construction and reports it once the client exists."""

    _evobs: Instrumentation | None = None
    _evobs_class_ns: int = 0
    #: This client's region and its operations (``evobs._operation``) by name, looked
    #: up at its first call of each: a client's service model and region never change.
    _evobs_ops: tuple[str | None, dict[str, Operation]] | None = None
    #: The OTel context an s3transfer carrier clone runs its calls in (``_transfer``).
    _evobs_parent: otel_context.Context | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inst = self._evobs
        if inst is not None and inst.enabled and self._evobs_class_ns:
            meta = getattr(self, "meta", None)
            service_model = getattr(meta, "service_model", None)
            service = str(getattr(service_model, "service_id", "unknown"))
            inst.handlers.client_created(
                service,
                getattr(meta, "region_name", None),
                perf_counter_ns() - self._evobs_class_ns,
            )


class InstrumentedClient(_TimedConstruction):
    """The safety net for botocore clients."""

    def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        try:
            parent = super()._make_api_call  # type: ignore[misc]
        except TypeError:
            # Uninstrumented by another thread since this method was looked up: the
            # client's class is its own again (not a subclass of this one), and its own
            # method is the call.
            return type(self)._make_api_call(self, operation_name, api_params)
        inst = self._evobs
        if inst is None or not inst.handlers.enabled:
            return parent(operation_name, api_params)
        region, op = _operation(self, operation_name)
        frame = inst.handlers.open_frame(op, region, api_params, self._evobs_parent)
        error: BaseException | None = None
        try:
            return parent(operation_name, api_params)
        except BaseException as exc:
            error = exc
            raise
        finally:
            # The exception's traceback holds this frame: the reference back to it is
            # dropped, so a failed call leaves no garbage cycle.
            frame.close(error)
            error = None


class AsyncInstrumentedClient(_TimedConstruction):
    """The same safety net for aiobotocore, whose ``_make_api_call`` is a coroutine (a
    synchronous try/finally around it would close the span at once)."""

    async def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        try:
            parent = super()._make_api_call  # type: ignore[misc]
        except TypeError:  # uninstrumented meanwhile: see InstrumentedClient
            return await type(self)._make_api_call(self, operation_name, api_params)
        inst = self._evobs
        if inst is None or not inst.handlers.enabled:
            return await parent(operation_name, api_params)
        region, op = _operation(self, operation_name)
        frame = inst.handlers.open_frame(op, region, api_params, self._evobs_parent)
        error: BaseException | None = None
        try:
            return await parent(operation_name, api_params)
        except BaseException as exc:
            error = exc
            raise
        finally:
            frame.close(error)
            error = None


def _operation(client: _TimedConstruction, name: str) -> tuple[str | None, Operation | None]:
    """The client's region and the operation ``name`` (None where the client cannot say:
    the call is then adopted at before-call, as for a client evobs did not build)."""
    known = client._evobs_ops
    if known is not None:
        op = known[1].get(name)
        if op is not None:
            return known[0], op
    try:
        meta: Any = getattr(client, "meta", None)
        if known is None:
            known = client._evobs_ops = (meta.region_name, {})
        op = known[1][name] = operation_for(meta.service_model.operation_model(name))
        return known[0], op
    except Exception:
        return None, None  # an unknown operation: botocore raises it, with its own words


def base_class_for(classes: Iterable[type]) -> type[_TimedConstruction]:
    """The safety net that fits a client class: async if its ``_make_api_call`` is."""
    is_async = any(
        inspect.iscoroutinefunction(getattr(cls, "_make_api_call", None)) for cls in classes
    )
    return AsyncInstrumentedClient if is_async else InstrumentedClient


def is_instrumented(client: Any) -> bool:
    """Whether a client object already carries evobs's safety net."""
    return isinstance(client, InstrumentedClient | AsyncInstrumentedClient)


def wrap_transfer_methods(attributes: dict[str, Any]) -> None:
    """Wrap boto3's transfer methods in a client's ``class_attributes`` (once). The
    span and the context carrier (``_transfer``) are loaded by the first transfer: an
    S3 client that never transfers costs no more to create."""
    for name, index in TRANSFER_METHODS.items():
        original = attributes.get(name)
        if (
            not callable(original)
            or hasattr(original, "_evobs_original")
            or inspect.iscoroutinefunction(original)
        ):
            continue
        attributes[name] = _transfer_method(name, index, original)


def _transfer_method(name: str, index: int, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def transfer(self: Any, *args: Any, **kwargs: Any) -> Any:
        from ._transfer import run

        return run(name, index, original, self, args, kwargs)

    transfer._evobs_original = original  # type: ignore[attr-defined]
    return transfer
