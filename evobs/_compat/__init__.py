"""Every read of another library's private details, one module per library.

evobs reads a few internals of the OpenTelemetry SDK (``otel_sdk``), the
OpenTelemetry API (``otel_api``), prometheus_client (``prometheus``) and
botocore/boto3 (``botocore``) where no public way exists. Each read lives here,
named, with a fallback that loses nothing, and a test in ``tests/test_compat.py``
that names the attribute: an upgrade that renames one fails that test, not a user's
telemetry.
"""

from __future__ import annotations

from typing import Any

__all__ = ["parameter_names"]


def parameter_names(function: Any) -> frozenset[str]:
    """The named parameters of ``function`` (not ``*args``/``**kwargs``), read from its
    code object: what ``inspect.signature`` lists, at a small share of its cold-start
    cost (it builds an object per parameter). A wrapped or code-less callable goes
    through ``inspect.signature`` (``TypeError``/``ValueError`` if it cannot be read)."""
    code = getattr(function, "__code__", None)
    if code is None or hasattr(function, "__wrapped__"):
        import inspect

        return frozenset(
            name
            for name, p in inspect.signature(function).parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
    count = code.co_argcount + code.co_kwonlyargcount
    return frozenset(code.co_varnames[:count])
