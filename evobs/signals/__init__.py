"""The signal interface: what a call record turns into.

A signal receives the transitions of every :class:`~evobs.Call` and renders
them for one backend. The built-in signals are ``traces``, ``metrics`` and
``logs``; a user can pass their own object with the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._call import Attempt, Call
    from ._protocol import Signal

__all__ = ["ClientCreated", "ResourceCreated", "Signal", "SignalBase", "receivers"]


class ClientCreated:
    """A botocore client was built: ``aws_sdk_clients_created_total`` and its construction time."""

    __slots__ = ("duration_ns", "region", "service")

    def __init__(self, service: str, region: str | None, duration_ns: int) -> None:
        self.service = service
        self.region = region
        self.duration_ns = duration_ns

    def __repr__(self) -> str:
        return f"ClientCreated({self.service!r}, {self.region!r}, {self.duration_ns}ns)"


class ResourceCreated:
    """A boto3 resource class was built (``s3.Bucket``, ``dynamodb.Table``...)."""

    __slots__ = ("resource", "service")

    def __init__(self, service: str, resource: str) -> None:
        self.service = service
        self.resource = resource

    def __repr__(self) -> str:
        return f"ResourceCreated({self.service!r}, {self.resource!r})"


class SignalBase:
    """A :class:`Signal` whose every method does nothing: subclass it and define only the
    transitions you render. The no-op methods are recognised and never called, so
    they cost nothing per call."""

    __slots__ = ()

    def call_started(self, call: Call) -> None:
        """The call's span would start here: params are known, the endpoint too."""

    def attempt_started(self, call: Call, attempt: Attempt) -> None:
        """An HTTP attempt starts (the second and later ones are retries)."""

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        """An attempt ended with a status, an error code or an exception."""

    def call_ended(self, call: Call) -> None:
        """The call is over: outcome, attempts, durations are final."""

    def call_forgotten(self, call: Call) -> None:
        """A started call that will never end: in a forked child, a call another thread
        had in flight at the fork. Let go of what was kept for it (optional method)."""

    def client_created(self, event: ClientCreated) -> None:
        """A botocore client was built."""

    def resource_created(self, event: ResourceCreated) -> None:
        """A boto3 resource class was built."""


def __getattr__(name: str) -> Any:
    """``Signal``, the typed contract (``_protocol``), built when first asked for: a
    ``Protocol`` class costs every cold start that never names it."""
    if name == "Signal":
        from ._protocol import Signal

        return Signal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def receivers(signals: tuple[Signal, ...], method: str) -> tuple[Callable[..., None], ...]:
    """The bound ``method`` of every signal that really has it (not :class:`SignalBase`'s
    no-op, not missing on a user's partial signal object)."""
    noop = getattr(SignalBase, method)
    return tuple(
        getattr(s, method)
        for s in signals
        if callable(getattr(s, method, None)) and getattr(type(s), method, None) is not noop
    )
