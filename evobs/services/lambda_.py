"""Lambda: the invoked function; trace context in Invoke's ClientContext (never the payload)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _propagation as p
from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    function = params.get("FunctionName")
    if not isinstance(function, str):
        return
    if function.startswith("arn:"):
        attrs["aws.lambda.invoked_arn"] = function
        # arn:aws:lambda:region:account:function:name[:qualifier]
        parts = function.split(":")
        function = parts[6] if len(parts) > 6 else function
    elif ":" in function:  # name:qualifier or account:function:name
        pieces = function.split(":")
        function = pieces[2] if len(pieces) >= 3 and pieces[1] == "function" else pieces[0]
    if name in ("Invoke", "InvokeWithResponseStream", "InvokeAsync"):
        attrs["faas.invoked_name"] = function
        attrs["faas.invoked_provider"] = "aws"
    else:
        attrs["aws.lambda.function.name"] = function


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    arn = parsed.get("FunctionArn")  # CreateFunction / GetFunctionConfiguration
    if isinstance(arn, str):
        attrs["aws.lambda.invoked_arn"] = arn


SPEC = ServiceSpec(
    request=_request,
    response=_response,
    injects={
        "Invoke": p.inject_client_context,
        "InvokeWithResponseStream": p.inject_client_context,
    },
)
