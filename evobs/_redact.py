"""Redaction driven by the service model: what evobs must never record.

botocore's models mark secret members ``sensitive`` (``SecretString``,
``Plaintext``, ``SSECustomerKey``, ``Password``...). For each operation evobs
builds a *plan* once (cached, bounded): a small tree that says, per member, keep,
redact (sensitive, or a credential), omit (bodies, blobs, streams, message
payloads), hide unless asked (S3 keys), or descend (structures, lists, maps).
The plan drives:

- :func:`render_params`: the redacted, size-capped JSON of a call's params,
  recorded only with ``capture_params=True``;
- :func:`redact_value`: a redacted copy of any modeled value (params or a
  response), for code that wants structured data;
- :func:`redact_text`: error messages and stack traces, with every sensitive value
  of the call, its S3 keys and its client's own credentials masked, and
  credentials in any textual form (:func:`scrub_credentials`);
- :func:`exception_event`: the exception event and status description of a failure,
  the one builder every span evobs writes uses (call, attempt, transfer);
- :func:`safe_error_code`: an error code from the wire, before any signal sees it.

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
from urllib.parse import quote, unquote

from botocore.model import Shape
from botocore.parsers import ResponseParserError

from ._compat.botocore import signing_credentials
from ._fork import ForkSafeLock

if TYPE_CHECKING:
    from ._call import Call
    from ._operation import Operation

__all__ = [
    "BODY",
    "KEY",
    "MARK",
    "MAX_CODE_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_PARAMS_CHARS",
    "MAX_STACKTRACE_CHARS",
    "MIN_CREDENTIAL_CHARS",
    "TRUNCATED",
    "UNMODELED",
    "Masks",
    "credential_forms",
    "error_message",
    "exception_event",
    "exception_message",
    "exception_type",
    "mask",
    "masks_for",
    "redact_text",
    "redact_traceback",
    "redact_value",
    "render_params",
    "s3_key_forms",
    "s3_keys",
    "safe_error_code",
    "scrub_credentials",
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

    __slots__ = ("dirty", "item", "keyed", "kind", "members")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        #: Whether a sensitive member lives at or under this node.
        self.dirty = kind == _SECRET
        #: Whether an S3 object key lives at or under this node.
        self.keyed = kind == _KEY
        self.members: dict[str, _Node] = {}
        self.item: _Node | None = None

    def __repr__(self) -> str:
        return f"<_Node kind={self.kind} dirty={self.dirty} members={list(self.members)}>"


_LEAF_NODE: Final = _Node(_LEAF)
_SECRET_NODE: Final = _Node(_SECRET)
_EMPTY_STRUCT: Final = _Node(_STRUCT)


# -- plans ----------------------------------------------------------------------------


def _build(shape: Any, service: str) -> _Node:
    """The plan of one shape: a graph (recursive shapes make cycles), flags solved."""
    memo: dict[tuple[Any, ...], _Node] = {}
    root = _node(shape, service, memo, None)
    # Propagate "something sensitive / an S3 key lives under here" to a fixed point (cycles).
    nodes = list(memo.values())
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node.dirty and node.keyed:
                continue
            children: list[_Node] = list(
                node.members.values() if node.kind == _STRUCT else (node.item,) if node.item else ()
            )
            if not node.dirty and any(c.dirty for c in children):
                node.dirty = changed = True
            if not node.keyed and any(c.keyed for c in children):
                node.keyed = changed = True
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


def _op_plan(op: Operation) -> _Node:
    """An operation's input plan, kept on it (``Operation.input_plan``)."""
    plan = op.input_plan = _plan(op.model)
    return plan


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


def _key_strings(value: Any, out: list[str], depth: int) -> None:
    """The strings of an S3 key member's value (``CopySource`` may be boto3's dict form)."""
    if len(out) >= _MAX_SECRETS or depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, dict):
        _key_strings(value.get("Key"), out, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _key_strings(v, out, depth + 1)


def _collect_keys(node: _Node, value: Any, out: list[str], depth: int) -> None:
    if len(out) >= _MAX_SECRETS or depth > _MAX_DEPTH or not node.keyed:
        return
    kind = node.kind
    if kind == _KEY:
        _key_strings(value, out, depth)
    elif kind == _STRUCT and isinstance(value, dict):
        members = node.members
        for k, v in value.items():
            child = members.get(k) if isinstance(k, str) else None
            if child is None or not child.keyed:
                continue
            if child.kind != _KEY:
                _collect_keys(child, v, out, depth + 1)
                continue
            _key_strings(v, out, depth + 1)
            if k == "CopySource" and isinstance(v, str):
                # botocore's form, "bucket/key?versionId=...", key URL-encoded.
                _key_strings(unquote(v.partition("?")[0].lstrip("/").partition("/")[2]), out, 0)
    elif kind == _LIST and node.item is not None and isinstance(value, list | tuple):
        for v in value:
            _collect_keys(node.item, v, out, depth + 1)
    elif kind == _MAP and node.item is not None and isinstance(value, dict):
        for v in value.values():
            _collect_keys(node.item, v, out, depth + 1)


def s3_keys(model: Any, params: Any) -> tuple[str, ...]:
    """The S3 object keys in the call's params (``Key``, ``CopySource``...), bounded."""
    try:
        plan = _plan(model)
        if not plan.keyed or not params:
            return ()
        out: list[str] = []
        _collect_keys(plan, params, out, 0)
        return tuple(out)
    except Exception:
        return ()


# -- credentials in free text -----------------------------------------------------------
#
# Where credentials show up in error text: presigned-URL query strings, Authorization
# headers (SigV4, SigV2, Bearer) and header dumps echoed back, error bodies that are not
# JSON (XML elements), JSON (also inside a JSON string), Python reprs of dicts, keyword
# arguments, str and bytes, ``name=value`` and ``name: value`` lines, and bare access key
# ids. A credential is recognised by the name in front of it (then only its value is
# masked) or, for access key ids, by its shape.

#: Names whose value is a credential in every form.
_CREDENTIAL_NAMES: Final = (
    r"X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
    r"x-amz-(?:copy-source-)?server-side-encryption-customer-key|"
    r"SignatureProvided|Signature|Credential|AWSAccessKeyId|AccessKeyId|SecretAccessKey|"
    r"SecretKey|SessionToken|SecurityToken|aws_access_key_id|aws_secret_access_key|"
    r"aws_session_token|aws_security_token|access_key_id|access_key|secret_access_key|"
    r"secret_key|session_token|security_token"
)
#: Words that name a credential only as a quoted key or with a quoted value
#: (``"Token": "..."``, ``token='...'``); elsewhere they are ordinary words.
_CREDENTIAL_WORDS: Final = r"token|password|passwd|secret"
_CREDENTIAL_RE: Final = re.compile(
    r"\b(?:(?P<auth>(?:Proxy-)?Authorization)|(?P<word>"
    + _CREDENTIAL_WORDS
    + r")|"
    + _CREDENTIAL_NAMES
    + r")\b"
    # The name's closing quote (JSON, a repr, JSON inside a JSON string), the separator
    # (``=``, ``:``, ``%3D``, an XML element's ``>``, a tuple's ``', '``), the value's
    # opening quote (``"``, ``'``, ``b'``, ``\"``).
    r"(?P<kq>\\?[\"'])?[ \t]*"
    r"(?:(?P<xml>>|&gt;)|[=:]|%3D|(?(kq),(?=\s*b?\\?[\"'])|(?!)))"
    r"\s*(?P<q>b?\\?[\"'])?"
    r"(?(word)(?(kq)|(?(q)|(?!))))"
    # An Authorization header's value is all of it (SigV4 has spaces and commas): up to
    # its closing quote, its closing tag, or the end of the line.
    r"(?P<value>(?(auth)(?(q)[^\"'\\\n]+|(?=\S)(?(xml)[^<&\n]+|[^\n]+))"
    # Other values end where a credential cannot go on (none holds a quote or a space).
    r"|(?!b?\\?[\"'])[^\s&,;\"'<>\\)}\]]+))",
    re.IGNORECASE | re.ASCII,
)
#: ``Bearer <token>`` outside an Authorization header: a token has a digit or punctuation
#: (so "Bearer authentication" stays a word).
_BEARER_RE: Final = re.compile(
    r"\bBearer\s+(?P<value>(?=[A-Za-z]*(?:[0-9_~+/-]|\.[A-Za-z0-9]))[A-Za-z0-9._~+/-]{8,}=*)",
    re.IGNORECASE | re.ASCII,
)
#: Access key ids (and the IAM unique-id kinds a key id can be mistaken for), wherever
#: they are: also glued to what precedes them (``%3DAKIA...`` in a re-encoded URL).
_ACCESS_KEY_RE: Final = re.compile(r"(?P<value>(?:AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,})")
#: Where a credential may start, in the ASCII-lowercased text: one scan for plain words
#: (factored by their first letters, which keeps the scan cheap) finds the few places
#: where the rules above are tried, anchored.
_TRIGGER_RE: Final = re.compile(
    r"a(?:ws(?:accesskeyid|_)|ccess(?:keyid|_key)|uthorization|kia|sia|ida|roa|bia|cca)"
    r"|s(?:ignature|e(?:cret|ssion|curity))|credential|x-amz-|proxy-|token|passw|bearer"
)
_KEY_PREFIXES: Final = frozenset({"akia", "asia", "aida", "aroa", "abia", "acca"})
_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _rule(trigger: str) -> re.Pattern[str]:
    if trigger in _KEY_PREFIXES:
        return _ACCESS_KEY_RE
    return _BEARER_RE if trigger == "bearer" else _CREDENTIAL_RE


def scrub_credentials(text: str) -> str:
    """Mask credentials that may appear in free text (error messages, tracebacks, codes):
    the value after a credential's name in any of the forms above, and access key ids."""
    if text in _CLEAN:
        return text
    # Same length as ``text``, so positions carry over (str.lower can change the length).
    lowered = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    spans: list[tuple[int, int]] = []
    pos = 0
    search = _TRIGGER_RE.search
    while (trigger := search(lowered, pos)) is not None:
        # Every place is tried, also inside a value just masked: a greedy value must not
        # hide the name of the credential that follows it.
        pos = trigger.end()
        found = _rule(trigger.group()).match(text, trigger.start())
        if found is not None:
            spans.append((found.start("value"), found.end()))
    if not spans:
        if len(text) <= _CLEAN_TEXT:
            if len(_CLEAN) >= _CLEAN_ENTRIES:
                _CLEAN.clear()  # texts that never repeat (ids in them) must not pin it
            _CLEAN[text] = None
        return text
    spans.sort()
    parts: list[str] = []
    done = 0
    end = -1
    for start, stop in spans:
        if start > end:  # a new masked run
            if end >= 0:
                parts.append(MARK)
            parts.append(text[done:start])
        end = max(end, stop)
        done = end
    parts.append(MARK)
    parts.append(text[done:])
    return "".join(parts)


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


def _mask_keys(text: str, keys: Iterable[str]) -> str:
    """Replace S3 object keys standing on their own (not inside a longer word: a key
    ``k`` must not turn ``NoSuchKey`` into nonsense) by ``KEY``."""
    found = sorted({k for k in keys if k and k in text}, key=len, reverse=True)
    if not found:
        return text
    pattern = "|".join(map(re.escape, found))
    return re.sub(f"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])", KEY, text)


# -- what one failure's text must not show ----------------------------------------------

#: A credential shorter than this is a placeholder (``testing``), not one AWS or an
#: S3-compatible server accepts (secret keys have 40 characters, access key ids 16 or
#: more, MinIO asks for 8): masking it everywhere would only blank ordinary words.
MIN_CREDENTIAL_CHARS: Final = 8


class Masks:
    """What the text of one failure must not show, gathered once on its error path:
    secret values (the call's sensitive params, the client's own credentials, as
    ``MARK``) and S3 object keys (unless captured, as ``KEY``)."""

    __slots__ = ("keys", "rendered", "secrets", "statuses")

    def __init__(self, secrets: Iterable[str] = (), keys: Iterable[str] = ()) -> None:
        self.secrets = tuple(secrets)
        self.keys = tuple(keys)
        #: Texts already redacted with these masks (a retry storm repeats one message),
        #: by (text, limit): what they became. Bounded; holds only redacted output.
        self.rendered: dict[tuple[str, int], str] = {}
        #: Span statuses a signal built from an error code and message redacted with these
        #: masks, by (code, message), for the next failure that repeats them (bounded by
        #: the signal that fills it); they hold only redacted output.
        self.statuses: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:  # never the values
        return f"<Masks secrets={len(self.secrets)} keys={len(self.keys)}>"


_NO_MASKS: Final = Masks()


def credential_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Credential values as text may quote them: as they are and URL-encoded (a session
    token in a presigned query string); placeholders shorter than ``MIN_CREDENTIAL_CHARS``
    left out."""
    values = tuple(values)
    forms = _CREDENTIAL_FORMS.get(values)
    if forms is None:
        found: list[str] = []
        for value in values:
            if len(value) < MIN_CREDENTIAL_CHARS:
                continue
            found.append(value)
            encoded = quote(value, safe="")
            if encoded != value:
                found.append(encoded)
        forms = tuple(found)
        if len(_CREDENTIAL_FORMS) >= _CREDENTIAL_FORMS_MAX:
            _CREDENTIAL_FORMS.clear()
        _CREDENTIAL_FORMS[values] = forms
    return forms


#: A process signs with a few credentials (rotated now and then): their forms, once each.
_CREDENTIAL_FORMS: Final[dict[tuple[str, ...], tuple[str, ...]]] = {}
_CREDENTIAL_FORMS_MAX: Final = 64


def s3_key_forms(keys: Iterable[str]) -> tuple[str, ...]:
    """S3 object keys as text may quote them: as they are and as a URL path encodes them."""
    forms: list[str] = []
    for key in keys:
        forms.append(key)
        if not _URL_PATH_SAFE.issuperset(key):
            forms.append(quote(key, safe="/~"))
    return tuple(forms)


_URL_PATH_SAFE: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~/-"
)


def masks_for(
    call: Call | None,
    *,
    capture_s3_keys: bool = False,
    signer: object = None,
    keys: Iterable[str] = (),
) -> Masks:
    """What a failure's text must not show: the call's sensitive params, its S3 keys and
    ``keys`` (unless ``capture_s3_keys``), and the credentials its client signs with (read
    now, from the signer before-call saw, or ``signer``). Never raises: what cannot be
    read is skipped."""
    if call is None or signer is not None or keys:
        return _gather(call, capture_s3_keys, signer, keys)
    # One call's failure is shown by several signals (its span's status and events, a log
    # line, each retried attempt's status): gathered once while the call is in flight.
    cached = call._masks
    if cached is not None and cached[0] == capture_s3_keys:
        return cached[1]
    masks = _gather(call, capture_s3_keys, None, ())
    call._masks = (capture_s3_keys, masks)
    return masks


def _gather(call: Call | None, capture_s3_keys: bool, signer: object, keys: Iterable[str]) -> Masks:
    """:func:`masks_for`'s work, uncached (the cache is the call's)."""
    secrets: list[str] = []
    named: list[str] = []
    if call is not None and signer is None:
        signer = call.signer
    try:
        if not capture_s3_keys:
            named.extend(keys)
        params = None if call is None else call.params
        if call is not None and params:
            op = call.op
            plan = op.input_plan or _op_plan(op)
            if plan.dirty:  # the values of sensitive params (and base64 of bytes)
                _collect(plan, params, secrets, 0)
            if plan.keyed and not capture_s3_keys:
                _collect_keys(plan, params, named, 0)
    except Exception:
        pass  # params the plan cannot walk: the credentials below are masked all the same
    if signer is not None:  # never raises: what cannot be read is empty
        secrets.extend(credential_forms(signing_credentials(signer)))
    if not secrets and not named:
        return _NO_MASKS
    # The same client, operation and keys give the same masks: one object (and its
    # rendered texts) for all their failures.
    key = (tuple(secrets), tuple(named))
    found = _MASKS.get(key)
    if found is None:
        if len(_MASKS) >= _MASKS_ENTRIES:
            _MASKS.clear()
        found = _MASKS[key] = Masks(secrets, s3_key_forms(named))
    return found


#: Masks by what they mask, bounded: held in memory, never recorded.
_MASKS: Final[dict[tuple[tuple[str, ...], tuple[str, ...]], Masks]] = {}
_MASKS_ENTRIES: Final = 128
_RENDERED_ENTRIES: Final = 16


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters for scanning, minus what may be the head of an
    access key id the cut split (too short to look like one any more)."""
    if len(text) <= limit:
        return text
    return _SPLIT_KEY_ID_RE.sub("", text[:limit])


#: At most the length of an access key id (128): never more is dropped.
_SPLIT_KEY_ID_RE: Final = re.compile(r"[A-Z0-9]{1,128}\Z")


def redact_text(
    text: object,
    call: Call | None = None,
    limit: int = MAX_MESSAGE_CHARS,
    *,
    capture_s3_keys: bool = False,
    masks: Masks | None = None,
) -> str:
    """Free text (an error message, a traceback) safe to record: the call's sensitive
    values, S3 keys and own credentials (or ``masks``) and credentials in any form
    masked, valid UTF-8, at most ``limit`` characters."""
    try:
        if isinstance(text, BaseException):
            text = exception_message(text)
        elif not isinstance(text, str):
            text = _safe_str(text)
        text = _cut(text, _MAX_TEXT_SCAN)
        if masks is None:
            masks = _NO_MASKS if call is None else masks_for(call, capture_s3_keys=capture_s3_keys)
        rendered = masks.rendered
        cacheable = len(text) <= _CLEAN_TEXT
        if cacheable:
            done = rendered.get((text, limit))
            if done is not None:
                return done
        received = text
        secrets = masks.secrets
        if secrets:
            # First, on the text as received: anything rewritten before this
            # could split a secret and leave its pieces unmatched.
            text = mask(text, secrets)
        if masks.keys:
            text = _mask_keys(text, masks.keys)
        text = scrub_credentials(text)
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        if secrets and any(s in text for s in secrets):
            return MARK if not any(s in MARK for s in secrets) else ""
        if len(text) > limit:
            text = text[: max(0, limit - len(TRUNCATED))] + TRUNCATED
        if cacheable:
            if len(rendered) >= _RENDERED_ENTRIES:
                rendered.clear()
            rendered[(received, limit)] = text
        return text
    except Exception:
        return MARK


#: Error codes longer than this (garbage from the wire) are cut; real AWS codes are far
#: shorter, and the metrics signal counts codes over its own, shorter, limit as ``other``.
MAX_CODE_CHARS: Final = 256


def safe_error_code(code: object) -> str:
    """An error code from the wire, safe to record as a span status, ``error.type``,
    ``exception.type``, the ``error_type`` log field and metric label: credentials in
    it masked (named ones, access key ids, and any long run of base64 characters mixing
    letters and digits: a bare secret key or token), valid UTF-8, at most
    ``MAX_CODE_CHARS`` characters. Codes repeat (every attempt of a retry storm has one):
    short codes found unchanged are remembered, bounded, and not scanned again."""
    if type(code) is str and code in _SAFE_CODES:
        return code
    try:
        original = text = code if isinstance(code, str) else _safe_str(code)
        text = scrub_credentials(_cut(text, 4 * MAX_CODE_CHARS))
        text = _SECRET_SHAPED_RE.sub(_secret_shaped, text)
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        text = text[:MAX_CODE_CHARS]
        if text == original:
            if len(_SAFE_CODES) >= _CLEAN_ENTRIES:
                _SAFE_CODES.clear()  # codes that never repeat must not pin it
            _SAFE_CODES[text] = None
        return text
    except Exception:
        return MARK


#: Codes found unchanged by :func:`safe_error_code` (only those: nothing that held a
#: credential is kept), bounded like the clean-text cache.
_SAFE_CODES: Final[dict[str, None]] = {}


#: In a code, a long run of base64 characters: a code is a name (``NoSuchKey``,
#: ``InvalidInstanceID.Malformed``), a secret key (40 characters) or session token is not.
_SECRET_SHAPED_RE: Final = re.compile(r"[A-Za-z0-9+/=]{32,}")


def _secret_shaped(found: re.Match[str]) -> str:
    """``MARK`` for a run with letters and digits (a key), the run itself otherwise."""
    run = found.group()
    has_digit = any(c.isdigit() for c in run)
    return MARK if has_digit and any(c.isalpha() for c in run) else run


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


def exception_type(exc: BaseException) -> str:
    """``exception.type`` as OpenTelemetry's SDK writes it: the qualified class name."""
    kind = type(exc)
    module = kind.__module__
    return f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__


_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


def redact_traceback(
    exc: BaseException,
    call: Call | None = None,
    limit: int = 16384,
    *,
    capture_s3_keys: bool = False,
    masks: Masks | None = None,
) -> str:
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
        return redact_text(
            "".join(parts), call, limit, capture_s3_keys=capture_s3_keys, masks=masks
        )
    except Exception:
        return type(exc).__name__


def error_message(
    call: Call, *, capture_s3_keys: bool = False, masks: Masks | None = None
) -> str | None:
    """The call's error message (the AWS message, else the exception's), redacted."""
    message: object = call.error_message
    if message is None:
        if call.exception is None:
            return None
        message = exception_message(call.exception)
    if not message:
        return None
    return redact_text(message, call, capture_s3_keys=capture_s3_keys, masks=masks)


# -- exception events and status descriptions ---------------------------------------------

MAX_DESCRIPTION_CHARS: Final = 1024
MAX_STACKTRACE_CHARS: Final = 16384


def exception_event(
    exc: BaseException | None,
    call: Call | None = None,
    *,
    code: str | None = None,
    message: str | None = None,
    capture_s3_keys: bool = False,
    masks: Masks | None = None,
) -> tuple[dict[str, str], str]:
    """The ``exception`` span event's attributes and the span status description
    (``Code: message``) of one failure, redacted: what every span evobs writes records.

    ``exc`` is the exception, if the failure raised one (else the event is named after
    the error code). ``call`` is the failed call (its error code and message, sensitive
    params, S3 keys, credentials), None for a span that is not a call's. ``code`` and
    ``message`` replace the call's own (an attempt's error); ``masks``, what is masked.
    The event is what ``Span.record_exception`` writes, but each text redacted: a
    traceback carries messages (botocore's parser errors quote the response body) and
    the caller's source lines, any of which may hold a secret."""
    if code is None and call is not None:
        code = call.error_type or call.outcome
    if not code:
        code = type(exc).__name__ if exc is not None else "error"
    code = safe_error_code(code)
    raised = exception_message(exc) if exc is not None else None
    if message is None:
        if call is not None and call.error_message:
            message = call.error_message
        elif raised is not None:
            message = raised
        elif call is not None and call.exception is not None:
            message = exception_message(call.exception)
    if masks is None and (message or exc is not None):  # gathered only if text is shown
        masks = masks_for(call, capture_s3_keys=capture_s3_keys)
    said = redact_text(message, masks=masks) if message else ""
    description = f"{code}: {said}" if said else code
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[: MAX_DESCRIPTION_CHARS - len(TRUNCATED)] + TRUNCATED
    if exc is None:
        return {"exception.type": code, "exception.message": said}, description
    attributes = {
        "exception.type": exception_type(exc),
        "exception.message": said if raised == message else redact_text(raised, masks=masks),
        "exception.stacktrace": redact_traceback(exc, None, MAX_STACKTRACE_CHARS, masks=masks),
        "exception.escaped": "False",
    }
    return attributes, description
