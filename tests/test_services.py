"""Per-service span attributes (OpenTelemetry semantic conventions) over real HTTP against
moto's server; sampled spans only; OTEL_SEMCONV_STABILITY_OPT_IN generations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

import evobs
from evobs.services import SERVICES, Extractor, _semconv


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_s3_attributes_without_keys(instrumented, session, moto_url, recorder):
    """S3: bucket, upload id and part number; no key and no copy source by default."""
    s3 = session.client("s3", endpoint_url=moto_url)
    bucket = _name("svc")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="private/alice.txt", Body=b"x")
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource=f"{bucket}/private/alice.txt")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"y")
    put = recorder.one("S3.PutObject")
    assert put.attributes["aws.s3.bucket"] == bucket
    assert "aws.s3.key" not in put.attributes
    assert "aws.s3.copy_source" not in recorder.one("S3.CopyObject").attributes
    assert recorder.one("S3.CreateMultipartUpload").attributes["aws.s3.upload_id"] == upload
    part = recorder.one("S3.UploadPart")
    assert part.attributes["aws.s3.upload_id"] == upload
    assert part.attributes["aws.s3.part_number"] == 1
    assert put.kind is SpanKind.CLIENT


def test_s3_keys_with_capture_s3_keys(session, moto_url, recorder, registry):
    """With ``capture_s3_keys`` the key and the copy source (bucket/key) are recorded."""
    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, capture_s3_keys=True
    )
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        bucket = _name("keys")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
        s3.copy_object(Bucket=bucket, Key="b.txt", CopySource={"Bucket": bucket, "Key": "a.txt"})
        assert recorder.one("S3.PutObject").attributes["aws.s3.key"] == "a.txt"
        copy = recorder.one("S3.CopyObject")
        assert copy.attributes["aws.s3.copy_source"] == f"{bucket}/a.txt"
        assert copy.attributes["aws.s3.key"] == "b.txt"
    finally:
        handle.uninstrument()


def test_dynamodb_attributes(instrumented, session, moto_url, recorder):
    """DynamoDB: table names (single and batch), index, limit, consumed capacity, counts;
    the database attributes of the default generation."""
    ddb = session.client("dynamodb", endpoint_url=moto_url)
    table = _name("tbl")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(
        TableName=table,
        Item={"pk": {"S": "secret-user-id"}, "g": {"S": "x"}},
        ReturnConsumedCapacity="TOTAL",
    )
    ddb.query(
        TableName=table,
        IndexName="by-g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "x"}},
        Limit=5,
    )
    ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "secret-user-id"}}]}})
    put = recorder.one("DynamoDB.PutItem")
    assert put.attributes["aws.dynamodb.table_names"] == (table,)
    capacity = [json.loads(c) for c in put.attributes["aws.dynamodb.consumed_capacity"]]
    assert capacity[0]["TableName"] == table
    assert put.attributes["db.system"] == "dynamodb"
    assert put.attributes["db.operation"] == "PutItem"
    query = recorder.one("DynamoDB.Query")
    assert query.attributes["aws.dynamodb.index_name"] == "by-g"
    assert query.attributes["aws.dynamodb.limit"] == 5
    assert query.attributes["aws.dynamodb.count"] == 1
    batch = recorder.one("DynamoDB.BatchGetItem")
    assert batch.attributes["aws.dynamodb.table_names"] == (table,)
    for span in recorder.spans:  # item contents never
        assert "secret-user-id" not in json.dumps(dict(span.attributes), default=str)


def test_sqs_attributes(instrumented, session, moto_url, recorder):
    """SQS: messaging system, destination, queue URL, message id, batch count."""
    sqs = session.client("sqs", endpoint_url=moto_url)
    name = _name("attrq")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    message_id = sqs.send_message(QueueUrl=url, MessageBody="x")["MessageId"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "a"}, {"Id": "2", "MessageBody": "b"}]
    )
    send = recorder.one("SQS.SendMessage")
    assert send.attributes["messaging.system"] == "aws_sqs"
    assert send.attributes["messaging.destination.name"] == name
    assert send.attributes["aws.sqs.queue.url"] == url
    assert send.attributes["messaging.message.id"] == message_id
    assert send.attributes["messaging.operation"] == "publish"
    assert recorder.one("SQS.SendMessageBatch").attributes["messaging.batch.message_count"] == 2


def test_sns_lambda_kinesis_secrets_sfn_eventbridge(instrumented, session, moto_url, recorder):
    """One call per remaining service in the table, each with its semconv attribute."""
    sns = session.client("sns", endpoint_url=moto_url)
    topic = sns.create_topic(Name=_name("topic"))["TopicArn"]
    sns.publish(TopicArn=topic, Message="m")
    assert recorder.one("SNS.CreateTopic").attributes["aws.sns.topic.arn"] == topic
    assert recorder.one("SNS.Publish").attributes["aws.sns.topic.arn"] == topic

    lam = session.client("lambda", endpoint_url=moto_url)
    arn = "arn:aws:lambda:us-east-1:123456789012:function:missing-fn"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=arn)
    got = recorder.one("Lambda.GetFunction")
    assert got.attributes["aws.lambda.invoked_arn"] == arn
    assert got.attributes["aws.lambda.function.name"] == "missing-fn"

    kinesis = session.client("kinesis", endpoint_url=moto_url)
    stream = _name("stream")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.describe_stream_summary(StreamName=stream)
    summary = recorder.one("Kinesis.DescribeStreamSummary")
    assert summary.attributes["aws.kinesis.stream_name"] == stream

    secrets = session.client("secretsmanager", endpoint_url=moto_url)
    secret_arn = secrets.create_secret(Name=_name("sec"), SecretString="hunter2")["ARN"]
    secrets.get_secret_value(SecretId=secret_arn)
    for name in ("Secrets Manager.CreateSecret", "Secrets Manager.GetSecretValue"):
        span = recorder.one(name)
        assert span.attributes["aws.secretsmanager.secret.arn"] == secret_arn
        assert "hunter2" not in json.dumps(dict(span.attributes), default=str)

    sfn = session.client("stepfunctions", endpoint_url=moto_url)
    activity = sfn.create_activity(name=_name("act"))["activityArn"]
    sfn.describe_activity(activityArn=activity)
    assert recorder.one("SFN.CreateActivity").attributes["aws.step_functions.activity.arn"] == (
        activity
    )
    assert (
        recorder.one("SFN.DescribeActivity").attributes["aws.step_functions.activity.arn"]
        == activity
    )

    events = session.client("events", endpoint_url=moto_url)
    events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 2)
    put = recorder.one("EventBridge.PutEvents")
    assert put.attributes["messaging.batch.message_count"] == 2
    assert put.attributes["messaging.destination.name"] == "default"


def test_unsampled_spans_skip_extraction(session, moto_url, registry, monkeypatch):
    """A span the sampler drops costs no attribute extraction at all."""
    calls: list[str] = []
    original = Extractor.request

    def counting(self: Extractor, params: Any, options: Any) -> Any:
        calls.append(self.name)
        return original(self, params, options)

    monkeypatch.setattr(Extractor, "request", counting)
    provider = TracerProvider(sampler=ALWAYS_OFF)
    handle = evobs.instrument(session, tracer_provider=provider, registry=registry)
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        s3.create_bucket(Bucket=_name("unsampled"))
        assert calls == []
    finally:
        handle.uninstrument()


def test_every_table_entry_has_a_spec():
    """Adding a service is one table entry plus its module: every entry resolves to a spec."""
    from importlib import import_module

    for service, module in SERVICES.items():
        spec = import_module(f"evobs.services.{module}").SPEC
        assert spec is not None, service


def test_semconv_generations():
    """The opt-in tokens choose old, new or both attribute generations per domain."""
    assert _semconv.mode("rpc", "") == "old"
    assert _semconv.mode("rpc", "http,rpc") == "new"
    assert _semconv.mode("rpc", "rpc/dup") == "dup"
    assert _semconv.mode("messaging", "rpc") == "old"
    assert _semconv.rpc("S3", "PutObject", "new") == {
        "rpc.system.name": "aws-api",
        "rpc.method": "S3/PutObject",
    }
    dup = _semconv.rpc("S3", "PutObject", "dup")
    assert dup["rpc.system"] == "aws-api" and dup["rpc.system.name"] == "aws-api"
    assert _semconv.messaging("aws_sqs", "publish", "send", "SendMessage", "new") == {
        "messaging.system": "aws_sqs",
        "messaging.operation.type": "send",
        "messaging.operation.name": "SendMessage",
    }
    both = _semconv.database("GetItem", "dup")
    assert both["db.system"] == "dynamodb" and both["db.system.name"] == "aws.dynamodb"


_OPT_IN_SCRIPT = """
import json, sys, boto3, evobs
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
session = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
evobs.instrument(session, tracer_provider=provider, registry=CollectorRegistry())
url = sys.argv[1]
sqs = session.client("sqs", endpoint_url=url)
q = sqs.create_queue(QueueName="optin-q")["QueueUrl"]
sqs.send_message(QueueUrl=q, MessageBody="x")
ddb = session.client("dynamodb", endpoint_url=url)
ddb.list_tables()
print(json.dumps({s.name: dict(s.attributes) for s in exporter.get_finished_spans()}))
"""


def test_opt_in_environment_variable_switches_generations(moto_url):
    """OTEL_SEMCONV_STABILITY_OPT_IN=rpc,messaging/dup,database is honoured end to end."""
    env = dict(os.environ, OTEL_SEMCONV_STABILITY_OPT_IN="rpc,messaging/dup,database")
    out = subprocess.run(
        [sys.executable, "-c", _OPT_IN_SCRIPT, moto_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    send = spans["SQS.SendMessage"]
    assert send["rpc.system.name"] == "aws-api" and send["rpc.method"] == "SQS/SendMessage"
    assert "rpc.system" not in send and "rpc.service" not in send
    assert send["messaging.operation"] == "publish"  # dup: old ...
    assert send["messaging.operation.type"] == "send"  # ... and new
    tables = spans["DynamoDB.ListTables"]
    assert tables["db.system.name"] == "aws.dynamodb" and "db.system" not in tables
    assert tables["db.operation.name"] == "ListTables"
