"""The OpenTelemetry GenAI semantic conventions evobs follows, in both generations.

``OTEL_SEMCONV_STABILITY_OPT_IN`` chooses the generation, read once (as every
OpenTelemetry instrumentation reads it, opentelemetry-instrumentation-botocore
included):

- default (:data:`DEFAULT`): GenAI conventions v1.36.0, what GenAI instrumentations
  emitted before the transition plan: the provider is ``gen_ai.system``; prompts and
  completions, when captured, are the events ``gen_ai.system.message``,
  ``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message`` and
  ``gen_ai.choice``;
- ``gen_ai_latest_experimental`` in the list (:data:`LATEST`): the latest
  experimental conventions and not the old ones: ``gen_ai.provider.name``,
  ``gen_ai.request.stream``, ``gen_ai.response.time_to_first_chunk``, cache token
  counts, and content on the span as ``gen_ai.system_instructions``,
  ``gen_ai.input.messages``, ``gen_ai.output.messages`` and ``gen_ai.tool.definitions``
  (JSON strings: span attributes cannot hold structures yet).

The span name rule is the same in both: ``{gen_ai.operation.name} {gen_ai.request.model}``.
Metric names are the conventions' (``gen_ai.client.token.usage``...), translated to
Prometheus as the OpenTelemetry Prometheus compatibility rules translate them: dots
to underscores, the unit appended (``s`` -> ``_seconds``), annotations in braces
(``{token}``) dropped.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "DEFAULT",
    "DURATION_BUCKETS",
    "GENERATION",
    "GUARDRAIL_INTERVENTIONS",
    "LATEST",
    "OPERATION_DURATION",
    "PROVIDER",
    "TIME_TO_FIRST_CHUNK",
    "TOKEN_USAGE",
    "TOKEN_USAGE_BUCKETS",
    "MetricSpec",
    "generation",
    "provider_key",
    "span_name",
]

#: GenAI conventions v1.36.0 (the default, as the transition plan asks).
DEFAULT: Final = "default"
#: ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``.
LATEST: Final = "latest"
_OPT_IN_TOKEN: Final = "gen_ai_latest_experimental"


def generation(value: str | None = None) -> str:
    """:data:`LATEST` when ``gen_ai_latest_experimental`` is in the comma-separated
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` list, else :data:`DEFAULT`."""
    raw = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "") if value is None else value
    tokens = {t.strip().lower() for t in raw.split(",")}
    return LATEST if _OPT_IN_TOKEN in tokens else DEFAULT


#: The generation of this process, read once at import.
GENERATION: Final = generation()

#: ``gen_ai.provider.name`` (latest) / ``gen_ai.system`` (v1.36) for Bedrock.
PROVIDER: Final = "aws.bedrock"


def provider_key(gen: str = GENERATION) -> str:
    """The provider attribute of a generation."""
    return "gen_ai.provider.name" if gen == LATEST else "gen_ai.system"


# -- attribute names --------------------------------------------------------------------------

OPERATION_NAME: Final = "gen_ai.operation.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_TOP_K: Final = "gen_ai.request.top_k"
REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
REQUEST_SEED: Final = "gen_ai.request.seed"
REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
REQUEST_STREAM: Final = "gen_ai.request.stream"  # latest only
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"  # latest only
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ: Final = "gen_ai.usage.cache_read.input_tokens"  # latest only
USAGE_CACHE_CREATION: Final = "gen_ai.usage.cache_creation.input_tokens"  # latest only
TOKEN_TYPE: Final = "gen_ai.token.type"
GUARDRAIL_ID: Final = "aws.bedrock.guardrail.id"
# Content (latest: span attributes, JSON strings; opt-in only).
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
# evobs's own (no convention exists for them).
MODEL_FAMILY: Final = "aws.sdk.bedrock.model_family"
GUARDRAIL_ACTION: Final = "aws.sdk.bedrock.guardrail_action"

# Operation names: the conventions' well-known values, and one custom value.
CHAT: Final = "chat"
TEXT_COMPLETION: Final = "text_completion"
EMBEDDINGS: Final = "embeddings"
GENERATE_CONTENT: Final = "generate_content"
#: ApplyGuardrail has no well-known value; the conventions allow a custom one.
APPLY_GUARDRAIL: Final = "apply_guardrail"


def span_name(operation_name: str, model: str | None) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, or the operation alone when
    the model is not known."""
    return f"{operation_name} {model}" if model else operation_name


# -- metrics ------------------------------------------------------------------------------------


class MetricSpec:
    """One GenAI metric: its OpenTelemetry name and unit, and its Prometheus family."""

    __slots__ = ("buckets", "description", "kind", "labels", "name", "prometheus", "unit")

    def __init__(
        self,
        name: str,
        unit: str,
        kind: str,
        prometheus: str,
        labels: tuple[str, ...],
        description: str,
        buckets: tuple[float, ...] = (),
    ) -> None:
        self.name = name
        self.unit = unit
        self.kind = kind
        self.prometheus = prometheus
        self.labels = labels
        self.description = description
        self.buckets = buckets

    def __repr__(self) -> str:
        return f"<MetricSpec {self.name} -> {self.prometheus}>"


#: The conventions' advisory buckets for token counts (powers of 4).
TOKEN_USAGE_BUCKETS: Final = tuple(float(4**i) for i in range(14))
#: The conventions' advisory buckets for durations (0.01 s doubling to 81.92 s).
DURATION_BUCKETS: Final = tuple(round(0.01 * 2**i, 2) for i in range(14))


def _labels(*names: str, gen: str = GENERATION) -> tuple[str, ...]:
    provider = provider_key(gen).replace(".", "_")
    return tuple(provider if n == "provider" else n.replace(".", "_") for n in names)


TOKEN_USAGE: Final = MetricSpec(
    "gen_ai.client.token.usage",
    "{token}",
    "histogram",
    "gen_ai_client_token_usage",
    _labels(OPERATION_NAME, "provider", REQUEST_MODEL, TOKEN_TYPE),
    "Number of input and output tokens used.",
    TOKEN_USAGE_BUCKETS,
)
OPERATION_DURATION: Final = MetricSpec(
    "gen_ai.client.operation.duration",
    "s",
    "histogram",
    "gen_ai_client_operation_duration_seconds",
    _labels(OPERATION_NAME, "provider", REQUEST_MODEL, "error.type"),
    "GenAI operation duration.",
    DURATION_BUCKETS,
)
TIME_TO_FIRST_CHUNK: Final = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk",
    "s",
    "histogram",
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    _labels(OPERATION_NAME, "provider", REQUEST_MODEL),
    "Time to receive the first chunk of a streaming response, from the request.",
    DURATION_BUCKETS,
)
#: evobs's own: no convention counts guardrail interventions.
GUARDRAIL_INTERVENTIONS: Final = MetricSpec(
    "aws.sdk.bedrock.guardrail.interventions",
    "{intervention}",
    "counter",
    "aws_sdk_bedrock_guardrail_interventions_total",
    ("operation", "model", "guardrail_id"),
    "Bedrock guardrail interventions (a guardrail blocked or masked input or output).",
)

#: ``gen_ai.token.type`` values.
TOKEN_INPUT: Final = "input"
TOKEN_OUTPUT: Final = "output"
