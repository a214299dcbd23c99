"""The GenAI names: generations from OTEL_SEMCONV_STABILITY_OPT_IN, the span name rule,
and metric names translated to Prometheus as the OpenTelemetry compatibility rules say,
checked against prometheus_client's real exposition."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from evobs import genai
from evobs.genai import semconv

SPECS = [
    semconv.TOKEN_USAGE,
    semconv.OPERATION_DURATION,
    semconv.TIME_TO_FIRST_CHUNK,
    semconv.GUARDRAIL_INTERVENTIONS,
]
_UNITS = {"s": "seconds", "By": "bytes"}


def _prometheus_name(name: str, unit: str, kind: str) -> str:
    """OpenTelemetry -> Prometheus: dots to underscores, the unit appended (annotations in
    braces dropped), ``_total`` for counters."""
    out = name.replace(".", "_")
    suffix = "" if unit.startswith("{") else _UNITS.get(unit, unit)
    if suffix and not out.endswith("_" + suffix):
        out += "_" + suffix
    if kind == "counter":
        out += "_total"
    return out


@pytest.mark.parametrize(
    ("value", "generation"),
    [
        ("", semconv.DEFAULT),
        ("http", semconv.DEFAULT),
        ("gen_ai_latest_experimental", semconv.LATEST),
        ("http/dup, gen_ai_latest_experimental ", semconv.LATEST),
        ("gen_ai", semconv.DEFAULT),
    ],
)
def test_generation_from_the_opt_in_list(value: str, generation: str) -> None:
    """gen_ai_latest_experimental anywhere in the comma-separated list selects the latest
    conventions; anything else keeps v1.36."""
    assert semconv.generation(value) == generation


def test_provider_attribute_by_generation() -> None:
    """v1.36 names the provider gen_ai.system, the latest gen_ai.provider.name; both say
    aws.bedrock."""
    old = genai.Request("Converse", "chat", "m", generation=semconv.DEFAULT).attributes
    new = genai.Request("Converse", "chat", "m", generation=semconv.LATEST).attributes
    assert old == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "aws.bedrock",
        "gen_ai.request.model": "m",
    }
    assert new == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": "m",
    }


def test_span_name_rule() -> None:
    """{gen_ai.operation.name} {gen_ai.request.model}, the operation alone without a model."""
    assert semconv.span_name("chat", "amazon.nova-lite-v1:0") == "chat amazon.nova-lite-v1:0"
    assert semconv.span_name("text_completion", None) == "text_completion"
    assert genai.Request("InvokeModel", "chat", None).span_name == "chat"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_prometheus_names_follow_the_translation(spec: semconv.MetricSpec) -> None:
    """Each metric's Prometheus family is its OpenTelemetry name and unit translated; its
    labels are the attributes with dots as underscores, valid Prometheus label names."""
    assert spec.prometheus == _prometheus_name(spec.name, spec.unit, spec.kind)
    for label in spec.labels:
        assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label), label
    assert semconv.provider_key().replace(".", "_") in spec.labels or spec.kind == "counter"


def test_prometheus_exposition() -> None:
    """prometheus_client exposes the families under exactly those names, histograms with the
    conventions' advisory buckets."""
    registry = CollectorRegistry()
    for spec in SPECS:
        labels = dict.fromkeys(spec.labels, "x")
        if spec.kind == "histogram":
            Histogram(
                spec.prometheus,
                spec.description,
                spec.labels,
                registry=registry,
                buckets=spec.buckets,
            ).labels(**labels).observe(1)
        else:
            Counter(
                spec.prometheus.removesuffix("_total"),
                spec.description,
                spec.labels,
                registry=registry,
            ).labels(**labels).inc()
    text = generate_latest(registry).decode()
    assert "gen_ai_client_token_usage_bucket{" in text
    assert 'le="6.7108864e+07"' in text
    assert "gen_ai_client_operation_duration_seconds_count{" in text
    assert 'le="81.92"' in text
    assert "gen_ai_client_operation_time_to_first_chunk_seconds_sum{" in text
    assert "aws_sdk_bedrock_guardrail_interventions_total{" in text


def test_advisory_buckets() -> None:
    """The buckets are the conventions' lists: tokens 1, 4, ... 4^13; durations 0.01 s
    doubling to 81.92 s."""
    assert semconv.TOKEN_USAGE_BUCKETS[0] == 1 and semconv.TOKEN_USAGE_BUCKETS[-1] == 67108864
    assert semconv.DURATION_BUCKETS == (
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.28,
        2.56,
        5.12,
        10.24,
        20.48,
        40.96,
        81.92,
    )


def test_token_counts_for_the_histogram() -> None:
    """gen_ai.token.type is input or output, one observation each when known."""
    response = genai.Response()
    assert response.token_counts() == {}
    response.set_usage(3, 4)
    assert response.token_counts() == {"input": 3, "output": 4}
    response.set_usage(None, 9, overwrite=False)
    assert response.output_tokens == 4  # gaps only
