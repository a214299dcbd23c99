"""Step Functions (service id ``SFN``): the state machine or activity ARN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options

_ARNS = (
    ("stateMachineArn", "aws.step_functions.state_machine.arn"),
    ("activityArn", "aws.step_functions.activity.arn"),
)


def _copy(source: dict[str, Any], attrs: dict[str, Any]) -> None:
    for field, attribute in _ARNS:
        value = source.get(field)
        if isinstance(value, str):
            attrs[attribute] = value


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    _copy(params, attrs)


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    _copy(parsed, attrs)  # CreateStateMachine / CreateActivity answer with the ARN


SPEC = ServiceSpec(request=_request, response=_response)
