"""Which generation of the semantic conventions to emit, from ``OTEL_SEMCONV_STABILITY_OPT_IN``.

The variable is a comma-separated list, read once at import (like every OTel
instrumentation reads it): ``rpc``, ``messaging`` and ``database`` switch a domain to
the new attribute names, ``rpc/dup``, ``messaging/dup`` and ``database/dup`` emit both
generations. Anything else leaves the domain on the old names (the default).

The remote AWS service as the call's peer (``service.peer.name``, ``peer.service``) is
opt-in, as the conventions rate it: the ``peer_service`` option (``EVOBS_PEER_SERVICE=1``).
"""

from __future__ import annotations

import os
from typing import Any, Final

__all__ = [
    "DATABASE",
    "MESSAGING",
    "RPC",
    "database",
    "messaging",
    "mode",
    "peer",
    "rpc",
]

OLD: Final = "old"
NEW: Final = "new"
DUP: Final = "dup"


def mode(domain: str, value: str | None = None) -> str:
    """``old``, ``new`` or ``dup`` for one domain (``rpc``, ``messaging``, ``database``)."""
    raw = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "") if value is None else value
    tokens = {t.strip().lower() for t in raw.split(",")}
    if f"{domain}/dup" in tokens:
        return DUP
    if domain in tokens:
        return NEW
    return OLD


RPC: Final = mode("rpc")
MESSAGING: Final = mode("messaging")
DATABASE: Final = mode("database")


def peer(service: str) -> dict[str, Any]:
    """The remote AWS service as the peer: its service id (``DynamoDB``, ``S3``, the same
    string as ``rpc.service``, the span name's prefix and the ``service`` metric label).

    ``service.peer.name`` is the current name; ``peer.service``, the name it replaced, is
    what trace viewers read today (Jaeger's UI draws ``app -> DynamoDB`` on a leaf client
    span from it, Jaeger's dependency jobs and the Collector's service graph add the edge
    from it), so both are written.
    """
    return {"service.peer.name": service, "peer.service": service}


def rpc(
    service: str, method: str, generation: str = RPC, peer_service: bool = False
) -> dict[str, Any]:
    """The per-operation RPC attributes (old: ``rpc.system``/``rpc.service``/``rpc.method``;
    new: ``rpc.system.name`` and a fully-qualified ``rpc.method`` ``Service/Operation``),
    plus :func:`peer` when ``peer_service`` (the option, or ``EVOBS_PEER_SERVICE``) asks.

    Under ``rpc/dup`` the shared key ``rpc.method`` keeps its old value (the operation), so
    dashboards built on the old generation keep working while the new keys are added.
    """
    if generation == OLD:
        out: dict[str, Any] = {
            "rpc.system": "aws-api",
            "rpc.service": service,
            "rpc.method": method,
        }
    else:
        out = {"rpc.system.name": "aws-api", "rpc.method": f"{service}/{method}"}
        if generation != NEW:
            out.update({"rpc.system": "aws-api", "rpc.service": service, "rpc.method": method})
    if peer_service:
        out.update(peer(service))
    return out


def messaging(
    system: str,
    old_operation: str | None,
    new_operation: str | None,
    name: str,
    generation: str = MESSAGING,
) -> dict[str, Any]:
    """``messaging.system`` and the operation, in the generation asked for.

    Old: ``messaging.operation`` (``publish``/``receive``). New:
    ``messaging.operation.type`` (``send``/``receive``/``settle``) and
    ``messaging.operation.name`` (the AWS operation).
    """
    out: dict[str, Any] = {"messaging.system": system}
    if generation in (OLD, DUP) and old_operation is not None:
        out["messaging.operation"] = old_operation
    if generation in (NEW, DUP):
        if new_operation is not None:
            out["messaging.operation.type"] = new_operation
        out["messaging.operation.name"] = name
    return out


def database(operation: str, generation: str = DATABASE) -> dict[str, Any]:
    """DynamoDB as a database: old ``db.system``/``db.operation``, new
    ``db.system.name``/``db.operation.name``."""
    out: dict[str, Any] = {}
    if generation in (OLD, DUP):
        out["db.system"] = "dynamodb"
        out["db.operation"] = operation
    if generation in (NEW, DUP):
        out["db.system.name"] = "aws.dynamodb"
        out["db.operation.name"] = operation
    return out
