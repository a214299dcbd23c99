"""Redaction driven by the service model: what evobs must never record.

botocore's models mark secret members ``sensitive`` (``SecretString``,
``Plaintext``, ``SSECustomerKey``, ``Password``...). For each operation evobs
builds a *plan* once (cached, bounded): a small tree that says, per member, keep,
redact (sensitive, or a credential), omit (bodies, blobs, streams, message
payloads), hide unless asked (S3 keys), or descend (structures, lists, maps).
The plan drives three things:

- :func:`render_params`: the redacted, size-capped JSON of a call's params,
  recorded only with ``capture_params=True``;
- :func:`redact_value`: a redacted copy of any modeled value (params or a
  response), for code that wants structured data;
- :func:`redact_text`: error messages and stack traces, with credentials
  (Authorization headers, presigned-URL query parameters, access key ids) and
  every sensitive value of the call masked.

Nothing here raises: an input it cannot handle is rendered as a marker.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import json
import re
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from botocore.model import Shape
from botocore.parsers import ResponseParserError

from ._fork import ForkSafeLock

if TYPE_CHECKING:
    from ._call import Call

__all__ = [
    "BODY",
    "KEY",
    "MARK",
    "MAX_MESSAGE_CHARS",
    "MAX_PARAMS_CHARS",
    "TRUNCATED",
    "UNMODELED",
    "error_message",
    "exception_message",
    "has_sensitive_input",
    "mask",
    "redact_text",
    "redact_traceback",
    "redact_value",
    "render_params",
    "scrub_credentials",
    "sensitive_values",
]

#: Replaces a member the model marks ``sensitive``, and credentials.
MARK: Final = "<redacted>"
#: Replaces request/response bodies: blobs, streams, HTTP payloads, message bodies.
BODY: Final = "<body>"
#: Replaces S3 object keys unless ``capture_s3_keys=True`` (keys can be personal data).
KEY: Final = "<s3-key>"
#: Replaces a param the model does not know (evobs cannot tell whether it is secret).
UNMODELED: Final = "<unmodeled>"
#: Ends a rendering that hit its size cap.
TRUNCATED: Final = "...<truncated>"
_DEEP: Final = '"<too-deep>"'

MAX_PARAMS_CHARS: Final = 4096
MAX_MESSAGE_CHARS: Final = 1024
_MAX_VALUE_CHARS: Final = 1024
_MAX_TEXT_SCAN: Final = 256 * 1024
_MAX_DEPTH: Final = 24
_MAX_SECRETS: Final = 1024

# Node kinds.
_LEAF: Final = 0
_SECRET: Final = 1
_BODY: Final = 2
_KEY: Final = 3
_STRUCT: Final = 4
_LIST: Final = 5
_MAP: Final = 6

#: Credentials are never recorded, whatever the model says (STS's SessionToken,
#: for one, is not marked sensitive). This is the one hand-kept list: credentials.
_CREDENTIAL_MEMBERS: Final = frozenset(
    {
        "AccessKeyId",
        "SecretAccessKey",
        "SecretKey",
        "SessionToken",
        "SecurityToken",
        "Authorization",
    }
)
#: S3 shapes that hold object keys (personal data, off unless capture_s3_keys).
_S3_KEY_SHAPES: Final = frozenset({"ObjectKey", "CopySource", "KeyMarker", "StartAfter"})
#: Message payloads modeled as plain strings: bodies, never recorded.
_MESSAGE_BODIES: Final = {
    "sqs": frozenset({"MessageBody"}),
    "sns": frozenset({"Message"}),
    "events": frozenset({"Detail"}),
    # Prompts, system prompts, tool definitions, text to check: GenAI content is recorded
    # only when the user opts in (``capture_genai_content``), never as params.
    "bedrock-runtime": frozenset({"messages", "system", "toolConfig", "content"}),
}


class _Node:
    """One shape of a plan: what to do with a value of that shape."""

    __slots__ = ("dirty", "item", "kind", "members")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        #: Whether a sensitive member lives at or under this node.
        self.dirty = kind == _SECRET
        self.members: dict[str, _Node] = {}
        self.item: _Node | None = None

    def __repr__(self) -> str:
        return f"<_Node kind={self.kind} dirty={self.dirty} members={list(self.members)}>"


_LEAF_NODE: Final = _Node(_LEAF)
_SECRET_NODE: Final = _Node(_SECRET)
_EMPTY_STRUCT: Final = _Node(_STRUCT)


# -- plans ----------------------------------------------------------------------------


def _build(shape: Any, service: str) -> _Node:
    """The plan of one shape: a graph (recursive shapes make cycles), dirty flags solved."""
    memo: dict[tuple[Any, ...], _Node] = {}
    root = _node(shape, service, memo, None)
    # Propagate "something sensitive lives under here" to a fixed point (cycles).
    nodes = list(memo.values())
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node.dirty:
                continue
            children: Iterable[_Node] = (
                node.members.values() if node.kind == _STRUCT else (node.item,) if node.item else ()
            )
            if any(c.dirty for c in children):
                node.dirty = changed = True
    return root


def _node(
    shape: Any, service: str, memo: dict[tuple[Any, ...], _Node], member: str | None
) -> _Node:
    metadata = shape.metadata
    serialization = shape.serialization
    type_name = shape.type_name
    if metadata.get("sensitive") or member in _CREDENTIAL_MEMBERS:
        return _SECRET_NODE
    if (
        type_name == "blob"
        or serialization.get("streaming")
        or serialization.get("eventstream")
        or (member is not None and member in _MESSAGE_BODIES.get(service, ()))
    ):
        return _Node(_BODY)
    if service == "s3" and shape.name in _S3_KEY_SHAPES:
        return _Node(_KEY)
    if type_name not in ("structure", "list", "map") or metadata.get("document"):
        return _LEAF_NODE
    key = (shape.name, type_name)
    found = memo.get(key)
    if found is not None:
        return found
    if type_name == "structure":
        node = memo[key] = _Node(_STRUCT)
        payload = serialization.get("payload")
        for name, child in shape.members.items():
            sub = _node(child, service, memo, name)
            if name == payload and sub.kind == _LEAF and child.type_name == "string":
                sub = _Node(_BODY)  # a string sent as the raw HTTP body
            node.members[name] = sub
        return node
    if type_name == "list":
        node = memo[key] = _Node(_LIST)
        node.item = _node(shape.member, service, memo, None)
        return node
    if shape.key.metadata.get("sensitive"):
        memo[key] = _SECRET_NODE
        return _SECRET_NODE
    node = memo[key] = _Node(_MAP)
    node.item = _node(shape.value, service, memo, None)
    return node


_PLANS: Final[dict[tuple[str, str, str, bool], _Node]] = {}
_PLANS_MAX: Final = 2048
_PLANS_LOCK: Final = ForkSafeLock()


def _plan(model: Any, output: bool = False) -> _Node:
    """The cached plan of an OperationModel's input (or output) shape; a bare
    botocore ``Shape`` is planned uncached (tests, ad-hoc shapes)."""
    if isinstance(model, Shape):
        return _build(model, "")
    service_model = model.service_model
    key = (service_model.service_name, service_model.api_version, model.name, output)
    plan = _PLANS.get(key)
    if plan is None:
        shape = model.output_shape if output else model.input_shape
        plan = _EMPTY_STRUCT if shape is None else _build(shape, service_model.service_name)
        with _PLANS_LOCK:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            _PLANS[key] = plan
    return plan


def has_sensitive_input(model: Any) -> bool:
    """Whether any member of the operation's input is sensitive (cheap after the first call)."""
    try:
        return _plan(model).dirty
    except Exception:
        return True


# -- rendering params -----------------------------------------------------------------


class _Full(Exception):
    """The rendering reached its size cap."""


class _Writer:
    __slots__ = ("keys", "left", "parts")

    def __init__(self, limit: int, keys: bool) -> None:
        self.parts: list[str] = []
        self.left = limit
        self.keys = keys

    def put(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)
        if self.left < 0:
            raise _Full


_MARK_JSON: Final = json.dumps(MARK)
_BODY_JSON: Final = json.dumps(BODY)
_KEY_JSON: Final = json.dumps(KEY)
_UNMODELED_JSON: Final = json.dumps(UNMODELED)


def _key_json(key: object) -> str:
    if isinstance(key, str):
        return json.dumps(key[:_MAX_VALUE_CHARS])
    if isinstance(key, int | float) and not isinstance(key, bool):
        return json.dumps(str(key))
    return json.dumps(f"<{type(key).__name__}>")


def _put_object(w: _Writer, mapping: dict[Any, Any], put_value: Any) -> None:
    """``{"k":v,...}`` with each value written by ``put_value(key, value)``."""
    w.put("{")
    first = True
    for k, v in mapping.items():
        if not first:
            w.put(",")
        first = False
        w.put(_key_json(k))
        w.put(":")
        put_value(k, v)
    w.put("}")


def _put_array(w: _Writer, values: Any, put_value: Any) -> None:
    """``[v,...]`` with each value written by ``put_value(value)``."""
    w.put("[")
    for i, v in enumerate(values):
        if i:
            w.put(",")
        put_value(v)
    w.put("]")


def _render(node: _Node, value: Any, w: _Writer, depth: int) -> None:
    kind = node.kind
    if kind == _SECRET:
        w.put(_MARK_JSON)
        return
    if kind == _BODY:
        w.put(_BODY_JSON)
        return
    if kind == _KEY:
        if not w.keys:
            w.put(_KEY_JSON)
            return
        _generic(value, w, depth)
        return
    if depth > _MAX_DEPTH:
        w.put(_MARK_JSON if node.dirty else _DEEP)
        return
    if kind == _STRUCT:
        if isinstance(value, dict):
            members = node.members

            def member(k: Any, v: Any) -> None:
                child = members.get(k) if isinstance(k, str) else None
                if child is None:
                    w.put(_UNMODELED_JSON)
                else:
                    _render(child, v, w, depth + 1)

            _put_object(w, value, member)
            return
    elif kind in (_LIST, _MAP) and node.item is not None:
        item = node.item
        if kind == _LIST and isinstance(value, list | tuple):
            _put_array(w, value, lambda v: _render(item, v, w, depth + 1))
            return
        if kind == _MAP and isinstance(value, dict):
            _put_object(w, value, lambda _k, v: _render(item, v, w, depth + 1))
            return
    elif kind == _LEAF:
        _generic(value, w, depth)
        return
    # A value of the wrong type for its shape (botocore will reject it): keep
    # nothing that could hold a sensitive member.
    if node.dirty:
        w.put(_MARK_JSON)
    else:
        _generic(value, w, depth)


def _generic(value: Any, w: _Writer, depth: int) -> None:
    """A modeled scalar or a document: JSON, each string capped, never ``str()`` of objects."""
    if value is None:
        w.put("null")
    elif value is True:
        w.put("true")
    elif value is False:
        w.put("false")
    elif isinstance(value, str):
        if len(value) > _MAX_VALUE_CHARS:
            value = value[:_MAX_VALUE_CHARS] + TRUNCATED
        w.put(json.dumps(value))
    elif isinstance(value, int | float):
        try:
            w.put(json.dumps(value))
        except ValueError:  # ints past the str-conversion digit limit
            w.put('"<int>"')
    elif isinstance(value, bytes | bytearray | memoryview):
        w.put(_BODY_JSON)
    elif depth > _MAX_DEPTH:
        w.put(_DEEP)
    elif isinstance(value, dict):
        _put_object(w, value, lambda _k, v: _generic(v, w, depth + 1))
    elif isinstance(value, list | tuple):
        _put_array(w, value, lambda v: _generic(v, w, depth + 1))
    elif isinstance(value, datetime.datetime | datetime.date):
        w.put(json.dumps(value.isoformat()))
    elif isinstance(value, decimal.Decimal):
        w.put(json.dumps(str(value)[:_MAX_VALUE_CHARS]))
    else:
        # Files, sets, user objects: the type only (their str() may be a body or raise).
        w.put(json.dumps(f"<{type(value).__name__}>"))


def render_params(
    model: Any, params: Any, *, capture_s3_keys: bool = False, limit: int = MAX_PARAMS_CHARS
) -> str:
    """The call's params as compact ASCII JSON: sensitive members, credentials and bodies
    replaced by markers, at most ``limit`` characters (then ending in ``TRUNCATED``)."""
    try:
        writer = _Writer(limit, capture_s3_keys)
        try:
            _render(_plan(model), params, writer, 0)
        except _Full:
            text = "".join(writer.parts)
            return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED
        return "".join(writer.parts)
    except Exception:
        return json.dumps(UNMODELED)


# -- structured redaction ---------------------------------------------------------------


def _copy(node: _Node, value: Any, keys: bool, depth: int) -> Any:
    kind = node.kind
    if kind == _SECRET:
        return MARK
    if kind == _BODY:
        return BODY
    if kind == _KEY:
        return value if keys and isinstance(value, str) else KEY
    if depth > _MAX_DEPTH:
        return MARK
    if kind == _STRUCT and isinstance(value, dict):
        members = node.members
        out: dict[Any, Any] = {}
        for k, v in value.items():
            child = members.get(k) if isinstance(k, str) else None
            if child is None:
                if k != "ResponseMetadata":
                    out[k] = UNMODELED
                continue
            out[k] = _copy(child, v, keys, depth + 1) if child.kind != _LEAF else _scalar(v)
        return out
    if kind == _LIST and node.item is not None and isinstance(value, list | tuple):
        return [_copy(node.item, v, keys, depth + 1) for v in value]
    if kind == _MAP and node.item is not None and isinstance(value, dict):
        return {k: _copy(node.item, v, keys, depth + 1) for k, v in value.items()}
    if node.dirty:
        return MARK
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview) or hasattr(value, "read"):
        return BODY
    return value


def redact_value(
    model: Any, value: Any, *, output: bool = False, capture_s3_keys: bool = False
) -> Any:
    """A redacted copy of an operation's params (or, ``output=True``, its parsed response).

    Sensitive members, credentials and bodies become markers; unmodeled members become
    ``UNMODELED``; ``ResponseMetadata`` is dropped. Scalars are returned as is."""
    try:
        return _copy(_plan(model, output), value, capture_s3_keys, 0)
    except Exception:
        return MARK


# -- secrets in text --------------------------------------------------------------------


def _leaves(value: Any, out: list[str], depth: int) -> None:
    """Every scalar under a sensitive member, as the strings it may appear as in text."""
    if len(out) >= _MAX_SECRETS or depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        if value:
            out.append(value)
            if len(value) >= 8 and len(value) % 4 == 0:
                # SSE-C keys arrive base64-encoded by botocore; the raw key may be
                # in the user's source line of a traceback.
                with contextlib.suppress(ValueError):
                    raw = base64.b64decode(value, validate=True)
                    with contextlib.suppress(UnicodeDecodeError):
                        decoded = raw.decode("utf-8")
                        if decoded:
                            out.append(decoded)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if raw:
            with contextlib.suppress(UnicodeDecodeError):
                out.append(raw.decode("utf-8"))
            out.append(base64.b64encode(raw).decode("ascii"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            out.append(str(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _leaves(k, out, depth + 1)
            _leaves(v, out, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _leaves(v, out, depth + 1)


def _collect(node: _Node, value: Any, out: list[str], depth: int) -> None:
    if len(out) >= _MAX_SECRETS or depth > _MAX_DEPTH:
        return
    kind = node.kind
    if kind == _SECRET:
        _leaves(value, out, depth)
        return
    if not node.dirty:
        return
    if kind == _STRUCT and isinstance(value, dict):
        members = node.members
        for k, v in value.items():
            child = members.get(k) if isinstance(k, str) else None
            if child is not None and child.dirty:
                _collect(child, v, out, depth + 1)
    elif kind == _LIST and node.item is not None and isinstance(value, list | tuple):
        for v in value:
            _collect(node.item, v, out, depth + 1)
    elif kind == _MAP and node.item is not None and isinstance(value, dict):
        for v in value.values():
            _collect(node.item, v, out, depth + 1)
    else:
        _leaves(value, out, depth)  # wrong type for a dirty shape: treat all of it as secret


def sensitive_values(model: Any, params: Any) -> tuple[str, ...]:
    """The values of the call's sensitive params (and their base64 for bytes), bounded."""
    try:
        plan = _plan(model)
        if not plan.dirty or not params:
            return ()
        out: list[str] = []
        _collect(plan, params, out, 0)
        return tuple(out)
    except Exception:
        return ()


# Credentials in free text: presigned-URL query parameters, SigV4 Authorization
# headers echoed in error messages, credential assignments, access key ids.
_CREDENTIALS_RE: Final = re.compile(
    r"(?i)\b(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|Credential|"
    r"AWSAccessKeyId|Authorization|SessionToken|SecurityToken|SecretAccessKey|AccessKeyId|"
    r"aws_access_key_id|aws_secret_access_key|aws_session_token|aws_security_token)"
    r"(\"?\s*[=:]\s*\"?)([^\s&,;\"'<>]+)"
)
_ACCESS_KEY_RE: Final = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,}\b")


def scrub_credentials(text: str) -> str:
    """Mask credentials that may appear in free text (error messages, tracebacks)."""
    if text in _CLEAN:
        return text
    scrubbed = _CREDENTIALS_RE.sub(r"\1\2" + MARK, text)
    scrubbed = _ACCESS_KEY_RE.sub(MARK, scrubbed)
    if scrubbed == text and len(text) <= _CLEAN_TEXT:
        if len(_CLEAN) >= _CLEAN_ENTRIES:
            _CLEAN.clear()  # texts that never repeat (ids in them) must not pin it
        _CLEAN[text] = None
    return scrubbed


#: Error messages repeat (every attempt of a retry storm carries the same one): short
#: texts found free of credentials are remembered, bounded, and not scanned again.
#: Only such texts: nothing that held a credential is kept.
_CLEAN: Final[dict[str, None]] = {}
_CLEAN_TEXT: Final = 1024
_CLEAN_ENTRIES: Final = 512


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret in ``text``; never returns a secret."""
    found = [s for s in secrets if s and s in text]
    if not found:
        return text
    found.sort(key=len, reverse=True)
    masked = re.sub("|".join(map(re.escape, found)), MARK, text)
    for candidate in (masked, MARK, ""):
        if not any(s in candidate for s in found):
            return candidate
    return ""  # pragma: no cover - "" contains no non-empty secret


def redact_text(text: object, call: Call | None = None, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Free text (an error message, a traceback) safe to record: the call's sensitive
    values and credentials masked, valid UTF-8, at most ``limit`` characters."""
    try:
        if isinstance(text, BaseException):
            text = exception_message(text)
        elif not isinstance(text, str):
            text = _safe_str(text)
        if len(text) > _MAX_TEXT_SCAN:
            text = text[:_MAX_TEXT_SCAN]
        secrets: tuple[str, ...] = ()
        if call is not None and call.params:
            secrets = sensitive_values(call.op.model, call.params)
            if secrets:
                # First, on the text as received: anything rewritten before this
                # could split a secret and leave its pieces unmatched.
                text = mask(text, secrets)
        text = scrub_credentials(text)
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        if secrets and any(s in text for s in secrets):
            return MARK if not any(s in MARK for s in secrets) else ""
        if len(text) > limit:
            text = text[: max(0, limit - len(TRUNCATED))] + TRUNCATED
        return text
    except Exception:
        return MARK


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def exception_message(exc: BaseException) -> str:
    """An exception's message, minus what botocore quotes from a response body.

    ``ResponseParserError`` appends the raw body it could not parse (an AssumeRole
    response holds credentials): only its first line, the parse error, is kept."""
    text = _safe_str(exc)
    if isinstance(exc, ResponseParserError):
        text = text.split("\n", 1)[0].rstrip(":") + " (response body omitted)"
    return text


_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


def redact_traceback(exc: BaseException, call: Call | None = None, limit: int = 16384) -> str:
    """Like ``traceback.format_exception``, with every message in the chain through
    :func:`exception_message` and the whole through :func:`redact_text` (a traceback
    also shows the caller's source lines, which may hold a literal secret)."""
    try:
        chain: list[tuple[BaseException, str]] = []
        seen: set[int] = set()
        current: BaseException | None = exc
        link = ""
        while current is not None and id(current) not in seen and len(chain) < 16:
            seen.add(id(current))
            chain.append((current, link))
            if current.__cause__ is not None:
                current, link = current.__cause__, _CAUSE
            elif not current.__suppress_context__:
                current, link = current.__context__, _CONTEXT
            else:
                current = None
        parts: list[str] = []
        for i, (item, _) in enumerate(reversed(chain)):
            if i:
                parts.append(chain[len(chain) - i][1])
            if item.__traceback__ is not None:
                parts.append("Traceback (most recent call last):\n")
                parts.extend(traceback.format_tb(item.__traceback__))
            kind = type(item)
            name = kind.__qualname__
            if kind.__module__ not in ("builtins", "__main__"):
                name = f"{kind.__module__}.{name}"
            message = exception_message(item)
            parts.append(f"{name}: {message}\n" if message else f"{name}\n")
        return redact_text("".join(parts), call, limit)
    except Exception:
        return type(exc).__name__


def error_message(call: Call) -> str | None:
    """The call's error message (the AWS message, else the exception's), redacted."""
    message: object = call.error_message
    if message is None:
        if call.exception is None:
            return None
        message = exception_message(call.exception)
    if not message:
        return None
    return redact_text(message, call)
