"""prometheus_client multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), gunicorn-style.

The mode is chosen when prometheus_client is imported, so the scenario runs in a
fresh interpreter: this file is also the driver script. The parent instruments a
session (preload), forks two workers with ``multiprocessing``'s ``fork`` context,
each makes calls against moto, and the parent serves the merged exposition with
``start_metrics_server`` (which uses ``MultiProcessCollector`` in this mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CALLS = (2, 3)  # ListBuckets calls made by each worker


def _worker(session: Any, url: str, calls: int) -> None:
    """One forked worker: its own client, ``calls`` calls; checks the merged in-flight
    gauge from inside a call (livesum over live processes)."""
    from prometheus_client import CollectorRegistry, multiprocess

    seen: list[float] = []

    def peek(**_: Any) -> None:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        seen.append(merged.get_sample_value("aws_sdk_calls_in_flight", {"service": "S3"}) or 0)

    client = session.client("s3", endpoint_url=url)
    client.meta.events.register("before-send.s3.ListBuckets", peek)
    for _ in range(calls):
        client.list_buckets()
    os._exit(0 if len(seen) == calls and all(v >= 1 for v in seen) else 3)


def _driver(url: str) -> None:
    import multiprocessing
    import urllib.request

    import boto3
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import multiprocess

    import evobs

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # Preload: instrument once in the parent; the workers inherit it through fork.
    evobs.instrument(session, tracer_provider=TracerProvider())
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=_worker, args=(session, url, n)) for n in CALLS]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    files = sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    for w in workers:
        multiprocess.mark_process_dead(w.pid)  # type: ignore[no-untyped-call]
    server = evobs.start_metrics_server(port=0, addr="127.0.0.1")
    try:
        request = urllib.request.Request(
            server.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
    print(
        json.dumps(
            {"exit_codes": [w.exitcode for w in workers], "files": files, "exposition": body}
        )
    )


def test_forked_workers_are_merged(moto_url: str, tmp_path: Path) -> None:
    """Two forked workers' calls add up in the merged exposition; the in-flight gauge
    is livesum (seen as 1 mid-call, gone after the workers die); no exemplars."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    multiproc_dir = tmp_path / "multiproc"
    multiproc_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
    )
    done = subprocess.run(
        [sys.executable, __file__, moto_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["exit_codes"] == [0, 0], done.stderr[-4000:]
    assert len([f for f in result["files"] if f.startswith("gauge_livesum_")]) == 2

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    exemplars = []
    for metric in text_string_to_metric_families(result["exposition"]):  # type: ignore[no-untyped-call]
        for s in metric.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            if s.exemplar is not None:
                exemplars.append(s)

    def get(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    total = float(sum(CALLS))
    op = {"service": "S3", "operation": "ListBuckets"}
    assert get("aws_sdk_call_attempts_total", **op) == total
    assert (
        get("aws_sdk_call_duration_seconds_count", **op, region="us-east-1", outcome="ok") == total
    )
    assert get("aws_sdk_clients_created_total", service="S3") == 2
    assert get("aws_sdk_call_signing_duration_seconds_count", service="S3") == total
    assert get("aws_sdk_calls_in_flight", service="S3") == 0
    assert exemplars == []


if __name__ == "__main__":
    _driver(sys.argv[1])
