"""Reading evobs's environment variables, one way everywhere."""

from __future__ import annotations

import os

__all__ = ["flag", "truthy"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def truthy(name: str) -> bool:
    """Whether the variable is set to a true word (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def flag(name: str, default: bool) -> bool:
    """A yes/no variable: a true word, a false word (``0``, ``false``, ``no``, ``off``),
    or unset (anything else) for ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default
