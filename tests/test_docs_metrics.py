"""docs/metrics.md against the code: the reference table must match the families the
metrics signal registers and the samples it exposes, and every PromQL example must
be valid PromQL for a real Prometheus."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import evobs
from evobs._options import DEFAULT_DURATION_BUCKETS
from evobs.genai import semconv
from evobs.signals._genai_metrics import LABEL_CAP
from evobs.signals.metrics import ERROR_TYPE_CAP, LOCAL_BUCKETS
from tests.conftest import fast_config
from tests.prometheus_harness import Prometheus, require_prometheus

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|")
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


class Row:
    """One row of the reference table."""

    def __init__(self, name: str, kind: str, labels: str) -> None:
        self.name = name
        self.kind = kind
        self.labels = frozenset(re.findall(r"`([a-z_]+)`", labels))
        # prometheus_client's family name drops a counter's _total.
        self.family = name.removesuffix("_total") if kind == "counter" else name

    @property
    def sample_names(self) -> set[str]:
        return {self.family + s for s in _SUFFIXES[self.kind]}


def doc_rows() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            row = Row(*match.groups())
            assert row.family not in rows, f"{row.name} listed twice"
            rows[row.family] = row
    return rows


def promql_examples() -> list[str]:
    """Every expression in the ```promql blocks (continuation lines are indented)."""
    exprs: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and exprs:
                exprs[-1] += " " + line.strip()
            else:
                exprs.append(line.strip())
    return exprs


def _ours(registry: CollectorRegistry) -> dict[str, Any]:
    """evobs's collectors in ``registry`` by family name."""
    return {
        c._name: c  # type: ignore[attr-defined]
        for c in list(registry._collector_to_names)
        if getattr(c, "_name", "").startswith(("aws_sdk_", "evobs_", "gen_ai_"))
    }


def test_table_lists_exactly_the_registered_families() -> None:
    """After instrument(), the registry holds exactly the documented families, each
    with the documented type and label names: the ``gen_ai_*`` ones from the first
    Bedrock Runtime client on (a process that never calls Bedrock has none)."""
    rows = doc_rows()
    assert len(rows) == 19
    registry = CollectorRegistry()
    session = boto3.Session(region_name="us-east-1")
    handle = evobs.instrument(session, registry=registry)
    session.client("s3", endpoint_url="http://127.0.0.1:1")
    genai = {name for name in rows if name.startswith("gen_ai_") or "bedrock" in name}
    assert len(genai) == 4
    assert set(_ours(registry)) == set(rows) - genai
    session.client("bedrock-runtime", endpoint_url="http://127.0.0.1:1")
    handle.uninstrument()
    collectors = _ours(registry)
    assert set(collectors) == set(rows)
    for name, row in rows.items():
        collector = collectors[name]
        assert collector._type == row.kind, name
        assert frozenset(collector._labelnames) == row.labels, name
        registered = registry._collector_to_names[collector]
        assert row.sample_names <= set(registered), (name, registered)


def test_exposed_samples_match_the_table(moto_url: str, bedrock_server: Any) -> None:
    """Samples exposed after real calls (ok, error, client and resource creation, a
    Bedrock stream with a guardrail that intervenes) have documented names and exactly
    the documented labels (plus ``le`` on buckets)."""
    rows = doc_rows()
    by_sample = {s: row for row in rows.values() for s in row.sample_names}
    registry = CollectorRegistry()
    session = boto3.Session(region_name="us-east-1")
    handle = evobs.instrument(session, registry=registry)
    try:
        client = session.client("s3", endpoint_url=moto_url, config=fast_config())
        client.list_buckets()
        with pytest.raises(client.exceptions.NoSuchBucket):
            client.list_objects_v2(Bucket="evobs-docs-missing")
        session.resource("s3", endpoint_url=moto_url)
        bedrock = session.client("bedrock-runtime", endpoint_url=bedrock_server.url)
        stream = bedrock.converse_stream(
            modelId="us.amazon.nova-lite-v1:0",
            messages=[{"role": "user", "content": [{"text": "say FORBIDDEN"}]}],
            guardrailConfig={"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
        )["stream"]
        list(stream)
    finally:
        handle.uninstrument()
    seen = set()
    exposition = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    for metric in text_string_to_metric_families(exposition):  # type: ignore[no-untyped-call]
        for sample in metric.samples:
            if not sample.name.startswith(
                ("aws_sdk_", "evobs_", "gen_ai_")
            ) or sample.name.endswith("_created"):
                continue
            row = by_sample.get(sample.name)
            assert row is not None, f"{sample.name} is exposed but not documented"
            expected = row.labels | ({"le"} if sample.name.endswith("_bucket") else set())
            assert set(sample.labels) == expected, sample
            seen.add(row.family)
    # What these calls must have produced, at least.
    assert {
        "aws_sdk_call_duration_seconds",
        "aws_sdk_call_errors",
        "aws_sdk_call_attempts",
        "aws_sdk_clients_created",
        "aws_sdk_resources_created",
        "aws_sdk_calls_in_flight",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "aws_sdk_bedrock_guardrail_interventions",
    } <= seen


def test_documented_cap_and_buckets_are_the_code_s() -> None:
    """The cardinality caps and every bucket list in the doc are the ones in the code."""
    text = DOC.read_text()
    assert f"**{ERROR_TYPE_CAP} distinct values per (service, operation)" in text
    assert f"**{LABEL_CAP} distinct values of each" in text

    def listed(buckets: tuple[float, ...]) -> str:
        return ", ".join(format(Decimal(repr(b)).normalize(), "f") for b in buckets)

    assert listed(DEFAULT_DURATION_BUCKETS) in text
    assert listed(LOCAL_BUCKETS) in text
    assert listed(semconv.TOKEN_USAGE_BUCKETS) in text
    assert listed(semconv.DURATION_BUCKETS) in text


def test_promql_examples_are_valid(tmp_path: Path) -> None:
    """Every PromQL example in the doc is accepted by a real Prometheus."""
    require_prometheus()
    examples = promql_examples()
    assert len(examples) >= 8
    with Prometheus([], tmp_path / "prom") as prom:
        for expr in examples:
            prom.query(expr)  # raises PrometheusError on a parse error


# -- the OpenTelemetry metrics signal ----------------------------------------------------------

_OTEL_ROW = re.compile(
    r"^\|\s*`(client\.[a-z_.]+)`\s*\|\s*(histogram|counter|observable updowncounter)\s*"
    r"\|\s*`([^`]+)`\s*"
    r"\|([^|]*)\|\s*`([a-z_]+)`\s*\|"
)
#: The per-call instruments the AWS SDKs (.NET, Go; Kotlin with ``smithy.``) publish.
SDK_STANDARD = (
    "client.call.duration",
    "client.call.attempts",
    "client.call.errors",
    "client.call.attempt_duration",
    "client.call.resolve_endpoint_duration",
    "client.call.serialization_duration",
    "client.call.deserialization_duration",
    "client.call.auth.signing_duration",
    "client.call.auth.resolve_identity_duration",
)


def otel_rows() -> dict[str, tuple[str, str, frozenset[str], str]]:
    """The OpenTelemetry instruments table: name -> (kind, unit, attributes, Prometheus)."""
    rows: dict[str, tuple[str, str, frozenset[str], str]] = {}
    for line in DOC.read_text().splitlines():
        match = _OTEL_ROW.match(line)
        if match:
            name, kind, unit, attributes, prometheus = match.groups()
            assert name not in rows, f"{name} listed twice"
            rows[name] = (
                kind,
                unit,
                frozenset(re.findall(r"`([a-z_.]+)`", attributes)),
                prometheus,
            )
    return rows


def test_otel_table_is_the_signal_s_instruments() -> None:
    """The OpenTelemetry table lists exactly the signal's instruments, each with its kind,
    unit and attribute keys, and names the Prometheus family the tests pair it with."""
    from evobs.signals.otel_metrics import INSTRUMENTS
    from tests.test_otel_metrics import PAIRS

    rows = otel_rows()
    assert set(rows) == set(INSTRUMENTS)
    prometheus = {row.name: row.family for row in doc_rows().values()}
    for name, (kind, unit, attributes, family_name) in rows.items():
        code_kind, code_unit, _, code_attributes = INSTRUMENTS[name]
        assert (kind, unit, attributes) == (code_kind, code_unit, frozenset(code_attributes)), name
        assert family_name in prometheus, f"{name}: {family_name} is not a documented family"
        assert PAIRS[prometheus[family_name]] == name


def test_every_sdk_standard_instrument_is_recorded_or_explained() -> None:
    """Each of the AWS SDKs' per-call instruments is either recorded or has a row in the
    'Not recorded' table saying why and where its time is."""
    from evobs.signals.otel_metrics import INSTRUMENTS

    text = DOC.read_text()
    not_recorded = text[text.index("### Not recorded") :]
    for name in SDK_STANDARD:
        assert name in INSTRUMENTS or f"| `{name}` |" in not_recorded, name
