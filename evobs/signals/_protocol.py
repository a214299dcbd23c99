"""The signal interface as a typed contract: :class:`Signal`, a ``Protocol`` a signal of
the user's satisfies by having the methods (or some of them); ``evobs.Signal`` and
``evobs.signals.Signal`` load it when first named (a cold start never pays for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._call import Attempt, Call
    from . import ClientCreated, ResourceCreated

__all__ = ["Signal"]


@runtime_checkable
class Signal(Protocol):
    """Receives call transitions. Every method must be cheap; exceptions are contained.

    Methods a signal does not define are simply not called. ``call`` and
    ``attempt`` are read-only to signals.
    """

    def call_started(self, call: Call) -> None: ...

    def attempt_started(self, call: Call, attempt: Attempt) -> None: ...

    def attempt_ended(self, call: Call, attempt: Attempt) -> None: ...

    def call_ended(self, call: Call) -> None: ...

    def client_created(self, event: ClientCreated) -> None: ...

    def resource_created(self, event: ResourceCreated) -> None: ...
