"""What the demo's local servers (the fault proxy, the Bedrock Runtime endpoint) share:
a threaded HTTP server on a loopback port, started and stopped the same way."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeVar

__all__ = ["LoopbackHTTPServer", "LoopbackServer"]

S = TypeVar("S", bound="LoopbackServer")


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Any


class LoopbackServer:
    """Serves ``handler`` (which reaches this object as ``self.server.owner``) from a
    daemon thread on ``host:port`` (port 0: a free one) between ``start()`` and
    ``stop()``; a context manager too."""

    #: The request handler class, and the serving thread's name.
    handler: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "evobs-loopback-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self: S) -> S:
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._starting()
        server = LoopbackHTTPServer((self._host, self._port), self.handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server = self._server
        if server is None:
            return
        self._stopping_now()
        server.shutdown()
        self._shut_down()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def _starting(self) -> None:
        """Before the port is bound (a subclass resets its state here)."""

    def _stopping_now(self) -> None:
        """Before the serving loop is stopped (a subclass ends what would hold it)."""

    def _shut_down(self) -> None:
        """After the serving loop stopped, before the socket closes."""

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server is bound to."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The endpoint URL to give botocore (``endpoint_url=server.url``)."""
        host, port = self.address
        return f"http://{host}:{port}"
