"""Metric families per ``CollectorRegistry``, and prometheus_client's global ``REGISTRY``
before prometheus_client is imported.

Families are created once per registry and shared by every instrumentation: two
sessions instrumented into one registry share them; a registry that already holds a
family of the same name that evobs did not create is reported at ``instrument()`` time
with a clear error, never at call time.

Importing prometheus_client costs a Lambda cold start about as much as evobs itself (its
``__init__`` brings the exposition code, ``http.server``, ``wsgiref`` and the process,
platform and gc collectors), and nothing needs it until something collects: the
per-call families are evobs's own (``signals._series``). So when no ``registry=`` is
given, prometheus_client is not imported yet and not in multiprocess mode, families go
to :data:`PendingRegistry`, a stand-in that keeps them, and a post-import hook (the
pattern of wrapt's and ddtrace's import hooks) registers them on ``REGISTRY`` right
after ``prometheus_client`` is imported, by whoever imports it: the application's
``/metrics`` handler, ``evobs.start_metrics_server``, a test.

The hook is a ``sys.meta_path`` finder that answers only for the name
``prometheus_client``: it asks the finders after it for the module's spec and wraps the
spec's loader, which puts the real loader back on the module before executing it (the
module imported is exactly the one without the hook) and registers the pending
families after. It runs under the import lock of ``prometheus_client`` and removes
itself once it has fired; ``evobs.uninstrument`` removes it when no instrumentation is
left. A failure in it is counted (``evobs_handler_errors_total{event=
"deferred-registration"}``) and logged, never raised into the importer.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._fork import ForkSafeLock

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from prometheus_client import CollectorRegistry

    from ._log import HandlerErrors

__all__ = [
    "DEFERRED_EVENT",
    "MetricConflictError",
    "PendingRegistry",
    "alias",
    "family",
    "global_registry",
    "hook_installed",
    "remove_hook",
]

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
    ``REGISTRY``, below), the same objects under both keys."""
    with _LOCK:
        families = _FAMILIES.setdefault(old, {})
        existing = _FAMILIES.get(new)
        if existing is not None and existing is not families:
            existing.update(families)
            _FAMILIES[old] = existing
        else:
            _FAMILIES[new] = families


# -- prometheus_client's global REGISTRY, before its import --------------------

_MODULE: Final = "prometheus_client"
#: The ``event`` label of a failure here in ``evobs_handler_errors_total``.
DEFERRED_EVENT: Final = "deferred-registration"

#: Guards the state below; never held while importing (the hook takes it under the
#: import lock of prometheus_client).
_PENDING_LOCK: Final = ForkSafeLock()
_STATE: dict[str, Any] = {"pending": None, "finder": None, "errors": None}


class PendingRegistry:
    """Stands for ``prometheus_client.REGISTRY`` until prometheus_client is imported:
    keeps what is registered on it, and forwards to ``REGISTRY`` once it exists."""

    __slots__ = ("__weakref__", "_collectors", "_target")

    def __init__(self) -> None:
        self._collectors: list[Any] = []
        self._target: CollectorRegistry | None = None

    def register(self, collector: Any) -> None:
        with _PENDING_LOCK:
            target = self._target
            if target is None:
                self._collectors.append(collector)
                return
        target.register(collector)

    def unregister(self, collector: Any) -> None:
        with _PENDING_LOCK:
            target = self._target
            if target is None:
                self._collectors.remove(collector)
                return
        target.unregister(collector)

    def __repr__(self) -> str:
        return f"<evobs pending prometheus_client.REGISTRY: {len(self._collectors)} collectors>"


def global_registry() -> CollectorRegistry:
    """``prometheus_client.REGISTRY`` if prometheus_client is imported (or must be: in
    multiprocess mode, whose families are its own), else the pending stand-in, with the
    hook that registers its families when prometheus_client is imported."""
    from ._compat.prometheus import multiprocess_mode

    if _MODULE not in sys.modules and not multiprocess_mode():
        with _PENDING_LOCK:
            if _MODULE not in sys.modules:
                pending = _STATE["pending"]
                if pending is None:
                    pending = _STATE["pending"] = PendingRegistry()
                if _STATE["finder"] is None:
                    finder = _STATE["finder"] = _Finder()
                    sys.meta_path.insert(0, finder)
                return pending  # type: ignore[no-any-return]
    import prometheus_client

    if _STATE["pending"] is not None:  # imported without the hook firing: register now
        _flush(prometheus_client)
    return prometheus_client.REGISTRY


def hook_installed() -> bool:
    """Whether the post-import hook is waiting in ``sys.meta_path``."""
    return _STATE["finder"] is not None


def remove_hook() -> None:
    """Take the hook out of ``sys.meta_path`` (no instrumentation is left to need it).
    The pending families stay: they are registered when evobs next needs the global
    registry (another ``instrument()``) after prometheus_client is imported."""
    with _PENDING_LOCK:
        finder, _STATE["finder"] = _STATE["finder"], None
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)


def _flush(module: ModuleType) -> None:
    """Register the pending families on ``module.REGISTRY`` (prometheus_client has just
    been imported). Every failure is counted and logged, never raised."""
    try:
        registry = module.REGISTRY
        with _PENDING_LOCK:
            pending: PendingRegistry | None = _STATE["pending"]
            _STATE["pending"] = None
            finder, _STATE["finder"] = _STATE["finder"], None
            if finder is not None and finder in sys.meta_path:
                sys.meta_path.remove(finder)
            if pending is None:
                return
            collectors, pending._collectors = pending._collectors, []
            pending._target = registry
        # What evobs keeps per registry (its families, their locks) is the pending
        # one's from now on: a later instrument() on REGISTRY shares them.
        alias(pending, registry)
        series = sys.modules.get("evobs.signals._series")
        if series is not None:
            series.LockTable.alias(pending, registry)
        for collector in collectors:
            try:
                registry.register(collector)  # the same name check as at instrument()
            except Exception as exc:  # a clash: counted and logged, the import goes on
                _record(exc)
    except Exception as exc:
        _record(exc)


def _record(exc: BaseException) -> None:
    """Count and log a failure as every failure inside evobs (``_log.HandlerErrors``).
    ``evobs._log`` is loaded with ``evobs`` (whose code alone installs the hook): it is
    looked up, not imported, so this module stays below it in the import graph (the
    logger's health families resolve the global registry here)."""
    try:
        errors: HandlerErrors | None = _STATE["errors"]
        if errors is None:
            log = sys.modules.get("evobs._log")
            if log is None:
                return
            errors = _STATE["errors"] = log.HandlerErrors(None, eager=False)
        errors.record(DEFERRED_EVENT, exc)
    except Exception:  # the error path itself must never raise
        pass


class _Loader:
    """Wraps prometheus_client's loader: executes the module as it would, then
    registers the pending families."""

    __slots__ = ("loader",)

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its own loader, as if there were no hook.
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        _flush(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _Finder:
    """The ``sys.meta_path`` entry: finds nothing itself; for ``prometheus_client``
    only, it wraps the loader the next finders give."""

    __slots__ = ()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != _MODULE:
            return None
        try:
            finders = sys.meta_path
            start = finders.index(self) + 1 if self in finders else 0
            for finder in finders[start:]:
                find = getattr(finder, "find_spec", None)
                spec = None if find is None else find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader)
            return spec  # type: ignore[no-any-return]
        except Exception as exc:  # the import goes on as if there were no hook
            _record(exc)
            return None

    def invalidate_caches(self) -> None:
        pass
