"""prometheus_client's global registry, deferred (``evobs._registry``).

With no ``registry=`` and prometheus_client not yet imported, ``instrument()`` does not
import it (its exposition code, ``http.server`` and ``wsgiref`` cost a Lambda cold
start as much as evobs): evobs's families wait on a stand-in, and a post-import hook
registers them on ``REGISTRY`` when prometheus_client is imported, with what they have
recorded meanwhile. Each case runs in a fresh interpreter, since ``sys.modules`` and
``sys.meta_path`` are the process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Imports, instruments a session with every built-in signal and creates an S3 client
#: whose calls fail at once (nothing listens on port 1; no retries): the families get
#: values before anything imports prometheus_client. ``report`` prints one JSON line.
PRELUDE = r"""
import json, logging, sys

import boto3
from botocore.config import Config

import evobs

HEAVY = ("prometheus_client", "http.server", "socketserver", "wsgiref")
GENAI = (
    "evobs.signals._genai_spans",
    "evobs.services.bedrock_runtime",
    "evobs.genai.model",
    "evobs.genai.runtime",
    "evobs.genai.stream",
    "evobs.genai.capture",
    "evobs.genai",
    "evobs.genai.semconv",
    "evobs.signals._genai_metrics",
)


def loaded(names):
    return sorted(m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in names))


def hooked():
    hook = "evobs._registry"
    return [type(f).__module__ for f in sys.meta_path if type(f).__module__ == hook]


def new_session():
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def failing_call(session):
    client = session.client(
        "s3",
        endpoint_url="http://127.0.0.1:1",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    try:
        client.list_buckets()
    except Exception as exc:
        return type(exc).__name__
    return None


def report(**fields):
    print("PROBE " + json.dumps(fields, default=str))


session = new_session()
"""


def _environment() -> dict[str, str]:
    """This process's environment without anything that changes what evobs loads."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVOBS_", "OTEL_", "PROMETHEUS_", "prometheus_", "PYTHON"))
    }
    env["PYTHONHASHSEED"] = "0"
    return env


def _run(body: str, tmp_path: Path, **env: str) -> dict[str, Any]:
    """Run the prelude and ``body`` in a fresh interpreter; the JSON it reported."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + body],
        capture_output=True,
        text=True,
        timeout=180,
        env={**_environment(), **env},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"no report; stdout={done.stdout[-2000:]!r} stderr={done.stderr[-2000:]!r}"
    result: dict[str, Any] = json.loads(lines[-1][len("PROBE ") :])
    return result


def test_instrument_and_client_leave_prometheus_client_unimported(tmp_path: Path) -> None:
    """Every signal on, an S3 client created and a call made: prometheus_client (and its
    HTTP server, wsgiref) is not imported, nor any GenAI module beyond the metric names;
    the hook waits in ``sys.meta_path``."""
    report = _run(
        r"""
evobs.instrument(session, signals=("traces", "metrics", "logs"))
error = failing_call(session)
report(heavy=loaded(HEAVY), genai=loaded(GENAI), hooked=hooked(), error=error)
""",
        tmp_path,
    )
    assert report["error"] == "EndpointConnectionError"
    assert report["heavy"] == []
    assert report["genai"] == []
    assert report["hooked"] == ["evobs._registry"]


def test_import_after_calls_registers_the_recorded_families(tmp_path: Path) -> None:
    """Calls recorded before prometheus_client is imported are in ``REGISTRY`` once it
    is: the families, their values, the ``_created`` samples; the hook is gone, the
    module is the one an import without the hook gives (its own loader), and a later
    ``instrument()`` on ``REGISTRY`` shares the families (no conflict) and counts on."""
    report = _run(
        r"""
handle = evobs.instrument(session, signals=("traces", "metrics", "logs"))
error = failing_call(session)
before = loaded(HEAVY)

import prometheus_client
from prometheus_client import REGISTRY, generate_latest

text = generate_latest(REGISTRY).decode()
labels = {"service": "S3", "operation": "ListBuckets", "error_type": "EndpointConnectionError"}
first = REGISTRY.get_sample_value("aws_sdk_call_errors_total", labels)
other = new_session()
evobs.instrument(other, signals=("metrics",))
failing_call(other)
report(
    error=error,
    before=before,
    hooked=hooked(),
    loader=type(prometheus_client.__loader__).__name__,
    spec_loader=type(prometheus_client.__spec__.loader).__name__,
    same_registry=handle.registry is REGISTRY,
    text=text,
    first=first,
    second=REGISTRY.get_sample_value("aws_sdk_call_errors_total", labels),
    clients=REGISTRY.get_sample_value("aws_sdk_clients_created_total", {"service": "S3"}),
    in_flight=REGISTRY.get_sample_value("aws_sdk_calls_in_flight", {"service": "S3"}),
    dropped=REGISTRY.get_sample_value("evobs_spans_dropped_total"),
)
""",
        tmp_path,
    )
    assert report["error"] == "EndpointConnectionError"
    assert report["before"] == []
    assert report["hooked"] == []
    assert report["loader"] == report["spec_loader"] == "SourceFileLoader"
    assert report["same_registry"] is True
    text = report["text"]
    for family in (
        "aws_sdk_call_duration_seconds",
        "aws_sdk_call_errors",
        "aws_sdk_clients_created",
        "evobs_handler_errors",
        "evobs_log_events_suppressed",
    ):
        assert f"# TYPE {family}" in text, family
    assert "gen_ai_" not in text  # made with the first Bedrock Runtime client only
    assert "aws_sdk_call_errors_created{" in text
    assert report["first"] == 1.0
    assert report["second"] == 2.0
    assert report["clients"] == 2.0
    assert report["in_flight"] == 0.0
    assert report["dropped"] == 0.0


def test_uninstrument_before_import_removes_the_hook(tmp_path: Path) -> None:
    """Uninstrumenting the last instrumentation takes the hook out of ``sys.meta_path``
    (per session and process-wide), while one still instrumented keeps it; importing
    prometheus_client afterwards works as usual."""
    report = _run(
        r"""
first = evobs.instrument(session, signals=("metrics",))
other = new_session()
evobs.instrument(other, signals=("metrics",))
hooked_with_both = hooked()
evobs.uninstrument(session)
hooked_with_one = hooked()
evobs.uninstrument(other)
hooked_with_none = hooked()
evobs.instrument_all(signals=("metrics",))
hooked_process_wide = hooked()
evobs.uninstrument_all()
hooked_after_all = hooked()

import prometheus_client

report(
    both=hooked_with_both,
    one=hooked_with_one,
    none=hooked_with_none,
    process_wide=hooked_process_wide,
    after_all=hooked_after_all,
    imported=hasattr(prometheus_client, "REGISTRY"),
)
""",
        tmp_path,
    )
    hook = ["evobs._registry"]
    assert report["both"] == hook
    assert report["one"] == hook
    assert report["none"] == []
    assert report["process_wide"] == hook
    assert report["after_all"] == []
    assert report["imported"] is True


def test_a_failure_in_deferred_registration_is_counted_not_raised(tmp_path: Path) -> None:
    """A family that cannot be registered when prometheus_client is imported (a name
    prometheus_client's own collectors hold; a collector that fails to describe itself)
    costs only itself: ``import prometheus_client`` succeeds, the failures are counted in
    ``evobs_handler_errors_total{event="deferred-registration"}`` and logged, and the
    other families are registered."""
    report = _run(
        r"""
from evobs._registry import global_registry
from evobs.signals._series import GaugeFamily

records = []


class Keep(logging.Handler):
    def emit(self, record):
        if isinstance(record.msg, dict):
            records.append(dict(record.msg))


logging.getLogger("evobs").addHandler(Keep())
logging.getLogger("evobs").setLevel(logging.ERROR)
evobs.instrument(session, signals=("metrics",))
pending = global_registry()
GaugeFamily("python_info", "clashes with prometheus_client's platform collector", registry=pending)


class Broken:
    def describe(self):
        raise RuntimeError("cannot describe")

    def collect(self):
        return []


pending.register(Broken())

import prometheus_client
from prometheus_client import REGISTRY

report(
    errors=REGISTRY.get_sample_value(
        "evobs_handler_errors_total", {"event": "deferred-registration"}
    ),
    logged=[r.get("evobs_event") for r in records if r.get("event") == "evobs.internal_error"],
    clients=REGISTRY.get_sample_value("aws_sdk_clients_created_total", {"service": "S3"}),
    families="aws_sdk_call_duration_seconds" in REGISTRY._names_to_collectors
    or "aws_sdk_call_duration_seconds_count" in REGISTRY._names_to_collectors,
    hooked=hooked(),
)
""",
        tmp_path,
    )
    assert report["errors"] == 2.0
    assert report["logged"] == ["deferred-registration", "deferred-registration"]
    assert report["families"] is True
    assert report["hooked"] == []


def test_already_imported_registers_at_once(tmp_path: Path) -> None:
    """prometheus_client imported before ``instrument()``: the families go on ``REGISTRY``
    at once, no hook is installed, and a clashing family there is a
    ``MetricConflictError`` at ``instrument()``, as always."""
    report = _run(
        r"""
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from evobs._registry import MetricConflictError

evobs.instrument(session, signals=("metrics",))
registered = "aws_sdk_call_errors_total" in REGISTRY._names_to_collectors
theirs = CollectorRegistry()
Counter("aws_sdk_clients_created", "the user's own", ["service"], registry=theirs)
try:
    evobs.instrument(new_session(), signals=("metrics",), registry=theirs)
    conflict = None
except MetricConflictError as exc:
    conflict = type(exc).__name__
report(registered=registered, hooked=hooked(), conflict=conflict)
""",
        tmp_path,
    )
    assert report["registered"] is True
    assert report["hooked"] == []
    assert report["conflict"] == "MetricConflictError"


def test_multiprocess_mode_imports_prometheus_client_eagerly(tmp_path: Path) -> None:
    """Under ``PROMETHEUS_MULTIPROC_DIR`` the families are prometheus_client's own (values
    live in its files), so it is imported by ``instrument()`` and nothing is deferred."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    report = _run(
        r"""
from evobs._compat.prometheus import multiprocess_mode

evobs.instrument(session, signals=("metrics",))
report(heavy="prometheus_client" in sys.modules, mode=multiprocess_mode(), hooked=hooked())
""",
        tmp_path,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    assert report == {"heavy": True, "mode": True, "hooked": []}


def test_multiprocess_mode_is_read_without_importing_prometheus_client(tmp_path: Path) -> None:
    """Without the environment variable and with prometheus_client not imported,
    ``multiprocess_mode()`` is False and imports nothing."""
    report = _run(
        r"""
from evobs._compat.prometheus import multiprocess_mode

report(mode=multiprocess_mode(), heavy=loaded(HEAVY))
""",
        tmp_path,
    )
    assert report == {"mode": False, "heavy": []}
