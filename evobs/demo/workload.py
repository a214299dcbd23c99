"""The demo workload: what a small order-processing service does against AWS.

Every unit of work runs under an application span, as a real service's request
handlers and consumers do, so each trace reads as one request (in Jaeger, a
waterfall with the AWS calls, their retries and throttles inside):

- ``place order`` (two API workers): reads the customer (DynamoDB GetItem), writes the
  order with a conditional put (a resubmitted order fails it:
  ``ConditionalCheckFailedException``, declared an expected error), stores the order
  document (S3 PutObject) and announces it (SQS SendMessage);
- ``get order`` (S3 GetObject and HeadObject, DynamoDB GetItem, through the boto3
  resource too; a few orders that do not exist: ``NoSuchKey``), ``list orders``
  (DynamoDB Query, S3 ListObjectsV2), ``import orders`` (SQS SendMessageBatch),
  ``purge old orders`` (S3 DeleteObject), ``check queue`` (SQS GetQueueAttributes) and,
  once, ``archive orders``: a 12 MiB ``upload_file`` in 3 parts, one part throttled;
- ``poll order events`` (the consumer): SQS ReceiveMessage, then for each message a
  ``process order event`` span that continues the producer's trace
  (:func:`evobs.extract_context`) and marks the order paid (DynamoDB UpdateItem); the
  batch is acknowledged with DeleteMessageBatch.

A :class:`Chaos` object scripts the :class:`~evobs.demo.faults.FaultServer` in
front of the endpoint, so throttling and 5xx answers are real HTTP responses
that botocore really retries, with its real backoff.

With an :class:`~evobs.demo.assistant.Assistant`, a third kind of worker runs the
order assistant's GenAI units against a local Bedrock Runtime endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from .assistant import UNITS as ASSISTANT_UNITS

if TYPE_CHECKING:
    from .assistant import Assistant
    from .faults import FaultServer

__all__ = [
    "APP_SCOPE",
    "BUCKET",
    "EXPECTED_ERRORS",
    "QUEUE",
    "SERVICES",
    "TABLE",
    "UNITS",
    "Chaos",
    "Workload",
    "client_config",
    "demo_endpoint",
    "demo_session",
]

BUCKET: Final = "evobs-demo-orders"
TABLE: Final = "evobs-demo-orders"
QUEUE: Final = "evobs-demo-events"
SERVICES: Final = ("S3", "DynamoDB", "SQS")
#: Declared to ``instrument()``: a failed conditional write is control flow, not an incident.
EXPECTED_ERRORS: Final = {"DynamoDB.PutItem": {"ConditionalCheckFailedException"}}
#: The instrumentation scope of the demo's own (application) spans.
APP_SCOPE: Final = "evobs.demo"
#: The application spans, one per unit of work.
UNITS: Final = (
    "place order",
    "get order",
    "list orders",
    "import orders",
    "purge old orders",
    "check queue",
    "archive orders",
    "poll order events",
    "process order event",
    *ASSISTANT_UNITS,
)

_MIB: Final = 1024 * 1024
#: S3's minimum part size (moto enforces it), so 12 MiB makes three parts.
_PART_SIZE: Final = 5 * _MIB
_UPLOAD_SIZE: Final = 12 * _MIB
_CUSTOMERS: Final = 40
_API_WORKERS: Final = 2
#: Every so many orders, one is submitted twice (the second put fails its condition).
_RESUBMIT_EVERY: Final = 8


def demo_session() -> Any:
    """A boto3 session with fixed fake credentials: the demo never reads the user's own."""
    import boto3

    return boto3.Session(
        aws_access_key_id="evobs-demo",
        aws_secret_access_key="evobs-demo-secret",
        region_name="us-east-1",
    )


def client_config(max_attempts: int = 3) -> Any:
    """Standard retry mode with few attempts: real backoff, cheap retries."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        s3={"addressing_style": "path"},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=16,
    )


@contextlib.contextmanager
def demo_endpoint() -> Iterator[tuple[str, FaultServer]]:
    """moto's server on a free loopback port with a FaultServer in front of it.

    Yields ``(moto_url, fault_server)``; clients use ``fault_server.url``.
    """
    from .aws import start_moto_server
    from .faults import FaultServer

    moto, moto_url = start_moto_server()
    faults = FaultServer(upstream=moto_url).start()
    try:
        yield moto_url, faults
    finally:
        faults.stop()
        moto.stop()


class Chaos:
    """Scripts faults into the fault server just before some calls, at fixed rates.

    One throttle costs one retry; a surge (as many throttles as attempts) makes the
    call fail throttled; a 5xx costs one retry. Seeded, so runs are comparable.
    """

    __slots__ = ("_lock", "_rng", "injected", "rates", "server")

    def __init__(
        self,
        server: FaultServer | None,
        *,
        seed: int = 7,
        throttle: float = 0.03,
        surge: float = 0.0015,
        server_error: float = 0.012,
        attempts: int = 3,
    ) -> None:
        self.server = server
        self.rates = (throttle, surge, server_error, attempts)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: Faults scripted so far, by kind.
        self.injected: dict[str, int] = {"throttle": 0, "surge": 0, "server_error": 0}

    def before(
        self, operation: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Maybe script a fault for the next request matching operation/method/path."""
        server = self.server
        if server is None:
            return
        from .faults import Fault

        throttle, surge, server_error, attempts = self.rates
        with self._lock:
            roll = self._rng.random()
            status = self._rng.choice((500, 503))
        if roll < surge:
            kind, faults = "surge", [Fault.throttle()] * attempts
        elif roll < surge + throttle:
            kind, faults = "throttle", [Fault.throttle()]
        elif roll < surge + throttle + server_error:
            kind, faults = "server_error", [Fault.status(status)]
        else:
            return
        server.script(f.on(operation, method=method, path=path) for f in faults)
        with self._lock:
            self.injected[kind] += 1


class _Tally:
    """Per-unit step counters the workers bump, and unexpected exceptions."""

    __slots__ = ("_lock", "errors", "failures", "steps")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps: dict[str, int] = {}
        #: Units that ended with an AWS error the handler did not handle.
        self.errors: dict[str, int] = {}
        #: Unexpected exceptions (not AWS errors), by type: a bug in the demo if any.
        self.failures: dict[str, int] = {}

    def step(self, unit: str) -> None:
        with self._lock:
            self.steps[unit] = self.steps.get(unit, 0) + 1

    def error(self, unit: str) -> None:
        with self._lock:
            self.errors[unit] = self.errors.get(unit, 0) + 1

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            name = type(exc).__name__
            self.failures[name] = self.failures.get(name, 0) + 1


class Workload:
    """The order service's workload against ``endpoint_url``, as request-shaped traces.

    ``setup()`` creates the bucket, table and queue; ``run()`` runs two API workers
    and one queue consumer until ``duration`` seconds pass or ``stop`` is set. The
    application spans go to ``tracer_provider`` (default: the global one).
    """

    def __init__(
        self,
        session: Any,
        endpoint_url: str,
        *,
        faults: FaultServer | None = None,
        seed: int = 7,
        think: float = 0.0,
        multipart: bool = True,
        max_attempts: int = 3,
        tracer_provider: Any = None,
        assistant: Assistant | None = None,
    ) -> None:
        from opentelemetry import trace

        from .._version import __version__

        self.session = session
        self.endpoint_url = endpoint_url
        self.chaos = Chaos(faults, seed=seed, attempts=max_attempts)
        self.think = think
        self.multipart = multipart
        self.tally = _Tally()
        self.tracer = trace.get_tracer(APP_SCOPE, __version__, tracer_provider=tracer_provider)
        self._config = client_config(max_attempts)
        self._seed = seed
        self._s3: Any = None
        self._dynamodb: Any = None
        self._sqs: Any = None
        self._queue_url = ""
        #: The GenAI worker (Bedrock Runtime), when given.
        self.assistant = assistant

    def client(self, service: str) -> Any:
        """A new client for ``service`` on the demo endpoint."""
        return self.session.client(service, endpoint_url=self.endpoint_url, config=self._config)

    # -- setup ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the bucket, the table and the queue (idempotent)."""
        from botocore.exceptions import ClientError

        self._s3 = self.client("s3")
        self._dynamodb = self.client("dynamodb")
        self._sqs = self.client("sqs")
        with contextlib.suppress(ClientError):
            self._s3.create_bucket(Bucket=BUCKET)
        try:
            self._dynamodb.create_table(
                TableName=TABLE,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        self._queue_url = self._sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    # -- running ----------------------------------------------------------------------------

    def run(self, duration: float | None, stop: threading.Event | None = None) -> None:
        """Run the workers until ``duration`` seconds pass (None: until ``stop``)."""
        if self._s3 is None:
            self.setup()
        stop = stop or threading.Event()
        deadline = None if duration is None else time.monotonic() + duration

        def done() -> bool:
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        workers = [
            threading.Thread(
                target=self._api_loop, args=(worker, done), name=f"evobs-demo-api-{worker}"
            )
            for worker in range(_API_WORKERS)
        ]
        workers.append(
            threading.Thread(
                target=self._consumer_loop, args=(done, stop), name="evobs-demo-consumer"
            )
        )
        if self.assistant is not None:
            workers.append(
                threading.Thread(
                    target=self.assistant.loop,
                    args=(self._unit, done),
                    name="evobs-demo-assistant",
                )
            )
        for worker in workers:
            worker.daemon = True
            worker.start()
        try:
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.2)
        except BaseException:
            stop.set()
            raise

    def _unit(
        self, name: str, body: Callable[..., None], *args: Any, kind: Any = None, **span: Any
    ) -> None:
        """Run one unit of work under its application span. An AWS error that escapes
        the handler fails the unit (and its span, as any request handler's would); the
        workload carries on."""
        from botocore.exceptions import BotoCoreError, ClientError
        from opentelemetry.trace import SpanKind

        try:
            with self.tracer.start_as_current_span(name, kind=kind or SpanKind.SERVER, **span):
                body(*args)
        except (ClientError, BotoCoreError):
            self.tally.error(name)
        except Exception as exc:  # the demo keeps going; the summary reports it
            self.tally.failure(exc)
        self.tally.step(name)

    def _api_loop(self, worker: int, done: Callable[[], bool]) -> None:
        from opentelemetry.trace import SpanKind

        internal = SpanKind.INTERNAL
        i = 0
        while not done():
            order = f"{worker}-{i:06d}"
            if worker == 0 and i % 60 == 59:
                # Client churn, as a handler that builds a client per request would.
                self._s3 = self.client("s3")
            self._unit("place order", self._place_order, order, i)
            if worker == 0 and self.multipart and i == 0:
                # In the first round: however short the run, the demo shows a transfer.
                self._unit("archive orders", self._archive, kind=internal)
            if i % _RESUBMIT_EVERY == 1:
                # The same order submitted again (a double click): the put's condition fails.
                self._unit("place order", self._place_order, order, i)
            if i % 2 == 0:
                self._unit("get order", self._get_order, worker, order, i)
            if i % 3 == 0:
                self._unit("list orders", self._list_orders, i)
            if i % 4 == 0:
                self._unit("import orders", self._import_orders, order, kind=internal)
            if i % 25 == 24:
                self._unit("purge old orders", self._purge, worker, i, kind=internal)
            if worker == 0 and i % 20 == 0:
                self._unit("check queue", self._check_queue, kind=internal)
            i += 1
            if self.think:
                time.sleep(self.think)

    # -- the API's handlers ---------------------------------------------------------------

    def _place_order(self, order: str, i: int) -> None:
        from botocore.exceptions import ClientError

        db = self._dynamodb
        customer = f"customer#{i % _CUSTOMERS:03d}"
        self.chaos.before("GetItem")
        db.get_item(TableName=TABLE, Key={"pk": {"S": customer}, "sk": {"S": "profile"}})
        item = {
            "pk": {"S": customer},
            "sk": {"S": f"order#{order}"},
            "total": {"N": str(10 + i % 90)},
            "status": {"S": "NEW"},
        }
        self.chaos.before("PutItem")
        try:
            # Idempotent: a resubmitted order fails the condition and is not placed twice.
            db.put_item(TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(sk)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return  # already placed: the handler answers with the existing order
        document = json.dumps(
            {"order": order, "items": list(range(i % 17)), "note": "x" * (i % 900)}
        )
        self.chaos.before(method="PUT", path=rf"^/{BUCKET}/orders/")
        self._s3.put_object(
            Bucket=BUCKET,
            Key=f"orders/{order}.json",
            Body=document.encode(),
            ContentType="application/json",
        )
        self.chaos.before("SendMessage")
        self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps({"order": order, "customer": customer}),
        )

    def _get_order(self, worker: int, order: str, i: int) -> None:
        from botocore.exceptions import ClientError

        s3 = self._s3
        key = f"orders/{order}.json"
        if i % 10 == 2:
            key = f"orders/missing-{order}.json"  # a link to an order that does not exist
        self.chaos.before(method="GET", path=rf"^/{BUCKET}/orders/")
        try:
            s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                raise
            return  # the handler answers 404
        if i % 7 == 0:
            s3.head_object(Bucket=BUCKET, Key=key)
        customer = f"customer#{i % _CUSTOMERS:03d}"
        if worker == 0 and i % 20 == 10:
            # The resource API too (aws_sdk_resources_created_total).
            table = self.session.resource(
                "dynamodb", endpoint_url=self.endpoint_url, config=self._config
            ).Table(TABLE)
            table.get_item(Key={"pk": customer, "sk": f"order#{order}"})
        else:
            self.chaos.before("GetItem")
            self._dynamodb.get_item(
                TableName=TABLE, Key={"pk": {"S": customer}, "sk": {"S": f"order#{order}"}}
            )

    def _list_orders(self, i: int) -> None:
        self.chaos.before("Query")
        self._dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"customer#{i % _CUSTOMERS:03d}"}},
            Limit=20,
        )
        self._s3.list_objects_v2(Bucket=BUCKET, Prefix="orders/", MaxKeys=50)

    def _import_orders(self, order: str) -> None:
        self.chaos.before("SendMessageBatch")
        self._sqs.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": json.dumps({"order": order, "line": n})}
                for n in range(5)
            ],
        )

    def _purge(self, worker: int, i: int) -> None:
        self._s3.delete_object(Bucket=BUCKET, Key=f"orders/{worker}-{i - 20:06d}.json")

    def _check_queue(self) -> None:
        self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )

    def _archive(self) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=_PART_SIZE, multipart_chunksize=_PART_SIZE, max_concurrency=2
        )
        fd, path = tempfile.mkstemp(prefix="evobs-demo-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as handle:
                block = random.Random(self._seed).randbytes(_MIB)
                for _ in range(_UPLOAD_SIZE // _MIB):
                    handle.write(block)
            # One part is throttled: a retried UploadPart inside the transfer.
            if self.chaos.server is not None:
                self.chaos.server.script(
                    [_s3_throttle().on(method="PUT", path=rf"^/{BUCKET}/uploads/")]
                )
            self._s3.upload_file(path, BUCKET, "uploads/archive.bin", Config=transfer)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- the consumer ---------------------------------------------------------------------

    def _consumer_loop(self, done: Callable[[], bool], stop: threading.Event) -> None:
        from opentelemetry.trace import SpanKind

        received: list[int] = [0]
        while not done():
            received[0] = 0
            self._unit("poll order events", self._poll, received, kind=SpanKind.INTERNAL)
            if not received[0]:
                stop.wait(0.05)  # an empty queue: poll again a little later

    def _poll(self, received: list[int]) -> None:
        sqs = self._sqs
        url = self._queue_url
        self.chaos.before("ReceiveMessage")
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        received[0] = len(messages)
        for message in messages:
            self._unit("process order event", self._process, message, **_consumer(message))
        if len(messages) > 1:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
        elif messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])

    def _process(self, message: dict[str, Any]) -> None:
        event = json.loads(message.get("Body") or "{}")
        customer = event.get("customer")
        if not customer:
            return  # an imported order line: nothing to update
        self.chaos.before("UpdateItem")
        self._dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": customer}, "sk": {"S": f"order#{event['order']}"}},
            UpdateExpression="SET #s = :s ADD revisions :one",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "PAID"}, ":one": {"N": "1"}},
        )


def _consumer(message: dict[str, Any]) -> dict[str, Any]:
    """The span arguments of a message's processing: a CONSUMER span that continues the
    producer's trace (the order's), linked to the poll that received it."""
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    from .. import extract_context

    poll = trace.get_current_span().get_span_context()
    return {
        "kind": SpanKind.CONSUMER,
        "context": extract_context(message),
        "links": [Link(poll)] if poll.is_valid else [],
    }


def _s3_throttle() -> Any:
    from .faults import Fault

    return Fault.throttle()
