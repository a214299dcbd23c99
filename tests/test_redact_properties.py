"""Property-based: arbitrary service shapes, params and unicode through redaction and log
rendering. Nothing raises, and no value under a member marked ``sensitive`` ever comes out.

Every generated secret starts with an ASCII sentinel that no other generated text holds,
so "the sentinel is absent from the output" means "no secret, nor its start, leaked".
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from botocore.model import DenormalizedStructureBuilder, ServiceModel
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from evobs import _redact
from evobs._call import Attempt, Call
from evobs._operation import operation_for
from evobs._options import Options
from evobs.signals.logs import LogsSignal

from .secret_forms import END, FORMS, START, leaks, make_secret

SENTINEL = "zqSECRETqz"
_SERVICES = itertools.count()

# -- shapes -------------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Z][A-Za-z0-9]{0,11}", fullmatch=True)
SCALARS = st.sampled_from(["string", "integer", "boolean", "blob", "timestamp", "double"])


def _shape(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    sensitive = st.booleans()
    return st.one_of(
        st.builds(
            lambda members, s: {"type": "structure", "members": members, "sensitive": s},
            st.dictionaries(NAMES, children, min_size=1, max_size=4),
            sensitive,
        ),
        st.builds(lambda m, s: {"type": "list", "member": m, "sensitive": s}, children, sensitive),
        st.builds(
            lambda v, ks, s: {
                "type": "map",
                "key": {"type": "string", "sensitive": ks},
                "value": v,
                "sensitive": s,
            },
            children,
            st.booleans(),
            sensitive,
        ),
    )


LEAVES = st.builds(
    lambda t, s: {"type": t, "sensitive": s and t in ("string", "blob")}, SCALARS, st.booleans()
)
SHAPES = st.recursive(LEAVES, _shape, max_leaves=12)
INPUTS = st.dictionaries(NAMES, SHAPES, min_size=1, max_size=5)


def _strip_false(model: dict[str, Any]) -> dict[str, Any]:
    """botocore reads ``sensitive`` by presence of a truthy value; drop the false ones."""
    out = {k: v for k, v in model.items() if not (k == "sensitive" and not v)}
    if "members" in out:
        out["members"] = {k: _strip_false(v) for k, v in out["members"].items()}
    for key in ("member", "key", "value"):
        if key in out:
            out[key] = _strip_false(out[key])
    return out


def operation_model(members: dict[str, Any]) -> Any:
    """A real botocore OperationModel whose input shape is ``members``."""
    n = next(_SERVICES)
    builder = DenormalizedStructureBuilder()  # (its name= argument is broken upstream)
    shape = builder.with_members({k: _strip_false(v) for k, v in members.items()}).build_model()
    shapes = dict(shape._shape_resolver._shape_map)
    service = ServiceModel(
        {
            "metadata": {
                "apiVersion": f"2020-01-{n}",
                "endpointPrefix": f"prop{n}",
                "protocol": "json",
                "serviceId": f"Prop {n}",
                "signatureVersion": "v4",
            },
            "operations": {
                "Op": {"name": "Op", "http": {"method": "POST"}, "input": {"shape": shape.name}}
            },
            "shapes": shapes,
        },
        service_name=f"prop{n}",
    )
    return service.operation_model("Op")


# -- values ------------------------------------------------------------------------------

TEXT = st.text(max_size=40).filter(lambda s: SENTINEL not in s)
SECRET_TEXT = st.builds(lambda t: SENTINEL + t, st.text(max_size=40))
NOISE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.binary(max_size=20),
    st.just(10**5000),
    st.just(decimal.Decimal("1.5")),
    st.just(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)),
    st.just({1, 2}),
    st.just(object()),
)


def value_for(draw: Any, shape: dict[str, Any], secret: bool, secrets: list[str]) -> Any:
    """A value for ``shape``; everything under a sensitive member is a sentinel secret.
    Containers sometimes come wrapped in the wrong type (botocore would reject them,
    but evobs sees them first for messaging calls)."""
    value = _value_for(draw, shape, secret, secrets)
    if shape["type"] in ("structure", "list", "map") and draw(st.integers(0, 7)) == 0:
        return {"wrapped": value} if isinstance(value, list) else [value]
    return value


def _value_for(draw: Any, shape: dict[str, Any], secret: bool, secrets: list[str]) -> Any:
    secret = secret or bool(shape.get("sensitive"))
    kind = shape["type"]
    if kind == "structure":
        out: dict[Any, Any] = {}
        for name, member in shape["members"].items():
            if draw(st.booleans()):
                out[name] = value_for(draw, member, secret, secrets)
        if not secret and draw(st.integers(0, 4)) == 0:
            out[draw(NAMES.filter(lambda n: n not in shape["members"]))] = draw(NOISE)
        return out
    if kind == "list":
        return [
            value_for(draw, shape["member"], secret, secrets)
            for _ in range(draw(st.integers(0, 3)))
        ]
    if kind == "map":
        key_secret = secret or bool(shape["key"].get("sensitive"))
        out = {}
        for _ in range(draw(st.integers(0, 3))):
            key = draw(SECRET_TEXT if key_secret else TEXT)
            if key in out:
                continue  # an overwritten value would be a "secret" the call no longer has
            if key_secret:
                secrets.append(key)
            out[key] = value_for(draw, shape["value"], secret or key_secret, secrets)
        return out
    if secret:
        if kind == "blob":
            raw = draw(SECRET_TEXT).encode("utf-8", "surrogatepass")
            secrets.append(raw.decode("utf-8", "replace"))
            return raw
        value = draw(SECRET_TEXT)
        secrets.append(value)
        if draw(st.integers(0, 5)) == 0:
            return [value]  # the wrong type for a sensitive member: still never shown
        return value
    if draw(st.integers(0, 6)) == 0:
        return draw(NOISE)  # the wrong type for the shape, or an odd scalar
    return draw(
        {
            "string": TEXT,
            "integer": st.integers(),
            "boolean": st.booleans(),
            "blob": st.binary(max_size=20),
            "timestamp": st.datetimes(),
            "double": st.floats(),
        }[kind]
    )


@st.composite
def calls(draw: Any) -> tuple[Any, dict[str, Any], list[str]]:
    members = draw(INPUTS)
    model = operation_model(members)
    secrets: list[str] = []
    params = value_for(draw, {"type": "structure", "members": members}, False, secrets)
    return model, params, secrets


def leaked(text: str) -> bool:
    return SENTINEL in text


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_strings(k)
            yield from walk_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from walk_strings(v)
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(calls())
def test_render_params_never_raises_nor_leaks(call: tuple[Any, dict[str, Any], list[str]]) -> None:
    """The captured-params JSON: bounded, parseable unless truncated, no secret in it."""
    model, params, _ = call
    for keys in (False, True):
        text = _redact.render_params(model, params, capture_s3_keys=keys)
        assert isinstance(text, str)
        assert len(text) <= _redact.MAX_PARAMS_CHARS
        assert text.isascii()
        assert not leaked(text), text
        if not text.endswith(_redact.TRUNCATED):
            json.loads(text)


@PROPERTY
@given(calls())
def test_redact_value_never_raises_nor_leaks(call: tuple[Any, dict[str, Any], list[str]]) -> None:
    """The structured copy holds no secret anywhere, keys included."""
    model, params, _ = call
    redacted = _redact.redact_value(model, params)
    assert not any(leaked(s) for s in walk_strings(redacted))


@PROPERTY
@given(calls(), st.lists(TEXT, min_size=1, max_size=4), st.data())
def test_error_text_masks_the_calls_secrets(
    call: tuple[Any, dict[str, Any], list[str]], pieces: list[str], data: Any
) -> None:
    """An error message (or traceback) that quotes any of the call's sensitive values,
    in any unicode surroundings, comes out without them."""
    model, params, secrets = call
    quoted = [data.draw(st.sampled_from(secrets)) for _ in pieces] if secrets else []
    text = "".join(p + q for p, q in zip(pieces, quoted + [""] * len(pieces), strict=False))
    record = Call(operation_for(model), "us-east-1", 0)
    record.params = params
    out = _redact.redact_text(text, record)
    assert not leaked(out), (text, out)
    out.encode("utf-8")  # always valid UTF-8 (no lone surrogates)
    assert len(out) <= _redact.MAX_MESSAGE_CHARS


@settings(max_examples=300, deadline=None)
@given(st.text(), st.lists(st.text(min_size=1), max_size=5))
def test_mask_never_returns_a_secret(text: str, secrets: list[str]) -> None:
    """``mask`` with arbitrary secrets (even ones overlapping each other or the marker)."""
    out = _redact.mask(text + "".join(secrets), secrets)
    assert not any(s in out for s in secrets)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_scrub_credentials_never_raises(text: str) -> None:
    """Credential scrubbing takes any text and removes signatures put into it."""
    out = _redact.scrub_credentials(text + "&X-Amz-Signature=" + "ab" * 32)
    assert "ab" * 32 not in out


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def log_capture() -> Iterator[_Records]:
    log = logging.getLogger("evobs")
    handler = _Records()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


JSON_FORMATTER = structlog.stdlib.ProcessorFormatter(
    processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.JSONRenderer(),
    ]
)
PLAIN_FORMATTER = logging.Formatter("%(levelname)s %(message)s")


@PROPERTY
@given(calls(), st.data())
def test_log_rendering_never_raises_nor_leaks(
    log_capture: _Records, call: tuple[Any, dict[str, Any], list[str]], data: Any
) -> None:
    """A failed call whose params and error message carry secrets, through the real logs
    signal (``capture_params`` on) and both ways an app renders records: no secret."""
    model, params, secrets = call
    signal = LogsSignal(Options(capture_params=True, slow_call_seconds=1e-9), CollectorRegistry())
    record = Call(operation_for(model), data.draw(st.one_of(st.none(), TEXT)), 0)
    record.params = params
    record.end_ns = 1_000_000
    record.attempts = [Attempt(1, 0), Attempt(2, 10)]
    record.attempts[0].end_ns = 5
    record.attempts[0].outcome = "server_error"
    record.attempts[0].error_code = data.draw(TEXT)
    record.outcome = data.draw(st.sampled_from(["client_error", "server_error", "error"]))
    record.http_status = data.draw(st.one_of(st.none(), st.integers(100, 599)))
    record.error_code = data.draw(st.one_of(st.none(), TEXT))
    quoted = data.draw(st.sampled_from(secrets)) if secrets else ""
    record.error_message = data.draw(TEXT) + quoted + data.draw(TEXT)
    log_capture.records.clear()
    signal.attempt_started(record, record.attempts[1])
    signal.call_ended(record)
    assert {r.msg["event"] for r in log_capture.records} == {  # type: ignore[index]
        "aws.retry",
        "aws.call",
        "aws.call.slow",
    }
    for rec in log_capture.records:
        for formatter in (JSON_FORMATTER, PLAIN_FORMATTER):
            line = formatter.format(rec)
            assert not leaked(line), line


# -- credentials in generated text ----------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_KEY_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: What may stand right before or after a credential in real text.
_DELIMITERS = ["", " ", "\n", "\t", ", ", "; ", "(", ")", "&", "?", "{", "}", "[", "]", ": ", "'"]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(FORMS)),
    st.text(alphabet=_B64, max_size=60),
    st.sampled_from(["AKIA", "ASIA"]),
    st.text(alphabet=_KEY_ID_CHARS, min_size=16, max_size=16),
    st.text(),
    st.sampled_from(_DELIMITERS),
    st.sampled_from(_DELIMITERS),
    st.text(),
)
def test_every_credential_form_is_scrubbed_in_any_text(
    form: str, body: str, prefix: str, tail: str, before: str, left: str, right: str, after: str
) -> None:
    """Any form of ``secret_forms``, in any unicode text, after and before any delimiter
    (or none, where the text ends in a non-word character): no secret, no start or end of
    one, no access key id comes out; scrubbing is idempotent."""
    secret = make_secret(body)
    key_id = prefix + tail
    if not left and (before[-1:].isalnum() or before[-1:] == "_"):
        left = " "  # a name glued to a word is another word (``NextToken``)
    text = before + left + FORMS[form](secret, key_id) + right + after
    assume(not any(m in before + after for m in (START, END, tail)))
    out = _redact.scrub_credentials(text)
    assert leaks(out, secret, key_id) == [], (text, out)
    assert _redact.scrub_credentials(out) == out
