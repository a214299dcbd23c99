"""The fault server itself: what a raw HTTP client sees for each fault, forwarding, recording.

The fault server is what the fault-path tests of every signal trust, so each of
its answers is checked here on the wire, with ``http.client`` and raw sockets,
before botocore ever parses one.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import boto3
import pytest

from evobs.demo.faults import Fault, FaultServer

JSON_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.PutItem",
}
QUERY_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
QUERY_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"


def request(
    server: FaultServer,
    method: str = "GET",
    path: str = "/bucket/key",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request over a fresh connection; returns status, headers, body."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def json_request(
    server: FaultServer, target: str = "DynamoDB_20120810.PutItem"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    return request(server, "POST", "/", {**JSON_HEADERS, "X-Amz-Target": target}, b"{}")


def query_request(
    server: FaultServer, action: str = "GetCallerIdentity"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    return request(
        server, "POST", "/", QUERY_HEADERS, f"Action={action}&Version=2011-06-15".encode()
    )


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A fault server with no upstream."""
    with FaultServer() as fs:
        yield fs


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultServer]:
    """A fault server forwarding to moto."""
    with FaultServer(moto_url) as fs:
        yield fs


def test_url_and_lifecycle() -> None:
    """The server binds a free loopback port, serves, and refuses connections after stop()."""
    fs = FaultServer().start()
    assert fs.url.startswith("http://127.0.0.1:")
    host, port = fs.address
    assert port > 0
    fs.set_default(Fault.status(418, "Teapot"))
    assert request(fs)[0] == 418
    fs.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2).close()
    with pytest.raises(RuntimeError):
        _ = fs.url


def test_forward_to_moto_with_botocore(proxy: FaultServer, session: boto3.Session) -> None:
    """botocore through the proxy reaches moto: the round trip works and is recorded."""
    s3 = session.client("s3", endpoint_url=proxy.url)
    s3.create_bucket(Bucket="fault-forward")
    s3.put_object(Bucket="fault-forward", Key="k", Body=b"payload")
    got = s3.get_object(Bucket="fault-forward", Key="k")
    assert got["Body"].read() == b"payload"
    records = proxy.requests
    assert [(r.method, r.path) for r in records] == [
        ("PUT", "/fault-forward"),
        ("PUT", "/fault-forward/k"),
        ("GET", "/fault-forward/k"),
    ]
    assert all(r.fault == "forward" and r.status == 200 for r in records)
    # moto's own request id came back through, untouched.
    assert got["ResponseMetadata"]["RequestId"] == records[2].request_id
    assert records[1].body_size == len(b"payload")


def test_forward_dynamodb_json(proxy: FaultServer, session: boto3.Session) -> None:
    """JSON-protocol requests are forwarded and their operation is read from X-Amz-Target."""
    ddb = session.client("dynamodb", endpoint_url=proxy.url)
    tables = ddb.list_tables()
    assert "TableNames" in tables
    (record,) = proxy.requests
    assert record.operation == "ListTables"
    assert record.target == "DynamoDB_20120810.ListTables"
    assert record.style == "json"
    assert record.header("x-amz-target") == "DynamoDB_20120810.ListTables"


def test_forward_is_verbatim() -> None:
    """Method, path, query, headers and body go upstream as sent; status, headers and body
    come back as upstream sent them."""
    with FaultServer() as upstream:
        upstream.set_default(
            Fault.raw(
                207, b"upstream-body", [("X-Upstream", "yes"), ("Content-Type", "text/plain")]
            )
        )
        with FaultServer(upstream.url) as fs:
            status, headers, body = request(
                fs,
                "PATCH",
                "/some/path?a=1&b=two",
                {"X-Custom": "v1", "Content-Type": "x/y"},
                b"abc",
            )
            assert (status, body) == (207, b"upstream-body")
            assert headers["X-Upstream"] == "yes"
            assert headers["Content-Type"] == "text/plain"
            assert headers["x-amz-request-id"] == upstream.requests[0].request_id
            assert fs.requests[0].request_id == upstream.requests[0].request_id
        (seen,) = upstream.requests
        assert (seen.method, seen.path, seen.query) == ("PATCH", "/some/path", "a=1&b=two")
        assert seen.header("X-Custom") == "v1"
        assert seen.header("Content-Type") == "x/y"
        assert seen.body_size == 3


def test_forward_head_keeps_content_length(proxy: FaultServer, session: boto3.Session) -> None:
    """A forwarded HEAD keeps upstream's Content-Length (the object's size, not 0)."""
    s3 = session.client("s3", endpoint_url=proxy.url)
    s3.create_bucket(Bucket="fault-head")
    s3.put_object(Bucket="fault-head", Key="k", Body=b"12345")
    assert s3.head_object(Bucket="fault-head", Key="k")["ContentLength"] == 5
    assert proxy.requests[-1].method == "HEAD"


def test_chunked_request_body_is_read_and_forwarded() -> None:
    """A chunked request body is read whole, counted, and forwarded with a length."""
    with FaultServer() as upstream:
        upstream.set_default(Fault.raw(200, b"ok"))
        with FaultServer(upstream.url) as fs:
            host, port = fs.address
            conn = http.client.HTTPConnection(host, port, timeout=5)
            try:
                conn.request(
                    "PUT",
                    "/bucket/key",
                    body=iter([b"abc", b"defgh"]),
                    headers={"Transfer-Encoding": "chunked"},
                    encode_chunked=True,
                )
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, b"ok")
            finally:
                conn.close()
            assert fs.requests[0].body_size == 8
        assert upstream.requests[0].body_size == 8
        assert upstream.requests[0].header("Content-Length") == "8"


def test_no_upstream_answers_bad_gateway(server: FaultServer) -> None:
    """Forwarding without an upstream answers 502 rather than hanging."""
    status, _, body = request(server)
    assert status == 502
    assert b"<Code>BadGateway</Code>" in body


def test_json_error_body(server: FaultServer) -> None:
    """A JSON-protocol request gets a JSON error: __type, message, x-amzn-ErrorType, request id."""
    server.script([Fault.status(503)])
    status, headers, body = json_request(server)
    assert status == 503
    doc = json.loads(body)
    assert doc["__type"] == "ServiceUnavailable"
    assert doc["message"]
    assert headers["x-amzn-ErrorType"] == "ServiceUnavailable"
    assert headers["Content-Type"].startswith("application/x-amz-json")
    assert headers["x-amzn-RequestId"] == server.requests[0].request_id


def test_query_error_body(server: FaultServer) -> None:
    """A query-protocol (Action=) request gets an <ErrorResponse> with the request id."""
    server.script([Fault.error(400, "InvalidParameterValue", "bad <value> & more")])
    status, headers, body = query_request(server)
    assert status == 400
    root = ET.fromstring(body)
    assert root.tag == "ErrorResponse"
    assert root.findtext("Error/Code") == "InvalidParameterValue"
    assert root.findtext("Error/Message") == "bad <value> & more"
    assert root.findtext("RequestId") == headers["x-amzn-RequestId"]
    assert server.requests[0].operation == "GetCallerIdentity"
    assert server.requests[0].style == "query"


def test_s3_error_body(server: FaultServer) -> None:
    """A REST request without target or Action gets S3's <Error> and both S3 id headers."""
    server.script([Fault.error(404, "NoSuchKey", "The specified key does not exist.")])
    status, headers, body = request(server)
    assert status == 404
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    assert headers["x-amz-id-2"]
    assert root.findtext("HostId") == headers["x-amz-id-2"]


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (json_request, 400, "ThrottlingException"),
        (query_request, 400, "Throttling"),
        (request, 503, "SlowDown"),
    ],
    ids=["json", "query", "s3"],
)
def test_throttle_per_protocol(server: FaultServer, send: object, status: int, code: str) -> None:
    """Throttling is spelled the way each protocol's real service spells it."""
    server.script([Fault.throttle()])
    got_status, _, body = send(server)  # type: ignore[operator]
    assert got_status == status
    assert code.encode() in body


def test_429_empty_body(server: FaultServer) -> None:
    """429 comes with an empty body and still a request id."""
    server.script([Fault.too_many_requests()])
    status, headers, body = json_request(server)
    assert (status, body) == (429, b"")
    assert headers["x-amzn-RequestId"]


def test_without_request_id(server: FaultServer) -> None:
    """A fault can leave out every request-id header and element."""
    server.script([Fault.status(500).without_request_id(), Fault.status(500).without_request_id()])
    _, headers, body = request(server)
    assert headers["x-amz-request-id"] is None and headers["x-amz-id-2"] is None
    assert b"RequestId" not in body
    _, headers, _ = json_request(server)
    assert headers["x-amzn-RequestId"] is None
    assert server.requests[0].request_id is None


def test_reset_is_a_tcp_reset(server: FaultServer) -> None:
    """A reset closes the connection with RST: the client's read fails with ECONNRESET."""
    server.script([Fault.reset()])
    sock = socket.create_connection(server.address, timeout=5)
    try:
        sock.sendall(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024):
                pass
    finally:
        sock.close()
    assert server.requests[0].fault == "reset"
    assert server.requests[0].status is None


def test_stall_outlives_read_timeout_and_ends_on_stop() -> None:
    """A stall answers nothing (the client times out), and stop() ends it (EOF)."""
    fs = FaultServer().start()
    try:
        fs.script([Fault.stall()])
        sock = socket.create_connection(fs.address, timeout=5)
        sock.sendall(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        fs.wait_for(1)
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(1024)
        sock.settimeout(5)
    finally:
        fs.stop()
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        pass  # also an end, not a hang
    finally:
        sock.close()
    assert fs.requests[0].fault == "stall"


def test_stall_ends_when_client_leaves(server: FaultServer) -> None:
    """A stalled handler notices the client gave up, so threads do not pile up."""
    server.script([Fault.stall()])
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    server.wait_for(1)
    sock.close()
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0


def test_s3_200_with_error_body(server: FaultServer) -> None:
    """S3's "200 OK" carrying an <Error> document."""
    server.script([Fault.s3_200_error("InternalError")])
    status, headers, body = request(server)
    assert status == 200
    assert ET.fromstring(body).findtext("Code") == "InternalError"
    assert headers["x-amz-request-id"]


@pytest.mark.parametrize("send", [json_request, request], ids=["json", "xml"])
def test_malformed_body(server: FaultServer, send: object) -> None:
    """A malformed error body parses as neither JSON nor XML."""
    server.script([Fault.malformed(500)])
    status, _, body = send(server)  # type: ignore[operator]
    assert status == 500
    assert body
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ET.ParseError):
        ET.fromstring(body)


@pytest.mark.parametrize(
    "send", [json_request, request, query_request], ids=["json", "s3", "query"]
)
def test_non_utf8_message(server: FaultServer, send: object) -> None:
    """A non-UTF-8 error message reaches the client as raw bytes."""
    server.script([Fault.non_utf8()])
    status, _, body = send(server)  # type: ignore[operator]
    assert status == 500
    assert b"\xff\xfe" in body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")


def test_huge_message(server: FaultServer) -> None:
    """A huge error message arrives whole."""
    server.script([Fault.huge_message(size=2_000_000)])
    status, _, body = json_request(server)
    assert status == 500
    assert len(json.loads(body)["message"]) == 2_000_000


def test_script_matching_and_default(server: FaultServer) -> None:
    """Faults go to the next request they match; the rest get the default."""
    server.set_default(Fault.status(404, "NotHere"))
    server.script(
        [
            Fault.status(500).on("PutItem"),
            Fault.status(503),
            Fault.status(409).on(method="DELETE", path=r"^/bucket/"),
        ]
    )
    assert json_request(server, "DynamoDB_20120810.GetItem")[0] == 503  # skips the PutItem fault
    assert request(server, "GET", "/bucket/k")[0] == 404  # the DELETE fault does not match
    assert json_request(server, "DynamoDB_20120810.PutItem")[0] == 500
    assert request(server, "DELETE", "/bucket/k")[0] == 409
    assert server.pending == []
    assert query_request(server)[0] == 404
    assert [r.fault for r in server.requests] == ["error"] * 5


def test_default_fault_forever(server: FaultServer) -> None:
    """A default fault applies to every request until changed."""
    server.set_default(Fault.throttle())
    assert [json_request(server)[0] for _ in range(4)] == [400] * 4
    server.set_default(Fault.too_many_requests())
    assert json_request(server)[0] == 429


def test_recording_is_exact_under_concurrency(server: FaultServer) -> None:
    """Every request from many threads is recorded once, with its operation; count() filters."""
    server.set_default(Fault.status(500))
    per_thread = 10

    def work(n: int) -> None:
        for _ in range(per_thread):
            json_request(server, f"Svc.Op{n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.requests) == 4 * per_thread
    assert all(server.count(f"Op{n}") == per_thread for n in range(4))
    assert server.count(method="POST", path="^/$") == 4 * per_thread
    ids = [r.request_id for r in server.requests]
    assert len(set(ids)) == len(ids)
    times = [r.time for r in server.requests]
    assert times == sorted(times)
    server.reset()
    assert server.requests == []
    assert server.count() == 0


def test_reset_restores_forwarding(server: FaultServer) -> None:
    """reset() drops the script and the default fault."""
    server.set_default(Fault.status(500))
    server.script([Fault.status(503)])
    server.reset()
    assert server.pending == []
    assert request(server)[0] == 502  # forwarding, with no upstream
