"""Trace context across messages, over real HTTP against moto's server: SQS, SNS->SQS,
EventBridge->SQS, Lambda Invoke; limits; the user's objects untouched."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import evobs
from evobs import _propagation as propagation

SKIPPED = "aws.sdk.propagation.skipped"


def _queue(client: Any) -> str:
    url: str = client.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    return url


def _traceparent(span: Any) -> str:
    ctx = span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _consume(message: dict[str, Any], recorder: Any) -> Any:
    """A consumer's processing span, parented by the message's context."""
    tracer = recorder.provider.get_tracer("consumer")
    with tracer.start_as_current_span(
        "process", context=evobs.extract_context(message), kind=SpanKind.CONSUMER
    ):
        pass
    return recorder.one("process")


def test_sqs_send_receive_continues_the_trace(instrumented, session, moto_url, recorder):
    """SendMessage injects its own span's context; ReceiveMessage links to it, hides what it
    asked for, and the consumer's span is the producer span's child."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    send = recorder.one("SQS.SendMessage")
    assert send.kind is SpanKind.PRODUCER

    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert len(messages) == 1
    # evobs asked for the attributes itself, so the user does not see them.
    assert "MessageAttributes" not in messages[0]
    assert "Attributes" not in messages[0]
    receive = recorder.one("SQS.ReceiveMessage")
    assert receive.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in receive.links] == [send.context.span_id]
    assert receive.attributes["messaging.batch.message_count"] == 1

    process = _consume(messages[0], recorder)
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id


def test_receive_with_all_attributes_shows_the_traceparent(
    instrumented, session, moto_url, recorder
):
    """A consumer that asks for all attributes sees the producer's ``traceparent``, unchanged."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    send = recorder.one("SQS.SendMessage")
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert message["MessageAttributes"]["traceparent"]["StringValue"] == _traceparent(send)


def test_provide_client_params_handlers_see_the_injected_context(
    instrumented, session, moto_url, recorder
):
    """The send's span and its context in the message exist as the call starts, before
    any provide-client-params handler runs (evobs registers none: the client's call frame
    starts the call); a handler registered first sees the ``traceparent`` already."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    seen: list[Any] = []

    def look(params: dict[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(params.get("MessageAttributes")))

    sqs.meta.events.register_first("provide-client-params.sqs.SendMessage", look)
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    send = recorder.one("SQS.SendMessage")
    assert seen == [{"traceparent": {"DataType": "String", "StringValue": _traceparent(send)}}]
    responses = sqs.meta.events.emit(
        "provide-client-params.sqs.SendMessage", params={}, model=None, context={}
    )
    assert look in [handler for handler, _ in responses]
    assert [h for h, _ in responses if getattr(h, "__module__", "").startswith("evobs")] == []


def test_send_batch_injects_per_entry_and_keeps_user_objects(
    instrumented, session, moto_url, recorder
):
    """SendMessageBatch: every entry carries the batch span's context; the user's entries,
    their attribute dicts and the params dict's nested values are unchanged after the call."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    user_attrs = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    entries = [
        {"Id": "a", "MessageBody": "one", "MessageAttributes": user_attrs},
        {"Id": "b", "MessageBody": "two"},
    ]
    params = {"QueueUrl": url, "Entries": entries}
    before = copy.deepcopy(params)
    sqs.send_message_batch(**params)
    assert params == before
    assert params["Entries"] is entries and entries[0]["MessageAttributes"] is user_attrs
    assert "traceparent" not in user_attrs and "MessageAttributes" not in entries[1]

    batch = recorder.one("SQS.SendMessageBatch")
    assert batch.kind is SpanKind.PRODUCER
    assert batch.attributes["messaging.batch.message_count"] == 2
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert len(got) == 2
    for message in got:
        assert message["MessageAttributes"]["traceparent"]["StringValue"] == _traceparent(batch)
    assert {m["MessageAttributes"].get("tenant", {}).get("StringValue") for m in got} == {
        "acme",
        None,
    }


def test_send_message_keeps_user_attribute_dict(instrumented, session, moto_url):
    """SendMessage: the user's MessageAttributes dict is not mutated."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    attrs = {"k": {"DataType": "String", "StringValue": "v"}}
    snapshot = copy.deepcopy(attrs)
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attrs)
    assert attrs == snapshot


def test_ten_attribute_limit_skips_and_counts(instrumented, session, moto_url, recorder):
    """A message that already has 10 attributes is sent as written, and the skip is counted;
    with 9 there is room for ``traceparent``."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    ten = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(10)}
    sqs.send_message(QueueUrl=url, MessageBody="full", MessageAttributes=ten)
    full = recorder.one("SQS.SendMessage")
    assert full.attributes[SKIPPED] == 1
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert set(message["MessageAttributes"]) == set(ten)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    nine = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(9)}
    sqs.send_message(QueueUrl=url, MessageBody="room", MessageAttributes=nine)
    spans = recorder.named("SQS.SendMessage")
    assert SKIPPED not in spans[-1].attributes
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert len(message["MessageAttributes"]) == 10
    assert "traceparent" in message["MessageAttributes"]


def test_size_limit_skips_and_the_call_succeeds(instrumented, session, moto_url, recorder):
    """A message at the SQS size limit gets no context (it would no longer fit) and is sent."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    body = "x" * (propagation.SQS_MAX_BYTES - 20)
    sqs.send_message(QueueUrl=url, MessageBody=body)
    span = recorder.one("SQS.SendMessage")
    assert span.attributes[SKIPPED] == 1
    assert span.status.is_ok
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert len(message["Body"]) == len(body)
    assert "MessageAttributes" not in message


def test_batch_size_limit_counts_each_skipped_entry(instrumented, session, moto_url, recorder):
    """In a batch near the size limit, entries get context while the batch still fits;
    the rest are sent unchanged and counted."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    half = (propagation.SQS_MAX_BYTES - 100) // 2
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "a" * half},
            {"Id": "b", "MessageBody": "b" * half},
        ],
    )
    assert recorder.one("SQS.SendMessageBatch").attributes[SKIPPED] == 1
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    with_context = [m for m in got["Messages"] if "traceparent" in m.get("MessageAttributes", {})]
    assert len(got["Messages"]) == 2 and len(with_context) == 1


def test_propagation_can_be_turned_off(session, moto_url, recorder, registry):
    """``propagate_messages=False``: no attribute is added, the receive is left alone."""
    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, propagate_messages=False
    )
    try:
        sqs = session.client("sqs", endpoint_url=moto_url)
        url = _queue(sqs)
        sqs.send_message(QueueUrl=url, MessageBody="x")
        message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
        assert "MessageAttributes" not in message
        assert recorder.one("SQS.SendMessage").kind is SpanKind.PRODUCER
    finally:
        handle.uninstrument()


def _subscribed_queue(session: Any, moto_url: str, raw: bool) -> tuple[Any, Any, str, str]:
    sns = session.client("sns", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    url = _queue(sqs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    return sns, sqs, topic, url


def test_sns_to_sqs_envelope_continues_the_trace(instrumented, session, moto_url, recorder):
    """SNS Publish -> SQS (notification envelope): the consumer continues the publish span's
    trace from the attributes inside the envelope."""
    sns, sqs, topic, url = _subscribed_queue(session, moto_url, raw=False)
    user_attrs = {"kind": {"DataType": "String", "StringValue": "order"}}
    sns.publish(TopicArn=topic, Message="hi", MessageAttributes=user_attrs)
    assert user_attrs == {"kind": {"DataType": "String", "StringValue": "order"}}
    publish = recorder.one("SNS.Publish")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes["aws.sns.topic.arn"] == topic
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert json.loads(message["Body"])["MessageAttributes"]["traceparent"]["Value"] == (
        _traceparent(publish)
    )
    process = _consume(message, recorder)
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent.span_id == publish.context.span_id


def test_sns_raw_delivery_links_the_receive(instrumented, session, moto_url, recorder):
    """SNS PublishBatch -> SQS with raw delivery: attributes arrive as SQS attributes, so the
    receive span links to the publish and the consumer is its child."""
    sns, sqs, topic, url = _subscribed_queue(session, moto_url, raw=True)
    sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "1", "Message": "one"}])
    publish = recorder.one("SNS.PublishBatch")
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    receive = recorder.one("SQS.ReceiveMessage")
    assert [link.context.span_id for link in receive.links] == [publish.context.span_id]
    assert _consume(message, recorder).parent.span_id == publish.context.span_id


def test_eventbridge_put_events_trace_header(instrumented, session, moto_url, recorder):
    """PutEvents sends each entry's ``TraceHeader`` (X-Ray format, the call's own span) over
    the wire; moto then delivers the event to SQS but drops the header (real EventBridge
    turns it into the ``AWSTraceHeader`` system attribute), so the consumer side is checked
    with that attribute in the next test."""
    events = session.client("events", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = f"r-{uuid.uuid4().hex[:8]}"
    source = f"evobs.test.{rule}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])

    sent: list[dict[str, Any]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(json.loads(request.body))

    events.meta.events.register("before-send.eventbridge.PutEvents", capture)
    entries = [{"Source": source, "DetailType": "t", "Detail": "{}"}]
    events.put_events(Entries=entries)
    assert "TraceHeader" not in entries[0]
    put = recorder.one("EventBridge.PutEvents")
    assert put.kind is SpanKind.PRODUCER
    header = sent[0]["Entries"][0]["TraceHeader"]
    assert header == propagation.xray_header(put.context)
    trace_id = f"{put.context.trace_id:032x}"
    assert header.startswith(f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent=")

    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert json.loads(message["Body"])["source"] == source  # delivered


def test_aws_trace_header_is_linked_and_continued(instrumented, session, moto_url, recorder):
    """A message carrying ``AWSTraceHeader`` (what EventBridge and X-Ray producers set): the
    receive span links to it and ``extract_context`` continues it; evobs asked for the
    system attribute, so the user does not see it."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    tracer = recorder.provider.get_tracer("producer")
    with tracer.start_as_current_span("eventbridge-producer") as producer:
        header = propagation.xray_header(producer.get_span_context())
    # Sent by an uninstrumented client, as EventBridge would deliver it: only the header.
    plain = boto3.Session(region_name="us-east-1").client("sqs", endpoint_url=moto_url)
    plain.send_message(
        QueueUrl=url,
        MessageBody="{}",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert "Attributes" not in message
    receive = recorder.one("SQS.ReceiveMessage")
    producer_id = producer.get_span_context().span_id
    assert producer_id in [link.context.span_id for link in receive.links]
    process = _consume(message, recorder)
    assert process.parent.span_id == producer_id
    assert process.context.trace_id == producer.get_span_context().trace_id


def test_lambda_invoke_client_context(instrumented, session, moto_url, recorder):
    """Invoke carries the call span's context in ClientContext ``custom`` (keeping the
    user's own custom keys); the payload is untouched. moto without Docker cannot run the
    function, so the request on the wire is what is checked."""
    lam = session.client("lambda", endpoint_url=moto_url)
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.headers["X-Amz-Client-Context"])

    lam.meta.events.register("before-send.lambda.Invoke", capture)
    user_context = base64.b64encode(json.dumps({"custom": {"user": "1"}}).encode()).decode()
    with pytest.raises(ClientError):
        lam.invoke(FunctionName="no-such-fn", Payload=b'{"a": 1}', ClientContext=user_context)
    invoke = recorder.one("Lambda.Invoke")
    raw = sent[0].decode() if isinstance(sent[0], bytes) else sent[0]
    custom = json.loads(base64.b64decode(raw))["custom"]
    assert custom == {"user": "1", "traceparent": _traceparent(invoke)}
    assert invoke.attributes["faas.invoked_name"] == "no-such-fn"


def test_extract_context_without_context_returns_the_base():
    """A message with no trace context gives back the context passed in, unchanged."""
    from opentelemetry.context import Context

    base = Context()
    assert evobs.extract_context({"MessageId": "nope", "Body": "x"}, base) is base
    assert not trace.get_current_span(evobs.extract_context({})).get_span_context().is_valid


def test_xray_header_round_trip():
    """The X-Ray header evobs writes parses back to the same span context."""
    from opentelemetry.trace import SpanContext, TraceFlags

    ctx = SpanContext(0x1234 << 64 | 0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    parsed = propagation.parse_xray(propagation.xray_header(ctx))
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.trace_flags.sampled) == (
        ctx.trace_id,
        ctx.span_id,
        True,
    )
    assert propagation.parse_xray("Root=garbage;Parent=1") is None


def test_receive_keeps_the_users_names_and_removes_only_what_evobs_added(
    instrumented, session, moto_url, recorder
):
    """The user asks for one attribute: they get exactly it (evobs's additions are removed),
    their list is unchanged, and the receive span still links to the producer."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    sqs.send_message(
        QueueUrl=url,
        MessageBody="x",
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}},
    )
    names = ["tenant"]
    system = ["SentTimestamp"]
    message = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=names, MessageSystemAttributeNames=system
    )["Messages"][0]
    assert names == ["tenant"] and system == ["SentTimestamp"]
    assert set(message["MessageAttributes"]) == {"tenant"}
    assert set(message["Attributes"]) == {"SentTimestamp"}
    send = recorder.one("SQS.SendMessage")
    receive = recorder.one("SQS.ReceiveMessage")
    assert [link.context.span_id for link in receive.links] == [send.context.span_id]
    assert _consume(message, recorder).parent.span_id == send.context.span_id


def test_presigned_urls_are_left_alone(instrumented, session, moto_url):
    """A presigned SendMessage URL carries no evobs attribute (presign requests are not calls)."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    url = _queue(sqs)
    presigned = sqs.generate_presigned_url(
        "send_message", Params={"QueueUrl": url, "MessageBody": "x"}
    )
    assert "traceparent" not in presigned and "MessageAttribute" not in presigned


def test_send_failing_validation_closes_its_early_span(instrumented, session, moto_url, recorder):
    """A send whose span opened at provide-client-params but whose params fail validation
    (no before-call ever) is closed as an error; nothing stays open."""
    from botocore.exceptions import ParamValidationError

    sqs = session.client("sqs", endpoint_url=moto_url)
    with pytest.raises(ParamValidationError):
        sqs.send_message(QueueUrl="http://127.0.0.1:1/q")  # MessageBody missing
    span = recorder.one("SQS.SendMessage")
    assert span.attributes["error.type"] == "ParamValidationError"
    assert recorder.started == recorder.ended
