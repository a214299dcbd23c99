"""Cold start: what ``import evobs`` and ``instrument()`` load, per signal set.

A Lambda function pays every import at every cold start, so whatever a disabled signal
needs is never imported, and what only some calls need (redaction after an error, trace
context in messages, structlog when a log event is due) is imported by the first call
that needs it. Each case runs in a fresh interpreter (``sys.modules`` is the process's),
instruments a session, creates a client, and reports which modules are loaded; then a
successful call and a failing one against moto's server show the lazy parts arrive on
demand and work as usual. These tests assert structure, never time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

#: Loaded by no signal set, before any failure, log event or message (the OTLP exporter,
#: the SDK's export module, the demo and its terminal output, configure(), the CLI).
NEVER = (
    "structlog",
    "rich",
    "pygments",
    "moto",
    "evobs.demo",
    "evobs.cli",
    "evobs._configure",
    "evobs._export",
    "evobs._redact",
    "evobs.signals.otel_metrics",
    "opentelemetry.exporter",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.propagate",
    # prometheus_client (its HTTP server, wsgiref): with no registry passed, evobs's
    # families wait for it to be imported (``evobs._registry``).
    "prometheus_client",
    "http.server",
    "socketserver",
    "wsgiref",
    # GenAI: its metric families come with the first Bedrock Runtime client, the rest
    # with its first call.
    "evobs.signals._genai_spans",
    "evobs.signals._genai_metrics",
    "evobs.services.bedrock_runtime",
    "evobs.genai",
    # S3's managed transfers: loaded by the first transfer, not by an S3 client.
    "evobs._transfer",
)
#: What only the traces signal needs (the OpenTelemetry SDK: none of evobs's other parts).
TRACES = (
    "evobs.signals.traces",
    "evobs.signals._spans",
    "evobs._compat.otel_sdk",
    "opentelemetry.sdk",
    "opentelemetry.propagators.aws",
)
#: What only the metrics signal needs.
METRICS = (
    "evobs.signals.metrics",
    "evobs.signals._series",
    "evobs.signals._labels",
    "evobs._compat.prometheus",
    "evobs.signals._genai_metrics",
    "evobs.genai",
)
#: What neither the metrics signal nor a registry passed in needs (prometheus_client
#: itself is not loaded by the metrics signal either: see NEVER).
PROMETHEUS = (
    "prometheus_client",
    "http.server",
    "socketserver",
    "wsgiref",
    "evobs._selfmetrics",
    "evobs._registry",
)
LOGS = ("evobs.signals.logs",)

SIGNAL_SETS = (
    (),
    ("traces",),
    ("metrics",),
    ("logs",),
    ("traces", "metrics"),
    ("traces", "logs"),
    ("metrics", "logs"),
    ("traces", "metrics", "logs"),
)

#: One cold start, then a successful and a failing call. Prints one JSON line: the
#: modules loaded at each step, and what each signal made of the failing call.
PROBE = r"""
import json, logging, sys

spec = json.loads(sys.argv[1])
signals = tuple(spec["signals"])
steps = {"python": sorted(sys.modules)}

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

session = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
provider = None
if "traces" in signals and spec.get("sdk", True):  # the floor any traced application pays
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
steps["floor"] = sorted(sys.modules)

import evobs

steps["import"] = sorted(sys.modules)
evobs.instrument(session, tracer_provider=provider, signals=signals)
client = session.client(
    "s3", endpoint_url=spec["endpoint"], config=Config(retries={"total_max_attempts": 1})
)
steps["instrumented"] = sorted(sys.modules)

client.create_bucket(Bucket=spec["bucket"])
client.put_object(Bucket=spec["bucket"], Key="present", Body=b"x")
client.get_object(Bucket=spec["bucket"], Key="present")["Body"].read()
steps["succeeded"] = sorted(sys.modules)

# Observers, attached now so that they load nothing before this point.
exporter = None
if provider is not None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
records = []


class Keep(logging.Handler):
    def emit(self, record):
        records.append(dict(record.msg) if isinstance(record.msg, dict) else record.msg)


logging.getLogger("evobs").addHandler(Keep())
before_failure = sorted(sys.modules)
try:
    client.get_object(Bucket=spec["bucket"], Key="missing")
    error = None
except ClientError as exc:
    error = exc.response["Error"]["Code"]
steps["failed"] = sorted(sys.modules)

spans = []
if exporter is not None:
    spans = [
        {
            "name": s.name,
            "status": s.status.status_code.name,
            "description": s.status.description,
            "error.type": (s.attributes or {}).get("error.type"),
        }
        for s in exporter.get_finished_spans()
    ]
# After first use, each lazily imported name is the real object (a plain global).
rebound = {}
for owner, names in (
    ("evobs.signals.traces", ("exception_event", "masks_for", "render_params")),
    ("evobs.signals.logs", ("error_message", "render_params")),
):
    if owner in sys.modules and "evobs._redact" in sys.modules:
        module, redact = sys.modules[owner], sys.modules["evobs._redact"]
        rebound[owner] = all(getattr(module, n) is getattr(redact, n) for n in names)
errors = None
if "metrics" in signals:  # a scrape: importing prometheus_client registers evobs's families
    from prometheus_client import REGISTRY

    errors = REGISTRY.get_sample_value(
        "aws_sdk_call_errors_total",
        {"service": "S3", "operation": "GetObject", "error_type": "NoSuchKey"},
    )
print(
    "PROBE "
    + json.dumps(
        {
            "steps": steps,
            "before_failure": before_failure,
            "error": error,
            "spans": spans,
            "logs": [r for r in records if isinstance(r, dict)],
            "errors_total": errors,
            "rebound": rebound,
        },
        default=str,
    )
)
"""


def _environment() -> dict[str, str]:
    """This process's environment without anything that changes what evobs loads."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVOBS_", "OTEL_", "PROMETHEUS_", "PYTHON"))
    }
    env["PYTHONHASHSEED"] = "0"
    return env


def _run(program: str, spec: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Run ``program`` in a fresh interpreter and return the JSON it printed."""
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=180,
        env=_environment(),
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"no report; stdout={done.stdout[-2000:]!r} stderr={done.stderr[-2000:]!r}"
    result: dict[str, Any] = json.loads(lines[-1][len("PROBE ") :])
    return result


def _loaded(modules: Iterable[str], names: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that are one of ``names`` or inside one of them."""
    wanted = tuple(names)
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in wanted))


def _forbidden(signals: tuple[str, ...]) -> tuple[str, ...]:
    """What must not be loaded after instrument() with these signals and no registry."""
    out = list(NEVER)
    if "traces" not in signals:
        out += TRACES
    if "metrics" not in signals:
        out += METRICS + PROMETHEUS
    if "logs" not in signals:
        out += LOGS
    return tuple(out)


@pytest.mark.parametrize("signals", SIGNAL_SETS, ids=lambda s: "+".join(s) or "none")
def test_disabled_signals_load_nothing(
    signals: tuple[str, ...], moto_url: str, tmp_path: Path
) -> None:
    """After import, instrument() and a client, nothing a disabled signal needs is loaded,
    nor anything a successful call does not need (redaction, message propagation,
    structlog while no log event is due); a failing call then loads redaction on demand
    (its error code is scrubbed) and every enabled signal renders it as usual."""
    bucket = f"cold-{'-'.join(signals) or 'none'}-{os.getpid()}"
    spec = {"signals": signals, "endpoint": moto_url, "bucket": bucket}
    report = _run(PROBE, spec, tmp_path)
    steps = report["steps"]
    forbidden = _forbidden(signals)

    assert _loaded(steps["import"], forbidden) == []
    assert _loaded(steps["instrumented"], forbidden) == []
    assert _loaded(steps["succeeded"], forbidden) == []
    enabled = {"traces": TRACES[0], "metrics": METRICS[0], "logs": LOGS[0]}
    for name, module in enabled.items():
        assert (module in steps["instrumented"]) == (name in signals), name

    assert report["error"] == "NoSuchKey"
    failed = steps["failed"]
    # Redaction arrives with the first error code read from the wire (scrubbed at the
    # source, for every signal that shows it), not before.
    assert "evobs._redact" in failed
    assert "evobs._redact" not in report["before_failure"]
    assert _loaded(failed, ("opentelemetry.propagate", "opentelemetry.exporter")) == []
    if "metrics" not in signals:
        assert _loaded(failed, PROMETHEUS) == []

    owners = {"traces": "evobs.signals.traces", "logs": "evobs.signals.logs"}
    assert report["rebound"] == {owners[s]: True for s in signals if s in owners}
    if "traces" in signals:
        (span,) = [s for s in report["spans"] if s["name"] == "S3.GetObject"]
        assert span["status"] == "ERROR"
        assert span["error.type"] == "NoSuchKey"
        assert span["description"].startswith("NoSuchKey: ")
    if "metrics" in signals:
        assert report["errors_total"] == 1.0
    # A client error is a WARNING event: due (the root logger's level), so structlog is
    # imported now, with the logs signal, and only then.
    calls = [e for e in report["logs"] if e.get("event") == "aws.call"]
    if "logs" in signals:
        assert "structlog" in failed
        (event,) = calls
        assert (event["outcome"], event["error_type"]) == ("client_error", "NoSuchKey")
        assert event["error_message"]
    else:
        assert calls == []
        assert _loaded(failed, ("structlog", "rich")) == []


def test_traces_without_the_sdk_do_not_load_it(moto_url: str, tmp_path: Path) -> None:
    """Traces on, but no SDK tracer provider (the API's no-op, as in a library whose
    application configured no tracing): the SDK is not imported for evobs's span path,
    before or after calls, and the calls work."""
    spec = {
        "signals": ("traces",),
        "sdk": False,
        "endpoint": moto_url,
        "bucket": f"cold-nosdk-{os.getpid()}",
    }
    report = _run(PROBE, spec, tmp_path)
    steps = report["steps"]
    assert "evobs.signals.traces" in steps["instrumented"]
    sdk = ("opentelemetry.sdk", "evobs.signals._spans", "evobs._compat.otel_sdk")
    for step in ("instrumented", "succeeded", "failed"):
        assert _loaded(steps[step], sdk) == [], step
    assert report["error"] == "NoSuchKey"


#: Logs only, a WARNING handler on ``evobs``, and one call retried through the fault
#: proxy: the retry-log limiter (and prometheus_client for its counter) arrives with the
#: first retry that is logged, and counts what it holds back.
RETRY_PROBE = r"""
import json, logging, sys

spec = json.loads(sys.argv[1])
import boto3
from botocore.config import Config
from botocore.retries import standard

# No backoff sleep (the retry decision stays botocore's).
_init = standard.ExponentialBackoff.__init__
standard.ExponentialBackoff.__init__ = lambda self, *a, **k: _init(
    self, *a, **{**k, "random": lambda: 0.0}
)

import evobs

session = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
evobs.instrument(session, signals=("logs",), retry_log_burst=1, retry_log_rate=1e-9)
records = []


class Keep(logging.Handler):
    def emit(self, record):
        if isinstance(record.msg, dict):
            records.append(dict(record.msg))


logging.getLogger("evobs").addHandler(Keep())
client = session.client(
    "s3",
    endpoint_url=spec["endpoint"],
    config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
)
client.list_buckets()
before = sorted(sys.modules)
print("READY", flush=True)
sys.stdin.readline()  # the parent scripts two 503s for the next call
logging.getLogger("evobs").setLevel(logging.DEBUG)  # the call's own event too
client.list_buckets()
from prometheus_client import REGISTRY

print(
    "PROBE "
    + json.dumps(
        {
            "before": before,
            "retries": [r for r in records if r.get("event") == "aws.retry"],
            "calls": [r for r in records if r.get("event") == "aws.call"],
            "suppressed": REGISTRY.get_sample_value(
                "evobs_log_events_suppressed_total", {"event": "aws.retry"}
            ),
        }
    )
)
"""


def test_logs_only_retry_limiter_on_first_retry(moto_url: str, tmp_path: Path) -> None:
    """Logs only, no registry: prometheus_client is not loaded by instrument() nor by a
    successful call; the first retry to log builds the limiter (and its counter), which
    then rate-limits and counts as before."""
    from evobs.demo.faults import Fault, FaultServer

    with FaultServer(upstream=moto_url) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", RETRY_PROBE, json.dumps({"endpoint": server.url})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
            cwd=tmp_path,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "READY"
            server.script([Fault.status(503), Fault.status(503)])
            out, err = proc.communicate("go\n", timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-4000:]
    (line,) = [x for x in out.splitlines() if x.startswith("PROBE ")]
    report = json.loads(line[len("PROBE ") :])
    assert _loaded(report["before"], (*PROMETHEUS, "structlog")) == []
    # Burst 1, no refill: the first retry is logged, the second held back and counted.
    assert [r["attempt"] for r in report["retries"]] == [2]
    assert report["retries"][0]["reason"] == "server_error"
    assert report["suppressed"] == 1.0
    assert [c["attempts"] for c in report["calls"]] == [3]


def test_lazy_names_are_bound_on_first_use() -> None:
    """A stand-in imports its module on first use and rebinds its whole group in the
    namespace, so later uses are plain globals; a copied stand-in still forwards."""
    from evobs._lazy import lazy_module, lazy_names

    namespace: dict[str, Any] = {}
    dumps, loads = lazy_names(namespace, "json", "dumps", "loads")
    namespace.update(dumps=dumps, loads=loads, codec=lazy_module(namespace, "json", "codec"))
    assert namespace["dumps"] is dumps and "not yet imported: json.dumps" in repr(dumps)
    assert dumps({"a": 1}) == '{"a": 1}'
    assert namespace["dumps"] is json.dumps and namespace["loads"] is json.loads
    assert dumps([1]) == "[1]"  # the copy kept here forwards
    assert namespace["codec"].loads("[2]") == [2]
    assert namespace["codec"] is json
