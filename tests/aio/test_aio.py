"""aiobotocore: the same handlers, one code path; correct under concurrent tasks on one
loop; a cancelled call leaves nothing open. Over real HTTP against moto's server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import evobs

TASKS = 100


def _errors(registry: Any) -> float:
    total = 0.0
    for metric in registry.collect():
        if metric.name == "evobs_handler_errors":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def test_concurrent_tasks_parent_their_own_calls(
    aio_instrumented, aio_session, moto_url, recorder, registry
):
    """100 tasks on one loop, each in its own span, each making an S3 and an SQS call: every
    call span is the child of its own task's span, and every message carries its own send
    span's context."""
    tracer = recorder.provider.get_tracer("app")
    bucket = f"aio-{uuid.uuid4().hex[:10]}"

    async def main() -> dict[str, str]:
        async with (
            aio_session.create_client("s3", region_name="us-east-1", endpoint_url=moto_url) as s3,
            aio_session.create_client("sqs", region_name="us-east-1", endpoint_url=moto_url) as sqs,
        ):
            await s3.create_bucket(Bucket=bucket)
            url = (await sqs.create_queue(QueueName=f"aioq-{uuid.uuid4().hex[:8]}"))["QueueUrl"]

            async def task(i: int) -> None:
                with tracer.start_as_current_span(f"task-{i}"):
                    await s3.head_bucket(Bucket=bucket)
                    await asyncio.sleep(0)  # interleave
                    await sqs.send_message(QueueUrl=url, MessageBody=str(i))

            await asyncio.gather(*(task(i) for i in range(TASKS)))
            carried: dict[str, str] = {}
            while len(carried) < TASKS:
                got = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
                )
                for m in got.get("Messages", []):
                    carried[m["Body"]] = m["MessageAttributes"]["traceparent"]["StringValue"]
            return carried

    before = otel_context.get_current()
    carried = asyncio.run(main())
    assert otel_context.get_current() == before

    tasks = {s.name: s for s in recorder.spans if s.name.startswith("task-")}
    assert len(tasks) == TASKS
    by_parent: dict[int, list[Any]] = {}
    for span in recorder.spans:
        if span.name in ("S3.HeadBucket", "SQS.SendMessage"):
            assert span.parent is not None
            by_parent.setdefault(span.parent.span_id, []).append(span)
    for i in range(TASKS):
        task = tasks[f"task-{i}"]
        children = by_parent[task.context.span_id]
        assert sorted(c.name for c in children) == ["S3.HeadBucket", "SQS.SendMessage"]
        for child in children:
            assert child.context.trace_id == task.context.trace_id
        send = next(c for c in children if c.name == "SQS.SendMessage")
        assert send.kind is SpanKind.PRODUCER
        assert carried[str(i)].split("-")[2] == f"{send.context.span_id:016x}"
    assert recorder.started == recorder.ended
    assert _errors(registry) == 0


def test_cancelled_call_leaves_nothing_open(aio_instrumented, aio_session, moto_url, recorder):
    """A long-poll ReceiveMessage cancelled by ``asyncio.wait_for``: its span is ended (as
    an error), started == ended, and the task's OTel context is restored."""
    tracer = recorder.provider.get_tracer("app")

    async def main() -> None:
        async with aio_session.create_client(
            "sqs", region_name="us-east-1", endpoint_url=moto_url
        ) as sqs:
            url = (await sqs.create_queue(QueueName=f"aioc-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
            with tracer.start_as_current_span("job") as job:
                for _ in range(3):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5), timeout=0.2
                        )
                    assert trace.get_current_span() is job

    asyncio.run(main())
    receives = recorder.named("SQS.ReceiveMessage")
    assert len(receives) == 3
    for span in receives:
        assert not span.status.is_ok
        assert span.attributes["error.type"] == "CancelledError"
    assert recorder.started == recorder.ended


def test_extract_context_is_importable():
    """The consumer helper is part of the public API in this environment too."""
    assert "extract_context" in evobs.__all__


def test_process_wide_mode_reaches_aiobotocore_sessions(moto_url, recorder, registry):
    """``instrument_all()`` instruments an aiobotocore session made after it (``AioSession``
    runs botocore's ``Session.__init__``): its calls are spans; after ``uninstrument_all()``
    a new session's calls are not."""
    from aiobotocore.session import get_session

    async def list_queues() -> None:
        session = get_session()
        session.set_credentials("testing", "testing")
        async with session.create_client(
            "sqs", region_name="us-east-1", endpoint_url=moto_url
        ) as sqs:
            await sqs.list_queues()

    evobs.instrument_all(tracer_provider=recorder.provider, registry=registry)
    try:
        asyncio.run(list_queues())
    finally:
        evobs.uninstrument_all()
    asyncio.run(list_queues())
    assert [s.name for s in recorder.spans] == ["SQS.ListQueues"]
    assert recorder.spans[0].kind is SpanKind.CLIENT
    assert _errors(registry) == 0


def test_call_looked_up_before_the_class_was_restored(aio_session, moto_url, recorder, registry):
    """An aiobotocore client's ``_make_api_call`` looked up on evobs's class, awaited
    after ``uninstrument`` restored the client's own class: the client's own call runs
    and returns its result, nothing raised, no span."""

    async def main() -> str:
        async with aio_session.create_client(
            "sts", region_name="us-east-1", endpoint_url=moto_url
        ) as sts:
            original_class = type(sts)
            handle = evobs.instrument(sts, tracer_provider=recorder.provider, registry=registry)
            looked_up = sts._make_api_call
            assert type(sts) is not original_class
            handle.uninstrument()
            assert type(sts) is original_class
            result = await looked_up("GetCallerIdentity", {})
            return str(result["Account"])

    assert asyncio.run(main())
    assert recorder.started == recorder.ended == 0
