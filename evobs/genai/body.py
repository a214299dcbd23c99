"""Reading InvokeModel bodies without taking anything from the application.

Request side: the ``body`` param may be bytes, a string or a file-like object.
Bytes and strings are read as they are; an ``io.BytesIO`` is read through
``getvalue()`` (its position does not move); any other file-like object is left
alone (reading it would move its position or consume a pipe), and only the model id
is used.

Response side: InvokeModel's ``body`` is a botocore ``StreamingBody`` over the
socket: reading it consumes the application's data. :func:`take_response_body`
reads at most ``limit`` bytes and always puts back a ``StreamingBody`` that yields
exactly what the original would have:

- the whole body fit (the usual case: a completion is a few KiB): the original is
  closed and ``parsed["body"]`` becomes a body over the same bytes, in memory;
- the body is larger than ``limit`` (announced by ``Content-Length``: then it is not
  touched at all; or found while reading): the new body yields the bytes read so far,
  then the rest of the original stream;
- reading failed (a reset, a read timeout, a short body): the new body yields the
  bytes read so far, then raises the same exception, as the original would have.

The replacement is a ``StreamingBody`` subclass: ``read``, ``iter_chunks``,
``iter_lines``, ``readinto``, ``close`` and the content-length check behave as
botocore's; ``set_socket_timeout`` reaches the original socket while one is left to
read, and has nothing to do once the bytes are in memory.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from botocore.response import StreamingBody

__all__ = ["READ_CHUNK", "BufferedBody", "request_body", "take_response_body"]

READ_CHUNK: Final = 64 * 1024


def request_body(body: Any, limit: int) -> bytes | str | None:
    """An InvokeModel ``body`` param as bytes or text, when it can be read without side
    effects and is at most ``limit`` long; else None."""
    if isinstance(body, bytes | str):
        data: bytes | str = body
    elif isinstance(body, bytearray | memoryview):
        if len(body) > limit:
            return None
        data = bytes(body)
    elif isinstance(body, io.BytesIO):
        try:
            position = body.tell()
            view = body.getbuffer()
        except (ValueError, OSError):  # closed
            return None
        try:
            if view.nbytes - position > limit:
                return None
            data = bytes(view[position:])
        finally:
            view.release()
    else:
        return None
    return data if len(data) <= limit else None


class _Prefixed(io.RawIOBase):
    """The bytes already read, then the rest of the original body (or its error)."""

    def __init__(self, prefix: bytes, rest: Any, error: BaseException | None = None) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._offset = 0
        self._rest = rest
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        remaining = len(self._prefix) - self._offset
        if remaining > 0:
            n = min(remaining, len(target))
            target[:n] = self._prefix[self._offset : self._offset + n]
            self._offset += n
            return n
        if self._error is not None:
            raise self._error
        if self._rest is None:
            return 0
        chunk = self._rest.read(len(target))
        n = len(chunk)
        target[:n] = chunk
        return n

    def close(self) -> None:
        if not self.closed and self._rest is not None:
            self._rest.close()
        super().close()


class BufferedBody(StreamingBody):  # type: ignore[misc]
    """A ``StreamingBody`` over bytes evobs already read (then, maybe, the original)."""

    def __init__(self, raw: Any, content_length: Any, original: Any = None) -> None:
        super().__init__(raw, content_length)
        self._original = original

    def set_socket_timeout(self, timeout: float) -> None:
        """Applies to the original socket while some of it is left; else nothing to do."""
        if self._original is not None:
            self._original.set_socket_timeout(timeout)


def _content_length(parsed: Mapping[str, Any]) -> int | None:
    metadata = parsed.get("ResponseMetadata")
    headers = metadata.get("HTTPHeaders") if isinstance(metadata, Mapping) else None
    value = headers.get("content-length") if isinstance(headers, Mapping) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def take_response_body(parsed: MutableMapping[str, Any], limit: int) -> bytes | None:
    """The InvokeModel response body's bytes if it is at most ``limit`` bytes, with
    ``parsed["body"]`` replaced by a body that yields the same bytes; None (and the
    application's body intact, or replaced by an identical one) otherwise."""
    body: Any = parsed.get("body")
    if limit <= 0 or body is None or type(body) is not StreamingBody:
        return None  # aiobotocore's bodies, already-replaced ones, or none: leave them
    length = _content_length(parsed)
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= limit:
            chunk = body.read(min(READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except Exception as exc:
        parsed["body"] = BufferedBody(_Prefixed(b"".join(chunks), None, exc), None, body)
        return None
    data = b"".join(chunks)
    if total > limit:
        parsed["body"] = BufferedBody(_Prefixed(data, body), None, body)
        return None
    body.close()
    parsed["body"] = BufferedBody(io.BytesIO(data), len(data))
    return data
