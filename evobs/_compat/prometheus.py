"""prometheus_client's private details evobs reads.

Nothing here imports prometheus_client at import time: evobs's own families need it
only to be collected, and a process that never scrapes never pays for it (see
``evobs._registry``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["histogram_bounds", "labelnames", "multiprocess_mode", "use_created"]

#: The environment variables prometheus_client's ``values`` reads at its import to pick
#: multiprocess mode (the lower-case one is its deprecated spelling).
MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def multiprocess_mode() -> bool:
    """Whether prometheus_client stores values in ``PROMETHEUS_MULTIPROC_DIR`` files
    (decided at its import: ``values.ValueClass._multiprocess``). Read from
    prometheus_client once it is imported, or would be in that mode (the variable is
    set: then it is imported now); else False without importing it. Fallback: the
    environment variable prometheus_client itself reads."""
    if "prometheus_client.values" not in sys.modules and not any(
        name in os.environ for name in MULTIPROC_ENV
    ):
        return False
    from prometheus_client import values

    flag = getattr(values.ValueClass, "_multiprocess", None)
    if isinstance(flag, bool):
        return flag
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
    return tuple(map(float, bounds[:-1]))


def use_created() -> bool:
    """Whether families expose ``_created`` samples (``metrics._use_created``, off with
    ``PROMETHEUS_DISABLE_CREATED_SERIES``; read at collect time, when prometheus_client
    is imported). Fallback: on, prometheus_client's default."""
    from prometheus_client import metrics

    return bool(getattr(metrics, "_use_created", True))
