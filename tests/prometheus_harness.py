"""A real Prometheus server for tests: Debian's ``/usr/bin/prometheus`` on a free
loopback port, scraping the given targets every second.

Usage (the whole API)::

    from tests.prometheus_harness import Prometheus

    with Prometheus(["127.0.0.1:9464"], tmp_path) as prom:   # skips if not installed
        prom.wait_for_scrape()                               # every target scraped, up == 1
        prom.wait_for("sum(aws_sdk_call_attempts_total)", lambda v: v >= 3)
        result = prom.query('sum by (operation) (aws_sdk_call_duration_seconds_count)')
        # -> [{"metric": {"operation": "ListBuckets"}, "value": 3.0}, ...]
        prom.query_exemplars("aws_sdk_call_duration_seconds_bucket")

- Missing binary: ``pytest.skip`` with the reason, unless ``EVOBS_REQUIRE_PROMETHEUS=1``
  (CI), where it is ``pytest.fail``.
- Started with ``--enable-feature=exemplar-storage``, a temporary TSDB under
  ``workdir``, ``scrape_interval: 1s``; ``rule_files`` are loaded if given.
- Every wait polls with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

__all__ = ["PROMETHEUS_BINARY", "Prometheus", "PrometheusError", "require_prometheus"]

PROMETHEUS_BINARY = os.environ.get("EVOBS_PROMETHEUS_BINARY", "/usr/bin/prometheus")
_JOB = "evobs"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or its HTTP API answered with an error."""


def require_prometheus() -> str:
    """The binary's path; skip (or fail when EVOBS_REQUIRE_PROMETHEUS=1) when absent."""
    path = PROMETHEUS_BINARY if os.access(PROMETHEUS_BINARY, os.X_OK) else None
    path = path or shutil.which("prometheus")
    if path is None:
        reason = (
            f"the Prometheus server binary is not installed ({PROMETHEUS_BINARY}; "
            "Debian package 'prometheus')"
        )
        if os.environ.get("EVOBS_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"EVOBS_REQUIRE_PROMETHEUS=1 but {reason}")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _number(raw: str) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf" as strings; float() reads them


class Prometheus:
    """One Prometheus process scraping ``targets`` (``host:port``, path ``/metrics``)."""

    def __init__(
        self,
        targets: Sequence[str],
        workdir: Path,
        *,
        rule_files: Sequence[Path] = (),
        start_timeout: float = 30.0,
    ) -> None:
        self.targets = list(targets)
        self.workdir = Path(workdir)
        self.rule_files = [Path(p) for p in rule_files]
        self.start_timeout = start_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / "prometheus.log"

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running server (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            "global:",
            "  scrape_interval: 1s",
            "  scrape_timeout: 1s",
            "  evaluation_interval: 1s",
        ]
        if self.rule_files:
            lines.append("rule_files:")
            lines.extend(f"  - {json.dumps(str(p.resolve()))}" for p in self.rule_files)
        lines += [
            "scrape_configs:",
            f"  - job_name: {_JOB}",
            "    static_configs:",
            f"      - targets: {json.dumps(self.targets)}",
        ]
        path = self.workdir / "prometheus.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Prometheus:
        """Start the server and wait (polling, with a deadline) until it is ready."""
        binary = require_prometheus()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        last_log = ""
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            storage = self.workdir / f"tsdb-{self.port}"
            with self._log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={storage}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--enable-feature=exemplar-storage",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
            last_log = self.log()
            self.stop()
            if "address already in use" not in last_log:
                break
        raise PrometheusError(f"Prometheus did not become ready; its log:\n{last_log[-4000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        """What the server wrote to its log so far (for failure messages)."""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the HTTP API ---------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raises PrometheusError on error)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
        if payload.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {payload.get('error', payload)}")
        return payload["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: ``[{"metric": {labels}, "value": float}]`` for a vector,
        ``[{"metric": {}, "value": float}]`` for a scalar."""
        data = self.api("query", query=promql)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": _number(data["result"][1])}]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} returned a {data['resultType']}, not a vector")
        return [
            {"metric": item["metric"], "value": _number(item["value"][1])}
            for item in data["result"]
        ]

    def query_exemplars(self, promql: str, window: float = 3600.0) -> list[dict[str, Any]]:
        """``/api/v1/query_exemplars`` over the last ``window`` seconds: a list of
        ``{"seriesLabels": {...}, "exemplars": [{"labels": {...}, "value": ..}]}``."""
        now = time.time()
        data = self.api("query_exemplars", query=promql, start=str(now - window), end=str(now))
        return list(data or [])

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda v: not math.isnan(v),
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until some result's value satisfies ``predicate``; return the
        result. Fails the test (with the last result and the log) at the deadline."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql)
            if any(predicate(item["value"]) for item in result):
                return result
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"Prometheus: {promql!r} did not satisfy the condition within {timeout}s; "
                    f"last result {result}; log:\n{self.log()[-2000:]}"
                )
            time.sleep(0.2)

    def wait_for_scrape(self, timeout: float = 30.0) -> None:
        """Wait until every target was scraped successfully (``up == 1``)."""
        expected = len(self.targets)
        self.wait_for(f'count(up{{job="{_JOB}"}} == 1)', lambda v: v >= expected, timeout)
