"""Names imported on first use, then bound for good: a cold start pays only for what runs.

A Lambda function pays every import of its own at every cold start. Code that only some
calls reach (redaction after an error, trace context in messages) binds its names to
stand-ins here instead of importing them; the first use imports the module and rebinds
every name of the group in the importing module's namespace, so from then on a name is
an ordinary global (no per-call cost), and a stand-in that was copied somewhere still
forwards to the real object.

Type checkers see the real import: put it under ``if TYPE_CHECKING:`` and the stand-ins
in its ``else:`` branch::

    if TYPE_CHECKING:
        from ._redact import error_message
    else:
        (error_message,) = lazy_names(globals(), "evobs._redact", "error_message")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["lazy_module", "lazy_names"]


class _Group:
    """The names one namespace takes from one module, resolved together, once."""

    __slots__ = ("bindings", "module", "namespace")

    def __init__(self, namespace: dict[str, Any], module: str, bindings: dict[str, str]) -> None:
        self.namespace = namespace
        self.module = module
        #: name in ``namespace`` -> attribute of the module ("" for the module itself)
        self.bindings = bindings

    def resolve(self, name: str) -> Any:
        module = import_module(self.module)
        values = {
            bound: getattr(module, attribute) if attribute else module
            for bound, attribute in self.bindings.items()
        }
        self.namespace.update(values)
        return values[name]


class _StandIn:
    """Stands for one name until first used (called, or an attribute read)."""

    __slots__ = ("_group", "_name", "_target")

    def __init__(self, group: _Group, name: str) -> None:
        self._group = group
        self._name = name
        self._target: Any = None

    def _resolve(self) -> Any:
        target = self._target
        if target is None:
            target = self._target = self._group.resolve(self._name)
        return target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._resolve(), attribute)

    def __repr__(self) -> str:
        return f"<not yet imported: {self._group.module}.{self._name}>"


def lazy_names(namespace: dict[str, Any], module: str, *names: str) -> tuple[Any, ...]:
    """Stand-ins for ``from module import *names`` in ``namespace`` (a module's
    ``globals()``), in order; the first use of any of them binds them all."""
    group = _Group(namespace, module, {name: name for name in names})
    return tuple(_StandIn(group, name) for name in names)


def lazy_module(namespace: dict[str, Any], module: str, name: str) -> Any:
    """A stand-in for ``import module as name`` in ``namespace``, imported on the first
    attribute read."""
    return _StandIn(_Group(namespace, module, {name: ""}), name)
