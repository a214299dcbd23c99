"""Secrets Manager: the secret's ARN, never its value (SecretString is marked sensitive)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    secret = params.get("SecretId")
    if isinstance(secret, str) and secret.startswith("arn:"):
        attrs["aws.secretsmanager.secret.arn"] = secret


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    arn = parsed.get("ARN")
    if isinstance(arn, str):
        attrs["aws.secretsmanager.secret.arn"] = arn


SPEC = ServiceSpec(request=_request, response=_response)
