"""The logs signal (placeholder until the logs issue lands)."""

from __future__ import annotations

from typing import Any

__all__ = ["LogsSignal"]


class LogsSignal:
    name = "logs"

    def __init__(self, options: Any, registry: Any) -> None:
        self._options = options
