"""Kinesis: the stream name (from ``StreamName`` or the name part of ``StreamARN``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    stream = params.get("StreamName")
    if not isinstance(stream, str):
        arn = params.get("StreamARN")
        # arn:aws:kinesis:region:account:stream/name
        stream = arn.rpartition("/")[2] if isinstance(arn, str) and "/" in arn else None
    if stream:
        attrs["aws.kinesis.stream_name"] = stream


SPEC = ServiceSpec(request=_request)
