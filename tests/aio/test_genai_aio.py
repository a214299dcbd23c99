"""aiobotocore's Bedrock Runtime calls: GenAI spans from what needs no body; async
bodies and streams are left untouched (the span ends with the call). Over real HTTP
against the local Bedrock Runtime endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "one two three"}]}]


def test_genai_spans_leave_async_bodies_and_streams_alone(
    aio_instrumented: Any, aio_session: Any, _bedrock_server: Any, recorder: Any
) -> None:
    """Converse gets its usage and finish reason (a parsed structure); InvokeModel its
    usage from Bedrock's headers, its async body read by the application intact;
    ConverseStream's span ends with the call, its async stream untouched and readable."""

    async def main() -> tuple[dict[str, Any], list[Any], int]:
        async with aio_session.create_client(
            "bedrock-runtime", region_name="us-east-1", endpoint_url=_bedrock_server.url
        ) as client:
            await client.converse(modelId=MODEL, messages=MESSAGES)
            body = json.dumps({"messages": [{"role": "user", "content": "one two three"}]})
            out = await client.invoke_model(modelId=MODEL, body=body.encode())
            answer = json.loads(await out["body"].read())
            stream = await client.converse_stream(modelId=NOVA, messages=MESSAGES)
            ended_before_reading = len(recorder.spans)
            events = [event async for event in stream["stream"]]
            return answer, events, ended_before_reading

    answer, events, ended_before_reading = asyncio.run(main())
    assert answer["stop_reason"] and events
    assert ended_before_reading == 3  # the stream's span ended with its call
    spans = {s.attributes["rpc.method"]: s for s in recorder.spans}
    converse = dict(spans["Converse"].attributes)
    assert spans["Converse"].name == f"chat {MODEL}"
    assert converse["gen_ai.usage.output_tokens"] > 0
    assert converse["gen_ai.response.finish_reasons"] == ("end_turn",)
    invoke = dict(spans["InvokeModel"].attributes)
    assert invoke["gen_ai.usage.input_tokens"] == 3  # from the headers
    assert "gen_ai.response.id" not in invoke  # the body was not read
    stream_span = dict(spans["ConverseStream"].attributes)
    assert spans["ConverseStream"].name == f"chat {NOVA}"
    assert "aws.sdk.stream.end" not in stream_span
