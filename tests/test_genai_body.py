"""Reading InvokeModel bodies takes nothing from the application: the response body it
reads is byte-for-byte what it would have read (or fails as it would have), and request
bodies are read only when that has no side effect."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import IncompleteReadError, ResponseStreamingError
from botocore.response import StreamingBody
from urllib3.exceptions import ProtocolError

from evobs.demo.bedrock import BedrockServer
from evobs.genai.body import BufferedBody, request_body, take_response_body

from .genai_util import MODELS, client_for

PAYLOAD = json.dumps({"generation": "x" * 5000, "stop_reason": "stop"}).encode()


def _parsed(raw: Any, length: int | None) -> dict[str, Any]:
    headers = {} if length is None else {"content-length": str(length)}
    return {
        "body": StreamingBody(raw, length),
        "ResponseMetadata": {"HTTPHeaders": headers},
    }


class _Failing(io.RawIOBase):
    """A socket stream that sends ``good`` bytes, then breaks (urllib3's ProtocolError)."""

    def __init__(self, good: bytes) -> None:
        super().__init__()
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._good.readinto(buffer)
        if n == 0:
            raise ProtocolError("Connection broken")
        return n


def _read_all(body: Any, size: int = 777) -> tuple[bytes, type[BaseException] | None]:
    """What an application reading ``body`` in chunks gets: bytes, then the error type."""
    out = b""
    try:
        while chunk := body.read(size):
            out += chunk
    except Exception as exc:
        return out, type(exc)
    return out, None


def test_a_real_body_is_handed_back_identical(bedrock_server: BedrockServer) -> None:
    """Over real HTTP: the bytes evobs took are the bytes the application then reads, in
    whatever way it reads them (read, iter_lines, iter_chunks, and readinto where
    botocore has it), and set_socket_timeout still works."""
    client = client_for(bedrock_server)
    taken: list[bytes | None] = []

    def after(parsed: Any, **kwargs: Any) -> None:
        taken.append(take_response_body(parsed, 1 << 20))

    client.meta.events.register("after-call.bedrock-runtime.InvokeModel", after)
    body = json.dumps({"prompt": "Tell me a story"})
    out = client.invoke_model(modelId=MODELS["meta.llama"], body=body)
    out["body"].set_socket_timeout(5)
    assert out["body"].read() == taken[0]
    assert json.loads(taken[0] or b"")["generation"]
    out = client.invoke_model(modelId=MODELS["meta.llama"], body=body)
    assert b"".join(out["body"].iter_chunks(7)) == taken[1]
    out = client.invoke_model(modelId=MODELS["meta.llama"], body=body)
    assert b"\n".join(out["body"].iter_lines()) == taken[2]
    if hasattr(StreamingBody, "readinto"):  # newer botocore only
        out = client.invoke_model(modelId=MODELS["meta.llama"], body=body)
        buffer = bytearray(len(taken[3] or b""))
        assert out["body"].readinto(buffer) == len(buffer) and bytes(buffer) == taken[3]


def test_a_body_announced_too_large_is_not_touched() -> None:
    """A Content-Length above the limit: nothing is read, the same body object stays."""
    parsed = _parsed(io.BytesIO(PAYLOAD), len(PAYLOAD))
    original = parsed["body"]
    assert take_response_body(parsed, 100) is None
    assert parsed["body"] is original
    assert original.read() == PAYLOAD


def test_a_body_found_too_large_is_chained() -> None:
    """No Content-Length and more bytes than the limit: the bytes read come first, then the
    rest of the original; the application reads the whole body."""
    parsed = _parsed(io.BytesIO(PAYLOAD), None)
    assert take_response_body(parsed, 1000) is None
    assert isinstance(parsed["body"], BufferedBody)
    assert _read_all(parsed["body"]) == (PAYLOAD, None)


def test_a_body_that_breaks_breaks_the_same_way() -> None:
    """A connection that breaks mid-body: the application reads the same bytes, then gets
    the same exception type, as without evobs."""
    good = PAYLOAD[:3000]
    expected = _read_all(StreamingBody(_Failing(good), len(PAYLOAD)))
    assert expected == (good, ResponseStreamingError)
    parsed = _parsed(_Failing(good), len(PAYLOAD))
    assert take_response_body(parsed, 1 << 20) is None
    assert _read_all(parsed["body"]) == expected


def test_a_short_body_fails_its_length_check_the_same_way() -> None:
    """A body shorter than its Content-Length: IncompleteReadError, as without evobs."""
    expected = _read_all(StreamingBody(io.BytesIO(PAYLOAD[:100]), len(PAYLOAD)))
    assert expected == (PAYLOAD[:100], IncompleteReadError)
    parsed = _parsed(io.BytesIO(PAYLOAD[:100]), len(PAYLOAD))
    assert take_response_body(parsed, 1 << 20) is None
    assert _read_all(parsed["body"]) == expected


def test_a_limit_of_zero_or_a_foreign_body_reads_nothing() -> None:
    """limit 0 (reading switched off), a body that is not botocore's StreamingBody
    (aiobotocore's), or no body: nothing is read or replaced."""
    parsed = _parsed(io.BytesIO(PAYLOAD), len(PAYLOAD))
    original = parsed["body"]
    assert take_response_body(parsed, 0) is None and parsed["body"] is original
    foreign = {"body": io.BytesIO(PAYLOAD)}
    assert take_response_body(foreign, 1 << 20) is None
    assert foreign["body"].read() == PAYLOAD
    assert take_response_body({}, 1 << 20) is None


def test_an_exact_fit_is_read() -> None:
    """A body exactly at the limit is read and handed back."""
    parsed = _parsed(io.BytesIO(PAYLOAD), len(PAYLOAD))
    assert take_response_body(parsed, len(PAYLOAD)) == PAYLOAD
    assert parsed["body"].read() == PAYLOAD


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1}', b'{"a": 1}'),
        ('{"a": 1}', '{"a": 1}'),
        (bytearray(b'{"a": 1}'), b'{"a": 1}'),
        (memoryview(b'{"a": 1}'), b'{"a": 1}'),
        (b"x" * 65, None),  # over the limit
        (None, None),
        (12, None),
    ],
)
def test_request_body_forms(body: Any, expected: Any) -> None:
    """bytes, str, bytearray and memoryview bodies are read; anything over the limit or of
    another type is not."""
    assert request_body(body, 64) == expected


def test_request_body_from_bytesio_keeps_its_position() -> None:
    """A BytesIO is read from its current position, and the position does not move; a
    closed one is skipped."""
    buffer = io.BytesIO(b'XX{"a": 1}')
    buffer.seek(2)
    assert request_body(buffer, 64) == b'{"a": 1}'
    assert buffer.tell() == 2
    assert request_body(buffer, 4) is None and buffer.tell() == 2
    buffer.close()
    assert request_body(buffer, 64) is None


def test_request_body_never_reads_files(tmp_path: Any) -> None:
    """A real file (or any other stream) is never read: its position stays at 0."""
    path = tmp_path / "body.json"
    path.write_bytes(b'{"a": 1}')
    with path.open("rb") as handle:
        assert request_body(handle, 64) is None
        assert handle.tell() == 0
