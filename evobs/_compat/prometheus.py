"""prometheus_client's private details evobs reads."""

from __future__ import annotations

from typing import Any

from prometheus_client import metrics as _metrics
from prometheus_client import values as _values

__all__ = ["histogram_bounds", "labelnames", "multiprocess_mode", "use_created"]


def multiprocess_mode() -> bool:
    """Whether prometheus_client stores values in ``PROMETHEUS_MULTIPROC_DIR`` files
    (decided at its import: ``values.ValueClass._multiprocess``). Fallback: the
    environment variable prometheus_client itself reads."""
    flag = getattr(_values.ValueClass, "_multiprocess", None)
    if isinstance(flag, bool):
        return flag
    import os

    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def labelnames(metric: Any) -> tuple[str, ...] | None:
    """A family's label names (``MetricWrapperBase._labelnames``); None if unreadable."""
    names = getattr(metric, "_labelnames", None)
    return tuple(names) if isinstance(names, tuple | list) else None


def histogram_bounds(metric: Any) -> tuple[float, ...] | None:
    """A histogram family's bucket bounds without +Inf (``Histogram._upper_bounds``)."""
    bounds = getattr(metric, "_upper_bounds", None)
    if not isinstance(bounds, list | tuple) or not bounds:
        return None
    return tuple(float(b) for b in bounds[:-1])


def use_created() -> bool:
    """Whether families expose ``_created`` samples (``metrics._use_created``, off with
    ``PROMETHEUS_DISABLE_CREATED_SERIES``). Fallback: on, prometheus_client's default."""
    return bool(getattr(_metrics, "_use_created", True))
