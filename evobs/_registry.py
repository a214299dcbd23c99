"""Metric families created once per ``CollectorRegistry`` and shared by every instrumentation.

Two sessions instrumented into one registry share the families; a registry that
already holds a family of the same name that evobs did not create is reported at
``instrument()`` time with a clear error, never at call time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._fork import ForkSafeLock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricConflictError", "alias", "family"]

M = TypeVar("M")

_FAMILIES: Final[weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_LOCK: Final = ForkSafeLock()


class MetricConflictError(ValueError):
    """The registry already holds a metric of that name that evobs did not create."""


def family(
    registry: CollectorRegistry,
    factory: Callable[..., M],
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    **kwargs: Any,
) -> M:
    """Return the family ``name`` in ``registry``, creating and registering it once."""
    with _LOCK:
        per_registry = _FAMILIES.setdefault(registry, {})
        existing = per_registry.get(name)
        if existing is not None:
            from ._compat.prometheus import labelnames as labels_of

            existing_labels = labels_of(existing)
            if type(existing) is not factory or existing_labels != tuple(labelnames):
                raise MetricConflictError(
                    f"evobs: metric {name!r} already exists in this registry with another "
                    f"type or labels ({type(existing).__name__} {existing_labels})"
                )
            return existing  # type: ignore[no-any-return]
        try:
            metric = factory(
                name, documentation, labelnames=tuple(labelnames), registry=registry, **kwargs
            )
        except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry"
            raise MetricConflictError(
                f"evobs: cannot register metric {name!r}: the registry already holds a "
                f"metric of that name that evobs did not create ({exc}). Pass another "
                "registry= to evobs.instrument(), or remove the other metric."
            ) from None
        per_registry[name] = metric
        return metric


def alias(old: Any, new: CollectorRegistry) -> None:
    """From now on ``new`` has the families of ``old`` (the pending stand-in of
    ``REGISTRY``, ``_deferred_registry``), the same objects under both keys."""
    with _LOCK:
        families = _FAMILIES.setdefault(old, {})
        existing = _FAMILIES.get(new)
        if existing is not None and existing is not families:
            existing.update(families)
            _FAMILIES[old] = existing
        else:
            _FAMILIES[new] = families
