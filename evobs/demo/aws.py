"""moto's server as the embedded AWS endpoint, on a free loopback port."""

from __future__ import annotations

from typing import Any

__all__ = ["start_moto_server"]


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """Start ``ThreadedMotoServer`` in-process; returns ``(server, url)``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto is in the demo extra
        raise RuntimeError(
            "the embedded AWS endpoint needs moto's server: pip install 'evobs[demo]'"
        ) from exc
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"
